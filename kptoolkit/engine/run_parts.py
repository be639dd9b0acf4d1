"""What a training run is made of besides the loop: its result record, the divergence error,
per-step random streams, the progress hook and the numerics a plan resolved."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from kptoolkit.config.schema import ExperimentConfig, LossConfig
from kptoolkit.data.augment import PairAugmentation, apply_params, augment_joints, sample_params
from kptoolkit.engine.checkpoints import latest_checkpoint, restore_rng_state
from kptoolkit.engine.distributed import DistContext
from kptoolkit.engine.weight_average import WeightAverage
from kptoolkit.errors import ConfigError, KptoolkitError
from kptoolkit.experiment.build import Models
from kptoolkit.experiment.plan import Plan
from kptoolkit.losses.base import LossInputs
from kptoolkit.nn.component import Component, hook
from kptoolkit.runtime.precision import Numerics
from kptoolkit.utils.checkpoint_io import KPTOOLKIT_FORMAT, read_checkpoint

# Distinct streams of per-step randomness.
AUGMENT_STREAM, MASKER_STREAM, LOSS_STREAM = 1, 2, 3


class TrainingDiverged(KptoolkitError):
    """A loss term became NaN or infinite; training stopped before saving anything after it."""


@attrs.define
class TrainResult:
    """What a finished `train` call reports: `steps` is the step the run stands at, and
    `start_step` the one this call started from (a resumed run's checkpoint, else 0)."""

    out_dir: Path
    steps: int
    last_losses: dict[str, float]
    checkpoint: Path | None
    seconds: float
    start_step: int = 0

    @property
    def trained_steps(self) -> int:
        """The steps this call trained."""
        return self.steps - self.start_step

    def describe(self) -> str:
        """'trained 100 steps (20 -> 120)' for a resumed run, 'trained 120 steps' otherwise."""
        resumed = f" ({self.start_step} -> {self.steps})" if self.start_step else ""
        return f"trained {self.trained_steps} steps{resumed}"


def tell_training_progress(models: Models, step: int, epoch: int) -> None:
    """Call `set_training_progress(step=, epoch=)` on each model that defines it, before each
    training step (for schedules inside a model, e.g. TPSMM's keypoint dropout)."""
    for module in models.modules().values():
        hook(module, "set_training_progress", Component)(step=step, epoch=epoch)


def step_generator(seed: int, step: int, stream: int, rank: int = 0) -> torch.Generator:
    """A torch.Generator that depends only on (seed, step, stream, rank)."""
    value = ((seed * 1_000_003 + step) * 97 + stream) * 65_537 + rank
    return torch.Generator().manual_seed(value % (2**63 - 1))


def map_tensors(record: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """The same (nested) attrs record with `fn` applied to every tensor in it."""
    if isinstance(record, torch.Tensor):
        return fn(record)
    fields = attrs.fields(type(record))
    return type(record)(**{f.name: map_tensors(getattr(record, f.name), fn) for f in fields})


def training_numerics(plan: Plan, device: torch.device) -> Numerics:
    """The precision and layout `plan` resolved, checked to be for `device`'s kind."""
    numerics = plan.numerics
    if numerics is None:
        raise ConfigError(
            "this plan was made without a device: plan_experiment(config, ..., device=...) "
            "resolves the training precision and layout"
        )
    if numerics.hardware.device_type != device.type:
        raise ConfigError(
            f"the plan's precision was resolved for {numerics.hardware.device_type}, but "
            f"training runs on {device}: plan it for that device"
        )
    return numerics


def loss_terms(inputs: LossInputs, active: list[tuple[LossConfig, nn.Module]]) -> dict[str, Any]:
    """Each active term's weighted value per configured output (`name/output`), summed over
    outputs that share a key."""
    terms: dict[str, torch.Tensor] = {}
    for config, loss in active:
        for output in config.outputs or [""]:
            key = f"{config.name}/{output}" if output else config.name
            value = config.weight * loss(inputs, output)
            terms[key] = terms[key] + value if key in terms else value
    return terms


def loss_values(
    terms: dict[str, torch.Tensor], total: torch.Tensor, step: int, checkpoint_dir: Path
) -> dict[str, float]:
    """Every term's value and the `total` as floats, in one device transfer; a non-finite
    term stops training at `step`, naming it and the last good checkpoint."""
    stacked = torch.stack([value.detach().float() for value in (*terms.values(), total)])
    *floats, total_value = stacked.tolist()  # one device sync per step, not one per term
    values = dict(zip(terms, floats, strict=True))
    for key, value in values.items():
        if not math.isfinite(value):
            last = latest_checkpoint(checkpoint_dir)
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint was saved"
            raise TrainingDiverged(
                f"loss term '{key}' is {value} at step {step + 1}; training "
                f"stopped and {kept} (lower train.lr, or set train.grad_clip)"
            )
    return {**values, "total": total_value}


def short_losses(values: dict[str, float]) -> dict[str, str]:
    """The total and the first terms, by loss name, for the progress bar."""
    shown = {"total": values.get("total", math.nan)}
    shown.update({k.split("/")[0]: v for k, v in values.items() if k != "total"})
    return {k: f"{v:.4f}" for k, v in list(shown.items())[:4]}


def restore_training(
    path: Path,
    models: Models,
    optimizers: dict[str, Any],
    schedulers: dict[str, Any],
    scaler: Any,
    average: WeightAverage | None = None,
) -> tuple[int, int]:
    """Load a run checkpoint's networks, optimisers, schedulers, gradient scaler, random state
    and (with `average`) the moving average of its weights; returns its (step, epoch)."""
    checkpoint = read_checkpoint(path)
    if checkpoint.get("format") != KPTOOLKIT_FORMAT:
        raise ConfigError(f"{path} is not a kptoolkit run checkpoint")
    models.load_state_dicts(checkpoint["models"], str(path))
    for name, optimizer in optimizers.items():
        if name in checkpoint["optimizers"]:
            optimizer.load_state_dict(checkpoint["optimizers"][name])
    for name, scheduler in schedulers.items():
        if name in checkpoint["schedulers"]:
            scheduler.load_state_dict(checkpoint["schedulers"][name])
    if "scaler" in checkpoint:
        scaler.load_state_dict(checkpoint["scaler"])
    if average is not None:  # a checkpoint saved without one restarts it from its weights
        average.load_state_dicts(checkpoint.get("models_ema", {}))
    restore_rng_state(checkpoint["rng"], None)
    return int(checkpoint["step"]), int(checkpoint["epoch"])


def augment_pair(
    augment: PairAugmentation,
    pair: tuple[torch.Tensor, torch.Tensor],
    joints: tuple | None,
    step: int,
    context: DistContext,
    config: ExperimentConfig,
) -> tuple[torch.Tensor, ...]:
    """The augmented (source, driving) pair, then (with `joints`, the pair's ground-truth
    joints) the joints moved alike. The parameters are drawn for the whole global batch from
    (seed, step), then this rank's rows taken: the same pair gets the same augmentation
    whatever the number of processes."""
    if augment.config.is_identity:
        return (*pair, *joints) if joints else pair
    global_batch = config.train.batch_size
    generator = step_generator(config.seed, step, AUGMENT_STREAM)
    params = sample_params(augment.config, global_batch, generator)
    rows = torch.arange(context.rank, global_batch, context.world_size)
    mine = map_tensors(params, lambda t: t[rows].to(pair[0].device))
    moved = apply_params(*pair, mine, augment.config)
    if joints:
        moved = (*moved, *augment_joints(*joints, mine, augment.config))
    return moved


def discriminator_step(
    adversarial: list[tuple[LossConfig, Any]],
    optimizer: torch.optim.Optimizer,
    discriminator: torch.nn.Module,
    inputs: LossInputs,
    grad_clip: float | None,
) -> dict[str, float]:
    """One optimiser step of the GAN discriminator on the step's outputs (detached) against the
    real frames, for every adversarial loss term; returns the logged values."""
    optimizer.zero_grad(set_to_none=True)  # the generator's GAN term left gradients in D
    detached = attrs.evolve(inputs, outputs={k: v.detach() for k, v in inputs.outputs.items()})
    total = torch.zeros((), device=inputs.target.device)
    logged = {}
    for config, loss in adversarial:
        for output in config.outputs or ["prediction"]:
            value = loss.discriminator_loss(detached, output)
            logged[f"discriminator/{config.name}/{output}"] = float(value.detach())
            total = total + value
    total.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(discriminator.parameters(), grad_clip)
    optimizer.step()
    return logged
