"""FOMM training losses: discriminator layout, equivariance transform and loss, LSGAN, features."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from model_fixtures import read_reference_table, tiny_detector
from torch import nn

from kptoolkit.errors import ConfigError
from kptoolkit.generators.discriminator import DiscriminatorOutput, MultiScaleDiscriminator
from kptoolkit.keypoints.detector import DetectorOutput
from kptoolkit.losses.base import LossInputs
from kptoolkit.losses.equivariance import (
    EquivarianceLoss,
    RandomTransform,
    sample_transform,
    transform_jacobian,
    warp_frame,
    warp_grid,
    warp_points,
)
from kptoolkit.losses.gan import FeatureMatchingLoss, GanLoss
from kptoolkit.nn.grid import make_coordinate_grid
from kptoolkit.structure import Structure

FOMM = read_reference_table("fomm-taichi-256-state-dict.tsv")


# ----------------------------------------------------------------------------- helpers


def blobs(centers: torch.Tensor, size: int, sigma: float = 0.06) -> torch.Tensor:
    """(B,C,size,size) frame: channel c holds a Gaussian blob centred at centers[b, c] (x, y)."""
    grid = make_coordinate_grid(size, size, dtype=centers.dtype)
    offsets = grid.view(1, 1, size, size, 2) - centers.view(*centers.shape[:2], 1, 1, 2)
    return torch.exp(-0.5 * (offsets**2).sum(-1) / sigma**2)


def centroids(frame: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted (x, y) centroid of each channel of (B,C,H,W) -> (B,C,2)."""
    grid = make_coordinate_grid(*frame.shape[-2:], dtype=frame.dtype)
    return torch.einsum("bchw,hwk->bck", frame, grid) / frame.sum(dim=(-2, -1)).unsqueeze(-1)


ARM = 0.2
KP_CENTRES = torch.tensor([[-0.35, -0.3], [0.3, 0.35]])


def keypoint_frame(batch: int, size: int = 64) -> torch.Tensor:
    """Five blob channels per keypoint: at the keypoint and ARM to its right, left, below, above."""
    points = []
    for centre in KP_CENTRES:
        for step in ([0.0, 0.0], [ARM, 0.0], [-ARM, 0.0], [0.0, ARM], [0.0, -ARM]):
            points.append(centre + torch.tensor(step))
    return blobs(torch.stack(points).expand(batch, -1, -1), size)


class CentroidDetector(nn.Module):
    """Equivariant by construction: keypoints are blob centroids, jacobians central differences.

    The transformed frame shows the blob drawn at p at T^-1(p), so its centroids give T^-1 at the
    keypoint and, by central differences of the arms, d(T^-1) = (dT)^-1 up to O(ARM^2).
    """

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))  # centroids do not depend on it

    def forward(self, frame: torch.Tensor) -> DetectorOutput:
        points = centroids(frame * self.gain)
        kp = points[:, 0::5]
        d_x = (points[:, 1::5] - points[:, 2::5]) / (2 * ARM)
        d_y = (points[:, 3::5] - points[:, 4::5]) / (2 * ARM)
        return DetectorOutput(frame, frame, kp, torch.stack([d_x, d_y], dim=-1))


class FixedDetector(nn.Module):
    """Not equivariant: the same keypoints and identity jacobians whatever the frame."""

    def forward(self, frame: torch.Tensor) -> DetectorOutput:
        batch = frame.shape[0]
        kp = KP_CENTRES.expand(batch, -1, -1).to(frame.dtype)
        jac = torch.eye(2, dtype=frame.dtype).expand(batch, len(KP_CENTRES), 2, 2)
        return DetectorOutput(frame, frame, kp, jac)


def loss_inputs(driving: torch.Tensor, detector: nn.Module | None, seed: int | None = 0, **kw):
    structure = Structure()
    if detector is not None:
        out = detector(driving)
        structure = Structure(keypoints=out.keypoints, jacobians=out.jacobians)
    return LossInputs(
        batch={"source": driving, "driving": driving},
        outputs={},
        source_structure=structure,
        driving_structure=structure,
        detector=detector,
        rng=None if seed is None else torch.Generator().manual_seed(seed),
        **kw,
    )


def translation(batch: int, dx: float, dy: float) -> RandomTransform:
    theta = torch.tensor([[1.0, 0.0, dx], [0.0, 1.0, dy]]).expand(batch, 2, 3)
    return RandomTransform(theta, torch.zeros(batch, 0, 2), torch.zeros(batch, 0, 2))


# ----------------------------------------------------------------------------- discriminator


def test_discriminator_has_exactly_the_reference_entries_and_loads_strictly():
    disc = MultiScaleDiscriminator()  # Tai-Chi parameters are the defaults
    shapes = {k: tuple(v.shape) for k, v in disc.state_dict().items()}
    assert shapes == FOMM["discriminator"] and len(shapes) == 16
    assert sum(p.numel() for p in disc.parameters()) == 2_758_849
    official = {k: torch.randn(shape) for k, shape in FOMM["discriminator"].items()}
    disc.load_state_dict(official, strict=True)
    torch.testing.assert_close(disc.discs["1"].conv.weight, official["discs.1.conv.weight"])


def test_discriminator_output_shapes_at_64px():
    disc = MultiScaleDiscriminator()
    out = disc(torch.rand(2, 3, 64, 64))
    assert list(out) == ["1"]
    shapes = [tuple(f.shape) for f in out["1"].feature_maps]
    assert shapes == [(2, 64, 30, 30), (2, 128, 13, 13), (2, 256, 5, 5), (2, 512, 2, 2)]
    assert out["1"].prediction_map.shape == (2, 1, 2, 2)


def test_discriminator_blocks_follow_fomm():
    disc = MultiScaleDiscriminator(block_expansion=4, max_features=8).discs["1"]
    nn.init.normal_(disc.down_blocks[1].norm.weight)
    nn.init.normal_(disc.down_blocks[1].norm.bias)
    x = torch.randn(2, 3, 64, 64)
    out = disc(x)
    first, second = disc.down_blocks[0], disc.down_blocks[1]
    expected = F.avg_pool2d(F.leaky_relu(first.conv(x), 0.2), 2)
    torch.testing.assert_close(out.feature_maps[0], expected)
    norm = F.instance_norm(second.conv(expected), weight=second.norm.weight, bias=second.norm.bias)
    torch.testing.assert_close(out.feature_maps[1], F.avg_pool2d(F.leaky_relu(norm, 0.2), 2))
    last = disc.down_blocks[-1]
    no_pool = F.leaky_relu(
        F.instance_norm(
            last.conv(out.feature_maps[-2]), weight=last.norm.weight, bias=last.norm.bias
        ),
        0.2,
    )
    torch.testing.assert_close(out.feature_maps[-1], no_pool)
    torch.testing.assert_close(out.prediction_map, disc.conv(no_pool))


def test_multiscale_pyramid_keys_and_inputs():
    disc = MultiScaleDiscriminator(scales=[1.0, 0.5], block_expansion=4, max_features=8)
    assert set(disc.discs) == {"1", "0-5"}
    frames = torch.rand(1, 3, 128, 128)
    out = disc(frames)
    assert out["0.5"].feature_maps[0].shape[-1] == 30  # (64 - 3) // 2
    # a ready pyramid (FOMM's keys) gives the same result as the pyramid built inside
    pyramid = disc.pyramid(frames)
    again = disc({"prediction_1": pyramid["1"], "prediction_0.5": pyramid["0.5"]})
    torch.testing.assert_close(again["0.5"].prediction_map, out["0.5"].prediction_map)
    with pytest.raises(ValueError, match="at least 61x61"):
        disc(torch.rand(1, 3, 64, 64))  # 32 px at scale 0.5


def test_minimum_input_size_is_exact():
    disc = MultiScaleDiscriminator(block_expansion=4, max_features=8).discs["1"]
    size = disc.min_input_size
    assert size == 61
    disc(torch.rand(1, 3, size, size))
    with pytest.raises(ValueError, match="needs inputs of at least 61x61"):
        disc(torch.rand(1, 3, size - 1, size - 1))
    out = torch.rand(1, 3, size - 1, size - 1)
    with pytest.raises(ValueError, match="spatial element"):  # torch's own failure
        for block in disc.down_blocks:
            out = block(out)


def test_discriminator_with_keypoint_heatmaps():
    disc = MultiScaleDiscriminator(block_expansion=4, max_features=8, use_kp=True, num_kp=5)
    assert disc.discs["1"].down_blocks[0].conv.in_channels == 3 + 5
    out = disc(torch.rand(2, 3, 64, 64), keypoints=torch.rand(2, 5, 2) * 2 - 1)
    assert out["1"].prediction_map.shape == (2, 1, 2, 2)
    with pytest.raises(ValueError, match="keypoints"):
        disc(torch.rand(2, 3, 64, 64))


# ----------------------------------------------------------------------------- transform


def test_zero_sigma_transform_is_the_identity():
    transform = sample_transform(3, sigma_affine=0.0, sigma_tps=0.0, points_tps=5)
    assert transform.centers.shape == transform.weights.shape == (3, 25, 2)
    points = torch.rand(3, 7, 2) * 2 - 1
    torch.testing.assert_close(warp_points(transform, points), points, atol=1e-6, rtol=0)
    frame = torch.rand(3, 2, 16, 20)
    torch.testing.assert_close(warp_frame(transform, frame), frame, atol=1e-5, rtol=0)
    eye = torch.eye(2).expand(3, 7, 2, 2)
    torch.testing.assert_close(transform_jacobian(transform, points), eye)


def test_sampling_follows_fomm():
    gen = torch.Generator().manual_seed(3)
    transform = sample_transform(64, 0.05, 0.005, 5, generator=gen, dtype=torch.float64)
    assert (transform.theta - torch.eye(2, 3, dtype=torch.float64)).std().item() == pytest.approx(
        0.05, rel=0.15
    )
    assert transform.weights.std().item() == pytest.approx(0.005, rel=0.15)
    # one spline weight per control point, shared by x and y (FOMM's control_params)
    torch.testing.assert_close(transform.weights[..., 0], transform.weights[..., 1])
    corners = transform.centers[0, [0, 4, 20, 24]]
    torch.testing.assert_close(
        corners, torch.tensor([[-1, -1], [1, -1], [-1, 1], [1, 1.0]]).double()
    )
    assert sample_transform(2, points_tps=0).centers.shape == (2, 0, 2)
    with pytest.raises(ValueError, match="points_tps"):
        sample_transform(2, points_tps=1)


def test_frame_warp_samples_the_frame_at_the_transformed_points():
    """Inverse mapping: transformed(z) = driving(T(z)); content at p moves to T^-1(p)."""
    frame = blobs(torch.tensor([[[0.1, -0.2]]]), 64)
    moved = warp_frame(translation(1, 0.2, 0.0), frame)
    torch.testing.assert_close(centroids(moved), torch.tensor([[[-0.1, -0.2]]]), atol=2e-3, rtol=0)
    # warp_frame is grid_sample at T(pixel grid), reflection padding, pixel-centre convention
    transform = sample_transform(2, 0.2, 0.02, generator=torch.Generator().manual_seed(1))
    frame = torch.rand(2, 3, 24, 32)
    grid = make_coordinate_grid(24, 32).expand(2, 24, 32, 2)
    expected = nn.functional.grid_sample(
        frame, warp_points(transform, grid), padding_mode="reflection", align_corners=True
    )
    torch.testing.assert_close(warp_frame(transform, frame), expected, atol=1e-5, rtol=0)


def test_point_warp_maps_transformed_blobs_back_onto_the_driving_blobs():
    centre = torch.tensor([[[0.2, -0.1]]]).expand(8, 1, 2)
    frame = blobs(centre, 96, sigma=0.05)
    transform = sample_transform(8, 0.1, 0.01, generator=torch.Generator().manual_seed(5))
    found = centroids(warp_frame(transform, frame))  # where the blob is in the transformed frame
    inverse_error = (warp_points(transform, found) - centre).norm(dim=-1)
    forward_error = (found - warp_points(transform, centre)).norm(dim=-1)  # the wrong convention
    assert inverse_error.max() < 0.005
    assert forward_error.mean() > 20 * inverse_error.mean()


@pytest.mark.parametrize("kernel", ["kornia", "fomm"])
def test_transform_jacobian_matches_finite_differences_and_autograd(kernel):
    gen = torch.Generator().manual_seed(2)
    transform = sample_transform(3, 0.1, 0.05, generator=gen, dtype=torch.float64, kernel=kernel)
    points = torch.rand(3, 9, 2, generator=gen, dtype=torch.float64) * 2.4 - 1.2
    points[:, 0] = transform.centers[:, 12]  # exactly on a control point
    points[:, 1] = transform.centers[:, 12] + 1e-4
    jac = transform_jacobian(transform, points)
    eps = 1e-6
    columns = []
    for j in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[j] = eps
        diff = warp_points(transform, points + step) - warp_points(transform, points - step)
        columns.append(diff / (2 * eps))
    torch.testing.assert_close(jac, torch.stack(columns, dim=-1), atol=1e-7, rtol=1e-6)
    free = points.clone().requires_grad_()
    warped = warp_points(transform, free)
    rows = [torch.autograd.grad(warped[..., i].sum(), free, retain_graph=True)[0] for i in range(2)]
    torch.testing.assert_close(jac, torch.stack(rows, dim=-2))
    assert (jac - torch.eye(2, dtype=torch.float64)).abs().max() > 0.05  # not trivially I


def test_shared_kernel_grid_equals_kornia_within_1e_6():
    """warp_grid's one (pixels x control points) kernel matrix gives kornia's sampling grid."""
    gen = torch.Generator().manual_seed(4)
    transform = sample_transform(
        3, 0.05, 0.005, generator=gen, dtype=torch.float64, kernel="kornia"
    )
    grid = make_coordinate_grid(40, 48, dtype=torch.float64).expand(3, 40, 48, 2)
    torch.testing.assert_close(warp_grid(transform, 40, 48), warp_points(transform, grid))
    single = sample_transform(2, 0.05, 0.005, generator=gen, kernel="kornia")  # float32
    grid32 = make_coordinate_grid(64, 64).expand(2, 64, 64, 2)
    assert (warp_grid(single, 64, 64) - warp_points(single, grid32)).abs().max() < 1e-6
    # the frame warp of the own kernels is grid_sample at that grid
    fomm = RandomTransform(single.theta, single.centers, single.weights, kernel="fomm")
    frame = torch.rand(2, 3, 64, 64, generator=gen)
    expected = nn.functional.grid_sample(
        frame, warp_grid(fomm, 64, 64), padding_mode="reflection", align_corners=True
    )
    torch.testing.assert_close(warp_frame(fomm, frame), expected)


def test_kornia_kernel_frame_warp_equals_kornias_image_warp_and_keeps_the_loss():
    """warp_frame samples at the shared-kernel grid instead of calling kornia's
    warp_image_tps (its (B, H*W, N, 2) intermediate): same frames to 1e-5, same loss to 1e-6."""
    from kornia.geometry.transform import warp_image_tps

    import kptoolkit.losses.equivariance as module

    def kornia_frame_warp(t: RandomTransform, f: torch.Tensor) -> torch.Tensor:
        affine = module._kornia_affine(t, f.dtype)
        return warp_image_tps(
            f, t.centers, t.weights, affine, align_corners=True, padding_mode="reflection"
        )

    gen = torch.Generator().manual_seed(5)
    transform = sample_transform(4, 0.05, 0.005, generator=gen, kernel="kornia")
    frame = torch.rand(4, 3, 48, 48, generator=gen)
    expected = kornia_frame_warp(transform, frame)
    torch.testing.assert_close(warp_frame(transform, frame), expected, atol=2e-5, rtol=0)

    loss = EquivarianceLoss(kernel="kornia")
    driving = keypoint_frame(4)
    value = loss(loss_inputs(driving, CentroidDetector(), seed=3), "prediction")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "warp_frame", kornia_frame_warp)
        reference = loss(loss_inputs(driving, CentroidDetector(), seed=3), "prediction")
    assert abs(value.item() - reference.item()) < 1e-6


def test_fomm_kernel_by_hand():
    """FOMM: T(z) = A z + t + sum_i w_i d_i^2 log(d_i + 1e-6), d_i = |z - c_i|_1, added to x and
    y alike."""
    theta = torch.tensor([[[1.1, 0.2, 0.05], [-0.1, 0.9, -0.02]]], dtype=torch.float64)
    centers = torch.tensor([[[0.0, 0.0], [1.0, -1.0]]], dtype=torch.float64)
    weights = torch.tensor([[[0.1, 0.1], [-0.3, -0.3]]], dtype=torch.float64)
    transform = RandomTransform(theta, centers, weights, kernel="fomm")
    points = torch.tensor([[[0.5, -0.25], [0.0, 0.0]]], dtype=torch.float64)

    def expected(x, y):
        d0, d1 = abs(x) + abs(y), abs(x - 1) + abs(y + 1)
        spline = 0.1 * d0**2 * math.log(d0 + 1e-6) - 0.3 * d1**2 * math.log(d1 + 1e-6)
        return [1.1 * x + 0.2 * y + 0.05 + spline, -0.1 * x + 0.9 * y - 0.02 + spline]

    found = warp_points(transform, points)
    torch.testing.assert_close(
        found, torch.tensor([[expected(0.5, -0.25), expected(0.0, 0.0)]], dtype=torch.float64)
    )
    kornia = RandomTransform(theta, centers, weights, kernel="kornia")
    assert (warp_points(kornia, points) - found).abs().max() > 1e-3  # another kernel
    with pytest.raises(ValueError, match="fomm, kornia"):
        RandomTransform(theta, centers, weights, kernel="gaussian")


def test_fomm_kernel_warps_as_strongly_as_fomm():
    """At FOMM's sigma_tps the L1-distance kernel moves pixels about 2.5x as far as the
    thin-plate one; its size follows from the draw: RMS = sigma_tps * RMS_z |sum_i U_i(z)| under
    independent weights, i.e. sigma_tps * sqrt(mean_z sum_i U_i(z)^2)."""
    grid = make_coordinate_grid(64, 64, dtype=torch.float64).reshape(1, -1, 2)
    rms = {}
    for kernel in ("kornia", "fomm"):
        gen = torch.Generator().manual_seed(0)
        transform = sample_transform(
            1024, 0.0, 0.005, generator=gen, dtype=torch.float64, kernel=kernel
        )
        moved = warp_grid(transform, 64, 64).reshape(1024, -1, 2) - grid
        rms[kernel] = moved[..., 0].pow(2).mean().sqrt().item()
        offsets = grid[0, :, None, :] - transform.centers[0]
        if kernel == "fomm":
            d = offsets.abs().sum(-1)
            basis = d**2 * torch.log(d + 1e-6)
        else:
            r2 = offsets.pow(2).sum(-1)
            basis = torch.where(r2 > 0, 0.5 * r2 * r2.clamp_min(1e-300).log(), 0 * r2)
        predicted = 0.005 * basis.pow(2).sum(-1).mean().sqrt().item()
        assert rms[kernel] == pytest.approx(predicted, rel=0.05)
    assert rms["fomm"] == pytest.approx(0.089, abs=0.005)
    assert 2.2 < rms["fomm"] / rms["kornia"] < 2.9
    assert EquivarianceLoss(kernel="fomm").sample(loss_inputs(keypoint_frame(2), None)).kernel == (
        "fomm"
    )


# ----------------------------------------------------------------------------- equivariance loss


@pytest.mark.parametrize(
    ("value_weight", "jacobian_weight", "kernel", "ratio"),
    [
        (1.0, 0.0, "kornia", 0.05),  # about 0.007
        (0.0, 1.0, "kornia", 0.05),  # about 0.02
        (1.0, 0.0, "fomm", 0.05),
        # FOMM's L1-distance kernel has kinks, where the centroid detector's central
        # differences are rougher estimates of the jacobian (about 0.055)
        (0.0, 1.0, "fomm", 0.1),
    ],
)
def test_equivariant_detector_has_near_zero_loss(value_weight, jacobian_weight, kernel, ratio):
    loss = EquivarianceLoss(
        value_weight=value_weight, jacobian_weight=jacobian_weight, kernel=kernel
    )
    frame = keypoint_frame(8)
    equivariant = loss(loss_inputs(frame, CentroidDetector()), "prediction")
    fixed = loss(loss_inputs(frame, FixedDetector()), "prediction")
    assert fixed > 0.03
    assert equivariant < ratio * fixed


def test_default_loss_is_the_weighted_sum_of_both_terms():
    frame = keypoint_frame(4)
    detector = FixedDetector()
    value = EquivarianceLoss(1.0, 0.0)(loss_inputs(frame, detector, seed=7), "prediction")
    jac = EquivarianceLoss(0.0, 1.0)(loss_inputs(frame, detector, seed=7), "prediction")
    total = EquivarianceLoss()(loss_inputs(frame, detector, seed=7), "prediction")
    torch.testing.assert_close(total, 10 * value + 10 * jac)
    # the fixed detector's loss is the transform's own displacement at the keypoints
    transform = sample_transform(4, generator=torch.Generator().manual_seed(7))
    kp = KP_CENTRES.expand(4, -1, -1)
    torch.testing.assert_close(value, (kp - warp_points(transform, kp)).abs().mean())


def test_loss_is_deterministic_under_a_seeded_generator():
    detector = tiny_detector(num_kp=3, frozen=False).eval()
    frame = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    loss = EquivarianceLoss()
    with torch.no_grad():
        first = loss(loss_inputs(frame, detector, seed=11), "prediction")
        again = loss(loss_inputs(frame, detector, seed=11), "prediction")
        other = loss(loss_inputs(frame, detector, seed=12), "prediction")
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    with torch.no_grad():  # without a generator, the global RNG decides
        torch.manual_seed(5)
        first = loss(loss_inputs(frame, detector, seed=None), "prediction")
        torch.manual_seed(5)
        assert torch.equal(first, loss(loss_inputs(frame, detector, seed=None), "prediction"))


@pytest.mark.parametrize("detach_driving", [False, True])
def test_gradients_reach_the_detector(detach_driving):
    detector = tiny_detector(num_kp=3, frozen=False)
    inputs = loss_inputs(torch.rand(2, 3, 64, 64), detector)
    if detach_driving:  # then only the transformed-frame branch can carry gradients
        inputs.driving_structure = inputs.driving_structure.detach()
    EquivarianceLoss()(inputs, "prediction").backward()
    for name in ("kp.weight", "jacobian.weight", "predictor.encoder.down_blocks.0.conv.weight"):
        grad = detector.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_equivariance_errors_are_clear():
    frame = keypoint_frame(1)
    inputs = loss_inputs(frame, CentroidDetector())
    inputs.detector = None
    with pytest.raises(ConfigError, match="detector being trained"):
        EquivarianceLoss()(inputs, "prediction")
    inputs = loss_inputs(frame, CentroidDetector())
    inputs.driving_structure = inputs.driving_structure.replace(jacobians=None)
    with pytest.raises(ConfigError, match="jacobian_weight"):
        EquivarianceLoss()(inputs, "prediction")
    assert EquivarianceLoss(jacobian_weight=0)(inputs, "prediction") < 0.01


# ----------------------------------------------------------------------------- GAN


class MeanDiscriminator(nn.Module):
    """Two scales; prediction = channel mean, features = [frame, 2 * frame]."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, frames, keypoints=None):
        out = DiscriminatorOutput([frames + self.bias, 2 * frames], frames.mean(1, keepdim=True))
        return {"1": out, "0.5": out}


def gan_inputs(fake: torch.Tensor, real: torch.Tensor, discriminator: nn.Module | None):
    return LossInputs(
        batch={"source": real, "driving": real},
        outputs={"prediction": fake},
        source_structure=Structure(),
        driving_structure=Structure(),
        discriminator=discriminator,
    )


def test_lsgan_values_on_constructed_outputs():
    real, fake = torch.ones(2, 3, 8, 8), torch.full((2, 3, 8, 8), 0.25)
    inputs = gan_inputs(fake, real, MeanDiscriminator())
    assert GanLoss.adversarial
    # summed over the two scales, as FOMM does
    torch.testing.assert_close(GanLoss()(inputs, "prediction"), torch.tensor(2 * 0.75**2))
    expected = 2 * ((1 - 1) ** 2 + 0.25**2)
    torch.testing.assert_close(
        GanLoss().discriminator_loss(inputs, "prediction"), torch.tensor(expected)
    )
    # features: |1 - 0.25| and |2 - 0.5| per scale, weights 1 and 3
    value = FeatureMatchingLoss([1.0, 3.0])(inputs, "prediction")
    torch.testing.assert_close(value, torch.tensor(2 * (0.75 + 3 * 1.5)))


def test_discriminator_loss_trains_only_the_discriminator():
    disc = MultiScaleDiscriminator(block_expansion=4, max_features=8)
    source = nn.Parameter(torch.rand(1, 3, 64, 64))
    inputs = gan_inputs(torch.sigmoid(source), torch.rand(1, 3, 64, 64), disc)
    GanLoss().discriminator_loss(inputs, "prediction").backward()
    assert source.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())
    GanLoss()(inputs, "prediction").backward()
    assert source.grad is not None and source.grad.abs().sum() > 0


def test_feature_matching_is_zero_for_identical_frames_only():
    disc = MultiScaleDiscriminator(block_expansion=4, max_features=8)
    real = torch.rand(2, 3, 64, 64)
    assert FeatureMatchingLoss()(gan_inputs(real.clone(), real, disc), "prediction") == 0
    fake = nn.Parameter(torch.rand(2, 3, 64, 64))
    value = FeatureMatchingLoss()(gan_inputs(fake, real, disc), "prediction")
    value.backward()
    assert value > 0 and fake.grad.abs().sum() > 0


def test_gan_losses_at_a_lower_output_resolution():
    disc = MultiScaleDiscriminator(block_expansion=4, max_features=8)
    inputs = gan_inputs(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 128, 128), disc)
    inputs.outputs["low_res_prediction"] = inputs.outputs.pop("prediction")
    assert GanLoss().discriminator_loss(inputs, "low_res_prediction") > 0
    assert FeatureMatchingLoss()(inputs, "low_res_prediction") > 0
    with pytest.raises(ConfigError, match="does not produce"):
        GanLoss()(inputs, "prediction")


def test_gan_errors_are_clear():
    real = torch.rand(1, 3, 64, 64)
    with pytest.raises(ConfigError, match="needs a discriminator"):
        GanLoss()(gan_inputs(real, real, None), "prediction")
    with pytest.raises(ConfigError, match="needs a discriminator"):
        FeatureMatchingLoss()(gan_inputs(real, real, None), "prediction")
    disc = MultiScaleDiscriminator(block_expansion=4, max_features=8)
    with pytest.raises(ConfigError, match="3 layer weights"):
        FeatureMatchingLoss([1, 1, 1])(gan_inputs(real, real, disc), "prediction")


class AutocastRecordingDetector(FixedDetector):
    """FixedDetector that notes the CPU autocast state of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.states: list[torch.dtype | None] = []

    def forward(self, frame: torch.Tensor) -> DetectorOutput:
        on = torch.is_autocast_enabled("cpu")
        self.states.append(torch.get_autocast_dtype("cpu") if on else None)
        return super().forward(frame)


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_equivariance_runs_the_detector_at_the_forward_pass_precision(dtype):
    """Both sides of the constraint at one precision: under a bfloat16 step the detector meets
    the transformed frame in bfloat16 too, and in a float32 step without autocast."""
    detector = AutocastRecordingDetector()
    inputs = loss_inputs(keypoint_frame(2), detector, autocast_dtype=dtype)
    detector.states.clear()  # the call that made the driving structure
    value = EquivarianceLoss()(inputs, "prediction")
    assert detector.states == [dtype]
    assert value.dtype == torch.float32
