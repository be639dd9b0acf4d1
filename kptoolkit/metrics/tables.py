"""Tables of the public pose-evaluation scripts (`extract.py` writes them, `cmp*.py` reads them).

A table is a pandas DataFrame with the columns `file_name` (the video, as named on disk),
`frame_number` (0-based) and `value` (a numpy array: (J, 2) keypoints with -1 for missing joints,
or an embedding; `None` where the extractor found nothing, e.g. no face), saved with
`DataFrame.to_pickle`. The scripts pair a real and a generated video by the file name up to its
first dot (`a.mp4` pairs with `a.png`); `video_key` does the same. pandas is not a kptoolkit
dependency: install it (`pip install pandas`, or the `eval` extra) to use these functions.

`import_table` never runs code from the file: it unpickles with an allow-list of the pandas and
numpy globals such tables are built from (`table_pickle`), refuses anything else in one line
that names the file and the refused global, and accepts only numeric arrays (or `None`) as
values. `check_comparable` says in one line why two imported tables cannot be scored together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kptoolkit.errors import KptoolkitError
from kptoolkit.metrics.table_pickle import load_table_pickle
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

    Nothing in the file is run: it is unpickled with an allow-list of pandas and numpy globals
    (`table_pickle.load_table_pickle`), and every value must be a numeric array or `None`.
    Anything else is a KptoolkitError that names the file.
    """
    pd = _pandas()
    path = Path(path)
    if not path.is_file():
        raise KptoolkitError(f"pose-evaluation table not found: {path}")
    frame = load_table_pickle(path)
    if not isinstance(frame, pd.DataFrame) or not set(COLUMNS) <= {
        c for c in frame.columns if isinstance(c, str)
    }:
        raise KptoolkitError(
            f"{path} is not a pose-evaluation table (a DataFrame with columns {', '.join(COLUMNS)})"
        )
    if frame.empty:
        raise KptoolkitError(f"{path} is an empty pose-evaluation table (it has no rows)")
    for column in COLUMNS:  # records could hide object pointers: refused before they are read
        if getattr(frame[column].dtype, "kind", "") == "V":
            raise KptoolkitError(f"{path}: column {column} holds records, not table values")
    videos: dict[str, dict[int, np.ndarray | None]] = {}
    for row, (file_name, frame_number, value) in enumerate(
        zip(frame["file_name"], frame["frame_number"], frame["value"], strict=True)
    ):
        if not isinstance(file_name, str) or not _is_integral(frame_number):
            raise KptoolkitError(
                f"{path}: row {row} needs a string file_name and an integer frame_number, not "
                f"{type(file_name).__name__} and {type(frame_number).__name__}"
            )
        video = videos.setdefault(str(file_name), {})
        if int(frame_number) in video:
            raise KptoolkitError(f"{path}: frame {frame_number} of {file_name} appears twice")
        video[int(frame_number)] = _table_value(
            value, f"{path}: frame {frame_number} of {file_name}"
        )
    if all(value is None for video in videos.values() for value in video.values()):
        raise KptoolkitError(f"{path} holds no value at all (every row is None: nothing detected)")
    return {name: dict(sorted(video.items())) for name, video in sorted(videos.items())}


def _is_integral(number: object) -> bool:
    if isinstance(number, (int, np.integer)):
        return True
    return isinstance(number, (float, np.floating)) and float(number).is_integer()


def _table_value(value: object, where: str) -> np.ndarray | None:
    """None for the scripts' "nothing detected" (also a 0-d object array holding None), else a
    numeric array; anything else is refused before numpy reads it (a structured array could
    hide object pointers in its bytes)."""
    if isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 0:
        value = value.item()
    if value is None:
        return None
    if not _is_numeric(value):
        kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
        raise KptoolkitError(f"{where} holds {kind} values, not an array of numbers")
    return np.asarray(value)


def _is_numeric(value: object) -> bool:
    """A numeric array, number, or (nested) list or tuple of them."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    if isinstance(value, (list, tuple)):
        return all(_is_numeric(item) for item in value)
    return isinstance(value, (int, float, np.integer, np.floating))


def stack_keypoints(
    values: Sequence[np.ndarray | None], shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """(T, J, 2) float64 keypoints of one video's rows; a `None` row becomes all missing (-1).
    `shape` gives the (J, 2) of a video whose every row is None."""
    shape = _one_shape({v.shape for v in values if v is not None}, shape, "keypoint rows")
    return np.stack(
        [np.full(shape, MISSING) if v is None else v.astype(np.float64) for v in values]
    )


def stack_embeddings(
    values: Sequence[np.ndarray | None], shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """(T, D) float64 embeddings of one video's rows; a `None` row becomes NaN (skipped).
    `shape` gives the (D,) of a video whose every row is None."""
    (size,) = _one_shape({(v.size,) for v in values if v is not None}, shape, "embedding rows")
    return np.stack(
        [np.full(size, np.nan) if v is None else v.astype(np.float64).reshape(-1) for v in values]
    )


def _one_shape(
    shapes: set[tuple[int, ...]], default: tuple[int, ...] | None, what: str
) -> tuple[int, ...]:
    if len(shapes) > 1:
        raise KptoolkitError(f"{what} of different shapes in one table: {sorted(shapes)}")
    if not shapes and default is None:
        raise KptoolkitError(f"a video whose {what} are all None has no shape")
    return next(iter(shapes), default)


def is_keypoint_table(table: dict[str, dict[int, np.ndarray | None]]) -> bool:
    """True when the table's values are (J, 2) keypoints, False for embeddings."""
    for video in table.values():
        for value in video.values():
            if value is not None:
                return _is_keypoints(value)
    raise KptoolkitError("the table holds no value at all (every row is None)")


def _is_keypoints(value: np.ndarray) -> bool:
    return value.ndim == 2 and value.shape[-1] == 2


def check_comparable(
    real: dict[str, dict[int, np.ndarray | None]],
    fake: dict[str, dict[int, np.ndarray | None]],
    real_path: str | Path,
    fake_path: str | Path,
) -> None:
    """Raise a one-line KptoolkitError, naming both files, when two imported tables cannot be
    scored together: values of different shapes (joint counts, embedding sizes, or keypoints
    against embeddings), no (file, frame) pair in common, or no value present in both over those
    pairs. A keypoint counts as missing where its x is -1 (the scripts' mark), a coordinate is
    NaN or infinite, or its row is None; an embedding where its row is None or NaN."""
    shape, fake_shape = _value_shape(real, real_path), _value_shape(fake, fake_path)
    if shape != fake_shape:
        raise KptoolkitError(
            f"{real_path} has {_describe(shape)} and {fake_path} has {_describe(fake_shape)}: "
            "tables of different detectors cannot be compared"
        )
    fake_videos = {video_key(name): video for name, video in fake.items()}
    pairs = [
        (video[frame], fake_videos[video_key(name)][frame])
        for name, video in real.items()
        if video_key(name) in fake_videos
        for frame in video.keys() & fake_videos[video_key(name)].keys()
    ]
    if not pairs:
        raise KptoolkitError(
            f"{real_path} and {fake_path} share no (file, frame) pair (files pair by name up to "
            "the first dot, frames by number): nothing to score"
        )
    real_present, fake_present = (_present([pair[i] for pair in pairs], shape) for i in (0, 1))
    what, how = (
        ("keypoint", "x = -1, a NaN coordinate or a None row")
        if len(shape) == 2
        else ("embedding", "None or NaN")
    )
    for present, path, other in (
        (real_present, real_path, fake_path),
        (fake_present, fake_path, real_path),
    ):
        if not present.any():
            raise KptoolkitError(
                f"every {what} of {path} is missing ({how}) in the {len(pairs)} frames it "
                f"shares with {other}: nothing to score"
            )
    if not (real_present & fake_present).any():
        raise KptoolkitError(
            f"no {what} is present in both {real_path} and {fake_path} in the {len(pairs)} "
            "frames they share: nothing to score"
        )


def _value_shape(table: dict[str, dict[int, np.ndarray | None]], path: str | Path) -> tuple:
    """The one shape of a table's values: (J, 2) keypoints or (D,) embeddings."""
    shapes = {
        value.shape if _is_keypoints(value) else (value.size,)
        for video in table.values()
        for value in video.values()
        if value is not None
    }
    if not shapes:
        raise KptoolkitError(f"{path} holds no value at all (every row is None)")
    if len(shapes) > 1:
        raise KptoolkitError(
            f"{path} holds values of {len(shapes)} shapes: {', '.join(map(str, sorted(shapes)))}"
        )
    return next(iter(shapes))


def _describe(shape: tuple[int, ...]) -> str:
    return f"{shape[0]} joints per frame" if len(shape) == 2 else f"{shape[0]}-value embeddings"


def _present(values: list[np.ndarray | None], shape: tuple[int, ...]) -> np.ndarray:
    """(N, J) True where a keypoint was detected, or (N, 1) where an embedding was."""
    if len(shape) == 2:
        import torch

        from kptoolkit.metrics.keypoint_metrics import present

        return present(torch.from_numpy(stack_keypoints(values, shape))).numpy()
    return np.isfinite(stack_embeddings(values, shape)).all(axis=-1, keepdims=True)
