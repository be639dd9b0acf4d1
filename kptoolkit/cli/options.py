"""Command-line options shared by several subcommands."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from kptoolkit.config.schema import AUTO, PRECISION_CHOICES

if TYPE_CHECKING:
    from kptoolkit.runtime.precision import Numerics


def add_precision_argument(
    parser: argparse.ArgumentParser, default_text: str, choices: tuple[str, ...] = PRECISION_CHOICES
) -> None:
    """Add `--precision auto|fp32|bf16|fp16` (inference precision; see
    `kptoolkit.runtime.precision`)."""
    auto = (
        "auto (bf16 where the CPU runs bfloat16 natively, i.e. AVX-512 BF16 or AMX, else "
        "fp32; on a GPU bf16, or fp16 without bfloat16), "
        if AUTO in choices
        else ""
    )
    parser.add_argument(
        "--precision",
        choices=choices,
        default=None,
        help=f"inference precision: {auto}fp32 (exact), bf16 (autocast: about 2x faster than "
        "fp32 with native bfloat16, but 2-7x SLOWER on CPUs without it, e.g. AVX2-only ones; "
        "most pixels within a level or two of fp32, X2Face's up to about a dozen), fp16 (CUDA "
        f"only); default: {default_text}",
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


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """Add what every command that runs a trained run's networks takes: `--batch-size`,
    `--precision` (default: the run's own) and `--compile`."""
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="B",
        help="frames per forward pass (default: the run's eval.batch_size)",
    )
    add_precision_argument(parser, "the run's eval.precision (auto unless set)")
    add_compile_argument(parser)


def say_numerics(doing: str, numerics: Numerics) -> None:
    """Print what a command runs at ('reconstructing in bf16, channels_last (...); <hardware>'),
    and the warning when an explicit bf16 is emulated here."""
    print(f"{doing} in {numerics.describe()}; {numerics.hardware.summary()}")
    warning = numerics.warning()
    if warning:
        print(f"kptoolkit: {warning}")


def parse_key_values(items: list[str], option: str) -> dict[str, Any]:
    """['partition=gpu', 'gpus_per_job=1'] -> {'partition': 'gpu', 'gpus_per_job': 1} (values
    read as YAML scalars); an item without '=' is a ConfigError."""
    from kptoolkit.config.schema import parse_override_value
    from kptoolkit.errors import ConfigError

    found: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} '{item}' is not of the form key=value")
        found[key.strip()] = parse_override_value(value)
    return found
