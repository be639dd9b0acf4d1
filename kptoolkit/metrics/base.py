"""The metric interface: per-frame values, kept as per-video sums and counts.

The reconstruction protocol (FACTS section 7) scores every frame. A metric keeps, for the video
being scored, the float64 sum and count of its valid frame values (`frame_sum`, `frame_count`),
and for every finished video its name, sum and count. From these, `compute()` gives either
average (`kptoolkit.metrics.aggregate`):

- `"frames"` (the default, the published protocol): all frames of all videos pooled, as FOMM's
  reconstruction L1 and the public pose-evaluation scripts compute their numbers;
- `"videos"`: each video's mean first, then the mean over videos.

The per-video records (`video_scores()`) are what the bench's bootstrap intervals resample.

`update(pairs)` adds a batch of frames of the current video and `end_video(name)` closes it. A
frame without a valid value (a NaN from `frame_values`, e.g. AKD with no joint present in both
frames) counts neither in the sum nor in the count; a video without a single valid frame is kept
with count 0: it weighs nothing in either average.

Distributed evaluation: each process scores whole videos; `sync()` then gathers every process's
finished videos (right before `compute()`; calling it again changes nothing), so the result
covers all videos of all processes. `frame_sum` and `frame_count` are buffers:
`metric.to(device)` moves them, but do not cast a metric to another dtype (`.half()`): the
sums are float64.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from kptoolkit.metrics import aggregate

POSE = "pose"
IDENTITY = "identity"
REQUIREMENTS = frozenset({POSE, IDENTITY})


def _optional_tensor(value: object) -> torch.Tensor | None:
    return value if value is None or isinstance(value, torch.Tensor) else torch.as_tensor(value)


@attrs.define
class FramePairs:
    """A batch of real frames and their reconstructions, from one video.

    `real`, `fake`: (B, 3, H, W) float in [0, 1]. Keypoints (B, J, 2) are in pixels, a missing
    joint having x = -1; embeddings are (B, D). Keypoints and embeddings are only needed by the
    metrics that `require` "pose" or "identity"; those metrics also run without frames (scoring
    pose-evaluation tables), the pixel metrics do not.
    """

    real: torch.Tensor | None = attrs.field(default=None, converter=_optional_tensor)
    fake: torch.Tensor | None = attrs.field(default=None, converter=_optional_tensor)
    real_keypoints: torch.Tensor | None = attrs.field(default=None, converter=_optional_tensor)
    fake_keypoints: torch.Tensor | None = attrs.field(default=None, converter=_optional_tensor)
    real_embeddings: torch.Tensor | None = attrs.field(default=None, converter=_optional_tensor)
    fake_embeddings: torch.Tensor | None = attrs.field(default=None, converter=_optional_tensor)

    def __attrs_post_init__(self) -> None:
        if (self.real is None) != (self.fake is None):
            raise ValueError("give both real and fake frames, or neither")
        if self.real is not None:
            if self.real.ndim != 4 or self.real.shape[1] != 3:
                raise ValueError(f"real frames must be (B, 3, H, W), got {tuple(self.real.shape)}")
            if self.fake.shape != self.real.shape:
                raise ValueError(
                    f"fake frames {tuple(self.fake.shape)} do not match real "
                    f"{tuple(self.real.shape)}"
                )
        given = {name: value for name, value in attrs.asdict(self, recurse=False).items()}
        sizes = {name: v.shape[0] for name, v in given.items() if v is not None}
        if not sizes:
            raise ValueError("FramePairs needs frames, keypoints or embeddings")
        if len(set(sizes.values())) > 1:
            shown = ", ".join(f"{name} {size}" for name, size in sizes.items())
            raise ValueError(f"FramePairs fields have different batch sizes: {shown}")

    @property
    def batch_size(self) -> int:
        """Number of frame pairs."""
        first = next(v for v in attrs.astuple(self, recurse=False) if v is not None)
        return first.shape[0]

    def frames(self, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(real, fake) frames as float, or a ValueError naming `metric` when there are none."""
        if self.real is None:
            raise ValueError(f"{metric} needs real and fake frames; these pairs hold none")
        return self.real.float(), self.fake.float()


@attrs.frozen
class VideoScores:
    """One metric's finished videos: names, and the sum and count of valid frame values."""

    names: tuple[str, ...]
    sums: np.ndarray
    counts: np.ndarray

    def value(self, average: str = "frames") -> float:
        """The score under `average` ("frames" pooled, or "videos")."""
        return float(aggregate.average(self.sums, self.counts, average))

    def to_json(self) -> dict[str, list]:
        """A JSON-ready form (`from_json` reads it back)."""
        return {
            "names": list(self.names),
            "sums": [float(v) for v in self.sums],
            "counts": [float(v) for v in self.counts],
        }

    @classmethod
    def from_json(cls, data: dict[str, list]) -> VideoScores:
        """Read what `to_json` wrote."""
        return cls(
            tuple(data["names"]),
            np.asarray(data["sums"], dtype=np.float64),
            np.asarray(data["counts"], dtype=np.float64),
        )


class Metric(nn.Module):
    """Base class of metrics; subclasses implement `frame_values`.

    Class attributes: `requires` (a subset of {"pose", "identity"}: what `FramePairs` must carry
    beyond the frames) and `higher_is_better`.
    """

    HOOKS: ClassVar[tuple[str, ...]] = ("requires", "higher_is_better")

    #: what `FramePairs` must carry beyond the frames (a subset of {"pose", "identity"})
    requires: ClassVar[frozenset[str]] = frozenset()
    #: the direction of the metric in tables and intervals
    higher_is_better: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("frame_sum", torch.zeros((), dtype=torch.float64), persistent=False)
        self.register_buffer("frame_count", torch.zeros((), dtype=torch.float64), persistent=False)
        # this process's finished videos; `sync` keeps them and gathers every process's apart
        self._names: list[str] = []
        self._sums: list[float] = []
        self._counts: list[float] = []
        self._gathered: tuple[list[str], list[float], list[float]] | None = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        unknown = set(cls.requires) - REQUIREMENTS
        if unknown:
            raise TypeError(f"{cls.__name__}.requires has unknown entries {sorted(unknown)}")

    # states ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every frame and video seen."""
        self.frame_sum.zero_()
        self.frame_count.zero_()
        self._names, self._sums, self._counts = [], [], []
        self._gathered = None

    def _finished_videos(self) -> tuple[list[str], list[float], list[float]]:
        """(names, sums, counts) of the finished videos: every process's after `sync`, else
        this process's."""
        if self._gathered is not None:
            return self._gathered
        return self._names, self._sums, self._counts

    @property
    def videos(self) -> int:
        """Number of finished videos (with or without a valid frame)."""
        return len(self._finished_videos()[1])

    def video_scores(self) -> VideoScores:
        """The finished videos' names, sums and counts, in the order they were scored."""
        self._check_finished()
        names, sums, counts = self._finished_videos()
        return VideoScores(
            tuple(names),
            np.asarray(sums, dtype=np.float64),
            np.asarray(counts, dtype=np.float64),
        )

    def sync(self) -> None:
        """Gather the finished videos of every process of the default group (no-op without one),
        in rank order, for `video_scores` and `compute`.

        Call it after the last `end_video()`. It gathers each process's own videos, which it
        keeps apart, so a second call gives the same result; a video ended after it counts once
        `sync` is called again (until then the scores are this process's alone).
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        self._check_finished()
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (self._names, self._sums, self._counts))
        self._gathered = (
            [n for names, _, _ in gathered for n in names],
            [v for _, sums, _ in gathered for v in sums],
            [v for _, _, counts in gathered for v in counts],
        )

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
    def end_video(self, name: str | None = None) -> None:
        """Close the current video (named `name`, else by its position) and start a new one."""
        self._names.append(str(name) if name is not None else f"video-{len(self._names)}")
        self._sums.append(float(self.frame_sum))
        self._counts.append(float(self.frame_count))
        self.frame_sum.zero_()
        self.frame_count.zero_()
        self._gathered = None  # the gathered view is out of date until the next `sync`

    def _check_finished(self) -> None:
        if self.frame_count > 0:
            raise RuntimeError(
                f"{type(self).__name__} has frames of an unfinished video: call end_video() "
                "after each video's last update()"
            )

    def compute(self, average: str = "frames") -> float:
        """The score: frames pooled over all videos ("frames"), or the mean of per-video means
        ("videos"); NaN when no frame has a valid value."""
        aggregate.check_average(average)
        return self.video_scores().value(average)

    def forward(self, pairs: FramePairs) -> torch.Tensor:
        """The per-frame values of a batch, without touching the states."""
        with torch.no_grad():
            return self.frame_values(pairs)

    def extra_repr(self) -> str:
        return f"videos={self.videos}"
