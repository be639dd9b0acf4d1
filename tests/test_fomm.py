"""The FOMM baseline generator: official layout, motion formulas, identity path, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_fixtures import read_reference_table, tiny_detector
from train_fixtures import pair_plan

from kptoolkit import create_generator, create_masker
from kptoolkit.errors import CompatibilityError
from kptoolkit.experiment.components import natural_masker
from kptoolkit.generators.motion import heatmap_difference, keypoint_gaussians, sparse_motions
from kptoolkit.keypoints.relative import relative_structure
from kptoolkit.nn.grid import make_coordinate_grid
from kptoolkit.structure import Structure

REFERENCE = read_reference_table("fomm-taichi-256-state-dict.tsv")
TINY_FOMM = {
    "num_kp": 5,
    "block_expansion": 8,
    "max_features": 32,
    "num_bottleneck_blocks": 2,
    "dense_block_expansion": 8,
    "dense_max_features": 32,
    "dense_num_blocks": 3,
}


def keypoint_structure(batch=2, num_kp=5, seed=0, jacobians=True):
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(batch, num_kp, 2, generator=g) * 1.4 - 0.7
    jac = torch.eye(2) + 0.1 * torch.randn(batch, num_kp, 2, 2, generator=g)
    return Structure(keypoints=kp, jacobians=jac if jacobians else None)


def test_paper_widths_have_exactly_the_official_layout():
    generator = create_generator("fomm")
    shapes = {k: tuple(v.shape) for k, v in generator.state_dict().items()}
    assert shapes == REFERENCE["generator"] and len(shapes) == 196
    assert sum(p.numel() for p in generator.parameters()) == 45_575_391


def test_outputs():
    generator = create_generator("fomm", **TINY_FOMM)
    source = torch.rand(2, 3, 64, 64)
    out = generator(source, keypoint_structure(seed=1), keypoint_structure(seed=2))
    assert out["prediction"].shape == out["deformed"].shape == (2, 3, 64, 64)
    assert out["occlusion_map"].shape == (2, 1, 16, 16)
    assert out["deformation"].shape == (2, 16, 16, 2)
    assert out["motion_masks"].shape == (2, 6, 16, 16)
    torch.testing.assert_close(out["motion_masks"].sum(1), torch.ones(2, 16, 16))
    assert out["prediction"].min() >= 0 and out["prediction"].max() <= 1


def test_gaussians_and_heatmap_difference():
    kp = torch.tensor([[[0.0, 0.0]]])
    gauss = keypoint_gaussians(kp, 5, 5, variance=0.01)
    assert gauss[0, 0, 2, 2] == 1.0
    expected = torch.exp(torch.tensor(-0.5 * 0.25 / 0.01))  # one pixel is 0.5 in [-1,1] units
    torch.testing.assert_close(gauss[0, 0, 2, 3], expected)
    diff = heatmap_difference(kp + 0.5, kp, 5, 5, 0.01)
    assert diff.shape == (1, 2, 5, 5) and diff[:, 0].abs().max() == 0
    torch.testing.assert_close(
        diff[:, 1], keypoint_gaussians(kp + 0.5, 5, 5, 0.01)[:, 0] - gauss[:, 0]
    )


def test_sparse_motions_are_first_order():
    kp_d = torch.tensor([[[0.2, -0.1]]])
    kp_s = torch.tensor([[[-0.3, 0.4]]])
    a = torch.tensor([[[[1.2, 0.3], [-0.1, 0.9]]]])
    motions = sparse_motions(kp_d, kp_s, 4, 6, torch.eye(2).expand(1, 1, 2, 2), a)
    grid = make_coordinate_grid(4, 6)
    torch.testing.assert_close(motions[0, 0], grid)  # the background moves nowhere
    expected = kp_s[0, 0] + (grid - kp_d[0, 0]) @ a[0, 0].T  # T(z) = kp_s + J_s J_d^-1 (z - kp_d)
    torch.testing.assert_close(motions[0, 1], expected)


@pytest.mark.parametrize("scale_factor", [0.25, 0.5])  # 0.5: the flow is resized for features
def test_identity_motion_reproduces_the_warp_free_path(scale_factor):
    torch.manual_seed(0)
    generator = create_generator("fomm", scale_factor=scale_factor, **TINY_FOMM).eval()
    source = torch.rand(2, 3, 64, 64)
    same = keypoint_structure(seed=3)
    with torch.no_grad():
        out = generator(source, same, same)
        torch.testing.assert_close(out["deformed"], source, atol=1e-5, rtol=0)
        # the same network with the warp skipped: encode, occlude, decode
        features = generator.first(source)
        for block in generator.down_blocks:
            features = block(features)
        occlusion = F.interpolate(out["occlusion_map"], size=features.shape[-2:], mode="bilinear")
        features = generator.bottleneck(features * occlusion)
        for block in generator.up_blocks:
            features = block(features)
        expected = torch.sigmoid(generator.final(features))
    torch.testing.assert_close(out["prediction"], expected, atol=1e-5, rtol=1e-4)


def test_gradients_reach_every_parameter_and_the_detector():
    torch.manual_seed(0)
    detector = tiny_detector(frozen=False)
    masker = create_masker(natural_masker("fomm"))
    masker.attach_detector(detector)
    generator = create_generator("fomm", **TINY_FOMM)
    assert type(masker).__name__ == "FommKeypointsMasker"
    source, driving = torch.rand(2, 2, 3, 64, 64).unbind(0)
    out = generator(source, masker(source), masker(driving))
    (out["prediction"] - driving).abs().mean().backward()
    for name, p in [*generator.named_parameters(), *detector.named_parameters()]:
        if name.startswith("jacobian."):
            continue  # see below
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the jacobian head starts at zero weight, so its input gradient is zero, but it learns
    assert detector.jacobian.weight.grad.abs().sum() > 0


def test_natural_maskers_and_explicit_mismatch():
    assert natural_masker("fomm") == "fomm_keypoints"
    assert natural_masker("two_stage") == "heatmap_sum"
    with pytest.raises(CompatibilityError, match=r"masker 'heatmap_sum'.*generator 'fomm'"):
        pair_plan("heatmap_sum", "fomm")


def test_relative_animation_moves_source_keypoints_by_the_driving_motion():
    masker = create_masker("fomm_keypoints")
    source = keypoint_structure(batch=1, seed=4)
    initial = keypoint_structure(batch=1, seed=5)
    shift = torch.tensor([0.1, -0.05])
    driving = Structure(keypoints=initial.keypoints + shift, jacobians=initial.jacobians)
    relative = relative_structure(masker, source, driving, initial)
    torch.testing.assert_close(relative.keypoints, source.keypoints + shift)
    torch.testing.assert_close(relative.jacobians, source.jacobians)
    adapted = relative_structure(masker, source, driving, initial, adapt_scale=True)
    assert not torch.allclose(adapted.keypoints, relative.keypoints)
    generator = create_generator("fomm", **TINY_FOMM)
    frame = torch.rand(1, 3, 64, 64)
    assert generator(frame, source, relative)["prediction"].shape == (1, 3, 64, 64)


def test_keypoints_without_jacobians():
    generator = create_generator("fomm", estimate_jacobian=False, **TINY_FOMM)
    assert generator.requires == {"keypoints"}
    source = keypoint_structure(jacobians=False)
    out = generator(torch.rand(2, 3, 64, 64), source, keypoint_structure(seed=9, jacobians=False))
    assert out["prediction"].shape == (2, 3, 64, 64)


@pytest.mark.slow
def test_official_fomm_checkpoint_loads_into_all_three_models(tmp_path):
    from kptoolkit.generators.discriminator import MultiScaleDiscriminator
    from kptoolkit.keypoints.detector import KeypointDetector
    from kptoolkit.keypoints.loading import load_detector
    from kptoolkit.utils.checkpoint_io import load_strict, model_state, read_checkpoint

    torch.manual_seed(0)
    published = {
        "kp_detector": KeypointDetector().state_dict(),
        "generator": create_generator("fomm").state_dict(),
        "discriminator": MultiScaleDiscriminator().state_dict(),
        "optimizer_kp_detector": {"state": {}, "param_groups": []},
        "optimizer_generator": {"state": {}, "param_groups": []},
        "optimizer_discriminator": {"state": {}, "param_groups": []},
        "epoch": 99,
    }
    for section in ("kp_detector", "generator", "discriminator"):
        shapes = {k: tuple(v.shape) for k, v in published[section].items()}
        assert shapes == REFERENCE[section]
    path = tmp_path / "taichi-cpk.pth.tar"
    torch.save(published, path)
    checkpoint = read_checkpoint(path)
    generator, discriminator = create_generator("fomm"), MultiScaleDiscriminator()
    load_strict(generator, model_state(checkpoint, "generator"), "generator")
    load_strict(discriminator, model_state(checkpoint, "discriminator"), "discriminator")
    detector = load_detector(path)
    torch.testing.assert_close(generator.final.weight, published["generator"]["final.weight"])
    torch.testing.assert_close(
        discriminator.discs["1"].conv.weight, published["discriminator"]["discs.1.conv.weight"]
    )
    torch.testing.assert_close(detector.detector.kp.weight, published["kp_detector"]["kp.weight"])


def _forced_occlusion(generator, value: float) -> None:
    """Make the dense motion network's occlusion map `value` everywhere."""
    head = generator.dense_motion_network.occlusion
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.constant_(head.bias, torch.logit(torch.tensor(value)).item())


def test_warped_source_blend_follows_the_occlusion_map():
    source = torch.rand(2, 3, 64, 64)
    kp_s, kp_d = keypoint_structure(seed=1), keypoint_structure(seed=2)
    plain = create_generator("fomm", **TINY_FOMM).eval()
    blended = create_generator("fomm", **TINY_FOMM, blend_warped_source=True).eval()
    blended.load_state_dict(plain.state_dict())  # no new parameters: same keys and shapes
    for value in (0.999, 0.25):
        _forced_occlusion(plain, value)
        _forced_occlusion(blended, value)
        with torch.no_grad():
            decoded, out = plain(source, kp_s, kp_d), blended(source, kp_s, kp_d)
        expected = decoded["prediction"] * (1 - value) + out["deformed"] * value
        torch.testing.assert_close(out["prediction"], expected, atol=1e-5, rtol=1e-4)
    # nearly open everywhere: the warped source passes through
    _forced_occlusion(blended, 0.999)
    with torch.no_grad():
        out = blended(source, kp_s, kp_d)
    assert (out["prediction"] - out["deformed"]).abs().max() < 2e-3


def test_warped_source_blend_needs_the_occlusion_map():
    with pytest.raises(ValueError, match="estimate_occlusion_map"):
        create_generator(
            "fomm", **TINY_FOMM, blend_warped_source=True, estimate_occlusion_map=False
        )
