"""`kptoolkit reconstruct`: the evaluation protocol on a run's test videos (PNG, MP4, L1 CSV)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kptoolkit.cli.options import add_inference_arguments, say_numerics

if TYPE_CHECKING:
    from kptoolkit.engine.reconstruction import ReconstructionResult

MAX_TABLE_ROWS = 20


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the reconstruction options."""
    parser.add_argument("--checkpoint", required=True, help="a kptoolkit run checkpoint (.pth)")
    parser.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="test videos from this FOMM-layout folder (default: the run's dataset, test split)",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output folder (default: <run dir>/reconstruction)",
    )
    parser.add_argument(
        "--max-videos", type=int, default=None, metavar="N", help="only the first N test videos"
    )
    parser.add_argument("--no-mp4", action="store_true", help="skip the MP4 previews")
    add_inference_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Load the run, reconstruct its test videos, write the outputs and print the L1 table."""
    import torch

    from kptoolkit.engine.checkpoints import load_run
    from kptoolkit.engine.prediction import InferenceError, inference_numerics
    from kptoolkit.engine.reconstruction import (
        build_test_dataset,
        check_reconstruction_outputs,
        default_output_dir,
        reconstruct,
    )

    for name in ("max_videos", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InferenceError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    config, models = load_run(args.checkpoint)
    out_dir = args.out or default_output_dir(args.checkpoint)
    save_png, save_mp4 = config.eval.save_png, config.eval.save_mp4 and not args.no_mp4
    check_reconstruction_outputs(out_dir, save_png, save_mp4)  # before anything is written
    models.to("cuda" if torch.cuda.is_available() else "cpu")
    dataset = build_test_dataset(config, args.data)
    numerics = inference_numerics(models, args.precision or config.eval.precision)
    say_numerics("reconstructing", numerics)
    result = reconstruct(
        models,
        dataset,
        out_dir,
        batch_size=args.batch_size or config.eval.batch_size,
        max_videos=args.max_videos if args.max_videos is not None else config.eval.max_videos,
        save_png=save_png,
        save_mp4=save_mp4,
        progress=True,
        precision=numerics,
        compile=args.compile,
    )
    print(format_table(result))
    if not result.videos:
        raise InferenceError(
            f"no test video could be reconstructed ({len(result.skipped)} unreadable)"
        )
    return 0


def format_table(result: ReconstructionResult) -> str:
    """The per-video L1 table (the first rows when there are many) and the overall mean."""
    lines = []
    if result.videos:
        width = max(len("video"), *(len(v.name) for v in result.videos[:MAX_TABLE_ROWS]))
        lines.append(f"{'video':<{width}}  {'frames':>6}  {'l1':>8}")
        for video in result.videos[:MAX_TABLE_ROWS]:
            lines.append(f"{video.name:<{width}}  {video.frames:>6}  {video.l1:>8.4f}")
        if len(result.videos) > MAX_TABLE_ROWS:
            lines.append(f"... {len(result.videos) - MAX_TABLE_ROWS} more in {result.csv_path}")
    lines.append(
        f"L1 {result.l1:.4f} over {len(result.videos)} videos ({result.frames} frames), "
        "frames of all videos pooled (the published protocol)"
    )
    if result.skipped:
        lines.append(f"skipped {len(result.skipped)} unreadable: {', '.join(result.skipped)}")
    lines.append(f"wrote {result.csv_path}" + _written(result))
    return "\n".join(lines)


def _written(result: ReconstructionResult) -> str:
    parts = [name for name in ("png", "mp4") if (result.out_dir / name).is_dir()]
    return f" and {', '.join(p + '/' for p in parts)}" if parts else ""
