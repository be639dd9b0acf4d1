"""Tables of the public pose-evaluation scripts (`extract.py` writes them, `cmp*.py` reads them).

A table is a pandas DataFrame with the columns `file_name` (the video, as named on disk),
`frame_number` (0-based) and `value` (a numpy array: (J, 2) keypoints with -1 for missing joints,
or an embedding; `None` where the extractor found nothing, e.g. no face), saved with
`DataFrame.to_pickle`. The scripts pair a real and a generated video by the file name up to its
first dot (`a.mp4` pairs with `a.png`); `video_key` does the same. pandas is not a kptoolkit
dependency: install it (`pip install pandas`, or the `eval` extra) to use these functions.

Reading a pickle runs code chosen by whoever wrote the file: only import tables you trust.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kptoolkit.errors import KptoolkitError
from kptoolkit.utils.atomic import atomic_path

COLUMNS = ("file_name", "frame_number", "value")
MISSING = -1.0


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise KptoolkitError(
            "pose-evaluation tables need pandas: pip install pandas "
            "(or install kptoolkit with the `eval` extra)"
        ) from None
    return pandas


def video_key(file_name: str) -> str:
    """The name that pairs real and generated videos: the file name up to its first dot."""
    return str(file_name).split(".")[0]


def export_table(rows: Iterable[tuple[str, int, np.ndarray | None]], path: str | Path) -> None:
    """Write (file_name, frame_number, value) rows as a pickled pose-evaluation DataFrame.

    A `None` value stays `None` (the scripts' "nothing detected"), never a 0-d object array.
    """
    pd = _pandas()
    table: dict[str, list] = {name: [] for name in COLUMNS}
    for file_name, frame_number, value in rows:
        table["file_name"].append(str(file_name))
        table["frame_number"].append(int(frame_number))
        table["value"].append(None if value is None else np.asarray(value))
    frame = pd.DataFrame(table, columns=list(COLUMNS))
    with atomic_path(path) as partial:
        frame.to_pickle(partial)


def import_table(path: str | Path) -> dict[str, dict[int, np.ndarray | None]]:
    """Read a pose-evaluation table: per file name (sorted), its values by frame number (sorted;
    `None` where nothing was detected).

    Uses `pandas.read_pickle`, which executes code from the file: only read tables you trust.
    """
    pd = _pandas()
    path = Path(path)
    if not path.is_file():
        raise KptoolkitError(f"pose-evaluation table not found: {path}")
    frame = pd.read_pickle(path)
    if not isinstance(frame, pd.DataFrame) or not set(COLUMNS) <= set(frame.columns):
        raise KptoolkitError(
            f"{path} is not a pose-evaluation table (a DataFrame with columns {', '.join(COLUMNS)})"
        )
    videos: dict[str, dict[int, np.ndarray | None]] = {}
    for file_name, frame_number, value in zip(
        frame["file_name"], frame["frame_number"], frame["value"], strict=True
    ):
        video = videos.setdefault(str(file_name), {})
        if int(frame_number) in video:
            raise KptoolkitError(f"{path}: frame {frame_number} of {file_name} appears twice")
        video[int(frame_number)] = _table_value(value)
    return {name: dict(sorted(video.items())) for name, video in sorted(videos.items())}


def _table_value(value: object) -> np.ndarray | None:
    """None for the scripts' "nothing detected" (also a 0-d object array holding None)."""
    if value is None:
        return None
    array = np.asarray(value)
    if array.dtype == object and array.ndim == 0:
        return _table_value(array.item())
    return array


def stack_keypoints(values: Sequence[np.ndarray | None]) -> np.ndarray:
    """(T, J, 2) float64 keypoints of one video's rows; a `None` row becomes all missing (-1)."""
    shapes = {v.shape for v in values if v is not None}
    if len(shapes) > 1:
        raise KptoolkitError(f"keypoint rows of different shapes in one table: {sorted(shapes)}")
    if not shapes:
        raise KptoolkitError("a video whose every keypoint row is None has no joint count")
    (shape,) = shapes
    return np.stack(
        [np.full(shape, MISSING) if v is None else v.astype(np.float64) for v in values]
    )


def stack_embeddings(values: Sequence[np.ndarray | None]) -> np.ndarray:
    """(T, D) float64 embeddings of one video's rows; a `None` row becomes NaN (skipped)."""
    sizes = {v.size for v in values if v is not None}
    if len(sizes) > 1:
        raise KptoolkitError(f"embedding rows of different sizes in one table: {sorted(sizes)}")
    if not sizes:
        raise KptoolkitError("a video whose every embedding row is None has no dimension")
    (size,) = sizes
    return np.stack(
        [np.full(size, np.nan) if v is None else v.astype(np.float64).reshape(-1) for v in values]
    )


def is_keypoint_table(table: dict[str, dict[int, np.ndarray | None]]) -> bool:
    """True when the table's values are (J, 2) keypoints, False for embeddings."""
    for video in table.values():
        for value in video.values():
            if value is not None:
                return value.ndim == 2 and value.shape[-1] == 2
    raise KptoolkitError("the table holds no value at all (every row is None)")
