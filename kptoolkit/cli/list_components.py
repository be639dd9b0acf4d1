"""`kptoolkit list`: every registered component with its kind, origin and description."""

from __future__ import annotations

import argparse

from kptoolkit.registry.registries import KINDS, ComponentInfo, get_registry, list_components


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `kptoolkit list`."""
    parser.add_argument("pattern", nargs="?", default="*", help="glob on names, e.g. 'heat*'")
    parser.add_argument("--kind", choices=KINDS, help="only this kind of component")
    parser.add_argument(
        "--check",
        action="store_true",
        help="import every component to prove it loads (slower; the default reads sources only)",
    )


def format_table(infos: list[ComponentInfo]) -> str:
    """Aligned text table of components; broken ones say why they cannot load."""
    rows = [("KIND", "NAME", "ORIGIN", "DESCRIPTION")]
    for info in infos:
        text = info.description if info.ok else f"BROKEN: {info.problem}"
        rows.append((get_registry(info.kind).singular, info.name, info.origin, text))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ).rstrip()


def run(args: argparse.Namespace) -> int:
    """List components; exit code 0 even when some plugins are broken (they are marked)."""
    infos = list_components(args.kind, args.pattern, load=args.check)
    if not infos:
        where = f" {args.kind}" if args.kind else " components"
        print(f"no{where} match '{args.pattern}'")
        return 0
    print(format_table(infos))
    broken = [info for info in infos if not info.ok]
    if broken:
        print(
            f"\n{len(broken)} component(s) cannot load; "
            "`kptoolkit info NAME` imports one and prints the full cause."
        )
    return 0
