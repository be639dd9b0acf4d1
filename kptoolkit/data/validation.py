"""A validation dataset carved from a training split, for choosing budgets and recipes.

Choices made by looking at test numbers are tuned on the test split. `carve_validation` makes a
new FOMM-layout folder whose `train/` holds most identities of the source's training split and
whose `test/` holds the others (whole identities, so no puppet or person is in both): any
kptoolkit command can then run on it (`kptoolkit bench --dataset OUT`) without a single test
video of the source being read. Videos are linked, not copied; a synthetic source's ground truth
is copied and its manifest rewritten, so the synthetic evaluators work on the carved folder too.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from kptoolkit.data.layout import VideoEntry, discover_videos
from kptoolkit.data.puppets.writer import MANIFEST_NAME, read_manifest
from kptoolkit.errors import KptoolkitError

CARVED_MARKER = ".kptoolkit-validation"


class CarveError(KptoolkitError, ValueError):
    """The source cannot be carved (too few identities) or the output folder is not ours."""


def _held_out(entries: list[VideoEntry], fraction: float) -> set[str]:
    """The last identities (sorted by name) whose videos come closest to `fraction` of all; at
    least one, never all."""
    identities = sorted({e.identity for e in entries})
    if len(identities) < 2:
        raise CarveError(
            f"the training split has {len(identities)} identity; carving a validation split "
            "needs at least two (identities never straddle the two splits)"
        )
    counts = [sum(e.identity == i for e in entries) for i in reversed(identities)]
    cumulative = np.cumsum(counts)[: len(identities) - 1]
    keep = int(np.argmin(np.abs(cumulative - fraction * len(entries)))) + 1
    return set(identities[-keep:])


def _prepare(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / CARVED_MARKER).is_file():
            raise CarveError(f"'{out}' is not empty and was not carved by kptoolkit; refusing it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / CARVED_MARKER).write_text("kptoolkit validation split\n")


def carve_validation(root: str | Path, out: str | Path, fraction: float = 0.2) -> dict:
    """Write `out`: `root`'s training identities split into train and validation (`test/`).

    Returns a summary: the source, the fraction and each split's video names.
    """
    if not 0 < fraction < 1:
        raise CarveError(f"fraction must be between 0 and 1, got {fraction}")
    root, out = Path(root).resolve(), Path(out)
    entries = discover_videos(root, "train")
    held = _held_out(entries, fraction)
    _prepare(out)
    splits: dict[str, list[str]] = {"train": [], "test": []}
    identities: dict[str, set[str]] = {"train": set(), "test": set()}
    for entry in entries:
        split = "test" if entry.identity in held else "train"
        (out / split).mkdir(exist_ok=True)
        os.symlink(entry.path, out / split / entry.path.name)
        splits[split].append(entry.name)
        identities[split].add(entry.identity)
    manifest = read_manifest(root)
    if manifest is not None:
        for split, names in splits.items():
            truth = out / "groundtruth" / split
            truth.mkdir(parents=True, exist_ok=True)
            for name in names:
                shutil.copy2(root / "groundtruth" / "train" / f"{name}.npz", truth / f"{name}.npz")
        carved = dict(manifest)
        carved["videos"] = splits
        carved["counts"] = {split: len(names) for split, names in splits.items()}
        carved["identities"] = {split: sorted(found) for split, found in identities.items()}
        carved["carved_from"] = {"root": str(root), "split": "train", "fraction": fraction}
        carved.pop("motion", None)  # measured on the source's splits, not these
        (out / MANIFEST_NAME).write_text(json.dumps(carved, indent=2) + "\n")
    return {"source": str(root), "fraction": fraction, "videos": splits}
