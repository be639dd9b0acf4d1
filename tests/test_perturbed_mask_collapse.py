"""The perturbed-mask diagnosis script's batch-norm redraw (PyTorch < 1.2's initialisation)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

SCRIPTS = Path(__file__).resolve().parents[1] / "benchmarks" / "scripts"
SCRIPT = SCRIPTS / "perturbed_mask_collapse.py"
spec = importlib.util.spec_from_file_location("perturbed_mask_collapse", SCRIPT)
collapse = importlib.util.module_from_spec(spec)
spec.loader.exec_module(collapse)


def networks() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "masker": nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()),
        "generator": nn.Sequential(nn.Conv2d(4, 8, 3), nn.BatchNorm2d(8, affine=False)),
    }


def test_redraw_touches_only_batchnorm_scales_in_unit_interval() -> None:
    nets = networks()
    before = {r: {k: v.clone() for k, v in m.state_dict().items()} for r, m in nets.items()}
    assert collapse.draw_batchnorm_scales(nets, seed=3) == 1  # the affine-free layer has none
    scale = nets["masker"][1].weight
    assert not torch.equal(scale, torch.ones_like(scale))
    assert bool(((scale >= 0) & (scale <= 1)).all())
    for role, module in nets.items():
        for key, value in module.state_dict().items():
            if (role, key) != ("masker", "1.weight"):
                assert torch.equal(value, before[role][key]), (role, key)


def test_redraw_is_seeded_and_leaves_the_global_generator_alone() -> None:
    first, second = networks(), networks()
    torch.manual_seed(11)
    expected = torch.rand(1)
    torch.manual_seed(11)
    collapse.draw_batchnorm_scales(first, seed=5)
    assert torch.equal(torch.rand(1), expected)
    collapse.draw_batchnorm_scales(second, seed=5)
    assert torch.equal(first["masker"][1].weight, second["masker"][1].weight)
    third = networks()
    collapse.draw_batchnorm_scales(third, seed=6)
    assert not torch.equal(first["masker"][1].weight, third["masker"][1].weight)
