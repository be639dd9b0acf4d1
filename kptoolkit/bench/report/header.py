"""The bench's report: the Markdown header saying how the rows were measured, the machine they
were measured on, and the results files."""

from __future__ import annotations

import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from kptoolkit.bench.report.formats import (
    published_latex,
    published_markdown,
    results_csv,
    results_json,
    results_latex,
    results_markdown,
    write_text,
)
from kptoolkit.bench.report.results import ResultRow, TableSettings, build_table
from kptoolkit.bench.report.rows import REFERENCE_LABEL
from kptoolkit.config.schema import AUTO, ExperimentConfig
from kptoolkit.runtime.hardware import Hardware, cpu_identity, cpu_model, describe


def machine_description(device: torch.device, hardware: Hardware | None = None) -> dict[str, Any]:
    """Where the numbers were measured: the device's `Hardware` record (probed unless given:
    CPU or GPU, its capability and bfloat16, torch, threads) and the Python and platform
    versions."""
    hardware = hardware or describe(device)
    found = {
        "cpu": cpu_model() if device.type == "cuda" else hardware.processor,
        "cpu_identity": cpu_identity(),
        "cores": hardware.cores,
        "torch_threads": hardware.threads,
        "device": str(device),
        "torch": hardware.torch,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "capability": hardware.capability,
        "native_bf16": hardware.native_bf16,
    }
    if device.type == "cuda":
        found["gpu"] = hardware.processor
    return found


def table_settings(config: ExperimentConfig) -> TableSettings:
    """How the config asks per-video scores to be summarised (`eval.*`)."""
    return TableSettings(
        average=config.eval.average,
        resamples=config.eval.bootstrap_resamples,
        seed=config.eval.bootstrap_seed,
        confidence=config.eval.confidence,
    )


def write_results(
    out: Path,
    rows: list[ResultRow],
    context: dict[str, Any],
    config: ExperimentConfig,
    seeds: Sequence[int],
) -> tuple[str, list[Path]]:
    """Markdown, CSV, JSON and LaTeX of the measured table, the published table apart; returns
    the measured table in Markdown (with its header) and the files written."""
    caption = (
        f"kptoolkit bench, {context['profile']} profile, {context['dataset']['name']} at "
        f"{context['dataset']['frame_size']} px, {context['budget']['steps']} steps per model"
    )
    if len(seeds) > 1:
        caption += f", mean of seeds {', '.join(map(str, seeds))}"
    table = build_table(rows, table_settings(config))
    report = f"{markdown_header(context)}\n\n{results_markdown(table)}"
    published = published_markdown()
    files = [
        write_text(out / "results.md", f"{report}\n\n{published}\n"),
        write_text(out / "results.csv", results_csv(table)),
        write_text(out / "results.json", results_json(table, context)),
        write_text(out / "results.tex", results_latex(table, caption)),
        write_text(out / "published.md", published + "\n"),
        write_text(out / "published.tex", published_latex()),
    ]
    return report, files


def detector_text(info: dict[str, Any]) -> str:
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


def optimiser_text(budget: dict[str, Any]) -> str:
    """', in bfloat16 autocast, channels_last (auto), learning rate 0.0002 (FOMM), 0.001
    (X2Face, ...)'."""
    by_rate: dict[float, list[str]] = {}
    for label, rate in budget["lr"].items():
        by_rate.setdefault(rate, []).append(label)
    text = _precision_text(budget)
    if len(by_rate) == 1:
        return text + f", learning rate {next(iter(by_rate)):g}"
    parts = [f"{rate:g} ({', '.join(labels)})" for rate, labels in by_rate.items()]
    return text + ", learning rate " + ", ".join(parts)


AUTOCAST_NAMES = {"bf16": "bfloat16", "fp16": "float16"}


def _precision_text(budget: dict[str, Any]) -> str:
    """', in bfloat16 autocast, channels_last (auto)': the training precision and layout, and
    whether `auto` chose them for this machine."""
    precision = budget["precision"]
    name = AUTOCAST_NAMES.get(precision)
    text = f", in {name} autocast" if name else ", in float32"
    text += ", channels_last" if budget["channels_last"] else ", contiguous layout"
    return text + (" (auto)" if budget.get("requested_precision") == AUTO else "")


def _inference_text(inference: dict[str, Any]) -> str:
    """'; reconstructed in bf16 autocast' unless inference ran in fp32."""
    precision = inference.get("precision", "fp32")
    return "" if precision == "fp32" else f"; test frames reconstructed in {precision} autocast"


def _parallel_text(budget: dict[str, Any]) -> str:
    """'; trained 2 runs at a time, 1 thread each' when runs trained side by side with one
    setting; each row's own threads and runs at once when the rows differ (a resumed or cached
    row keeps how it was trained)."""
    # a results file from before rows recorded their own settings has one for all
    every = {
        "threads": budget.get("threads_per_run"),
        "runs_at_once": [budget.get("runs_at_once", 1)],
    }
    rows = budget.get("training") or {"": every}
    settings = {(row["threads"], tuple(row["runs_at_once"])) for row in rows.values()}
    if len(settings) == 1:
        threads, runs = settings.pop()
        if max(runs) <= 1:
            return ""
        return f"; trained {_runs_text(runs)}, {_threads_text(threads)} each"
    parts = [
        f"{label} {_threads_text(row['threads'])}, {_runs_text(row['runs_at_once'])}"
        for label, row in rows.items()
    ]
    return "; rows trained with their own settings: " + "; ".join(parts)


def _threads_text(threads: int | None) -> str:
    if threads is None:
        return "threads not recorded"
    return f"{threads} thread{'s' if threads > 1 else ''}"


def _runs_text(runs: Sequence[int]) -> str:
    """'2 runs at a time', 'alone', or 'alone / 2 runs at a time' for a run resumed
    another way than it began."""
    words = ["alone" if count == 1 else f"{count} runs at a time" for count in sorted(runs)]
    return " / ".join(words)


def _seed_text(seeds: Sequence[int]) -> str:
    """', seed 0', or ', once per seed (0, 1)' for several."""
    if len(seeds) == 1:
        return f", seed {seeds[0]}"
    return f", once per seed ({', '.join(map(str, seeds))})"


def floor_text(floor: dict[str, Any] | None) -> str:
    """'; floor: akd 1.234, mkr 0.050' of an evaluator's finite floor values (else '')."""
    if not floor:
        return ""
    parts = [f"{k} {v:.3f}" for k, v in floor.items() if isinstance(v, float) and math.isfinite(v)]
    return f"; floor: {', '.join(parts)}" if parts else ""


def _recipe_text(identity: dict[str, Any]) -> str:
    """' (trained 400 steps, batch 32, seed 0: synthetic_pose-1a2b.pth)' for an evaluator that
    kptoolkit trained (which of its cached recipes scored the table), else ''."""
    metadata, weights = identity.get("metadata") or {}, identity.get("weights") or {}
    if "steps" not in metadata:
        return ""
    recipe = f"trained {metadata['steps']} steps, batch {metadata.get('batch_size')}, seed "
    recipe += str(metadata.get("seed"))
    return f" ({recipe}: {weights['name']})" if weights.get("name") else f" ({recipe})"


def _values_text(values: dict[str, Any]) -> str:
    """'akd 7.515, mkr 0.100' of the finite float values."""
    return ", ".join(
        f"{k} {v:.3f}" for k, v in values.items() if isinstance(v, float) and math.isfinite(v)
    )


def markdown_header(context: dict[str, Any]) -> str:
    """The Markdown heading and paragraphs that say how, where and on what the rows were
    measured, with the detector's and the evaluators' own error."""
    machine = context["machine"]
    identity = f"; {machine['cpu_identity']}" if machine.get("cpu_identity") else ""
    where = machine.get("gpu") or f"{machine['cpu']} ({machine['torch_threads']} threads{identity})"
    bf16 = "native bfloat16" if machine["native_bf16"] else "no native bfloat16"
    where += f", {machine['capability']}, {bf16}"
    lines = [
        f"## kptoolkit bench: {context['profile']} profile",
        "",
        f"Measured {context['date']} on {where}, torch {machine['torch']}. Dataset "
        f"{context['dataset']['name']} at {context['dataset']['frame_size']} px; every row "
        f"trained {context['budget']['steps']} steps at batch {context['budget']['batch_size']}"
        f"{optimiser_text(context['budget'])}{_seed_text(context['budget']['seeds'])}"
        f"{_parallel_text(context['budget'])}"
        f"{_inference_text(context.get('inference', {}))}.",
        "L1, PSNR and SSIM on the reconstructed test frames; AKD and MKR from the pose "
        "evaluator, AED from the identity evaluator; lower is better except PSNR and SSIM. "
        f"'{REFERENCE_LABEL}' repeats each test video's frame 0: a model that transfers "
        "motion should beat it. The evaluator-floor row is the pose evaluator's own error on "
        "real frames against the ground-truth joints: differences below it are not resolved.",
    ]
    unreadable = context["dataset"].get("unreadable_test_videos")
    if unreadable:
        lines.append(
            f"- {len(unreadable)} test video{'s' if len(unreadable) > 1 else ''} could not be "
            f"read and {'are' if len(unreadable) > 1 else 'is'} left out of every row: "
            f"{', '.join(unreadable)}"
        )
    if context.get("detector", {}).get("probe_r2") is not None:
        lines.append(f"- {detector_text(context['detector'])}")
    for kind, info in context["evaluators"].items():
        floor = info.get("floor")
        if floor:
            text = _values_text(floor)
            if not text:
                continue
            scored = info.get("scored_floor")
            if scored:  # the floor row's numbers first: the table scores these videos only
                text = (
                    f"{_values_text(scored)} on the {scored['videos']} scored test videos (the "
                    f"floor row); {text} on all of them"
                )
            name = f"`{info['identity']['name']}`{_recipe_text(info['identity'])}"
            lines.append(f"- {kind} evaluator {name}, own error: {text}")
    return "\n".join(lines)
