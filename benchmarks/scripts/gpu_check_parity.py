"""The GPU check's parity worker (gpu_check.py --worker parity, step 6): fixed-seed micro runs
trained on two sides (the CPU and CUDA), their losses.csv and reconstructions compared within
the tolerances of gpu_check_compare.py."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gpu_check_compare import (
    L1_OWN_RUNS,
    L1_SAME_WEIGHTS,
    PNG_LEVELS,
    Comparison,
    compare_losses,
    compare_values,
    read_losses_csv,
)
from gpu_check_workers import detector_file_for, micro_overrides

PARITY_STEPS = 6
PARITY_PAIRS = (("heatmap_sum", "two_stage"), ("", "fomm"))


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
