"""`perturbed_mask`: the baseline of "Image Animation with Perturbed Masks" (Shalev & Wolf).

A mask network, trained end to end with the generator and without keypoints, turns a frame into a
one-channel mask. During training the generator is driven by the clean driving mask, while a
separate refinement network learns to undo a random perturbation of that mask (strip-wise and
global rescaling, thresholding, Poisson noise) given the source frame and the source mask. At
animation time the refinement network's output drives the generator, so that the driving
subject's shape is adapted to the source subject's.

The module has three layers:

- pure tensor functions: `rescale_strips`, `rescale_axis`, `sample_strip_boundaries`,
  `threshold_mask`, `add_signed_poisson_noise`, `perturb_mask` (the training perturbation),
  `prepare_inference_mask` (what the original does to the driving mask before refining it at
  animation time) and `refinement_input`;
- small modules: `EncoderDecoder` (the FOMM hourglass without its skip connections) and
  `MaskRefiner`;
- the masker, `PerturbedMaskMasker`.

Facts taken from the public implementation of the paper:

- Mask network: anti-alias downscale x0.25, hourglass (32, max 1024, 5 blocks) whose decoder does
  *not* concatenate the encoder outputs (so "without residuals" means without the U-Net skips: its
  output has `block_expansion` channels, not `block_expansion + 3`), conv 7x7 without padding to
  one channel, division by the temperature 0.1, sigmoid; the generator then zero-pads it by 3 px.
- Perturbation (uint8 images through imgaug): 5 distinct sorted pivots drawn from 15..45 plus
  the borders 0 and 64 cut the mask into 6 column strips; each strip is rescaled horizontally by
  its own U(0.75, 1.25) about its own centre while keeping its width (content leaving the strip is
  cropped, a shrunk strip is filled with zeros; bilinear, zero outside); the whole mask is then
  rescaled vertically by U(0.75, 1.25) about its centre, again at constant size. The same is
  repeated with row strips rescaled vertically and a global horizontal rescale. Pixels <= 60
  (of 255) are then zeroed, and Poisson noise with a random sign is added to every pixel:
  value + s * Poisson(20) with s = +-1, clipped to 0..255.
- Refinement network: encoder-decoder without skips (64, max 1024, 5 blocks) on [source resized
  bilinearly to the mask size, source mask (detached), perturbed driving mask], conv 7x7 with
  padding 3 to one channel, / 0.1, sigmoid. Loss: 100 * L1(refined, clean driving mask detached);
  the original only runs it (`predict_mask = epoch >= 1`) from the second epoch on.
- At animation the original thresholds the driving mask (<= 60/255 -> 0), shrinks it by 0.75
  about its centre, refines it, and drives both generator stages with the refined mask. At
  reconstruction it drives the generator with the clean driving mask.

Differences from the original, all deliberate: everything runs in float on the masks' device
(no uint8 round trips, so no truncation to 1/255 steps), the pivots are drawn per sample instead
of once per batch, and all randomness comes from an optional `torch.Generator`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kptoolkit.maskers.base import INFERENCE_TASKS, Masker
from kptoolkit.maskers.functional import MASK_PADDING, pad_mask
from kptoolkit.nn.anti_alias import AntiAliasDownscale, inverse_scale
from kptoolkit.nn.blocks import UpBlock2d
from kptoolkit.nn.hourglass import HourglassEncoder, level_width
from kptoolkit.presets import CPU64, MICRO, PAPER, Preset, loss_term
from kptoolkit.structure import Structure

PIVOT_REFERENCE_SIZE = 64  # the original's pivot range (15..45) is for 64x64 padded masks
INFERENCE_MASKS = ("auto", "refined", "clean")
MASK_KERNEL = 7  # the 7x7 output convolutions of both networks

__all__ = [
    "EncoderDecoder",
    "MaskRefiner",
    "PerturbedMaskMasker",
    "add_signed_poisson_noise",
    "perturb_mask",
    "pivot_bounds",
    "prepare_inference_mask",
    "refinement_input",
    "rescale_axis",
    "rescale_strips",
    "sample_strip_boundaries",
    "threshold_mask",
]


# ---------------------------------------------------------------------------------------------
# Pure tensor functions
# ---------------------------------------------------------------------------------------------


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


def refinement_input(
    source: torch.Tensor, source_mask: torch.Tensor, driving_mask: torch.Tensor
) -> torch.Tensor:
    """[source resized bilinearly to the mask size, source mask, driving mask]: (B,3+2C,h,w)."""
    if source_mask.shape != driving_mask.shape:
        raise ValueError(
            f"source and driving masks differ in shape: {tuple(source_mask.shape)} vs "
            f"{tuple(driving_mask.shape)}"
        )
    small = F.interpolate(
        source, size=driving_mask.shape[-2:], mode="bilinear", align_corners=False
    )
    return torch.cat([small, source_mask, driving_mask], dim=1)


# ---------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------


class PlainDecoder(nn.Module):
    """Up blocks without skip concatenation: deepest width -> `block_expansion` channels."""

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        self.up_blocks = nn.ModuleList(
            UpBlock2d(
                level_width(block_expansion, max_features, level + 1),
                level_width(block_expansion, max_features, level),
            )
            for level in reversed(range(num_blocks))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.up_blocks:
            x = block(x)
        return x


class EncoderDecoder(nn.Module):
    """FOMM hourglass without the U-Net skips (the original's `HourglassNoRes`).

    Same encoder as `kptoolkit.nn.Hourglass`, but the decoder never concatenates the encoder
    outputs, so the output has `block_expansion` channels at the input's size. Parameter names
    (`encoder.down_blocks.*`, `decoder.up_blocks.*`) follow the original.
    """

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int, max_features: int
    ) -> None:
        super().__init__()
        self.encoder = HourglassEncoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = PlainDecoder(block_expansion, num_blocks, max_features)
        self.num_blocks = num_blocks
        self.out_filters = block_expansion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        multiple = 2**self.num_blocks
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(
                f"an encoder-decoder with {self.num_blocks} blocks needs height and width "
                f"divisible by {multiple}, got {tuple(x.shape[-2:])}"
            )
        for block in self.encoder.down_blocks:
            x = block(x)
        return self.decoder(x)


class MaskRefiner(nn.Module):
    """Refines a perturbed driving mask given the source frame and the source mask.

    `mask_fix_net` (encoder-decoder without skips on 3 + 2 channels), `ref` (conv 7x7, padding
    3, to one channel), then sigmoid(./temperature). The names are those of the original's
    generator, so its `mask_fix_net.*` and `ref.*` entries load here under `refiner.`.
    """

    def __init__(
        self,
        block_expansion: int = 64,
        num_blocks: int = 5,
        max_features: int = 1024,
        temperature: float = 0.1,
        mask_channels: int = 1,
    ) -> None:
        super().__init__()
        self.mask_fix_net = EncoderDecoder(
            block_expansion, 3 + 2 * mask_channels, num_blocks, max_features
        )
        self.ref = nn.Conv2d(block_expansion, mask_channels, MASK_KERNEL, padding=MASK_KERNEL // 2)
        self.temperature = temperature

    def forward(
        self, source: torch.Tensor, source_mask: torch.Tensor, driving_mask: torch.Tensor
    ) -> torch.Tensor:
        features = self.mask_fix_net(refinement_input(source, source_mask, driving_mask))
        return torch.sigmoid(self.ref(features) / self.temperature)


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _check_pair(name: str, value: Sequence[float]) -> tuple[float, float]:
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}") from None
    if not low <= high:
        raise ValueError(f"{name} must have low <= high, got {value!r}")
    return low, high


_MASK_CORRECTION = loss_term("mask_correction", 100.0, outputs=[], params={"start_epoch": 1})


class PerturbedMaskMasker(Masker):
    """Learned one-channel mask with perturbation and refinement (Shalev & Wolf baseline).

    `forward(frame)` is the mask network: anti-alias downscale by `scale_factor`, encoder-decoder
    without skips (`block_expansion`, `max_features`, `num_blocks`), conv 7x7 without padding,
    sigmoid(./`temperature`), zero-padded by 3 px: (B,1,64,64) for 256 px frames at the paper's
    settings, (B,1,16,16) for 64 px frames. It trains with the generator (no keypoints).

    Training (`driving_for_training`): as in the original, the generator is driven by the clean
    driving mask, undetached, so the generator's losses train the mask network. The driving mask
    is also perturbed (`perturb_mask`: strip rescales with `num_pivots` pivots in `pivot_range`
    and factors in `scale_range`, zeroing <= `threshold`, +-Poisson(`noise_lambda`)/255 noise)
    and refined by `refiner` from [source, source mask detached, perturbed mask]; the extras
    carry `refined_driving_mask`, `clean_driving_mask` (detached, the target) and
    `perturbed_driving_mask`.

    The `mask_correction` loss (`kptoolkit.losses.image`) is L1(refined, clean): the paper
    weights it by 100 (set `weight: 100` in the loss config) and enables it from the second
    epoch (the original sets `predict_mask = epoch >= 1`, 0-based). Its gradients reach only the
    refiner.

    Inference (`driving_for_inference`), as in the original with the default
    `inference_mask="auto"`: reconstruction uses the clean driving mask; animation thresholds
    the driving mask, shrinks it by `inference_scale` (0.75; 1.0 disables it) and refines it, and
    the refined mask drives the generator. `"refined"` or `"clean"` force one behaviour for both.

    State-dict keys: `down.weight`, `predictor.*` and `ref.*` are those of the original's
    `mask_generator`; `refiner.mask_fix_net.*` and `refiner.ref.*` are its generator's
    `mask_fix_net.*` and `ref.*`.
    """

    provides: ClassVar[frozenset[str]] = frozenset({"mask"})
    supports_relative: ClassVar[bool] = False
    needs_detector: ClassVar[bool] = False
    #: 100 x L1 between the refined and the perturbed mask, from the second epoch (hard-coded
    #: in the published code)
    presets: ClassVar[Mapping[str, Preset]] = {
        PAPER: Preset(losses=(_MASK_CORRECTION,)),
        CPU64: Preset(
            params={
                "scale_factor": 0.5,
                "block_expansion": 16,
                "max_features": 128,
                "num_blocks": 4,
                "refine_block_expansion": 16,
                "refine_max_features": 128,
                "refine_num_blocks": 4,
            },
            losses=(_MASK_CORRECTION,),
        ),
        MICRO: Preset(
            params={
                "block_expansion": 4,
                "max_features": 16,
                "num_blocks": 3,
                "refine_block_expansion": 4,
                "refine_max_features": 16,
                "refine_num_blocks": 3,
            },
            losses=(_MASK_CORRECTION,),
        ),
    }

    def __init__(
        self,
        scale_factor: float = 0.25,
        temperature: float = 0.1,
        block_expansion: int = 32,
        max_features: int = 1024,
        num_blocks: int = 5,
        refine_block_expansion: int = 64,
        refine_max_features: int = 1024,
        refine_num_blocks: int = 5,
        refine_temperature: float = 0.1,
        num_pivots: int = 5,
        pivot_range: Sequence[int] = (15, 46),
        scale_range: Sequence[float] = (0.75, 1.25),
        threshold: float = 60 / 255,
        noise_lambda: float = 20.0,
        inference_mask: str = "auto",
        inference_scale: float = 0.75,
    ) -> None:
        super().__init__()
        for name, value in (
            ("block_expansion", block_expansion),
            ("max_features", max_features),
            ("num_blocks", num_blocks),
            ("refine_block_expansion", refine_block_expansion),
            ("refine_max_features", refine_max_features),
            ("refine_num_blocks", refine_num_blocks),
        ):
            _check_positive_int(name, value)
        inverse_scale(scale_factor)  # ValueError unless scale_factor is 1/n
        for name, value in (
            ("temperature", temperature),
            ("refine_temperature", refine_temperature),
            ("inference_scale", inference_scale),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if isinstance(num_pivots, bool) or not isinstance(num_pivots, int) or num_pivots < 0:
            raise ValueError(f"num_pivots must be an integer >= 0, got {num_pivots!r}")
        low, high = _check_pair("pivot_range", pivot_range)
        if not (
            float(low).is_integer()
            and float(high).is_integer()
            and low >= 1
            and high <= PIVOT_REFERENCE_SIZE
            and high - low >= num_pivots
        ):
            raise ValueError(
                f"pivot_range must be integers with 1 <= low, high <= {PIVOT_REFERENCE_SIZE} "
                f"(pixels of a 64 px mask) and room for {num_pivots} distinct pivots, "
                f"got {pivot_range!r}"
            )
        scale_low, scale_high = _check_pair("scale_range", scale_range)
        if not scale_low > 0:
            raise ValueError(f"scale_range must be positive, got {scale_range!r}")
        if not 0 <= threshold < 1:
            raise ValueError(f"threshold must be in [0, 1) (60/255 in the paper), got {threshold}")
        if not noise_lambda >= 0:
            raise ValueError(f"noise_lambda must be >= 0, got {noise_lambda!r}")
        if inference_mask not in INFERENCE_MASKS:
            raise ValueError(
                f"inference_mask must be one of {INFERENCE_MASKS}, got {inference_mask!r}"
            )

        self.channels = 1
        self.scale_factor = scale_factor
        self.temperature = temperature
        self.num_pivots = num_pivots
        self.pivot_range = (int(low), int(high))
        self.scale_range = (float(scale_low), float(scale_high))
        self.threshold = float(threshold)
        self.noise_lambda = float(noise_lambda)
        self.inference_mask = inference_mask
        self.inference_scale = float(inference_scale)

        self.down = AntiAliasDownscale(3, scale_factor) if scale_factor != 1 else None
        self.predictor = EncoderDecoder(block_expansion, 3, num_blocks, max_features)
        self.ref = nn.Conv2d(block_expansion, 1, MASK_KERNEL)  # no padding: 64 -> 58
        self.refiner = MaskRefiner(
            refine_block_expansion, refine_num_blocks, refine_max_features, refine_temperature
        )

    # -- the mask network ------------------------------------------------------------------

    def forward(self, frame: torch.Tensor) -> Structure:
        if frame.ndim != 4 or frame.shape[1] != 3:
            raise ValueError(f"perturbed_mask expects (B,3,H,W) frames, got {tuple(frame.shape)}")
        x = frame if self.down is None else self.down(frame)
        logits = self.ref(self.predictor(x)) / self.temperature
        return Structure(mask=pad_mask(torch.sigmoid(logits), MASK_PADDING))

    # -- perturbation and refinement -------------------------------------------------------

    def perturb(self, mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """`perturb_mask` with this masker's settings (detached)."""
        return perturb_mask(
            mask,
            generator,
            num_pivots=self.num_pivots,
            pivot_range=self.pivot_range,
            scale_range=self.scale_range,
            threshold=self.threshold,
            noise_lambda=self.noise_lambda,
        )

    def driving_for_training(
        self,
        source: torch.Tensor,
        source_structure: Structure,
        driving_structure: Structure,
        rng: torch.Generator | None = None,
    ) -> tuple[Structure, dict[str, torch.Tensor]]:
        """The clean driving structure (as in the original), plus the refinement's tensors."""
        source_mask, driving_mask = _masks(source_structure, driving_structure)
        perturbed = self.perturb(driving_mask, rng)
        refined = self.refiner(source, source_mask.detach(), perturbed)
        extras = {
            "refined_driving_mask": refined,
            "clean_driving_mask": driving_mask.detach(),
            "perturbed_driving_mask": perturbed,
        }
        return driving_structure, extras

    def driving_for_inference(
        self,
        source: torch.Tensor,
        source_structure: Structure,
        driving_structure: Structure,
        task: str = "animation",
    ) -> Structure:
        """Clean mask for reconstruction, refined mask for animation (see `inference_mask`)."""
        if task not in INFERENCE_TASKS:
            raise ValueError(f"task must be one of {INFERENCE_TASKS}, got {task!r}")
        mode = self.inference_mask
        if mode == "auto":
            mode = "clean" if task == "reconstruction" else "refined"
        if mode == "clean":
            return driving_structure
        source_mask, driving_mask = _masks(source_structure, driving_structure)
        prepared = prepare_inference_mask(driving_mask, self.threshold, self.inference_scale)
        return driving_structure.replace(mask=self.refiner(source, source_mask, prepared))


def _masks(source: Structure, driving: Structure) -> tuple[torch.Tensor, torch.Tensor]:
    if source.mask is None or driving.mask is None:
        raise ValueError("perturbed_mask needs the source and driving structures' masks")
    return source.mask, driving.mask
