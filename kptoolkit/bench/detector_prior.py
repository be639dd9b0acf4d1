"""The keypoint prior of the bench's keypoint maskers: a FOMM detector trained once per dataset.

The paper's maskers read a frozen, pretrained FOMM detector. Without `--kp-checkpoint` the bench
trains one: the FOMM baseline's config at the bench's widths, for `budget` times the rows'
training budget, with the `PriorRecipe` changes below, cached under `<cache>/detector-priors/`
by everything that determines it (the dataset, the config, the budget), so every bench on that
dataset reuses it. Its diagnostics (`kptoolkit.keypoints.diagnostics`: keypoint spread and
linear-probe R^2 against the synthetic ground truth) go into every results table.

The loss balance: FOMM's equivariance terms pull every keypoint towards the centre of its random
warps, where they move least. In FOMM's own training the perceptual loss (about 80-120)
outweighs them (about 0.5) some 200 to 1; against the CPU profile's L1 pyramid (about 0.05) at
weight 1 they win 8 to 1 and the ten keypoints collapse onto the figure's middle within a few
hundred steps (spread 0.3-0.5 px on 64 px puppets). The CPU profile (`synthetic-64`) therefore
weighs the equivariance term 1e-3, for the FOMM row and the prior alike; `equivariance_scale`
can scale it further for the prior alone.

Why a recipe of its own: the prior adds the same reconstruction loss on FOMM's warped source
(`deformed`, the flow alone), which trains the motion directly rather than through a decoder
that is still blurry, and keeps the optimiser it was validated with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

from kptoolkit.atomic import atomic_write_text
from kptoolkit.components import expand_presets
from kptoolkit.config import ExperimentConfig, LossConfig, structure, unstructure
from kptoolkit.data.puppet_style import figure_height
from kptoolkit.engine.checkpoints import list_checkpoints
from kptoolkit.engine.distributed import DistContext
from kptoolkit.engine.trainer import Trainer
from kptoolkit.keypoints.diagnostics import centroid_probe_r2, diagnose_detector
from kptoolkit.keypoints.loading import load_detector
from kptoolkit.paths import cache_dir, exclusive

PRIOR_NAME = "detector-prior"
DIAGNOSTICS_NAME = "diagnostics.json"
DONE_NAME = "done.json"


@attrs.frozen
class PriorRecipe:
    """How the detector prior's training departs from the FOMM baseline's."""

    # multiplies the equivariance terms' weights (the profile's weight already keeps FOMM's
    # balance; before that moved into the profile, this was 1e-3 on a weight of 1)
    equivariance_scale: float = 1.0
    warp_weight: float = 1.0  # the reconstruction losses again on `deformed`, times this
    # the optimiser the recipe was validated with (FOMM's learning rate, float32), whatever
    # the rows use; None keeps the rows' setting
    lr: float | None = 2e-4
    amp: bool | None = False


PRIOR_RECIPE = PriorRecipe()
WARPED_OUTPUT = "deformed"


def prior_config(
    fomm_config: ExperimentConfig, budget: float, recipe: PriorRecipe = PRIOR_RECIPE
) -> ExperimentConfig:
    """The FOMM row's config with `budget` times its training (more steps with `train.steps`,
    else more repeats per epoch, so the learning-rate milestones keep their place) and the
    recipe's changes to its losses and optimiser."""
    config = expand_presets(structure(ExperimentConfig, unstructure(fomm_config)))
    config.name = PRIOR_NAME
    train = config.train
    if train.steps is not None:
        train.steps = max(1, round(train.steps * budget))
    else:
        train.repeats = max(1, round(train.repeats * budget))
    _apply_recipe(config, recipe)
    return config


def _apply_recipe(config: ExperimentConfig, recipe: PriorRecipe) -> None:
    if recipe.lr is not None:
        config.train.lr = recipe.lr
    if recipe.amp is not None:
        config.train.amp = recipe.amp
    for terms in (config.losses, config.generator.losses or [], config.masker.losses or []):
        for term in terms:
            if term.name == "equivariance":
                term.weight *= recipe.equivariance_scale
    if recipe.warp_weight:
        on_prediction = [t for t in config.losses if "prediction" in t.outputs]
        if not on_prediction:
            raise ValueError("the detector prior's config has no loss on `prediction` to reuse")
        config.losses.extend(
            LossConfig(
                name=term.name,
                weight=term.weight * recipe.warp_weight,
                outputs=[WARPED_OUTPUT],
                params=dict(term.params),
            )
            for term in on_prediction
        )


# settings that change how a run is logged, saved or scored, not the detector it trains
UNTRAINED_KEYS = ("name", "eval", "metrics")
UNTRAINED_TRAIN_KEYS = ("checkpoint_every", "keep_last", "sample_every", "log_every")


def prior_folder(config: ExperimentConfig) -> Path:
    """The cache folder of a prior: named by the dataset and a digest of everything in the
    config that changes the trained detector."""
    data = unstructure(config)
    for key in UNTRAINED_KEYS:
        data.pop(key, None)
    for key in UNTRAINED_TRAIN_KEYS:
        data["train"].pop(key, None)
    if data["keypoints"].get("checkpoint_sha256") is None:  # added later: keep the digests
        data["keypoints"].pop("checkpoint_sha256", None)
    text = json.dumps(data, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    dataset = Path(config.data.root).name if config.data.root else config.data.dataset
    return cache_dir() / "detector-priors" / f"{dataset}-{digest}"


def trained_prior(folder: Path) -> Path | None:
    """The final checkpoint a finished prior recorded in `folder` (None: not finished)."""
    done = folder / DONE_NAME
    if not done.is_file():
        return None
    checkpoint = folder / json.loads(done.read_text())["checkpoint"]
    return checkpoint if checkpoint.is_file() else None


def prior_is_trained(config: ExperimentConfig) -> bool:
    """Whether the prior of `config` is in the cache, finished."""
    return trained_prior(prior_folder(config)) is not None


def ensure_prior(
    config: ExperimentConfig,
    device: torch.device,
    say: Callable[[str], None],
    progress: bool = True,
) -> Path:
    """The final checkpoint of the prior's run, training (or resuming) it only when needed."""
    folder = prior_folder(config)
    done = folder / DONE_NAME
    with exclusive(folder.with_name(folder.name + ".lock")):
        checkpoint = trained_prior(folder)
        if checkpoint is not None:
            say(f"detector prior: cached ({checkpoint})")
            return checkpoint
        existing = list_checkpoints(folder / "checkpoints")
        start = f"resuming at step {existing[-1][0]}" if existing else "from scratch"
        say(f"detector prior: training the FOMM detector once for this dataset, {start}")
        trainer = Trainer(
            config,
            folder,
            resume=bool(existing),
            context=DistContext(device=device),
            progress=progress,
        )
        result = trainer.train()
        if result.checkpoint is None:
            raise RuntimeError(f"the detector prior saved no checkpoint in {folder}")
        record = {"checkpoint": str(result.checkpoint.relative_to(folder)), "steps": result.steps}
        atomic_write_text(done, json.dumps(record) + "\n")
        say(f"detector prior: {result.steps} steps in {result.seconds / 60:.1f} min")
        return result.checkpoint


def prior_diagnostics(
    checkpoint: Path, synthetic_root: Path | None, device: torch.device
) -> dict[str, Any]:
    """Training steps, keypoint spread (px) and probe R^2 of a detector checkpoint on the
    synthetic dataset at `synthetic_root` (fitted on its train split, scored on its test
    split); only the steps without one (None: data without ground truth).

    Cached next to the checkpoint, keyed by the dataset.
    """
    from kptoolkit.evaluators.synthetic import load_split

    steps = _checkpoint_steps(checkpoint)
    found: dict[str, Any] = {"checkpoint": str(checkpoint), "steps": steps}
    if synthetic_root is None:
        return found
    cache = checkpoint.with_name(f"{checkpoint.name}.{DIAGNOSTICS_NAME}")
    key = str(Path(synthetic_root).resolve())
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("dataset") == key:
            return {**found, **stored["diagnostics"]}
    detector = load_detector(checkpoint).to(device)
    train, test = load_split(synthetic_root, "train"), load_split(synthetic_root, "test")
    every = max(1, len(train["frames"]) // 2000)  # at most about 2,000 frames to fit on
    fit = tuple(train[k][::every] for k in ("frames", "joints", "visible"))
    held_out = tuple(test[k] for k in ("frames", "joints", "visible"))
    diagnostics = diagnose_detector(detector, fit, held_out).to_json()
    diagnostics["figure_height_px"] = figure_height(test["joints"])
    diagnostics["centroid_probe_r2"] = centroid_probe_r2(
        *(joints[visible.all(axis=1)] for _, joints, visible in (fit, held_out))
    )
    atomic_write_text(cache, json.dumps({"dataset": key, "diagnostics": diagnostics}) + "\n")
    return {**found, **diagnostics}


def _checkpoint_steps(checkpoint: Path) -> int | None:
    """The step a kptoolkit checkpoint was written at (None for an official FOMM file)."""
    from kptoolkit.checkpoint_io import read_checkpoint

    payload = read_checkpoint(checkpoint)
    step = payload.get("step") if isinstance(payload, dict) else None
    return int(step) if step is not None else None
