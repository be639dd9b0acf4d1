"""`kptoolkit bench`: train variants and baselines under one budget and print the results table."""

from __future__ import annotations

import argparse

from kptoolkit.bench.defaults import (
    DEFAULT_BASELINES,
    DEFAULT_GENERATORS,
    DEFAULT_MASKERS,
    PROFILE_NAMES,
)
from kptoolkit.cli.options import add_precision_argument, parse_key_values
from kptoolkit.config.schema import PRECISIONS

EXAMPLES = """examples:
  kptoolkit bench                      # the quick profile, one row at a time
  kptoolkit bench --jobs auto          # rows side by side: a worker per CPU thread or GPU
  # a SLURM job per row and seed (pip install 'kptoolkit[slurm]'):
  kptoolkit bench --launcher submitit --launcher-set partition=gpu gpus_per_job=1 timeout_min=600
  # a Ray task per row and seed (pip install 'kptoolkit[ray]'):
  kptoolkit bench --launcher ray --launcher-set address=auto num_gpus=1
"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of `kptoolkit bench`."""
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--masker",
        default=",".join(DEFAULT_MASKERS),
        help="masker(s) of the variants, comma separated (default: heatmap_sum)",
    )
    parser.add_argument(
        "--generator",
        default=",".join(DEFAULT_GENERATORS),
        help="generator(s) of the variants, comma separated (default: two_stage)",
    )
    parser.add_argument(
        "--baselines",
        default=",".join(DEFAULT_BASELINES),
        help="baseline generators with their natural maskers (default: fomm,x2face; '' for none)",
    )
    parser.add_argument(
        "--profile",
        default="quick",
        choices=PROFILE_NAMES,
        help="micro: a smoke run; quick: the CPU default (about 30 min on 2 cores with native "
        "bfloat16); standard: "
        "the published generators at 16x the quick steps (hours on a CPU); full: a paper "
        "config's own schedule, for a GPU (needs --config)",
    )
    parser.add_argument(
        "--dataset",
        metavar="DIR|NAME",
        help="a FOMM-layout folder or a registered dataset (default: the synthetic puppets, "
        "rendered on first use)",
    )
    parser.add_argument(
        "--kp-checkpoint",
        metavar="FILE",
        help="pretrained keypoint detector for the keypoint maskers (an official FOMM "
        "checkpoint or a kptoolkit run); default: a FOMM detector prior, trained once per "
        "dataset and cached",
    )
    parser.add_argument("--config", metavar="FILE", help="base experiment config (YAML)")
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every row, e.g. train.steps=200",
    )
    parser.add_argument(
        "--pose-evaluator",
        metavar="NAME",
        help="pose evaluator for AKD / MKR (default: synthetic_pose on synthetic data, else "
        "none); 'none' to skip",
    )
    parser.add_argument(
        "--id-evaluator",
        metavar="NAME",
        help="identity evaluator for AED (default: synthetic_id on synthetic data, else none)",
    )
    parser.add_argument(
        "--seeds",
        metavar="S,S,...",
        help="train every row once per seed (e.g. 0,1,2) and report the mean, the bootstrap "
        "interval and the spread across seeds (default: the config's seed)",
    )
    parser.add_argument(
        "--oracle",
        action="store_true",
        help="on data with ground-truth joints (the synthetic puppets), add the oracle row: "
        "two_stage driven by circles at the true joints, the keypoint masks' upper bound",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument(
        "--out", metavar="DIR", help="output folder (default: bench-results/<profile>)"
    )
    add_precision_argument(
        parser,
        "the config's eval.precision, where auto means fp32: the table scores exact "
        "reconstructions unless asked (the training precision is train.precision, auto: "
        "bf16 where the CPU runs it natively, else fp32)",
        choices=PRECISIONS,
    )
    parser.add_argument(
        "--jobs",
        default="1",
        metavar="N|auto",
        help="training runs at once, each in its own worker process with its share of the "
        "threads (default 1: one run at a time with every thread; auto: on a CPU one per "
        "thread up to the runs to train, on a GPU 1); the evaluators and the detector prior "
        "train before them with every thread",
    )
    parser.add_argument(
        "--launcher",
        default="local",
        metavar="NAME",
        help="where the rows train: local (this machine, --jobs), submitit (a SLURM job per "
        "row and seed; cluster=local runs them as local processes) or ray (a Ray task per row "
        "and seed), or a plugin's launcher (kptoolkit list --kind launchers)",
    )
    parser.add_argument(
        "--launcher-set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="a launcher parameter, e.g. partition=gpu gpus_per_job=1 timeout_min=600 "
        "(submitit) or address=auto num_gpus=1 (ray); repeatable",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_seeds(text: str | None) -> list[int] | None:
    """'0,1,2' -> [0, 1, 2]; None stays None; anything else (an empty item included, as in
    '0,,1' or '0,') is a ConfigError."""
    if text is None:
        return None
    from kptoolkit.errors import ConfigError

    if not text.strip():
        raise ConfigError("--seeds is empty")
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise ConfigError(f"--seeds has an empty item in {text!r}: give integers like 0,1,2")
    try:
        return [int(item) for item in items]
    except ValueError:
        raise ConfigError(f"--seeds takes integers separated by commas, got {text!r}") from None


def parse_jobs(text: str) -> int | None:
    """'auto' -> None, '2' -> 2; anything else (or below 1) is a ConfigError."""
    from kptoolkit.errors import ConfigError

    if text.strip().lower() == "auto":
        return None
    try:
        jobs = int(text)
    except ValueError:
        raise ConfigError(f"--jobs takes a number of runs or 'auto', got {text!r}") from None
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    return jobs


def run(args: argparse.Namespace) -> int:
    """Run every stage, print the table and where the outputs are."""
    from kptoolkit.bench.plan import BenchOptions, split_names
    from kptoolkit.bench.report.formats import published_markdown
    from kptoolkit.bench.runner import Bench

    options = BenchOptions(
        maskers=split_names(args.masker),
        generators=split_names(args.generator),
        baselines=split_names(args.baselines),
        profile=args.profile,
        out=args.out,
        dataset=args.dataset,
        kp_checkpoint=args.kp_checkpoint,
        config=args.config,
        overrides=list(args.overrides)
        + ([f"eval.precision={args.precision}"] if args.precision else []),
        pose_evaluator=args.pose_evaluator,
        id_evaluator=args.id_evaluator,
        device=args.device,
        seeds=parse_seeds(args.seeds),
        oracle=args.oracle,
        progress=not args.no_progress,
        jobs=parse_jobs(args.jobs),
        launcher=args.launcher,
        launcher_params=parse_key_values(args.launcher_set, "--launcher-set"),
    )
    outcome = Bench(options).run()
    print()
    print(outcome.report)
    print()
    print(published_markdown())
    print()
    print(f"bench finished in {outcome.seconds / 60:.1f} min; outputs in {outcome.out_dir}:")
    for path in outcome.files:
        print(f"  {path}")
    return 0
