"""The bench's stages: data -> evaluators -> detector -> training -> reconstruction -> metrics ->
results.

Everything lands under one output folder:

    <out>/runs/<masker>+<generator>-seed<N>/
                                         a normal training run per row and seed (config.yaml,
                                          losses.csv, checkpoints/), plus reconstruction/ and
                                          bench-state.json (with each test video's metric sums)
    <out>/evaluators.json                the evaluators used and their floors
    <out>/figures/<row>-sample.gif       source | driving | source mask | driving mask | prediction
    <out>/figures/<row>-losses.png       training loss curves
    <out>/results.{md,csv,json,tex}      the measured table; published.{md,tex} apart

Each stage records what it finished in `bench-state.json` next to the run, keyed by the checkpoint
it used (`kptoolkit.bench.stages.stage_cache`), so a second bench reuses every finished stage and an
interrupted one resumes (training continues from its last checkpoint). A run folder holding
another config is never overwritten.

`Bench` orchestrates; `row_runs` turns its rows into runs (plans, folders, training,
reconstruction), and each stage's work lives in a module of its own: `plan` (the rows and
options), `data`, `evaluation` (the evaluators), `detector_prior`, `training`, `reconstruction`
and `reference` (the no-motion row), `scoring`, `rows` (table rows from the stored scores),
`figures` and `report` (the results files and their header).
"""

from __future__ import annotations

import datetime
import functools
import os
import time
from pathlib import Path
from typing import Any

import attrs
import torch

from kptoolkit.bench.launching import (
    build_launcher,
)
from kptoolkit.bench.plan import (
    BenchOptions,
    Entry,
    check_seeds,
    component_overrides,
    default_out_dir,
    plan_entries,
)
from kptoolkit.bench.prerequisites import Prerequisites
from kptoolkit.bench.profiles import Profile, get_profile
from kptoolkit.bench.report.header import machine_description, write_results
from kptoolkit.bench.report.results import ResultRow
from kptoolkit.bench.report.rows import (
    REFERENCE_LABEL,
    control_row,
    floor_rows,
    scored_floors,
    trained_row,
    untrained_row,
    video_names,
)
from kptoolkit.bench.row_runs import RowRuns
from kptoolkit.bench.stages import figures
from kptoolkit.bench.stages.data import synthetic_description
from kptoolkit.bench.stages.evaluation import Evaluation
from kptoolkit.bench.stages.reconstruction import controls
from kptoolkit.bench.stages.reference import REFERENCE_DIR, reconstruct_reference, score_reference
from kptoolkit.bench.stages.scoring import cached_scores, measure_control, measure_run
from kptoolkit.bench.stages.stage_cache import read_state
from kptoolkit.config.schema import (
    ExperimentConfig,
    load_config,
    split_override,
)
from kptoolkit.errors import ConfigError
from kptoolkit.experiment.components import apply_with_presets
from kptoolkit.runtime.precision import resolve_training_numerics, scoring_precision
from kptoolkit.utils.atomic import remove_orphans
from kptoolkit.utils.locks import folder_lock, held

# scripts outside the package import these from here, the plan's two included
__all__ = ["Bench", "BenchOptions", "BenchOutcome", "Entry"]

STAGES = ("data", "evaluators", "detector", "train", "reconstruct", "metrics", "results")


@attrs.define
class BenchOutcome:
    """The finished bench: its rows, where the outputs are, and how long it took."""

    out_dir: Path
    rows: list[ResultRow]
    files: list[Path]
    seconds: float
    report: str  # the measured table in Markdown, with how it was measured


class Bench(RowRuns, Prerequisites):
    """Runs the bench's stages in order; see the module docstring."""

    def __init__(self, options: BenchOptions) -> None:
        self.options = options
        self.profile: Profile = get_profile(options.profile)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError(
                "kptoolkit bench runs as one process (it uses one GPU when there is one); for "
                "multi-GPU training use `torchrun ... kptoolkit train`"
            )
        if self.profile.needs_config and not options.config:
            raise ConfigError(
                f"the {self.profile.name} profile trains with a config's own widths and "
                "schedule: give one with --config, e.g. configs/taichi-256.yaml from the "
                "kptoolkit repository"
            )
        base = load_config(options.config) if options.config else ExperimentConfig()
        self.profile.adjust(base)
        self.entries = plan_entries(options.maskers, options.generators, options.baselines)
        # `--set masker.*` / `generator.*` values go to each row whose component takes them
        self.row_overrides = component_overrides(options.overrides, self.entries)
        per_row = {item for items in self.row_overrides.values() for item in items}
        self.base = apply_with_presets(
            base, [item for item in options.overrides if item not in per_row]
        )
        # a config file's or `--set train.lr=...`'s learning rate wins over the profile's
        self._lr_given = bool(options.config) or any(
            split_override(item)[0] == "train.lr" for item in options.overrides
        )
        self.seeds = check_seeds(options.seeds if options.seeds else [self.base.seed])
        self.out = Path(options.out) if options.out else default_out_dir(self.profile.name)
        self.device = torch.device(
            options.device or ("cuda" if torch.cuda.is_available() else "cpu")
        )
        # the training precision and layout, decided once for every run the bench trains (the
        # detector prior's stages and every row): `auto` by this machine, explicit values kept
        self.launcher = build_launcher(options)  # before anything is written
        self.numerics = resolve_training_numerics(self.base, self.device)
        self.base.eval.precision = scoring_precision(self.base.eval.precision, self.device)
        if options.kp_checkpoint and not Path(options.kp_checkpoint).is_file():
            raise ConfigError(f"--kp-checkpoint: no such file: {options.kp_checkpoint}")
        self.real_dir: Path | None = None
        self.test_dataset: Any = None  # built once by the data stage, read by every later one
        self.unreadable_test: dict[str, str] = {}  # skipped by every stage (the data stage)
        self.dataset_root: Path | None = None
        self.manifest: dict[str, Any] | None = None  # set by the data stage on synthetic data
        self.evaluation = Evaluation(progress=options.progress)  # built by the evaluators stage
        self.stage_index = 0
        self.video_names: list[str] = []  # the table's test videos, in the reference row's order
        self.detector_info: dict[str, Any] = {}
        self.detector: str | None = None  # the keypoint maskers' detector file
        self._parallelism: tuple[int, int] | None = None
        self.worker_registrations: dict[str, dict[str, Any]] | None = None
        self._groundtruth_test: Any = None

    # -- reporting -----------------------------------------------------------------------------
    def stage_prefix(self) -> str:
        """'[bench 4/7 train]': what starts each progress line of the current stage."""
        return f"[bench {self.stage_index + 1}/{len(STAGES)} {STAGES[self.stage_index]}]"

    def say(self, text: str) -> None:
        """One progress line of the current stage."""
        print(f"{self.stage_prefix()} {text}", flush=True)

    def enter(self, stage: str) -> None:
        """Start stage `stage`."""
        self.stage_index = STAGES.index(stage)

    # -- the whole bench -----------------------------------------------------------------------
    def run(self) -> BenchOutcome:
        """Every stage in order; returns the rows and the files written. The bench folder is
        locked meanwhile: a second bench on it stops before it writes anything."""
        with folder_lock(self.out, "a kptoolkit bench", written_before=_bench_folder):
            return self._run()

    def _run(self) -> BenchOutcome:
        started = time.perf_counter()
        # what killed writes left anywhere in the bench's folder (it is locked now), except in a
        # run folder that a job of an earlier, killed bench still writes (on a cluster)
        remove_orphans(self.out, recursive=True, busy=held)
        self.enter("data")
        self.prepare_data()
        self.enter("evaluators")
        self.prepare_evaluators()
        self.enter("detector")
        self.prepare_detector()
        self.enter("train")
        self.train_all()
        self.enter("reconstruct")
        reconstruct_reference(self.out / REFERENCE_DIR, self.base, self.test_dataset, self.say)
        for seed in self.seeds:
            for entry in self.entries:
                self.reconstruct(entry, seed)
                for control in controls(entry.generator):
                    self.reconstruct(entry, seed, control)
        self.enter("metrics")
        rows = [self.score_reference(), *floor_rows(self.evaluation.info, self.video_names)]
        rows += [self.score(entry) for entry in self.entries]
        rows += [
            self.score_control(entry, control)
            for entry in self.entries
            for control in controls(entry.generator)
        ]
        self.enter("results")
        files = self.write_figures()
        report, written = write_results(self.out, rows, self.context(), self.base, self.seeds)
        seconds = time.perf_counter() - started
        return BenchOutcome(self.out, rows, files + written, seconds, report)

    def score_reference(self) -> ResultRow:
        """Metrics of the no-motion reference (no parameters, no training); its videos fix the
        order in which every row's per-video scores are aligned."""
        folder = self.out / REFERENCE_DIR
        per_video = score_reference(folder, self.base, self.evaluation, self.say)
        self.video_names = video_names(per_video)
        return untrained_row(REFERENCE_LABEL, "reference", per_video, self.video_names)

    def score(self, entry: Entry) -> ResultRow:
        """Metrics on the reconstructed PNGs of every seed's run, parameters and inference
        speed: one row (the seeds' training times and speeds averaged)."""
        measured, trained = [], []
        for seed in self.seeds:
            run_dir, checkpoint = self.run_dir(entry, seed), self._checkpoint(entry, seed)
            label = self.run_label(entry, seed)
            measure = functools.partial(
                measure_run,
                checkpoint,
                run_dir / "reconstruction" / "png",
                functools.partial(self.test_dataset_for, entry),
                self.evaluation,
                device=self.device,
                repeats=self.profile.timing_repeats,
                precision=self.base.eval.precision,
                label=label,
                say=self.say,
            )
            stage = cached_scores(
                run_dir, checkpoint, None, self.evaluation, measure, label, self.say
            )
            measured.append(stage.record)
            trained.append(stage.state["train"])
        return trained_row(entry, measured, trained, self.seeds, self.video_names)

    def score_control(self, entry: Entry, control: str) -> ResultRow:
        """Metrics of one of a row's controls, over its seeds."""
        measured = []
        for seed in self.seeds:
            run_dir, checkpoint = self.run_dir(entry, seed), self._checkpoint(entry, seed)
            label = self.control_label(entry, seed, control)
            measure = functools.partial(
                measure_control, run_dir, control, self.evaluation, label, self.say
            )
            stage = cached_scores(
                run_dir, checkpoint, control, self.evaluation, measure, label, self.say
            )
            measured.append(stage.record["per_video"])
        return control_row(entry, control, measured, self.seeds, self.video_names)

    # -- results -------------------------------------------------------------------------------
    def write_figures(self) -> list[Path]:
        """A sample GIF and a loss-curve PNG per row, from its first seed's run (redrawn only
        when that checkpoint changed)."""
        written: list[Path] = []
        seed = self.seeds[0]
        for entry in self.entries:
            written += figures.write_run_figures(
                self.run_dir(entry, seed),
                self._checkpoint(entry, seed),
                functools.partial(self.test_dataset_for, entry),
                self.out / "figures",
                entry.slug,
                entry.label,
                self.device,
                precision=self.base.eval.precision,
            )
        self.say(f"figures in {self.out / 'figures'}")
        return written

    def training_settings(self) -> dict[str, Any]:
        """How the rows were trained, from each run's own record (a cached or resumed row as it
        was measured): torch threads and runs at once per row, and over all rows."""
        rows = {}
        for seed in self.seeds:
            for entry in self.entries:
                done = read_state(self.run_dir(entry, seed)).get("train", {})
                rows[self.run_label(entry, seed)] = {
                    "threads": done.get("threads"),  # None: recorded before runs kept it
                    "runs_at_once": done.get("runs_at_once", [1]),
                }
        threads = {row["threads"] for row in rows.values()}
        return {
            "runs_at_once": max(max(row["runs_at_once"]) for row in rows.values()),
            "threads_per_run": threads.pop() if len(threads) == 1 else None,
            "training": rows,
        }

    def context(self) -> dict[str, Any]:
        """Everything a reader needs to know about how the rows were measured."""
        base = self.base
        return {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "profile": self.profile.name,
            "machine": machine_description(self.device, self.numerics.hardware),
            "dataset": {
                "name": base.data.dataset,
                "root": base.data.root,
                "frame_size": base.data.frame_size,
                "unreadable_test_videos": sorted(self.unreadable_test),
                **synthetic_description(self.manifest),
            },
            "budget": {
                "steps": read_state(self.run_dir(self.entries[0], self.seeds[0]))["train"]["steps"],
                "batch_size": base.train.batch_size,
                "lr": {entry.label: self.learning_rate(entry) for entry in self.entries},
                "precision": self.numerics.precision,
                "channels_last": self.numerics.channels_last,
                "requested_precision": self.numerics.requested_precision,
                "requested_channels_last": self.numerics.requested_channels_last,
                "seeds": list(self.seeds),
                **self.training_settings(),
            },
            "inference": {"precision": base.eval.precision},
            "evaluators": scored_floors(self.evaluation.info, self.video_names),
            "detector": self.detector_info,
        }


def _bench_folder(folder: Path) -> bool:
    """A bench folder written before bench folders were locked: its runs or evaluator file."""
    return (folder / "runs").is_dir() or (folder / "evaluators.json").is_file()
