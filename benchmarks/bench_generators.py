"""two_stage next to the FOMM and X2Face baselines: forward and forward+backward on the CPU.

Same settings as `bench_method.py` (settings.py): 256 px at the published widths, 64 px at CPU
widths; batch 1 and 8; ms per frame and peak memory (fresh process, see memory.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from memory import peak_mib_in_fresh_process
from settings import BATCHES, SETTINGS, case_shape, heavy, measure, record

from kptoolkit import create_generator
from kptoolkit.registry.presets import CPU64, preset_params
from kptoolkit.structure import Structure

GENERATORS = ["two_stage", "fomm", "x2face"]
# the smallest frame each takes at the paper widths, for a smoke run (X2Face's eight-level
# network needs 256 px)
SMALLEST = {"two_stage": 128, "fomm": 128, "x2face": 256}
WIDTHS = {
    "paper256": {name: {} for name in GENERATORS},
    "cpu64": {name: preset_params("generators", name, CPU64) for name in GENERATORS},
}


def structures(name: str, params: dict, frames: torch.Tensor) -> tuple[Structure, Structure]:
    """Inputs of each generator's kind: masks, keypoints with jacobians, or frames."""
    batch, _, size, _ = frames.shape
    g = torch.Generator().manual_seed(0)
    if name == "two_stage":
        mask_size = size // round(1 / params.get("scale_factor", 0.25))
        return tuple(
            Structure(mask=torch.rand(batch, 1, mask_size, mask_size, generator=g))
            for _ in range(2)
        )
    if name == "fomm":
        return tuple(
            Structure(
                keypoints=torch.rand(batch, 10, 2, generator=g) * 1.6 - 0.8,
                jacobians=torch.eye(2) + 0.1 * torch.randn(batch, 10, 2, 2, generator=g),
            )
            for _ in range(2)
        )
    return Structure(frame=frames), Structure(frame=torch.rand(frames.shape, generator=g))


def generator_case(
    name: str, setting: str, batch: int, size: int, backward: bool
) -> Callable[[], object]:
    """Inference, or a training forward+backward, of one generator on random inputs."""
    torch.manual_seed(0)
    params = WIDTHS[setting][name]
    generator = create_generator(name, **params)
    source = torch.rand(batch, 3, size, size)
    src, drv = structures(name, params, source)
    if not backward:
        generator.eval()

        def infer():
            with torch.inference_mode():
                return generator(source, src, drv)

        return infer
    generator.train()

    def train_step():
        generator.zero_grad(set_to_none=True)
        out = generator(source, src, drv)
        out["prediction"].mean().backward()

    return train_step


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward_backward"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("name", GENERATORS)
def test_generator(benchmark, smoke, name, setting, batch, backward):
    size, batch = case_shape(setting, batch, smoke, SMALLEST[name])
    run = generator_case(name, setting, batch, size, backward)
    measure(benchmark, run, heavy(setting, batch, backward))
    peak = None
    if not smoke:
        peak = peak_mib_in_fresh_process(generator_case, name, setting, batch, size, backward)
    label = "forward+backward" if backward else "forward"
    params = sum(p.numel() for p in create_generator(name, **WIDTHS[setting][name]).parameters())
    benchmark.extra_info["parameters"] = params
    record(benchmark, f"{name} {label} [{setting}, {params / 1e6:.2f}M params]", batch, peak)
