"""`kptoolkit info NAME`: import one component and describe it, or say why it cannot load."""

from __future__ import annotations

import argparse
import inspect

from kptoolkit.errors import UnknownComponentError
from kptoolkit.registry.registries import KINDS, REGISTRIES, get_registry


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `kptoolkit info`."""
    parser.add_argument("name", help="component name, e.g. heatmap_sum")
    parser.add_argument("--kind", choices=KINDS, help="the kind, when a name exists in several")


def _parameters(obj: object) -> list[str]:
    try:
        signature = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return []
    lines = []
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = "" if p.default is p.empty else f" = {p.default!r}"
        annotation = "" if p.annotation is p.empty else f": {p.annotation}"
        lines.append(f"  {p.name}{annotation}{default}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Print the component's details; exit 1 when it cannot be imported."""
    kinds = [args.kind] if args.kind else [k for k, r in REGISTRIES.items() if args.name in r]
    if not kinds:
        all_names = sorted({n for r in REGISTRIES.values() for n in r.names()})
        raise UnknownComponentError(
            f"no component named '{args.name}'; registered: {', '.join(all_names) or 'none'}"
        )
    status = 0
    for kind in kinds:
        registry = get_registry(kind)
        info = registry.info(args.name, load=True)
        print(f"{registry.singular} '{info.name}'")
        print(f"  origin: {info.origin}")
        print(f"  target: {info.target}")
        if not info.ok:
            print(f"  cannot load: {info.problem}")
            status = 1
            continue
        obj = registry.get(args.name)
        params = _parameters(obj)
        print("parameters:" if params else "parameters: none")
        for line in params:
            print(line)
        doc = inspect.getdoc(obj)
        if doc:
            print()
            print(doc)
    return status
