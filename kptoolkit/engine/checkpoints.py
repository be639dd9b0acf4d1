"""kptoolkit checkpoints: atomic writes, keep-last-k, and loading a run back for inference.

Layout: `{"format": "kptoolkit", "version": 1, "config": {...}, "models": {role: state_dict},
"optimizers": {...}, "schedulers": {...}, "step": int, "epoch": int, "rng": {...}}`, plus
`"models_ema": {role: state_dict}` for a run trained with `train.ema_decay`. Only
tensors, dicts, lists, numbers and strings, so `torch.load(weights_only=True)` reads it.
A file is written to a temporary name, flushed to disk, then renamed over the final name, so a
run killed at any moment (SIGKILL included) leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kptoolkit.config.schema import (
    LOADING_KEYS,
    ExperimentConfig,
    config_differences,
    config_from_dict,
    load_config,
    save_config,
    unstructure,
)
from kptoolkit.errors import ConfigError, KptoolkitError
from kptoolkit.experiment.components import PRESET_KEYS
from kptoolkit.experiment.resolve import RECORDED_SHAPE
from kptoolkit.utils.checkpoint_io import (
    KPTOOLKIT_FORMAT,
    CheckpointError,
    atomic_save,
    evaluated_states,
    read_checkpoint,
)

CHECKPOINT_VERSION = 1
NAME_PATTERN = re.compile(r"^step-(\d{8})\.pth$")


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint after `step` optimisation steps."""
    return f"step-{step:08d}.pth"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of the run's checkpoints, oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = NAME_PATTERN.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest readable checkpoint (a damaged newest one is skipped, never trusted)."""
    for _, path in reversed(list_checkpoints(directory)):
        try:
            read_checkpoint(path)
        except CheckpointError:
            continue
        return path
    return None


def prune_checkpoints(directory: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints."""
    for _, path in list_checkpoints(directory)[:-keep_last]:
        path.unlink(missing_ok=True)


def rng_state(augment_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state a resumed run needs, as tensors and plain lists."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    python_version, python_state, python_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": python_version, "state": list(python_state), "gauss": python_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if augment_generator is not None:
        state["augment"] = augment_generator.get_state()
    return state


def restore_rng_state(state: dict[str, Any], augment_generator: torch.Generator | None) -> None:
    """Put back what `rng_state` saved."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached"],
        )
    )
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if augment_generator is not None and "augment" in state:
        augment_generator.set_state(state["augment"])


def config_of(checkpoint: dict[str, Any], source: str) -> ExperimentConfig:
    """The experiment config stored in a kptoolkit checkpoint."""
    if checkpoint.get("format") != KPTOOLKIT_FORMAT or "config" not in checkpoint:
        raise CheckpointError(
            f"{source} is not a kptoolkit run checkpoint (no stored config); official FOMM files "
            "are loaded with --kp-checkpoint"
        )
    return config_from_dict(checkpoint["config"])  # a layout before presets is converted


def as_stored_in(config: ExperimentConfig, run_dir: Path) -> ExperimentConfig:
    """`config` as a run folder stores it: the detector file's path relative to the folder, so
    that a folder moved together with its detector still names it (`load_config` reads such a
    path relative to the config file's folder)."""
    checkpoint = config.keypoints.checkpoint
    if not checkpoint:
        return config
    try:
        relative = os.path.relpath(Path(checkpoint).resolve(), Path(run_dir).resolve())
    except ValueError:  # another drive: only an absolute path names it
        return config
    stored = config_from_dict(unstructure(config))
    stored.keypoints.checkpoint = relative
    return stored


def run_payload(config: ExperimentConfig, models: Any, step: int, epoch: int) -> dict[str, Any]:
    """What every kptoolkit run checkpoint holds: the format, the config and the weights of
    every network (`Models`), after `step` steps and `epoch` epochs."""
    return {
        "format": KPTOOLKIT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": unstructure(config),
        "models": models.state_dicts(),
        "step": step,
        "epoch": epoch,
    }


def save_run(
    run_dir: str | Path, config: ExperimentConfig, models: Any, step: int = 0, epoch: int = 0
) -> Path:
    """Write `models` (built from `config`) as a kptoolkit run that `load_run`, `reconstruct`
    and `animate` read: `<run_dir>/config.yaml` and `<run_dir>/checkpoints/step-*.pth`, both
    atomically; returns the checkpoint's path."""
    run_dir = Path(run_dir)
    path = run_dir / "checkpoints" / checkpoint_name(step)
    stored = as_stored_in(config, run_dir)
    atomic_save(run_payload(stored, models, step, epoch), path)
    save_config(stored, run_dir / "config.yaml")
    return path


def load_run(path: str | Path) -> tuple[ExperimentConfig, Any]:
    """(config, Models) of a kptoolkit run checkpoint, with every network's weights loaded (the
    moving average of a run trained with `train.ema_decay`: what it is evaluated with).

    The checkpoint is self-contained: the keypoint detector's weights are stored in it.
    """
    from kptoolkit.experiment.build import build_models
    from kptoolkit.experiment.plan import plan_experiment

    path = Path(path)
    checkpoint = read_checkpoint(path)
    config = config_of(checkpoint, str(path))
    has_detector = "detector" in checkpoint.get("models", {})
    models = build_models(plan_experiment(config, str(path) if has_detector else None))
    models.load_state_dicts(evaluated_states(checkpoint), str(path))
    return config, models


def is_run_folder(folder: Path) -> bool:
    """Whether `folder` holds a kptoolkit run written before run folders were locked: a
    config.yaml that reads as an experiment, and a loss log (if any) of kptoolkit's layout."""
    try:
        load_config(folder / "config.yaml")
    except (KptoolkitError, OSError):
        return False
    log = folder / "losses.csv"
    return not log.is_file() or log.read_text(errors="replace").startswith("step")


# what a resume may change: the schedule's length, how batches are loaded and how the run is
# logged, saved and scored (the detector's file is read only at a fresh start; the checkpoint
# holds its weights)
RESUMABLE_KEYS = (
    "name",
    *LOADING_KEYS,
    "train.steps",
    "train.epochs",
    "train.checkpoint_every",
    "train.keep_last",
    "train.sample_every",
    "train.log_every",
    "keypoints.checkpoint",
    "eval",
    "metrics",
    *PRESET_KEYS,
)


def stored_differences(run_dir: Path, config: ExperimentConfig, ignore: Sequence[str]) -> str:
    """How `config` differs from the config a run folder stored ('' when it stores none or
    the same), outside `ignore`: a changed component first (the values under it differ because
    it did), at most four keys and how many more."""
    stored = run_dir / "config.yaml"
    if not stored.is_file():
        return ""
    differences = config_differences(_recorded(load_config(stored), config), config, ignore=ignore)
    differences.sort(key=lambda text: not text.split(":")[0].endswith(".name"))
    more = f" (and {len(differences) - 4} more)" if len(differences) > 4 else ""
    return "; ".join(differences[:4]) + more


def _recorded(stored: ExperimentConfig, config: ExperimentConfig) -> ExperimentConfig:
    """A stored config from before runs recorded their detector file (its sha256 and shape)
    takes `config`'s record: what it did not record cannot differ."""
    if stored.keypoints.checkpoint and stored.keypoints.checkpoint_sha256 is None:
        for key in ("checkpoint_sha256", *RECORDED_SHAPE):
            setattr(stored.keypoints, key, getattr(config.keypoints, key))
    return stored


def check_resumable(run_dir: Path, config: ExperimentConfig) -> None:
    """Refuse to resume with settings that the run was not trained with (before anything is
    written): only the length of the schedule and how it is logged, saved and scored may
    change, and those are applied and recorded."""
    differences = stored_differences(run_dir, config, RESUMABLE_KEYS)
    if differences:
        raise ConfigError(
            f"{run_dir} was trained with other settings: {differences}. Resume with the "
            "run's settings (only train.steps / train.epochs and the logging, checkpoint and "
            "eval settings may change), or start a new run with another --out (nothing was "
            f"changed){numerics_hint(differences)}"
        )


def numerics_hint(differences: str) -> str:
    """A sentence for a refusal whose `differences` include the training precision or layout:
    `auto` resolves by the machine, so a run started on another machine may differ in them."""
    if "train.precision" not in differences and "train.channels_last" not in differences:
        return ""
    return (
        ". The precision and layout differ: `auto` picks them for the machine, and this run "
        "was trained on another kind. To continue it as it was, give its values explicitly "
        "(--set train.precision=... train.channels_last=..., as its config.yaml records)"
    )
