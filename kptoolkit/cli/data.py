"""`kptoolkit data synth|check|carve`: make the synthetic puppets, check any dataset folder, or
carve a validation split out of a training split."""

from __future__ import annotations

import argparse
import time


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the `synth` and `check` actions."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    synth = actions.add_parser(
        "synth", help="render the synthetic puppets dataset (FOMM layout + ground-truth joints)"
    )
    synth.add_argument("--out", required=True, help="output folder (new, or an earlier synth)")
    synth.add_argument("--videos", type=int, default=250, help="total videos (train + test)")
    synth.add_argument("--frames", type=int, default=32, help="frames per video")
    synth.add_argument("--size", type=int, default=64, choices=(64, 128, 256), help="pixels")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--test-fraction", type=float, default=0.2, help="share of test videos")
    synth.add_argument("--workers", type=int, default=2, help="processes (default 2)")

    carve = actions.add_parser(
        "carve",
        help="a validation dataset from a training split: held-out identities become its test/",
    )
    carve.add_argument("root", help="dataset folder (its train/ split is carved)")
    carve.add_argument("--out", required=True, help="the validation dataset's folder")
    carve.add_argument(
        "--fraction", type=float, default=0.2, help="share of training videos held out"
    )

    check = actions.add_parser("check", help="decode every frame; report counts and bad files")
    check.add_argument("root", help="dataset folder (train/ and test/, or flat)")
    check.add_argument(
        "--frame-width", type=int, default=None, help="frame width of stacked images"
    )
    check.add_argument(
        "--strict", action="store_true", help="exit non-zero on any unreadable file too"
    )


def run(args: argparse.Namespace) -> int:
    """Dispatch to synth, carve or check."""
    return {"synth": _synth, "carve": _carve, "check": _check}[args.action](args)


def _carve(args: argparse.Namespace) -> int:
    from kptoolkit.data.validation import carve_validation

    summary = carve_validation(args.root, args.out, args.fraction)
    counts = {split: len(names) for split, names in summary["videos"].items()}
    print(
        f"carved {args.out}: {counts['train']} train and {counts['test']} validation videos "
        f"(test/) from the training split of {summary['source']}; its test split was not read"
    )
    return 0


def _synth(args: argparse.Namespace) -> int:
    from kptoolkit.data.puppets.writer import generate_dataset

    start = time.perf_counter()
    manifest = generate_dataset(
        args.out,
        videos=args.videos,
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        test_fraction=args.test_fraction,
        workers=args.workers,
        progress=True,
    )
    counts = ", ".join(f"{len(v)} {split}" for split, v in manifest["videos"].items())
    print(
        f"wrote {counts} videos x {args.frames} frames at {args.size}px to {args.out} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from kptoolkit.data.check import check_dataset, format_report

    report = check_dataset(args.root, frame_width=args.frame_width, progress=True)
    print(format_report(report))
    if not report.usable:
        return 1
    return 1 if args.strict and report.unreadable else 0
