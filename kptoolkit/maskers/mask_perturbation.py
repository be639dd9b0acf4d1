"""The training-time perturbation of `perturbed_mask`'s driving mask, as pure tensor functions.

`rescale_strips`, `rescale_axis`, `sample_strip_boundaries`, `threshold_mask`,
`add_signed_poisson_noise`, `perturb_mask` (the training perturbation) and
`prepare_inference_mask` (what the original does to the driving mask before refining it at
animation time); the masker is `kptoolkit.maskers.perturbed_mask`.

Facts taken from the public implementation of "Image Animation with Perturbed Masks":

- Perturbation (uint8 images through imgaug): 5 distinct sorted pivots drawn from 15..45 plus
  the borders 0 and 64 cut the mask into 6 column strips; each strip is rescaled horizontally by
  its own U(0.75, 1.25) about its own centre while keeping its width (content leaving the strip is
  cropped, a shrunk strip is filled with zeros; bilinear, zero outside); the whole mask is then
  rescaled vertically by U(0.75, 1.25) about its centre, again at constant size. The same is
  repeated with row strips rescaled vertically and a global horizontal rescale. Pixels <= 60
  (of 255) are then zeroed, and Poisson noise with a random sign is added to every pixel:
  value + s * Poisson(20) with s = +-1, clipped to 0..255.
- At animation the original thresholds the driving mask (<= 60/255 -> 0) and shrinks it by 0.75
  about its centre before refining it.

Differences from the original, all deliberate: everything runs in float on the masks' device
(no uint8 round trips, so no truncation to 1/255 steps), the pivots are drawn per sample instead
of once per batch, and all randomness comes from an optional `torch.Generator`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PIVOT_REFERENCE_SIZE = 64  # the original's pivot range (15..45) is for 64x64 padded masks

__all__ = [
    "PIVOT_REFERENCE_SIZE",
    "add_signed_poisson_noise",
    "perturb_mask",
    "pivot_bounds",
    "prepare_inference_mask",
    "rescale_axis",
    "rescale_strips",
    "sample_strip_boundaries",
    "threshold_mask",
]


def _axis_last(mask: torch.Tensor, dim: int) -> torch.Tensor:
    if dim in (-1, 3):
        return mask
    if dim in (-2, 2):
        return mask.transpose(-1, -2)
    raise ValueError(f"dim must be -1 (columns, horizontal) or -2 (rows, vertical), got {dim}")


def _per_sample(values: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    if values.ndim == 1:
        values = values.unsqueeze(0).expand(batch, -1)
    if values.ndim != 2 or values.shape[0] != batch:
        raise ValueError(f"{name} must be (S,) or (B,S) with B={batch}, got {tuple(values.shape)}")
    return values


def rescale_strips(
    mask: torch.Tensor, boundaries: torch.Tensor, scales: torch.Tensor, dim: int = -1
) -> torch.Tensor:
    """Rescale each strip of `mask` along `dim` about its own centre, keeping its extent.

    `mask` is (B,C,H,W). `boundaries` ((S+1,) or (B,S+1), integers, strictly increasing, from 0
    to the size along `dim`) cut that axis into S strips; strip k is rescaled by `scales[..., k]`
    ((S,) or (B,S)): output pixel x of a strip [a, b) samples the input at c + (x - c) / s with
    c = (a + b - 1) / 2, bilinearly, reading zero outside the strip. A scale > 1 enlarges the
    content (what leaves the strip is cropped), a scale < 1 shrinks it (the strip is filled with
    zeros). This is what an affine scale about the image centre does to each strip taken as a
    separate image, as the original does with imgaug. `dim=-1` rescales horizontally (column
    strips), `dim=-2` vertically (row strips). Fully vectorised over samples and strips.
    """
    if mask.ndim != 4:
        raise ValueError(f"mask must be (B,C,H,W), got {tuple(mask.shape)}")
    x = _axis_last(mask, dim)
    batch, channels, height, size = x.shape
    boundaries = _per_sample(torch.as_tensor(boundaries), batch, "boundaries").to(x.device).long()
    scales = _per_sample(torch.as_tensor(scales), batch, "scales").to(x.device, torch.float32)
    if boundaries.shape[1] != scales.shape[1] + 1:
        raise ValueError(
            f"{boundaries.shape[1]} boundaries need {boundaries.shape[1] - 1} scales, "
            f"got {scales.shape[1]}"
        )
    if (boundaries[:, 0] != 0).any() or (boundaries[:, -1] != size).any():
        raise ValueError(f"boundaries must start at 0 and end at the size {size}")
    if (boundaries.diff(dim=1) <= 0).any():
        raise ValueError("boundaries must be strictly increasing")
    if (scales <= 0).any():
        raise ValueError("scales must be positive")

    pixels = torch.arange(size, device=x.device)
    strip = (pixels[None, :, None] >= boundaries[:, None, 1:-1]).sum(-1)  # (B,size)
    start = boundaries.gather(1, strip)
    end = boundaries.gather(1, strip + 1)
    centre = (start + end - 1).to(torch.float32) / 2
    position = centre + (pixels.to(torch.float32) - centre) / scales.gather(1, strip)
    left = position.floor()
    frac = (position - left).to(x.dtype)[:, None, None, :]
    left = left.long()

    def tap(index: torch.Tensor) -> torch.Tensor:
        inside = ((index >= start) & (index < end)).to(x.dtype)[:, None, None, :]
        gather_at = index.clamp(0, size - 1)[:, None, None, :].expand(batch, channels, height, -1)
        return x.gather(-1, gather_at) * inside

    out = tap(left) * (1 - frac) + tap(left + 1) * frac
    return _axis_last(out, dim)


def rescale_axis(mask: torch.Tensor, scales: torch.Tensor | float, dim: int = -1) -> torch.Tensor:
    """Rescale the whole of `mask` along `dim` about its centre at constant size.

    `scales` is a number or one per sample (B,). Same semantics as `rescale_strips` with a
    single strip spanning the axis.
    """
    size = mask.shape[dim]
    scales = torch.as_tensor(scales, dtype=torch.float32, device=mask.device)
    scales = scales.expand(mask.shape[0]) if scales.ndim == 0 else scales
    boundaries = torch.tensor([0, size], device=mask.device)
    return rescale_strips(mask, boundaries, scales.reshape(-1, 1), dim)


def pivot_bounds(size: int, pivot_range: Sequence[int] = (15, 46)) -> tuple[int, int]:
    """The pivot range [low, high) for an axis of `size` pixels.

    `pivot_range` is given for a 64-pixel axis (the original's padded mask) and scaled
    proportionally: (15, 46) gives (15, 46) at 64 px and (4, 12) at 16 px.
    """
    low, high = pivot_range
    scale = size / PIVOT_REFERENCE_SIZE
    return max(1, round(low * scale)), min(size, round(high * scale))


def sample_strip_boundaries(
    batch: int,
    size: int,
    num_pivots: int = 5,
    pivot_range: Sequence[int] = (15, 46),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, num_pivots + 2) strip boundaries: 0, distinct sorted random pivots, `size`.

    Pivots are drawn without replacement from `pivot_bounds(size, pivot_range)`, independently
    per sample (the original draws one set per batch). Returned on the generator's device.
    """
    low, high = pivot_bounds(size, pivot_range)
    if high - low < num_pivots:
        raise ValueError(
            f"an axis of {size} px leaves pivot range [{low}, {high}) for {num_pivots} distinct "
            "pivots; use a larger mask or fewer pivots"
        )
    device = generator.device if generator is not None else torch.device("cpu")
    keys = torch.rand(batch, high - low, generator=generator, device=device)
    pivots = keys.argsort(dim=1)[:, :num_pivots].sort(dim=1).values + low
    first = torch.zeros(batch, 1, dtype=torch.long, device=device)
    return torch.cat([first, pivots, torch.full_like(first, size)], dim=1)


def _uniform(
    shape: tuple[int, ...], bounds: Sequence[float], generator: torch.Generator | None
) -> torch.Tensor:
    device = generator.device if generator is not None else torch.device("cpu")
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


def threshold_mask(mask: torch.Tensor, threshold: float = 60 / 255) -> torch.Tensor:
    """Zero every value <= `threshold` (60/255 in the original); keep the others."""
    return mask.masked_fill(mask <= threshold, 0.0)


def add_signed_poisson_noise(
    mask: torch.Tensor, lam: float = 20.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add +-Poisson(`lam`)/255 to every pixel (random sign each), clipped to [0, 1].

    This is imgaug's `AdditivePoissonNoise(lam)` on 0..255 images, as the original uses it:
    Poisson samples with a random sign, added elementwise (background pixels included).
    """
    if lam == 0:
        return mask
    device = generator.device if generator is not None else torch.device("cpu")
    rates = torch.full(mask.shape, float(lam), device=device)
    counts = torch.poisson(rates, generator=generator)
    signs = torch.rand(mask.shape, generator=generator, device=device) < 0.5
    noise = torch.where(signs, -counts, counts).to(mask.device, mask.dtype)
    return (mask + noise / 255).clamp(0.0, 1.0)


def perturb_mask(
    mask: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    num_pivots: int = 5,
    pivot_range: Sequence[int] = (15, 46),
    scale_range: Sequence[float] = (0.75, 1.25),
    threshold: float = 60 / 255,
    noise_lambda: float = 20.0,
) -> torch.Tensor:
    """The training-time perturbation of a (B,C,h,w) driving mask in [0, 1].

    1. column strips (borders and `num_pivots` random pivots) rescaled horizontally, each by
       U(`scale_range`), then the whole mask rescaled vertically by U(`scale_range`);
    2. the same with row strips rescaled vertically and a global horizontal rescale;
    3. `threshold_mask` (values <= `threshold` -> 0);
    4. `add_signed_poisson_noise` with `noise_lambda` (0 disables it).

    Every rescale keeps the mask's size (see `rescale_strips`). The result is detached, has the
    input's shape, and depends only on `mask` and the state of `generator`.
    """
    if mask.ndim != 4:
        raise ValueError(f"mask must be (B,C,h,w), got {tuple(mask.shape)}")
    batch = mask.shape[0]
    with torch.no_grad():
        out = mask.detach()
        for strip_dim, whole_dim in ((-1, -2), (-2, -1)):
            boundaries = sample_strip_boundaries(
                batch, out.shape[strip_dim], num_pivots, pivot_range, generator
            )
            strip_scales = _uniform((batch, num_pivots + 1), scale_range, generator)
            out = rescale_strips(out, boundaries, strip_scales, strip_dim)
            out = rescale_axis(out, _uniform((batch,), scale_range, generator), whole_dim)
        out = threshold_mask(out, threshold)
        return add_signed_poisson_noise(out, noise_lambda, generator)


def prepare_inference_mask(
    mask: torch.Tensor, threshold: float = 60 / 255, scale: float = 0.75
) -> torch.Tensor:
    """What the original does to the driving mask before refining it at animation time.

    Zero values <= `threshold`, then shrink the mask by `scale` about its centre in both axes at
    constant size (1.0 keeps the size).
    """
    out = threshold_mask(mask, threshold)
    if scale == 1:
        return out
    return rescale_axis(rescale_axis(out, scale, -1), scale, -2)
