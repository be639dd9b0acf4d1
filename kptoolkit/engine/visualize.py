"""Pictures of what a model does: rows of source | driving | masks | prediction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from kptoolkit.structure import Structure
from kptoolkit.utils.atomic import atomic_path

KEYPOINT_COLOUR = torch.tensor([1.0, 0.1, 0.1])


def mask_image(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B,C,h,w) mask -> (B,3,H,W) grey image (channels averaged), upsampled to `size`."""
    grey = mask.float().mean(dim=1, keepdim=True)
    grey = F.interpolate(grey, size=size, mode="bilinear", align_corners=False)
    return grey.clamp(0, 1).expand(-1, 3, -1, -1)


def keypoint_image(frame: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """The frame darkened, with each (x, y) in [-1, 1] keypoint drawn as a 3x3 red dot."""
    out = frame.float().clone() * 0.6
    height, width = out.shape[-2:]
    cols = ((keypoints[..., 0] + 1) / 2 * (width - 1)).round().long()
    rows = ((keypoints[..., 1] + 1) / 2 * (height - 1)).round().long()
    colour = KEYPOINT_COLOUR.to(out.device).view(3, 1, 1)
    for b in range(out.shape[0]):
        for x, y in zip(cols[b].tolist(), rows[b].tolist(), strict=True):
            y0, y1 = max(y - 1, 0), min(y + 2, height)
            x0, x1 = max(x - 1, 0), min(x + 2, width)
            if y0 < y1 and x0 < x1:
                out[b, :, y0:y1, x0:x1] = colour
    return out


def structure_image(structure: Structure, frame: torch.Tensor) -> torch.Tensor | None:
    """What a structure looks like next to its frame: its mask, or its keypoints."""
    if structure.mask is not None:
        return mask_image(structure.mask, tuple(frame.shape[-2:]))
    if structure.keypoints is not None:
        return keypoint_image(frame, structure.keypoints)
    return None


def comparison_columns(
    source: torch.Tensor,
    driving: torch.Tensor,
    source_structure: Structure,
    driving_structure: Structure,
    prediction: torch.Tensor,
) -> list[torch.Tensor]:
    """source | driving | source structure | driving structure | prediction (those that exist)."""
    columns = [source, driving]
    for structure, frame in ((source_structure, source), (driving_structure, driving)):
        image = structure_image(structure, frame)
        if image is not None:
            columns.append(image)
    columns.append(prediction)
    return [c.detach().float().cpu().clamp(0, 1) for c in columns]


def grid_image(columns: list[torch.Tensor], max_rows: int = 4, gap: int = 2) -> np.ndarray:
    """Columns of (B,3,H,W) images -> one (rows*H, cols*W, 3) uint8 picture with white gaps."""
    rows = min(max_rows, columns[0].shape[0])
    height, width = columns[0].shape[-2:]
    canvas = torch.ones(3, rows * (height + gap) - gap, len(columns) * (width + gap) - gap)
    for r in range(rows):
        for c, column in enumerate(columns):
            top, left = r * (height + gap), c * (width + gap)
            canvas[:, top : top + height, left : left + width] = column[r]
    return (canvas.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def save_sample_grid(inputs: Any, path: Path) -> Path:
    """Write a training batch's sample grid (source | driving | their structures | prediction;
    `inputs` is the step's `LossInputs`) to `path` atomically; returns the path."""
    columns = comparison_columns(
        inputs.batch["source"],
        inputs.batch["driving"],
        inputs.source_structure,
        inputs.driving_structure,
        inputs.outputs["prediction"],
    )
    with atomic_path(path, suffix=".png") as partial:
        Image.fromarray(grid_image(columns)).save(partial, format="PNG")
    return path
