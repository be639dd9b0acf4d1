"""Reconstruction: the evaluation protocol over a dataset's test videos, streamed, and its outputs.

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

The frames are predicted through `kptoolkit.engine.prediction` (eval mode, the layout and
precision resolved for the device unless given).
"""

from __future__ import annotations

import contextlib
import csv
import math
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from kptoolkit.data.datasets import SkippedVideoWarning
from kptoolkit.data.video_io import Mp4Writer, VideoReadError
from kptoolkit.engine.prediction import (
    InferenceError,
    chunks,
    compute_structure,
    expand_frames,
    expand_structure,
    first_of,
    generate,
    inference_models,
    inference_numerics,
    model_device,
    needs_groundtruth,
    quantize,
    to_model_input,
)
from kptoolkit.runtime.precision import Numerics
from kptoolkit.structure import Structure
from kptoolkit.utils.atomic import CreatedPaths, check_outputs, removed_on_failure

if TYPE_CHECKING:
    from kptoolkit.config.schema import ExperimentConfig
    from kptoolkit.experiment.build import Models

CSV_NAME = "reconstruction.csv"


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
    precision: str | Numerics = "auto",
    compile: bool = False,
) -> ReconstructionResult:
    """Reconstruct every test video of `dataset` (FOMM protocol) and score it with L1.

    `dataset` is a test-split `FramesDataset` (or anything with `videos` entries that have a
    `name`, and `iter_video(entry)` streaming (3,H,W) frames in [0, 1]). Writes `png/`,
    `mp4/` and `reconstruction.csv` under `out_dir` (see the module docstring); an output that
    something else is in the way of (a file where a folder goes, ...) is an `OutputPathError`
    before anything is written, and a failure part-way removes what this call created. A video
    that cannot be read is skipped with a warning and listed in `result.skipped` (none read at
    all is an `InferenceError`). `mode` selects a control instead of the protocol (driving by
    frame 0, another generator output). `precision`: auto (resolved for the device), fp32
    (exact), bf16 or fp16 autocast (`kptoolkit.runtime.precision`); `compile`: call the
    networks through `torch.compile` (see `inference_models`).
    """
    if not hasattr(dataset, "videos") or not hasattr(dataset, "iter_video"):
        raise InferenceError(
            f"{type(dataset).__name__} cannot be reconstructed: it needs `videos` and "
            "`iter_video(video)` (use a test-split FOMM-layout dataset)"
        )
    if batch_size < 1:
        raise InferenceError(f"batch size must be >= 1, got {batch_size}")
    numerics = inference_numerics(models, precision)  # checked before anything is written
    out_dir = Path(out_dir)
    result = ReconstructionResult(out_dir)
    check_reconstruction_outputs(out_dir, save_png, save_mp4)
    videos = list(dataset.videos)[:max_videos] if max_videos is not None else list(dataset.videos)
    bar = tqdm(videos, desc="reconstruct", unit="video", disable=not progress, dynamic_ncols=True)
    # a failure (a full disk, an interrupt) removes what this call created: no half output
    with removed_on_failure() as created, inference_models(models, numerics, compile):
        created.mkdir(out_dir)
        for video in bar:
            try:
                score = _reconstruct_video(
                    models, dataset, video, out_dir, batch_size, save_png, save_mp4, mode, created
                )
            except VideoReadError as exc:
                warnings.warn(
                    f"skipping unreadable video: {exc}", SkippedVideoWarning, stacklevel=2
                )
                result.skipped.append(video.name)
                continue
            result.videos.append(score)
            bar.set_postfix(l1=f"{result.l1:.4f}")
        if videos and not result.videos:
            raise InferenceError(
                f"no test video could be reconstructed ({len(result.skipped)} unreadable: "
                f"{', '.join(result.skipped)})"
            )
        _write_csv(result, created)
    return result


def check_reconstruction_outputs(out_dir: str | Path, save_png: bool, save_mp4: bool) -> None:
    """An `OutputPathError` when something is in the way of an output of `reconstruct` in
    `out_dir` (a file where the folder, `png/` or `mp4/` goes, a folder where the CSV goes)."""
    out_dir = Path(out_dir)
    wanted = [name for name, save in (("png", save_png), ("mp4", save_mp4)) if save]
    check_outputs([out_dir / CSV_NAME], [out_dir, *(out_dir / name for name in wanted)])


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
            expand_frames(source, driving.shape[0]) if mode.static else driving,
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
    created: CreatedPaths | None = None,
) -> VideoScore:
    created = created or CreatedPaths()
    name = video.name
    mp4_path = out_dir / "mp4" / f"{name}.mp4"
    stacked: list[np.ndarray] = []  # the PNG's frames, uint8: the only per-video growth
    l1_sum, count = 0.0, 0
    with contextlib.ExitStack() as stack:
        # the MP4 is closed, then renamed into place; a failure leaves neither file behind
        writer = None
        if save_mp4:
            partial = stack.enter_context(created.atomic_path(mp4_path, suffix=".mp4"))
            writer = stack.enter_context(Mp4Writer(partial))
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
    if save_png:
        write_stacked_png(stacked, out_dir / "png" / f"{name}.png", created)
    return VideoScore(name, count, l1_sum / count)


def write_stacked_png(
    batches: list[np.ndarray], path: Path, created: CreatedPaths | None = None
) -> None:
    """Write (T_i, H, W, 3) uint8 batches as one lossless PNG of the frames side by side
    (`created` records the file and its new folders, for a caller that undoes a failure)."""
    frames = np.concatenate(batches)  # (T, H, W, 3)
    batches.clear()
    count, height, width, channels = frames.shape
    stacked = frames.transpose(1, 0, 2, 3).reshape(height, count * width, channels)
    del frames
    with (created or CreatedPaths()).atomic_path(path, suffix=".png") as partial:
        Image.fromarray(np.ascontiguousarray(stacked)).save(partial, format="PNG", compress_level=1)


def _write_csv(result: ReconstructionResult, created: CreatedPaths) -> None:
    with (
        created.atomic_path(result.csv_path) as partial,
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
    from kptoolkit.experiment.build import build_dataset

    return build_dataset(config, "test", root)


def default_output_dir(checkpoint: str | Path) -> Path:
    """`<run dir>/reconstruction`: the run dir holds the checkpoint, or its `checkpoints/`."""
    parent = Path(checkpoint).resolve().parent
    run_dir = parent.parent if parent.name == "checkpoints" else parent
    return run_dir / "reconstruction"
