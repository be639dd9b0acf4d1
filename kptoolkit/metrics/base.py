"""The metric interface: per-frame values, averaged within each video, then over videos.

The reconstruction protocol (FACTS section 7) scores every frame, averages the frames of a video,
then averages the videos. A metric therefore keeps four float64 sums and counts:

- `frame_sum`, `frame_count`: the valid frame values of the current video;
- `video_mean_sum`, `videos`: the sum of finished videos' means and how many there are.

`update(pairs)` adds a batch of frames of the current video, `end_video()` folds its mean into the
video sums (a video without a single valid frame is ignored) and `compute()` returns
`video_mean_sum / videos` (NaN when no video has a valid frame). A frame without a valid value
(a NaN from `frame_values`, e.g. AKD with no joint present in both frames) counts neither in the
numerator nor in the denominator of its video's mean.

Distributed evaluation: each process scores whole videos and calls `end_video()` after each;
`sync()` then sums every state over the processes (once, right before `compute()`), so the result
is the mean over all videos of all processes. States are buffers: `metric.to(device)` moves them,
but do not cast a metric to another dtype (`.half()`, `.to(torch.float32)`): the sums are float64.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
import torch.distributed as dist
from torch import nn

POSE = "pose"
IDENTITY = "identity"
REQUIREMENTS = frozenset({POSE, IDENTITY})


def _optional_tensor(value: object) -> torch.Tensor | None:
    return value if value is None or isinstance(value, torch.Tensor) else torch.as_tensor(value)


@attrs.define
class FramePairs:
    """A batch of real frames and their reconstructions, from one video.

    `real`, `fake`: (B, 3, H, W) float in [0, 1]. Keypoints (B, J, 2) are in pixels, a missing
    joint being (-1, -1); embeddings are (B, D). Keypoints and embeddings are only needed by the
    metrics that `require` "pose" or "identity".
    """

    real: torch.Tensor
    fake: torch.Tensor
    real_keypoints: torch.Tensor | None = attrs.field(default=None, converter=_optional_tensor)
    fake_keypoints: torch.Tensor | None = attrs.field(default=None, converter=_optional_tensor)
    real_embeddings: torch.Tensor | None = attrs.field(default=None, converter=_optional_tensor)
    fake_embeddings: torch.Tensor | None = attrs.field(default=None, converter=_optional_tensor)

    def __attrs_post_init__(self) -> None:
        if self.real.ndim != 4 or self.real.shape[1] != 3:
            raise ValueError(f"real frames must be (B, 3, H, W), got {tuple(self.real.shape)}")
        if self.fake.shape != self.real.shape:
            raise ValueError(
                f"fake frames {tuple(self.fake.shape)} do not match real {tuple(self.real.shape)}"
            )
        batch = self.real.shape[0]
        for name in ("real_keypoints", "fake_keypoints", "real_embeddings", "fake_embeddings"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != batch:
                raise ValueError(f"{name} has {value.shape[0]} rows for {batch} frames")

    @property
    def batch_size(self) -> int:
        """Number of frame pairs."""
        return self.real.shape[0]


class Metric(nn.Module):
    """Base class of metrics; subclasses implement `frame_values`.

    Class attributes: `requires` (a subset of {"pose", "identity"}: what `FramePairs` must carry
    beyond the frames) and `higher_is_better`.
    """

    requires: ClassVar[frozenset[str]] = frozenset()
    higher_is_better: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self._defaults: dict[str, torch.Tensor] = {}
        self.add_state("frame_sum", torch.tensor(0.0))
        self.add_state("frame_count", torch.tensor(0.0))
        self.add_state("video_mean_sum", torch.tensor(0.0))
        self.add_state("videos", torch.tensor(0.0))

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        unknown = set(cls.requires) - REQUIREMENTS
        if unknown:
            raise TypeError(f"{cls.__name__}.requires has unknown entries {sorted(unknown)}")

    # states ---------------------------------------------------------------------------------

    def add_state(self, name: str, default: torch.Tensor) -> None:
        """Register a float64 sum or count, reset to `default` and summed across processes."""
        if name in self._defaults:
            raise ValueError(f"state {name!r} is already registered")
        default = torch.as_tensor(default, dtype=torch.float64).detach().clone()
        self._defaults[name] = default
        self.register_buffer(name, default.clone(), persistent=False)

    def states(self) -> dict[str, torch.Tensor]:
        """The registered states by name (the live buffers, not copies)."""
        return {name: getattr(self, name) for name in self._defaults}

    def reset(self) -> None:
        """Forget every frame and video seen."""
        for name, default in self._defaults.items():
            getattr(self, name).copy_(default)

    def sync(self) -> None:
        """Sum every state over the processes of the default group (no-op without one).

        Call it once, after the last `end_video()` and right before `compute()`: each call adds
        the other processes' states again.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        for state in self.states().values():
            dist.all_reduce(state, op=dist.ReduceOp.SUM)

    # protocol -------------------------------------------------------------------------------

    def frame_values(self, pairs: FramePairs) -> torch.Tensor:
        """(B,) value of each frame pair; NaN where a frame has no valid value."""
        raise NotImplementedError

    @torch.no_grad()
    def update(self, pairs: FramePairs) -> None:
        """Add a batch of frames of the current video."""
        values = self.frame_values(pairs).detach().reshape(-1)
        if values.numel() != pairs.batch_size:
            raise RuntimeError(
                f"{type(self).__name__} gave {values.numel()} values for {pairs.batch_size} frames"
            )
        values = values.to(device=self.frame_sum.device, dtype=torch.float64)
        valid = ~torch.isnan(values)
        self.frame_sum += values[valid].sum()
        self.frame_count += valid.sum()

    @torch.no_grad()
    def end_video(self) -> None:
        """Fold the current video's frame mean into the video sums and start a new video."""
        if self.frame_count > 0:
            self.video_mean_sum += self.frame_sum / self.frame_count
            self.videos += 1
        self.frame_sum.zero_()
        self.frame_count.zero_()

    def compute(self) -> float:
        """Mean over videos of the per-video frame means (NaN when there is no video)."""
        if self.frame_count > 0:
            raise RuntimeError(
                f"{type(self).__name__} has frames of an unfinished video: call end_video() "
                "after each video's last update()"
            )
        if self.videos == 0:
            return float("nan")
        return float(self.video_mean_sum / self.videos)

    def forward(self, pairs: FramePairs) -> torch.Tensor:
        """The per-frame values of a batch, without touching the states."""
        with torch.no_grad():
            return self.frame_values(pairs)

    def extra_repr(self) -> str:
        return f"videos={int(self.videos)}"
