"""Streaming video IO for every FOMM layout: frame folders, stacked images, mp4/gif/mov files.

Readers yield one frame at a time (uint8 RGB, H x W x 3), so memory stays flat however long the
video; `read_frames` decodes only up to the last frame it needs. Probes (`cheap_frame_count`,
`video_fps`) read only a folder listing, an image header or container metadata; `count_frames`
decodes when nothing else tells. Writers stream too: lossless PNG folders (for evaluation), MP4
through PyAV, GIF previews through Pillow.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image

from kptoolkit.errors import KptoolkitError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".gif", ".mov", ".avi", ".mkv", ".webm"})
VideoKind = Literal["frames", "stacked", "video"]


class VideoReadError(KptoolkitError):
    """A video (or one of its frames) is missing, truncated or not decodable."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


def video_kind(path: str | Path) -> VideoKind | None:
    """How a path stores a video: a folder of frames, one stacked image, or a video file."""
    path = Path(path)
    if path.is_dir():
        return "frames"
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "stacked"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return None


def frame_files(folder: str | Path) -> list[Path]:
    """Image files of a frame folder, sorted by name."""
    with os.scandir(folder) as entries:
        names = sorted(
            e.name for e in entries if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
        )
    return [Path(folder) / name for name in names]


# integer modes wider than 8 bits: their largest value (PIL reads 16-bit greyscale as these)
WIDE_INTEGER_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I": 65535}


def image_to_rgb(image: Image.Image) -> np.ndarray:
    """A PIL image as uint8 RGB (H, W, 3): grey, grey with alpha, RGBA and palette images are
    converted as PIL does; 16-bit greyscale is scaled to 8 bits (PIL alone clips it to white)
    and float images (TIFF) are read as values in [0, 1]."""
    if image.mode in WIDE_INTEGER_MODES:
        values = np.asarray(image).astype(np.float64) / WIDE_INTEGER_MODES[image.mode]
    elif image.mode == "F":
        values = np.asarray(image).astype(np.float64)
    else:
        return np.asarray(image.convert("RGB"))
    grey = np.rint(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def load_image(path: str | Path) -> np.ndarray:
    """One image as uint8 RGB (H, W, 3) (`image_to_rgb`)."""
    try:
        with Image.open(path) as image:
            return image_to_rgb(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise VideoReadError(f"cannot read image {path}: {exc}", path) from exc


def _stacked_width(image: np.ndarray, path: Path, frame_width: int | None) -> int:
    width = frame_width or image.shape[0]  # default: square frames
    if image.shape[1] % width:
        raise VideoReadError(
            f"{path}: stacked image width {image.shape[1]} is not a multiple of the frame width "
            f"{width}; give the frame width (data.params.frame_width)",
            path,
        )
    return width


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoReadError(f"cannot open video {path}: {exc}", path) from exc


def _decode(path: Path) -> Iterator[np.ndarray]:
    container = _open_container(path)
    try:
        if not container.streams.video:
            raise VideoReadError(f"{path} has no video stream", path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as exc:
        raise VideoReadError(f"cannot decode video {path}: {exc}", path) from exc
    finally:
        container.close()


def to_size(frame: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`frame` resized (bilinear) to the height and width of `shape` when it differs."""
    if frame.shape[:2] == tuple(shape[:2]):
        return frame
    size = (int(shape[1]), int(shape[0]))  # PIL: (width, height)
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))


def iter_frames(
    path: str | Path, frame_width: int | None = None, same_size: bool = True
) -> Iterator[np.ndarray]:
    """Yield the frames of a video one at a time as uint8 RGB arrays. A folder of frame files
    whose sizes differ gives every frame the first one's size (`same_size`; `kptoolkit data
    check` reads them as they are, to report it)."""
    path = Path(path)
    kind = video_kind(path)
    if kind == "frames":
        first: tuple[int, ...] | None = None
        for file in frame_files(path):
            frame = load_image(file)
            if same_size:
                first = first or frame.shape
                frame = to_size(frame, first)
            yield frame
    elif kind == "stacked":
        image = load_image(path)
        width = _stacked_width(image, path, frame_width)
        for start in range(0, image.shape[1], width):
            yield image[:, start : start + width]
    elif kind == "video":
        yield from _decode(path)
    else:
        raise VideoReadError(f"{path} is not a frame folder, an image or a video file", path)


def count_frames(path: str | Path, frame_width: int | None = None) -> int:
    """Number of frames, without keeping them in memory."""
    path = Path(path)
    kind = video_kind(path)
    if kind == "frames":
        return len(frame_files(path))
    if kind == "stacked":
        try:
            with Image.open(path) as image:
                height, width = image.height, image.width
        except (OSError, ValueError, SyntaxError) as exc:
            raise VideoReadError(f"cannot read image {path}: {exc}", path) from exc
        frame = frame_width or height
        if width % frame:
            raise VideoReadError(
                f"{path}: width {width} is not a multiple of frame width {frame}", path
            )
        return width // frame
    if kind == "video":
        listed = metadata_frame_count(path)
        if listed is not None:
            return listed
    return sum(1 for _ in iter_frames(path, frame_width))


def metadata_frame_count(path: str | Path) -> int | None:
    """A video file's frame count from its container metadata (no decoding); None if absent."""
    container = _open_container(Path(path))
    try:
        streams = container.streams.video
        return int(streams[0].frames) if streams and streams[0].frames > 0 else None
    finally:
        container.close()


def video_fps(path: str | Path) -> float | None:
    """Frame rate of a video file (PyAV stream `average_rate`); None when unknown."""
    path = Path(path)
    if video_kind(path) != "video":
        return None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            rate = container.streams.video[0].average_rate
    except (OSError, ValueError, av.error.FFmpegError):
        return None
    if rate is None or not float(rate) > 0:
        return None
    return float(rate)


def cheap_frame_count(path: str | Path, frame_width: int | None = None) -> int | None:
    """Frame count when it needs no decoding (a folder listing, an image header, container
    metadata); None otherwise."""
    path = Path(path)
    kind = video_kind(path)
    try:
        if kind == "frames":
            return len(frame_files(path))
        if kind == "stacked":
            return count_frames(path, frame_width)
        if kind == "video":
            return metadata_frame_count(path)
    except Exception:  # any failure (PyAV's included): the count only sizes a progress bar
        return None
    return None


def _first_frame_shape(path: Path, loaded: np.ndarray | None) -> tuple[int, int]:
    """(height, width) of a video's first frame file: from `loaded` when it is at hand, else
    from the file's header (nothing decoded)."""
    if loaded is not None:
        return loaded.shape[0], loaded.shape[1]
    with Image.open(path) as image:
        return image.height, image.width


def read_frames(
    path: str | Path,
    indices: Sequence[int],
    frame_width: int | None = None,
    files: Sequence[Path] | None = None,
) -> np.ndarray:
    """Frames at `indices` (in that order) as (N, H, W, 3) uint8, decoding no more than needed.
    `files`: a frame folder's `frame_files`, from a caller that keeps them (listing the folder
    again for every item cost a training step 5 ms)."""
    path = Path(path)
    if not indices:
        raise ValueError("read_frames needs at least one index")
    if files is None and video_kind(path) == "frames":
        files = frame_files(path)
    if files is not None:
        try:
            frames = [load_image(files[i]) for i in indices]
            if len({frame.shape for frame in frames}) > 1:  # rare: give them the first's size
                shape = _first_frame_shape(
                    files[0], frames[indices.index(0)] if 0 in indices else None
                )
                frames = [to_size(frame, shape) for frame in frames]
            return np.stack(frames)
        except IndexError:
            raise VideoReadError(
                f"{path} has {len(files)} frames; asked for index {max(indices)}", path
            ) from None
    wanted = set(indices)
    last = max(indices)
    found: dict[int, np.ndarray] = {}
    with contextlib.closing(iter_frames(path, frame_width)) as frames:
        for i, frame in enumerate(frames):
            if i in wanted:
                found[i] = frame
            if i >= last:
                break
    if len(found) < len(wanted):
        raise VideoReadError(f"{path} ends before frame {last}", path)
    return np.stack([found[i] for i in indices])


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """A float frame in [0, 1] (or uint8) as uint8, rounding to nearest."""
    if frame.dtype == np.uint8:
        return frame
    return (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_png_frames(frames: Iterable[np.ndarray], folder: str | Path, start: int = 0) -> int:
    """Write frames as lossless `%07d.png` files (the layout pose-evaluation scripts read)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for i, frame in enumerate(frames, start=start):
        Image.fromarray(to_uint8(frame)).save(folder / f"{i:07d}.png", compress_level=1)
        count += 1
    return count


class Mp4Writer:
    """Streams RGB frames into an H.264 MP4 (yuv420p); use as a context manager."""

    def __init__(self, path: str | Path, fps: float = 25.0, crf: int = 18) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.crf = crf
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None

    def __enter__(self) -> Mp4Writer:
        self._container = av.open(str(self.path), mode="w")
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) frame, uint8 or float in [0, 1]."""
        assert self._container is not None, "use Mp4Writer as a context manager"
        frame = to_uint8(frame)
        if self._stream is None:
            self._stream = self._open_stream(frame.shape[1], frame.shape[0])
        # yuv420p needs even sizes: pad odd ones by repeating the last row/column
        pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
        if pad_h or pad_w:
            frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def _open_stream(self, width: int, height: int) -> av.video.stream.VideoStream:
        assert self._container is not None
        stream = self._container.add_stream(
            "libx264", rate=Fraction(self.fps).limit_denominator(1000)
        )
        stream.width = width + width % 2
        stream.height = height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self.crf)}
        return stream

    def __exit__(self, *exc_info: object) -> None:
        assert self._container is not None
        try:
            if self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()


def write_mp4(frames: Iterable[np.ndarray], path: str | Path, fps: float = 25.0) -> int:
    """Stream frames into an MP4 preview; returns the number written."""
    count = 0
    with Mp4Writer(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
            count += 1
    return count


def write_gif(frames: Iterable[np.ndarray], path: str | Path, fps: float = 10.0) -> int:
    """A GIF preview (Pillow, adaptive palette). Holds the frames in memory: keep previews short."""
    images = [Image.fromarray(to_uint8(f)) for f in frames]
    if not images:
        raise ValueError("write_gif needs at least one frame")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    images[0].save(
        path,
        save_all=True,
        append_images=images[1:],
        duration=max(1, round(1000 / fps)),
        loop=0,
        optimize=False,
    )
    return len(images)
