"""The bench's rows as runs: each row x seed is a plan (resolved once) plus its run folder,
trained one at a time or side by side in worker processes, then reconstructed."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kptoolkit.bench.launching import job_device
from kptoolkit.bench.plan import BenchOptions, Entry, needs_groundtruth, takes
from kptoolkit.bench.profiles import Profile
from kptoolkit.bench.stages.parallel import train_row_in_worker
from kptoolkit.bench.stages.reconstruction import (
    controls,
    reconstruct_run,
    reconstructions_recorded,
)
from kptoolkit.bench.stages.stage_cache import read_state
from kptoolkit.bench.stages.training import check_same_config, run_is_trained, train_run
from kptoolkit.config.schema import ExperimentConfig, ModelConfig, load_config
from kptoolkit.errors import ConfigError, KptoolkitError
from kptoolkit.experiment.build import build_dataset
from kptoolkit.experiment.components import apply_with_presets, expand_presets
from kptoolkit.experiment.plan import Plan, copy_config, plan_experiment
from kptoolkit.experiment.resolve import FROZEN_DETECTOR, TRAINED_DETECTOR, detector_rule
from kptoolkit.launchers.base import Job, Launcher, LaunchSettings, WithRegistrations
from kptoolkit.launchers.local import registrations_for_workers
from kptoolkit.runtime.hardware import torch_threads
from kptoolkit.runtime.precision import Numerics


class RowRuns:
    """The part of `Bench` that turns rows into runs: folders, labels, plans, training and
    reconstruction. `Bench` sets the attributes below before any of these run."""

    options: BenchOptions
    profile: Profile
    base: ExperimentConfig
    numerics: Numerics
    out: Path
    seeds: list[int]
    entries: list[Entry]
    device: torch.device
    detector: str | None  # the keypoint maskers' detector file
    test_dataset: Any
    unreadable_test: dict[str, str]  # test videos that cannot be read: skipped by every stage
    _lr_given: bool
    _groundtruth_test: Any
    _parallelism: tuple[int, int] | None
    worker_registrations: dict[str, dict[str, Any]] | None
    launcher: Launcher
    row_overrides: dict[str, list[str]]  # `--set masker.*` / `generator.*` (`component_overrides`)

    say: Callable[[str], None]  # Bench's
    stage_prefix: Callable[[], str]  # Bench's

    # -- how many runs train at once -----------------------------------------------------------
    def untrained(self) -> list[tuple[Entry, int]]:
        """The (row, seed) runs with no finished training on record."""
        return [
            (entry, seed)
            for seed in self.seeds
            for entry in self.entries
            if not run_is_trained(self.run_dir(entry, seed))
        ]

    def unfinished(self) -> list[tuple[Entry, int]]:
        """The (row, seed) runs with no finished training, or with a test reconstruction (by
        the protocol or as a control) not on record: what a launcher's job still has to do."""
        return [
            (entry, seed)
            for seed in self.seeds
            for entry in self.entries
            if not run_is_trained(self.run_dir(entry, seed))
            or not reconstructions_recorded(self.run_dir(entry, seed), controls(entry.generator))
        ]

    def parallelism(self) -> tuple[int, int]:
        """(runs trained at once, threads each) for the rows still to train, decided once by the
        launcher (the evaluators and the detector prior train before them: on this machine in
        the bench's process with every thread). On this machine, one run at a time when
        in-process components cannot reach workers; elsewhere they must."""
        if self._parallelism is None:
            elsewhere = not self.launcher.runs_here
            jobs = len(self.unfinished() if elsewhere else self.untrained())
            workers, threads = self.launcher.plan(jobs, self.device)
            if workers > 1 or elsewhere:
                self.worker_registrations = registrations_for_workers()
            if self.worker_registrations is None and elsewhere:
                raise ConfigError(
                    "components registered in this process cannot be sent to the launcher's "
                    "jobs (not picklable): register them through an entry point"
                )
            if workers > 1 and self.worker_registrations is None:
                self.say(
                    "components registered in this process cannot be sent to worker "
                    "processes (not picklable): training one run at a time"
                )
                workers, threads = 1, torch.get_num_threads()
            self._parallelism = (workers, threads)
        return self._parallelism

    # -- configs and folders -------------------------------------------------------------------
    def run_dir(self, entry: Entry, seed: int) -> Path:
        """The run folder of one row trained with one seed."""
        return self.out / "runs" / f"{entry.slug}-seed{seed}"

    def run_label(self, entry: Entry, seed: int) -> str:
        """The row's name in progress lines (with its seed when there are several)."""
        return f"{entry.label} (seed {seed})" if len(self.seeds) > 1 else entry.label

    def control_label(self, entry: Entry, seed: int, control: str | None) -> str:
        """`run_label`, marked with the control's name for a control's reconstruction."""
        return self.run_label(entry, seed) + (f" [{control}]" if control else "")

    def learning_rate(self, entry: Entry) -> float:
        """The row's learning rate: the profile's for its generator, unless a config file or
        `--set train.lr` gives one."""
        if self._lr_given:
            return self.base.train.lr
        return self.profile.learning_rates.get(entry.generator, self.base.train.lr)

    def row_config(self, entry: Entry, seed: int = 0, recipe: bool = True) -> ExperimentConfig:
        """The base config with this row's masker, generator, seed and learning rate (same
        budget for every row), not yet planned; with `recipe`, the profile's parameters for
        the row's generator under the config's own."""
        config = copy_config(self.base)
        config.name = f"bench-{entry.slug}"
        config.seed = seed
        # a component the row changes starts from its preset, without the base one's values;
        # every row's masker and generator then take the `--set` values of their kind that
        # their constructors take (the base config has none of them)
        own = []
        for kind in ("masker", "generator"):
            chosen = getattr(entry, kind)
            if getattr(config, kind).name != chosen:
                setattr(config, kind, ModelConfig(chosen))
            own += [o for o in self.row_overrides[kind] if chosen and takes(kind, chosen, o)]
        if recipe:
            profile_params = self.profile.generator_params.get(entry.generator, {})
            config.generator.params = {**profile_params, **config.generator.params}
            added = self.profile.generator_losses.get(entry.generator, ())
            if added:
                config = expand_presets(config)  # the preset's own terms, written out
                own_terms = config.generator.losses or []
                config.generator.losses = [*own_terms, *(copy.deepcopy(t) for t in added)]
        if own:
            config = apply_with_presets(config, own)
        config.train.lr = self.learning_rate(entry)
        config.train.threads = self.row_threads(entry, seed)
        return config

    def row_threads(self, entry: Entry, seed: int) -> int | None:
        """The torch threads a row trains and reconstructs with: what its run folder recorded
        when it has one (a resumed or cached row is the row that was measured: the count
        changes the order of float sums), else `--set train.threads`, else the bench's share
        per run (`parallelism`)."""
        stored = self.run_dir(entry, seed) / "config.yaml"
        if stored.is_file():
            try:
                return load_config(stored).train.threads
            except KptoolkitError:
                pass  # refused with its reason when the run is checked
        if self.base.train.threads is not None:
            return self.base.train.threads
        return self.parallelism()[1]

    def entry_plan(
        self, entry: Entry, detector: str | None, seed: int = 0, recipe: bool = True
    ) -> Plan:
        """The row's plan, resolved once: its config (`row_config`, with the profile's
        generator parameters unless not `recipe`) reading `detector` when its masker reads the
        frozen detector, or the given --kp-checkpoint when its detector trains, at the
        precision the bench resolved for every run."""
        config = self.row_config(entry, seed, recipe)
        rule = detector_rule(config)
        if rule == TRAINED_DETECTOR:
            config.keypoints.checkpoint = self.options.kp_checkpoint
        elif rule == FROZEN_DETECTOR:
            config.keypoints.checkpoint = detector
        return plan_experiment(config, numerics=self.numerics)

    def entry_config(self, entry: Entry, detector: str | None, seed: int = 0) -> ExperimentConfig:
        """The row's config as its run saves it (`entry_plan`'s)."""
        return self.entry_plan(entry, detector, seed).config_copy()

    def test_dataset_for(self, entry: Entry) -> Any:
        """The test split as the row's masker reads it (with ground-truth joints for the
        oracle), built once."""
        if not needs_groundtruth(entry.masker):
            return self.test_dataset
        if self._groundtruth_test is None:
            test = build_dataset(self.row_config(entry), "test")
            test.videos = [v for v in test.videos if v.name not in self.unreadable_test]
            self._groundtruth_test = test
        return self._groundtruth_test

    def _checkpoint(self, entry: Entry, seed: int) -> Path:
        """The final checkpoint of a trained run."""
        state = read_state(self.run_dir(entry, seed))
        return self.run_dir(entry, seed) / "checkpoints" / state["train"]["checkpoint"]

    # -- training and reconstruction -----------------------------------------------------------
    def train_all(self) -> None:
        """Train every row with every seed: one run at a time here, or as jobs of the launcher
        (side by side in worker processes, SLURM jobs, Ray tasks), each row then reconstructing
        its test videos. A finished run is reused. On this machine a run begun with another
        thread count than the workers' is finished in this process with its own count, and a
        job alone runs here."""
        workers, threads = self.parallelism()
        if self.launcher.runs_here:
            launched = [
                (entry, seed)
                for entry, seed in (self.untrained() if workers > 1 else [])
                if self.row_threads(entry, seed) == threads
            ]
            launched = launched if len(launched) > 1 else []
        else:  # every job runs with its own row's threads, and reconstructs where it runs
            launched = self.unfinished()
        for seed in self.seeds:
            for entry in self.entries:
                if (entry, seed) not in launched:
                    self.train(entry, seed, self.entry_plan(entry, self.detector, seed))
        if not launched:
            return
        runs_at_once = min(workers, len(launched))
        prefix = self.stage_prefix()
        device = job_device(self.device, self.launcher.runs_here, runs_at_once)
        work: Any = train_row_in_worker  # the local pool registers them in each worker once
        if not self.launcher.runs_here:
            work = WithRegistrations(train_row_in_worker, self.worker_registrations or {})
        jobs = [
            Job(
                f"{entry.slug}-seed{seed}",
                self.run_label(entry, seed),
                work,
                functools.partial(self._row_arguments, entry, seed, device, prefix, runs_at_once),
                log_dir=self.run_dir(entry, seed),
            )
            for entry, seed in launched
        ]
        where = self.launcher.describe()
        self.say(f"training {runs_at_once} runs at a time, {threads} thread(s) each ({where})")
        settings = LaunchSettings(
            runs_at_once,
            threads,
            self.say,
            self.options.progress,
            self.worker_registrations,
            self.device,
        )
        self.launcher.run(jobs, settings)

    def _row_arguments(
        self, entry: Entry, seed: int, device: str, prefix: str, runs_at_once: int
    ) -> tuple[Any, ...]:
        """`train_row_in_worker`'s arguments for one run (its config checked against the
        folder's first, here), with the row's controls to reconstruct after training."""
        # batches loaded in the worker itself: loader processes would compete with the other
        # workers for the same cores (the batches are the same: `LOADING_KEYS`)
        plan = self.entry_plan(entry, self.detector, seed).loading_in_process()
        run_dir = self.run_dir(entry, seed)
        check_same_config(run_dir, plan.config)
        label = self.run_label(entry, seed)
        reconstructions = controls(entry.generator)
        return (str(run_dir), plan, label, device, prefix, reconstructions, runs_at_once)

    def train(self, entry: Entry, seed: int, plan: Plan) -> dict[str, Any]:
        """Train one row with one seed (or reuse / resume its run); returns its training
        record."""
        label = self.run_label(entry, seed)
        run_dir = self.run_dir(entry, seed)
        return train_run(run_dir, plan, label, self.device, self.options.progress, self.say)

    def reconstruct(self, entry: Entry, seed: int, control: str | None = None) -> None:
        """Reconstruct the test videos with a run's final checkpoint (PNG for the metrics), by
        the protocol or as one of the row's controls."""
        with torch_threads(self.row_threads(entry, seed)):  # as its worker would
            self._reconstruct(entry, seed, control)

    def _reconstruct(self, entry: Entry, seed: int, control: str | None) -> None:
        reconstruct_run(
            self.run_dir(entry, seed),
            self._checkpoint(entry, seed),
            functools.partial(self.test_dataset_for, entry),
            control,
            controls(entry.generator)[control] if control else None,
            precision=self.base.eval.precision,
            device=self.device,
            progress=self.options.progress,
            label=self.control_label(entry, seed, control),
            say=self.say,
        )
