"""Training any masker x generator pair: one CPU process, or many under `torchrun`.

Every random choice is a function of (seed, step) or (seed, epoch, index): the data order
(`ResumableSampler`), the frames of each item (the dataset), the augmentation, the mask
perturbation and the equivariance transforms. So a resumed run repeats the losses of an
uninterrupted one exactly, and W processes with a local batch of B/W see the same global batches
as one process with batch B (with `sync_batchnorm`, their BatchNorm statistics match too).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.autograd.profiler import record_function
from torch.utils.data import BatchSampler, DataLoader
from tqdm import tqdm

from kptoolkit.config.schema import (
    ExperimentConfig,
    LossConfig,
    save_config,
)
from kptoolkit.data.augment import (
    PairAugmentation,
    augmentation_from_dict,
)
from kptoolkit.engine.checkpoints import (
    as_stored_in,
    check_resumable,
    checkpoint_name,
    is_run_folder,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    rng_state,
    run_payload,
)
from kptoolkit.engine.distributed import DistContext, barrier, mean_across_ranks, wrap_for_ddp
from kptoolkit.engine.optimisers import build_optimisers
from kptoolkit.engine.prediction import needs_groundtruth
from kptoolkit.engine.run_log import RunLog
from kptoolkit.engine.run_parts import (
    LOSS_STREAM,
    MASKER_STREAM,
    TrainResult,
    augment_pair,
    discriminator_step,
    loss_terms,
    loss_values,
    restore_training,
    short_losses,
    step_generator,
    tell_training_progress,
    training_numerics,
)
from kptoolkit.engine.run_parts import TrainingDiverged as TrainingDiverged
from kptoolkit.engine.sampler import ResumableSampler
from kptoolkit.engine.sync_batchnorm import convert_to_global_batchnorm
from kptoolkit.engine.visualize import save_sample_grid
from kptoolkit.engine.weight_average import weight_average
from kptoolkit.errors import ConfigError
from kptoolkit.experiment.build import build_dataset, build_losses, build_models
from kptoolkit.experiment.plan import Plan, plan_experiment
from kptoolkit.losses.base import LossInputs
from kptoolkit.nn.video_kernels import to_memory_format
from kptoolkit.runtime.hardware import torch_threads
from kptoolkit.utils.atomic import remove_orphans
from kptoolkit.utils.checkpoint_io import atomic_save
from kptoolkit.utils.locks import folder_lock

ConfiguredLoss = tuple[LossConfig, nn.Module]


class Trainer:
    """Trains the models of one plan (`Trainer.from_config` plans a config first); see the
    module docstring."""

    def __init__(
        self,
        plan: Plan,
        out_dir: str | Path,
        resume: bool = False,
        context: DistContext | None = None,
        progress: bool = True,
    ) -> None:
        self.plan = plan
        config = self.config = plan.config
        self.out_dir = Path(out_dir)
        self.context = context or DistContext()
        # precision and layout were resolved with the plan, once, for this kind of device
        self.numerics = training_numerics(plan, self.context.device)
        warning = self.numerics.warning()
        if warning and self.context.is_main:
            print(f"kptoolkit: {warning}")
        self.progress = progress and self.context.is_main
        self.checkpoint_dir = self.out_dir / "checkpoints"
        self._check_out_dir(resume)
        if resume:
            check_resumable(self.out_dir, config)
        self.resume_from = latest_checkpoint(self.checkpoint_dir) if resume else None
        if resume and self.resume_from is None and self.context.is_main:
            print(f"kptoolkit: no checkpoint in {self.checkpoint_dir}; starting from scratch")

        train = config.train
        world = self.context.world_size
        if train.batch_size % world:
            raise ConfigError(
                f"train.batch_size ({train.batch_size}) must be divisible by the number of "
                f"processes ({world}): it is the global batch"
            )
        self.local_batch = train.batch_size // world
        self.device = self.context.device

        self.models = build_models(plan)
        if train.sync_batchnorm and self.context.distributed:
            for module in self.models.trainable().values():
                convert_to_global_batchnorm(module)
        self.models.to(self.device)
        self.losses = build_losses(plan)
        for _, loss in self.losses:
            loss.to(self.device)
        self.memory_format = self.numerics.memory_format
        if self.numerics.channels_last:
            for module in self.models.modules().values():
                to_memory_format(module, torch.channels_last)
            for _, loss in self.losses:
                to_memory_format(loss, torch.channels_last)
        self.adversarial = [(c, loss) for c, loss in self.losses if loss.adversarial]
        self.groups = self.models.trainable()
        self.optimizers, self.schedulers = build_optimisers(self.groups, train, self.device)
        self.wrapped = wrap_for_ddp(self.groups, self.context, self.device)
        self.average = weight_average(self.groups, train.ema_decay)

        self.dataset = build_dataset(config, "train")
        self.sampler = ResumableSampler(
            len(self.dataset),
            seed=config.seed,
            rank=self.context.rank,
            world_size=world,
            global_batch=train.batch_size,
        )
        self.steps_per_epoch = len(self.sampler) // self.local_batch
        self.total_steps = train.steps or train.epochs * self.steps_per_epoch
        self.augment = PairAugmentation(augmentation_from_dict(config.data.augmentation))
        self.needs_groundtruth = needs_groundtruth(self.models)  # the masker draws true joints
        if self.needs_groundtruth and self.augment.config.geometric:
            raise ConfigError(
                f"masker '{config.masker.name}' draws ground-truth joints, which follow time and "
                "horizontal flips only: remove rotation, scale and crop from data.augmentation"
            )
        self.amp_dtype = self.numerics.autocast_dtype
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.numerics.scales_gradients)
        self.step = 0
        self.epoch = 0

    @classmethod
    def from_config(
        cls,
        config: ExperimentConfig,
        out_dir: str | Path,
        kp_checkpoint: str | None = None,
        resume: bool = False,
        context: DistContext | None = None,
        progress: bool = True,
    ) -> Trainer:
        """Plan `config` (unchanged) for the context's device, then a Trainer of that plan: the
        short form for scripts and notebooks."""
        context = context or DistContext()
        plan = plan_experiment(config, kp_checkpoint, device=context.device)
        return cls(plan, out_dir, resume=resume, context=context, progress=progress)

    # -- setup ---------------------------------------------------------------------------------
    def _check_out_dir(self, resume: bool) -> None:
        # a checkpoint, not the partial file of a save killed before the first one finished
        if list_checkpoints(self.checkpoint_dir) and not resume:
            raise ConfigError(
                f"{self.out_dir} already holds a run; continue it with --resume, or choose "
                "another --out (nothing was overwritten)"
            )

    def _restore(self, path: Path) -> None:
        self.step, self.epoch = restore_training(
            path, self.models, self.optimizers, self.schedulers, self.scaler, self.average
        )

    # -- data ----------------------------------------------------------------------------------
    def _batches(self) -> Iterator[dict[str, Any]]:
        """Batches from the current step on, epoch after epoch (epochs advance `self.epoch`)."""
        while True:
            offset = (self.step - self.epoch * self.steps_per_epoch) * self.local_batch
            self.sampler.set_epoch(self.epoch, start=max(offset, 0))
            self.dataset.set_epoch(self.epoch)
            loader = DataLoader(
                self.dataset,
                batch_sampler=BatchSampler(self.sampler, self.local_batch, drop_last=True),
                num_workers=int(self.config.data.num_workers),  # resolved with the plan
                pin_memory=self.device.type == "cuda",
            )
            yield from loader
            self.epoch += 1
            for scheduler in self.schedulers.values():
                scheduler.step()

    # -- one step ------------------------------------------------------------------------------
    def _active_losses(self) -> list[tuple[LossConfig, nn.Module]]:
        return [(c, loss) for c, loss in self.losses if self.epoch >= loss.start_epoch]

    def _forward(
        self, batch: dict[str, Any]
    ) -> tuple[LossInputs, list[tuple[LossConfig, nn.Module]]]:
        source = batch["source"].to(self.device, non_blocking=True)
        driving = batch["driving"].to(self.device, non_blocking=True)
        truth: dict[str, Any] = {}
        if self.needs_groundtruth:
            joints = (batch["source_joints"], batch["driving_joints"])
            joints = tuple(j.to(self.device, non_blocking=True) for j in joints)
            source, driving, *moved = augment_pair(
                self.augment, (source, driving), joints, self.step, self.context, self.config
            )
            truth = {"source": {"joints": moved[0]}, "driving": {"joints": moved[1]}}
        else:
            source, driving = augment_pair(
                self.augment, (source, driving), None, self.step, self.context, self.config
            )
        source = source.contiguous(memory_format=self.memory_format)
        driving = driving.contiguous(memory_format=self.memory_format)
        masker = self.wrapped.get("masker", self.models.masker)
        generator_net = self.wrapped["generator"]
        active = self._active_losses()
        rank = self.context.rank
        tell_training_progress(self.models, self.step, self.epoch)
        with torch.autocast(self.device.type, self.amp_dtype, enabled=self.amp_dtype is not None):
            source_structure = masker(source, **truth.get("source", {}))
            driving_structure = masker(driving, **truth.get("driving", {}))
            extras: dict[str, torch.Tensor] = {}
            driving_input = driving_structure
            if any(loss.reads_extras for _, loss in active):
                driving_input, extras = self.models.masker.driving_for_training(
                    source,
                    source_structure,
                    driving_structure,
                    step_generator(self.config.seed, self.step, MASKER_STREAM, rank),
                )
            outputs = generator_net(source, source_structure, driving_input)
        inputs = LossInputs(
            batch={"source": source, "driving": driving},
            outputs=outputs,
            source_structure=source_structure,
            driving_structure=driving_structure,
            extras=extras,
            detector=self.models.detector if self.models.detector_trains else None,
            discriminator=self.wrapped.get("discriminator", self.models.discriminator),
            rng=step_generator(self.config.seed, self.step, LOSS_STREAM, rank),
            epoch=self.epoch,
            autocast_dtype=self.amp_dtype,
        )
        return inputs, active

    def _optimise(self, total: torch.Tensor) -> None:
        generator_side = [n for n in self.optimizers if n != "discriminator"]
        for name in generator_side:
            self.optimizers[name].zero_grad(set_to_none=True)
        with record_function("backward"):
            self.scaler.scale(total).backward()
        clip = self.config.train.grad_clip
        with record_function("optimiser"):
            for name in generator_side:
                if clip is not None:
                    self.scaler.unscale_(self.optimizers[name])
                    torch.nn.utils.clip_grad_norm_(self.groups[name].parameters(), clip)
                self.scaler.step(self.optimizers[name])
            self.scaler.update()

    def _discriminator_step(self, inputs: LossInputs) -> dict[str, float]:
        if not self.adversarial or "discriminator" not in self.optimizers:
            return {}
        optimizer, network = self.optimizers["discriminator"], self.groups["discriminator"]
        clip = self.config.train.grad_clip
        return discriminator_step(self.adversarial, optimizer, network, inputs, clip)

    # -- outputs -------------------------------------------------------------------------------
    def _save_checkpoint(self) -> Path:
        payload = {
            **run_payload(
                as_stored_in(self.config, self.out_dir), self.models, self.step, self.epoch
            ),
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "world_size": self.context.world_size,
            "rng": rng_state(),
        }
        if self.average is not None:
            payload["models_ema"] = self.average.state_dicts()
        path = self.checkpoint_dir / checkpoint_name(self.step)
        atomic_save(payload, path)
        prune_checkpoints(self.checkpoint_dir, self.config.train.keep_last)
        return path

    def _save_samples(self, inputs: LossInputs) -> None:
        save_sample_grid(inputs, self.out_dir / "samples" / f"step-{self.step:08d}.png")

    # -- the loop ------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        """Run until `total_steps`; checkpoint, log and draw samples on the way. The run folder
        is locked meanwhile: a second process on it stops before it writes anything."""
        with torch_threads(self.config.train.threads):
            if not self.context.is_main:
                return self._train()
            with folder_lock(self.out_dir, "a kptoolkit run", written_before=is_run_folder):
                return self._train()

    def _train(self) -> TrainResult:
        started = time.perf_counter()
        train = self.config.train
        log = None
        if self.context.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            # what a kill during a save left (the folder is locked: no save is in progress)
            for folder in (self.out_dir, self.checkpoint_dir):
                remove_orphans(folder)
            save_config(as_stored_in(self.config, self.out_dir), self.out_dir / "config.yaml")
            log = RunLog(self.out_dir)
        if self.resume_from is not None:
            self._restore(self.resume_from)
        start_step = self.step
        if log is not None:
            # the log ends where the run starts: at the resumed step, or empty for a run that
            # starts from scratch (one killed before its first checkpoint leaves rows behind)
            log.truncate(self.step)
        self.models.train(True)
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc="train",
            unit="step",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        last: dict[str, float] = {}
        checkpoint: Path | None = None
        try:
            batches = self._batches()
            while self.step < self.total_steps:
                with record_function("data"):
                    batch = next(batches)
                with record_function("forward"):
                    inputs, active = self._forward(batch)
                with record_function("losses"):
                    terms = loss_terms(inputs, active)
                    if not terms:
                        raise ConfigError("no loss term is active: configure `losses`")
                    total = sum(terms.values())
                    values = loss_values(terms, total, self.step, self.checkpoint_dir)
                self._optimise(total)
                if self.average is not None:
                    self.average.update(self.step + 1)
                with record_function("discriminator"):
                    discriminator_logs = self._discriminator_step(inputs)
                self.step += 1
                values.update(discriminator_logs)
                logged = self.step % train.log_every == 0 or self.step == 1
                # global figures only where they are written (every rank takes the same branch)
                if logged or self.step == self.total_steps:
                    last = mean_across_ranks(values, self.context)
                else:
                    last = values  # this rank's, for the progress bar
                bar.update(1)
                bar.set_postfix(short_losses(last), refresh=False)
                if self.context.is_main:
                    if log is not None and logged:
                        lr = self.optimizers["generator"].param_groups[0]["lr"]
                        log.log({"step": self.step, "epoch": self.epoch, "lr": lr, **last})
                    if self.step % train.sample_every == 0 or self.step == self.total_steps:
                        self._save_samples(inputs)
                    if self.step % train.checkpoint_every == 0 or self.step == self.total_steps:
                        checkpoint = self._save_checkpoint()
            barrier(self.context)  # ranks leave together, after rank 0's last checkpoint
        finally:
            bar.close()
            if log is not None:
                log.close()
        if checkpoint is None and self.context.is_main:
            checkpoint = latest_checkpoint(self.checkpoint_dir)
        seconds = time.perf_counter() - started
        return TrainResult(self.out_dir, self.step, last, checkpoint, seconds, start_step)
