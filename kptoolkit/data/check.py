"""`kptoolkit data check`: read every frame of a dataset and report what is usable."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import attrs
from tqdm import tqdm

from kptoolkit.data.layout import SPLITS, DatasetLayoutError, VideoEntry, discover_videos
from kptoolkit.data.video_io import VideoReadError, iter_frames


@attrs.define
class SplitReport:
    """What reading one split found."""

    split: str
    videos: int = 0
    readable: int = 0
    frames: int = 0
    identities: set[str] = attrs.field(factory=set)
    frame_sizes: Counter = attrs.field(factory=Counter)
    frames_per_video: list[int] = attrs.field(factory=list)
    mixed_sizes: list[Path] = attrs.field(factory=list)  # videos whose frames differ in size
    layout_error: str | None = None


@attrs.define
class DatasetReport:
    """Counts per split, frame sizes, and every unreadable file with its reason."""

    root: Path
    splits: dict[str, SplitReport] = attrs.field(factory=dict)
    unreadable: list[tuple[Path, str]] = attrs.field(factory=list)

    @property
    def usable(self) -> bool:
        """Both splits have a readable video, and training videos have at least 2 frames."""
        train, test = self.splits.get("train"), self.splits.get("test")
        if train is None or test is None or not train.readable or not test.readable:
            return False
        return max(train.frames_per_video, default=0) >= 2

    @property
    def total_videos(self) -> int:
        """Videos found over both splits."""
        return sum(s.videos for s in self.splits.values())


def _check_video(
    video: VideoEntry, report: SplitReport, frame_width: int | None
) -> tuple[Path, str] | None:
    """Decode the whole video into `report`; (file, reason) when it cannot be read."""
    count = 0
    sizes: Counter = Counter()
    try:
        for frame in iter_frames(video.path, frame_width, same_size=False):
            sizes[frame.shape[:2]] += 1
            count += 1
    except VideoReadError as exc:
        return exc.path or video.path, str(exc)
    if count == 0:
        return video.path, "no frames"
    report.readable += 1
    report.frames += count
    report.frame_sizes.update(sizes)
    report.frames_per_video.append(count)
    if len(sizes) > 1:
        report.mixed_sizes.append(video.path)
    return None


def unreadable_videos(
    videos: Sequence[VideoEntry], frame_width: int | None = None
) -> list[tuple[VideoEntry, str]]:
    """The videos that cannot be decoded to their last frame (or have none), each with the
    reason: what a run that reads them whole would stop on."""
    scratch = SplitReport("scratch")
    found = []
    for video in videos:
        problem = _check_video(video, scratch, frame_width)
        if problem is not None:
            found.append((video, problem[1]))
    return found


def check_dataset(
    root: str | Path, frame_width: int | None = None, progress: bool = True
) -> DatasetReport:
    """Decode every frame of every video in both splits; never raises for a bad video."""
    report = DatasetReport(Path(root))
    for split in SPLITS:
        split_report = SplitReport(split)
        report.splits[split] = split_report
        try:
            videos = discover_videos(root, split)
        except DatasetLayoutError as exc:
            split_report.layout_error = str(exc)
            continue
        split_report.videos = len(videos)
        split_report.identities = {v.identity for v in videos}
        for video in tqdm(videos, desc=f"checking {split}", unit="video", disable=not progress):
            problem = _check_video(video, split_report, frame_width)
            if problem is not None:
                report.unreadable.append(problem)
    return report


def format_report(report: DatasetReport) -> str:
    """Human-readable table of a `DatasetReport`."""
    lines = [f"dataset: {report.root}"]
    header = ("split", "videos", "readable", "identities", "frames", "frames/video", "frame sizes")
    rows = [header]
    for split in report.splits.values():
        if split.layout_error:
            rows.append((split.split, "0", "0", "0", "0", "-", split.layout_error))
            continue
        per_video = split.frames_per_video
        span = f"{min(per_video)}..{max(per_video)}" if per_video else "-"
        sizes = ", ".join(f"{h}x{w} ({n})" for (h, w), n in split.frame_sizes.most_common())
        rows.append(
            (
                split.split,
                str(split.videos),
                str(split.readable),
                str(len(split.identities)),
                str(split.frames),
                span,
                sizes or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    identities = set().union(*(s.identities for s in report.splits.values()))
    readable = sum(s.readable for s in report.splits.values())
    lines.append(
        f"total: {report.total_videos} videos ({readable} readable), {len(identities)} identities"
    )
    if report.unreadable:
        lines.append(f"unreadable ({len(report.unreadable)}):")
        lines.extend(f"  {path}: {reason}" for path, reason in report.unreadable)
    sizes = {s for split in report.splits.values() for s in split.frame_sizes}
    if len(sizes) > 1:
        lines.append("note: frames have different sizes; they are resized to data.frame_size")
    mixed = [path for split in report.splits.values() for path in split.mixed_sizes]
    if mixed:
        lines.append(
            f"warning: {len(mixed)} video(s) mix frame sizes within the video (e.g. {mixed[0]}); "
            "each frame is resized to the video's first frame size when it is read"
        )
    if report.usable:
        bad = len(report.unreadable)
        note = f" ({bad} unreadable will be skipped)" if bad else ""
        lines.append(f"status: usable{note}")
    else:
        lines.append("status: NOT usable (each split needs a readable video of 2+ frames)")
    return "\n".join(lines)
