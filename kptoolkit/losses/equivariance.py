"""FOMM's equivariance constraint on a keypoint detector being trained (the fomm baseline).

A random transform T (affine plus thin-plate spline, FOMM's `Transform`) warps the driving frame;
the detector should find the same keypoints and jacobians, moved by T:

    value     = mean |kp_driving - T(kp_transformed)|
    jacobian  = mean |I - J_driving^-1 (dT/dz at kp_transformed) J_transformed|

**Mapping direction.** T maps coordinates of the *transformed* frame to coordinates of the
*driving* frame: the transformed frame is the driving frame sampled at T(z) for every pixel z
(`grid_sample`, the backward / inverse mapping of image warping). A feature drawn at p in the
driving frame therefore appears at z = T^-1(p) in the transformed frame, which is why the value
term compares kp_driving with T(kp_transformed) and never needs T^-1.

**Spline.** T(z) = A z + t + sum_i w_i U(z - c_i), with A = I + N(0, sigma_affine) (2x2) and
t = N(0, sigma_affine) (2), control points c_i on a `points_tps` x `points_tps` grid over [-1, 1]^2
and w_i = N(0, sigma_tps). As in FOMM, each control point has *one* weight that displaces x and y
alike, and the weights are used as they are drawn (no TPS fitting, no side conditions). Two radial
kernels U are available (`kernel`):

- `"fomm"` (the default): FOMM's own U = d^2 log(d + 1e-6) of the L1 distance
  d = |z - c|_1, so the random warps are as strong as FOMM's at FOMM's published sigmas;
- `"kornia"`: the textbook thin-plate kernel U = r^2 log r of the Euclidean
  distance r = |z - c|_2 (kornia's `warp_points_tps`). Since d >= r, it deforms less at the
  same sigma_tps: over a 64x64 grid the root-mean-square spline displacement is about 0.035
  against 0.089 with FOMM's kernel (the affine part adds about 0.065 with either).

The "kornia" kernel warps points with kornia's `warp_points_tps`. Frames are warped here for both
kernels: the pixel grid and the control points are the same for every transform of a
batch, so `warp_grid` evaluates the kernel once on (pixels x control points) and applies every
transform's weights with one matrix product, instead of kornia's (batch, pixels, control
points, 2) intermediate (`warp_grid` gives the same grid as kornia for the "kornia" kernel, to
1e-6).

Coordinates are (x, y) in [-1, 1] with -1 and 1 at the first and last pixel centres
(`align_corners=True`, kptoolkit's and FOMM's convention); out-of-frame samples are reflected as
in FOMM.
"""

from __future__ import annotations

import attrs
import torch
from kornia.geometry.transform import warp_points_tps
from torch import nn

from kptoolkit.errors import ConfigError
from kptoolkit.losses.base import Loss, LossInputs
from kptoolkit.nn.grid import make_coordinate_grid

KERNELS = ("fomm", "kornia")
FOMM_LOG_EPS = 1e-6  # FOMM's log(d + eps)


def _check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"unknown spline kernel {kernel!r}: choose one of {', '.join(KERNELS)}")
    return kernel


@attrs.frozen
class RandomTransform:
    """A batch of transforms T: `theta` (B,2,3) = [A | t]; spline `centers` and `weights` (B,N,2).

    `weights[..., 0]` displaces x and `weights[..., 1]` y; FOMM's sampling makes the two columns
    equal. N is 0 for a purely affine transform. `kernel` is the spline's radial basis
    ("fomm" or "kornia", see the module docstring).
    """

    theta: torch.Tensor
    centers: torch.Tensor
    weights: torch.Tensor
    kernel: str = attrs.field(default="fomm", validator=lambda _, __, v: _check_kernel(v))

    @property
    def batch_size(self) -> int:
        """Number of transforms."""
        return self.theta.shape[0]

    def shared_centers(self) -> torch.Tensor | None:
        """The (N,2) control points when every transform of the batch uses the same ones."""
        if self.centers.shape[0] == 0:
            return None
        first = self.centers[0]
        return first if bool((self.centers == first).all()) else None


def sample_transform(
    batch_size: int,
    sigma_affine: float = 0.05,
    sigma_tps: float = 0.005,
    points_tps: int = 5,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    kernel: str = "fomm",
) -> RandomTransform:
    """Draw FOMM's random transforms: theta = [I | 0] + N(0, sigma_affine), spline N(0, sigma_tps).

    The affine noise is drawn first, then one spline weight per control point, as FOMM does.
    `points_tps` = 0 gives purely affine transforms. Numbers come from `generator` when given
    (on its own device, then moved to `device`).
    """
    if points_tps == 1 or points_tps < 0:
        raise ValueError(f"points_tps must be 0 (no spline) or >= 2, got {points_tps}")
    if sigma_affine < 0 or sigma_tps < 0:
        raise ValueError(f"sigmas must be >= 0, got {sigma_affine} and {sigma_tps}")
    _check_kernel(kernel)
    draw_device = generator.device if generator is not None else device
    device = draw_device if device is None else device
    noise = torch.randn(batch_size, 2, 3, generator=generator, device=draw_device, dtype=dtype)
    theta = (noise * sigma_affine).to(device) + torch.eye(2, 3, device=device, dtype=dtype)
    num_points = points_tps**2
    weights = torch.randn(
        batch_size, num_points, 1, generator=generator, device=draw_device, dtype=dtype
    )
    weights = (weights * sigma_tps).to(device).expand(batch_size, num_points, 2)
    if points_tps:
        grid = make_coordinate_grid(points_tps, points_tps, dtype=dtype, device=theta.device)
        centers = grid.reshape(1, num_points, 2).expand(batch_size, num_points, 2)
    else:
        centers = theta.new_zeros(batch_size, 0, 2)
    return RandomTransform(theta, centers, weights, kernel)


def spline_basis(offsets: torch.Tensor, kernel: str) -> torch.Tensor:
    """U(z - c) for offsets (..., 2) = z - c: FOMM's d^2 log(d + 1e-6) of the L1 distance, or
    the thin-plate r^2 log r of the Euclidean distance (0 at r = 0)."""
    if _check_kernel(kernel) == "fomm":
        distance = offsets.abs().sum(dim=-1)
        return distance**2 * torch.log(distance + FOMM_LOG_EPS)
    squared = (offsets**2).sum(dim=-1)
    positive = squared > 0
    safe = torch.where(positive, squared, torch.ones_like(squared))
    return torch.where(positive, 0.5 * squared * safe.log(), torch.zeros_like(squared))


def _spline_gradient(offsets: torch.Tensor, kernel: str) -> tuple[torch.Tensor, torch.Tensor]:
    """dU/dz at offsets (..., N, 2) = z - c, as a factor (..., N) times a direction (..., N, 2);
    zero where the kernel's gradient vanishes (at the control point)."""
    if kernel == "fomm":
        distance = offsets.abs().sum(dim=-1)
        slope = 2 * distance * torch.log(distance + FOMM_LOG_EPS) + distance**2 / (
            distance + FOMM_LOG_EPS
        )
        return slope, torch.sign(offsets)
    squared = (offsets**2).sum(dim=-1)
    positive = squared > 0
    safe = torch.where(positive, squared, torch.ones_like(squared))
    return torch.where(positive, safe.log() + 1, torch.zeros_like(squared)), offsets


def _affine(transform: RandomTransform, flat: torch.Tensor) -> torch.Tensor:
    theta = transform.theta.to(flat.dtype)
    return flat @ theta[:, :, :2].transpose(1, 2) + theta[:, None, :, 2]


def _kornia_affine(transform: RandomTransform, dtype: torch.dtype) -> torch.Tensor:
    """The affine part in kornia's (B,3,2) layout: rows t, column x of A, column y of A."""
    theta = transform.theta.to(dtype)
    return torch.cat([theta[:, :, 2:], theta[:, :, :2]], dim=2).transpose(1, 2)


def warp_points(transform: RandomTransform, points: torch.Tensor) -> torch.Tensor:
    """T(points) for (B,...,2) points: transformed-frame coordinates -> driving-frame ones."""
    flat = points.reshape(points.shape[0], -1, 2)
    if transform.kernel == "kornia":
        warped = warp_points_tps(
            flat,
            transform.centers.to(flat.dtype),
            transform.weights.to(flat.dtype),
            _kornia_affine(transform, flat.dtype),
        )
        return warped.reshape(points.shape)
    warped = _affine(transform, flat)
    if transform.centers.shape[1]:
        offsets = flat.unsqueeze(2) - transform.centers.to(flat.dtype).unsqueeze(1)  # (B,P,N,2)
        basis = spline_basis(offsets, transform.kernel)  # (B,P,N)
        warped = warped + basis @ transform.weights.to(flat.dtype)
    return warped.reshape(points.shape)


def warp_grid(transform: RandomTransform, height: int, width: int) -> torch.Tensor:
    """T at every pixel centre of an (height, width) frame: the (B,H,W,2) sampling grid.

    The kernel is evaluated once on (pixels x control points) when the batch shares its control
    points (always, for `sample_transform`), then applied to each transform's weights.
    """
    theta = transform.theta
    grid = make_coordinate_grid(height, width, dtype=theta.dtype, device=theta.device)
    flat = grid.reshape(1, height * width, 2)
    centers = transform.shared_centers()
    if centers is None:
        warped = warp_points(transform, flat.expand(transform.batch_size, -1, -1))
    else:
        warped = _affine(transform, flat)
        basis = spline_basis(flat[0, :, None, :] - centers.to(flat.dtype), transform.kernel)
        warped = warped + torch.einsum("pn,bnc->bpc", basis, transform.weights.to(flat.dtype))
    return warped.reshape(transform.batch_size, height, width, 2)


def warp_frame(transform: RandomTransform, frame: torch.Tensor) -> torch.Tensor:
    """The transformed frame: (B,C,H,W) `frame` sampled at T(z) for each pixel z (reflection).

    Both kernels sample at `warp_grid` (for "kornia", the grid of kornia's `warp_image_tps`
    without its (B, H*W, N, 2) intermediate: 7x faster at 256 px, equal to 1e-5).
    """
    grid = warp_grid(transform, frame.shape[-2], frame.shape[-1]).to(frame.dtype)
    return nn.functional.grid_sample(
        frame, grid, mode="bilinear", padding_mode="reflection", align_corners=True
    )


def transform_jacobian(transform: RandomTransform, points: torch.Tensor) -> torch.Tensor:
    """dT/dz at (B,...,2) points -> (B,...,2,2), entry [i, j] = dT_i/dz_j (analytic).

    FOMM kernel: dU/dz = (2 d log(d + eps) + d^2 / (d + eps)) sign(z - c); thin-plate kernel:
    dU/dz = (log s + 1)(z - c) with s = |z - c|^2. Both vanish at the control point.
    Differentiable in `points`.
    """
    batch = points.shape[0]
    flat = points.reshape(batch, -1, 2)
    affine = transform.theta[:, :, :2].to(flat.dtype).unsqueeze(1)
    if not transform.centers.shape[1]:
        return affine.expand(batch, flat.shape[1], 2, 2).reshape(*points.shape, 2)
    offsets = flat.unsqueeze(2) - transform.centers.to(flat.dtype).unsqueeze(1)  # (B,P,N,2)
    factor, direction = _spline_gradient(offsets, transform.kernel)  # (B,P,N), (B,P,N,2)
    weights = transform.weights.to(flat.dtype)
    # d T_i / d z_j from the spline: sum_n w_ni factor_n direction_nj
    spline = torch.einsum("bni,bpn,bpnj->bpij", weights, factor, direction)
    return (affine + spline).reshape(*points.shape, 2)


def equivariance_terms(
    transform: RandomTransform,
    kp_driving: torch.Tensor,
    kp_transformed: torch.Tensor,
    jac_driving: torch.Tensor | None = None,
    jac_transformed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(value term, jacobian term or None when jacobians are not given), both unweighted.

    Computed in float32 whatever the detector's precision (a 2x2 solve in bfloat16 is refused).
    """
    kp_driving, kp_transformed = kp_driving.float(), kp_transformed.float()
    if jac_driving is not None and jac_transformed is not None:
        jac_driving, jac_transformed = jac_driving.float(), jac_transformed.float()
    value = (kp_driving - warp_points(transform, kp_transformed)).abs().mean()
    if jac_driving is None or jac_transformed is None:
        return value, None
    moved = transform_jacobian(transform, kp_transformed) @ jac_transformed
    normed = torch.linalg.solve(jac_driving, moved)  # J_driving^-1 dT/dz J_transformed
    eye = torch.eye(2, dtype=normed.dtype, device=normed.device)
    return value, (eye - normed).abs().mean()


class EquivarianceLoss(Loss):
    """FOMM's equivariance constraint on a detector in training, under random affine + TPS warps.

    value_weight * value term + jacobian_weight * jacobian term.

    The weights are FOMM's `equivariance_value` and `equivariance_jacobian` (10 each), so the
    configured outer weight is 1. Reads the driving frame, `inputs.driving_structure` (keypoints
    and jacobians of the trained detector on it) and `inputs.detector`, which it runs on the
    transformed frame; draws the transform from `inputs.rng` when given. `output` is
    ignored. Only the fomm baseline has a detector that trains; elsewhere this is an error.
    """

    def __init__(
        self,
        value_weight: float = 10.0,
        jacobian_weight: float = 10.0,
        sigma_affine: float = 0.05,
        sigma_tps: float = 0.005,
        points_tps: int = 5,
        kernel: str = "fomm",
    ) -> None:
        super().__init__()
        if points_tps == 1 or points_tps < 0:
            raise ValueError(f"points_tps must be 0 (no spline) or >= 2, got {points_tps}")
        self.kernel = _check_kernel(kernel)
        self.value_weight = value_weight
        self.jacobian_weight = jacobian_weight
        self.sigma_affine = sigma_affine
        self.sigma_tps = sigma_tps
        self.points_tps = points_tps

    def sample(self, inputs: LossInputs) -> RandomTransform:
        """The random transforms of one step, for the batch's driving frames."""
        driving = inputs.batch["driving"]
        return sample_transform(
            driving.shape[0],
            self.sigma_affine,
            self.sigma_tps,
            self.points_tps,
            generator=inputs.rng,
            device=driving.device,
            dtype=driving.dtype,
            kernel=self.kernel,
        )

    def forward(self, inputs: LossInputs, output: str = "prediction") -> torch.Tensor:
        detector = _require_detector(inputs.detector)
        driving = inputs.batch["driving"]
        structure = inputs.driving_structure
        if structure.keypoints is None:
            raise ConfigError(
                "loss 'equivariance' needs the driving keypoints of the trained detector, but the "
                "masker's driving structure has none"
            )
        use_jacobian = self.jacobian_weight != 0
        if use_jacobian and structure.jacobians is None:
            raise ConfigError(
                "loss 'equivariance' has jacobian_weight != 0 but the driving structure has no "
                "jacobians; use a detector with estimate_jacobian or set jacobian_weight: 0"
            )
        if self.value_weight == 0 and not use_jacobian:
            return driving.new_zeros(())
        transform = self.sample(inputs)
        with inputs.autocast():  # the precision the detector ran at on the driving frame
            detected = detector(warp_frame(transform, driving))
        if use_jacobian and detected.jacobians is None:
            raise ConfigError(
                "loss 'equivariance' has jacobian_weight != 0 but the detector gives no jacobians"
            )
        value, jacobian = equivariance_terms(
            transform,
            structure.keypoints,
            detected.keypoints,
            structure.jacobians if use_jacobian else None,
            detected.jacobians if use_jacobian else None,
        )
        total = self.value_weight * value
        if jacobian is not None:
            total = total + self.jacobian_weight * jacobian
        return total


def _require_detector(detector: nn.Module | None) -> nn.Module:
    if detector is None:
        raise ConfigError(
            "loss 'equivariance' constrains a keypoint detector being trained (the fomm "
            "baseline), but this model has none: the maskers' detector is frozen. Remove the "
            "loss or train the fomm baseline"
        )
    return detector
