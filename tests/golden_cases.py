"""The official-checkpoint paths whose outputs `tests/data/golden.json` pins.

Each case writes a checkpoint laid out as an official file (keys and shapes of the reference
tables, values drawn from a seeded generator, independent of kptoolkit's own initialisation),
loads it through the public API at the published widths, animates a fixed synthetic image
and returns a few numbers of what came out. `python tests/golden_cases.py` writes the file
again; do that only for a change that is meant to change these numbers, and say why in the
commit.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
GOLDEN = TESTS / "data" / "golden.json"
SIZE = 128  # the smallest frame the paper widths' five-level hourglasses take


def official_state(table: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Values for an official state-dict layout: fan-in scaled weights, small biases, batch-norm
    statistics near (0, 1); drawn in sorted key order from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key in sorted(table):
        shape = table[key]
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
            continue
        values = torch.randn(shape, generator=g)
        if key.endswith("running_var"):
            state[key] = 1 + 0.1 * values.abs()
        elif key.endswith("running_mean") or key.endswith("bias"):
            state[key] = 0.1 * values
        elif len(shape) == 1:  # a normalisation's scale
            state[key] = 1 + 0.1 * values
        else:
            state[key] = values / math.sqrt(math.prod(shape[1:]))
    return state


def frames(count: int = 3) -> torch.Tensor:
    """(count, 3, SIZE, SIZE) smooth images: a colour gradient with two blobs that move."""
    axis = torch.linspace(-1, 1, SIZE)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    out = []
    for t in range(count):
        shift = 0.15 * t
        blob = torch.exp(-((x - 0.3 + shift) ** 2 + (y + 0.2) ** 2) / 0.05)
        other = torch.exp(-((x + 0.4) ** 2 + (y - 0.3 - shift) ** 2) / 0.08)
        image = torch.stack(
            [0.3 + 0.2 * x + 0.5 * blob, 0.4 + 0.2 * y + 0.5 * other, 0.5 + 0.3 * blob * other]
        )
        out.append(image.clamp(0, 1))
    return torch.stack(out)


def _tables() -> dict[str, dict[str, tuple[int, ...]]]:
    sys.path.insert(0, str(TESTS))
    from model_fixtures import read_reference_table

    fomm = read_reference_table("fomm-taichi-256-state-dict.tsv")
    mask = read_reference_table("keypoint-mask-generator-state-dict.tsv")
    return {
        "kp_detector": fomm["kp_detector"],
        "fomm_generator": fomm["generator"],
        "two_stage_generator": mask["generator"],
    }


def _summary(prediction: torch.Tensor) -> dict[str, list[float] | float]:
    """The mean, the standard deviation, how far each frame is from the first, and nine pixels
    of every frame of a prediction."""
    index = torch.tensor([16, 64, 112])
    picked = prediction[:, :, index][:, :, :, index]
    change = (prediction[1:] - prediction[:1]).abs().flatten(1).mean(1)
    return {
        "mean": prediction.mean().item(),
        "std": prediction.std().item(),
        "change": change.tolist(),  # mean |frame t - frame 0| for t >= 1
        "pixels": [round(v, 7) for v in picked.flatten().tolist()],
    }


def _animate(config_changes: Callable, sections: dict[str, str]) -> dict:
    import kptoolkit
    from kptoolkit.config.schema import load_config

    tables = _tables()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "official.pth.tar"
        payload = {
            role: official_state(tables[table], seed)
            for seed, (role, table) in enumerate(sections.items())
        }
        torch.save(payload, path)
        config = config_changes(load_config(REPO / "configs" / "taichi-256.yaml"))
        models = kptoolkit.build(config, weights=path)
    video = frames()
    for module in models.modules().values():
        module.eval()
    with torch.no_grad():
        detected = models.detector(video[:1])
        prediction = kptoolkit.animate_frames(models, video[0], video, precision="fp32")
    return {
        "keypoints": [round(v, 7) for v in detected.keypoints.flatten().tolist()],
        **_summary(prediction),
    }


def fomm_case() -> dict:
    """FOMM's published checkpoint layout, animated by the FOMM generator (absolute motion)."""
    from kptoolkit.experiment.components import choose_components

    return _animate(
        lambda config: choose_components(config, None, "fomm"),
        {"kp_detector": "kp_detector", "generator": "fomm_generator"},
    )


def keypoint_mask_case() -> dict:
    """The keypoint-mask paper's checkpoint layout: heatmap_sum masks into the two-stage
    generator."""
    return _animate(
        lambda config: config,
        {"kp_detector": "kp_detector", "generator": "two_stage_generator"},
    )


CASES: dict[str, Callable[[], dict]] = {"fomm": fomm_case, "keypoint_mask": keypoint_mask_case}


if __name__ == "__main__":
    torch.set_num_threads(1)
    values = {name: case() for name, case in CASES.items()}
    GOLDEN.write_text(json.dumps(values, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
