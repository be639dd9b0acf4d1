"""What the masker and generator suites share: the two settings (64 px at CPU widths, 256 px at
the paper's), the batches, how a case is timed and how its figures are reported."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kptoolkit.config.schema import ExperimentConfig
from kptoolkit.experiment.components import detector_params
from kptoolkit.registry.presets import CPU64, preset_params

CPU_DETECTOR = detector_params(ExperimentConfig())  # the synthetic-64 default: cpu64 presets
SETTINGS: dict[str, dict[str, Any]] = {
    "paper256": {"size": 256, "detector": {}, "two_stage": {}, "perturbed_mask": {}},
    "cpu64": {
        "size": 64,
        "detector": {
            "block_expansion": CPU_DETECTOR["block_expansion"],
            "max_features": CPU_DETECTOR["max_features"],
            "num_blocks": CPU_DETECTOR["num_blocks"],
            "scale_factor": CPU_DETECTOR["scale_factor"],
        },
        "two_stage": preset_params("generators", "two_stage", CPU64),
        "perturbed_mask": preset_params("maskers", "perturbed_mask", CPU64),
    },
}
BATCHES = [1, 8]
SMOKE_SIZE = 128  # the smallest frame the paper widths' five-level hourglasses take


def case_shape(
    setting: str, batch: int, smoke: bool, smallest: int = SMOKE_SIZE
) -> tuple[int, int]:
    """(frame size, batch) a case runs at: the setting's, or under `--benchmark-disable` (a
    smoke run) the smallest frame the widths take (`smallest`, at most the setting's) and at
    most 2 frames."""
    size = SETTINGS[setting]["size"]
    return (min(size, smallest), min(batch, 2)) if smoke else (size, batch)


def heavy(setting: str, batch: int, backward: bool = False) -> bool:
    """Whether one call takes seconds rather than milliseconds (paper widths, batch 8 or
    a backward pass)."""
    return setting == "paper256" and (batch == 8 or backward)


def measure(benchmark, run: Callable[[], object], slow: bool) -> None:
    """Time `run` itself: rounds calibrated by pytest-benchmark for a fast case; a warm-up call
    then two timed calls for a slow one."""
    if slow:
        benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=1)
    else:
        benchmark(run)


def record(benchmark, label: str, batch: int, peak_mib: float | None) -> None:
    """Print ms per frame (the median call) and the peak memory, and keep both in extra_info."""
    if not benchmark.enabled:
        return
    ms = benchmark.stats.stats.median * 1000 / batch
    benchmark.extra_info.update({"ms_per_frame": ms, "peak_mib": peak_mib, "batch": batch})
    peak = "" if peak_mib is None else f", peak +{peak_mib:.0f} MiB"
    print(f"\n{label}, batch {batch}: {ms:.1f} ms/frame{peak}")
