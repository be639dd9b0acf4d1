"""The `kptoolkit` command line: parses arguments and hands over to one command module.

Each subcommand lives in `kptoolkit.cli.<module>` with `configure(parser)` and
`run(args) -> int`; command modules import heavy dependencies (torch) inside `run`, so
`kptoolkit --help` and `kptoolkit list` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from kptoolkit import __version__
from kptoolkit.errors import KptoolkitError, file_system_error

# (subcommand, module in kptoolkit.cli, one-line help). Later subcommands add a row here.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("list", "list_components", "list registered components (maskers, generators, ...)"),
    ("info", "info", "show one component: origin, parameters, docs, or why it cannot load"),
    ("config", "config", "show, validate, or import (from FOMM YAML) an experiment config"),
    ("data", "data", "synthesise the puppet dataset, or check a dataset folder"),
    ("train", "train", "train a masker x generator pair (torchrun for several processes)"),
    ("reconstruct", "reconstruct", "reconstruct a run's test videos: PNG/MP4 outputs and L1"),
    ("animate", "animate", "animate a source image with a driving video (streamed to MP4)"),
    ("metrics", "metrics", "score generated videos against real ones (L1, PSNR, SSIM, AKD, ...)"),
    ("bench", "bench", "train variants and baselines under one budget; print the results table"),
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand configured."""
    parser = argparse.ArgumentParser(
        prog="kptoolkit",
        description="Image animation with keypoint masks: list components, configure, train, "
        "reconstruct, animate and benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"kptoolkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(f"kptoolkit.cli.{module_name}")
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.configure(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KptoolkitError as exc:
        print(f"kptoolkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kptoolkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `kptoolkit list | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        line = file_system_error(exc)
        if line is None:
            raise
        print(f"kptoolkit: error: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
