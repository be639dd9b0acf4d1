"""A moving blob, tiny models overfitted on it, and the inference path of reconstruct / animate:
what the motion-transfer tests (core generators and the TPSMM plugin) share."""

from __future__ import annotations

from pathlib import Path

import torch
from train_fixtures import tiny_config, tiny_kp_checkpoint

from kptoolkit.engine.prediction import compute_structure, generate, inference_models
from kptoolkit.experiment.build import Models, build_models
from kptoolkit.experiment.components import choose_components
from kptoolkit.experiment.plan import plan_experiment

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
    """A generator (and its natural masker, or `masker`) at the `micro` widths."""
    config = choose_components(tiny_config(), masker, generator)
    checkpoint = tiny_kp_checkpoint(tmp_path) if masker == "heatmap_sum" else None
    return build_models(plan_experiment(config, str(checkpoint) if checkpoint else None))


def animate(models: Models, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
    """`source` driven by `driving` through the inference path of reconstruct / animate."""
    with inference_models(models), torch.inference_mode():
        structure = compute_structure(models, source)
        return generate(models, source, structure, driving, task="reconstruction")


def l1(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean())


def overfit(models: Models, steps: int = OVERFIT_STEPS, lr: float = OVERFIT_LR) -> None:
    """Fit the four pairs A->A, A->B, B->A, B->B with plain L1."""
    source = torch.cat([FRAME_A, FRAME_A, FRAME_B, FRAME_B])
    driving = torch.cat([FRAME_A, FRAME_B, FRAME_A, FRAME_B])
    groups = models.trainable()
    groups.pop("discriminator", None)
    optimizer = torch.optim.Adam([p for m in groups.values() for p in m.parameters()], lr)
    models.train(True)
    for _ in range(steps):
        structure_s, structure_d = models.masker(source), models.masker(driving)
        prediction = models.generator(source, structure_s, structure_d)["prediction"]
        loss = (prediction - driving).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    models.train(False)
