"""Inference speed and output difference per precision, layout and compilation.

For each masker + generator pair (the bench's rows and the paper's maskers), at 64 px CPU widths
and 256 px paper widths, batch 1 and 8: ms/frame of one reconstruction pass (the driving frames'
structures plus the generated frames; the source structure computed once), peak memory of the
pass, the speed ratio to fp32 eager (contiguous layout, a plain call) and the largest absolute
difference of the generated frames to fp32 eager.

Weights are randomly initialised (seed 0); the frames are synthetic puppets. `--checkpoint` runs
a trained kptoolkit run instead (its own widths and frame size), on frames of `--data` (a
FOMM-layout folder; default: the run's dataset), which is where the differences mean most.

    python benchmarks/scripts/bench_precision.py                  # everything below, ~10 min
    python benchmarks/scripts/bench_precision.py --settings cpu64 --batches 8 --compile
    python benchmarks/scripts/bench_precision.py --checkpoint RUN/checkpoints/step-00002250.pth
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from kptoolkit import inference_model
from kptoolkit.config.schema import ExperimentConfig, load_config
from kptoolkit.engine.prediction import expand_structure, first_of
from kptoolkit.experiment.build import Models, build_models
from kptoolkit.experiment.components import detector_params
from kptoolkit.experiment.plan import plan_experiment
from kptoolkit.keypoints.detector import KeypointDetector
from kptoolkit.runtime.precision import to_float32

ROOT = Path(__file__).resolve().parents[2]  # the repository
PAIRS = {
    "heatmap_sum+two_stage": ("heatmap_sum", "two_stage"),
    "gaussian_circles+two_stage": ("gaussian_circles", "two_stage"),
    "all_k+two_stage": ("all_k", "two_stage"),
    "perturbed_mask+two_stage": ("perturbed_mask", "two_stage"),
    "fomm": ("fomm_keypoints", "fomm"),
    "x2face": ("frame", "x2face"),
}
SETTINGS = {"cpu64": 64, "paper256": 256}
MODES = ("fp32 eager", "fp32 channels_last", "bf16", "bf16 contiguous")


def base_config(setting: str) -> ExperimentConfig:
    """CPU widths (the built-in default) or the paper's (configs/taichi-256.yaml)."""
    if setting == "paper256":
        return load_config(ROOT / "configs" / "taichi-256.yaml")
    return ExperimentConfig()


def random_detector_file(config: ExperimentConfig, folder: Path) -> Path:
    """A randomly initialised detector (seed 0) at the config's widths, saved in the official
    checkpoint layout, for the maskers that read a pretrained detector."""
    path = folder / f"detector-{config.data.frame_size}.pth"
    if not path.exists():
        torch.manual_seed(0)
        detector = KeypointDetector(**detector_params(config))
        torch.save({"kp_detector": detector.state_dict()}, path)
    return path


def pair_models(setting: str, masker: str, generator: str, folder: Path) -> Models:
    """The pair's networks, freshly initialised with seed 0."""
    config = base_config(setting)
    config.masker.name, config.masker.params = masker, {}
    config.generator.name, config.generator.params = generator, {}
    if masker == "all_k":
        config.generator.params["mask_channels"] = config.keypoints.num_kp
    config.keypoints.checkpoint = str(random_detector_file(config, folder))
    config.seed = 0
    return build_models(plan_experiment(config))


def puppet_frames(size: int, count: int) -> torch.Tensor:
    """(count,3,size,size) frames of one synthetic puppet clip in [0, 1]."""
    from kptoolkit.data.puppets.render import render_video

    frames, _, _ = render_video(0, count, size)
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0).contiguous()


def dataset_frames(config: ExperimentConfig, data: str | None, count: int) -> torch.Tensor:
    """The first `count` frames of the first test video of a FOMM-layout folder."""
    from kptoolkit.engine.reconstruction import build_test_dataset

    dataset = build_test_dataset(config, data)
    frames = []
    for frame in dataset.iter_video(dataset.videos[0]):
        frames.append(frame)
        if len(frames) == count:
            break
    return torch.stack(frames)


def reconstruction_pass(
    masker: Callable, generator: Callable, frames: torch.Tensor
) -> Callable[[], torch.Tensor]:
    """One reconstruction pass over `frames` (frame 0 the source), as a zero-argument call."""
    source = frames[:1]
    with torch.inference_mode():
        source_structure = first_of(to_float32(masker(source)))

    def run() -> torch.Tensor:
        with torch.inference_mode():
            driving_structure = masker(frames)
            batch = frames.shape[0]
            outputs = generator(
                source.expand(batch, -1, -1, -1),
                expand_structure(source_structure, batch),
                driving_structure,
            )
            return outputs["prediction"].float()

    return run


def prepared(models: Models, mode: str, compile_model: bool) -> tuple[Callable, Callable]:
    """The masker and generator of `models` as `mode` runs them."""
    if mode == "fp32 eager":
        models.masker.eval()
        models.generator.eval()
        return models.masker, models.generator
    precision = "bf16" if mode.startswith("bf16") else "fp32"
    channels_last = "contiguous" not in mode
    masker = inference_model(models.masker, precision, channels_last=channels_last)
    generator = inference_model(models.generator, precision, channels_last=channels_last)
    if compile_model:
        return torch.compile(masker), torch.compile(generator)
    return masker, generator


def median_ms(run: Callable[[], torch.Tensor], repeats: int, warmup: int = 1) -> float:
    """Median wall milliseconds of `run` after `warmup` calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times)


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(
    label: str,
    build: Callable[[], Models],
    frames: torch.Tensor,
    modes: list[str],
    compile_model: bool,
    repeats: int,
) -> list[dict]:
    """Rows of one pair at one size and batch: every mode against fp32 eager."""
    rows = []
    reference = None
    baseline_ms = None
    for mode in modes:
        for compiled in (False, True) if compile_model and mode != "fp32 eager" else (False,):
            models = build()  # fresh weights each time (same seed): layouts change modules
            masker, generator = prepared(models, mode, compiled)
            run = reconstruction_pass(masker, generator, frames)
            started = time.perf_counter()
            output = run()  # first call (compilation, if any)
            first_ms = 1000.0 * (time.perf_counter() - started)
            ms = median_ms(run, repeats)
            if reference is None:
                reference, baseline_ms = output, ms
            name = f"{mode} compiled" if compiled else mode
            rows.append(
                {
                    "case": label,
                    "mode": name,
                    "ms_per_frame": ms / frames.shape[0],
                    "ratio": ms / baseline_ms,
                    "max_abs_diff": float((output - reference).abs().max()),
                    "first_call_ms": first_ms,
                }
            )
            del models, masker, generator, run
            gc.collect()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="cpu64,paper256")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--pairs", default=",".join(PAIRS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--compile", action="store_true", help="also torch.compile each mode")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--checkpoint", default=None, help="a trained run's checkpoint")
    parser.add_argument("--data", default=None, help="frames for --checkpoint (FOMM layout)")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    if modes[0] != "fp32 eager":
        modes.insert(0, "fp32 eager")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)
    rows = []
    if args.checkpoint:
        from kptoolkit.engine.checkpoints import load_run

        config, _ = load_run(args.checkpoint)
        for batch in map(int, args.batches.split(",")):
            frames = dataset_frames(config, args.data, batch)
            label = (
                f"{Path(args.checkpoint).parent.parent.name} {config.data.frame_size}px b{batch}"
            )
            rows += measure(
                label,
                lambda: load_run(args.checkpoint)[1],
                frames,
                modes,
                args.compile,
                args.repeats,
            )
            print_rows(rows[-len(modes) * (2 if args.compile else 1) :])
    else:
        folder = Path(tempfile.mkdtemp(prefix="bench-precision-"))
        for setting in args.settings.split(","):
            size = SETTINGS[setting]
            for pair in args.pairs.split(","):
                masker, generator = PAIRS[pair]
                for batch in map(int, args.batches.split(",")):
                    frames = puppet_frames(size, batch)
                    label = f"{pair} {setting} b{batch}"
                    new = measure(
                        label,
                        lambda s=setting, m=masker, g=generator: pair_models(s, m, g, folder),
                        frames,
                        modes,
                        args.compile,
                        args.repeats if size == 64 else max(2, args.repeats // 2),
                    )
                    print_rows(new)
                    rows += new
    print(f"peak resident memory of the process: {peak_rss_mib():.0f} MiB", file=sys.stderr)
    return 0


def print_rows(rows: list[dict]) -> None:
    """Markdown rows: case, mode, ms/frame, ratio to fp32 eager, max |diff|, first call."""
    for row in rows:
        print(
            f"| {row['case']} | {row['mode']} | {row['ms_per_frame']:.1f} | {row['ratio']:.2f}x "
            f"| {row['max_abs_diff']:.2e} ({row['max_abs_diff'] * 255:.2f}/255) "
            f"| {row['first_call_ms']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    raise SystemExit(main())
