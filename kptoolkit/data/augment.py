"""Pair augmentation of (source, driving) training frames, run batched on the frames' device.

After collation, each training item is a pair of frames of one video. Every pair gets its own
random parameters, and both frames of a pair get the same ones, in the order of First Order
Motion Model's data pipeline:

1. time flip: swap source and driving (p=0.5);
2. horizontal flip (p=0.5);
3. rotation, uniform in +-`rotation` degrees (positive = counter-clockwise on screen);
4. random resize by a scale uniform in [`scale_min`, `scale_max`] and crop to the input size (or
   to `crop`), done together with the rotation as a single affine warp (one resampling);
5. colour jitter: brightness, contrast, saturation and hue, each of strength `jitter`.

Parameters are drawn with one `torch.rand` call (from the given `torch.Generator`, else torch's
global generator) on the generator's device and then moved to the frames' device, so a seed fixes
the result on any device. All parameters are always drawn, so switching one step on or off does
not change the draws of the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import kornia
import torch
from torch import Tensor

PADDING_MODES = ("zeros", "border", "reflection")
MAX_JITTER = 0.5  # the hue shift is jitter x a full turn; half a turn is the largest meaningful
MAX_ROTATION = 180.0
_NUM_DRAWS = 10  # uniform numbers per pair: see `sample_params`


# -- configuration ----------------------------------------------------------------------------


def _number_in(low: float, high: float) -> Callable[[Any, attrs.Attribute, Any], None]:
    """An attrs validator: a real number (not a bool) in [low, high]."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"'{attribute.name}' must be a number, got {value!r}")
        if not low <= value <= high:  # also rejects NaN
            raise ValueError(f"'{attribute.name}' must be in [{low}, {high}], got {value}")

    return check


def _positive_number(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"'{attribute.name}' must be a positive number, got {value!r}")
    if math.isinf(value):
        raise ValueError(f"'{attribute.name}' must be finite, got {value!r}")


def _padding_mode(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in PADDING_MODES:
        raise ValueError(
            f"'{attribute.name}' must be one of {', '.join(PADDING_MODES)}; got {value!r}"
        )


def _is_bool(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"'{attribute.name}' must be true or false, got {value!r}")


def _scale_max_not_below_min(instance: AugmentationConfig, attribute: Any, value: float) -> None:
    if value < instance.scale_min:
        raise ValueError(
            f"'scale_min' ({instance.scale_min}) must not exceed 'scale_max' ({value})"
        )


def _crop_size(value: Any) -> Any:
    """`crop` as a list [height, width] (a tuple is accepted); other values go to the validator."""
    return list(value) if isinstance(value, tuple) else value


def _valid_crop(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    ok = isinstance(value, list) and len(value) == 2
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    if not ok:
        raise ValueError(f"'crop' must be [height, width] of positive ints or null, got {value!r}")


@attrs.define
class AugmentationConfig:
    """Which augmentation steps run and how strong they are (0 / 1.0 / false switches one off).

    `crop` is the output [height, width] (None: the input size); `padding` fills what a rotation
    or a zoom-out uncovers: "zeros", "border" or "reflection".
    """

    horizontal_flip: bool = attrs.field(default=True, validator=_is_bool)
    time_flip: bool = attrs.field(default=True, validator=_is_bool)
    jitter: float = attrs.field(default=0.1, validator=_number_in(0.0, MAX_JITTER))
    rotation: float = attrs.field(default=0.0, validator=_number_in(0.0, MAX_ROTATION))
    scale_min: float = attrs.field(default=1.0, validator=_positive_number)
    scale_max: float = attrs.field(
        default=1.0,
        validator=[_positive_number, _scale_max_not_below_min],
    )
    crop: list[int] | None = attrs.field(default=None, converter=_crop_size, validator=_valid_crop)
    padding: str = attrs.field(default="zeros", validator=_padding_mode)

    @property
    def geometric(self) -> bool:
        """Whether the affine step (rotation, resize or crop) changes anything."""
        return (
            self.rotation > 0
            or self.scale_min != 1.0
            or self.scale_max != 1.0
            or self.crop is not None
        )

    @property
    def is_identity(self) -> bool:
        """Whether every step is off, so augmentation returns its inputs unchanged."""
        return not (self.time_flip or self.horizontal_flip or self.jitter > 0 or self.geometric)


def augmentation_from_dict(
    params: Mapping[str, Any] | None, path: str = "data.augmentation"
) -> AugmentationConfig:
    """Build the config from the experiment's `data.augmentation` mapping (errors name the key)."""
    # checks keys (with a difflib hint) and value types; imported here so that
    # kptoolkit.config.schema may itself import this module
    from kptoolkit.config.schema import structure

    return structure(AugmentationConfig, params, path)


# -- parameters -------------------------------------------------------------------------------


@attrs.frozen
class ColorFactors:
    """Per-pair colour jitter factors, each (B,): multipliers, and the hue shift in turns."""

    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue: Tensor

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ColorFactors:
        """The same factors on another device / dtype."""
        return ColorFactors(*(t.to(device, dtype) for t in attrs.astuple(self, recurse=False)))

    def repeat(self, times: int) -> ColorFactors:
        """Factors for `times` stacked copies of the batch (e.g. source then driving)."""
        return ColorFactors(*(t.repeat(times) for t in attrs.astuple(self, recurse=False)))


@attrs.frozen
class PairParams:
    """Per-pair random parameters, each (B,) unless noted; disabled steps hold identity values.

    `shift` (B,2) in [-1,1] places the crop window in x, y: -1 at the left / top, +1 at the right
    / bottom of the range where window and image stay inside one another. It is always drawn
    and only matters when the window and the image differ in size (a zoom or a crop).
    """

    swap: Tensor
    flip: Tensor
    angle: Tensor
    scale: Tensor
    shift: Tensor
    color: ColorFactors

    @property
    def batch_size(self) -> int:
        """Number of pairs."""
        return self.swap.shape[0]


def sample_params(
    config: AugmentationConfig, batch_size: int, generator: torch.Generator | None = None
) -> PairParams:
    """Draw one parameter set per pair, on the generator's device (CPU without a generator)."""
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(batch_size, _NUM_DRAWS, generator=generator, device=device)
    signed = 2.0 * u - 1.0  # uniform in [-1, 1]
    jitter = config.jitter
    return PairParams(
        swap=(u[:, 0] < 0.5) & config.time_flip,
        flip=(u[:, 1] < 0.5) & config.horizontal_flip,
        angle=signed[:, 2] * config.rotation,
        scale=config.scale_min + u[:, 3] * (config.scale_max - config.scale_min),
        shift=signed[:, 4:6],
        color=ColorFactors(
            brightness=1.0 + signed[:, 6] * jitter,
            contrast=1.0 + signed[:, 7] * jitter,
            saturation=1.0 + signed[:, 8] * jitter,
            hue=signed[:, 9] * jitter,
        ),
    )


# -- functional steps -------------------------------------------------------------------------


def _per_sample(mask: Tensor) -> Tensor:
    return mask.view(-1, 1, 1, 1)


def time_flip(source: Tensor, driving: Tensor, swap: Tensor) -> tuple[Tensor, Tensor]:
    """Swap source and driving of the pairs where `swap` (B,) is true."""
    swap = _per_sample(swap.to(source.device))
    return torch.where(swap, driving, source), torch.where(swap, source, driving)


def horizontal_flip(x: Tensor, flip: Tensor) -> Tensor:
    """Mirror left-right the images of (B,C,H,W) where `flip` (B,) is true."""
    return torch.where(_per_sample(flip.to(x.device)), x.flip(-1), x)


def affine_matrix(
    angle: Tensor,
    scale: Tensor,
    shift: Tensor,
    in_size: tuple[int, int],
    out_size: tuple[int, int],
) -> Tensor:
    """(B,2,3) input->output pixel maps: rotate by `angle` degrees, zoom by `scale`, crop.

    The output window (out_size / scale input pixels) is centred at the image centre moved by
    `shift` x half the size difference between window and image, so a window smaller than the
    image stays inside it and an image smaller than the window stays inside the window.
    Pixel centres are at integer coordinates (kornia's align_corners=True convention).
    """
    (in_h, in_w), (out_h, out_w) = in_size, out_size
    radians = torch.deg2rad(angle)
    cos, sin = torch.cos(radians) * scale, torch.sin(radians) * scale
    margin_x = (in_w - out_w / scale).abs() / 2
    margin_y = (in_h - out_h / scale).abs() / 2
    centre_x = (in_w - 1) / 2 + shift[:, 0] * margin_x
    centre_y = (in_h - 1) / 2 + shift[:, 1] * margin_y
    # output = s R (input - centre) + output centre, R = [[cos, sin], [-sin, cos]] (y points down)
    tx = (out_w - 1) / 2 - (cos * centre_x + sin * centre_y)
    ty = (out_h - 1) / 2 - (-sin * centre_x + cos * centre_y)
    rows = [torch.stack([cos, sin, tx], -1), torch.stack([-sin, cos, ty], -1)]
    return torch.stack(rows, -2)


def rotate_zoom_crop(
    x: Tensor,
    angle: Tensor,
    scale: Tensor,
    shift: Tensor,
    out_size: tuple[int, int] | None = None,
    padding: str = "zeros",
) -> Tensor:
    """Rotate, zoom and crop (B,C,H,W) to `out_size` (default H,W) in one bilinear warp."""
    in_size = (x.shape[-2], x.shape[-1])
    out_size = tuple(out_size) if out_size is not None else in_size
    as_input = {"device": x.device, "dtype": x.dtype}
    matrix = affine_matrix(
        angle.to(**as_input), scale.to(**as_input), shift.to(**as_input), in_size, out_size
    )
    return kornia.geometry.transform.warp_affine(
        x, matrix, dsize=out_size, mode="bilinear", padding_mode=padding, align_corners=True
    )


def adjust_color(x: Tensor, factors: ColorFactors) -> Tensor:
    """Jitter (B,3,H,W) RGB in [0,1] by per-sample factors; each step is clamped to [0,1].

    Brightness multiplies, contrast scales about the image's mean grey, saturation multiplies
    the HSV saturation, hue turns the HSV hue by `factors.hue` turns.
    """
    factors = factors.to(x.device, x.dtype)
    x = (x * _per_sample(factors.brightness)).clamp(0.0, 1.0)
    x = kornia.enhance.adjust_contrast_with_mean_subtraction(x, factors.contrast)
    hsv = kornia.color.rgb_to_hsv(x)
    hsv = kornia.enhance.adjust_saturation_raw(hsv, factors.saturation)
    hsv = kornia.enhance.adjust_hue_raw(hsv, factors.hue * (2 * math.pi))
    return kornia.color.hsv_to_rgb(hsv).clamp(0.0, 1.0)


def check_pair(source: Any, driving: Any) -> None:
    """Raise ValueError unless both are float (B,3,H,W) tensors of one shape, dtype and device."""
    for name, x in (("source", source), ("driving", driving)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{name} must have shape (B,3,H,W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a float tensor in [0,1], got {x.dtype}")
    if source.shape != driving.shape:
        raise ValueError(
            f"source and driving shapes differ: {tuple(source.shape)} vs {tuple(driving.shape)}"
        )
    if source.dtype != driving.dtype or source.device != driving.device:
        raise ValueError(
            f"source and driving differ in dtype/device: {source.dtype} on {source.device} vs "
            f"{driving.dtype} on {driving.device}"
        )


def apply_params(
    source: Tensor, driving: Tensor, params: PairParams, config: AugmentationConfig
) -> tuple[Tensor, Tensor]:
    """Augment a batch of pairs with given parameters; `config` says which steps run."""
    batch = source.shape[0]
    if params.batch_size != batch:
        raise ValueError(f"parameters are for {params.batch_size} pairs, the batch has {batch}")
    if config.time_flip:
        source, driving = time_flip(source, driving, params.swap)
    both = torch.cat([source, driving])  # one call per step; both frames share the parameters
    if config.horizontal_flip:
        both = horizontal_flip(both, params.flip.repeat(2))
    if config.geometric:
        both = rotate_zoom_crop(
            both,
            params.angle.repeat(2),
            params.scale.repeat(2),
            params.shift.repeat(2, 1),
            out_size=config.crop,
            padding=config.padding,
        )
    if config.jitter > 0:
        both = adjust_color(both, params.color.repeat(2))
    return both[:batch], both[batch:]


def augment_joints(
    source: Tensor, driving: Tensor, params: PairParams, config: AugmentationConfig
) -> tuple[Tensor, Tensor]:
    """Move (B, J, 2) ground-truth joints (x, y in [-1, 1]) as `apply_params` moves the frames.

    Time flips swap them and horizontal flips mirror x; the rotation / resize / crop warp is not
    supported (its joints would need the inverse affine map): a clear error.
    """
    if config.geometric:
        raise ValueError(
            "ground-truth joints follow time and horizontal flips only; turn off rotation, "
            "resize and crop augmentation (data.augmentation) for a masker that draws them"
        )
    if config.time_flip:
        swap = params.swap.to(source.device).view(-1, 1, 1)
        source, driving = torch.where(swap, driving, source), torch.where(swap, source, driving)
    if config.horizontal_flip:
        mirror = torch.tensor([-1.0, 1.0], dtype=source.dtype, device=source.device)
        flip = params.flip.to(source.device).view(-1, 1, 1)
        source = torch.where(flip, source * mirror, source)
        driving = torch.where(flip, driving * mirror, driving)
    return source, driving


# -- module -----------------------------------------------------------------------------------


class PairAugmentation(torch.nn.Module):
    """Augment (source, driving) batches: per-pair random parameters shared by both frames."""

    def __init__(self, config: AugmentationConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else AugmentationConfig()

    def forward(
        self, source: Tensor, driving: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Augmented (source, driving), each (B,3,H,W), or (B,3,*crop) with a crop size."""
        check_pair(source, driving)
        if self.config.is_identity:
            return source, driving
        params = sample_params(self.config, source.shape[0], generator)
        return apply_params(source, driving, params, self.config)

    def extra_repr(self) -> str:
        """The config, for printing the module."""
        return repr(self.config)
