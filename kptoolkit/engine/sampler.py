"""A shuffling sampler that splits each global batch over ranks and can resume mid-epoch."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Seeded per-epoch permutation; rank r takes positions r, r + W, r + 2W, ...

    With a local batch of B/W, the W ranks' first batches together are exactly the first B
    indices of the permutation, so every world size sees the same global batches. `start`
    skips the local samples an interrupted run already consumed in this epoch.
    """

    def __init__(
        self,
        length: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        global_batch: int = 1,
    ) -> None:
        if length < global_batch:
            raise ValueError(
                f"the dataset has {length} items, fewer than one global batch of {global_batch}"
            )
        self.length = length
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        # whole global batches only, so every rank gets the same number of samples
        self.per_rank = (length // global_batch) * global_batch // world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation and how many local samples to skip."""
        self.epoch = epoch
        self.start = start

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        mine = order[self.rank : self.per_rank * self.world_size : self.world_size]
        return iter(mine[self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start
