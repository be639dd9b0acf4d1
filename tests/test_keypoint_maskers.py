"""The paper's masks against independent small computations, and the masker modules."""

from __future__ import annotations

import math

import pytest
import torch
from model_fixtures import tiny_detector
from plugin_fixtures import needs_learned_mask

from kptoolkit import create_masker
from kptoolkit.errors import CompatibilityError
from kptoolkit.maskers.functional import (
    all_k_mask,
    gaussian_circles_mask,
    heatmap_sum_mask,
    softmax_sum_mask,
)


def test_heatmap_sum_normalises_the_sum_of_logits():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 6)
    mask = heatmap_sum_mask(logits)
    assert mask.shape == (2, 1, 12, 12)
    for b in range(2):
        total = [
            [sum(float(logits[b, k, i, j]) for k in range(4)) for j in range(6)] for i in range(6)
        ]
        low = min(min(row) for row in total)
        high = max(max(row) for row in total)
        for i in range(6):
            for j in range(6):
                expected = (total[i][j] - low) / (high - low)
                assert mask[b, 0, i + 3, j + 3].item() == pytest.approx(expected, abs=1e-5)
    assert mask[:, :, :3].abs().max() == 0 and mask[:, :, -3:].abs().max() == 0


def test_one_keypoint_circle_peaks_at_it_with_the_published_variance():
    size = 58
    column, row = 20, 33
    kp = torch.tensor([[[-1 + 2 * column / (size - 1), -1 + 2 * row / (size - 1)]]])
    mask = gaussian_circles_mask(kp, size, size)[0, 0, 3:-3, 3:-3]
    peak = torch.nonzero(mask == mask.max())[0].tolist()
    assert peak == [row, column] and mask.max().item() == pytest.approx(1.0)
    step = 2 / (size - 1)  # one pixel in [-1, 1] units
    for di, dj in [(0, 1), (1, 0), (2, 1)]:
        expected = math.exp(-0.5 * (di**2 + dj**2) * step**2 / 0.003)
        assert mask[row + di, column + dj].item() == pytest.approx(expected, rel=1e-4)


def test_softmax_sum_and_all_k():
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 5, 5)
    heat = torch.softmax(logits.flatten(2) / 0.1, dim=2).view_as(logits)
    summed = heat.sum(1, keepdim=True)
    expected = (summed - summed.min()) / (summed.max() - summed.min())
    torch.testing.assert_close(softmax_sum_mask(heat)[:, :, 3:-3, 3:-3], expected)
    allk = all_k_mask(logits)
    assert allk.shape == (1, 3, 11, 11)
    inner = allk[0, :, 3:-3, 3:-3].flatten(1)
    torch.testing.assert_close(inner.min(1).values, torch.zeros(3))
    torch.testing.assert_close(inner.max(1).values, torch.ones(3))
    for k in range(3):
        channel = logits[0, k]
        norm = (channel - channel.min()) / (channel.max() - channel.min())
        torch.testing.assert_close(allk[0, k, 3:-3, 3:-3], norm)


@pytest.mark.parametrize(
    ("name", "params", "channels"),
    [
        ("heatmap_sum", {}, 1),
        ("softmax_sum", {}, 1),
        ("gaussian_circles", {}, 1),
        ("all_k", {"num_kp": 5}, 5),
        pytest.param("learned_projection", {"num_kp": 5}, 1, marks=needs_learned_mask),
    ],
)
def test_mask_maskers_on_a_real_detector(name, params, channels):
    masker = create_masker(name, **params)
    masker.attach_detector(tiny_detector(num_kp=5))
    structure = masker(torch.rand(2, 3, 64, 64))
    assert structure.mask.shape == (2, channels, 16, 16) and masker.channels == channels
    assert structure.mask.min() >= 0 and structure.mask.max() <= 1
    assert structure.mask[..., :3, :].abs().max() == 0


def test_heatmap_sum_masker_matches_the_formula_on_detector_logits():
    detector = tiny_detector()
    masker = create_masker("heatmap_sum")
    masker.attach_detector(detector)
    frame = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(masker(frame).mask, heatmap_sum_mask(detector(frame).logits))


def test_circles_support_relative_motion():
    masker = create_masker("gaussian_circles")
    masker.attach_detector(tiny_detector())
    structure = masker(torch.rand(1, 3, 64, 64))
    redrawn = masker.from_keypoints(structure.keypoints, None, structure)
    torch.testing.assert_close(redrawn.mask, structure.mask)
    assert masker.supports_relative
    with pytest.raises(CompatibilityError, match="relative motion"):
        create_masker("heatmap_sum").from_keypoints(structure.keypoints, None, structure)


def test_fomm_keypoints_masker():
    masker = create_masker("fomm_keypoints")
    masker.attach_detector(tiny_detector())
    structure = masker(torch.rand(2, 3, 64, 64))
    assert structure.provided == {"keypoints", "jacobians"}
    assert structure.jacobians.shape == (2, 5, 2, 2)
    masker.attach_detector(tiny_detector(estimate_jacobian=False))
    with pytest.raises(CompatibilityError, match="estimate_jacobian"):
        masker(torch.rand(1, 3, 64, 64))


def test_all_k_checks_the_detector_keypoint_count():
    masker = create_masker("all_k", num_kp=10)
    masker.attach_detector(tiny_detector(num_kp=5))
    with pytest.raises(CompatibilityError, match="num_kp=5"):
        masker(torch.rand(1, 3, 64, 64))


def test_masker_without_detector_says_what_to_do():
    with pytest.raises(CompatibilityError, match="attach_detector"):
        create_masker("heatmap_sum")(torch.rand(1, 3, 64, 64))
