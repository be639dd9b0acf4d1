"""The evaluator interface: pose models give keypoints, identity models give embeddings.

Pose evaluators (`kind = "pose"`) map frames (B, 3, H, W) in [0, 1] to keypoints (B, J, 2) in
pixels, (x, y) with pixel centres at integer coordinates (the synthetic ground truth's
convention); a joint judged missing is (-1, -1). Identity evaluators (`kind = "identity"`) map
frames to embeddings (B, D). Both run in eval mode under `torch.inference_mode`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

MISSING = -1.0


class Evaluator(nn.Module):
    """Base class of evaluators; subclasses implement `_keypoints` or `_embeddings`."""

    HOOKS: ClassVar[tuple[str, ...]] = ("metadata", "floor", "cache_path")

    kind: ClassVar[str] = ""
    #: what the bench records of the evaluator next to its scores (versions, training steps)
    metadata: ClassVar[dict] = {}
    #: a method giving the evaluator's own error on real frames against the ground truth
    #: ({metric: value}); None where the evaluator cannot measure one
    floor: ClassVar[Callable[[], dict[str, Any]] | None] = None
    #: the file its weights are cached in (None: shipped with a package, or none)
    cache_path: ClassVar[Any] = None
    # Pose evaluators that find all joints or none (a face or no face): a frame with no joint
    # is exported to pose-evaluation tables as None, which the face script `cmp_kp.py` skips.
    missing_as_none: ClassVar[bool] = False

    def keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) frames in [0, 1] -> (B, J, 2) float pixels, -1 for missing joints."""
        if self.kind != "pose":
            raise TypeError(f"{type(self).__name__} is a {self.kind!r} evaluator, not a pose one")
        self.eval()
        with torch.inference_mode():
            return self._keypoints(_check_frames(frames))

    def embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) frames in [0, 1] -> (B, D) identity embeddings."""
        if self.kind != "identity":
            raise TypeError(
                f"{type(self).__name__} is a {self.kind!r} evaluator, not an identity one"
            )
        self.eval()
        with torch.inference_mode():
            return self._embeddings(_check_frames(frames))

    def _keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _check_frames(frames: torch.Tensor) -> torch.Tensor:
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (B, 3, H, W), got {tuple(frames.shape)}")
    return frames.float()
