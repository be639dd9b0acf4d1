"""The part of `Bench` that prepares what every row waits for: the dataset (its unreadable test
videos dropped), the evaluators trained on it and the keypoint maskers' detector (the given
file, or the detector prior), trained in the bench's process on this machine or as one job each
on another launcher."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kptoolkit.bench.launching import (
    evaluator_job,
    job_device,
    prior_job,
    run_waited_job,
    trains_evaluator,
)
from kptoolkit.bench.plan import BenchOptions, Entry, add_oracle, needs_detector
from kptoolkit.bench.profiles import Profile
from kptoolkit.bench.report.header import detector_text
from kptoolkit.bench.stages.data import prepare_data
from kptoolkit.bench.stages.detector_prior import ensure_prior, prior_diagnostics, prior_stages
from kptoolkit.bench.stages.evaluation import Evaluation, evaluator_names
from kptoolkit.config.schema import ExperimentConfig
from kptoolkit.experiment.components import natural_masker
from kptoolkit.launchers.base import Launcher


class Prerequisites:
    """Data, evaluators and detector; `Bench` sets the attributes below and provides the
    methods declared with them."""

    options: BenchOptions
    profile: Profile
    base: ExperimentConfig
    out: Path
    device: torch.device
    entries: list[Entry]
    launcher: Launcher
    worker_registrations: dict[str, dict[str, Any]] | None
    test_dataset: Any
    real_dir: Path | None
    unreadable_test: dict[str, str]
    dataset_root: Path | None
    manifest: dict[str, Any] | None
    evaluation: Evaluation
    detector: str | None
    detector_info: dict[str, Any]

    # provided by `Bench` (say, stage_prefix) and `RowRuns` (parallelism, entry_plan)
    say: Callable[[str], None]
    stage_prefix: Callable[[], str]
    parallelism: Callable[[], tuple[int, int]]
    entry_plan: Callable[..., Any]

    def prepare_data(self) -> None:
        """Point the base config at the dataset (rendering the synthetic one if needed)."""
        data = prepare_data(self.base, self.options.dataset, self.options.progress, self.say)
        self.test_dataset, self.real_dir = data.test, data.real_dir
        self.unreadable_test = data.unreadable
        self.dataset_root, self.manifest = data.root, data.manifest
        if self.options.oracle and self.manifest is not None:
            add_oracle(self.entries)

    def prepare_evaluators(self) -> None:
        """Build (train once, or load) the pose and identity evaluators; report their floors."""
        self.evaluation = Evaluation(progress=self.options.progress, real_dir=self.real_dir)
        wanted = {"pose": self.options.pose_evaluator, "identity": self.options.id_evaluator}
        if not self.launcher.runs_here:  # trained as jobs the rows wait for, loaded here
            for name in evaluator_names(wanted, self.manifest is not None).values():
                if name != "none" and trains_evaluator(name, self.dataset_root):
                    arguments = (name, str(self.dataset_root), self.profile.evaluator_steps)
                    self.run_waited(
                        f"evaluator-{name}", f"evaluator {name}", evaluator_job, arguments
                    )
        self.evaluation.prepare(
            self.out,
            wanted,
            self.dataset_root,
            synthetic=self.manifest is not None,
            steps=self.profile.evaluator_steps,
            say=self.say,
        )

    def run_waited(self, key: str, label: str, work: Any, arguments: tuple[Any, ...]) -> Any:
        """Run one job that the rows wait for on the launcher; returns its result."""
        self.parallelism()  # decides what reaches the jobs: `worker_registrations`
        return run_waited_job(
            self.launcher,
            key,
            label,
            work,
            arguments,
            self.say,
            self.worker_registrations,
            self.device,
        )

    def reads_detector(self, entry: Entry) -> bool:
        """Whether the row's masker reads the bench's frozen detector."""
        return entry.role == "variant" and needs_detector(entry.masker)

    def bench_prior_stages(self) -> list[ExperimentConfig] | None:
        """The detector prior's stages when the bench trains one (a variant reads a detector
        and none was given)."""
        if self.options.kp_checkpoint or not any(map(self.reads_detector, self.entries)):
            return None
        fomm = Entry(natural_masker("fomm"), "fomm", "baseline")
        # the prior keeps its validated recipe: FOMM as published, without the profile's
        # generator parameters
        fomm_config = self.entry_plan(fomm, None, self.base.seed, recipe=False).config_copy()
        fomm_config.train.threads = None  # trained here with every thread (`prepare_detector`)
        profile = self.profile
        return prior_stages(fomm_config, profile.detector_budget, profile.detector_refine_budget)

    def prepare_detector(self) -> None:
        """The frozen detector of the keypoint maskers, the same for every seed: the given file,
        or the detector prior (FOMM trained once per dataset, cached); with its diagnostics.
        The prior trains here, in this process with every thread, whatever `--jobs` says: it
        is the longest run and scales well to the threads, and so it is the same detector
        (bit for bit) however many runs train side by side afterwards."""
        needing = [e for e in self.entries if self.reads_detector(e)]
        if self.options.kp_checkpoint:
            path = Path(self.options.kp_checkpoint).resolve()
            self.say(f"using the given keypoint detector {path}")
        elif not needing:
            self.say("no variant reads a pretrained detector")
            return
        else:
            users = ", ".join(e.masker for e in needing)
            self.say(f"the detector of {users}: FOMM's, trained once per dataset and cached")
            config = self.bench_prior_stages()
            assert config is not None  # a variant reads a detector and none was given
            if self.launcher.runs_here:
                path = ensure_prior(config, self.device, self.say, self.options.progress)
            else:  # one job that every row waits for
                device = job_device(self.device, runs_here=False, runs_at_once=1)
                arguments = (config, device, self.stage_prefix())
                path = Path(
                    self.run_waited("detector-prior", "detector prior", prior_job, arguments)
                )
        self.use_detector(path)

    def use_detector(self, path: Path) -> None:
        """Make `path` the keypoint maskers' detector and report its diagnostics."""
        synthetic_root = self.dataset_root if self.manifest is not None else None
        self.detector_info = prior_diagnostics(path, synthetic_root, self.device)
        if "probe_r2" in self.detector_info:
            self.say(detector_text(self.detector_info))
        self.detector = str(path)

    # -- metrics -------------------------------------------------------------------------------
