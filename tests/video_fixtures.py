"""Small test videos in every FOMM layout; frame i is filled with the grey level 20 * i + 10."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from kptoolkit.data.video_io import write_gif, write_mp4, write_png_frames

LEVEL_STEP = 20


def level_frames(count: int, size: int = 16, offset: int = 0) -> np.ndarray:
    """(count, size, size, 3) uint8 frames; frame i is uniformly 20 * i + 10 (+ offset)."""
    levels = (np.arange(count) * LEVEL_STEP + 10 + offset).clip(0, 255).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, size, size, 3)).copy()


def frame_index(frame: np.ndarray, offset: int = 0) -> int:
    """Recover the index of a level frame (tolerates lossy codecs)."""
    return round((float(np.mean(frame)) - 10 - offset) / LEVEL_STEP)


def make_video(path: Path, kind: str, count: int = 8, size: int = 16, offset: int = 0) -> Path:
    """Write a level video as a frame folder, stacked png, mp4, mov or gif; return its path."""
    frames = level_frames(count, size, offset)
    if kind == "frames":
        write_png_frames(frames, path)
        return path
    if kind == "stacked":
        target = path.with_suffix(".png")
        Image.fromarray(np.concatenate(list(frames), axis=1)).save(target)
        return target
    if kind in ("mp4", "mov"):
        target = path.with_suffix(f".{kind}")
        write_mp4(frames, target, fps=10)
        return target
    if kind == "gif":
        target = path.with_suffix(".gif")
        write_gif(frames, target, fps=10)
        return target
    raise ValueError(kind)
