"""Command-line options shared by several subcommands."""

from __future__ import annotations

import argparse

from kptoolkit.config import PRECISIONS


def add_precision_argument(parser: argparse.ArgumentParser, default_text: str) -> None:
    """Add `--precision fp32|bf16|fp16` (inference precision; see `kptoolkit.engine.precision`)."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="inference precision: fp32 (exact), bf16 (autocast, about 2x faster on CPUs with "
        "bfloat16 instructions; most pixels within a level or two of fp32, X2Face's up to about "
        f"a dozen), fp16 (CUDA only); default: {default_text}",
    )


def add_compile_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--compile` (run the networks through torch.compile)."""
    parser.add_argument(
        "--compile",
        action="store_true",
        help="run the masker and generator through torch.compile: each new batch shape "
        "compiles first (about a minute on a CPU), then runs somewhat faster; worth it for "
        "long videos only",
    )
