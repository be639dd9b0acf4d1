"""`kptoolkit config show|validate|import`: print the resolved config, check it, or convert an
official FOMM-family YAML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kptoolkit.config.schema import (
    ExperimentConfig,
    dump_config,
    load_config,
)
from kptoolkit.errors import ConfigError
from kptoolkit.utils.atomic import atomic_write_text


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """The shared `--set key.path=value` option (repeatable)."""
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="extend",
        nargs="+",
        default=[],
        help="override config values, e.g. --set train.lr=1e-4 data.frame_size=128",
    )


def add_component_arguments(parser: argparse.ArgumentParser) -> None:
    """`--masker` / `--generator`: run other components than the config's (as `train` does)."""
    parser.add_argument("--masker", help="the masker instead of the config's")
    parser.add_argument(
        "--generator", help="the generator instead of the config's (with its natural masker)"
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the `show`, `validate` and `import` actions."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    show = actions.add_parser("show", help="print the resolved config as YAML")
    show.add_argument("file", nargs="?", help="config YAML (default: the built-in synthetic-64)")
    add_component_arguments(show)
    add_set_argument(show)
    validate = actions.add_parser(
        "validate", help="check keys, values, component names and their parameters"
    )
    validate.add_argument("file", nargs="?", help="config YAML (default: the built-in one)")
    add_component_arguments(validate)
    add_set_argument(validate)
    convert = actions.add_parser(
        "import",
        help="convert an official FOMM / keypoint-mask / perturbed-mask YAML to a kptoolkit one",
        description="Convert an official first-order-model, keypoint-mask or perturbed-mask "
        "config. The kptoolkit YAML goes to stdout (or --out); what it cannot represent is "
        "printed as warnings on stderr and kept as comments at the top of the YAML.",
    )
    convert.add_argument("file", help="the official config YAML")
    convert.add_argument("--out", metavar="OUT.yaml", help="write the kptoolkit YAML here")


def resolve(
    file: str | None,
    overrides: list[str],
    masker: str | None = None,
    generator: str | None = None,
) -> ExperimentConfig:
    """The config from `file` (or the built-in default) with the chosen components, their
    presets written out and overrides applied."""
    from kptoolkit.experiment.components import apply_with_presets, choose_components

    config = ExperimentConfig() if file is None else load_config(file)
    return apply_with_presets(choose_components(config, masker, generator), overrides)


def run_import(args: argparse.Namespace) -> int:
    """Convert an official config; warnings and notes go to stderr."""
    from kptoolkit.config.importing import FAMILY_LABELS, import_official_file, render_imported

    result = import_official_file(args.file)
    text = render_imported(result, Path(args.file).name)
    print(
        f"kptoolkit: detected {FAMILY_LABELS[result.family]} ({result.evidence})", file=sys.stderr
    )
    for note in result.notes:
        print(f"kptoolkit: note: {note}", file=sys.stderr)
    for warning in result.warnings:
        print(f"kptoolkit: warning: {warning}", file=sys.stderr)
    if args.out is None:
        print(text, end="")
        return 0
    out = Path(args.out)
    try:
        atomic_write_text(out, text)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc}") from None
    print(f"wrote {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Show, validate or import."""
    if args.action == "import":
        return run_import(args)
    config = resolve(args.file, args.overrides, args.masker, args.generator)
    if args.action == "show":
        source = f"{args.file} over " if args.file else ""
        print(f"# {source}the built-in synthetic-64 default, section by section", flush=True)
        print(dump_config(config), end="")
        return 0
    from kptoolkit.experiment.resolve import validate_components

    problems = validate_components(config)
    if problems:
        raise ConfigError("; ".join(problems))
    print(f"{args.file or 'built-in config'}: OK")
    return 0
