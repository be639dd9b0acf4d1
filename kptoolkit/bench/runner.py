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
it used, so a second bench reuses every finished stage and an interrupted one resumes (training
continues from its last checkpoint). A run folder holding another config is never overwritten.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from kptoolkit.bench import figures
from kptoolkit.bench.detector_prior import ensure_prior, prior_config, prior_diagnostics
from kptoolkit.bench.profiles import Profile, get_profile
from kptoolkit.bench.results import (
    ResultRow,
    TableSettings,
    build_table,
    published_latex,
    published_markdown,
    results_csv,
    results_json,
    results_latex,
    results_markdown,
    write_text,
)
from kptoolkit.bench.timing import inference_parameters, ms_per_frame
from kptoolkit.config import (
    INFERENCE_KEYS,
    SCORING_KEYS,
    ExperimentConfig,
    ModelConfig,
    load_config,
    split_override,
    structure,
    unstructure,
)
from kptoolkit.data.synthetic import read_manifest
from kptoolkit.engine.checkpoints import list_checkpoints, load_run
from kptoolkit.engine.distributed import DistContext
from kptoolkit.engine.evaluate import evaluate_folders
from kptoolkit.engine.experiment import build_dataset
from kptoolkit.engine.inference import (
    ReconstructionMode,
    quantize,
    reconstruct,
    write_stacked_png,
)
from kptoolkit.engine.trainer import Trainer
from kptoolkit.errors import ConfigError, KptoolkitError
from kptoolkit.metrics.base import VideoScores
from kptoolkit.registry import DATASETS, EVALUATORS, GENERATORS, MASKERS, METRICS
from kptoolkit.resolve import (
    FROZEN_DETECTOR,
    PRESET_KEYS,
    TRAINED_DETECTOR,
    apply_with_presets,
    natural_masker,
    write_derived,
)

STATE_NAME = "bench-state.json"
STAGES = ("data", "evaluators", "detector", "train", "reconstruct", "metrics", "results")
BASELINE_LABELS = {"fomm": "FOMM", "x2face": "X2Face"}
SYNTHETIC_EVALUATORS = {"pose": "synthetic_pose", "identity": "synthetic_id"}
DEFAULT_BASELINES = ("fomm", "x2face")
SAMPLE_FRAMES = 32
REFERENCE_LABEL = "Source frame (no motion)"
REFERENCE_DIR = "reference-source-frame"
ORACLE_MASKER, ORACLE_GENERATOR = "gt_circles", "two_stage"
CONTROL_LABELS = {"static": ", driven by frame 0", "warped": ", warped source only"}
SCORES_PROTOCOL = 2  # per-video sums and counts (protocol 1 stored per-video-averaged scores)


class BenchError(KptoolkitError):
    """A bench stage cannot run with what it was given (or found on disk)."""


@attrs.frozen
class Entry:
    """One row of the bench: a masker x generator pair, a variant or a baseline."""

    masker: str
    generator: str
    role: str  # "variant" or "baseline"

    @property
    def label(self) -> str:
        """The row's name in the tables."""
        if self.role == "baseline":
            return BASELINE_LABELS.get(self.generator, self.generator)
        if self.role == "oracle":
            return f"Oracle: {self.masker} + {self.generator} (ground-truth joints)"
        return f"{self.masker} + {self.generator}"

    @property
    def slug(self) -> str:
        """The row's folder name."""
        return f"{self.masker}+{self.generator}"


def split_names(text: str | Sequence[str] | None) -> list[str]:
    """'a,b , c' -> ['a', 'b', 'c'] (lists pass through); empty items dropped."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    return [item.strip() for item in items if item.strip()]


def plan_entries(
    maskers: Sequence[str], generators: Sequence[str], baselines: Sequence[str]
) -> list[Entry]:
    """Baselines first (each with its natural masker), then every masker x generator variant."""
    if not maskers or not generators:
        raise ConfigError("bench needs at least one --masker and one --generator")
    for name in maskers:
        MASKERS.get(name)  # an unknown name raises with the closest matches
    for name in [*generators, *baselines]:
        GENERATORS.get(name)
    entries = [Entry(natural_masker(g), g, "baseline") for g in baselines]
    entries += [Entry(m, g, "variant") for g in generators for m in maskers]
    unique = []
    for entry in entries:
        if all(e.slug != entry.slug for e in unique):
            unique.append(entry)
    return unique


@attrs.define
class BenchOptions:
    """What `kptoolkit bench` was asked to do."""

    maskers: list[str]
    generators: list[str]
    baselines: list[str] = attrs.field(factory=lambda: list(DEFAULT_BASELINES))
    profile: str = "quick"
    out: str | None = None
    dataset: str | None = None
    kp_checkpoint: str | None = None
    config: str | None = None
    overrides: list[str] = attrs.field(factory=list)
    pose_evaluator: str | None = None
    id_evaluator: str | None = None
    device: str | None = None
    seeds: list[int] | None = None  # None: the config's own seed
    oracle: bool = False  # on data with ground-truth joints, add gt_circles + two_stage
    progress: bool = True


@attrs.define
class BenchOutcome:
    """The finished bench: its rows, where the outputs are, and how long it took."""

    out_dir: Path
    rows: list[ResultRow]
    files: list[Path]
    seconds: float
    report: str  # the measured table in Markdown, with how it was measured


def default_out_dir(profile: str) -> Path:
    """`bench-results/<profile>` in the working directory."""
    return Path("bench-results") / profile


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat or {prefix.rstrip("."): {}}
    if isinstance(data, list):
        flat = {}
        for index, value in enumerate(data):
            flat.update(_flatten(value, f"{prefix}{index}."))
        return flat or {prefix.rstrip("."): []}
    return {prefix.rstrip("."): data}


def config_differences(
    old: ExperimentConfig, new: ExperimentConfig, ignore: Sequence[str] = ()
) -> list[str]:
    """'key: old -> new' for every setting that differs between two configs (`ignore`: keys
    left out of the comparison)."""
    before, after = _flatten(unstructure(old)), _flatten(unstructure(new))
    return [
        f"{key}: {before.get(key, '<absent>')!r} -> {after.get(key, '<absent>')!r}"
        for key in sorted(set(before) | set(after))
        if before.get(key, "<absent>") != after.get(key, "<absent>") and key not in ignore
    ]


def file_key(path: Path) -> dict[str, Any]:
    """Identifies one version of a file cheaply: name, size and modification time."""
    stat = path.stat()
    return {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def read_state(run_dir: Path) -> dict[str, Any]:
    """The stages a run folder has finished (empty when none)."""
    path = run_dir / STATE_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}  # a damaged record only costs a recomputation


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Record finished stages (atomically)."""
    write_text(run_dir / STATE_NAME, json.dumps(state, indent=2) + "\n")


def machine_description(device: torch.device) -> dict[str, Any]:
    """Where the numbers were measured: CPU / GPU, cores, threads and versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    found = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        found["gpu"] = torch.cuda.get_device_name(device)
    return found


class Bench:
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
        self.base = apply_with_presets(base, options.overrides)
        # a config file's or `--set train.lr=...`'s learning rate wins over the profile's
        self._lr_given = bool(options.config) or any(
            split_override(item)[0] == "train.lr" for item in options.overrides
        )
        self.entries = plan_entries(options.maskers, options.generators, options.baselines)
        self.seeds = _check_seeds(options.seeds if options.seeds else [self.base.seed])
        self.out = Path(options.out) if options.out else default_out_dir(self.profile.name)
        self.device = torch.device(
            options.device or ("cuda" if torch.cuda.is_available() else "cpu")
        )
        if options.kp_checkpoint and not Path(options.kp_checkpoint).is_file():
            raise ConfigError(f"--kp-checkpoint: no such file: {options.kp_checkpoint}")
        self.real_dir: Path | None = None
        self.test_dataset: Any = None  # built once by the data stage, read by every later one
        self.dataset_root: Path | None = None
        self.manifest: dict[str, Any] | None = None  # set by the data stage on synthetic data
        self.evaluators: list[torch.nn.Module] = []
        # the evaluators' outputs on the real test frames, computed once for every row
        self.real_outputs: dict[tuple, torch.Tensor] = {}
        self.evaluator_info: dict[str, Any] = {}
        self.stage_index = 0
        self.video_names: list[str] = []  # the table's test videos, in the reference row's order
        self.detector_info: dict[str, Any] = {}
        self._groundtruth_test: Any = None

    # -- reporting -----------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """One progress line of the current stage."""
        stage = STAGES[self.stage_index]
        print(f"[bench {self.stage_index + 1}/{len(STAGES)} {stage}] {text}", flush=True)

    def enter(self, stage: str) -> None:
        """Start stage `stage`."""
        self.stage_index = STAGES.index(stage)

    # -- the whole bench -----------------------------------------------------------------------
    def run(self) -> BenchOutcome:
        """Every stage in order; returns the rows and the files written."""
        started = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        self.enter("data")
        self.prepare_data()
        self.enter("evaluators")
        self.prepare_evaluators()
        self.enter("detector")
        detector = self.prepare_detector()
        self.enter("train")
        for seed in self.seeds:
            for entry in self.entries:
                self.train(entry, seed, self.entry_config(entry, detector, seed))
        self.enter("reconstruct")
        self.reconstruct_reference()
        for seed in self.seeds:
            for entry in self.entries:
                self.reconstruct(entry, seed)
                for control in self.controls(entry):
                    self.reconstruct(entry, seed, control)
        self.enter("metrics")
        rows = [self.score_reference(), *self.floor_rows()]
        rows += [self.score(entry) for entry in self.entries]
        rows += [
            self.score_control(entry, control)
            for entry in self.entries
            for control in self.controls(entry)
        ]
        self.enter("results")
        files = self.write_figures()
        report, written = self.write_results(rows)
        seconds = time.perf_counter() - started
        return BenchOutcome(self.out, rows, files + written, seconds, report)

    # -- data ----------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Point the base config at the dataset (rendering the synthetic one if needed)."""
        data = self.base.data
        chosen = self.options.dataset
        if chosen:
            if Path(chosen).is_dir():
                if data.dataset != "fomm_frames":
                    data.params = {}
                data.dataset, data.root = "fomm_frames", str(Path(chosen).resolve())
            elif chosen in DATASETS:
                if data.dataset != chosen:
                    data.params, data.root = {}, None
                data.dataset = chosen
            else:
                raise ConfigError(
                    f"--dataset {chosen!r} is neither a folder nor a registered dataset "
                    f"({', '.join(DATASETS.names())})"
                )
        if data.dataset == "synthetic_puppets":
            self._prepare_puppets()
        test = build_dataset(self.base, "test")
        train = build_dataset(self.base, "train")
        if not test.videos or not train.videos:
            raise BenchError(
                f"the dataset has {len(train.videos)} train and {len(test.videos)} test videos; "
                "the bench needs both"
            )
        self.test_dataset = test
        self.real_dir = Path(test.videos[0].path).parent
        root = Path(getattr(test, "root", self.real_dir))
        self.dataset_root = root
        self.manifest = read_manifest(root)  # a synthetic dataset's (checks every file): once
        if self.options.oracle and self.manifest is not None:
            oracle = Entry(ORACLE_MASKER, ORACLE_GENERATOR, "oracle")
            if all(e.slug != oracle.slug for e in self.entries):
                self.entries.append(oracle)
        self.say(
            f"{data.dataset}: {len(train.videos)} train / {len(test.videos)} test videos at "
            f"{self.base.data.frame_size} px in {root}"
        )
        motion = (self.manifest or {}).get("motion", {}).get("test")
        if motion:
            self.say(
                f"test motion: joints {motion['joint']:.2f} px from frame 0 on average "
                f"(centroid {motion['centroid']:.2f} px, articulated {motion['articulated']:.2f} "
                f"px), figure {motion['height']:.1f} px tall"
            )

    def _prepare_puppets(self) -> None:
        from kptoolkit.data.puppets import ensure_puppets

        data = self.base.data
        params = dict(data.params)
        params.setdefault("size", data.frame_size)
        known = ("size", "videos", "frames", "synth_seed", "workers")
        chosen = {k: params[k] for k in known if k in params}
        self.say("synthetic puppets: rendering on first use, then cached")
        root = ensure_puppets(data.root, progress=self.options.progress, **chosen)
        data.params, data.root = params, str(root)

    # -- evaluators ----------------------------------------------------------------------------
    def prepare_evaluators(self) -> None:
        """Build (train once, or load) the pose and identity evaluators; report their floors."""
        synthetic = self.manifest is not None
        wanted = {
            "pose": self.options.pose_evaluator,
            "identity": self.options.id_evaluator,
        }
        cache_path = self.out / "evaluators.json"
        cached = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
        info: dict[str, Any] = {}
        for kind, name in wanted.items():
            if name is None:
                name = SYNTHETIC_EVALUATORS[kind] if synthetic else "none"
            if name == "none":
                self.say(f"no {kind} evaluator: its metrics are left blank")
                continue
            evaluator = self._build_evaluator(name)
            if evaluator.kind != kind:
                raise ConfigError(f"evaluator '{name}' is a {evaluator.kind} one, not {kind}")
            identity = {
                "name": name,
                "protocol": SCORES_PROTOCOL,
                "metadata": getattr(evaluator, "metadata", {}),
                "weights": file_key(evaluator.cache_path)
                if hasattr(evaluator, "cache_path")
                else None,
            }
            previous = cached.get(kind, {})
            if previous.get("identity") == identity:
                floor = previous.get("floor")
                self.say(f"{kind}: {name} (cached){_floor_text(floor)}")
            else:
                floor = self._floor(evaluator)
                self.say(f"{kind}: {name}{_floor_text(floor)}")
            info[kind] = {"identity": identity, "floor": floor}
            self.evaluators.append(evaluator)
        write_text(cache_path, json.dumps(info, indent=2) + "\n")
        self.evaluator_info = info

    def _build_evaluator(self, name: str) -> torch.nn.Module:
        factory = EVALUATORS.get(name)
        params: dict[str, Any] = {}
        accepted = inspect.signature(factory).parameters
        if "root" in accepted and self.dataset_root is not None:
            params["root"] = str(self.dataset_root)
        if "steps" in accepted and self.profile.evaluator_steps is not None:
            params["steps"] = self.profile.evaluator_steps
        if "progress" in accepted:
            params["progress"] = self.options.progress
        how = "trained once per dataset, then cached" if "root" in params else "shipped model"
        self.say(f"building evaluator {name} ({how})")
        return EVALUATORS.create(name, **params)

    def _floor(self, evaluator: torch.nn.Module) -> dict[str, float] | None:
        floor = getattr(evaluator, "floor", None)
        if floor is None:
            return None
        return {k: v if isinstance(v, int | dict) else float(v) for k, v in floor().items()}

    # -- detector ------------------------------------------------------------------------------
    def prepare_detector(self) -> str | None:
        """The frozen detector of the keypoint maskers, the same for every seed: the given file,
        or the detector prior (FOMM trained once per dataset, cached); with its diagnostics."""
        needing = [e for e in self.entries if e.role == "variant" and _needs_detector(e.masker)]
        if self.options.kp_checkpoint:
            path = Path(self.options.kp_checkpoint).resolve()
            self.say(f"using the given keypoint detector {path}")
        elif not needing:
            self.say("no variant reads a pretrained detector")
            return None
        else:
            fomm = Entry(natural_masker("fomm"), "fomm", "baseline")
            fomm_config = self.entry_config(fomm, None, self.base.seed)
            users = ", ".join(e.masker for e in needing)
            self.say(f"the detector of {users}: FOMM's, trained once per dataset and cached")
            config = prior_config(fomm_config, self.profile.detector_budget)
            path = ensure_prior(config, self.device, self.say, self.options.progress)
        synthetic_root = self.dataset_root if self.manifest is not None else None
        self.detector_info = prior_diagnostics(path, synthetic_root, self.device)
        if "probe_r2" in self.detector_info:
            self.say(_detector_text(self.detector_info))
        return str(path)

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

    def entry_config(self, entry: Entry, detector: str | None, seed: int = 0) -> ExperimentConfig:
        """The base config with this row's masker, generator and seed (same budget for every
        row)."""
        config = structure(ExperimentConfig, unstructure(self.base))
        config.name = f"bench-{entry.slug}"
        config.seed = seed
        # a component the row changes starts from its preset, without the base one's values
        if config.masker.name != entry.masker:
            config.masker = ModelConfig(entry.masker)
        if config.generator.name != entry.generator:
            config.generator = ModelConfig(entry.generator)
        config.train.lr = self.learning_rate(entry)
        # derived from keypoints.* as the bench always has (a given detector with another K
        # is then reported by the row's training, naming the key)
        rule = write_derived(config).detector
        if rule == TRAINED_DETECTOR:
            config.keypoints.checkpoint = self.options.kp_checkpoint
        elif rule == FROZEN_DETECTOR:
            config.keypoints.checkpoint = detector
        return config

    def _check_same_config(self, run_dir: Path, config: ExperimentConfig) -> None:
        stored_path = run_dir / "config.yaml"
        if not stored_path.is_file():
            return
        differences = config_differences(
            load_config(stored_path), config, ignore=SCORING_KEYS + INFERENCE_KEYS + PRESET_KEYS
        )
        if differences:
            shown = "; ".join(differences[:4])
            more = f" (and {len(differences) - 4} more)" if len(differences) > 4 else ""
            raise BenchError(
                f"{run_dir} holds a run with other settings: {shown}{more}. Use another --out, "
                "or delete that folder to retrain it (nothing was changed)"
            )

    # -- training ------------------------------------------------------------------------------
    def train(self, entry: Entry, seed: int, config: ExperimentConfig) -> dict[str, Any]:
        """Train one row with one seed (or reuse / resume its run); returns its training
        record."""
        run_dir = self.run_dir(entry, seed)
        label = self.run_label(entry, seed)
        self._check_same_config(run_dir, config)
        state = read_state(run_dir)
        done = state.get("train")
        if done and (run_dir / "checkpoints" / done["checkpoint"]).is_file():
            self.say(
                f"{label}: cached ({done['steps']} steps, "
                f"{done['seconds'] / 60:.1f} min of training)"
            )
            return done
        existing = list_checkpoints(run_dir / "checkpoints")
        start = existing[-1][0] if existing else 0
        how = f"resuming at step {start}" if existing else "from scratch"
        self.say(f"{label}: training {how} -> {run_dir}")
        trainer = Trainer(
            config,
            run_dir,
            resume=bool(existing),
            context=DistContext(device=self.device),
            progress=self.options.progress,
        )
        result = trainer.train()
        if result.checkpoint is None:
            raise BenchError(f"{label}: training saved no checkpoint in {run_dir}")
        segments = [
            *state.get("train_segments", []),
            {"from_step": start, "to_step": result.steps, "seconds": result.seconds},
        ]
        covered = sum(s["to_step"] - s["from_step"] for s in segments)
        timed = sum(s["seconds"] for s in segments)
        seconds = timed * result.steps / covered if covered else timed
        done = {
            "steps": result.steps,
            "checkpoint": result.checkpoint.name,
            "seconds": seconds,
            "extrapolated": covered != result.steps,
        }
        state = {"train_segments": segments, "train": done}  # later stages are now stale
        write_state(run_dir, state)
        self.say(f"{label}: {result.steps} steps in {result.seconds / 60:.1f} min")
        return done

    def _checkpoint(self, entry: Entry, seed: int) -> Path:
        state = read_state(self.run_dir(entry, seed))
        return self.run_dir(entry, seed) / "checkpoints" / state["train"]["checkpoint"]

    # -- reconstruction ------------------------------------------------------------------------
    def controls(self, entry: Entry) -> dict[str, ReconstructionMode]:
        """The control reconstructions of a row: driven by frame 0, and for a generator that
        warps the source, that warp alone (before any decoder)."""
        found = {"static": ReconstructionMode(static=True)}
        warped = getattr(GENERATORS.get(entry.generator), "warped_output", None)
        if warped:
            found["warped"] = ReconstructionMode(output=warped)
        return found

    def reconstruct(self, entry: Entry, seed: int, control: str | None = None) -> None:
        """Reconstruct the test videos with a run's final checkpoint (PNG for the metrics), by
        the protocol or as one of the row's controls."""
        run_dir = self.run_dir(entry, seed)
        label = self.control_label(entry, seed, control)
        folder = run_dir / _suffixed("reconstruction", control)
        state = read_state(run_dir)
        checkpoint = self._checkpoint(entry, seed)
        key = file_key(checkpoint)
        done = state.get(folder.name)
        precision = self.base.eval.precision
        if (
            done
            and done["checkpoint"] == key
            and done.get("precision", "fp32") == precision
            and (folder / "png").is_dir()
        ):
            self.say(f"{label}: cached ({done['videos']} videos, {done['frames']} frames)")
            return
        config, models = load_run(checkpoint)
        models.to(self.device)
        result = reconstruct(
            models,
            self.test_dataset_for(entry),
            folder,
            batch_size=config.eval.batch_size,
            max_videos=config.eval.max_videos,
            save_png=True,
            save_mp4=config.eval.save_mp4 and control is None,
            progress=self.options.progress,
            mode=self.controls(entry)[control] if control else None,
            precision=precision,
        )
        if not result.videos:
            raise BenchError(f"{label}: no test video could be reconstructed")
        state[folder.name] = {
            "checkpoint": key,
            "precision": precision,
            "videos": len(result.videos),
            "frames": result.frames,
            "skipped": result.skipped,
        }
        state.pop(_suffixed("scores", control), None)  # scored from the old PNGs
        write_state(run_dir, state)
        self.say(f"{label}: {len(result.videos)} videos, L1 {result.l1:.4f}")

    def reconstruct_reference(self) -> None:
        """The no-motion reference: every test frame 'predicted' as the video's frame 0.

        Any model that learned motion should beat it; on data with little motion it is hard to
        beat, and the table should say so.
        """
        folder = self.out / REFERENCE_DIR
        state = read_state(folder)
        config = self.base
        key = {
            "dataset": config.data.dataset,
            "root": config.data.root,
            "frame_size": config.data.frame_size,
            "max_videos": config.eval.max_videos,
        }
        if state.get("reconstruction") == key:
            self.say(f"{REFERENCE_LABEL}: cached")
            return
        shutil.rmtree(folder / "png", ignore_errors=True)
        dataset = self.test_dataset
        videos = dataset.videos[: config.eval.max_videos]
        for video in videos:
            frames = list(dataset.iter_video(video))
            if not frames:
                continue
            first = quantize(frames[0][None]).numpy()
            repeated = np.repeat(first, len(frames), axis=0)
            write_stacked_png([repeated], folder / "png" / f"{video.name}.png")
        write_state(folder, {"reconstruction": key})
        self.say(f"{REFERENCE_LABEL}: {len(videos)} videos")

    def _scores_key(self, **extra: Any) -> dict[str, Any]:
        return {
            **extra,
            "protocol": SCORES_PROTOCOL,
            "evaluators": {k: v["identity"] for k, v in self.evaluator_info.items()},
        }

    def score_reference(self) -> ResultRow:
        """Metrics of the no-motion reference (no parameters, no training); its videos fix the
        order in which every row's per-video scores are aligned."""
        folder = self.out / REFERENCE_DIR
        state = read_state(folder)
        key = self._scores_key(reconstruction=state.get("reconstruction"))
        done = state.get("scores")
        if done and done["key"] == key:
            self.say(f"{REFERENCE_LABEL}: cached")
        else:
            per_video = self._metrics(self.base, folder / "png", REFERENCE_LABEL)
            done = {"key": key, "per_video": per_video}
            state["scores"] = done
            write_state(folder, state)
        self.video_names = _video_names(done["per_video"])
        return self._untrained_row(REFERENCE_LABEL, "reference", done["per_video"])

    def _untrained_row(self, method: str, role: str, per_video: dict[str, Any]) -> ResultRow:
        return ResultRow(
            method=method,
            role=role,
            masker="-",
            generator="-",
            metrics={},
            params=0,
            ms_per_frame=math.nan,
            train_seconds=math.nan,
            steps=0,
            per_video=self._aligned([per_video]),
        )

    def floor_rows(self) -> list[ResultRow]:
        """The evaluators' own error on real test frames against ground truth, where the
        evaluator reports it per video (the synthetic pose evaluator): one row, or none."""
        rows = []
        for info in self.evaluator_info.values():
            per_video = (info.get("floor") or {}).get("per_video")
            if not per_video:
                continue
            name = info["identity"]["name"]
            method = f"Evaluator floor ({name}: real frames vs ground truth)"
            rows.append(self._untrained_row(method, "floor", per_video))
        return rows

    def _aligned(self, runs: list[dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per metric, (seeds, videos) sums and counts in the reference row's video order; a
        video a run lacks weighs nothing (count 0)."""
        position = {name: i for i, name in enumerate(self.video_names)}
        metrics = [m for m in runs[0] if all(m in run for run in runs)]
        aligned = {}
        for metric in metrics:
            sums = np.zeros((len(runs), len(position)))
            counts = np.zeros((len(runs), len(position)))
            for seed_index, run in enumerate(runs):
                scores = VideoScores.from_json(run[metric])
                for name, total, count in zip(
                    scores.names, scores.sums, scores.counts, strict=True
                ):
                    if name in position:
                        sums[seed_index, position[name]] = total
                        counts[seed_index, position[name]] = count
            aligned[metric] = (sums, counts)
        return aligned

    # -- metrics -------------------------------------------------------------------------------
    def score(self, entry: Entry) -> ResultRow:
        """Metrics on the reconstructed PNGs of every seed's run, parameters and inference
        speed: one row (the seeds' training times and speeds averaged)."""
        measured, trained = [], []
        measure = functools.partial(self._measure, entry)
        for seed in self.seeds:
            done, state = self._cached_scores(entry, seed, None, measure)
            measured.append(done)
            trained.append(state["train"])
        return ResultRow(
            method=entry.label,
            role=entry.role,
            masker=entry.masker,
            generator=entry.generator,
            metrics={},
            params=int(measured[0]["params"]),
            ms_per_frame=float(np.mean([m["ms_per_frame"] for m in measured])),
            train_seconds=float(np.mean([t["seconds"] for t in trained])),
            steps=int(trained[0]["steps"]),
            seeds=list(self.seeds),
            per_video=self._aligned([m["per_video"] for m in measured]),
        )

    def score_control(self, entry: Entry, control: str) -> ResultRow:
        """Metrics of one of a row's controls, over its seeds."""
        measured = []
        measure = functools.partial(self._measure_control, entry, control)
        for seed in self.seeds:
            done, _ = self._cached_scores(entry, seed, control, measure)
            measured.append(done["per_video"])
        return ResultRow(
            method=f"{entry.label}{CONTROL_LABELS[control]}",
            role="control",
            masker=entry.masker,
            generator=entry.generator,
            metrics={},
            params=0,
            ms_per_frame=math.nan,
            train_seconds=math.nan,
            steps=0,
            seeds=list(self.seeds),
            per_video=self._aligned(measured),
        )

    def _cached_scores(
        self,
        entry: Entry,
        seed: int,
        control: str | None,
        measure: Callable[[int, Path, Any], dict[str, Any]],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A run's stored scores (of the protocol, or of one control) when they were measured
        on its current checkpoint under the current scoring settings, else those of
        `measure(seed, checkpoint, key)`, stored; with the run's state."""
        run_dir = self.run_dir(entry, seed)
        state = read_state(run_dir)
        checkpoint = self._checkpoint(entry, seed)
        key = self._scores_key(checkpoint=file_key(checkpoint))
        name = _suffixed("scores", control)
        done = state.get(name)
        if done and done["key"] == key:
            self.say(f"{self.control_label(entry, seed, control)}: cached")
        else:
            done = measure(seed, checkpoint, key)
            state[name] = done
            write_state(run_dir, state)
        return done, state

    def _metrics(
        self, config: ExperimentConfig, png_dir: Path, label: str
    ) -> dict[str, dict[str, list]]:
        """Per metric of the config (those the evaluators allow), each test video's sum and
        count of frame values for the generated PNGs against the real videos."""
        kinds = {e.kind for e in self.evaluators}
        metrics = {}
        for metric in config.metrics:
            needs = set(getattr(METRICS.get(metric.name), "requires", ()))
            if needs <= kinds:
                metrics[metric.name] = METRICS.create(metric.name, **metric.params)
        self.say(f"{label}: scoring {', '.join(metrics)}")
        evaluation = evaluate_folders(
            self.real_dir,
            png_dir,
            metrics,
            self.evaluators,
            batch_size=config.eval.batch_size,
            progress=self.options.progress,
            real_cache=self.real_outputs,
        )
        return {name: scores.to_json() for name, scores in evaluation.scores.items()}

    def _measure_control(
        self, entry: Entry, control: str, seed: int, checkpoint: Path, key: dict[str, Any]
    ) -> dict[str, Any]:
        """The metrics of a control's reconstruction (no parameters or timing: same model)."""
        run_dir = self.run_dir(entry, seed)
        config = load_config(run_dir / "config.yaml")
        png = run_dir / _suffixed("reconstruction", control) / "png"
        label = self.control_label(entry, seed, control)
        return {"key": key, "per_video": self._metrics(config, png, label)}

    def _measure(
        self, entry: Entry, seed: int, checkpoint: Path, key: dict[str, Any]
    ) -> dict[str, Any]:
        config, models = load_run(checkpoint)
        models.to(self.device)
        label = self.run_label(entry, seed)
        png_dir = self.run_dir(entry, seed) / "reconstruction" / "png"
        per_video = self._metrics(config, png_dir, label)
        frames, joints = self._test_frames(entry, config.eval.batch_size)
        speed = ms_per_frame(
            models,
            frames.to(self.device),
            repeats=self.profile.timing_repeats,
            joints=None if joints is None else torch.from_numpy(joints).to(self.device),
            precision=self.base.eval.precision,
        )
        pooled = {k: VideoScores.from_json(v).value("frames") for k, v in per_video.items()}
        self.say(
            f"{label}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in pooled.items())
            + f"; {speed:.1f} ms/frame"
        )
        return {
            "key": key,
            "per_video": per_video,
            "params": inference_parameters(models),
            "ms_per_frame": speed,
            "timing": {
                "batch": int(frames.shape[0]),
                "device": str(self.device),
                "precision": self.base.eval.precision,
            },
        }

    def test_dataset_for(self, entry: Entry) -> Any:
        """The test split as the row's masker reads it (with ground-truth joints for the
        oracle), built once."""
        if not _needs_groundtruth(entry.masker):
            return self.test_dataset
        if self._groundtruth_test is None:
            self._groundtruth_test = build_dataset(self.entry_config(entry, None), "test")
        return self._groundtruth_test

    def _test_frames(self, entry: Entry, count: int) -> tuple[torch.Tensor, Any]:
        """The first `count` frames of the first test video, and their ground-truth joints
        when the row's masker draws them (else None)."""
        dataset = self.test_dataset_for(entry)
        video = dataset.videos[0]
        frames = []
        for frame in dataset.iter_video(video):
            frames.append(frame)
            if len(frames) == count:
                break
        joints = dataset.joints_of(video)[: len(frames)] if dataset.groundtruth else None
        return torch.stack(frames), joints

    # -- results -------------------------------------------------------------------------------
    def write_figures(self) -> list[Path]:
        """A sample GIF and a loss-curve PNG per row, from its first seed's run (redrawn only
        when that checkpoint changed)."""
        written = []
        seed = self.seeds[0]
        for entry in self.entries:
            run_dir = self.run_dir(entry, seed)
            state = read_state(run_dir)
            checkpoint = self._checkpoint(entry, seed)
            gif = self.out / "figures" / f"{entry.slug}-sample.gif"
            curves = self.out / "figures" / f"{entry.slug}-losses.png"
            key = file_key(checkpoint)
            if state.get("figures") == key and gif.is_file() and curves.is_file():
                written += [gif, curves]
                continue
            _, models = load_run(checkpoint)
            models.to(self.device)
            frames, joints = self._test_frames(entry, SAMPLE_FRAMES)
            written.append(figures.write_sample_gif(models, list(frames), gif, joints=joints))
            written.append(figures.write_loss_curves(run_dir / "losses.csv", curves, entry.label))
            state["figures"] = key
            write_state(run_dir, state)
        self.say(f"figures in {self.out / 'figures'}")
        return written

    def context(self) -> dict[str, Any]:
        """Everything a reader needs to know about how the rows were measured."""
        base = self.base
        return {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "profile": self.profile.name,
            "machine": machine_description(self.device),
            "dataset": {
                "name": base.data.dataset,
                "root": base.data.root,
                "frame_size": base.data.frame_size,
                **_synthetic_description(self.manifest),
            },
            "budget": {
                "steps": read_state(self.run_dir(self.entries[0], self.seeds[0]))["train"]["steps"],
                "batch_size": base.train.batch_size,
                "lr": {entry.label: self.learning_rate(entry) for entry in self.entries},
                "amp": base.train.amp,
                "channels_last": base.train.channels_last,
                "seeds": list(self.seeds),
            },
            "inference": {"precision": base.eval.precision},
            "evaluators": self.evaluator_info,
            "detector": self.detector_info,
        }

    def write_results(self, rows: list[ResultRow]) -> tuple[str, list[Path]]:
        """Markdown, CSV, JSON and LaTeX of the measured table, the published table apart."""
        context = self.context()
        caption = (
            f"kptoolkit bench, {self.profile.name} profile, {context['dataset']['name']} at "
            f"{context['dataset']['frame_size']} px, {context['budget']['steps']} steps per model"
        )
        if len(self.seeds) > 1:
            caption += f", mean of seeds {', '.join(map(str, self.seeds))}"
        table = build_table(rows, table_settings(self.base))
        report = f"{_markdown_header(context)}\n\n{results_markdown(table)}"
        published = published_markdown()
        files = [
            write_text(self.out / "results.md", f"{report}\n\n{published}\n"),
            write_text(self.out / "results.csv", results_csv(table)),
            write_text(self.out / "results.json", results_json(table, context)),
            write_text(self.out / "results.tex", results_latex(table, caption)),
            write_text(self.out / "published.md", published + "\n"),
            write_text(self.out / "published.tex", published_latex()),
        ]
        return report, files


def _detector_text(info: dict[str, Any]) -> str:
    """One line on the keypoint maskers' detector: steps, spread and probe R^2."""
    steps = f"{info['steps']} steps" if info.get("steps") is not None else "given file"
    share = info["keypoint_spread_px"] / info["figure_height_px"]
    reference = info.get("centroid_probe_r2")
    centroid = "" if reference is None else f"; the joints' own centroid scores {reference:.3f}"
    return (
        f"keypoint detector ({steps}): keypoint spread {info['keypoint_spread_px']:.2f} px "
        f"({share:.0%} of the figure's height), linear-probe R^2 {info['probe_r2']:.3f} "
        "(keypoints -> ground-truth joints, fitted on train frames, scored on test frames"
        f"{centroid})"
    )


def _suffixed(name: str, control: str | None) -> str:
    """The state key / folder of a reconstruction or its scores ("-<control>" for controls)."""
    return f"{name}-{control}" if control else name


def _synthetic_description(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """Version and motion statistics of a synthetic dataset (nothing for other data)."""
    if manifest is None:
        return {}
    return {"version": manifest["version"], "motion": manifest.get("motion", {})}


def _optimiser_text(budget: dict[str, Any]) -> str:
    """', in bfloat16 autocast, learning rate 0.0002 (FOMM), 0.001 (X2Face, ...)'."""
    by_rate: dict[float, list[str]] = {}
    for label, rate in budget["lr"].items():
        by_rate.setdefault(rate, []).append(label)
    text = ", in bfloat16 autocast" if budget.get("amp") else ""
    if len(by_rate) == 1:
        return text + f", learning rate {next(iter(by_rate)):g}"
    parts = [f"{rate:g} ({', '.join(labels)})" for rate, labels in by_rate.items()]
    return text + ", learning rate " + ", ".join(parts)


def _inference_text(inference: dict[str, Any]) -> str:
    """'; reconstructed in bf16 autocast' unless inference ran in fp32."""
    precision = inference.get("precision", "fp32")
    return "" if precision == "fp32" else f"; test frames reconstructed in {precision} autocast"


def _seed_text(seeds: Sequence[int]) -> str:
    if len(seeds) == 1:
        return f", seed {seeds[0]}"
    return f", once per seed ({', '.join(map(str, seeds))})"


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = [int(seed) for seed in seeds]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds lists a seed twice: {seeds}")
    if any(seed < 0 for seed in seeds):
        raise ConfigError(f"--seeds must be >= 0, got {seeds}")
    return seeds


def _video_names(per_video: dict[str, dict[str, list]]) -> list[str]:
    names: list[str] = []
    for scores in per_video.values():
        names += [n for n in scores["names"] if n not in names]
    return names


def table_settings(config: ExperimentConfig) -> TableSettings:
    """How the config asks per-video scores to be summarised (`eval.*`)."""
    return TableSettings(
        average=config.eval.average,
        resamples=config.eval.bootstrap_resamples,
        seed=config.eval.bootstrap_seed,
        confidence=config.eval.confidence,
    )


def _needs_groundtruth(masker: str) -> bool:
    return bool(getattr(MASKERS.get(masker), "needs_groundtruth", False))


def _needs_detector(masker: str) -> bool:
    return bool(getattr(MASKERS.get(masker), "needs_detector", False))


def _floor_text(floor: dict[str, float] | None) -> str:
    if not floor:
        return ""
    parts = [f"{k} {v:.3f}" for k, v in floor.items() if isinstance(v, float) and math.isfinite(v)]
    return f"; floor: {', '.join(parts)}" if parts else ""


def _markdown_header(context: dict[str, Any]) -> str:
    machine = context["machine"]
    where = machine.get("gpu") or f"{machine['cpu']} ({machine['torch_threads']} threads)"
    lines = [
        f"## kptoolkit bench: {context['profile']} profile",
        "",
        f"Measured {context['date']} on {where}, torch {machine['torch']}. Dataset "
        f"{context['dataset']['name']} at {context['dataset']['frame_size']} px; every row "
        f"trained {context['budget']['steps']} steps at batch {context['budget']['batch_size']}"
        f"{_optimiser_text(context['budget'])}{_seed_text(context['budget']['seeds'])}"
        f"{_inference_text(context.get('inference', {}))}.",
        "L1, PSNR and SSIM on the reconstructed test frames; AKD and MKR from the pose "
        "evaluator, AED from the identity evaluator; lower is better except PSNR and SSIM. "
        f"'{REFERENCE_LABEL}' repeats each test video's frame 0: a model that transfers "
        "motion should beat it. The evaluator-floor row is the pose evaluator's own error on "
        "real frames against the ground-truth joints: differences below it are not resolved.",
    ]
    if context.get("detector", {}).get("probe_r2") is not None:
        lines.append(f"- {_detector_text(context['detector'])}")
    for kind, info in context["evaluators"].items():
        floor = info.get("floor")
        if floor:
            text = ", ".join(
                f"{k} {v:.3f}"
                for k, v in floor.items()
                if k != "frames" and isinstance(v, float) and math.isfinite(v)
            )
            if not text:
                continue
            lines.append(f"- {kind} evaluator `{info['identity']['name']}`, own error: {text}")
    return "\n".join(lines)
