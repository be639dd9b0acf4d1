"""Speed and peak memory of the paper's maskers on the CPU, and the memory-layout comparison.

Two settings: 256 px at the paper's widths (Tai-Chi detector) and 64 px at CPU widths (the
synthetic-64 scale). Batch 1 and 8. Inference runs under `torch.inference_mode`. Generators are
measured in `bench_generators.py`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import pytest
import torch
from memory import peak_mib_in_fresh_process
from settings import BATCHES, SETTINGS, case_shape, heavy, measure, record

from kptoolkit import create_generator, create_masker
from kptoolkit.keypoints.detector import FrozenDetector, KeypointDetector
from kptoolkit.structure import Structure

MASKERS = [
    "heatmap_sum",
    "gaussian_circles",
    "softmax_sum",
    "all_k",
    "fomm_keypoints",
    "perturbed_mask",
    pytest.param(
        "learned_projection",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("kptoolkit_learned_mask") is None,
            reason="the kptoolkit-learned-mask plugin is not installed "
            "(pip install ./plugins/kptoolkit-learned-mask)",
        ),
    ),
]


def build_masker(name: str, setting: str):
    spec = SETTINGS[setting]
    torch.manual_seed(0)
    params = dict(spec["perturbed_mask"]) if name == "perturbed_mask" else {}
    masker = create_masker(name, **params).eval()
    if masker.needs_detector:
        masker.attach_detector(FrozenDetector(KeypointDetector(**spec["detector"])))
    return masker


def generator_inputs(setting: str, batch: int, size: int):
    mask_size = size // round(1 / SETTINGS[setting]["two_stage"].get("scale_factor", 0.25))
    masks = [Structure(mask=torch.rand(batch, 1, mask_size, mask_size)) for _ in range(2)]
    return torch.rand(batch, 3, size, size), masks


def masker_case(name: str, setting: str, batch: int, size: int) -> Callable[[], object]:
    """Inference of one masker (detector included) on a batch of frames."""
    masker = build_masker(name, setting)
    frames = torch.rand(batch, 3, size, size)

    def run():
        with torch.inference_mode():
            return masker(frames)

    return run


def layout_case(setting: str, layout: str, batch: int, size: int) -> Callable[[], object]:
    """Detector + two_stage inference in one memory layout."""
    torch.manual_seed(0)
    spec = SETTINGS[setting]
    detector = KeypointDetector(**spec["detector"]).eval()
    generator = create_generator("two_stage", **spec["two_stage"]).eval()
    source, (src, drv) = generator_inputs(setting, batch, size)
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
def test_masker_forward(benchmark, smoke, name, setting, batch):
    size, batch = case_shape(setting, batch, smoke)
    run = masker_case(name, setting, batch, size)
    measure(benchmark, run, heavy(setting, batch))
    peak = None if smoke else peak_mib_in_fresh_process(masker_case, name, setting, batch, size)
    record(benchmark, f"{name} [{setting}]", batch, peak)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_channels_last(benchmark, smoke, setting, layout):
    """Detector + two_stage inference in each memory layout (batch 8 at 64 px, 1 at 256 px)."""
    size, batch = case_shape(setting, 8 if setting == "cpu64" else 1, smoke)
    run = layout_case(setting, layout, batch, size)
    measure(benchmark, run, slow=setting == "paper256")
    peak = None if smoke else peak_mib_in_fresh_process(layout_case, setting, layout, batch, size)
    record(benchmark, f"detector+two_stage inference, {layout} [{setting}]", batch, peak)
