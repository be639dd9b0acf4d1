"""Speed and peak memory of the paper's maskers on the CPU, and the memory-layout comparison.

Two settings: 256 px at the paper's widths (Tai-Chi detector) and 64 px at CPU widths (the
synthetic-64 scale). Batch 1 and 8. Inference runs under `torch.inference_mode`. Generators are
measured in `bench_generators.py`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from memory import peak_mib_in_fresh_process

from kptoolkit import create_generator, create_masker
from kptoolkit.components import detector_params
from kptoolkit.config import ExperimentConfig
from kptoolkit.keypoints.detector import FrozenDetector, KeypointDetector
from kptoolkit.presets import CPU64, preset_params
from kptoolkit.structure import Structure

CPU_DETECTOR = detector_params(ExperimentConfig())  # the synthetic-64 default: cpu64 presets
SETTINGS = {
    "paper256": {"size": 256, "detector": {}, "two_stage": {}, "perturbed_mask": {}},
    "cpu64": {
        "size": 64,
        "detector": {
            "block_expansion": CPU_DETECTOR["block_expansion"],
            "max_features": CPU_DETECTOR["max_features"],
            "num_blocks": CPU_DETECTOR["num_blocks"],
            "scale_factor": CPU_DETECTOR["scale_factor"],
        },
        "two_stage": preset_params("generators", "two_stage", CPU64),
        "perturbed_mask": preset_params("maskers", "perturbed_mask", CPU64),
    },
}
MASKERS = [
    "heatmap_sum",
    "gaussian_circles",
    "softmax_sum",
    "all_k",
    "fomm_keypoints",
    "perturbed_mask",
    "learned_projection",
]
BATCHES = [1, 8]


def record(benchmark, label: str, batch: int, peak_mib: float) -> None:
    ms = benchmark.stats.stats.median * 1000 / batch
    benchmark.extra_info.update({"ms_per_frame": ms, "peak_mib": peak_mib, "batch": batch})
    print(f"\n{label}, batch {batch}: {ms:.1f} ms/frame, peak +{peak_mib:.0f} MiB")


def rounds(setting: str, batch: int, backward: bool = False) -> int:
    heavy = setting == "paper256" and (batch == 8 or backward)
    return 1 if heavy else 3


def build_masker(name: str, setting: str):
    spec = SETTINGS[setting]
    torch.manual_seed(0)
    params = dict(spec["perturbed_mask"]) if name == "perturbed_mask" else {}
    masker = create_masker(name, **params).eval()
    if masker.needs_detector:
        masker.attach_detector(FrozenDetector(KeypointDetector(**spec["detector"])))
    return masker


def generator_inputs(setting: str, batch: int):
    size = SETTINGS[setting]["size"]
    mask_size = size // round(1 / SETTINGS[setting]["two_stage"].get("scale_factor", 0.25))
    masks = [Structure(mask=torch.rand(batch, 1, mask_size, mask_size)) for _ in range(2)]
    return torch.rand(batch, 3, size, size), masks


def masker_case(name: str, setting: str, batch: int) -> Callable[[], object]:
    """Inference of one masker (detector included) on a batch of frames."""
    masker = build_masker(name, setting)
    size = SETTINGS[setting]["size"]
    frames = torch.rand(batch, 3, size, size)

    def run():
        with torch.inference_mode():
            return masker(frames)

    return run


def layout_case(setting: str, layout: str) -> Callable[[], object]:
    """Detector + two_stage inference in one memory layout."""
    torch.manual_seed(0)
    batch = 8 if setting == "cpu64" else 1
    spec = SETTINGS[setting]
    detector = KeypointDetector(**spec["detector"]).eval()
    generator = create_generator("two_stage", **spec["two_stage"]).eval()
    source, (src, drv) = generator_inputs(setting, batch)
    if layout == "channels_last":
        fmt = torch.channels_last
        detector, generator = detector.to(memory_format=fmt), generator.to(memory_format=fmt)
        source = source.contiguous(memory_format=fmt)
        src = Structure(mask=src.mask.contiguous(memory_format=fmt))
        drv = Structure(mask=drv.mask.contiguous(memory_format=fmt))

    def run():
        with torch.inference_mode():
            detector(source)
            return generator(source, src, drv)

    return run


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("name", MASKERS)
def test_masker_forward(benchmark, name, setting, batch):
    run = masker_case(name, setting, batch)
    benchmark.pedantic(run, rounds=rounds(setting, batch), iterations=1, warmup_rounds=1)
    peak = peak_mib_in_fresh_process(masker_case, name, setting, batch)
    record(benchmark, f"{name} [{setting}]", batch, peak)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_channels_last(benchmark, setting, layout):
    """Detector + two_stage inference in each memory layout (batch 8 at 64 px, 1 at 256 px)."""
    run = layout_case(setting, layout)
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    peak = peak_mib_in_fresh_process(layout_case, setting, layout)
    batch = 8 if setting == "cpu64" else 1
    record(benchmark, f"detector+two_stage inference, {layout} [{setting}]", batch, peak)
