"""The oracle's pieces: ground-truth joints from the dataset, through augmentation, into circles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kptoolkit.data.augment import (
    AugmentationConfig,
    apply_params,
    augment_joints,
    sample_params,
)
from kptoolkit.data.datasets import FramesDataset
from kptoolkit.data.layout import DatasetLayoutError
from kptoolkit.data.puppets.writer import generate_dataset, load_groundtruth
from kptoolkit.errors import CompatibilityError
from kptoolkit.maskers.functional import MASK_PADDING
from kptoolkit.maskers.ground_truth import GtCirclesMasker, frame_to_mask_grid
from kptoolkit.nn.grid import make_coordinate_grid


@pytest.fixture(scope="module")
def puppets(tmp_path_factory):
    root = tmp_path_factory.mktemp("gt") / "puppets"
    generate_dataset(
        root, 4, 5, 64, clips_per_identity=1, test_fraction=0.5, workers=1, progress=False
    )
    return root


def test_dataset_joints_are_the_ground_truth_in_frame_coordinates(puppets):
    dataset = FramesDataset(puppets, "train", groundtruth=True)
    video = dataset.videos[0]
    joints = dataset.joints_of(video)
    pixels, visible = load_groundtruth(puppets, "train", video.name)
    np.testing.assert_allclose((joints[visible] + 1) / 2 * 63, pixels[visible], atol=1e-4)
    assert np.isnan(joints[~visible]).all()
    item = dataset[0]
    first, second = item["frame_indices"].tolist()
    chosen = dataset.joints_of(dataset.videos[0])
    torch.testing.assert_close(item["source_joints"], torch.from_numpy(chosen[first]))
    torch.testing.assert_close(item["driving_joints"], torch.from_numpy(chosen[second]))
    assert "source_joints" not in FramesDataset(puppets, "train")[0]


def test_a_dataset_without_ground_truth_is_refused_clearly(puppets, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(puppets / "test", copy / "test")
    with pytest.raises(DatasetLayoutError, match="ground-truth joints are needed"):
        FramesDataset(copy, "test", groundtruth=True)


def _dot_frames(points: torch.Tensor, size: int = 32) -> torch.Tensor:
    """(B,3,size,size) frames with a bright blob at each (x, y) in [-1, 1]."""
    grid = make_coordinate_grid(size, size)
    distance = ((grid[None] - points[:, None, None, :]) ** 2).sum(-1)
    return torch.exp(-distance / 0.002)[:, None].expand(-1, 3, -1, -1).contiguous()


def _centroid(frames: torch.Tensor) -> torch.Tensor:
    weights = frames[:, 0] / frames[:, 0].sum(dim=(1, 2), keepdim=True)
    grid = make_coordinate_grid(*frames.shape[-2:])
    return (weights[..., None] * grid).sum(dim=(1, 2))


def test_joints_move_with_the_frames_under_time_and_horizontal_flips():
    config = AugmentationConfig(time_flip=True, horizontal_flip=True, jitter=0.0)
    generator = torch.Generator().manual_seed(3)
    params = sample_params(config, 16, generator)
    source_points = torch.rand(16, 2, generator=generator) * 1.2 - 0.6
    driving_points = torch.rand(16, 2, generator=generator) * 1.2 - 0.6
    source, driving = apply_params(
        _dot_frames(source_points), _dot_frames(driving_points), params, config
    )
    moved_source, moved_driving = augment_joints(
        source_points[:, None], driving_points[:, None], params, config
    )
    # within a tenth of a pixel (2/31 apart); a joint left unmoved would be off by far more
    torch.testing.assert_close(_centroid(source), moved_source[:, 0], atol=5e-3, rtol=0)
    torch.testing.assert_close(_centroid(driving), moved_driving[:, 0], atol=5e-3, rtol=0)
    assert params.swap.any() and params.flip.any() and not params.flip.all()
    rotating = AugmentationConfig(rotation=10.0)
    with pytest.raises(ValueError, match="time and horizontal flips only"):
        augment_joints(source_points[:, None], driving_points[:, None], params, rotating)


def test_gt_circles_peak_at_the_joints_and_skip_hidden_ones():
    masker = GtCirclesMasker(scale_factor=0.5)
    frame = torch.zeros(1, 3, 64, 64)
    joints = torch.tensor([[[-0.5, 0.25], [float("nan"), float("nan")]]])
    mask = masker(frame, joints=joints).mask
    assert mask.shape == (1, 1, 32, 32)
    assert (mask[..., :MASK_PADDING, :] == 0).all() and (mask[..., -MASK_PADDING:] == 0).all()
    peak = torch.nonzero(mask[0, 0] == mask.max())[0]  # (row, column) of the padded mask
    # the padded mask covers the frame: cell c has its centre at frame coordinate -1 + 2c/31
    found = -1 + 2 * peak.flip(0).float() / 31
    torch.testing.assert_close(found, joints[0, 0], atol=2 / 31, rtol=0)
    only_first = masker(frame, joints=joints[:, :1]).mask
    torch.testing.assert_close(mask, only_first)  # the hidden joint adds nothing
    torch.testing.assert_close(frame_to_mask_grid(torch.tensor([1.0]), 32), torch.tensor([31 / 25]))
    with pytest.raises(CompatibilityError, match="ground-truth joints"):
        masker(frame)
