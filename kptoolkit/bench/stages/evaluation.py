"""The evaluators the bench scores with: built (trained once per dataset, or shipped), their
floors recorded in `<out>/evaluators.json`, and applied to folders of reconstructed frames."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

from kptoolkit.bench.defaults import SYNTHETIC_EVALUATORS
from kptoolkit.bench.report.formats import write_text
from kptoolkit.bench.report.header import floor_text
from kptoolkit.bench.stages.stage_cache import file_key, reuse_or_compute
from kptoolkit.config.schema import ExperimentConfig
from kptoolkit.engine.evaluate import evaluate_folders
from kptoolkit.errors import ConfigError
from kptoolkit.evaluators.base import Evaluator
from kptoolkit.metrics.base import Metric
from kptoolkit.nn.component import hook
from kptoolkit.registry.registries import EVALUATORS, METRICS

EVALUATORS_NAME = "evaluators.json"
SCORES_PROTOCOL = 2  # per-video sums and counts (protocol 1 stored per-video-averaged scores)


@attrs.define
class Evaluation:
    """The bench's evaluators, what identifies each one and its floor (`info`), and their
    outputs on the real test frames (computed once for every row)."""

    progress: bool = True
    modules: list[torch.nn.Module] = attrs.field(factory=list)
    info: dict[str, Any] = attrs.field(factory=dict)
    real_dir: Path | None = None
    real_outputs: dict[tuple, torch.Tensor] = attrs.field(factory=dict)

    def prepare(
        self,
        out: Path,
        wanted: dict[str, str | None],
        dataset_root: Path | None,
        synthetic: bool,
        steps: int | None,
        say: Callable[[str], None],
    ) -> None:
        """Build the `wanted` evaluator of each kind (None: the synthetic one on synthetic
        data, else none) and report their floors, reusing those recorded for the same
        evaluators."""
        cache_path = out / EVALUATORS_NAME
        cached = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
        info: dict[str, Any] = {}
        for kind, name in evaluator_names(wanted, synthetic).items():
            if name == "none":
                say(f"no {kind} evaluator: its metrics are left blank")
                continue
            evaluator = _build_evaluator(name, dataset_root, steps, self.progress, say)
            if evaluator.kind != kind:
                raise ConfigError(f"evaluator '{name}' is a {evaluator.kind} one, not {kind}")
            info[kind] = _floor_record(kind, name, evaluator, cached.get(kind, {}), say)
            self.modules.append(evaluator)
        write_text(cache_path, json.dumps(info, indent=2) + "\n")
        self.info = info

    def scores_key(self, **extra: Any) -> dict[str, Any]:
        """What stored scores were computed with: `extra`, the protocol and the evaluators."""
        return {
            **extra,
            "protocol": SCORES_PROTOCOL,
            "evaluators": {k: v["identity"] for k, v in self.info.items()},
        }

    def score_folder(
        self, config: ExperimentConfig, png_dir: Path, label: str, say: Callable[[str], None]
    ) -> dict[str, dict[str, list]]:
        """Per metric of the config (those the evaluators allow), each test video's sum and
        count of frame values for the generated PNGs against the real videos."""
        kinds = {e.kind for e in self.modules}
        metrics = {}
        for metric in config.metrics:
            needs = set(hook(METRICS.get(metric.name), "requires", Metric))
            if needs <= kinds:
                metrics[metric.name] = METRICS.create(metric.name, **metric.params)
        say(f"{label}: scoring {', '.join(metrics)}")
        evaluation = evaluate_folders(
            self.real_dir,
            png_dir,
            metrics,
            self.modules,
            batch_size=config.eval.batch_size,
            progress=self.progress,
            real_cache=self.real_outputs,
        )
        return {name: scores.to_json() for name, scores in evaluation.scores.items()}


def evaluator_names(wanted: dict[str, str | None], synthetic: bool) -> dict[str, str]:
    """The evaluator of each kind: the one asked for, else the synthetic one on synthetic data,
    else 'none'."""
    found = {}
    for kind, name in wanted.items():
        found[kind] = name or (SYNTHETIC_EVALUATORS[kind] if synthetic else "none")
    return found


def _build_evaluator(
    name: str,
    dataset_root: Path | None,
    steps: int | None,
    progress: bool,
    say: Callable[[str], None],
) -> torch.nn.Module:
    """The registered evaluator `name`, given the dataset root, training steps and progress
    flag where its factory takes them."""
    factory = EVALUATORS.get(name)
    params: dict[str, Any] = {}
    accepted = inspect.signature(factory).parameters
    if "root" in accepted and dataset_root is not None:
        params["root"] = str(dataset_root)
    if "steps" in accepted and steps is not None:
        params["steps"] = steps
    if "progress" in accepted:
        params["progress"] = progress
    how = (
        "trained on first use for this dataset, loaded from the cache after"
        if "root" in params
        else "shipped model"
    )
    say(f"evaluator {name}: {how}")
    return EVALUATORS.create(name, **params)


def _floor_record(
    kind: str,
    name: str,
    evaluator: torch.nn.Module,
    previous: dict[str, Any],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """What identifies the evaluator and its floor: `previous`'s floor when it was recorded
    for the same evaluator, else measured now."""
    identity = {
        "name": name,
        "protocol": SCORES_PROTOCOL,
        "metadata": hook(evaluator, "metadata", Evaluator),
        "weights": file_key(path) if (path := hook(evaluator, "cache_path", Evaluator)) else None,
    }
    record, reused = reuse_or_compute(
        previous,
        lambda record: record.get("identity") == identity,
        lambda: {"floor": _floor(evaluator)},
    )
    floor = record.get("floor")
    say(f"{kind}: {name}{' (cached)' if reused else ''}{floor_text(floor)}")
    return {"identity": identity, "floor": floor}


def _floor(evaluator: torch.nn.Module) -> dict[str, float] | None:
    """The evaluator's own error on real frames against ground truth, where it reports one."""
    floor = hook(evaluator, "floor", Evaluator)
    if floor is None:
        return None
    return {k: v if isinstance(v, int | dict) else float(v) for k, v in floor().items()}
