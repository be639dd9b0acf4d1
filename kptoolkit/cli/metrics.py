"""`kptoolkit metrics`: score generated videos against real ones (PNG folders, stacked PNGs),
or two pose-evaluation tables (pickles of the public scripts' `extract.py`)."""

from __future__ import annotations

import argparse

DEFAULT_METRICS = ("l1", "psnr", "ssim")
BY_KIND = {"pose": ("akd", "mkr"), "identity": ("aed",)}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `kptoolkit metrics`."""
    parser.add_argument("--real", help="folder of real test videos")
    parser.add_argument("--fake", help="folder of generated videos (e.g. png/)")
    parser.add_argument(
        "--real-table",
        metavar="PKL",
        help="pose-evaluation table of the real videos (instead of --real/--fake; with "
        "--fake-table): keypoints give AKD and MKR, embeddings give AED",
    )
    parser.add_argument("--fake-table", metavar="PKL", help="the generated videos' table")
    parser.add_argument(
        "--export-tables",
        metavar="DIR",
        help="also write the evaluators' outputs as pose-evaluation tables (pose_gt.pkl, "
        "pose_gen.pkl, id_gt.pkl, id_gen.pkl) for the public scripts",
    )
    parser.add_argument(
        "--evaluator",
        action="append",
        default=[],
        help="pose / identity evaluator for AKD, MKR, AED (repeatable), e.g. synthetic_pose",
    )
    parser.add_argument(
        "--evaluator-set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="parameters for the evaluators, e.g. root=data/puppets",
    )
    parser.add_argument("--metrics", help="comma list (default: l1,psnr,ssim + evaluator ones)")
    parser.add_argument(
        "--average",
        choices=("frames", "videos"),
        default="frames",
        help="frames: every frame of every video pooled (the published protocol, default); "
        "videos: each video's mean, then the mean over videos",
    )
    parser.add_argument("--frame-width", type=int, help="frame width of stacked images")
    parser.add_argument("--batch-size", type=int, default=32)


def _check_sources(args: argparse.Namespace) -> bool:
    """True for tables, False for folders; a ConfigError for a mix or a half pair."""
    from kptoolkit.errors import ConfigError

    folders, table_pair = (args.real, args.fake), (args.real_table, args.fake_table)
    if any(table_pair):
        if not all(table_pair):
            raise ConfigError("give both --real-table and --fake-table")
        if any(folders) or args.evaluator or args.export_tables:
            raise ConfigError(
                "--real-table/--fake-table score tables alone: drop --real, --fake, --evaluator "
                "and --export-tables"
            )
        return True
    if not all(folders):
        raise ConfigError("give --real and --fake folders (or --real-table and --fake-table)")
    return False


def run(args: argparse.Namespace) -> int:
    """Build metrics and evaluators, score, print one line per metric."""
    from kptoolkit.cli.options import parse_key_values
    from kptoolkit.engine.evaluate import evaluate_folders, evaluate_tables
    from kptoolkit.metrics.tables import import_table, is_keypoint_table
    from kptoolkit.registry.registries import EVALUATORS, METRICS

    if _check_sources(args):
        kind = "pose" if is_keypoint_table(import_table(args.real_table)) else "identity"
        names = _names(args.metrics, BY_KIND[kind])
        metrics = {name: METRICS.create(name) for name in names}
        evaluation = evaluate_tables(args.real_table, args.fake_table, metrics)
    else:
        params = parse_key_values(args.evaluator_set, "--evaluator-set")
        evaluators = [EVALUATORS.create(name, **params) for name in args.evaluator]
        extra = [n for e in evaluators for n in BY_KIND.get(e.kind, ())]
        names = _names(args.metrics, [*DEFAULT_METRICS, *extra])
        metrics = {name: METRICS.create(name) for name in names}
        evaluation = evaluate_folders(
            args.real,
            args.fake,
            metrics,
            evaluators,
            args.batch_size,
            args.frame_width,
            export_tables=args.export_tables,
        )
    for name, value in evaluation.values(args.average).items():
        print(f"{name:>6}  {value:.6f}")
    frames = max((int(s.counts.sum()) for s in evaluation.scores.values()), default=0)
    videos = len(next(iter(evaluation.scores.values())).names)
    how = "frames pooled" if args.average == "frames" else "per-video means averaged"
    print(f"{videos} videos, {frames} frames ({how})")
    if evaluation.missing:
        shown = ", ".join(evaluation.missing[:5])
        print(f"no generated video for {len(evaluation.missing)} real one(s): {shown}")
    for path in evaluation.tables:
        print(f"wrote {path}")
    return 0


def _names(chosen: str | None, default: list[str] | tuple[str, ...]) -> list[str]:
    if chosen:
        return [n.strip() for n in chosen.split(",") if n.strip()]
    return list(default)
