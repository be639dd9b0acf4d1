"""Reading checkpoint files safely and loading their models strictly, with readable errors.

Two layouts are understood:
- official FOMM / keypoint-mask files: top-level `kp_detector`, `generator`, `discriminator`
  (plus optimizer entries and `epoch`);
- kptoolkit files: `{"format": "kptoolkit", "models": {"detector": ..., "generator": ...}, ...}`.
"""

from __future__ import annotations

import os
import pickle
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kptoolkit.errors import KptoolkitError
from kptoolkit.nn.component import Component, hook
from kptoolkit.utils.atomic import atomic_path

KPTOOLKIT_FORMAT = "kptoolkit"
OFFICIAL_KEYS = {
    "detector": "kp_detector",
    "generator": "generator",
    "discriminator": "discriminator",
}


class CheckpointError(KptoolkitError):
    """A checkpoint file is missing, unreadable, or does not fit the model."""


def atomic_save(payload: dict[str, Any], path: Path) -> None:
    """torch.save to a temporary file, fsync it, then rename it over `path` (durably)."""
    with atomic_path(path, durable=True) as partial:
        try:
            torch.save(payload, partial)
        except RuntimeError as exc:  # torch reports a failed write without the OS's reason
            raise CheckpointError(
                f"cannot write checkpoint {path}: {_write_failure(partial, exc)}; the "
                "previous checkpoints are kept"
            ) from exc


def _write_failure(partial: Path, exc: RuntimeError) -> str:
    """Why writing `partial` failed, as the OS says it (one more byte written to the file
    reproduces a full disk or a file-size limit); torch's message otherwise."""
    try:
        with open(partial, "ab") as handle:
            handle.write(b"\0")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as probe:
        return probe.strerror or str(probe)
    return str(exc).splitlines()[0]


# how torch files begin: a zip archive (torch.save since 1.6) or a pickle (older files)
TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80")


def _check_torch_file(path: Path) -> None:
    try:
        with open(path, "rb") as handle:
            start = handle.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not start:
        raise CheckpointError(f"{path} is empty, not a checkpoint")
    if not start.startswith(TORCH_FILE_STARTS):
        raise CheckpointError(f"{path} is not a checkpoint (not a file written by torch.save)")


# how reading a damaged torch file fails: the zip container, the pickle or its strings (a
# checkpoint that decodes but holds objects other than tensors fails as UnpicklingError too)
DECODING_ERRORS = (
    pickle.UnpicklingError,
    UnicodeDecodeError,
    struct.error,
    zipfile.BadZipFile,
    EOFError,
    RuntimeError,
    OSError,
)
# errors that a damaged pickle raises too, but that are also the faults of a program: read as
# damage only when the archive's checksums show it
DAMAGE_ERRORS = (LookupError, TypeError, AttributeError, ValueError)


def _damaged_records(path: Path) -> list[str]:
    """The records of a zip checkpoint whose contents fail their CRC (or the archive itself,
    when it cannot be opened as a zip); [] for a sound archive or an older pickle file."""
    if not zipfile.is_zipfile(path):
        return []
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as exc:
        return [f"the archive ({exc})"]
    return [] if bad is None else [bad.split("/", 1)[-1]]


# what torch's weights-only unpickler says in its long message, and the longest reason kept
WEIGHTS_ONLY_REASON = "WeightsUnpickler error:"
LONGEST_REASON = 200


def _unreadable(path: Path, exc: BaseException, damaged: list[str]) -> str:
    """One line for a checkpoint torch could not load: damaged (its checksums say so), holding
    objects that a safe load refuses, or else what the decoder said."""
    if damaged:
        return (
            f"cannot read checkpoint {path}: the file is damaged ({damaged[0]} fails its "
            "checksum); copy it again or use another checkpoint"
        )
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and WEIGHTS_ONLY_REASON in text:
        reason = text.split(WEIGHTS_ONLY_REASON, 1)[1].strip().splitlines()[0]
        return (
            f"{path} holds objects other than tensors, dicts and numbers, or is damaged, so it "
            f"cannot be loaded safely (weights_only=True): {reason[:LONGEST_REASON]}"
        )
    reason = " ".join(text.split())[:LONGEST_REASON] or "no detail"
    return (
        f"cannot read checkpoint {path}: it is damaged or not a torch checkpoint "
        f"({type(exc).__name__}: {reason})"
    )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file on the CPU with `weights_only=True` (no arbitrary code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    _check_torch_file(path)
    try:
        with warnings.catch_warnings():  # a damaged file's odd pickle protocol: reported below
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (*DECODING_ERRORS, *DAMAGE_ERRORS) as exc:
        damaged = _damaged_records(path)
        if not isinstance(exc, DECODING_ERRORS) and not damaged:
            raise  # the archive is sound: a fault of the code that reads it, not of the file
        raise CheckpointError(_unreadable(path, exc, damaged)) from exc
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} does not hold a dict of state dicts")
    return checkpoint


def evaluated_states(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """A kptoolkit checkpoint's weights by role as the run is evaluated: the moving average
    of a network's weights (`models_ema`, with `train.ema_decay`) in place of its last step's."""
    return {**checkpoint.get("models", {}), **checkpoint.get("models_ema", {})}


def model_state(
    checkpoint: Mapping[str, Any],
    role: str,
    source: str = "checkpoint",
    module: nn.Module | None = None,
) -> dict:
    """The state dict of `role` ('detector', 'generator', 'discriminator', 'masker', ...); of
    a kptoolkit run, the weights it is evaluated with (`evaluated_states`).

    In an official (non-kptoolkit) file, a `module` whose class declares `official_entries`
    ({state-dict prefix: top-level entry}) is assembled from those entries: a masker that is
    Monkey-Net's detector reads `{"": "kp_detector"}`, a generator made of several official
    networks reads one entry per submodule. Other roles read `OFFICIAL_KEYS`.
    """
    if checkpoint.get("format") == KPTOOLKIT_FORMAT:
        models = evaluated_states(checkpoint)
        if role in models:
            return dict(models[role])
        raise CheckpointError(
            f"{source} has no '{role}' model; it has: {', '.join(sorted(models)) or 'none'}"
        )
    entries = hook(module, "official_entries", Component)
    if entries:
        return _assemble(checkpoint, role, source, entries)
    official = OFFICIAL_KEYS.get(role)
    if official is not None and official in checkpoint:
        return dict(checkpoint[official])
    raise CheckpointError(
        f"{source} has no '{role}' entry (expected '{official or role}' in an official file or "
        f"models.{role} in a kptoolkit file); top-level keys: {', '.join(sorted(checkpoint))}"
    )


def _assemble(
    checkpoint: Mapping[str, Any], role: str, source: str, entries: Mapping[str, str]
) -> dict:
    missing = [entry for entry in entries.values() if entry not in checkpoint]
    if missing:
        raise CheckpointError(
            f"{source} has no {', '.join(repr(m) for m in missing)} entry for the {role} "
            f"(it reads {', '.join(repr(e) for e in entries.values())}); top-level keys: "
            f"{', '.join(sorted(checkpoint))}"
        )
    state: dict[str, Any] = {}
    for prefix, entry in entries.items():
        state.update({prefix + key: value for key, value in checkpoint[entry].items()})
    return state


def describe_mismatch(module: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Missing keys, unexpected keys and shape mismatches between a module and a state dict."""
    own = module.state_dict()
    problems = []
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            shown = ", ".join(items[:4]) + (f" (+{len(items) - 4} more)" if len(items) > 4 else "")
            problems.append(f"{len(items)} {label}: {shown}")
    return problems


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load `state` into `module` strictly; on mismatch say what differs and how to fix it.

    A module may define `adapt_state_dict(state) -> state` to accept a published layout (e.g.
    drop entries of layers its forward pass never uses) before the strict comparison.
    """
    state = hook(module, "adapt_state_dict", Component)(state)
    problems = describe_mismatch(module, state)
    if problems:
        raise CheckpointError(
            f"{what} does not match the model ({'; '.join(problems)}). Build the model with the "
            "parameters the checkpoint was trained with (num_kp, block_expansion, max_features, "
            "num_blocks, ...)."
        )
    module.load_state_dict(state, strict=True)
