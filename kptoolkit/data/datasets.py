"""Frame datasets over FOMM layouts: training pairs, whole test videos and animation pairs."""

from __future__ import annotations

import csv
import multiprocessing
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from kptoolkit.data.layout import DatasetLayoutError, VideoEntry, discover_videos
from kptoolkit.data.video_io import (
    VideoReadError,
    count_frames,
    frame_files,
    iter_frames,
    read_frames,
)

MAX_SKIPS_IN_A_ROW = 16
# a training split whose decoded frames take at most this many bytes is kept decoded in memory
# (per process): decoding two PNG frames per item was a third of a 64 px step's loading time
DECODED_FRAMES_BUDGET = 1 << 30
VideoPair = tuple[VideoEntry, VideoEntry]


class SkippedVideoWarning(UserWarning):
    """A video could not be read and was skipped; shown as one line, `kptoolkit: warning: ...`
    (no file and source line of the code that noticed it)."""


_formatwarning = warnings.formatwarning


def _format_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """`warnings.formatwarning` that shows a `SkippedVideoWarning` as one line (installed when
    this module is imported, so in loader workers too); every other warning as before."""
    if isinstance(category, type) and issubclass(category, SkippedVideoWarning):
        return f"kptoolkit: warning: {message}\n"
    return _formatwarning(message, category, filename, lineno, line)


warnings.formatwarning = _format_warning


def resize_frames(frames: torch.Tensor, size: int | tuple[int, int] | None) -> torch.Tensor:
    """(N,3,H,W) frames resized (bilinear, antialiased) to `size` (an int means square)."""
    if size is None:
        return frames
    target = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(frames.shape[-2:]) == target:
        return frames
    resized = F.interpolate(
        frames, size=target, mode="bilinear", align_corners=False, antialias=True
    )
    return resized.clamp_(0.0, 1.0)


def frames_to_tensor(frames: np.ndarray, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """(N,H,W,3) uint8 -> (N,3,H,W) float32 in [0,1], resized to `size` if given."""
    writable = np.require(frames, requirements=["C", "W"])  # PIL arrays are read-only
    tensor = torch.from_numpy(writable).permute(0, 3, 1, 2).float().div_(255.0)
    return resize_frames(tensor, size)


class FramesDataset(Dataset):
    """Videos of a FOMM-layout folder: (source, driving) pairs for training, whole videos for test.

    A training item is two distinct random frames of one video, in time order. With
    `id_sampling`, an epoch walks over identities (the part of the name before '#') and picks a
    random clip of each. Randomness comes from (seed, epoch, index) alone, so items do not depend
    on the number of loader workers. A video that cannot be read is skipped with one warning
    naming it, counted in `skipped`, and the next video is used instead.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        frame_size: int | None = None,
        id_sampling: bool = False,
        repeats: int = 1,
        frame_width: int | None = None,
        max_frames: int | None = None,
        seed: int = 0,
        groundtruth: bool = False,
    ) -> None:
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.root = Path(root)
        self.split = split
        self.is_train = split == "train"
        self.frame_size = frame_size
        self.id_sampling = id_sampling and self.is_train
        self.repeats = repeats if self.is_train else 1
        self.frame_width = frame_width
        self.max_frames = max_frames
        self.seed = seed
        self.epoch = 0
        self.videos: list[VideoEntry] = discover_videos(self.root, split)
        self.identities = sorted({v.identity for v in self.videos})
        self._by_identity = {
            identity: [v for v in self.videos if v.identity == identity]
            for identity in self.identities
        }
        self._frame_counts: dict[Path, int] = {}
        self._files: dict[Path, list[Path]] = {}
        self._decoded: dict[Path, np.ndarray | None] = {}  # training videos' frames, see _read_pair
        self._keep_decoded: bool | None = None
        self.groundtruth = groundtruth
        self._joints: dict[Path, np.ndarray] = {}  # per video, read once per process
        if groundtruth:
            self._check_groundtruth()
        # shared with the loader's workers: a skip is counted by all, warned once per video
        self._skipped = multiprocessing.Value("i", 0)
        self._warned = multiprocessing.Array("b", len(self.videos))
        self._index = {video.path: i for i, video in enumerate(self.videos)}

    # -- sizes and epochs ----------------------------------------------------------------------
    def __len__(self) -> int:
        units = len(self.identities) if self.id_sampling else len(self.videos)
        return units * self.repeats

    def set_epoch(self, epoch: int) -> None:
        """Change the random frames drawn for each index (call before each epoch)."""
        self.epoch = epoch

    @property
    def skipped(self) -> int:
        """How many times an unreadable video was skipped (summed over loader workers)."""
        return int(self._skipped.value)

    # -- items ---------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        last_error: VideoReadError | None = None
        for attempt in range(min(MAX_SKIPS_IN_A_ROW, len(self.videos))):
            video = self._video_for(index + attempt, rng)
            try:
                return self._train_item(video, rng) if self.is_train else self._test_item(video)
            except VideoReadError as exc:
                self._record_skip(video, exc)
                last_error = exc
        raise VideoReadError(
            f"{MAX_SKIPS_IN_A_ROW} videos in a row could not be read under {self.root}; "
            f"last error: {last_error}"
        )

    def _video_for(self, index: int, rng: np.random.Generator) -> VideoEntry:
        if self.id_sampling:
            clips = self._by_identity[self.identities[index % len(self.identities)]]
            return clips[int(rng.integers(len(clips)))]
        return self.videos[index % len(self.videos)]

    def num_frames(self, video: VideoEntry) -> int:
        """Frame count of a video (cached per process)."""
        count = self._frame_counts.get(video.path)
        if count is None:
            files = self._frame_files(video)
            count = len(files) if files is not None else count_frames(video.path, self.frame_width)
            self._frame_counts[video.path] = count
        return count

    def _frame_files(self, video: VideoEntry) -> list[Path] | None:
        """A frame folder's files, listed once per process (None for a video file)."""
        if video.kind != "frames":
            return None
        files = self._files.get(video.path)
        if files is None:
            files = self._files[video.path] = frame_files(video.path)
        return files

    def _read_pair(self, video: VideoEntry, first: int, second: int, count: int) -> np.ndarray:
        """Frames `first` and `second` of a training video as (2, H, W, 3) uint8, from its
        frames kept decoded (`_decoded_video`) or else decoded for this item: the same frames
        either way."""
        files = self._frame_files(video)
        decoded = self._decoded_video(video, count, files)
        if decoded is None:
            return read_frames(video.path, [first, second], self.frame_width, files)
        return decoded[[first, second]]

    def _decoded_video(
        self, video: VideoEntry, count: int, files: list[Path] | None
    ) -> np.ndarray | None:
        """Every frame of a training video, decoded once per process while the split's frames
        fit in DECODED_FRAMES_BUDGET (judged from the first video decoded: a 64 px puppet video
        is 0.4 MB); None for a bigger split, and for a video with a frame that cannot be
        decoded (it then fails only the items that draw that frame, as before)."""
        if self._keep_decoded is False:
            return None
        if video.path not in self._decoded:
            try:
                decoded = read_frames(video.path, list(range(count)), self.frame_width, files)
            except VideoReadError:
                decoded = None
            if self._keep_decoded is None and decoded is not None:
                split_bytes = decoded.nbytes * len(self.videos)
                self._keep_decoded = split_bytes <= DECODED_FRAMES_BUDGET
                if not self._keep_decoded:
                    return None
            self._decoded[video.path] = decoded
        return self._decoded[video.path]

    def _train_item(self, video: VideoEntry, rng: np.random.Generator) -> dict[str, Any]:
        count = self.num_frames(video)
        if count < 2:
            raise VideoReadError(f"{video.path} has {count} frame(s); training needs at least 2")
        first, second = sorted(int(i) for i in rng.choice(count, size=2, replace=False))
        frames = frames_to_tensor(self._read_pair(video, first, second, count), self.frame_size)
        item = {
            "source": frames[0],
            "driving": frames[1],
            "name": video.name,
            "frame_indices": torch.tensor([first, second]),
        }
        if self.groundtruth:
            joints = torch.from_numpy(self.joints_of(video))
            item["source_joints"], item["driving_joints"] = joints[first], joints[second]
        return item

    def _test_item(self, video: VideoEntry) -> dict[str, Any]:
        frames = list(self.iter_video(video))
        if not frames:
            raise VideoReadError(f"{video.path} has no frames")
        return {"video": torch.stack(frames, dim=1), "name": video.name}

    # -- ground truth (synthetic data) ---------------------------------------------------------
    def _groundtruth_path(self, video: VideoEntry) -> Path:
        return self.root / "groundtruth" / self.split / f"{video.name}.npz"

    def _check_groundtruth(self) -> None:
        missing = [v.name for v in self.videos if not self._groundtruth_path(v).is_file()]
        if missing:
            raise DatasetLayoutError(
                f"ground-truth joints are needed (a masker draws them) but {len(missing)} video(s) "
                f"of {self.root} / {self.split} have none, e.g. {missing[0]}: only datasets with "
                "groundtruth/<split>/<video>.npz (the synthetic puppets) can feed it"
            )

    def joints_of(self, video: VideoEntry) -> np.ndarray:
        """Ground-truth joints of a video: (T, J, 2) float32, (x, y) in [-1, 1] over the frame
        (pixel centres at -1 and 1), NaN where a joint is not visible. Read once per process
        (a training item would otherwise decode a frame and the file again)."""
        cached = self._joints.get(video.path)
        if cached is None:
            cached = self._joints[video.path] = self._read_joints(video)
        return cached

    def _read_joints(self, video: VideoEntry) -> np.ndarray:
        with np.load(self._groundtruth_path(video)) as data:
            joints, visible = data["joints"].astype(np.float32), data["visible"].astype(bool)
        height, width = read_frames(video.path, [0], self.frame_width).shape[1:3]
        scale = np.array([2 / (width - 1), 2 / (height - 1)], dtype=np.float32)
        normalised = joints * scale - 1
        normalised[~visible] = np.nan
        if self.max_frames is not None:
            normalised = normalised[: self.max_frames]
        return normalised

    def iter_video(self, video: VideoEntry) -> Iterator[torch.Tensor]:
        """Stream a video's frames as (3,H,W) tensors, up to `max_frames`."""
        for i, frame in enumerate(iter_frames(video.path, self.frame_width)):
            if self.max_frames is not None and i >= self.max_frames:
                break
            yield frames_to_tensor(frame[None], self.frame_size)[0]

    def _record_skip(self, video: VideoEntry, error: VideoReadError) -> None:
        with self._skipped.get_lock():
            self._skipped.value += 1
        index = self._index[video.path]
        with self._warned.get_lock():  # the first process to skip the video warns, once
            first = not self._warned[index]
            self._warned[index] = 1
        if first:
            warnings.warn(f"skipping unreadable video: {error}", SkippedVideoWarning, stacklevel=3)


class AnimationPairs:
    """(source video, driving video) pairs for animation: from a CSV, or random with seed 0.

    The CSV has the columns `distance,source,driving,frame` of the FOMM pairs files; only
    `source` and `driving` (video names) are used.
    """

    def __init__(
        self, dataset: FramesDataset, pairs_csv: str | Path | None = None, count: int = 100
    ) -> None:
        self.dataset = dataset
        by_name = {v.name: v for v in dataset.videos}
        if pairs_csv is not None:
            self.pairs = self._from_csv(Path(pairs_csv), by_name)
        else:
            self.pairs = self._random(dataset.videos, count)

    @staticmethod
    def _from_csv(path: Path, by_name: dict[str, VideoEntry]) -> list[VideoPair]:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"source", "driving"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
            pairs = []
            for row_number, row in enumerate(reader, start=2):
                names = [Path(row["source"]).stem, Path(row["driving"]).stem]
                for name in names:
                    if name not in by_name:
                        raise ValueError(f"{path} line {row_number}: no video named '{name}'")
                pairs.append((by_name[names[0]], by_name[names[1]]))
        return pairs

    @staticmethod
    def _random(videos: list[VideoEntry], count: int) -> list[VideoPair]:
        grid = np.mgrid[: len(videos), : len(videos)].reshape(2, -1).T
        chosen = np.random.RandomState(0).choice(len(grid), min(count, len(grid)), replace=False)
        return [(videos[grid[i][0]], videos[grid[i][1]]) for i in chosen]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        source, driving = self.pairs[index]
        source_frame = frames_to_tensor(
            read_frames(source.path, [0], self.dataset.frame_width), self.dataset.frame_size
        )[0]
        return {
            "source": source_frame,
            "source_name": source.name,
            "driving_name": driving.name,
            "driving_frames": self.dataset.iter_video(driving),
        }
