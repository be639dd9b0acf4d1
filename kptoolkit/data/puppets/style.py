"""How synthetic puppets move and look: one record per dataset version, and motion statistics.

Version 1 (the first built-in dataset) moved little within a 32-frame clip (joint sinusoids of
30-170 frame periods, small drift) and dressed its puppets in stripes and checks on busy
backgrounds: copying frame 0 beat every trained model, and the textures dominated the
reconstruction error. Version 2 is built so that motion dominates: arms raised and lowered,
legs lifted, the torso leaning (two sinusoids of 30-100 frame periods per joint angle share
its swing), with global drift and scale change; flat part colours on
smooth backgrounds; and each clip fitted inside the frame, so no joint leaves it.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import numpy as np


@attrs.frozen
class PuppetStyle:
    """Motion and appearance parameters of synthetic puppets (angles in radians, positions
    and sizes as fractions of the frame, frequencies in cycles per frame)."""

    rest_pose: dict[str, float]
    max_deviation: dict[str, float]  # largest swing from the rest pose per joint group
    frequency_range: tuple[float, float]  # joint angle sinusoids
    sinusoids: int  # sinusoids summed per joint angle (fewer: larger swings within a clip)
    drift_frequency_range: tuple[float, float]  # position and scale sinusoids
    drift: tuple[float, float]  # largest centre displacement in x and y
    scale_range: tuple[float, float]  # the figure's mean height
    scale_swing: float  # largest relative change of the height within a clip
    patterns: tuple[str, ...]  # clothing patterns drawn from ("plain", "stripes", "checks")
    background_waves: int
    background_wave_frequency: tuple[float, float]  # cycles per frame width
    background_wave_sigma: float  # colour amplitude of a wave, 0-255 units
    background_blobs: int
    background_blob_sigma: float
    margin: float = 0.0  # free border kept around every joint; 0: no fitting

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (lists, not tuples), for the dataset manifest."""
        return json.loads(json.dumps(attrs.asdict(self)))


STYLE_V1 = PuppetStyle(
    rest_pose={
        "torso": 0.0,
        "head": 0.0,
        "shoulder": 0.45,
        "elbow": 0.65,
        "hip": 0.12,
        "knee": 0.14,
    },
    max_deviation={
        "torso": 0.12,
        "head": 0.25,
        "shoulder": 0.95,
        "elbow": 0.6,
        "hip": 0.12,
        "knee": 0.14,
    },
    frequency_range=(0.006, 0.03),
    sinusoids=3,
    drift_frequency_range=(0.003, 0.012),
    drift=(0.06, 0.03),
    scale_range=(0.74, 0.84),
    scale_swing=0.05,
    patterns=("plain", "stripes", "checks"),
    background_waves=5,
    background_wave_frequency=(1.0, 5.0),
    background_wave_sigma=11.0,
    background_blobs=3,
    background_blob_sigma=35.0,
)

STYLE_V2 = PuppetStyle(
    # arms hang lower at rest and swing from across the body to above the shoulder; elbows and
    # knees never bend backwards; one leg at a time lifts (the lower ankle stays on the ground)
    rest_pose={"torso": 0.0, "head": 0.0, "shoulder": 0.6, "elbow": 0.6, "hip": 0.25, "knee": 0.4},
    max_deviation={
        "torso": 0.3,
        "head": 0.3,
        "shoulder": 1.2,
        "elbow": 0.6,
        "hip": 0.45,
        "knee": 0.5,
    },
    frequency_range=(0.01, 0.035),
    sinusoids=2,
    drift_frequency_range=(0.008, 0.025),
    drift=(0.1, 0.03),
    scale_range=(0.7, 0.8),
    scale_swing=0.10,
    patterns=("plain",),
    background_waves=2,
    background_wave_frequency=(0.5, 2.0),
    background_wave_sigma=12.0,
    background_blobs=2,
    background_blob_sigma=25.0,
    margin=0.04,
)

STYLES = {1: STYLE_V1, 2: STYLE_V2}
# the dataset version `generate_dataset` writes, and the style puppets are drawn with by default
GENERATOR_VERSION = 2
DEFAULT_STYLE = STYLES[GENERATOR_VERSION]


def figure_height(joints: np.ndarray) -> float:
    """The mean over frames of the joints' vertical extent (..., J, 2), in their units."""
    joints = np.asarray(joints, dtype=np.float64)
    return float((joints[..., 1].max(axis=-1) - joints[..., 1].min(axis=-1)).mean())


def motion_statistics(joints: np.ndarray, visible: np.ndarray) -> dict[str, float]:
    """How far a clip's joints (T, J, 2) move from frame 0, in pixels, over frames 1..T-1.

    `joint`: mean distance of a joint (visible in both frames) to its place in frame 0;
    `centroid`: mean distance of the joints' centroid to its place in frame 0 (global motion);
    `articulated`: mean distance to frame 0 once each frame's centroid is subtracted (the body's
    own motion); `height`: the mean vertical extent of the joints (the figure's size).
    """
    joints = np.asarray(joints, dtype=np.float64)
    visible = np.asarray(visible, dtype=bool)
    both = visible[1:] & visible[:1]
    centroid = joints.mean(axis=1)
    relative = joints - centroid[:, None]
    moved = np.linalg.norm(joints[1:] - joints[:1], axis=-1)
    articulated = np.linalg.norm(relative[1:] - relative[:1], axis=-1)
    return {
        "joint": float(moved[both].mean()) if both.any() else float("nan"),
        "centroid": float(np.linalg.norm(centroid[1:] - centroid[:1], axis=-1).mean()),
        "articulated": float(articulated[both].mean()) if both.any() else float("nan"),
        "height": figure_height(joints),
        "visible": float(visible.mean()),
    }


def summarise_motion(per_video: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each statistic over videos (what `dataset.json` records per split)."""
    if not per_video:
        return {}
    return {key: float(np.nanmean([v[key] for v in per_video])) for key in per_video[0]}
