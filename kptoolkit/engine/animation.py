"""Animation: a source image driven by the motion of a driving video, written to an MP4.

Animation streams a driving video of any length: a chunk of frames is decoded, generated and
written to the MP4 before the next is read, so memory does not grow with the video's length. The
frames are predicted through `kptoolkit.engine.prediction` (eval mode, the layout and precision
resolved for the device unless given).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from kptoolkit.data.datasets import frames_to_tensor, resize_frames
from kptoolkit.data.video_io import (
    Mp4Writer,
    VideoReadError,
    cheap_frame_count,
    iter_frames,
    load_image,
    video_fps,
    video_kind,
)
from kptoolkit.engine.prediction import (
    InferenceError,
    RelativeMotion,
    check_relative,
    chunks,
    compute_structure,
    first_of,
    generate,
    inference_models,
    inference_numerics,
    model_device,
    quantize,
    to_model_input,
)
from kptoolkit.runtime.precision import Numerics
from kptoolkit.utils.atomic import check_outputs, removed_on_failure

if TYPE_CHECKING:
    from kptoolkit.experiment.build import Models

DEFAULT_FPS = 25.0


def load_source(
    source: str | Path | np.ndarray | torch.Tensor, size: tuple[int, int] | None
) -> torch.Tensor:
    """A source image as (1,3,H,W) float in [0,1], resized to `size` if given.

    Accepts a path to an image file, a uint8 (H,W,3) array, or a float (3,H,W) tensor in [0,1].
    """
    if isinstance(source, torch.Tensor):
        frame = source.detach().float().cpu()
        if frame.dim() == 3:
            frame = frame[None]
        return resize_frames(frame, size)
    if isinstance(source, np.ndarray):
        return frames_to_tensor(source[None], size)
    path = Path(source)
    if not path.is_file():
        raise InferenceError(f"source image not found: {path}")
    return frames_to_tensor(load_image(path)[None], size)


def _check_driving(path: Path) -> None:
    if not path.exists():
        raise InferenceError(f"driving video not found: {path}")
    if video_kind(path) is None:
        raise InferenceError(
            f"driving video {path} is not a video file (.mp4, .gif, .mov, ...), a folder of "
            "frames, or an image of frames stacked horizontally"
        )


def animate(
    models: Models,
    source_image: str | Path | np.ndarray | torch.Tensor,
    driving_video_path: str | Path,
    out_path: str | Path,
    relative: bool = False,
    adapt_scale: bool = False,
    batch_size: int = 16,
    fps: float | None = None,
    frame_size: int | tuple[int, int] | None = None,
    frame_width: int | None = None,
    progress: bool = False,
    precision: str | Numerics = "auto",
    compile: bool = False,
) -> dict[str, Any]:
    """Animate `source_image` with the motion of a driving video; write an MP4 to `out_path`.

    The driving video is streamed: `batch_size` frames are decoded, generated and written before
    the next are read, so memory stays flat whatever its length. The source and the driving
    frames are resized to `frame_size` (the model's `data.frame_size`; None keeps the source's
    size). With `relative`, the source keypoints move by the driving motion since the first
    driving frame (FOMM's relative mode; `adapt_scale` scales it by the ratio of the keypoint
    convex hulls); the masker must support relative motion. Output fps: `fps`, else the driving
    video's (PyAV `average_rate`), else 25. `frame_width` is the frame width of a stacked-image
    driving video. Returns frames, fps, seconds, frames_per_second, out and size.
    """
    out_path = Path(out_path)
    driving_path = Path(driving_video_path)
    if adapt_scale and not relative:
        raise InferenceError("adapt_scale only applies to relative animation (relative=True)")
    if relative:
        check_relative(models)
    if batch_size < 1:
        raise InferenceError(f"batch size must be >= 1, got {batch_size}")
    numerics = inference_numerics(models, precision)  # checked before anything is written
    if out_path.suffix.lower() != ".mp4":
        raise InferenceError(f"the output must be an .mp4 file, got {out_path}")
    check_outputs([out_path])
    _check_driving(driving_path)
    if isinstance(frame_size, int):
        frame_size = (frame_size, frame_size)
    source = load_source(source_image, frame_size)
    size = (int(source.shape[-2]), int(source.shape[-1]))
    fps = fps or video_fps(driving_path) or DEFAULT_FPS
    total = cheap_frame_count(driving_path, frame_width) if progress else None

    start = time.perf_counter()
    with contextlib.closing(iter_frames(driving_path, frame_width)) as decoded:
        batches = chunks(decoded, batch_size)
        first = next(batches, None)  # an unreadable or empty video fails before any output
        if first is None:
            raise VideoReadError(f"driving video {driving_path} has no frames", driving_path)
        count = _animate_stream(
            models,
            source,
            itertools.chain([first], batches),
            out_path,
            size=size,
            fps=fps,
            relative=relative,
            adapt_scale=adapt_scale,
            progress=progress,
            total=total,
            precision=numerics,
            compile=compile,
        )
    seconds = time.perf_counter() - start
    return {
        "frames": count,
        "fps": fps,
        "seconds": seconds,
        "frames_per_second": count / seconds if seconds > 0 else math.inf,
        "out": str(out_path),
        "size": size,
    }


def _animate_stream(
    models: Models,
    source: torch.Tensor,
    batches: Iterable[list[np.ndarray]],
    out_path: Path,
    size: tuple[int, int],
    fps: float,
    relative: bool,
    adapt_scale: bool,
    progress: bool,
    total: int | None,
    precision: str | Numerics = "auto",
    compile: bool = False,
) -> int:
    """Generate and write each batch of driving frames in turn; the number of frames written.

    The MP4 is written under a temporary name and renamed when complete, so a failure leaves no
    partial output behind (nor the folders made for it). `total` sizes the progress bar (None:
    unknown).
    """
    device = model_device(models)
    count = 0
    bar = tqdm(
        total=total,
        desc="animate",
        unit="frame",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        with (
            removed_on_failure() as created,
            inference_models(models, precision, compile),
            torch.inference_mode(),
            created.atomic_path(out_path, suffix=".mp4") as partial,
            Mp4Writer(partial, fps) as writer,
        ):
            source = to_model_input(source, device)
            source_structure = compute_structure(models, source)
            motion: RelativeMotion | None = None
            for frames in batches:
                driving = to_model_input(frames_to_tensor(np.stack(frames), size), device)
                del frames
                driving_structure = compute_structure(models, driving)
                if relative and motion is None:  # the first driving frame's structure, kept
                    motion = RelativeMotion(first_of(driving_structure), adapt_scale)
                prediction = generate(
                    models,
                    source,
                    source_structure,
                    driving,
                    "animation",
                    relative=motion,
                    driving_structure=driving_structure,
                )
                for frame in quantize(prediction).numpy():
                    writer.write(frame)
                count += driving.shape[0]
                bar.update(driving.shape[0])
    finally:
        bar.close()
    return count
