"""Synthetic puppets: the articulated figure, its identities and its motion over time.

A puppet is an `Identity` (proportions, limb widths, part colours and textures) driven by a
`Motion` (joint angles plus a slow drift of position and scale, like tai-chi). This module
draws both from a seed and turns them into the 15 joint positions of every frame
(`forward_kinematics`); `kptoolkit.data.puppets.render` draws the figure into frames and
`kptoolkit.data.puppets.writer` writes the dataset.

Coordinates: pixel centres sit at integer positions, so a joint at the centre of pixel (row i,
column j) is x = j, y = i, and the frame spans [-0.5, size - 0.5] on both axes. A joint outside
that square is not visible; occlusion by other parts does not hide a joint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from kptoolkit.errors import KptoolkitError

SIZES = (64, 128, 256)

JOINT_NAMES = (
    "head",
    "neck",
    "pelvis",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
)
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}

# Degrees of freedom of a pose, in radians. "r_" is the figure's right, seen on the image's left.
# Positive shoulder/hip angles move the limb outwards, positive elbow angles bend the forearm
# further outwards and up, positive knee angles bring the shin back under the body. Their rest
# values, ranges and speeds belong to the dataset version's `PuppetStyle`.
DOF_NAMES = (
    "torso",
    "head",
    "r_shoulder",
    "r_elbow",
    "l_shoulder",
    "l_elbow",
    "r_hip",
    "r_knee",
    "l_hip",
    "l_knee",
)

# body parts from back to front: the fixed depth order of compositing
PART_NAMES = (
    "l_thigh",
    "l_shin",
    "l_foot",
    "r_thigh",
    "r_shin",
    "r_foot",
    "torso",
    "neck",
    "head",
    "l_upper_arm",
    "l_forearm",
    "l_hand",
    "r_upper_arm",
    "r_forearm",
    "r_hand",
)
PATTERNS = ("plain", "stripes", "checks")
RGB = tuple[float, float, float]


class SyntheticDataError(KptoolkitError, ValueError):
    """An invalid argument to the synthetic puppet renderer or generator."""


def dof_group(dof: str) -> str:
    return dof.split("_", 1)[-1]


@attrs.frozen
class PartStyle:
    """How one body part looks: base and accent colours (RGB, 0-255) and a procedural pattern.

    `period` (figure units) is the wavelength of the stripes or checks along the part; `phase`
    shifts them.
    """

    colour: RGB
    accent: RGB
    pattern: str = attrs.field(validator=attrs.validators.in_(PATTERNS))
    period: float = 0.08
    phase: float = 0.0


@attrs.frozen
class Identity:
    """A puppet's proportions, limb widths and part styles (seeded by `sample_identity`).

    Lengths and radii are in figure units: the rest-pose figure is about 1 unit tall. `stature`
    scales the whole figure on screen.
    """

    head_radius: float
    neck_length: float
    torso_length: float
    shoulder_width: float  # half the distance between the shoulders
    hip_width: float  # half the distance between the hips
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    foot: float
    arm_radius: float
    forearm_radius: float
    hand_radius: float
    thigh_radius: float
    shin_radius: float
    neck_radius: float
    torso_rounding: float
    stature: float
    hair: RGB
    hairline: float  # hair covers the head above this fraction of its radius (>= 1: bald)
    styles: dict[str, PartStyle]

    @property
    def rest_height(self) -> float:
        """Height of the upright figure from the top of the head to the ankles."""
        return 2 * self.head_radius + self.neck_length + self.torso_length + self.thigh + self.shin


def _float_array(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


@attrs.define(eq=False)
class Motion:
    """Per-frame pose of a clip (T frames).

    `angles` (T, 10) radians, columns as in `DOF_NAMES`; `centre` (T, 2) the figure's centre
    (x, y) as a fraction of the frame (0.5 is the middle); `scale` (T,) the figure's height as a
    fraction of the frame.
    """

    angles: np.ndarray = attrs.field(converter=_float_array)
    centre: np.ndarray = attrs.field(converter=_float_array)
    scale: np.ndarray = attrs.field(converter=_float_array)

    def __attrs_post_init__(self) -> None:
        frames = len(self.angles)
        if self.angles.shape != (frames, len(DOF_NAMES)):
            raise SyntheticDataError(
                f"angles must be (T, {len(DOF_NAMES)}), got {self.angles.shape}"
            )
        if self.centre.shape != (frames, 2) or self.scale.shape != (frames,):
            raise SyntheticDataError(
                f"centre must be (T, 2) and scale (T,) with T={frames}, got "
                f"{self.centre.shape} and {self.scale.shape}"
            )

    @property
    def frames(self) -> int:
        """Number of frames."""
        return len(self.angles)


# --------------------------------------------------------------------------------------------
# sampling


def as_rng(rng: np.random.Generator | int | Sequence[int]) -> np.random.Generator:
    """`rng` itself if it is a generator, else a new generator seeded with it."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def check_size(size: int) -> None:
    """Raise `SyntheticDataError` unless `size` is one of `SIZES`."""
    if size not in SIZES:
        raise SyntheticDataError(f"size must be one of {SIZES} (square frames), got {size!r}")


def check_frames(frames: int) -> None:
    """Raise `SyntheticDataError` unless `frames` is a positive integer."""
    if not isinstance(frames, (int, np.integer)) or isinstance(frames, bool) or frames < 1:
        raise SyntheticDataError(f"frames must be a positive integer, got {frames!r}")


def _direction(theta: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 2) in image coordinates; angle 0 points down (+y), pi/2 right (+x)."""
    return np.stack([np.sin(theta), np.cos(theta)], axis=-1)


def _figure_joints(identity: Identity, angles: np.ndarray) -> np.ndarray:
    """Joints (T, 15, 2) in figure units, pelvis-relative, feet on the ground line."""
    torso, head, rs, re, ls, le, rh, rk, lh, lk = (angles[:, k] for k in range(len(DOF_NAMES)))
    up = _direction(np.pi + torso)
    right = np.stack([-up[:, 1], up[:, 0]], axis=1)  # image-right when upright
    pelvis = np.zeros_like(up)
    neck = identity.torso_length * up
    head_c = neck + (identity.neck_length + identity.head_radius) * _direction(np.pi + torso + head)
    shoulders = neck - 0.1 * identity.torso_length * up
    r_shoulder = shoulders - identity.shoulder_width * right
    l_shoulder = shoulders + identity.shoulder_width * right
    r_elbow = r_shoulder + identity.upper_arm * _direction(torso - rs)
    r_wrist = r_elbow + identity.forearm * _direction(torso - rs - re)
    l_elbow = l_shoulder + identity.upper_arm * _direction(torso + ls)
    l_wrist = l_elbow + identity.forearm * _direction(torso + ls + le)
    r_hip = -identity.hip_width * right
    l_hip = identity.hip_width * right
    r_knee = r_hip + identity.thigh * _direction(-rh)
    r_ankle = r_knee + identity.shin * _direction(-rh + rk)
    l_knee = l_hip + identity.thigh * _direction(lh)
    l_ankle = l_knee + identity.shin * _direction(lh - lk)
    named = {
        "head": head_c, "neck": neck, "pelvis": pelvis,
        "r_shoulder": r_shoulder, "r_elbow": r_elbow, "r_wrist": r_wrist,
        "l_shoulder": l_shoulder, "l_elbow": l_elbow, "l_wrist": l_wrist,
        "r_hip": r_hip, "r_knee": r_knee, "r_ankle": r_ankle,
        "l_hip": l_hip, "l_knee": l_knee, "l_ankle": l_ankle,
    }  # fmt: skip
    joints = np.stack([named[name] for name in JOINT_NAMES], axis=1)
    # the lower ankle stays on the ground: bending the legs lowers the body (a horse stance)
    ground = identity.thigh + identity.shin
    lowest = joints[:, [JOINT_INDEX["r_ankle"], JOINT_INDEX["l_ankle"]], 1].max(axis=1)
    joints[..., 1] += (ground - lowest)[:, None]
    return joints


def pixels_per_unit(identity: Identity, motion: Motion, size: int) -> np.ndarray:
    """Figure units to pixels, per frame (T,)."""
    return motion.scale * size * identity.stature / identity.rest_height


def forward_kinematics(identity: Identity, motion: Motion, size: int) -> np.ndarray:
    """Joint positions (T, 15, 2) in pixels (x, y), pixel centres at integer coordinates."""
    check_size(size)
    joints = _figure_joints(identity, motion.angles)
    # the middle of the upright figure, from the top of the head to the ankles
    top = identity.torso_length + identity.neck_length + 2 * identity.head_radius
    middle = np.array([0.0, (identity.thigh + identity.shin - top) / 2])
    centre = motion.centre * size - 0.5
    unit = pixels_per_unit(identity, motion, size)
    return centre[:, None, :] + unit[:, None, None] * (joints - middle)


def fit_in_frame(identity: Identity, motion: Motion, size: int, margin: float) -> Motion:
    """The motion, shrunk and shifted as a whole (every frame alike) so that every joint of
    the clip stays `margin` (a fraction of the frame) inside the frame; unchanged if it fits.

    Shrinking scales the figure about the frame's centre and a shift then brings the clip's
    bounding box inside: the motion keeps its shape, only its size and place change.
    """
    if margin <= 0:
        return motion
    low, high = margin * size - 0.5, (1 - margin) * size - 0.5
    joints = forward_kinematics(identity, motion, size)
    centre = size / 2 - 0.5
    extent = np.abs(joints - centre).max(axis=(0, 1))  # (2,) half-extent about the centre
    room = (high - low) / 2
    shrink = min(1.0, float(room / extent.max())) if extent.max() > 0 else 1.0
    fitted = Motion(motion.angles, 0.5 + shrink * (motion.centre - 0.5), motion.scale * shrink)
    joints = forward_kinematics(identity, fitted, size)
    lowest, highest = joints.min(axis=(0, 1)), joints.max(axis=(0, 1))
    shift = np.maximum(low - lowest, 0) - np.maximum(highest - high, 0)
    return Motion(fitted.angles, fitted.centre + shift / size, fitted.scale)


def visibility(joints: np.ndarray, size: int) -> np.ndarray:
    """Which joints (..., 2) in pixels lie inside the frame [-0.5, size - 0.5]^2."""
    inside = (joints >= -0.5) & (joints <= size - 0.5)
    return inside.all(axis=-1)
