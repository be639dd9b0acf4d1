"""Tolerances and comparisons of the GPU check (gpu_check.py): numbers against numbers within a
stated tolerance, losses.csv tables, and what the commands and pytest report said.

Pure logic, unit-tested on the CPU (tests/test_gpu_check.py).
"""

from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tolerance:
    """|a - b| <= atol + rtol * |a|, a being the reference (the CPU's value)."""

    rtol: float
    atol: float

    def allows(self, reference: float, other: float) -> bool:
        if math.isnan(reference) or math.isnan(other):
            return False
        return abs(other - reference) <= self.atol + self.rtol * abs(reference)

    def describe(self) -> str:
        return f"rtol {self.rtol:g}, atol {self.atol:g}"


# Why these tolerances. Both sides train in fp32 with TF32 off, from the same data, seed and
# initial weights; what is left are the kernels' summation orders. They were measured on the CPU
# with `parity` between two sides that differ in that only: oneDNN's convolutions against
# torch's own (torch.backends.mkldnn off), the contiguous against the channels_last layout, 2
# against 1 threads; 8 steps of each pair. A loss column's difference, over the step's total:
# - step 1 (identical weights and batch): at most 1.8e-7;
# - steps 2-8: at most 2e-4 (FOMM: its equivariance term follows keypoints from a softmax at
#   temperature 0.1, and Adam's first updates, about lr * sign(gradient) per weight, turn a
#   gradient element near 0 that rounds the other way into a whole update); two_stage 3e-6.
# - the same checkpoint reconstructed on both sides: L1 within 6e-8, one 8-bit value in 1e5
#   off by one level; each side's own run: L1 within 1.6e-4 relative.
# bf16 autocast in place of fp32 moves step 1 by 1.1e-4 (two_stage) and 3.5e-4 (FOMM) of the
# total. A GPU adds cuDNN's algorithms, atomics in grid_sample's backward pass and augmentation
# that the suite holds to 1e-4 of the CPU's per pixel (tests/test_augment.py). Hence:
# - step 1 within 1e-4 of the total (550x the CPU's largest; bf16 uses 1.1x and 3.5x of it), later
#   steps within 1e-2 (50x), lr and epoch equal (`compare_losses`);
# - the same checkpoint on both devices: L1 within 1e-4 (2.5% of the values one level off)
#   and no value more than `PNG_LEVELS` levels off;
# - each device's own run: L1 within 1% (60x the CPU's), far below the 15% and more between
#   the micro bench's rows.
LOSS_STEP_ONE = 1e-4  # of the step's total loss
LOSS_LATER = 1e-2
LOSS_ATOL = 1e-7
EXACT_COLUMNS = ("lr", "epoch")  # equal on both sides, to float rounding
L1_SAME_WEIGHTS = Tolerance(rtol=0.0, atol=1e-4)
L1_OWN_RUNS = Tolerance(rtol=1e-2, atol=1e-4)
PNG_LEVELS = 2  # the largest difference of one 8-bit value, same checkpoint on both devices


@dataclass(frozen=True)
class Comparison:
    """One named comparison of reference values against other values."""

    label: str
    ok: bool
    worst_abs: float  # the difference that uses most of its tolerance, absolute ...
    worst_rel: float  # ... and relative to its reference value
    where: str  # its key, or why the comparison failed
    tolerance: str
    compared: int
    used: float = math.nan  # that difference over its tolerance (> 1: out of tolerance)
    note: str = ""  # replaces the numbers in `describe` when set

    def describe(self) -> str:
        verdict = "ok" if self.ok else "OUT OF TOLERANCE"
        if self.note:
            return f"{self.label}: {verdict}: {self.note}"
        if self.compared == 0:
            return f"{self.label}: {verdict} ({self.where})"
        return (
            f"{self.label}: {verdict}: |diff| {self.worst_abs:.3g} (relative "
            f"{self.worst_rel:.3g}) at {self.where}, {self.used:.2g} of its tolerance, the most "
            f"of {self.compared} values; {self.tolerance}"
        )


def compare_values(
    label: str,
    reference: Mapping[str, float],
    other: Mapping[str, float],
    tolerance: Tolerance | Callable[[str], Tolerance],
    tolerance_text: str | None = None,
) -> Comparison:
    """Compare `other` with `reference` key by key (`tolerance` may depend on the key; then
    `tolerance_text` says how). A key missing on either side, or no key at all, fails."""
    tolerance_of = tolerance if callable(tolerance) else (lambda key: tolerance)
    missing = sorted(set(reference) ^ set(other))
    if missing or not reference:
        why = f"missing on one side: {', '.join(missing[:5])}" if missing else "nothing to compare"
        return Comparison(label, False, math.nan, math.nan, why, "", 0)
    ok, worst = True, (-1.0, 0.0, 0.0, "")  # (share of the tolerance, |diff|, relative, key)
    for key in reference:
        a, b, allowed = float(reference[key]), float(other[key]), tolerance_of(key)
        ok = allowed.allows(a, b) and ok
        difference = abs(b - a) if not (math.isnan(a) or math.isnan(b)) else math.inf
        room = allowed.atol + allowed.rtol * abs(a)
        used = difference / room if room else (math.inf if difference else 0.0)
        if used > worst[0]:
            worst = (used, difference, difference / abs(a) if a else math.inf, key)
    text = tolerance_text or "; ".join(sorted({tolerance_of(key).describe() for key in reference}))
    used, difference, relative, key = worst
    return Comparison(label, ok, difference, relative, key, text, len(reference), used)


def read_losses_csv(path: Path) -> dict[int, dict[str, float]]:
    """losses.csv as {step: {column: value}} (every numeric column but the step's)."""
    rows: dict[int, dict[str, float]] = {}
    with Path(path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            step = int(float(row.pop("step")))
            rows[step] = {k: float(v) for k, v in row.items() if v not in ("", None)}
    return rows


def loss_tolerance(step: int, column: str, total: float) -> Tolerance:
    """The tolerance of `column` at training step `step` (1-based) of two runs from the same
    weights: `LOSS_STEP_ONE`, then `LOSS_LATER`, of the step's `total` loss; `EXACT_COLUMNS`
    to float rounding."""
    if column in EXACT_COLUMNS:
        return Tolerance(rtol=1e-6, atol=0.0)
    share = LOSS_STEP_ONE if step <= 1 else LOSS_LATER
    return Tolerance(rtol=0.0, atol=share * abs(total) + LOSS_ATOL)


def compare_losses(
    reference: Mapping[int, Mapping[str, float]],
    other: Mapping[int, Mapping[str, float]],
    label: str = "losses",
) -> Comparison:
    """Two losses.csv tables (`read_losses_csv`), every column of every step, each within
    `loss_tolerance` (the reference's total loss of the step sets the scale)."""
    flat_reference = {f"step {s} {k}": v for s, row in reference.items() for k, v in row.items()}
    flat_other = {f"step {s} {k}": v for s, row in other.items() for k, v in row.items()}

    def tolerance(key: str) -> Tolerance:
        _, step, column = key.split(" ", 2)
        return loss_tolerance(int(step), column, reference[int(step)].get("total", 0.0))

    text = (
        f"within {LOSS_STEP_ONE:g} of the step's total loss at step 1, {LOSS_LATER:g} later; "
        f"{', '.join(EXACT_COLUMNS)} equal"
    )
    return compare_values(label, flat_reference, flat_other, tolerance, text)


def said_numerics(output: str, doing: str = "reconstructing") -> str:
    """What a reconstruct / animate command said it runs at and on ('reconstructing in bf16,
    channels_last (...); NVIDIA H100 (sm_90, ...)' -> 'bf16, channels_last (...); NVIDIA
    H100 (sm_90, ...)'), or ''."""
    for line in output.splitlines():
        if line.startswith(f"{doing} in "):
            return line[len(f"{doing} in ") :].strip()
    return ""


def said_precision(output: str, doing: str = "reconstructing") -> str:
    """The precision in `said_numerics` ('bf16'), or '?'."""
    return said_numerics(output, doing).split(",")[0].strip() or "?"


def said_gpu(output: str, doing: str) -> bool:
    """Whether the command said it runs on a GPU (a compute capability 'sm_XY')."""
    return "(sm_" in said_numerics(output, doing)


def offered_precisions(device_type: str, native_bf16: bool) -> list[str]:
    """The precisions the resolver runs on such a device at full speed: fp32 everywhere, bf16
    where bfloat16 is native, fp16 on CUDA only (kptoolkit.runtime.precision)."""
    offered = ["fp32"]
    if native_bf16:
        offered.append("bf16")
    if device_type == "cuda":
        offered.append("fp16")
    return offered


def junit_counts(xml_text: str) -> dict[str, int]:
    """tests / failures / errors / skipped / passed from a pytest --junitxml report."""
    root = ElementTree.fromstring(xml_text)
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {name: 0 for name in ("tests", "failures", "errors", "skipped")}
    for suite in suites:
        for name in counts:
            counts[name] += int(suite.get(name, 0))
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts
