"""What each bench stage finished, recorded in `bench-state.json` next to its outputs, and the
one way every stage reuses a record or recomputes and records its result.

A folder's state maps a stage's name to its record: what the stage produced and what it was
computed from (a checkpoint's `file_key`, a scoring key). A stage reuses its record when the
record is still fresh (same key, outputs still on disk); otherwise it recomputes, drops the
records its recomputation makes stale, and records the new result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import attrs

from kptoolkit.bench.report.formats import write_text

STATE_NAME = "bench-state.json"


def file_key(path: Path) -> dict[str, Any]:
    """Identifies one version of a file cheaply: name, size and modification time."""
    stat = path.stat()
    return {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def read_state(folder: Path) -> dict[str, Any]:
    """The stages a folder has finished (empty when none)."""
    path = folder / STATE_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}  # a damaged record only costs a recomputation


def write_state(folder: Path, state: dict[str, Any]) -> None:
    """Record finished stages (atomically)."""
    write_text(folder / STATE_NAME, json.dumps(state, indent=2) + "\n")


def reuse_or_compute(
    record: Any, fresh: Callable[[Any], bool], compute: Callable[[], Any]
) -> tuple[Any, bool]:
    """(`record`, True) when there is one and `fresh(record)` holds, else (`compute()`, False)."""
    if record and fresh(record):
        return record, True
    return compute(), False


@attrs.frozen
class StageResult:
    """A stage's record, whether it was reused, and its folder's state as now recorded."""

    record: Any
    cached: bool
    state: dict[str, Any]


def cached_stage(
    folder: Path,
    name: str,
    fresh: Callable[[Any], bool],
    compute: Callable[[dict[str, Any]], Any],
    *,
    stale: Collection[str] = (),
    keep: Collection[str] | None = None,
) -> StageResult:
    """Stage `name`'s record in `folder` when `fresh(record)` holds, else `compute(state)`'s,
    recorded.

    `compute` reads the folder's state and may add records of its own to it. Recording drops
    the records in `stale` and, when `keep` is given, every record not in `keep` (a stage that
    every later one depends on).
    """
    state = read_state(folder)
    record, cached = reuse_or_compute(state.get(name), fresh, lambda: compute(state))
    if cached:
        return StageResult(record, True, state)
    if keep is not None:
        state = {entry: value for entry, value in state.items() if entry in keep}
    for entry in stale:
        state.pop(entry, None)
    state[name] = record
    write_state(folder, state)
    return StageResult(record, False, state)
