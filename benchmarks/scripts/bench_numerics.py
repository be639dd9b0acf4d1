"""What `auto` precision and layout cost on this machine, path by path, against explicit ones.

For each path the defaults take, the time under `auto` (resolved here, printed) beside explicit
fp32 in the contiguous layout (a plain float32 run), fp32 channels_last and bf16 channels_last:

- train: a real `Trainer` step (data, augmentation, losses, optimiser) of each default bench row
  at the quick profile's setting (64 px, CPU widths, batch 8), as `kptoolkit train` and every
  bench stage (rows and the detector prior) run it;
- infer: one reconstruction pass (the driving frames' structures and the generated frames) of
  each row through `kptoolkit.inference_model`, the wrapper `reconstruct`, `animate` and the
  bench's timing share (64 px, batch 8 and 1).

Every mode of a path is built once and timed in interleaved rounds (each round times every mode
once, a few seconds apart), so a machine whose speed drifts moves them alike; a cell is the
median over rounds, and `auto / fp32` is the median of the per-round ratios. Weights are random
(seed 0). `auto` is never meant to be slower than fp32: a ratio above 1.1 is flagged.

    python benchmarks/scripts/bench_numerics.py                    # ~10 min with native bfloat16
    python benchmarks/scripts/bench_numerics.py --modes auto,fp32  # skip bf16 where it is emulated
    python benchmarks/scripts/bench_numerics.py --paths infer --rounds 7
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_precision import pair_models, puppet_frames, reconstruction_pass  # noqa: E402
from bench_train_precision import base_config, timing_config  # noqa: E402

from kptoolkit import inference_model  # noqa: E402
from kptoolkit.engine.trainer import Trainer  # noqa: E402
from kptoolkit.experiment.components import detector_params  # noqa: E402
from kptoolkit.keypoints.detector import KeypointDetector  # noqa: E402
from kptoolkit.runtime.hardware import describe  # noqa: E402
from kptoolkit.runtime.precision import resolve_numerics  # noqa: E402

ROWS = {  # the default bench's rows: (masker for inference, masker for training, generator)
    "heatmap_sum+two_stage": ("heatmap_sum", "heatmap_sum", "two_stage"),
    "fomm": ("fomm_keypoints", "", "fomm"),
    "x2face": ("frame", "", "x2face"),
}
# mode -> (precision, channels_last)
MODES: dict[str, tuple[str, bool | str]] = {
    "auto": ("auto", "auto"),
    "fp32": ("fp32", False),
    "fp32 channels_last": ("fp32", True),
    "bf16 channels_last": ("bf16", True),
}
FLAG = 1.1  # auto slower than fp32 by more than this is a bug


def _train_runner(pair: str, mode: str, work: Path, data: Path, kp: Path) -> Callable[[int], float]:
    """A trainer of `pair` in `mode`; the returned call trains `n` more steps and gives the
    seconds per step."""
    _, masker, generator = ROWS[pair]
    precision, channels_last = MODES[mode]
    overrides = (f"train.precision={precision}", f"train.channels_last={channels_last}".lower())
    config = timing_config("cpu64", masker, generator, data, 10**8, overrides, log_every=10**8)
    out = work / f"train-{pair}-{mode.replace(' ', '-')}"
    trainer = Trainer.from_config(config, out, kp_checkpoint=str(kp), progress=False)
    # the steps alone: the checkpoint and sample grid each `train()` call ends with are not
    # part of a step
    trainer._save_checkpoint = lambda: None  # type: ignore[method-assign]
    trainer._save_samples = lambda inputs: None  # type: ignore[method-assign]

    def run(steps: int) -> float:
        trainer.total_steps = trainer.step + steps
        started = time.perf_counter()
        trainer.train()
        return (time.perf_counter() - started) / steps

    return run


def _infer_runner(pair: str, mode: str, batch: int, work: Path) -> Callable[[int], float]:
    """A reconstruction pass of `pair` in `mode` on `batch` frames; the returned call runs it
    `n` times and gives the milliseconds per frame."""
    masker_name, _, generator_name = ROWS[pair]
    precision, channels_last = MODES[mode]
    models = copy.deepcopy(pair_models("cpu64", masker_name, generator_name, work))
    masker = inference_model(models.masker, precision, channels_last)
    generator = inference_model(models.generator, precision, channels_last)
    frames = puppet_frames(64, batch)
    one_pass = reconstruction_pass(masker, generator, frames)

    def run(repeats: int) -> float:
        started = time.perf_counter()
        for _ in range(repeats):
            one_pass()
        return (time.perf_counter() - started) / (repeats * batch) * 1000

    return run


def _measure(runners: dict[str, Callable[[int], float]], size: int, rounds: int) -> dict:
    """Per mode: the median of `rounds` interleaved timings; and the per-round auto/fp32."""
    for run in runners.values():
        run(max(1, size // 4))  # warm-up: allocator, oneDNN primitives
    times: dict[str, list[float]] = {mode: [] for mode in runners}
    for _ in range(rounds):
        for mode, run in runners.items():
            times[mode].append(run(size))
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    ratio = None
    if "auto" in times and "fp32" in times:
        ratio = statistics.median(a / b for a, b in zip(times["auto"], times["fp32"], strict=True))
    return {"medians": medians, "ratio": ratio}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default="train,infer", help="train, infer or both")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8, help="training steps per round and mode")
    parser.add_argument("--repeats", type=int, default=10, help="inference passes per round")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-numerics-"))
    hardware = describe("cpu")
    auto = resolve_numerics("auto", "auto", "cpu", hardware)
    print(f"{hardware.summary()}; auto resolves to {auto.describe()}")
    print(
        f"| path | row | auto resolves to | {' | '.join(modes)} | auto / fp32 |\n"
        f"|:---|:---|:---|{'---:|' * len(modes)}---:|"
    )
    paths = args.paths.split(",")
    if "train" in paths:
        from kptoolkit.data.puppets.writer import generate_dataset

        data = work / "data"
        generate_dataset(data, 16, 16, 64, workers=1, progress=False)
        kp = work / "kp.pth"
        torch.manual_seed(0)
        config, _ = base_config("cpu64", "heatmap_sum", "two_stage")
        torch.save({"kp_detector": KeypointDetector(**detector_params(config)).state_dict()}, kp)
        for pair in args.rows.split(","):
            runners = {m: _train_runner(pair, m, work, data, kp) for m in modes}
            found = _measure(runners, args.steps, args.rounds)
            _print_row("train s/step", pair, auto.describe(), modes, found, "{:.3f}")
    if "infer" in paths:
        for batch in (8, 1):
            for pair in args.rows.split(","):
                runners = {m: _infer_runner(pair, m, batch, work) for m in modes}
                found = _measure(runners, args.repeats, args.rounds)
                label = f"infer ms/frame, batch {batch}"
                _print_row(label, pair, auto.describe(), modes, found, "{:.2f}")
    return 0


def _print_row(path: str, pair: str, auto: str, modes: list[str], found: dict, fmt: str) -> None:
    cells = " | ".join(fmt.format(found["medians"][mode]) for mode in modes)
    ratio = found["ratio"]
    shown = "" if ratio is None else f"{ratio:.2f}x" + (" (SLOWER)" if ratio > FLAG else "")
    print(f"| {path} | {pair} | {auto.split(' (')[0]} | {cells} | {shown} |", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
