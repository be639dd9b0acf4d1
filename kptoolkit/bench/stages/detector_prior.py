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

Two stages (`prior_stages`): that recipe spreads the keypoints over the body but leaves them
noisy (probe R^2 about 0.2 however long it trains). Where the profile asks for it
(`Profile.detector_refine_budget`, the quick profile), a second stage then trains the FOMM
row's own config (fresh generator, the row's optimiser and losses, no learning-rate drop) with
its detector initialised from the first stage's; the detector then tracks the pose
(docs/benchmark-design.md,
"How the default was chosen"). Each stage is cached in its own
folder, the second inside the first's, named by a digest that includes the first's
checkpoint sha256, so a retrained first stage never mixes with an old second.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from kptoolkit.config.schema import (
    RECORD_KEYS,
    ExperimentConfig,
    LossConfig,
    structure,
    unstructure,
)
from kptoolkit.data.puppets.style import figure_height
from kptoolkit.engine.checkpoints import list_checkpoints
from kptoolkit.engine.distributed import DistContext
from kptoolkit.engine.trainer import Trainer
from kptoolkit.experiment.components import expand_presets
from kptoolkit.experiment.resolve import record_detector_file
from kptoolkit.keypoints.diagnostics import centroid_probe_r2, diagnose_detector
from kptoolkit.keypoints.loading import load_detector
from kptoolkit.utils.atomic import atomic_write_text
from kptoolkit.utils.locks import exclusive
from kptoolkit.utils.paths import cache_dir

PRIOR_NAME = "detector-prior"
REFINE_NAME = "detector-prior-refine"
REFINE_FOLDER = "refine"
DIAGNOSTICS_NAME = "diagnostics.json"
DONE_NAME = "done.json"


@attrs.frozen
class PriorRecipe:
    """How the detector prior's training departs from the FOMM baseline's."""

    # multiplies the equivariance terms' weights (the profile's weight already keeps FOMM's
    # balance; before that moved into the profile, this was 1e-3 on a weight of 1)
    equivariance_scale: float = 1.0
    warp_weight: float = 1.0  # the reconstruction losses again on `deformed`, times this
    # the optimiser the recipe was validated with (FOMM's learning rate), whatever the rows
    # use; None keeps the rows' setting (for the precision: the one the bench resolved). The
    # precision was float32 until the first stage in bfloat16 was measured as good on
    # validation at half the time (docs/benchmark-design.md, "The quick bench's wall time")
    lr: float | None = 2e-4
    precision: str | None = None
    # the second stage's learning-rate drops (epochs): none, it trains at the rows' rate
    # throughout, as validated
    refine_milestones: tuple[int, ...] = ()


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
    _scale_budget(config, budget)
    _apply_recipe(config, recipe)
    return config


def refine_config(
    fomm_config: ExperimentConfig, budget: float, recipe: PriorRecipe = PRIOR_RECIPE
) -> ExperimentConfig:
    """The prior's second stage: the FOMM row's config for `budget` times its training, with
    the recipe's learning-rate drops; its detector is initialised from the first stage's
    (`ensure_prior` names the file)."""
    config = expand_presets(structure(ExperimentConfig, unstructure(fomm_config)))
    config.name = REFINE_NAME
    _scale_budget(config, budget)
    config.train.milestones = list(recipe.refine_milestones)
    return config


def prior_stages(
    fomm_config: ExperimentConfig,
    budget: float,
    refine_budget: float = 0.0,
    recipe: PriorRecipe = PRIOR_RECIPE,
) -> list[ExperimentConfig]:
    """The configs the prior trains one after the other: the recipe's stage for `budget` times
    a row's training, then (when `refine_budget` is not 0) the FOMM row's own config from its
    detector for `refine_budget` times a row's training."""
    stages = [prior_config(fomm_config, budget, recipe)]
    if refine_budget:
        stages.append(refine_config(fomm_config, refine_budget, recipe))
    return stages


def _scale_budget(config: ExperimentConfig, budget: float) -> None:
    train = config.train
    if train.steps is not None:
        train.steps = max(1, round(train.steps * budget))
    else:
        train.repeats = max(1, round(train.repeats * budget))


def scale_equivariance(config: ExperimentConfig, scale: float) -> None:
    """Multiply the weight of every equivariance term of `config` (wherever it is configured)
    by `scale`."""
    for terms in (config.losses, config.generator.losses or [], config.masker.losses or []):
        for term in terms:
            if term.name == "equivariance":
                term.weight *= scale


def _apply_recipe(config: ExperimentConfig, recipe: PriorRecipe) -> None:
    if recipe.lr is not None:
        config.train.lr = recipe.lr
    if recipe.precision is not None:
        config.train.precision = recipe.precision
        config.runtime = None  # the recipe, not the bench's `auto`, chose it: the run records
    scale_equivariance(config, recipe.equivariance_scale)
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


# settings that change how a run is logged, saved or scored, not the detector it trains, and
# the record of where it ran
UNTRAINED_KEYS = ("name", "eval", "metrics", *RECORD_KEYS)
UNTRAINED_TRAIN_KEYS = ("checkpoint_every", "keep_last", "sample_every", "log_every")


def prior_folder(config: ExperimentConfig, parent: Path | None = None) -> Path:
    """The cache folder of a prior's stage: named by the dataset (inside `parent`, the stage
    before's folder, for a later stage) and a digest of everything in the config that changes
    the trained detector."""
    data = unstructure(config)
    for key in UNTRAINED_KEYS:
        data.pop(key, None)
    for key in UNTRAINED_TRAIN_KEYS:
        data["train"].pop(key, None)
    for key, unset in (("threads", None), ("ema_decay", 0.0)):  # added later: keep the digests
        if data["train"].get(key) == unset:
            data["train"].pop(key, None)
    if data["keypoints"].get("checkpoint_sha256") is None:  # added later: keep the digests
        data["keypoints"].pop("checkpoint_sha256", None)
    if parent is not None:  # the stage before's file: its sha256 names it, wherever the cache
        data["keypoints"].pop("checkpoint", None)
    _precision_as_before(data["train"])
    text = json.dumps(data, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    if parent is not None:
        return parent / f"{REFINE_FOLDER}-{digest}"
    dataset = Path(config.data.root).name if config.data.root else config.data.dataset
    return cache_dir() / "detector-priors" / f"{dataset}-{digest}"


def _precision_as_before(train: dict[str, Any]) -> None:
    """Name fp32 and bf16 as `train.amp` false / true did before `train.precision`, so that
    priors cached then keep their folders (fp16, which `amp` never named on a CPU, keeps its
    own key: a digest of its own)."""
    precision = train.get("precision")
    if precision in ("fp32", "bf16"):
        del train["precision"]
        train["amp"] = precision == "bf16"


def _finished(folder: Path) -> dict[str, Any] | None:
    """What a finished prior stage recorded in `folder` (`done.json`), its checkpoint there;
    None when the stage is not finished."""
    done = folder / DONE_NAME
    if not done.is_file():
        return None
    record = json.loads(done.read_text())
    return record if (folder / record["checkpoint"]).is_file() else None


def trained_prior(folder: Path) -> Path | None:
    """The final checkpoint a finished prior stage recorded in `folder` (None: not finished)."""
    record = _finished(folder)
    return None if record is None else folder / record["checkpoint"]


Stages = ExperimentConfig | Sequence[ExperimentConfig]


def _as_list(stages: Stages) -> list[ExperimentConfig]:
    return [stages] if isinstance(stages, ExperimentConfig) else list(stages)


def _stage(
    config: ExperimentConfig, before: tuple[Path, Path] | None
) -> tuple[ExperimentConfig, Path]:
    """A stage's config, started from the stage before's (folder, final checkpoint) when there
    is one, and its cache folder."""
    if before is None:
        return config, prior_folder(config)
    folder, checkpoint = before
    config = structure(ExperimentConfig, unstructure(config))
    record_detector_file(config, str(checkpoint))
    return config, prior_folder(config, folder)


def prior_is_trained(stages: Stages) -> bool:
    """Whether every stage of the prior is in the cache, finished."""
    before = None
    for config in _as_list(stages):
        config, folder = _stage(config, before)
        checkpoint = trained_prior(folder)
        if checkpoint is None:
            return False
        before = (folder, checkpoint)
    return True


def ensure_prior(
    stages: Stages,
    device: torch.device,
    say: Callable[[str], None],
    progress: bool = True,
) -> Path:
    """The final checkpoint of the prior's last stage, training (or resuming) each stage only
    when needed."""
    stages = _as_list(stages)
    before: tuple[Path, Path] | None = None
    detector_steps = 0
    for number, config in enumerate(stages, 1):
        config, folder = _stage(config, before)
        what = (
            "detector prior"
            if len(stages) == 1
            else f"detector prior, stage {number}/{len(stages)}"
        )
        checkpoint, steps = _ensure_stage(
            config, folder, device, what, detector_steps, say, progress
        )
        detector_steps += steps
        before = (folder, checkpoint)
    assert before is not None, "a prior has at least one stage"
    return before[1]


def _ensure_stage(
    config: ExperimentConfig,
    folder: Path,
    device: torch.device,
    what: str,
    steps_before: int,
    say: Callable[[str], None],
    progress: bool,
) -> tuple[Path, int]:
    """One stage's final checkpoint and steps, trained in `folder` unless it is finished."""
    with exclusive(folder.with_name(folder.name + ".lock")):
        record = _finished(folder)
        if record is not None:
            checkpoint = folder / record["checkpoint"]
            say(f"{what}: cached ({checkpoint})")
            return checkpoint, int(record["steps"])
        existing = list_checkpoints(folder / "checkpoints")
        fresh = "from the stage before's detector" if steps_before else "from scratch"
        start = f"resuming at step {existing[-1][0]}" if existing else fresh
        say(f"{what}: training the FOMM detector once for this dataset, {start}")
        trainer = Trainer.from_config(
            config,
            folder,
            resume=bool(existing),
            context=DistContext(device=device),
            progress=progress,
        )
        result = trainer.train()
        if result.checkpoint is None:
            raise RuntimeError(f"the detector prior saved no checkpoint in {folder}")
        record = {
            "checkpoint": str(result.checkpoint.relative_to(folder)),
            "steps": result.steps,
            "detector_steps": steps_before + result.steps,
        }
        atomic_write_text(folder / DONE_NAME, json.dumps(record) + "\n")
        say(f"{what}: {result.describe()} in {result.seconds / 60:.1f} min")
        return result.checkpoint, result.steps


def prior_diagnostics(
    checkpoint: Path, synthetic_root: Path | None, device: torch.device
) -> dict[str, Any]:
    """Training steps, keypoint spread (px) and probe R^2 of a detector checkpoint on the
    synthetic dataset at `synthetic_root` (fitted on its train split, scored on its test
    split); only the steps without one (None: data without ground truth).

    Cached next to the checkpoint, keyed by the dataset.
    """
    from kptoolkit.evaluators.synthetic_training import load_split

    steps = _prior_steps(checkpoint) or _checkpoint_steps(checkpoint)
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


def _prior_steps(checkpoint: Path) -> int | None:
    """The detector's training steps over every stage, when `checkpoint` is a prior stage's
    final checkpoint (None otherwise)."""
    folder = checkpoint.parent.parent
    try:
        record = _finished(folder)
    except (OSError, ValueError, KeyError):
        return None
    if record is None or (folder / record["checkpoint"]).resolve() != checkpoint.resolve():
        return None
    return int(record.get("detector_steps", record["steps"]))


def _checkpoint_steps(checkpoint: Path) -> int | None:
    """The step a kptoolkit checkpoint was written at (None for an official FOMM file)."""
    from kptoolkit.utils.checkpoint_io import read_checkpoint

    payload = read_checkpoint(checkpoint)
    step = payload.get("step") if isinstance(payload, dict) else None
    return int(step) if step is not None else None
