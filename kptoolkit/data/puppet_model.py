"""Synthetic puppets: the articulated figure, its identities and its motion over time.

A puppet is an `Identity` (proportions, limb widths, part colours and textures) driven by a
`Motion` (joint angles plus a slow drift of position and scale, like tai-chi). This module
draws both from a seed and turns them into the 15 joint positions of every frame
(`forward_kinematics`); `kptoolkit.data.puppet_render` draws the figure into frames and
`kptoolkit.data.synthetic` writes the dataset.

Coordinates: pixel centres sit at integer positions, so a joint at the centre of pixel (row i,
column j) is x = j, y = i, and the frame spans [-0.5, size - 0.5] on both axes. A joint outside
that square is not visible; occlusion by other parts does not hide a joint.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from kptoolkit.data.puppet_style import DEFAULT_STYLE, PuppetStyle
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


def _dof_group(dof: str) -> str:
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


def hsv_colour(
    rng: np.random.Generator, hue: float, sat: tuple[float, float], val: tuple[float, float]
) -> RGB:
    """An RGB colour (0-255) of hue `hue`, saturation and value drawn from `sat` and `val`."""
    rgb = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(*sat), rng.uniform(*val))
    return tuple(float(255 * c) for c in rgb)


def _random_colour(rng: np.random.Generator) -> RGB:
    return hsv_colour(rng, rng.uniform(), (0.35, 0.9), (0.35, 0.95))


def _accent(rng: np.random.Generator, colour: RGB) -> RGB:
    """A second colour clearly different in lightness from `colour`, same family of hue."""
    hue, sat, val = colorsys.rgb_to_hsv(*(c / 255 for c in colour))
    hue = hue + rng.uniform(-0.15, 0.15)
    val = val - 0.35 if val > 0.6 else val + 0.35
    rgb = colorsys.hsv_to_rgb(hue % 1.0, min(1.0, sat * rng.uniform(0.6, 1.2)), val)
    return tuple(float(255 * c) for c in rgb)


def _style(rng: np.random.Generator, colour: RGB, patterns: Sequence[str] = PATTERNS) -> PartStyle:
    return PartStyle(
        colour=colour,
        accent=_accent(rng, colour),
        pattern=str(rng.choice(list(patterns))),
        period=float(rng.uniform(0.05, 0.11)),
        phase=float(rng.uniform(0, 2 * math.pi)),
    )


def _sample_styles(
    rng: np.random.Generator, patterns: Sequence[str] = PATTERNS
) -> dict[str, PartStyle]:
    skin = hsv_colour(rng, rng.uniform(0.02, 0.1), (0.25, 0.6), (0.35, 0.95))
    shirt, trousers, shoes = (_random_colour(rng) for _ in range(3))
    plain_skin = PartStyle(skin, _accent(rng, skin), "plain", 0.1, 0.0)
    sleeve = _style(rng, shirt, patterns)
    # clothes are symmetric: left and right limbs share a style
    forearm = _style(rng, shirt, patterns) if rng.uniform() < 0.5 else plain_skin
    thigh = _style(rng, trousers, patterns)
    shin = _style(rng, trousers, patterns)
    shoe = _style(rng, shoes, ("plain",))
    styles = {"torso": _style(rng, shirt, patterns), "neck": plain_skin, "head": plain_skin}
    for side in ("r", "l"):
        styles |= {
            f"{side}_upper_arm": sleeve,
            f"{side}_forearm": forearm,
            f"{side}_hand": plain_skin,
            f"{side}_thigh": thigh,
            f"{side}_shin": shin,
            f"{side}_foot": shoe,
        }
    return styles


def sample_identity(
    rng: np.random.Generator | int | Sequence[int], style: PuppetStyle = DEFAULT_STYLE
) -> Identity:
    """Draw a puppet's proportions, limb widths and part styles from a generator or seed."""
    rng = as_rng(rng)

    def around(value: float, spread: float = 0.12) -> float:
        return float(value * rng.uniform(1 - spread, 1 + spread))

    limb = rng.uniform(0.85, 1.2)  # thin or sturdy limbs, shared by all limbs of the figure
    return Identity(
        head_radius=around(0.075),
        neck_length=around(0.035),
        torso_length=around(0.3, 0.08),
        shoulder_width=around(0.1),
        hip_width=around(0.06),
        upper_arm=around(0.17, 0.08),
        forearm=around(0.16, 0.08),
        thigh=around(0.22, 0.08),
        shin=around(0.22, 0.08),
        foot=around(0.06),
        arm_radius=around(0.034 * limb, 0.08),
        forearm_radius=around(0.029 * limb, 0.08),
        hand_radius=around(0.028 * limb, 0.08),
        thigh_radius=around(0.045 * limb, 0.08),
        shin_radius=around(0.036 * limb, 0.08),
        neck_radius=around(0.025),
        torso_rounding=around(0.04),
        stature=float(rng.uniform(0.9, 1.05)),
        hair=hsv_colour(rng, rng.uniform(0.0, 0.15), (0.2, 0.8), (0.08, 0.6)),
        hairline=float(rng.uniform(-0.1, 0.45)),
        styles=_sample_styles(rng, style.patterns),
    )


def _sinusoids(
    rng: np.random.Generator,
    t: np.ndarray,
    amplitude: float,
    freq: tuple[float, float],
    count: int = 3,
) -> np.ndarray:
    """A sum of `count` sinusoids whose amplitudes add up to at most `amplitude`."""
    weights = rng.dirichlet(np.ones(count)) * amplitude
    freqs = rng.uniform(*freq, size=count)
    phases = rng.uniform(0, 2 * np.pi, size=count)
    waves = np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None])
    return (weights[:, None] * waves).sum(axis=0)


def sample_motion(
    rng: np.random.Generator | int | Sequence[int],
    frames: int,
    amplitude: float = 1.0,
    style: PuppetStyle = DEFAULT_STYLE,
) -> Motion:
    """Draw a smooth tai-chi-like motion of `frames` frames.

    Every joint angle is its rest value plus a sum of a few sinusoids with random phases; the
    figure's centre and size drift (ranges and speeds from `style`). `amplitude` scales every
    deviation from the rest pose (0 gives a still figure in the rest pose, centred).
    """
    check_frames(frames)
    rng = as_rng(rng)
    t = np.arange(frames, dtype=np.float64)
    angles = np.empty((frames, len(DOF_NAMES)))
    for k, dof in enumerate(DOF_NAMES):
        group = _dof_group(dof)
        deviation = style.max_deviation[group]
        swing = _sinusoids(rng, t, deviation, style.frequency_range, style.sinusoids)
        angles[:, k] = style.rest_pose[group] + amplitude * swing
    drift_x = _sinusoids(rng, t, style.drift[0], style.drift_frequency_range)
    drift_y = _sinusoids(rng, t, style.drift[1], style.drift_frequency_range)
    centre = 0.5 + amplitude * np.stack([drift_x, drift_y], axis=1)
    base_scale = rng.uniform(*style.scale_range)
    swing = _sinusoids(rng, t, style.scale_swing, style.drift_frequency_range)
    scale = base_scale * (1 + amplitude * swing)
    return Motion(angles=angles, centre=centre, scale=scale)


# --------------------------------------------------------------------------------------------
# kinematics


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
