"""The GPU check's workers (gpu_check.py --worker timing|ddp), run as subprocesses so that a
CUDA fault in one ends that step only: step 3's timed training steps at the paper's widths and
step 4b's NCCL and DistributedDataParallel check; and the micro data and configs that the
steps and the parity worker (gpu_check_parity.py) share."""

from __future__ import annotations

import gc
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gpu_check_compare import offered_precisions
from gpu_check_report import REPO, timing_table

# -- step 3: paper widths ------------------------------------------------------------------------
PAPER_CONFIG = REPO / "configs" / "taichi-256.yaml"
PAPER_GENERATORS = ("two_stage", "fomm", "x2face", "monkey_net")
PAPER_BATCH = 7  # taichi-256's global batch of 28 is 4 GPUs x 7
PAPER_WARMUP, PAPER_STEPS = 3, 8


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
    """Step 3's worker: `timing_rows` at the paper's widths on cuda:0, in every precision
    offered; writes timing.json and timing.md."""
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
