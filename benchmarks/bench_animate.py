"""Animation streams: peak memory and speed of `animate` on a 100- and a 1,000-frame video.

heatmap_sum + two_stage at the synthetic-64 CPU widths (`ExperimentConfig()`), random weights,
64 px puppet driving videos (H.264), batch 16. The 1,000-frame video should peak at about the
memory of the 100-frame one: frames are decoded, generated and written a batch at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from memory import peak_mib_in_fresh_process

from kptoolkit import create_generator, create_masker
from kptoolkit.config.schema import ExperimentConfig
from kptoolkit.data.puppets.render import render_video
from kptoolkit.data.video_io import count_frames, write_mp4
from kptoolkit.engine.animation import animate
from kptoolkit.experiment.build import Models
from kptoolkit.experiment.components import detector_params
from kptoolkit.keypoints.detector import FrozenDetector, KeypointDetector
from kptoolkit.registry.presets import CPU64, preset_params

LENGTHS = [100, 1000]
BATCH = 16
SIZE = 64
PEAKS: dict[int, float] = {}


def cpu64_models() -> Models:
    """heatmap_sum + two_stage at the synthetic-64 widths, random weights (seed 0)."""
    config = ExperimentConfig()
    torch.manual_seed(config.seed)
    detector = FrozenDetector(KeypointDetector(**detector_params(config)))
    masker = create_masker("heatmap_sum")
    masker.attach_detector(detector)
    generator = create_generator("two_stage", **preset_params("generators", "two_stage", CPU64))
    return Models("heatmap_sum", "two_stage", masker, generator, detector)


def animate_case(source: str, driving: str, out: str) -> Callable[[], dict]:
    """Build the models; the returned call animates `driving` into `out` (measured part)."""
    models = cpu64_models()

    def run() -> dict:
        return animate(models, source, driving, out, batch_size=BATCH, frame_size=SIZE)

    return run


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory, smoke: bool) -> dict[int, Path]:
    """Driving mp4s of each length (one 1,000-frame puppet clip and its first 100 frames; a
    tenth of each in a smoke run)."""
    folder = tmp_path_factory.mktemp("driving")
    scale = 10 if smoke else 1
    frames, _, _ = render_video(0, max(LENGTHS) // scale, SIZE)
    paths = {}
    for length in LENGTHS:
        paths[length] = folder / f"driving-{length}.mp4"
        write_mp4(frames[: length // scale], paths[length], fps=25)
    source, _, _ = render_video(1, 1, SIZE)
    from PIL import Image

    Image.fromarray(source[0]).save(folder / "source.png")
    return paths


@pytest.mark.parametrize("length", LENGTHS)
def test_animate(benchmark, videos, tmp_path, smoke, length):
    source = str(videos[length].parent / "source.png")
    out = tmp_path / "out.mp4"
    run = animate_case(source, str(videos[length]), str(out))
    # a round animates the whole video; the short one is timed three times, the long one once
    info = benchmark.pedantic(run, rounds=3 if length <= 100 else 1, iterations=1)
    assert count_frames(out) == count_frames(videos[length]) == info["frames"]
    if smoke:
        return
    assert info["frames"] == length
    fps = length / benchmark.stats.stats.median
    peak = peak_mib_in_fresh_process(animate_case, source, str(videos[length]), str(out))
    PEAKS[length] = peak
    benchmark.extra_info.update({"frames": length, "frames_per_second": fps, "peak_mib": peak})
    print(
        f"\nanimate {length} frames at {SIZE}px (heatmap_sum + two_stage, batch {BATCH}): "
        f"{fps:.0f} frames/s, peak +{peak:.0f} MiB"
    )


def test_memory_does_not_grow_with_length():
    if len(PEAKS) < len(LENGTHS):
        pytest.skip("run with test_animate, timed (not under --benchmark-disable)")
    short, long = PEAKS[min(LENGTHS)], PEAKS[max(LENGTHS)]
    print(f"\nanimate peak: {short:.0f} MiB at {min(LENGTHS)} frames, {long:.0f} at {max(LENGTHS)}")
    assert long <= short * 1.2 + 10  # flat: well below 10x
