"""Values of the detector diagnostics: keypoint spread, probe R^2 and its centroid reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kptoolkit.keypoints.diagnostics import (
    centroid_probe_r2,
    detect_keypoints,
    keypoint_spread,
    probe_r2,
)
from kptoolkit.structure import Structure


def test_spread_is_the_mean_distance_to_the_centroid():
    square = np.array([[[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]]])  # each sqrt(2) away
    line = np.array([[[0.0, 0.0], [6.0, 0.0]]])  # each 3 away
    assert keypoint_spread(square) == pytest.approx(np.sqrt(2))
    assert keypoint_spread(line) == pytest.approx(3.0)
    both = np.stack([square[0, :2], line[0]])  # frames are averaged: (1 + 3) / 2
    assert keypoint_spread(both) == pytest.approx(2.0)
    assert keypoint_spread(np.full((5, 10, 2), 7.0)) == 0.0  # collapsed keypoints


def test_probe_r2_is_one_for_a_linear_relation_and_zero_without_information():
    rng = np.random.default_rng(0)
    joints = rng.normal(size=(200, 3, 2)) * 5
    mixed = joints.reshape(200, 6) @ rng.normal(size=(6, 6)) + 4.0  # an invertible linear map
    keypoints = mixed.reshape(200, 3, 2)
    assert probe_r2(keypoints[:100], joints[:100], keypoints[100:], joints[100:]) == (
        pytest.approx(1.0)
    )
    noise = rng.normal(size=(200, 3, 2))  # unrelated to the joints
    unrelated = probe_r2(noise[:100], joints[:100], noise[100:], joints[100:])
    assert -0.2 < unrelated < 0.05


def test_probe_r2_counts_squared_residuals_against_the_held_out_mean():
    fit_kp = np.array([[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]]])
    fit_joints = fit_kp * 2  # joints = 2 * keypoints, fitted exactly
    test_kp = np.array([[[1.0, 1.0]], [[3.0, 3.0]]])
    test_joints = np.array([[[2.0, 2.0]], [[5.0, 5.0]]])  # predictions (2, 2) and (6, 6)
    # residuals: 0, 0, 1, 1; deviations from the mean (3.5, 3.5): four times 1.5^2
    expected = 1 - 2.0 / (4 * 1.5**2)
    assert probe_r2(fit_kp, fit_joints, test_kp, test_joints) == pytest.approx(expected)


def test_the_centroid_reference_is_the_share_of_global_motion():
    rng = np.random.default_rng(1)
    pose = rng.normal(size=(1, 15, 2)) * 10
    placed = pose + rng.normal(size=(400, 1, 2)) * 4  # the same pose moved around
    assert centroid_probe_r2(placed[:200], placed[200:]) == pytest.approx(1.0)
    articulated = placed + rng.normal(size=(400, 15, 2)) * 4  # own motion, as large per joint
    share = centroid_probe_r2(articulated[:200], articulated[200:])
    # per coordinate, variance 16 (global) + 16 (own); the centroid also carries 1/15 of the own
    expected = (16 + 16 / 15) / 32
    assert share == pytest.approx(expected, abs=0.05)


class _FixedKeypoints(nn.Module):
    def __init__(self, keypoints: torch.Tensor) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.keypoints = keypoints

    def forward(self, frames: torch.Tensor) -> Structure:
        return Structure(keypoints=self.keypoints.expand(len(frames), -1, -1) * self.scale)


def test_detected_keypoints_are_pixel_centres():
    corners = torch.tensor([[[-1.0, -1.0], [1.0, 1.0], [0.0, 1.0]]])
    frames = np.zeros((3, 9, 9, 3), dtype=np.uint8)
    found = detect_keypoints(_FixedKeypoints(corners), frames)
    assert found.shape == (3, 3, 2)
    np.testing.assert_allclose(found[0], [[0.0, 0.0], [8.0, 8.0], [4.0, 8.0]])
