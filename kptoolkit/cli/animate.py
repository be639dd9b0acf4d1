"""`kptoolkit animate`: make a source image move like a driving video (streamed to an MP4)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kptoolkit.cli.options import add_inference_arguments, say_numerics


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the animation options."""
    parser.add_argument("--source", required=True, metavar="IMG", help="the source image")
    parser.add_argument(
        "--driving",
        required=True,
        metavar="VIDEO",
        help="the driving video (.mp4/.gif/.mov, a folder of frames, or a stacked image)",
    )
    parser.add_argument("--checkpoint", required=True, help="a kptoolkit run checkpoint (.pth)")
    parser.add_argument("--out", required=True, metavar="OUT.mp4", help="the output video")
    parser.add_argument(
        "--relative",
        action="store_true",
        help="relative motion: move the source keypoints by the driving motion since its first "
        "frame (maskers drawn from keypoints only, e.g. gaussian_circles, fomm_keypoints)",
    )
    parser.add_argument(
        "--adapt-scale",
        action="store_true",
        help="with --relative, scale the motion by the ratio of the keypoints' convex hulls",
    )
    add_inference_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Check the inputs, load the run, stream the animation and report its speed."""
    from kptoolkit.engine.prediction import InferenceError
    from kptoolkit.utils.atomic import check_outputs

    source, driving = Path(args.source), Path(args.driving)
    if not source.is_file():
        raise InferenceError(f"source image not found: {source}")
    if not driving.exists():
        raise InferenceError(f"driving video not found: {driving}")
    if args.adapt_scale and not args.relative:
        raise InferenceError("--adapt-scale only applies with --relative")
    if args.batch_size is not None and args.batch_size < 1:
        raise InferenceError(f"--batch-size must be >= 1, got {args.batch_size}")
    if Path(args.out).suffix.lower() != ".mp4":
        raise InferenceError(f"--out must name an .mp4 file, got {args.out}")
    check_outputs([args.out])  # before the checkpoint loads

    import torch

    from kptoolkit.engine.animation import animate, load_source
    from kptoolkit.engine.checkpoints import load_run
    from kptoolkit.engine.prediction import check_relative, inference_numerics

    load_source(source, None)  # an unreadable source fails now, before the checkpoint loads
    config, models = load_run(args.checkpoint)
    if args.relative:
        check_relative(models)
    models.to("cuda" if torch.cuda.is_available() else "cpu")
    numerics = inference_numerics(models, args.precision or config.eval.precision)
    say_numerics("animating", numerics)
    info = animate(
        models,
        source,
        driving,
        args.out,
        relative=args.relative,
        adapt_scale=args.adapt_scale,
        batch_size=args.batch_size or config.eval.batch_size,
        frame_size=config.data.frame_size,
        progress=True,
        precision=numerics,
        compile=args.compile,
    )
    height, width = info["size"]
    print(
        f"wrote {info['frames']} frames ({width}x{height}, {info['fps']:g} fps) to {info['out']} "
        f"in {info['seconds']:.1f} s ({info['frames_per_second']:.1f} frames/s)"
    )
    return 0
