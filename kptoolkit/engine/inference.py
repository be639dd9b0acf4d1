"""Inference: reconstruction (the evaluation protocol) and animation, both streamed.

Reconstruction follows the protocol of FOMM-family papers: for each test video, frame 0 is the
source, and every frame (frame 0 included) is generated from the source and its own driving frame
(`task="reconstruction"`). Frames are streamed from the video in batches; the source structure is
computed once per video (it is row 0 of the first batch's driving structures, so it costs no
extra masker call). Outputs, under `out_dir`:

- `png/<video>.png`: the generated frames stacked horizontally, lossless 8-bit RGB (the layout of
  FOMM's `reconstruction.py`, read by the public pose-evaluation scripts with
  `extract.py --in_folder <out_dir>/png --is_video --image_shape H,W`). This is the only part
  that holds a whole video in memory: its uint8 frames (T x H x W x 3 bytes, twice that for a
  moment while they are stacked).
- `mp4/<video>.mp4`: previews, driving frame | reconstruction side by side, streamed (H.264:
  never evaluate on them).
- `reconstruction.csv`: `video,frames,l1` per video. L1 is the mean absolute difference in [0, 1]
  between the saved 8-bit frames (exactly what the PNGs hold) and the dataset's frames, averaged
  per frame, then over the frames of the video; the overall L1 pools the frames of all videos
  (the published protocol), i.e. it weighs each video by its frame count.

Animation streams a driving video of any length: a chunk of frames is decoded, generated and
written to the MP4 before the next is read, so memory does not grow with the video's length.

Networks run in eval mode in the channels_last layout (`kptoolkit.models.for_inference`, the
faster one on CPU) under `torch.inference_mode()`, at the chosen precision (`precision`: fp32
exact, or bf16 / fp16 autocast; `kptoolkit.engine.precision`).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from kptoolkit.atomic import atomic_path
from kptoolkit.data.datasets import SkippedVideoWarning, frames_to_tensor, resize_frames
from kptoolkit.data.video_io import (
    Mp4Writer,
    VideoReadError,
    count_frames,
    frame_files,
    iter_frames,
    load_image,
    metadata_frame_count,
    video_kind,
)
from kptoolkit.engine.precision import (
    autocast,
    channels_last_input,
    check_precision,
    module_device,
    to_float32,
)
from kptoolkit.errors import CompatibilityError, KptoolkitError
from kptoolkit.keypoints.relative import relative_structure
from kptoolkit.models import for_inference
from kptoolkit.structure import STRUCTURE_FIELDS, Structure

if TYPE_CHECKING:
    from kptoolkit.config import ExperimentConfig
    from kptoolkit.engine.experiment import Models

T = TypeVar("T")
DEFAULT_FPS = 25.0
CSV_NAME = "reconstruction.csv"
TASKS = ("reconstruction", "animation")


class InferenceError(KptoolkitError):
    """Reconstruction or animation cannot run with what it was given."""


# -- results -----------------------------------------------------------------------------------


@attrs.frozen
class VideoScore:
    """The reconstruction score of one video: its name, frame count and mean per-frame L1."""

    name: str
    frames: int
    l1: float


@attrs.define
class ReconstructionResult:
    """Per-video scores of a reconstruction run, where its outputs are, and what was skipped."""

    out_dir: Path
    videos: list[VideoScore] = attrs.field(factory=list)
    skipped: list[str] = attrs.field(factory=list)

    @property
    def l1(self) -> float:
        """Mean L1 over all reconstructed frames, videos pooled (NaN when there is none)."""
        if not self.frames:
            return math.nan
        return sum(v.l1 * v.frames for v in self.videos) / self.frames

    @property
    def frames(self) -> int:
        """Total number of reconstructed frames."""
        return sum(v.frames for v in self.videos)

    @property
    def csv_path(self) -> Path:
        """The `reconstruction.csv` written next to `png/` and `mp4/`."""
        return self.out_dir / CSV_NAME


@attrs.frozen
class RelativeMotion:
    """Relative animation settings: the first driving frame's structure (batch 1), scale rule."""

    first: Structure
    adapt_scale: bool = False


# -- models and tensors ------------------------------------------------------------------------


def _inference_modules(models: Models) -> list[nn.Module]:
    # the detector wrapper itself (not its inner module): a FrozenDetector stays in eval mode
    return [m for m in (models.generator, models.masker, models.detector) if m is not None]


def model_device(models: Models) -> torch.device:
    """The device of the generator's weights (where inputs must go)."""
    return module_device(models.generator)


def _is_channels_last(module: nn.Module) -> bool:
    weights = [p for p in module.parameters() if p.dim() == 4]
    return bool(weights) and all(
        p.is_contiguous(memory_format=torch.channels_last) for p in weights
    )


@contextlib.contextmanager
def inference_models(
    models: Models, precision: str = "fp32", compile: bool = False
) -> Iterator[Models]:
    """Eval mode, channels_last (`for_inference`) and the `precision`'s autocast for the
    duration; restored on exit. With `compile`, the masker and the generator are called through
    `torch.compile` meanwhile (each new input shape compiles first: about a minute on a CPU).

    Training modes come back as they were, and modules that were not channels_last before go
    back to the contiguous layout, so a training loop can call `reconstruct` between epochs.
    Structures and generated frames come back in float32 whatever the precision.
    """
    device = model_device(models)
    check_precision(precision, device)
    modules = _inference_modules(models)
    saved = [(m, {s: s.training for s in m.modules()}, _is_channels_last(m)) for m in modules]
    for module in modules:
        for_inference(module)
    masker, generator = models.masker, models.generator
    try:
        if compile:
            models.masker, models.generator = torch.compile(masker), torch.compile(generator)
        with autocast(precision, device):
            yield models
    finally:
        models.masker, models.generator = masker, generator
        for module, training, was_channels_last in saved:
            for sub, mode in training.items():
                sub.training = mode
            if not was_channels_last:
                module.to(memory_format=torch.contiguous_format)


def to_model_input(frames: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """(B,3,H,W) frames on `device` in the channels_last layout."""
    return frames.to(device).contiguous(memory_format=torch.channels_last)


def quantize(frames: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) float frames in [0,1] -> (B,H,W,3) uint8 on the CPU, rounding to nearest."""
    return (
        frames.detach().clamp(0.0, 1.0).mul(255.0).add(0.5).to(torch.uint8).permute(0, 2, 3, 1)
    ).cpu()


IMAGE_FIELDS = frozenset({"mask", "frame"})  # (B,C,h,w) maps: channels_last like the frames


def _map_structure(
    structure: Structure, fn: Callable[[torch.Tensor, bool], torch.Tensor]
) -> Structure:
    return Structure(
        **{
            name: None if (t := getattr(structure, name)) is None else fn(t, name in IMAGE_FIELDS)
            for name in STRUCTURE_FIELDS
        }
    )


_layout = channels_last_input  # (B,C,H,W) tensors in channels_last; others unchanged


def first_of(structure: Structure) -> Structure:
    """Sample 0 of a batched structure, keeping the batch dimension (batch 1), as a copy."""
    return _map_structure(structure, lambda t, _: t[:1].clone())


def expand_structure(structure: Structure, batch: int) -> Structure:
    """A batch-1 structure repeated to `batch` samples (masks and frames in channels_last)."""
    if _batch_of(structure) == batch:
        return structure

    def repeat(tensor: torch.Tensor, image: bool) -> torch.Tensor:
        repeated = tensor.expand(batch, *tensor.shape[1:]).contiguous()
        return _layout(repeated) if image else repeated

    return _map_structure(structure, repeat)


def _batch_of(structure: Structure) -> int | None:
    for name in STRUCTURE_FIELDS:
        tensor = getattr(structure, name)
        if tensor is not None:
            return int(tensor.shape[0])
    return None


def _expand_frames(frames: torch.Tensor, batch: int) -> torch.Tensor:
    if frames.shape[0] == batch:
        return frames
    return _layout(frames.expand(batch, *frames.shape[1:]).contiguous())


def needs_groundtruth(models: Models) -> bool:
    """True when the masker is drawn from ground-truth joints (the oracle)."""
    return bool(getattr(models.masker, "needs_groundtruth", False))


@torch.inference_mode()
def compute_structure(
    models: Models, frames: torch.Tensor, joints: torch.Tensor | None = None
) -> Structure:
    """The masker's structure of (B,3,H,W) frames (already on the models' device); `joints`
    (B, J, 2) are the frames' ground-truth joints, for maskers that draw them."""
    if needs_groundtruth(models):
        return to_float32(models.masker(_layout(frames), joints=joints))
    return to_float32(models.masker(_layout(frames)))


@torch.inference_mode()
def generate(
    models: Models,
    source: torch.Tensor,
    source_structure: Structure,
    driving: torch.Tensor,
    task: str = "animation",
    relative: RelativeMotion | None = None,
    driving_structure: Structure | None = None,
    output: str = "prediction",
) -> torch.Tensor:
    """Generate one frame per driving frame: (B,3,H,W) predictions in [0, 1].

    `source` (1 or B frames) and its structure are repeated to the driving batch. The driving
    structure is computed unless given; with `relative`, it is re-expressed relative to the
    source (`relative_structure`); then the masker's `driving_for_inference(..., task)` gives
    what the generator sees (e.g. the perturbed-mask baseline refines it for animation only).
    `output` names the generator output returned (e.g. FOMM's "deformed": the source warped by
    the flow alone). Call with models prepared by `inference_models`.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    driving = _layout(driving)
    batch = driving.shape[0]
    if driving_structure is None:
        driving_structure = compute_structure(models, driving)
    source = _expand_frames(_layout(source), batch)
    source_structure = expand_structure(source_structure, batch)
    if relative is not None:
        with torch.autocast(driving.device.type, enabled=False):  # keypoint arithmetic: fp32
            driving_structure = relative_structure(
                models.masker,
                source_structure,
                driving_structure,
                expand_structure(relative.first, batch),
                adapt_scale=relative.adapt_scale,
            )
    driving_structure = models.masker.driving_for_inference(
        source, source_structure, driving_structure, task=task
    )
    outputs = models.generator(source, source_structure, driving_structure)
    if output not in outputs:
        raise InferenceError(
            f"generator {type(models.generator).__name__} has no output {output!r} "
            f"(it gives {', '.join(sorted(outputs))})"
        )
    return to_float32(outputs[output])


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last may be shorter), consumed lazily."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


# -- reconstruction ----------------------------------------------------------------------------


def reconstruct(
    models: Models,
    dataset: Any,
    out_dir: str | Path,
    batch_size: int = 16,
    max_videos: int | None = None,
    save_png: bool = True,
    save_mp4: bool = True,
    progress: bool = True,
    mode: ReconstructionMode | None = None,
    precision: str = "fp32",
    compile: bool = False,
) -> ReconstructionResult:
    """Reconstruct every test video of `dataset` (FOMM protocol) and score it with L1.

    `dataset` is a test-split `FramesDataset` (or anything with `videos` entries that have a
    `name`, and `iter_video(entry)` streaming (3,H,W) frames in [0, 1]). Writes `png/`,
    `mp4/` and `reconstruction.csv` under `out_dir` (see the module docstring). A video that
    cannot be read is skipped with a warning and listed in `result.skipped`. `mode` selects a
    control instead of the protocol (driving by frame 0, another generator output).
    `precision`: fp32 (exact), bf16 or fp16 autocast (`kptoolkit.engine.precision`);
    `compile`: call the networks through `torch.compile` (see `inference_models`).
    """
    if not hasattr(dataset, "videos") or not hasattr(dataset, "iter_video"):
        raise InferenceError(
            f"{type(dataset).__name__} cannot be reconstructed: it needs `videos` and "
            "`iter_video(video)` (use a test-split FOMM-layout dataset)"
        )
    if batch_size < 1:
        raise InferenceError(f"batch size must be >= 1, got {batch_size}")
    check_precision(precision, model_device(models))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = list(dataset.videos)[:max_videos] if max_videos is not None else list(dataset.videos)
    result = ReconstructionResult(out_dir)
    bar = tqdm(videos, desc="reconstruct", unit="video", disable=not progress, dynamic_ncols=True)
    with inference_models(models, precision, compile):
        for video in bar:
            try:
                score = _reconstruct_video(
                    models, dataset, video, out_dir, batch_size, save_png, save_mp4, mode
                )
            except VideoReadError as exc:
                warnings.warn(
                    f"skipping unreadable video: {exc}", SkippedVideoWarning, stacklevel=2
                )
                result.skipped.append(video.name)
                continue
            result.videos.append(score)
            bar.set_postfix(l1=f"{result.l1:.4f}")
    _write_csv(result)
    return result


@attrs.frozen
class ReconstructionMode:
    """What a reconstruction feeds the generator and keeps of it.

    `static`: every frame is driven by frame 0 (the source's own structure), a control that
    shows what a model gives without any motion; `output`: the generator output kept (FOMM's
    "deformed" is the source warped by the predicted flow alone, before the decoder).
    """

    static: bool = False
    output: str = "prediction"


@attrs.frozen
class ReconstructedBatch:
    """One batch of a video's reconstruction: the source (frame 0), the driving frames, both
    structures and the prediction, all on the models' device."""

    source: torch.Tensor
    source_structure: Structure
    driving: torch.Tensor
    driving_structure: Structure
    prediction: torch.Tensor


@torch.inference_mode()
def reconstruction_batches(
    models: Models,
    frames: Iterable[torch.Tensor],
    batch_size: int,
    mode: ReconstructionMode | None = None,
    joints: np.ndarray | None = None,
) -> Iterator[ReconstructedBatch]:
    """Reconstruct a stream of (3,H,W) frames batch by batch, frame 0 being the source.

    The source structure is computed once, from the first batch. With a static `mode`, every
    frame is generated from frame 0's structure (the driving frames are still returned, as the
    frames to compare with). `joints` (T, J, 2) are the frames' ground-truth joints, for
    maskers that draw them. Call with models prepared by `inference_models`.
    """
    mode = mode or ReconstructionMode()
    device = model_device(models)
    source = source_structure = None
    start = 0
    for batch in chunks(frames, batch_size):
        driving = to_model_input(torch.stack(batch), device)
        batch_joints = None
        if joints is not None:
            batch_joints = torch.from_numpy(joints[start : start + len(batch)]).to(device)
        start += len(batch)
        if source is None or not mode.static:
            driving_structure = compute_structure(models, driving, batch_joints)
        if source is None:
            source, source_structure = driving[:1].clone(), first_of(driving_structure)
        if mode.static:
            driving_structure = expand_structure(source_structure, driving.shape[0])
        prediction = generate(
            models,
            source,
            source_structure,
            _expand_frames(source, driving.shape[0]) if mode.static else driving,
            "reconstruction",
            driving_structure=driving_structure,
            output=mode.output,
        )
        yield ReconstructedBatch(source, source_structure, driving, driving_structure, prediction)


def _reconstruct_video(
    models: Models,
    dataset: Any,
    video: Any,
    out_dir: Path,
    batch_size: int,
    save_png: bool,
    save_mp4: bool,
    mode: ReconstructionMode | None = None,
) -> VideoScore:
    name = video.name
    mp4_path = out_dir / "mp4" / f"{name}.mp4"
    partial = mp4_path.with_name(f".{name}.partial.mp4")
    stacked: list[np.ndarray] = []  # the PNG's frames, uint8: the only per-video growth
    l1_sum, count = 0.0, 0
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(Mp4Writer(partial)) if save_mp4 else None
        try:
            with torch.inference_mode():
                frames = dataset.iter_video(video)
                joints = dataset.joints_of(video) if needs_groundtruth(models) else None
                for step in reconstruction_batches(models, frames, batch_size, mode, joints):
                    driving = step.driving
                    generated = quantize(step.prediction)
                    real = driving.permute(0, 2, 3, 1).cpu()
                    l1 = (generated.float().div_(255.0) - real).abs_().mean(dim=(1, 2, 3))
                    l1_sum += float(l1.double().sum())
                    count += driving.shape[0]
                    generated_np = generated.numpy()
                    if save_png:
                        stacked.append(generated_np)
                    if writer is not None:
                        real_np = quantize(driving).numpy()
                        for real_frame, frame in zip(real_np, generated_np, strict=True):
                            writer.write(np.concatenate([real_frame, frame], axis=1))
            if count == 0:
                raise VideoReadError(f"{getattr(video, 'path', name)} has no frames")
        except BaseException:
            stack.close()
            partial.unlink(missing_ok=True)
            raise
    if save_mp4:
        os.replace(partial, mp4_path)
    if save_png:
        write_stacked_png(stacked, out_dir / "png" / f"{name}.png")
    return VideoScore(name, count, l1_sum / count)


def write_stacked_png(batches: list[np.ndarray], path: Path) -> None:
    """Write (T_i, H, W, 3) uint8 batches as one lossless PNG of the frames side by side."""
    frames = np.concatenate(batches)  # (T, H, W, 3)
    batches.clear()
    count, height, width, channels = frames.shape
    stacked = frames.transpose(1, 0, 2, 3).reshape(height, count * width, channels)
    del frames
    with atomic_path(path, suffix=".png") as partial:
        Image.fromarray(np.ascontiguousarray(stacked)).save(partial, format="PNG", compress_level=1)


def _write_csv(result: ReconstructionResult) -> None:
    with (
        atomic_path(result.csv_path) as partial,
        open(partial, "w", newline="", encoding="utf-8") as handle,
    ):
        writer = csv.writer(handle)
        writer.writerow(["video", "frames", "l1"])
        for score in result.videos:
            writer.writerow([score.name, score.frames, f"{score.l1:.8f}"])


def read_reconstruction_csv(path: str | Path) -> list[VideoScore]:
    """The per-video scores of a `reconstruction.csv`."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            VideoScore(row["video"], int(row["frames"]), float(row["l1"]))
            for row in csv.DictReader(handle)
        ]


def build_test_dataset(config: ExperimentConfig, root: str | Path | None = None) -> Any:
    """The experiment's test split at the model's frame size (`root`: any FOMM-layout folder)."""
    from kptoolkit.engine.experiment import build_dataset

    return build_dataset(config, "test", root)


def default_output_dir(checkpoint: str | Path) -> Path:
    """`<run dir>/reconstruction`: the run dir holds the checkpoint, or its `checkpoints/`."""
    parent = Path(checkpoint).resolve().parent
    run_dir = parent.parent if parent.name == "checkpoints" else parent
    return run_dir / "reconstruction"


# -- animation ---------------------------------------------------------------------------------


def video_fps(path: str | Path) -> float | None:
    """Frame rate of a video file (PyAV stream `average_rate`); None when unknown."""
    path = Path(path)
    if video_kind(path) != "video":
        return None
    try:
        import av

        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            rate = container.streams.video[0].average_rate
    except (OSError, ValueError, av.error.FFmpegError):
        return None
    if rate is None or not float(rate) > 0:
        return None
    return float(rate)


def cheap_frame_count(path: str | Path, frame_width: int | None = None) -> int | None:
    """Frame count when it needs no decoding (a folder listing, an image header, container
    metadata); None otherwise."""
    path = Path(path)
    kind = video_kind(path)
    try:
        if kind == "frames":
            return len(frame_files(path))
        if kind == "stacked":
            return count_frames(path, frame_width)
        if kind == "video":
            return metadata_frame_count(path)
    except Exception:  # any failure (PyAV's included): the count only sizes a progress bar
        return None
    return None


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


def check_relative(models: Models) -> None:
    """Raise a `CompatibilityError` unless the masker supports relative motion."""
    if not getattr(models.masker, "supports_relative", False):
        raise CompatibilityError(
            f"relative animation needs a masker that supports relative motion, and masker "
            f"'{models.masker_name}' does not (it draws its structure from pixels, not "
            "keypoints); animate in absolute mode (without --relative) or use a model trained "
            "with a relative-capable masker such as gaussian_circles or fomm_keypoints"
        )


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
    precision: str = "fp32",
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
    check_precision(precision, model_device(models))
    if out_path.suffix.lower() != ".mp4":
        raise InferenceError(f"the output must be an .mp4 file, got {out_path}")
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
            precision=precision,
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
    precision: str = "fp32",
    compile: bool = False,
) -> int:
    """Generate and write each batch of driving frames in turn; the number of frames written.

    The MP4 is written under a temporary name and renamed when complete, so a failure leaves no
    partial output behind. `total` sizes the progress bar (None: unknown).
    """
    device = model_device(models)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.stem}.partial.mp4")
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
            inference_models(models, precision, compile),
            torch.inference_mode(),
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
        os.replace(partial, out_path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    return count
