"""GPU acceptance check: kptoolkit's CUDA paths, each step timed, PASS or FAIL per step.

    bash benchmarks/gpu_check.sh [OUT_DIR]               # from the repository root
    python benchmarks/scripts/gpu_check.py [OUT_DIR] [--only 3,6] [--budget 480]

Every output goes under OUT_DIR (default: a new temporary folder), which must be empty or new:
`gpu_check.log` (this console output), `summary.json`, one folder per step (`step3/`, ...) with
that step's full output, and `cache/` (the KPTOOLKIT_CACHE of every step). First the machine:
each GPU (name, compute capability, memory), torch, CUDA, cuDNN, NCCL, the driver, the TF32
flags, the CPU. Then the steps (0 renders the small puppet dataset that 4-6 use):

1. pytest: the suite's CUDA-marked tests (`python -m pytest -m cuda`); at least one must pass.
2. bench: `kptoolkit bench --profile micro --device cuda`. It runs last: its time on a GPU is
   the least known, and the budget cuts whatever runs last.
3. paper widths: training steps of two_stage (with heatmap_sum and a random frozen detector),
   fomm, x2face and monkey_net at configs/taichi-256.yaml's published widths, 256 px, batch 7
   (the paper's per-GPU batch), with VGG19 perceptual terms of untrained weights (the published
   loss's compute; pretrained weights are never downloaded), in every precision the resolver
   offers on the GPU (fp32; bf16 where the GPU has native bfloat16; fp16): the mean time of a
   step after warm-up, each step between two torch.cuda.synchronize calls, and peak memory.
   fp32 runs as kptoolkit runs it, with torch's TF32 defaults (printed).
4. torchrun: `torchrun --standalone --nproc_per_node=N -m kptoolkit train` (FOMM, micro
   preset), N = 2 on a machine with two GPUs, else 1. With one process kptoolkit makes no
   process group (its world size is 1: kptoolkit.engine.distributed), so 4b checks NCCL and
   DistributedDataParallel directly: a one-process NCCL group, an all-reduce, and a kptoolkit
   network in DDP whose gradients must equal the unwrapped network's.
5. animate (5a) and reconstruct (5b: auto, fp32 and fp16, L1 within 2e-3 of fp32) on step 4's
   run, each checked to have run on the GPU.
6. parity: fixed-seed micro runs of heatmap_sum + two_stage and of FOMM, 6 steps in fp32 with
   TF32 off, on the CPU and on CUDA: their losses.csv, the CPU run's checkpoint reconstructed
   on both devices, and each run reconstructed on its own device, within the tolerances
   explained (with the CPU measurements behind them) above `LOSS_STEP_ONE`.

Exit status: 0 when every step passed, and also when there is no CUDA device (one line says
so, nothing is run and OUT_DIR is not created); 1 when a step failed or was not run for lack
of time; 2 for a bad argument or an OUT_DIR that is not empty; 3 when torch or kptoolkit
cannot be imported (the line says how to install).

The steps are sized for about 5-6 minutes on one H100 (an estimate: no GPU has run them yet).
`--budget` (default 480 s) bounds the whole run: a step is not started with less than 20 s
left, and the running one is stopped when the budget ends, so the summary comes within it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[2]
NO_CUDA_MESSAGE = "no CUDA device: the GPU checks need one; nothing was run"
INSTALL_HINT = (
    'from the repository root: python -m pip install -e ".[dev]" (torch with CUDA comes with it)'
)
EXIT_PASSED = 0
EXIT_NO_CUDA = 0  # nothing to check is not a failure; the message says what happened
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_INSTALLED = 3
PASS, FAIL = "PASS", "FAIL"
DEFAULT_BUDGET_S = 480.0
MIN_STEP_S = 20.0  # a step is not started with less time than this left in the budget
LOG_TAIL_LINES = 25

# -- step 3: paper widths ------------------------------------------------------------------------
PAPER_CONFIG = REPO / "configs" / "taichi-256.yaml"
PAPER_GENERATORS = ("two_stage", "fomm", "x2face", "monkey_net")
PAPER_BATCH = 7  # taichi-256's global batch of 28 is 4 GPUs x 7
PAPER_WARMUP, PAPER_STEPS = 3, 8

# -- steps 4-6: micro runs -------------------------------------------------------------------------
MICRO_VIDEOS, MICRO_FRAMES, MICRO_SIZE = 8, 6, 64
TORCHRUN_STEPS = 6
PARITY_STEPS = 6
PARITY_PAIRS = (("heatmap_sum", "two_stage"), ("", "fomm"))


# ================================================================================================
# Pure logic (unit-tested on the CPU: tests/test_gpu_check.py)
# ================================================================================================


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


@dataclass
class StepResult:
    """One step of the check: its outcome, time and a one-line detail."""

    key: str
    title: str
    status: str
    seconds: float
    detail: str = ""
    log: str = ""

    @property
    def passed(self) -> bool:
        return self.status == PASS


def format_duration(seconds: float) -> str:
    """'42.0 s' or '3 min 05 s'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def format_summary(results: Sequence[StepResult], total_seconds: float) -> str:
    """The final table (step, PASS/FAIL, time, detail) and a verdict line."""
    width = max([len("step"), *(len(f"{r.key} {r.title}") for r in results)])
    lines = [f"{'step':<{width}}  result  {'time':>10}  detail"]
    for r in results:
        lines.append(
            f"{f'{r.key} {r.title}':<{width}}  {r.status:<6}  "
            f"{format_duration(r.seconds):>10}  {r.detail}"
        )
    failed = [r for r in results if not r.passed]
    verdict = (
        f"GPU check PASSED: {len(results)} steps in {format_duration(total_seconds)}"
        if not failed
        else (
            f"GPU check FAILED: {len(failed)} of {len(results)} steps failed "
            f"({', '.join(r.key for r in failed)}) in {format_duration(total_seconds)}"
        )
    )
    return "\n".join([*lines, verdict])


def exit_code(results: Sequence[StepResult]) -> int:
    """0 when every step passed (and at least one ran), else 1."""
    return EXIT_PASSED if results and all(r.passed for r in results) else EXIT_FAILED


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; the first column left-aligned, the others right-aligned."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|:---|" + "---:|" * (len(header) - 1),
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def timing_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Step 3's results (the timing worker's rows) as a Markdown table."""
    header = (
        "generator",
        "masker",
        "precision",
        "layout",
        "params (M)",
        "s/step (mean)",
        "min",
        "peak alloc (MiB)",
        "peak reserved (MiB)",
        "loss first -> last",
        "result",
    )
    body = []
    for r in rows:
        if r.get("error"):
            body.append((r["generator"], r.get("masker", "?"), r["precision"], *["-"] * 7, "FAIL"))
            continue
        body.append(
            (
                r["generator"],
                r["masker"],
                r["precision"] + (" (auto)" if r.get("auto") else ""),
                "channels_last" if r["channels_last"] else "contiguous",
                f"{r['params'] / 1e6:.1f}",
                f"{r['mean_s']:.4f}",
                f"{r['min_s']:.4f}",
                f"{r['peak_allocated_mib']:.0f}",
                f"{r['peak_reserved_mib']:.0f}",
                f"{r['losses'][0]:.4g} -> {r['losses'][-1]:.4g}",
                PASS if r["ok"] else FAIL,
            )
        )
    return markdown_table(header, body)


# ================================================================================================
# Running steps
# ================================================================================================


class Tee:
    """Write to the console and to a log file."""

    def __init__(self, console: TextIO, log: TextIO) -> None:
        self.console, self.log = console, log

    def write(self, text: str) -> int:
        self.console.write(text)
        self.log.write(text)
        return len(text)

    def flush(self) -> None:
        self.console.flush()
        self.log.flush()


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a text file ('' when there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Command:
    """The outcome of one subprocess."""

    returncode: int | None  # None: killed at its time limit
    seconds: float
    log: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        if self.returncode is None:
            return f"timed out after {format_duration(self.seconds)}"
        return f"exit {self.returncode}"


def run_command(
    command: Sequence[str],
    log: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
) -> Command:
    """Run `command` with its output (stdout and stderr) in `log`; kill its process group at
    `timeout` seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(str(c) for c in command)}\n")
        handle.flush()
        process = subprocess.Popen(
            [str(c) for c in command],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group, so that a timeout ends all of it
        )
        try:
            returncode: int | None = process.wait(timeout=max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            process.wait()
            returncode = None
            handle.write(f"\n[gpu_check] killed after {timeout:.0f} s\n")
    return Command(returncode, time.perf_counter() - started, log)


class StepFailed(Exception):
    """A step's check did not hold; the message is the step's detail line."""


@dataclass
class Check:
    """Runs the steps in order under one time budget and collects their results."""

    out: Path
    budget_s: float
    device: str = "cuda"  # "cpu" only to try the steps' wiring on a machine without a GPU
    started: float = field(default_factory=time.perf_counter)
    results: list[StepResult] = field(default_factory=list)

    @property
    def remaining(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    def limit(self, nominal: float) -> float:
        """A subprocess's time limit: `nominal`, or what is left of the budget."""
        return max(1.0, min(nominal, self.remaining - 5.0))

    def step(self, key: str, title: str, body: Callable[[Path], str]) -> StepResult:
        """Run one step: `body(folder)` returns the detail line, or raises StepFailed (or
        anything else: the step fails with the exception's text)."""
        folder = self.out / f"step{key}"
        folder.mkdir(parents=True, exist_ok=True)
        print(f"\n== {key} {title} ({folder})", flush=True)
        started = time.perf_counter()
        if self.remaining < MIN_STEP_S:
            status, detail = FAIL, f"not run: {format_duration(self.budget_s)} budget spent"
        else:
            try:
                status, detail = PASS, body(folder)
            except StepFailed as failure:
                status, detail = FAIL, str(failure)
            except Exception as error:  # a bug in a step must not stop the others
                status, detail = FAIL, f"{type(error).__name__}: {error}"
        result = StepResult(key, title, status, time.perf_counter() - started, detail)
        self.results.append(result)
        print(f"{status} {key} {title} ({format_duration(result.seconds)}): {detail}", flush=True)
        return result


def subprocess_env(out: Path) -> dict[str, str]:
    """The environment of every step's subprocess: the cache under OUT, no downloads."""
    return {
        "KPTOOLKIT_CACHE": str(out / "cache"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
    }


def run_or_fail(check: Check, command: Sequence[str], log: Path, nominal: float) -> Command:
    """Run a step's command; a failure or a timeout raises StepFailed with its log's tail."""
    result = run_command(command, log, check.limit(nominal), subprocess_env(check.out))
    if not result.ok:
        print(tail(log), flush=True)
        raise StepFailed(f"{result.describe()}: {' '.join(map(str, command[:6]))} ... (log {log})")
    return result


# `torchrun --standalone`, from the interpreter running this script
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def worker_command(name: str, *args: Any) -> list[str]:
    """This script run as one of its workers."""
    return [sys.executable, str(Path(__file__).resolve()), "--worker", name, *map(str, args)]


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StepFailed(f"no result in {path}: {error}") from None


# -- the steps -----------------------------------------------------------------------------------


def step_pytest(check: Check, folder: Path) -> str:
    junit = folder / "junit.xml"
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-p", "no:cacheprovider", "-rs"]
    command += [f"--junitxml={junit}", f"--basetemp={folder / 'tmp'}"]
    result = run_command(
        command, folder / "output.log", check.limit(240), subprocess_env(check.out)
    )
    counts = junit_counts(junit.read_text()) if junit.is_file() else None
    print(tail(folder / "output.log", 8), flush=True)
    if counts is None:
        raise StepFailed(f"pytest {result.describe()}, no report (log {result.log})")
    summary = (
        f"{counts['passed']} passed, {counts['failures'] + counts['errors']} failed, "
        f"{counts['skipped']} skipped"
    )
    if not result.ok or counts["passed"] == 0:
        raise StepFailed(f"pytest -m cuda {result.describe()}: {summary}")
    return f"pytest -m cuda: {summary}"


def step_bench(check: Check, folder: Path) -> str:
    bench = folder / "bench"
    command = [sys.executable, "-m", "kptoolkit", "bench", "--profile", "micro"]
    command += ["--device", check.device, "--out", bench, "--no-progress"]
    run_or_fail(check, command, folder / "output.log", 300)
    results = read_json(bench / "results.json")
    machine, budget = results.get("machine", {}), results.get("budget", {})
    rows = results.get("rows", [])
    if not str(machine.get("device", "")).startswith(check.device):
        raise StepFailed(f"the bench ran on {machine.get('device')!r}, not {check.device}")
    print(tail(bench / "results.md", 200).split("\n\n### Published")[0], flush=True)
    return (
        f"{len(rows)} rows on {machine.get('device')}, trained in {budget.get('precision')} "
        f"({'channels_last' if budget.get('channels_last') else 'contiguous'}); "
        f"table in {bench / 'results.md'}"
    )


def step_paper_widths(check: Check, folder: Path) -> str:
    log = folder / "output.log"
    ran = run_command(
        worker_command("timing", folder), log, check.limit(300), subprocess_env(check.out)
    )
    if not (folder / "timing.json").is_file():
        print(tail(log), flush=True)
        raise StepFailed(f"the timing worker: {ran.describe()}, no timing.json (log {log})")
    rows = read_json(folder / "timing.json")["rows"]
    print(timing_table(rows), flush=True)
    failed = [f"{r['generator']} {r['precision']}" for r in rows if not r.get("ok")]
    if failed:
        errors = "; ".join(r["error"] for r in rows if r.get("error"))
        raise StepFailed(f"{len(failed)} of {len(rows)} runs failed: {', '.join(failed)} {errors}")
    precisions = sorted({r["precision"] for r in rows}, key=["fp32", "bf16", "fp16"].index)
    return (
        f"{len(rows)} runs ({len(PAPER_GENERATORS)} generators x {', '.join(precisions)}), "
        f"{PAPER_STEPS} steps each after {PAPER_WARMUP} of warm-up; table in {folder}/timing.md"
    )


def micro_overrides(data: Path, steps: int) -> list[str]:
    """`--set` items for a micro run on the rendered puppets in `data`."""
    return [
        "preset=micro",
        "data.dataset=fomm_frames",
        f"data.root={data}",
        "data.params={}",
        "data.num_workers=0",
        f"train.steps={steps}",
        "train.batch_size=2",
        "train.log_every=1",
        f"train.checkpoint_every={max(steps // 2, 1)}",
        "train.sample_every=1000000",
        "eval.max_videos=2",
        "eval.batch_size=4",
    ]


def step_torchrun(check: Check, folder: Path, data: Path, gpus: int) -> str:
    processes = 2 if gpus >= 2 else 1
    run = folder / "run"
    # no --device on CUDA: each rank takes cuda:<its local rank>, as torchrun users run it
    device = [] if check.device == "cuda" else ["--device", check.device]
    command = [*TORCHRUN, f"--nproc_per_node={processes}", "-m", "kptoolkit", "train"]
    command += ["--generator", "fomm", *device, "--out", run, "--no-progress", "--set"]
    command += micro_overrides(data, TORCHRUN_STEPS)
    run_or_fail(check, command, folder / "output.log", 150)
    steps = sorted(read_losses_csv(run / "losses.csv"))
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text())
    ran_on = (config.get("runtime") or {}).get("device", "?")
    if steps[-1:] != [TORCHRUN_STEPS] or not str(ran_on).startswith(check.device):
        raise StepFailed(f"the run logged steps {steps} on {ran_on!r}")
    if not list((run / "checkpoints").glob("step-*.pth")):
        raise StepFailed(f"no checkpoint in {run / 'checkpoints'}")
    ddp = (
        "NCCL DDP over 2 GPUs"
        if processes == 2
        else "world size 1, so no process group: NCCL and DDP are checked in 4b"
    )
    precision = config["train"]["precision"]
    return f"FOMM micro, {TORCHRUN_STEPS} steps on {ran_on} in {precision} ({ddp})"


def step_ddp(check: Check, folder: Path) -> str:
    command = [*TORCHRUN, "--nproc_per_node=1", *worker_command("ddp", folder)[1:]]
    run_or_fail(check, command, folder / "output.log", 90)
    result = read_json(folder / "ddp.json")
    if not result.get("ok"):
        raise StepFailed(result.get("detail", "the DDP check failed"))
    return result["detail"]


def latest_run_checkpoint(run: Path) -> Path | None:
    found = sorted((run / "checkpoints").glob("step-*.pth"))
    return found[-1] if found else None


def step_animate(check: Check, folder: Path, run: Path, data: Path) -> str:
    checkpoint = run_checkpoint_for_inference(check, folder, run, data)
    driving = sorted((data / "test").iterdir())[0]
    source = sorted(driving.glob("*.png"))[0]
    out = folder / "animation.mp4"
    command = [sys.executable, "-m", "kptoolkit", "animate", "--source", source]
    command += ["--driving", driving, "--checkpoint", checkpoint, "--out", out]
    run_or_fail(check, command, folder / "output.log", 90)
    from kptoolkit.data.video_io import count_frames

    frames, expected = count_frames(out), len(list(driving.glob("*.png")))
    if frames != expected:
        raise StepFailed(f"{out} has {frames} frames, the driving video {expected}")
    said = tail(folder / "output.log", 200)
    if check.device == "cuda" and not said_gpu(said, "animating"):
        raise StepFailed(f"animate did not run on the GPU: {said_numerics(said, 'animating')!r}")
    return f"{frames} frames in {said_precision(said, 'animating')} from {checkpoint.name} -> {out}"


def run_checkpoint_for_inference(check: Check, folder: Path, run: Path, data: Path) -> Path:
    """Step 4's last checkpoint, or one of a micro run trained here when step 4 left none."""
    checkpoint = latest_run_checkpoint(run)
    if checkpoint is not None:
        return checkpoint
    fallback = folder.parent / "step5-run"
    checkpoint = latest_run_checkpoint(fallback)
    if checkpoint is None:
        command = [sys.executable, "-m", "kptoolkit", "train", "--generator", "fomm"]
        command += ["--device", check.device, "--out", fallback, "--no-progress", "--set"]
        command += micro_overrides(data, TORCHRUN_STEPS)
        print(f"step 4 left no checkpoint: training a micro run in {fallback}", flush=True)
        run_or_fail(check, command, fallback.with_suffix(".log"), 120)
        checkpoint = latest_run_checkpoint(fallback)
    if checkpoint is None:
        raise StepFailed(f"no checkpoint to run from (step 4's, or {fallback})")
    return checkpoint


def step_reconstruct(check: Check, folder: Path, run: Path, data: Path) -> str:
    checkpoint = run_checkpoint_for_inference(check, folder, run, data)
    from kptoolkit.engine.reconstruction import read_reconstruction_csv

    scores = {}
    for precision in ("auto", "fp32", "fp16") if check.device == "cuda" else ("auto", "fp32"):
        out = folder / f"reconstruction-{precision}"
        command = [sys.executable, "-m", "kptoolkit", "reconstruct", "--checkpoint", checkpoint]
        command += ["--out", out, "--precision", precision]
        command += [] if precision == "auto" else ["--no-mp4"]
        run_or_fail(check, command, folder / f"output-{precision}.log", 90)
        said = tail(folder / f"output-{precision}.log", 200)
        if check.device == "cuda" and not said_gpu(said, "reconstructing"):
            raise StepFailed(f"reconstruct did not run on the GPU: {said_numerics(said)!r}")
        videos = read_reconstruction_csv(out / "reconstruction.csv")
        frames = sum(v.frames for v in videos)
        scores[precision] = sum(v.l1 * v.frames for v in videos) / max(frames, 1)
    # lower precisions against fp32 on the same weights: tests/test_inference.py holds bf16 to
    # 2e-3 of fp32's L1 on the CPU; fp16 keeps more mantissa than bf16
    low = {k: v for k, v in scores.items() if k != "fp32"}
    compared = compare_values(
        "L1 against fp32", {k: scores["fp32"] for k in low}, low, Tolerance(0.0, 2e-3)
    )
    detail = ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
    if not all(math.isfinite(v) for v in scores.values()) or not compared.ok:
        raise StepFailed(f"L1 {detail}: {compared.describe()}")
    auto = said_precision(tail(folder / "output-auto.log", 200))
    return f"L1 {detail} (auto ran in {auto}; each within 2e-3 of fp32)"


def step_parity(check: Check, folder: Path, data: Path) -> str:
    log = folder / "output.log"
    command = worker_command("parity", folder, "--data", data)
    ran = run_command(command, log, check.limit(240), subprocess_env(check.out))
    if not (folder / "parity.json").is_file():
        print(tail(log), flush=True)
        raise StepFailed(f"the parity worker: {ran.describe()}, no parity.json (log {log})")
    result = read_json(folder / "parity.json")
    for line in result["lines"]:
        print(line, flush=True)
    if not result["ok"]:
        bad = [c["label"] for c in result["comparisons"] if not c["ok"]]
        raise StepFailed(f"out of tolerance: {', '.join(bad)} (details above and in {folder})")
    return (
        f"{len(result['comparisons'])} comparisons within tolerance "
        f"({', '.join(p for p in result['pairs'])}; {PARITY_STEPS} fp32 steps, TF32 off)"
    )


# -- the machine -----------------------------------------------------------------------------------


def machine_lines(torch: Any) -> list[str]:
    """GPU, torch, CUDA, cuDNN, NCCL, driver, CPU and Python, one line each."""
    from kptoolkit.runtime.hardware import cpu_model, describe

    lines = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        major, minor = torch.cuda.get_device_capability(index)
        hardware = describe(f"cuda:{index}")
        lines.append(
            f"GPU {index}: {torch.cuda.get_device_name(index)}, compute capability "
            f"{major}.{minor} (sm_{major}{minor}), {properties.total_memory / 2**30:.1f} GiB, "
            f"{properties.multi_processor_count} SMs, "
            f"{'native' if hardware.native_bf16 else 'no native'} bfloat16"
        )
    nccl = "none"
    if torch.distributed.is_available() and torch.distributed.is_nccl_available():
        version = torch.cuda.nccl.version()  # (2, 21, 5), or an int in older torch
        nccl = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    lines.append(
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
        f"{torch.backends.cudnn.version()}, NCCL {nccl}"
    )
    driver = nvidia_smi_driver()
    if driver:
        lines.append(f"driver {driver}")
    lines.append(
        f"TF32 as kptoolkit runs: matmul {torch.backends.cuda.matmul.allow_tf32}, "
        f"cuDNN convolutions {torch.backends.cudnn.allow_tf32} (torch's defaults; kptoolkit "
        "sets neither)"
    )
    lines.append(f"CPU: {cpu_model()}, {os.cpu_count()} cores; {torch.get_num_threads()} threads")
    lines.append(f"Python {platform.python_version()} on {platform.platform()}")
    lines.append(f"kptoolkit at {REPO} ({git_revision()})")
    return lines


def nvidia_smi_driver() -> str:
    if shutil.which("nvidia-smi") is None:
        return ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, timeout=15).stdout.strip()
    return ""


def git_revision() -> str:
    if shutil.which("git") is None:
        return "no git"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        found = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=15,
        )
        if found.returncode == 0:
            return f"commit {found.stdout.strip()}"
    return "not a git checkout"


def render_puppets(root: Path, videos: int, frames: int, size: int, workers: int = 2) -> Path:
    """A small synthetic puppet dataset (FOMM layout) in `root`: 1 test video in 4."""
    from kptoolkit.data.puppets.writer import generate_dataset

    if not (root / "dataset.json").is_file():
        generate_dataset(
            root,
            videos,
            frames,
            size,
            clips_per_identity=1,
            test_fraction=0.25,
            workers=workers,
            progress=False,
        )
    return root


STEP_TITLES = {
    "0": "micro puppets (the data of 4-6)",
    "1": "pytest -m cuda",
    "2": "micro bench on CUDA",
    "3": "paper-width training steps",
    "4": "torchrun train",
    "4b": "NCCL + DDP",
    "5a": "animate",
    "5b": "reconstruct",
    "6": "CPU/CUDA parity",
}


def run_checks(out: Path, budget_s: float, only: set[str] | None) -> int:
    import torch

    check = Check(out, budget_s)
    try:
        for line in machine_lines(torch):
            print(line, flush=True)
    except Exception as error:  # the steps still say what works
        print(f"could not describe the machine: {type(error).__name__}: {error}", flush=True)
    print(f"outputs in {out}; time budget {format_duration(budget_s)}", flush=True)
    data = out / "step0" / "puppets-64"

    def render(folder: Path) -> str:
        render_puppets(data, MICRO_VIDEOS, MICRO_FRAMES, MICRO_SIZE)
        return f"{MICRO_VIDEOS} videos x {MICRO_FRAMES} frames at {MICRO_SIZE} px in {data}"

    run = out / "step4" / "run"
    # the micro bench runs last: its time on a GPU is the least known, and the budget cuts
    # whatever runs last
    steps: dict[str, Callable[[Path], str]] = {
        "0": render,
        "1": lambda folder: step_pytest(check, folder),
        "3": lambda folder: step_paper_widths(check, folder),
        "4": lambda folder: step_torchrun(check, folder, data, torch.cuda.device_count()),
        "4b": lambda folder: step_ddp(check, folder),
        "5a": lambda folder: step_animate(check, folder, run, data),
        "5b": lambda folder: step_reconstruct(check, folder, run, data),
        "6": lambda folder: step_parity(check, folder, data),
        "2": lambda folder: step_bench(check, folder),
    }
    for key, body in steps.items():
        if only is None or key == "0" or key in only or key.rstrip("ab") in only:
            check.step(key, STEP_TITLES[key], body)
    summary = format_summary(check.results, time.perf_counter() - check.started)
    (out / "summary.json").write_text(
        json.dumps([asdict(r) for r in check.results], indent=2) + "\n"
    )
    print(f"\n{summary}", flush=True)
    return exit_code(check.results)


# ================================================================================================
# Workers (run as subprocesses, so that a CUDA fault in one ends that step only)
# ================================================================================================


def untrained_perceptual(config: Any) -> None:
    """Give every perceptual / LPIPS term an untrained backbone ("random"): the published
    loss's compute without its weights, which kptoolkit never downloads."""
    sections = [config.losses, config.generator.losses or [], config.masker.losses or []]
    for losses in sections:
        for term in losses:
            if term.name in ("perceptual_pyramid", "lpips") and not term.params.get("weights"):
                term.params["weights"] = "random"


def random_detector(config: Any, path: Path) -> Path:
    """A keypoint detector with the config's widths and random weights (seed 0), in the
    official FOMM layout, for maskers that read a frozen one."""
    import torch

    from kptoolkit.experiment.components import detector_params
    from kptoolkit.keypoints.detector import KeypointDetector

    if not path.is_file():
        torch.manual_seed(0)
        detector = KeypointDetector(**detector_params(config))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"kp_detector": detector.state_dict()}, path)
    return path


def detector_file_for(config: Any, folder: Path) -> str | None:
    """A random detector file when the config's masker reads a frozen detector, else None."""
    from kptoolkit.experiment.resolve import FROZEN_DETECTOR, detector_rule

    if detector_rule(config) != FROZEN_DETECTOR:
        return None
    widths = f"{config.preset}-{config.keypoints.num_kp}kp"
    return str(random_detector(config, folder / f"random-detector-{widths}.pth"))


def time_training(
    config: Any,
    device: str,
    warmup: int,
    steps: int,
    kp_checkpoint: str | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """Mean seconds of a training step of `config` on `device` after `warmup` steps, and the
    peak memory of the measured steps.

    A step is the `Trainer`'s own (augmentation, forward, every loss term, backward, the
    optimisers, the gradient scaler for fp16), on one batch loaded once, so that the data
    loader's speed is not in the figure; each step is timed between two synchronisations.
    """
    import torch

    from kptoolkit.engine.distributed import DistContext
    from kptoolkit.engine.run_parts import loss_terms
    from kptoolkit.engine.trainer import Trainer

    target = torch.device(device)
    cuda = target.type == "cuda"

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize(target)

    trainer = Trainer.from_config(
        config,
        out or Path(tempfile.gettempdir()) / "gpu-check-unused",
        kp_checkpoint=kp_checkpoint,
        context=DistContext(device=target),
        progress=False,
    )
    trainer.models.train(True)
    batch = next(trainer._batches())
    seconds, losses = [], []
    for index in range(warmup + steps):
        if index == warmup and cuda:
            synchronize()
            torch.cuda.reset_peak_memory_stats(target)
        synchronize()
        started = time.perf_counter()
        inputs, active = trainer._forward(batch)
        total = sum(loss_terms(inputs, active).values())
        trainer._optimise(total)
        trainer._discriminator_step(inputs)
        trainer.step += 1
        synchronize()
        elapsed = time.perf_counter() - started
        losses.append(float(total.detach()))
        if index >= warmup:
            seconds.append(elapsed)
    params = sum(p.numel() for m in trainer.groups.values() for p in m.parameters())
    result = {
        "generator": config.generator.name,
        "masker": config.masker.name,
        "precision": trainer.numerics.precision,
        "channels_last": trainer.numerics.channels_last,
        "batch": config.train.batch_size,
        "params": params,
        "mean_s": statistics.fmean(seconds),
        "min_s": min(seconds),
        "median_s": statistics.median(seconds),
        "losses": losses,
        "peak_allocated_mib": torch.cuda.max_memory_allocated(target) / 2**20 if cuda else 0.0,
        "peak_reserved_mib": torch.cuda.max_memory_reserved(target) / 2**20 if cuda else 0.0,
        "ok": all(math.isfinite(v) for v in losses),
    }
    del trainer, batch, inputs, total
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def paper_config(generator: str, data: Path, precision: str, batch: int = PAPER_BATCH) -> Any:
    """configs/taichi-256.yaml with `generator` (two_stage keeps the config's heatmap_sum; the
    others take their natural masker) on the puppets in `data`, at `precision`."""
    from kptoolkit.cli.config import resolve

    overrides = [
        "data.dataset=fomm_frames",
        f"data.root={data}",
        "data.params={}",
        "data.num_workers=0",
        f"train.batch_size={batch}",
        f"train.precision={precision}",
        "train.channels_last=auto",
        "train.steps=1000000",
    ]
    config = resolve(str(PAPER_CONFIG), overrides, masker="", generator=generator)
    untrained_perceptual(config)
    return config


def timing_rows(
    folder: Path,
    device: str,
    generators: Sequence[str],
    precisions: Sequence[str],
    make_config: Callable[[str, str], Any],
    warmup: int,
    steps: int,
) -> list[dict[str, Any]]:
    """`time_training` of `make_config(generator, precision)` for every generator and
    precision; a run that fails is a row with its error, and the others still run."""
    import torch

    rows = []
    for generator in generators:
        for precision in precisions:
            label = f"{generator} {precision}"
            started = time.perf_counter()
            try:
                config = make_config(generator, precision)
                kp = detector_file_for(config, folder)
                run = folder / f"run-{generator}-{precision}"
                row = time_training(config, device, warmup, steps, kp, run)
            except Exception as error:  # one failure must not hide the others' figures
                row = {"generator": generator, "precision": precision, "ok": False}
                row["error"] = f"{label}: {type(error).__name__}: {error}"
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            row["wall_s"] = time.perf_counter() - started
            rows.append(row)
            figures = row.get("error") or (
                f"{row['mean_s']:.4f} s/step, {row['peak_allocated_mib']:.0f} MiB"
            )
            print(f"{label}: {figures} ({row['wall_s']:.1f} s)", flush=True)
    return rows


def worker_timing(folder: Path) -> int:
    import torch

    from kptoolkit.runtime.hardware import describe
    from kptoolkit.runtime.precision import resolve_precision

    device = "cuda:0"
    hardware = describe(device)
    auto = resolve_precision("auto", hardware)
    started = time.perf_counter()
    data = render_puppets(folder / "puppets-256", 4, 8, 256, workers=4)
    print(f"rendered 256 px puppets in {time.perf_counter() - started:.1f} s", flush=True)
    rows = timing_rows(
        folder,
        device,
        PAPER_GENERATORS,
        offered_precisions("cuda", hardware.native_bf16),
        lambda generator, precision: paper_config(generator, data, precision),
        PAPER_WARMUP,
        PAPER_STEPS,
    )
    for row in rows:
        row["auto"] = row["precision"] == auto
    record = {
        "device": hardware.processor,
        "batch": PAPER_BATCH,
        "warmup": PAPER_WARMUP,
        "steps": PAPER_STEPS,
        "tf32": {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
        },
        "rows": rows,
    }
    (folder / "timing.json").write_text(json.dumps(record, indent=2) + "\n")
    (folder / "timing.md").write_text(timing_table(rows) + "\n")
    return 0 if all(r.get("ok") for r in rows) else 1


def worker_ddp(folder: Path) -> int:
    """Under torchrun: a one-process NCCL group (gloo without CUDA), an all-reduce, and a
    kptoolkit network in DistributedDataParallel whose gradients must be the unwrapped one's."""
    import copy

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from kptoolkit.keypoints.detector import KeypointDetector
    from kptoolkit.registry.presets import MICRO

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    expected_backend = "nccl" if cuda else "gloo"  # kptoolkit.engine.distributed's choice
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend=expected_backend)
    result: dict[str, Any] = {"backend": dist.get_backend(), "world_size": dist.get_world_size()}
    try:
        value = torch.full((4,), float(dist.get_rank() + 1), device=device)
        dist.all_reduce(value)
        expected = sum(range(1, dist.get_world_size() + 1))
        torch.manual_seed(0)
        params = dict(KeypointDetector.presets[MICRO].params)
        plain = KeypointDetector(**params).to(device)
        device_ids = [local_rank] if cuda else None
        wrapped = DistributedDataParallel(copy.deepcopy(plain), device_ids=device_ids)
        frames = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)).to(device)
        for network in (plain, wrapped):
            out = network(frames)  # a DetectorOutput: logits, heatmaps, keypoints, jacobians
            (out.keypoints.square().mean() + out.logits.float().square().mean()).backward()
        if cuda:
            torch.cuda.synchronize(device)
        pairs = [
            (a.grad, b.grad)
            for a, b in zip(plain.parameters(), wrapped.module.parameters(), strict=True)
            if a.grad is not None
        ]
        if not pairs or any(b is None for _, b in pairs):
            raise RuntimeError("the DDP-wrapped detector got no gradients")
        scale = max(float(a.abs().max()) for a, _ in pairs) or 1.0
        # relative to the largest gradient: the two backward passes may pick cuDNN kernels
        # that sum in other orders; with one process DDP's all-reduce itself changes nothing
        worst = max(float((a - b).abs().max()) for a, b in pairs) / scale
        reduced = bool(torch.all(value == expected))
        ok = reduced and worst <= 1e-5 and result["backend"] == expected_backend
        result.update(
            ok=ok,
            all_reduce=value.tolist(),
            largest_gradient_difference=worst,
            detail=(
                f"{result['backend']} group of {result['world_size']}: all_reduce "
                f"{'ok' if reduced else 'WRONG'}; the micro keypoint detector in DDP matches "
                f"the plain one's gradients to {worst:.2g} of the largest (at most 1e-5)"
            ),
        )
    finally:
        dist.destroy_process_group()
    (folder / "ddp.json").write_text(json.dumps(result, indent=2) + "\n")
    print(result["detail"], flush=True)
    return 0 if result["ok"] else 1


def parity_config(
    data: Path, masker: str, generator: str, steps: int, extra: Sequence[str] = ()
) -> Any:
    """A micro run's config in exact fp32 and the channels_last layout (each device's fp32
    default) on the puppets in `data`."""
    from kptoolkit.cli.config import resolve

    overrides = [
        *micro_overrides(data, steps),
        "train.precision=fp32",
        "train.channels_last=true",
        "eval.save_mp4=false",
        *extra,
    ]
    return resolve(None, overrides, masker=masker, generator=generator)


@dataclass(frozen=True)
class Side:
    """One side of a parity comparison: a label, a device and extra overrides."""

    label: str
    device: str
    extra: tuple[str, ...] = ()


def train_side(config: Any, device: str, out: Path, kp: str | None) -> Path:
    """Train `config` on `device` into `out`; the last checkpoint."""
    import torch

    from kptoolkit.engine.distributed import DistContext
    from kptoolkit.engine.trainer import Trainer

    trainer = Trainer.from_config(
        config,
        out,
        kp_checkpoint=kp,
        context=DistContext(device=torch.device(device)),
        progress=False,
    )
    result = trainer.train()
    if result.checkpoint is None:
        raise RuntimeError(f"no checkpoint in {out}")
    return Path(result.checkpoint)


def reconstruct_on(checkpoint: Path, device: str, out: Path) -> tuple[dict[str, float], Path]:
    """Per-video L1 of the checkpoint's test videos reconstructed on `device` in fp32, and the
    folder of the stacked PNGs."""
    from kptoolkit.engine.checkpoints import load_run
    from kptoolkit.engine.reconstruction import build_test_dataset, reconstruct

    config, models = load_run(checkpoint)
    models.to(device)
    result = reconstruct(
        models,
        build_test_dataset(config),
        out,
        batch_size=config.eval.batch_size,
        max_videos=config.eval.max_videos,
        save_png=True,
        save_mp4=False,
        progress=False,
        precision="fp32",
    )
    return {v.name: v.l1 for v in result.videos}, out / "png"


def png_difference(first: Path, second: Path) -> tuple[int, float]:
    """(largest difference of one 8-bit value, fraction of values that differ) over the
    stacked PNGs of two reconstructions of the same videos."""
    import numpy as np
    from PIL import Image

    largest, differing, total = 0, 0, 0
    names = sorted(p.name for p in first.glob("*.png"))
    if not names or names != sorted(p.name for p in second.glob("*.png")):
        return 255, 1.0
    for name in names:
        a = np.asarray(Image.open(first / name)).astype(np.int16)
        b = np.asarray(Image.open(second / name)).astype(np.int16)
        if a.shape != b.shape:
            return 255, 1.0
        difference = np.abs(a - b)
        largest = max(largest, int(difference.max()))
        differing += int((difference > 0).sum())
        total += difference.size
    return largest, differing / max(total, 1)


def parity(
    folder: Path,
    data: Path,
    steps: int = PARITY_STEPS,
    sides: tuple[Side, Side] = (Side("cpu", "cpu"), Side("cuda", "cuda:0")),
    pairs: Sequence[tuple[str, str]] = PARITY_PAIRS,
) -> dict[str, Any]:
    """Train each pair on both sides with the same seed, data and settings; compare their
    losses.csv, the first side's checkpoint reconstructed on both devices, and each side's own
    run reconstructed on its own device."""
    comparisons: list[Comparison] = []
    lines: list[str] = []
    pair_names = []
    reference, other = sides
    for masker, generator in pairs:
        configs = [parity_config(data, masker, generator, steps, side.extra) for side in sides]
        pair = f"{configs[0].masker.name or 'natural'}+{generator}"
        pair_names.append(pair)
        kp = detector_file_for(configs[0], folder)
        checkpoints = []
        for side, config in zip(sides, configs, strict=True):
            started = time.perf_counter()
            checkpoints.append(train_side(config, side.device, folder / pair / side.label, kp))
            seconds = time.perf_counter() - started
            lines.append(f"{pair}: trained {steps} steps on {side.label} ({seconds:.1f} s)")
        losses = [read_losses_csv(folder / pair / s.label / "losses.csv") for s in sides]
        compared = compare_losses(*losses, label=f"{pair} losses.csv")
        comparisons.append(compared)
        per_step = [
            abs(losses[1][s]["total"] - losses[0][s]["total"]) / abs(losses[0][s]["total"])
            for s in sorted(losses[0])
            if s in losses[1] and losses[0][s].get("total")
        ]
        lines.append(
            f"{pair}: relative difference of the total loss per step: "
            + " ".join(f"{v:.1e}" for v in per_step)
        )
        # the reference side's weights, reconstructed on both devices
        same = [
            reconstruct_on(
                checkpoints[0], side.device, folder / pair / f"same-weights-{side.label}"
            )
            for side in sides
        ]
        comparisons.append(
            compare_values(
                f"{pair} L1, {reference.label}'s checkpoint on both",
                same[0][0],
                same[1][0],
                L1_SAME_WEIGHTS,
            )
        )
        largest, fraction = png_difference(same[0][1], same[1][1])
        comparisons.append(
            Comparison(
                f"{pair} frames, {reference.label}'s checkpoint on both",
                largest <= PNG_LEVELS,
                float(largest),
                fraction,
                "the stacked PNGs",
                f"at most {PNG_LEVELS} levels",
                1,
                note=(
                    f"largest difference {largest} of 255 levels (at most {PNG_LEVELS}), "
                    f"{fraction:.3%} of the 8-bit values differ"
                ),
            )
        )
        # each side's own run on its own device
        own = reconstruct_on(checkpoints[1], other.device, folder / pair / f"own-{other.label}")
        comparisons.append(
            compare_values(f"{pair} L1, each side's own run", same[0][0], own[0], L1_OWN_RUNS)
        )
    lines += [c.describe() for c in comparisons]
    return {
        "ok": all(c.ok for c in comparisons),
        "pairs": pair_names,
        "sides": [asdict(s) for s in sides],
        "comparisons": [asdict(c) for c in comparisons],
        "lines": lines,
    }


def worker_parity(folder: Path, data: Path, **options: Any) -> int:
    """`parity` (its keyword `options` too) with TF32 off, checked to stay off; writes
    parity.json."""
    import torch

    # exact float32 on the GPU: TF32 rounds a product's inputs to 10 bits of mantissa
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    result = parity(folder, data, **options)
    tf32 = {
        "matmul": torch.backends.cuda.matmul.allow_tf32,
        "cudnn": torch.backends.cudnn.allow_tf32,
    }
    result["tf32_after"] = tf32
    if any(tf32.values()):
        result["ok"] = False
        result["lines"].append(f"TF32 was switched back on during the runs: {tf32}")
    else:
        result["lines"].append("TF32 stayed off (matmul and cuDNN) through every run")
    (folder / "parity.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    for line in result["lines"]:
        print(line, flush=True)
    return 0 if result["ok"] else 1


# ================================================================================================
# Entry point
# ================================================================================================


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="GPU acceptance check of kptoolkit (see the module docstring)."
    )
    parser.add_argument("out", nargs="?", default=None, help="output folder (default: a temp dir)")
    parser.add_argument(
        "--only",
        default=None,
        metavar="STEPS",
        help=f"run these steps only, comma-separated ({', '.join(STEP_TITLES)})",
    )
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, metavar="SECONDS")
    parser.add_argument("--worker", choices=("timing", "ddp", "parity"), help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only is not None:
        args.only = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = args.only - set(STEP_TITLES) - {k.rstrip("ab") for k in STEP_TITLES}
        if unknown:
            parser.error(f"unknown steps {sorted(unknown)}; the steps are {', '.join(STEP_TITLES)}")
    return args


def cuda_device_count() -> int | None:
    """The CUDA devices torch sees (None when torch cannot be imported)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        if args.worker == "timing":
            return worker_timing(folder)
        if args.worker == "ddp":
            return worker_ddp(folder)
        return worker_parity(folder, Path(args.data))
    gpus = cuda_device_count()
    if gpus is None:
        print(f"gpu_check: torch is not importable; {INSTALL_HINT}")
        return EXIT_NOT_INSTALLED
    if gpus == 0:
        print(NO_CUDA_MESSAGE)
        return EXIT_NO_CUDA
    try:
        import kptoolkit  # noqa: F401
    except ImportError as error:
        print(f"gpu_check: kptoolkit is not importable ({error}); {INSTALL_HINT}")
        return EXIT_NOT_INSTALLED
    out = Path(args.out).resolve() if args.out else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    if out.exists() and any(out.iterdir()):
        print(f"gpu_check: {out} is not empty; give a new or empty folder")
        return EXIT_USAGE
    out.mkdir(parents=True, exist_ok=True)
    with (out / "gpu_check.log").open("w") as log, _teed(log):
        return run_checks(out, args.budget, args.only)


@contextlib.contextmanager
def _teed(log: TextIO) -> Iterator[None]:
    console = sys.stdout
    sys.stdout = Tee(console, log)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout = console


if __name__ == "__main__":
    raise SystemExit(main())
