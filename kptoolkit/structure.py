"""`Structure`: what a masker extracts from a frame and a generator consumes."""

from __future__ import annotations

import attrs
import torch

STRUCTURE_FIELDS: tuple[str, ...] = ("mask", "keypoints", "jacobians", "covariances", "frame")


@attrs.frozen
class Structure:
    """Masks (B,C,h,w), keypoints (B,K,2; x-y in [-1,1]), jacobians (B,K,2,2), the keypoints'
    covariances (B,K,2,2; Monkey-Net's Gaussian keypoints, in the same coordinates), or the
    frame."""

    mask: torch.Tensor | None = None
    keypoints: torch.Tensor | None = None
    jacobians: torch.Tensor | None = None
    covariances: torch.Tensor | None = None
    frame: torch.Tensor | None = None

    @property
    def provided(self) -> frozenset[str]:
        """Names of the fields that are set."""
        return frozenset(name for name in STRUCTURE_FIELDS if getattr(self, name) is not None)

    def replace(self, **changes: torch.Tensor | None) -> Structure:
        """A copy with some fields replaced."""
        return attrs.evolve(self, **changes)

    def detach(self) -> Structure:
        """A copy whose tensors are detached from the autograd graph."""
        return Structure(**{n: None if t is None else t.detach() for n, t in self._items()})

    def to(self, device: torch.device | str) -> Structure:
        """A copy on `device`."""
        return Structure(**{n: None if t is None else t.to(device) for n, t in self._items()})

    def _items(self) -> list[tuple[str, torch.Tensor | None]]:
        return [(name, getattr(self, name)) for name in STRUCTURE_FIELDS]
