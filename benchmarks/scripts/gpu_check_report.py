"""What the GPU check (gpu_check.py) prints and how it runs its steps: step results, the
summary and the timing tables, the console teed to the log, subprocesses under a time limit,
the machine's description, and `Check`, which runs the steps under one time budget."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[2]
PASS, FAIL = "PASS", "FAIL"
MIN_STEP_S = 20.0  # a step is not started with less time than this left in the budget
LOG_TAIL_LINES = 25


# ================================================================================================
# Results, summary and tables (unit-tested on the CPU: tests/test_gpu_check.py)
# ================================================================================================


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


def read_json(path: Path) -> Any:
    """A step's JSON result; StepFailed when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StepFailed(f"no result in {path}: {error}") from None


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
    """The NVIDIA driver's version from nvidia-smi ('' without it)."""
    if shutil.which("nvidia-smi") is None:
        return ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, timeout=15).stdout.strip()
    return ""


def git_revision() -> str:
    """The checkout's commit (git describe), or why there is none."""
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
