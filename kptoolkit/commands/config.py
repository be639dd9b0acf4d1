"""`kptoolkit config show|validate`: print the resolved config or check it."""

from __future__ import annotations

import argparse

from kptoolkit.config import (
    ExperimentConfig,
    apply_overrides,
    dump_config,
    load_config,
    validate_components,
)
from kptoolkit.errors import ConfigError


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


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the `show` and `validate` actions."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    show = actions.add_parser("show", help="print the resolved config as YAML")
    show.add_argument("file", nargs="?", help="config YAML (default: the built-in synthetic-64)")
    add_set_argument(show)
    validate = actions.add_parser(
        "validate", help="check keys, values, component names and their parameters"
    )
    validate.add_argument("file", nargs="?", help="config YAML (default: the built-in one)")
    add_set_argument(validate)


def resolve(file: str | None, overrides: list[str]) -> ExperimentConfig:
    """The config from `file` (or the built-in default) with overrides applied."""
    if file is None:
        return apply_overrides(ExperimentConfig(), overrides)
    return load_config(file, overrides)


def run(args: argparse.Namespace) -> int:
    """Show or validate."""
    config = resolve(args.file, args.overrides)
    if args.action == "show":
        print(dump_config(config), end="")
        return 0
    problems = validate_components(config)
    if problems:
        raise ConfigError("; ".join(problems))
    print(f"{args.file or 'built-in config'}: OK")
    return 0
