"""Tables of the public pose-evaluation scripts (`extract.py` writes them, `cmp*.py` reads them).

A table is a pandas DataFrame with the columns `file_name` (the video), `frame_number` (0-based)
and `value` (a numpy array: (J, 2) keypoints with -1 for missing joints, or an embedding),
saved with `DataFrame.to_pickle`. pandas is not a kptoolkit dependency: install it
(`pip install pandas`, or the `eval` extra) to use these functions.

Reading a pickle runs code chosen by whoever wrote the file: only import tables you trust.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from kptoolkit.errors import KptoolkitError

COLUMNS = ("file_name", "frame_number", "value")


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise KptoolkitError(
            "pose-evaluation tables need pandas: pip install pandas "
            "(or install kptoolkit with the `eval` extra)"
        ) from None
    return pandas


def export_table(rows: Iterable[tuple[str, int, np.ndarray]], path: str | Path) -> None:
    """Write (file_name, frame_number, value) rows as a pickled pose-evaluation DataFrame."""
    pd = _pandas()
    table: dict[str, list] = {name: [] for name in COLUMNS}
    for file_name, frame_number, value in rows:
        table["file_name"].append(str(file_name))
        table["frame_number"].append(int(frame_number))
        table["value"].append(np.asarray(value))
    pd.DataFrame(table, columns=list(COLUMNS)).to_pickle(Path(path))


def import_table(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Read a pose-evaluation table: per file name (sorted), its values by frame number.

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
    frames: dict[str, dict[int, np.ndarray]] = {}
    for file_name, frame_number, value in zip(
        frame["file_name"], frame["frame_number"], frame["value"], strict=True
    ):
        video = frames.setdefault(str(file_name), {})
        if int(frame_number) in video:
            raise KptoolkitError(f"{path}: frame {frame_number} of {file_name} appears twice")
        video[int(frame_number)] = np.asarray(value)
    return {name: [video[i] for i in sorted(video)] for name, video in sorted(frames.items())}
