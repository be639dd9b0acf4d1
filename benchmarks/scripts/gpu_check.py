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
   explained (with the CPU measurements behind them) above `LOSS_STEP_ONE` in
   gpu_check_compare.py.

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
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

# its sibling modules: run as a file, the script has its folder as sys.path[0]
from gpu_check_compare import (
    Tolerance,
    compare_values,
    junit_counts,
    read_losses_csv,
    said_gpu,
    said_numerics,
    said_precision,
)
from gpu_check_parity import PARITY_STEPS, worker_parity
from gpu_check_report import (
    Check,
    StepFailed,
    StepResult,
    Tee,
    format_duration,
    format_summary,
    machine_lines,
    read_json,
    run_command,
    run_or_fail,
    subprocess_env,
    tail,
    timing_table,
)
from gpu_check_workers import (
    PAPER_GENERATORS,
    PAPER_STEPS,
    PAPER_WARMUP,
    micro_overrides,
    render_puppets,
    worker_ddp,
    worker_timing,
)

NO_CUDA_MESSAGE = "no CUDA device: the GPU checks need one; nothing was run"
INSTALL_HINT = (
    'from the repository root: python -m pip install -e ".[dev]" (torch with CUDA comes with it)'
)
EXIT_PASSED = 0
EXIT_NO_CUDA = 0  # nothing to check is not a failure; the message says what happened
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_INSTALLED = 3
DEFAULT_BUDGET_S = 480.0

# -- steps 4-6: micro runs -------------------------------------------------------------------------
MICRO_VIDEOS, MICRO_FRAMES, MICRO_SIZE = 8, 6, 64
TORCHRUN_STEPS = 6


def exit_code(results: Sequence[StepResult]) -> int:
    """0 when every step passed (and at least one ran), else 1."""
    return EXIT_PASSED if results and all(r.passed for r in results) else EXIT_FAILED


# `torchrun --standalone`, from the interpreter running this script
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def worker_command(name: str, *args: Any) -> list[str]:
    """This script run as one of its workers."""
    return [sys.executable, str(Path(__file__).resolve()), "--worker", name, *map(str, args)]


# -- the steps -----------------------------------------------------------------------------------


def step_pytest(check: Check, folder: Path) -> str:
    """Step 1: the suite's CUDA-marked tests; at least one must pass."""
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
    """Step 2: the micro bench on the check's device, its table printed."""
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
    """Step 3: the timing worker's paper-width training steps, its table printed."""
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


def step_torchrun(check: Check, folder: Path, data: Path, gpus: int) -> str:
    """Step 4: a FOMM micro run trained under torchrun."""
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
    """Step 4b: the DDP worker under torchrun (NCCL, all-reduce, DDP's gradients)."""
    command = [*TORCHRUN, "--nproc_per_node=1", *worker_command("ddp", folder)[1:]]
    run_or_fail(check, command, folder / "output.log", 90)
    result = read_json(folder / "ddp.json")
    if not result.get("ok"):
        raise StepFailed(result.get("detail", "the DDP check failed"))
    return result["detail"]


def latest_run_checkpoint(run: Path) -> Path | None:
    """The last checkpoint of a run folder, or None."""
    found = sorted((run / "checkpoints").glob("step-*.pth"))
    return found[-1] if found else None


def step_animate(check: Check, folder: Path, run: Path, data: Path) -> str:
    """Step 5a: `kptoolkit animate` from a run's checkpoint, on the GPU."""
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
    """Step 5b: `kptoolkit reconstruct` in auto, fp32 (and fp16 on CUDA), on the GPU."""
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
    """Step 6: the parity worker's CPU/CUDA comparisons, printed."""
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
    """Describe the machine, run the steps (all, or `only`), write summary.json and print
    the summary; the exit status."""
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
# Entry point
# ================================================================================================


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: OUT_DIR, --only, --budget (and the workers' hidden options)."""
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
    """Run a worker, or the checks when there is a CUDA device; the exit status."""
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
