"""FOMM keypoint detector: reference layout, formulas, checkpoints, freezing, relative motion."""

from __future__ import annotations

import math

import pytest
import torch
from model_fixtures import read_reference_table, tiny_detector

from kptoolkit.cli.main import main
from kptoolkit.keypoints.detector import FrozenDetector, KeypointDetector
from kptoolkit.keypoints.functional import (
    jacobians_from_maps,
    keypoints_from_heatmaps,
    spatial_softmax,
)
from kptoolkit.keypoints.loading import infer_detector_params, load_detector
from kptoolkit.keypoints.relative import convex_hull_area, relative_keypoints
from kptoolkit.utils.checkpoint_io import CheckpointError

FOMM = read_reference_table("fomm-taichi-256-state-dict.tsv")


def test_taichi_detector_has_exactly_the_reference_entries():
    detector = KeypointDetector()  # Tai-Chi parameters are the defaults
    shapes = {k: tuple(v.shape) for k, v in detector.state_dict().items()}
    assert shapes == FOMM["kp_detector"] and len(shapes) == 75
    assert sum(p.numel() for p in detector.parameters()) == 14_215_368
    assert detector.heatmap_size(256, 256) == (58, 58)


def test_outputs_and_sizes():
    detector = tiny_detector(frozen=False)
    out = detector(torch.rand(2, 3, 64, 64))
    assert out.logits.shape == out.heatmaps.shape == (2, 5, 10, 10)
    assert detector.heatmap_size(64, 64) == (10, 10)
    assert out.keypoints.shape == (2, 5, 2) and out.keypoints.abs().max() <= 1
    torch.testing.assert_close(out.heatmaps.sum(dim=(-2, -1)), torch.ones(2, 5))
    # jacobians start as the identity: zero weights, bias [1, 0, 0, 1], heatmaps summing to 1
    torch.testing.assert_close(out.jacobians, torch.eye(2).expand(2, 5, 2, 2))


def test_softmax_uses_the_temperature():
    logits = torch.tensor([[[[0.0, 0.1]]]])
    heat = spatial_softmax(logits, temperature=0.1)
    torch.testing.assert_close(heat[0, 0, 0, 1] / heat[0, 0, 0, 0], torch.tensor(math.e))


def test_keypoint_of_a_one_hot_heatmap_is_its_pixel_centre():
    heat = torch.zeros(1, 1, 5, 9)
    heat[0, 0, 1, 6] = 1.0  # row 1 of 5, column 6 of 9
    kp = keypoints_from_heatmaps(heat)
    torch.testing.assert_close(kp, torch.tensor([[[-1 + 2 * 6 / 8, -1 + 2 * 1 / 4]]]))


def test_jacobian_is_the_heatmap_weighted_sum():
    heat = torch.zeros(1, 2, 3, 3)
    heat[0, 0, 0, 0] = heat[0, 1, 2, 2] = 1.0
    maps = torch.zeros(1, 8, 3, 3)
    maps[0, 0:4, 0, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    maps[0, 4:8, 2, 2] = torch.tensor([5.0, 6.0, 7.0, 8.0])
    jac = jacobians_from_maps(heat, maps)
    torch.testing.assert_close(jac[0, 0], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    torch.testing.assert_close(jac[0, 1], torch.tensor([[5.0, 6.0], [7.0, 8.0]]))


def test_frozen_detector_never_changes():
    frozen = tiny_detector()
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    frozen.train()
    assert not frozen.training and not frozen.detector.training
    assert all(not p.requires_grad for p in frozen.parameters())
    for _ in range(3):
        out = frozen(torch.rand(4, 3, 64, 64))
    assert not out.logits.requires_grad
    after = frozen.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics too


def write_official(path, detector, generator_state=None):
    torch.save(
        {
            "kp_detector": detector.state_dict(),
            "generator": generator_state or {},
            "discriminator": {},
            "optimizer_kp_detector": {},
            "optimizer_generator": {},
            "optimizer_discriminator": {},
            "epoch": 12,
        },
        path,
    )


def test_official_layout_loads_with_inferred_parameters(tmp_path):
    source = tiny_detector(num_kp=7, frozen=False, scale_factor=0.5)
    path = tmp_path / "taichi-cpk.pth.tar"
    write_official(path, source)
    loaded = load_detector(path)
    assert isinstance(loaded, FrozenDetector) and loaded.num_kp == 7
    frame = torch.rand(1, 3, 64, 64)
    source.eval()
    torch.testing.assert_close(loaded(frame).keypoints, source(frame).keypoints)
    params = infer_detector_params(source.state_dict())
    assert params["scale_factor"] == 0.5 and params["num_blocks"] == 3
    assert params["block_expansion"] == 4 and params["max_features"] == 16


def test_taichi_checkpoint_loads_into_detector_strictly(tmp_path):
    path = tmp_path / "taichi-cpk.pth.tar"
    write_official(path, KeypointDetector())
    detector = load_detector(path, frozen=False)
    assert infer_detector_params(detector.state_dict()) == {
        "num_kp": 10,
        "num_channels": 3,
        "block_expansion": 32,
        "max_features": 1024,
        "num_blocks": 5,
        "estimate_jacobian": True,
        "scale_factor": 0.25,
        "single_jacobian_map": False,
    }


def test_checkpoint_errors(tmp_path):
    path = tmp_path / "c.pth"
    write_official(path, tiny_detector(frozen=False))
    with pytest.raises(CheckpointError, match=r"num_kp=5.*num_kp=10"):
        load_detector(path, num_kp=10)
    with pytest.raises(CheckpointError, match="not found"):
        load_detector(tmp_path / "missing.pth")
    torch.save({"generator": {}}, path)
    with pytest.raises(CheckpointError, match=r"no 'detector' entry.*kp_detector"):
        load_detector(path)


def test_an_empty_or_random_file_is_not_a_checkpoint(tmp_path, capsys):
    empty, noise = tmp_path / "empty.pth", tmp_path / "noise.pth"
    empty.write_bytes(b"")
    noise.write_bytes(bytes(range(1, 256)) * 4)
    with pytest.raises(CheckpointError, match="is empty, not a checkpoint"):
        load_detector(empty)
    with pytest.raises(CheckpointError, match=r"is not a checkpoint \(not a file written by"):
        load_detector(noise)
    assert main(["reconstruct", "--checkpoint", str(noise)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a checkpoint" in err and "weights_only" not in err


class NotATensor:
    pass


def test_unsafe_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"kp_detector": NotATensor()}, path)
    with pytest.raises(CheckpointError, match="safely"):
        load_detector(path)


def test_convex_hull_area():
    square = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5]]])
    triangle = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 3.0]]])
    torch.testing.assert_close(convex_hull_area(square), torch.tensor([1.0]))
    torch.testing.assert_close(convex_hull_area(triangle), torch.tensor([3.0]))


def test_relative_motion_with_scale_adaptation():
    kp_source = torch.tensor([[[0.0, 0.0], [0.4, 0.0], [0.4, 0.4], [0.0, 0.4]]])  # area 0.16
    kp_initial = kp_source / 2  # area 0.04 -> scale 2
    kp_driving = kp_initial + torch.tensor([0.1, -0.05])
    kp, _ = relative_keypoints(kp_source, kp_driving, kp_initial, adapt_scale=True)
    torch.testing.assert_close(kp, kp_source + torch.tensor([0.2, -0.1]))
    kp_plain, _ = relative_keypoints(kp_source, kp_driving, kp_initial)
    torch.testing.assert_close(kp_plain, kp_source + torch.tensor([0.1, -0.05]))


def test_relative_jacobians():
    rotate = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    j_source = torch.diag(torch.tensor([2.0, 3.0])).expand(1, 1, 2, 2)
    j_initial = torch.eye(2).expand(1, 1, 2, 2)
    j_driving = rotate.expand(1, 1, 2, 2)
    kp = torch.zeros(1, 1, 2)
    _, jac = relative_keypoints(kp, kp, kp, j_source, j_driving, j_initial)
    torch.testing.assert_close(jac[0, 0], rotate @ torch.diag(torch.tensor([2.0, 3.0])))


def test_kptoolkit_checkpoint_loads_into_detector(tmp_path):
    source = tiny_detector(frozen=False, seed=3)
    path = tmp_path / "run.pth"
    torch.save({"format": "kptoolkit", "models": {"detector": source.state_dict()}}, path)
    loaded = load_detector(path, frozen=False)
    assert all(
        torch.equal(a, b)
        for a, b in zip(loaded.state_dict().values(), source.state_dict().values(), strict=True)
    )
    torch.save({"format": "kptoolkit", "models": {"generator": {}}}, path)
    with pytest.raises(CheckpointError, match="no 'detector' model; it has: generator"):
        load_detector(path)
