"""A run's loss log: one CSV row per logged step (and TensorBoard scalars when installed)."""

from __future__ import annotations

import csv
from pathlib import Path

from kptoolkit.utils.atomic import atomic_path

# columns that count: integers in the file, whatever rewrote it
COUNTERS = ("step", "epoch")


def _numbers(row: dict[str, str]) -> dict[str, float]:
    return {
        key: int(float(value)) if key in COUNTERS else float(value)
        for key, value in row.items()
        if value != ""
    }


class RunLog:
    """Appends rows to `losses.csv`; new loss names add columns (the file is rewritten then)."""

    def __init__(self, directory: Path, tensorboard: bool = True) -> None:
        self.path = directory / "losses.csv"
        self.columns: list[str] = []
        self.rows: list[dict[str, float]] = []
        if self.path.is_file():
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                self.columns = list(reader.fieldnames or [])
                self.rows = [_numbers(row) for row in reader]
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(directory / "tensorboard"))
            except ImportError:  # the `tensorboard` extra is not installed
                self.writer = None

    def truncate(self, step: int) -> None:
        """Drop rows after `step` (a resumed run rewrites what it repeats)."""
        kept = [row for row in self.rows if row.get("step", 0) <= step]
        if len(kept) != len(self.rows):
            self.rows = kept
            self._rewrite()

    def log(self, values: dict[str, float]) -> None:
        """Append one row (with at least `step`)."""
        self.rows.append(values)
        new = [k for k in values if k not in self.columns]
        if new or not self.path.is_file():
            self.columns += new
            self._rewrite()
        else:
            with self.path.open("a", newline="") as handle:
                csv.DictWriter(handle, self.columns).writerow(values)
        if self.writer is not None:
            step = int(values["step"])
            for key, value in values.items():
                if key != "step":
                    self.writer.add_scalar(key, value, step)

    def _rewrite(self) -> None:
        with atomic_path(self.path) as partial, partial.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def close(self) -> None:
        """Flush TensorBoard."""
        if self.writer is not None:
            self.writer.close()
