"""`perturbed_mask`: the baseline of "Image Animation with Perturbed Masks" (Shalev & Wolf).

A mask network, trained end to end with the generator and without keypoints, turns a frame into a
one-channel mask. During training the generator is driven by the clean driving mask, while a
separate refinement network learns to undo a random perturbation of that mask (strip-wise and
global rescaling, thresholding, Poisson noise) given the source frame and the source mask. At
animation time the refinement network's output drives the generator, so that the driving
subject's shape is adapted to the source subject's.

The perturbation's pure tensor functions live in `kptoolkit.maskers.mask_perturbation`, the
networks (`EncoderDecoder`, `MaskRefiner`) in `kptoolkit.maskers.mask_networks`; this module
holds the masker, `PerturbedMaskMasker`.

Facts taken from the public implementation of the paper:

- Mask network: anti-alias downscale x0.25, hourglass (32, max 1024, 5 blocks) whose decoder does
  *not* concatenate the encoder outputs (so "without residuals" means without the U-Net skips: its
  output has `block_expansion` channels, not `block_expansion + 3`), conv 7x7 without padding to
  one channel, division by the temperature 0.1, sigmoid; the generator then zero-pads it by 3 px.
- At animation the original thresholds the driving mask (<= 60/255 -> 0), shrinks it by 0.75
  about its centre, refines it, and drives both generator stages with the refined mask. At
  reconstruction it drives the generator with the clean driving mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import nn

from kptoolkit.maskers.base import INFERENCE_TASKS, Masker
from kptoolkit.maskers.functional import MASK_PADDING, pad_mask
from kptoolkit.maskers.mask_networks import MASK_KERNEL, EncoderDecoder, MaskRefiner
from kptoolkit.maskers.mask_perturbation import (
    PIVOT_REFERENCE_SIZE,
    perturb_mask,
    prepare_inference_mask,
)
from kptoolkit.nn.anti_alias import AntiAliasDownscale, inverse_scale
from kptoolkit.registry.presets import CPU64, MICRO, PAPER, Preset, loss_term
from kptoolkit.structure import Structure

INFERENCE_MASKS = ("auto", "refined", "clean")

__all__ = ["INFERENCE_MASKS", "PerturbedMaskMasker"]


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
        """The mask network: a (B,3,H,W) frame -> a structure with its padded one-channel mask."""
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
