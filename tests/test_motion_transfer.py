"""Motion reaches the prediction, through the same inference path as `reconstruct` / `animate`.

For every built-in generator, overfitted on two frames of a moving blob (the four source ->
driving pairs), the model driven by the other frame predicts that frame (far closer to it than
to the source, and than copying the source would be), and driven by the source itself keeps the
source.

A generator that ignores the driving structure, or an inference path that drives every frame by
the source structure, fails here. (FOMM's decoder can overfit two frames without its warp, so
sparse motion that ignores the source keypoints is caught by `test_fomm.py`'s first-order test.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_fixtures import tiny_config, tiny_kp_checkpoint

from kptoolkit.components import choose_components
from kptoolkit.engine.experiment import Models, build_models
from kptoolkit.engine.prediction import compute_structure, generate, inference_models

PAIRS = [("two_stage", "heatmap_sum"), ("fomm", None), ("x2face", None), ("monkey_net", None)]
SIZE = 64
OVERFIT_STEPS = 150
OVERFIT_LR = 1e-3


def blob_frame(x: float, y: float) -> torch.Tensor:
    """(1,3,64,64): a red Gaussian blob (sigma 0.12 of the frame) on a flat blue background."""
    grid = torch.linspace(0, 1, SIZE)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    weight = torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 0.12**2))
    background = torch.tensor([0.2, 0.5, 0.8]).view(3, 1, 1)
    colour = torch.tensor([0.9, 0.2, 0.1]).view(3, 1, 1)
    return (background * (1 - weight) + colour * weight).unsqueeze(0)


# the blob moves by about 9 px right and 5 px down: less than its radius
FRAME_A, FRAME_B = blob_frame(0.42, 0.46), blob_frame(0.56, 0.54)


def tiny_models(generator: str, masker: str | None, tmp_path: Path) -> Models:
    config = choose_components(tiny_config(), masker, generator)
    checkpoint = tiny_kp_checkpoint(tmp_path) if masker == "heatmap_sum" else None
    return build_models(config, str(checkpoint) if checkpoint else None)


def animate(models: Models, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
    """`source` driven by `driving` through the inference path of reconstruct / animate."""
    with inference_models(models), torch.inference_mode():
        structure = compute_structure(models, source)
        return generate(models, source, structure, driving, task="reconstruction")


def l1(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean())


def overfit(models: Models) -> None:
    """Fit the four pairs A->A, A->B, B->A, B->B with plain L1."""
    source = torch.cat([FRAME_A, FRAME_A, FRAME_B, FRAME_B])
    driving = torch.cat([FRAME_A, FRAME_B, FRAME_A, FRAME_B])
    groups = models.trainable()
    groups.pop("discriminator", None)
    optimizer = torch.optim.Adam([p for m in groups.values() for p in m.parameters()], OVERFIT_LR)
    models.train(True)
    for _ in range(OVERFIT_STEPS):
        structure_s, structure_d = models.masker(source), models.masker(driving)
        prediction = models.generator(source, structure_s, structure_d)["prediction"]
        loss = (prediction - driving).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    models.train(False)


@pytest.mark.parametrize(("generator", "masker"), PAIRS)
def test_overfitted_model_follows_the_driving_frame(generator, masker, tmp_path):
    torch.manual_seed(0)
    models = tiny_models(generator, masker, tmp_path)
    copy_error = l1(FRAME_A, FRAME_B)  # what copying the source scores
    before = l1(animate(models, FRAME_A, FRAME_B), FRAME_B)
    overfit(models)
    moved = animate(models, FRAME_A, FRAME_B)
    kept = animate(models, FRAME_A, FRAME_A)
    assert l1(moved, FRAME_B) < 0.5 * min(before, copy_error)
    assert l1(moved, FRAME_B) < 0.5 * l1(moved, FRAME_A)  # it moved: B, not A
    assert l1(kept, FRAME_A) < 0.5 * copy_error  # identity motion keeps the source
