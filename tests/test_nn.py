"""Building blocks: shapes, the anti-alias filter, grids, and reference state-dict layouts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from model_fixtures import read_reference_table
from torch import nn

from kptoolkit.nn import (
    AntiAliasDownscale,
    DownBlock2d,
    Hourglass,
    ResBlock2d,
    SameBlock2d,
    UpBlock2d,
    anti_alias_kernel,
    make_coordinate_grid,
    residual_stack,
)

FOMM = read_reference_table("fomm-taichi-256-state-dict.tsv")
KEYPOINT_MASK = read_reference_table("keypoint-mask-generator-state-dict.tsv")


def shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def subtable(table: dict[str, tuple[int, ...]], prefix: str) -> dict[str, tuple[int, ...]]:
    return {k[len(prefix) :]: v for k, v in table.items() if k.startswith(prefix)}


def test_block_shapes():
    x = torch.randn(2, 8, 16, 16)
    assert SameBlock2d(8, 12, kernel_size=7)(x).shape == (2, 12, 16, 16)
    assert DownBlock2d(8, 12)(x).shape == (2, 12, 8, 8)
    assert UpBlock2d(8, 12)(x).shape == (2, 12, 32, 32)
    assert ResBlock2d(8)(x).shape == x.shape


def test_detector_shaped_hourglass_matches_reference_keys_and_shapes():
    detector_like = nn.Module()
    detector_like.predictor = Hourglass(32, in_features=3, num_blocks=5, max_features=1024)
    detector_like.kp = nn.Conv2d(detector_like.predictor.out_filters, 10, 7)
    detector_like.jacobian = nn.Conv2d(detector_like.predictor.out_filters, 40, 7)
    detector_like.down = AntiAliasDownscale(3, 0.25)
    reference = FOMM["kp_detector"]
    assert len(reference) == 75
    assert shapes(detector_like) == reference
    assert detector_like.predictor.out_filters == 35


def test_detector_hourglass_output_and_heatmap_size():
    hourglass = Hourglass(4, in_features=3, num_blocks=5, max_features=16)
    out = hourglass(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 4 + 3, 64, 64)
    assert nn.Conv2d(7, 10, 7)(out).shape[-2:] == (58, 58)


def test_dense_motion_and_two_stage_hourglasses_match_reference():
    dense = Hourglass(64, in_features=44, num_blocks=5, max_features=1024)
    assert shapes(dense) == subtable(FOMM["generator"], "dense_motion_network.hourglass.")
    assert dense.out_filters == 108
    refine = Hourglass(64, in_features=8, num_blocks=5, max_features=1024)
    assert shapes(refine) == subtable(KEYPOINT_MASK["generator"], "hourglass.")
    assert refine.out_filters == 72


def test_bottleneck_and_first_blocks_match_reference():
    generator = FOMM["generator"]
    assert shapes(residual_stack(256, 6)) == subtable(generator, "bottleneck.")
    assert shapes(SameBlock2d(3, 64, kernel_size=7)) == subtable(generator, "first.")


def test_hourglass_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match="divisible by 8"):
        Hourglass(4, 3, num_blocks=3)(torch.rand(1, 3, 20, 20))


def test_anti_alias_kernel_is_the_published_gaussian():
    kernel = anti_alias_kernel(0.25)
    assert kernel.shape == (13, 13)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-6)
    sigma = 1.5
    ratio = (kernel[6, 7] / kernel[6, 6]).item()
    assert ratio == pytest.approx(math.exp(-1 / (2 * sigma**2)), rel=1e-5)
    assert anti_alias_kernel(0.5).shape == (5, 5)


def test_anti_alias_downscale_matches_blur_then_subsample():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 256, 256)
    module = AntiAliasDownscale(3, 0.25)
    out = module(x)
    assert out.shape == (2, 3, 64, 64)
    # independent computation: full-resolution blur with explicit padding, then every 4th pixel
    kernel = anti_alias_kernel(0.25).expand(3, 1, 13, 13)
    blurred = F.conv2d(F.pad(x, (6, 6, 6, 6)), kernel, groups=3)
    torch.testing.assert_close(out, blurred[:, :, ::4, ::4])


def test_anti_alias_keeps_constant_interior_and_rejects_bad_scales():
    out = AntiAliasDownscale(1, 0.25)(torch.full((1, 1, 64, 64), 0.7))
    torch.testing.assert_close(out[..., 2:-2, 2:-2], torch.full((1, 1, 12, 12), 0.7))
    assert AntiAliasDownscale(3, 1.0)(torch.ones(1, 3, 8, 8)).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="1/n"):
        AntiAliasDownscale(3, 0.3)


def test_coordinate_grid_convention():
    grid = make_coordinate_grid(3, 5)
    assert grid.shape == (3, 5, 2)
    torch.testing.assert_close(grid[0, 0], torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(grid[-1, -1], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(grid[0, :, 0], torch.linspace(-1, 1, 5))  # x runs along width
    torch.testing.assert_close(grid[:, 0, 1], torch.linspace(-1, 1, 3))  # y runs along height
