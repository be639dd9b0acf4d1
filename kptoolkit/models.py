"""Building a masker and a generator together: checked against each other, detector attached.

`natural_masker` lives in `kptoolkit.components` and is re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from kptoolkit.components import natural_masker
from kptoolkit.errors import CompatibilityError
from kptoolkit.generators.base import Generator, check_compatible
from kptoolkit.maskers.base import Masker
from kptoolkit.nn.video_kernels import to_memory_format
from kptoolkit.registry import GENERATORS, MASKERS


def build_masker_and_generator(
    masker: str | None,
    generator: str,
    masker_params: Mapping[str, Any] | None = None,
    generator_params: Mapping[str, Any] | None = None,
    detector: nn.Module | None = None,
) -> tuple[Masker, Generator]:
    """Create both components, check that they fit, and give the masker the shared detector.

    With `masker=None` the generator's natural masker is used.
    """
    masker = masker or natural_masker(generator)
    built_masker = MASKERS.create(masker, **dict(masker_params or {}))
    built_generator = GENERATORS.create(generator, **dict(generator_params or {}))
    check_compatible(built_masker, built_generator, masker, generator)
    if getattr(built_masker, "needs_detector", False):
        if detector is None:
            raise CompatibilityError(
                f"masker '{masker}' reads the keypoint detector: give a FOMM checkpoint "
                "(--kp-checkpoint / keypoints.checkpoint) or train one with the fomm baseline"
            )
        built_masker.attach_detector(detector)
    return built_masker, built_generator


def for_inference(module: nn.Module) -> nn.Module:
    """Eval mode in the channels_last layout, the faster one for CPU inference (measured).

    Feed inputs with `.contiguous(memory_format=torch.channels_last)` and run under
    `torch.inference_mode()`.
    """
    return to_memory_format(module.eval(), torch.channels_last)
