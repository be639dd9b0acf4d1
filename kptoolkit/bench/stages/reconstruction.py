"""A run's test reconstructions with its final checkpoint: by the protocol, or as one of the
row's controls (driven by frame 0; the generator's warp alone)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kptoolkit.bench.stages.stage_cache import cached_stage, file_key, read_state
from kptoolkit.engine.checkpoints import load_run
from kptoolkit.engine.reconstruction import ReconstructionMode, reconstruct
from kptoolkit.generators.base import Generator
from kptoolkit.nn.component import hook
from kptoolkit.registry.registries import GENERATORS
from kptoolkit.utils.locks import folder_lock


def suffixed(name: str, control: str | None) -> str:
    """The state key / folder of a reconstruction or its scores ("-<control>" for controls)."""
    return f"{name}-{control}" if control else name


def controls(generator: str) -> dict[str, ReconstructionMode]:
    """The control reconstructions of a row: driven by frame 0, and for a generator that
    warps the source, that warp alone (before any decoder)."""
    found = {"static": ReconstructionMode(static=True)}
    warped = hook(GENERATORS.get(generator), "warped_output", Generator)
    if warped:
        found["warped"] = ReconstructionMode(output=warped)
    return found


def reconstructions_recorded(run_dir: Path, row_controls: dict[str, ReconstructionMode]) -> bool:
    """Whether the run's folder records its test reconstructions, by the protocol and as each
    of `row_controls` (fresh or not: the reconstruct stage checks that)."""
    state = read_state(run_dir)
    return all(suffixed("reconstruction", control) in state for control in (None, *row_controls))


def reconstruct_run(
    run_dir: Path,
    checkpoint: Path,
    dataset: Callable[[], Any],
    control: str | None,
    mode: ReconstructionMode | None,
    *,
    precision: str,
    device: torch.device,
    progress: bool,
    label: str,
    say: Callable[[str], None],
) -> None:
    """Reconstruct the test videos of `dataset()` with `checkpoint` into the run's
    reconstruction folder (PNG for the metrics), by the protocol or as `control` (in `mode`),
    unless they were with the same checkpoint and precision. The run folder is locked meanwhile
    (`FolderBusyError` when another process holds it)."""
    folder = run_dir / suffixed("reconstruction", control)
    key = file_key(checkpoint)

    def fresh(done: dict[str, Any]) -> bool:
        return (
            done["checkpoint"] == key
            and done.get("precision", "fp32") == precision
            and (folder / "png").is_dir()
        )

    def run(state: dict[str, Any]) -> dict[str, Any]:
        config, models = load_run(checkpoint)
        models.to(device)
        result = reconstruct(
            models,
            dataset(),
            folder,
            batch_size=config.eval.batch_size,
            max_videos=config.eval.max_videos,
            save_png=True,
            save_mp4=config.eval.save_mp4 and control is None,
            progress=progress,
            mode=mode,
            precision=precision,
        )
        say(f"{label}: {len(result.videos)} videos, L1 {result.l1:.4f}")
        return {
            "checkpoint": key,
            "precision": precision,
            "videos": len(result.videos),
            "frames": result.frames,
            "skipped": result.skipped,
        }

    # new frames make the stored scores of this reconstruction stale; the run's lock keeps out
    # a job of an earlier, killed bench that still reconstructs here (on a cluster)
    with folder_lock(run_dir, "a kptoolkit run"):
        stage = cached_stage(run_dir, folder.name, fresh, run, stale=(suffixed("scores", control),))
    if stage.cached:
        done = stage.record
        say(f"{label}: cached ({done['videos']} videos, {done['frames']} frames)")
