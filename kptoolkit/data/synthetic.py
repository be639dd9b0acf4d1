"""Synthetic puppets: articulated, textured 2D figures moving slowly, with ground-truth joints.

The built-in dataset: it needs no download, renders fast on CPU and comes with the 15 joint
positions of every frame, so pose metrics (AKD, MKR) can be evaluated without a pose model.

A puppet is an `Identity` (proportions, limb widths, part colours and textures) driven by a
`Motion` (joint angles plus a slow drift of position and scale, like tai-chi) in front of a
per-video procedural background. Rendering evaluates signed distances of capsules, an ellipse
and a rounded quadrilateral on the pixel grid and composites the parts back to front with a
one-pixel coverage ramp, so edges are anti-aliased.

Coordinates: pixel centres sit at integer positions, so a joint at the centre of pixel (row i,
column j) is x = j, y = i, and the frame spans [-0.5, size - 0.5] on both axes. A joint outside
that square is not visible; occlusion by other parts does not hide a joint.

`generate_dataset` writes the FOMM layout::

    OUT/train/<identity>#<clip>/0000000.png ...
    OUT/test/<identity>#<clip>/0000000.png ...
    OUT/groundtruth/<split>/<identity>#<clip>.npz   (joints (T,15,2) float32, visible (T,15) bool)
    OUT/dataset.json                                (written last: marks a complete dataset)
"""

from __future__ import annotations

import colorsys
import json
import math
import multiprocessing
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from PIL import Image
from tqdm import tqdm

from kptoolkit.atomic import atomic_write_text
from kptoolkit.data.puppet_style import STYLES, PuppetStyle, motion_statistics, summarise_motion
from kptoolkit.errors import KptoolkitError

GENERATOR = "kptoolkit.synthetic_puppets"
GENERATOR_VERSION = 2
DEFAULT_STYLE = STYLES[GENERATOR_VERSION]
SIZES = (64, 128, 256)
SPLITS = ("train", "test")
MANIFEST_NAME = "dataset.json"
# written first, so an interrupted generation can still be recognised and overwritten
MARKER_NAME = ".kptoolkit-synthetic-puppets"
GENERATED_ENTRIES = ("train", "test", "groundtruth", MANIFEST_NAME)

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


class OutputFolderError(KptoolkitError, FileExistsError):
    """The output folder holds something other than a synthetic puppet dataset."""


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


def _as_rng(rng: np.random.Generator | int | Sequence[int]) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _check_size(size: int) -> None:
    if size not in SIZES:
        raise SyntheticDataError(f"size must be one of {SIZES} (square frames), got {size!r}")


def _check_frames(frames: int) -> None:
    if not isinstance(frames, (int, np.integer)) or isinstance(frames, bool) or frames < 1:
        raise SyntheticDataError(f"frames must be a positive integer, got {frames!r}")


def _hsv(
    rng: np.random.Generator, hue: float, sat: tuple[float, float], val: tuple[float, float]
) -> RGB:
    rgb = colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(*sat), rng.uniform(*val))
    return tuple(float(255 * c) for c in rgb)


def _random_colour(rng: np.random.Generator) -> RGB:
    return _hsv(rng, rng.uniform(), (0.35, 0.9), (0.35, 0.95))


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
    skin = _hsv(rng, rng.uniform(0.02, 0.1), (0.25, 0.6), (0.35, 0.95))
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
    rng = _as_rng(rng)

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
        hair=_hsv(rng, rng.uniform(0.0, 0.15), (0.2, 0.8), (0.08, 0.6)),
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
    _check_frames(frames)
    rng = _as_rng(rng)
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


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates as fractions of the frame, for size-independent backgrounds."""
    u = (np.arange(size, dtype=np.float64) + 0.5) / size
    return u[None, :], u[:, None]


def sample_background(
    rng: np.random.Generator | int | Sequence[int], size: int, style: PuppetStyle = DEFAULT_STYLE
) -> np.ndarray:
    """Draw a smooth textured background, (size, size, 3) uint8.

    A colour gradient plus a mixture of low-frequency plane waves and soft blobs (how many and
    how strong: `style`); the pattern is defined in frame fractions, so the same generator gives
    the same picture at every size.
    """
    _check_size(size)
    rng = _as_rng(rng)
    x, y = _pixel_grid(size)
    start, end = (np.array(_hsv(rng, rng.uniform(), (0.1, 0.6), (0.3, 0.9))) for _ in range(2))
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.clip((x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle) + 0.5, 0, 1)
    image = start + ramp[..., None] * (end - start)
    for _ in range(style.background_waves):
        freq = rng.uniform(*style.background_wave_frequency)
        direction = rng.uniform(0, 2 * np.pi)
        wave = np.sin(
            2 * np.pi * freq * (x * np.cos(direction) + y * np.sin(direction))
            + rng.uniform(0, 2 * np.pi)
        )
        image = image + wave[..., None] * rng.normal(0, style.background_wave_sigma, size=3)
    for _ in range(style.background_blobs):
        cx, cy = rng.uniform(0, 1, size=2)
        radius = rng.uniform(0.08, 0.3)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2))
        image = image + blob[..., None] * rng.normal(0, style.background_blob_sigma, size=3)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


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


def _pixels_per_unit(identity: Identity, motion: Motion, size: int) -> np.ndarray:
    """Figure units to pixels, per frame (T,)."""
    return motion.scale * size * identity.stature / identity.rest_height


def forward_kinematics(identity: Identity, motion: Motion, size: int) -> np.ndarray:
    """Joint positions (T, 15, 2) in pixels (x, y), pixel centres at integer coordinates."""
    _check_size(size)
    joints = _figure_joints(identity, motion.angles)
    # the middle of the upright figure, from the top of the head to the ankles
    top = identity.torso_length + identity.neck_length + 2 * identity.head_radius
    middle = np.array([0.0, (identity.thigh + identity.shin - top) / 2])
    centre = motion.centre * size - 0.5
    unit = _pixels_per_unit(identity, motion, size)
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


# --------------------------------------------------------------------------------------------
# rendering


@attrs.frozen
class _Window:
    """The pixels a part can touch in a chunk of frames, as broadcastable coordinates."""

    rows: slice
    cols: slice
    x: np.ndarray  # (1, 1, w)
    y: np.ndarray  # (1, h, 1)


def _window(points: np.ndarray, reach: np.ndarray, size: int) -> _Window | None:
    """The bounding box of `points` (T, n, 2) grown by `reach` (T,) pixels, clipped to the frame."""
    low = np.floor((points.min(axis=1) - reach[:, None]).min(axis=0) - 1).astype(int)
    high = np.ceil((points.max(axis=1) + reach[:, None]).max(axis=0) + 2).astype(int)
    low, high = np.clip(low, 0, size), np.clip(high, 0, size)
    if (high <= low).any():
        return None
    cols, rows = slice(low[0], high[0]), slice(low[1], high[1])
    x = np.arange(cols.start, cols.stop, dtype=np.float32)[None, None, :]
    y = np.arange(rows.start, rows.stop, dtype=np.float32)[None, :, None]
    return _Window(rows, cols, x, y)


def _col(values: np.ndarray) -> np.ndarray:
    """(T,) -> (T, 1, 1) float32, to broadcast against a window."""
    return np.asarray(values, dtype=np.float32)[:, None, None]


def _capsule(window: _Window, a: np.ndarray, b: np.ndarray, ra: np.ndarray, rb: np.ndarray):
    """Signed distance to a tapered capsule a-b, and (along, across) coordinates in pixels."""
    ax, ay, bx, by = _col(a[:, 0]), _col(a[:, 1]), _col(b[:, 0]), _col(b[:, 1])
    dx, dy = bx - ax, by - ay
    length = np.sqrt(dx * dx + dy * dy) + np.float32(1e-6)
    ux, uy = dx / length, dy / length
    px, py = window.x - ax, window.y - ay
    along = px * ux + py * uy
    across = px * uy - py * ux
    h = np.clip(along / length, 0, 1)
    ex, ey = px - h * dx, py - h * dy
    radius = _col(ra) + h * (_col(rb) - _col(ra))
    return np.sqrt(ex * ex + ey * ey) - radius, along, across


def _ellipse(window: _Window, centre: np.ndarray, axis: np.ndarray, rx: np.ndarray, ry: np.ndarray):
    """Approximate signed distance to a rotated ellipse; local coordinates (along axis, across)."""
    px, py = window.x - _col(centre[:, 0]), window.y - _col(centre[:, 1])
    ux, uy = _col(axis[:, 0]), _col(axis[:, 1])
    along = px * ux + py * uy
    across = px * uy - py * ux
    rx, ry = _col(rx), _col(ry)
    k0 = np.sqrt((across / rx) ** 2 + (along / ry) ** 2)
    k1 = np.sqrt((across / rx**2) ** 2 + (along / ry**2) ** 2) + np.float32(1e-6)
    # first-order distance: the implicit function divided by its gradient length
    return k0 * (k0 - 1) / k1, along, across


def _segment_distance(px, py, ax, ay, bx, by) -> np.ndarray:
    dx, dy = bx - ax, by - ay
    h = np.clip(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy + np.float32(1e-6)), 0, 1)
    ex, ey = px - ax - h * dx, py - ay - h * dy
    return np.sqrt(ex * ex + ey * ey)


def _rounded_quad(window: _Window, corners: np.ndarray, rounding: np.ndarray) -> np.ndarray:
    """Signed distance to a convex quadrilateral (T, 4, 2) grown by `rounding` pixels."""
    distance = None
    sides = []
    for k in range(4):
        ax, ay = _col(corners[:, k, 0]), _col(corners[:, k, 1])
        bx, by = _col(corners[:, (k + 1) % 4, 0]), _col(corners[:, (k + 1) % 4, 1])
        d = _segment_distance(window.x, window.y, ax, ay, bx, by)
        distance = d if distance is None else np.minimum(distance, d)
        sides.append((bx - ax) * (window.y - ay) - (by - ay) * (window.x - ax) >= 0)
    inside = (sides[0] & sides[1] & sides[2] & sides[3]) | ~(
        sides[0] | sides[1] | sides[2] | sides[3]
    )
    return np.where(inside, -distance, distance) - _col(rounding)


def _texture(style: PartStyle, along: np.ndarray, across: np.ndarray, half_width) -> np.ndarray:
    """Colour (T, h, w, 3) of a part from its local coordinates in figure units."""
    phase = 2 * np.pi / style.period
    if style.pattern == "stripes":
        wave = np.sin(phase * along + style.phase)
    elif style.pattern == "checks":
        wave = np.sin(phase * along + style.phase) * np.sin(phase * across + 1.0) * 2
    else:
        wave = np.full_like(along, -1.0)
    # soft-edged bands rather than hard ones: no aliasing when a band is a pixel or two wide
    mix = np.clip(0.5 + 1.5 * wave, 0, 1)[..., None]
    colour = np.asarray(style.colour, np.float32)
    accent = np.asarray(style.accent, np.float32)
    shading = 1 - 0.35 * np.minimum((across / half_width) ** 2, 1)  # a round limb, lit from front
    return (colour + mix * (accent - colour)) * shading[..., None]


def _composite(canvas: np.ndarray, window: _Window, distance: np.ndarray, colour: np.ndarray):
    coverage = np.clip(np.float32(0.5) - distance, 0, 1)[..., None]
    region = canvas[:, window.rows, window.cols]
    region += coverage * (colour - region)


@attrs.frozen
class _Part:
    """What is needed to draw one part over a chunk of frames (all lengths in pixels)."""

    name: str
    kind: str  # "capsule" | "head" | "torso"
    points: np.ndarray  # (T, n, 2)
    radii: np.ndarray  # (T, 2): start and end radius for capsules; (rx, ry) for the head


def _parts(identity: Identity, joints: np.ndarray, unit: np.ndarray) -> list[_Part]:
    """Every part of the figure, back to front, from pixel joints (T, 15, 2)."""
    parts: dict[str, _Part] = {}

    def j(name: str) -> np.ndarray:
        return joints[:, JOINT_INDEX[name]]

    def add(name: str, kind: str, points: list[np.ndarray], r0: float, r1: float | None = None):
        radii = np.stack([r0 * unit, (r0 if r1 is None else r1) * unit], axis=1)
        parts[name] = _Part(name, kind, np.stack(points, axis=1), radii)

    ident = identity
    for side, outward in (("r", -1.0), ("l", 1.0)):
        hip, knee, ankle = j(f"{side}_hip"), j(f"{side}_knee"), j(f"{side}_ankle")
        toe = ankle + np.array([outward, 0.0]) * (ident.foot * unit)[:, None]
        add(f"{side}_thigh", "capsule", [hip, knee], ident.thigh_radius, ident.shin_radius)
        add(f"{side}_shin", "capsule", [knee, ankle], ident.shin_radius, 0.8 * ident.shin_radius)
        add(
            f"{side}_foot",
            "capsule",
            [ankle, toe],
            0.7 * ident.shin_radius,
            0.6 * ident.shin_radius,
        )
        shoulder, elbow, wrist = j(f"{side}_shoulder"), j(f"{side}_elbow"), j(f"{side}_wrist")
        add(
            f"{side}_upper_arm",
            "capsule",
            [shoulder, elbow],
            ident.arm_radius,
            ident.forearm_radius,
        )
        add(
            f"{side}_forearm",
            "capsule",
            [elbow, wrist],
            ident.forearm_radius,
            0.8 * ident.forearm_radius,
        )
        reach = (wrist - elbow) / (np.linalg.norm(wrist - elbow, axis=1, keepdims=True) + 1e-6)
        palm = wrist + reach * (0.6 * ident.hand_radius * unit)[:, None]
        add(f"{side}_hand", "capsule", [palm, palm], ident.hand_radius)
    corners = [j("r_shoulder"), j("l_shoulder"), j("l_hip"), j("r_hip")]
    add("torso", "torso", corners, ident.torso_rounding)
    add("neck", "capsule", [j("neck"), j("head")], ident.neck_radius)
    add("head", "head", [j("neck"), j("head")], 0.88 * ident.head_radius, ident.head_radius)
    return [parts[name] for name in PART_NAMES]


def _draw_part(canvas: np.ndarray, part: _Part, identity: Identity, unit: np.ndarray) -> None:
    size = canvas.shape[1]
    style = identity.styles[part.name]
    if part.kind == "head":
        centre = part.points[:, 1]
        window = _window(centre[:, None], part.radii.max(axis=1), size)
    else:
        window = _window(part.points, part.radii.max(axis=1), size)
    if window is None:
        return
    scale = _col(1 / unit)  # pixels -> figure units, for size-independent textures
    if part.kind == "capsule":
        a, b = part.points[:, 0], part.points[:, 1]
        distance, along, across = _capsule(window, a, b, part.radii[:, 0], part.radii[:, 1])
        half_width = _col(part.radii.max(axis=1))
        colour = _texture(style, along * scale, across * scale, half_width * scale)
    elif part.kind == "torso":
        distance = _rounded_quad(window, part.points, part.radii[:, 0])
        colour = _torso_colour(window, part, style, scale)
    else:
        colour, distance = _head(window, part, style, identity, scale)
    _composite(canvas, window, distance, colour)


def _torso_colour(window: _Window, part: _Part, style: PartStyle, scale: np.ndarray) -> np.ndarray:
    shoulders = (part.points[:, 0] + part.points[:, 1]) / 2
    hips = (part.points[:, 2] + part.points[:, 3]) / 2
    _, along, across = _capsule(window, hips, shoulders, part.radii[:, 0], part.radii[:, 0])
    half = np.linalg.norm(part.points[:, 1] - part.points[:, 0], axis=1) / 2 + part.radii[:, 0]
    return _texture(style, along * scale, across * scale, _col(half) * scale)


def _head(window: _Window, part: _Part, style: PartStyle, identity: Identity, scale: np.ndarray):
    neck, centre = part.points[:, 0], part.points[:, 1]
    axis = (neck - centre) / (np.linalg.norm(neck - centre, axis=1, keepdims=True) + 1e-6)
    distance, along, across = _ellipse(window, centre, axis, part.radii[:, 0], part.radii[:, 1])
    ry = _col(part.radii[:, 1])
    colour = _texture(style, along * scale, across * scale, _col(part.radii[:, 0]) * scale)
    # hair: everything above the hairline (along points to the neck, so up is negative)
    hair = np.clip(-along - identity.hairline * ry + 0.5, 0, 1)[..., None]
    colour = colour + hair * (np.asarray(identity.hair, np.float32) - colour)
    return colour, distance


def _chunk_frames(size: int) -> int:
    """Frames rendered together: about 128k pixels per array keeps memory small and numpy busy."""
    return max(1, 2**17 // (size * size))


def render_video(
    rng: np.random.Generator | int | Sequence[int],
    frames: int,
    size: int = 64,
    *,
    identity: Identity | None = None,
    motion: Motion | None = None,
    background: np.ndarray | None = None,
    style: PuppetStyle = DEFAULT_STYLE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one clip: (frames (T, H, W, 3) uint8, joints (T, 15, 2) float32, visible (T, 15)).

    Whatever is not given is drawn from `rng` (a generator or a seed) with `style`, in the
    order identity, motion, background; a drawn motion is fitted inside the frame
    (`style.margin`). Joints are in pixels (x, y), pixel centres at integer coordinates;
    `visible` is False for joints outside the frame.
    """
    _check_size(size)
    _check_frames(frames)
    rng = _as_rng(rng)
    identity = sample_identity(rng, style) if identity is None else identity
    if motion is None:
        motion = fit_in_frame(identity, sample_motion(rng, frames, style=style), size, style.margin)
    if motion.frames != frames:
        raise SyntheticDataError(f"the motion has {motion.frames} frames, expected {frames}")
    if background is None:
        background = sample_background(rng, size, style)
    if background.shape != (size, size, 3):
        raise SyntheticDataError(f"background must be ({size}, {size}, 3), got {background.shape}")
    joints = forward_kinematics(identity, motion, size)
    unit = _pixels_per_unit(identity, motion, size)
    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    step = _chunk_frames(size)
    for start in range(0, frames, step):
        chunk = slice(start, min(frames, start + step))
        canvas = np.repeat(background[None].astype(np.float32), chunk.stop - start, axis=0)
        for part in _parts(identity, joints[chunk], unit[chunk]):
            _draw_part(canvas, part, identity, unit[chunk])
        video[chunk] = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    joints = joints.astype(np.float32)
    return video, joints, visibility(joints, size)


# --------------------------------------------------------------------------------------------
# dataset


def video_name(identity: int, clip: int) -> str:
    """The name of a clip: `id0007#clip02`."""
    return f"id{identity:04d}#clip{clip:02d}"


@attrs.frozen
class _VideoJob:
    """One clip to render and write."""

    out: Path
    split: str
    identity: int
    clip: int
    seed: int
    frames: int
    size: int

    @property
    def name(self) -> str:
        return video_name(self.identity, self.clip)


def plan_split(
    videos: int, test_fraction: float, clips_per_identity: int
) -> dict[str, list[tuple[int, int]]]:
    """(identity, clip) pairs per split, splitting by identity.

    Identities get `clips_per_identity` clips (the last ones may get one fewer); the last
    identities go to test, as many as bring the test share closest to `test_fraction`, at least
    one when there are two videos or more and `test_fraction` > 0, never all of them.
    """
    identities = max(math.ceil(videos / clips_per_identity), 2 if test_fraction > 0 else 1)
    identities = min(identities, videos)
    base, extra = divmod(videos, identities)
    clips = [base + (1 if i < extra else 0) for i in range(identities)]
    test_ids = 0
    if identities >= 2 and test_fraction > 0:
        target = test_fraction * videos
        cumulative = np.cumsum(clips[::-1])[: identities - 1]
        test_ids = int(np.argmin(np.abs(cumulative - target))) + 1
    first_test = identities - test_ids
    plan: dict[str, list[tuple[int, int]]] = {"train": [], "test": []}
    for i, count in enumerate(clips):
        split = "test" if i >= first_test else "train"
        plan[split].extend((i, c) for c in range(count))
    return plan


def _write_png(frame: np.ndarray, path: Path) -> None:
    Image.fromarray(frame, mode="RGB").save(path, format="PNG", compress_level=1)


def _render_job(job: _VideoJob) -> tuple[_VideoJob, dict[str, float]]:
    """Render one clip and write its frames and ground truth; returns it with its motion
    statistics."""
    identity = sample_identity(np.random.default_rng([job.seed, 1, job.identity]), DEFAULT_STYLE)
    rng = np.random.default_rng([job.seed, 2, job.identity, job.clip])
    video, joints, visible = render_video(rng, job.frames, job.size, identity=identity)
    folder = job.out / job.split / job.name
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(video):
        _write_png(frame, folder / f"{index:07d}.png")
    truth = job.out / "groundtruth" / job.split
    truth.mkdir(parents=True, exist_ok=True)
    np.savez(truth / f"{job.name}.npz", joints=joints, visible=visible)
    return job, motion_statistics(joints, visible)


def _is_synthetic_dataset(out: Path) -> bool:
    if (out / MARKER_NAME).is_file():
        return True
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == GENERATOR


def _prepare_output(out: Path) -> None:
    """Make `out` an empty dataset folder; only a previous synthetic dataset may be replaced."""
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"'{out}' exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not _is_synthetic_dataset(out):
            raise OutputFolderError(
                f"'{out}' is not empty and holds no synthetic puppet dataset; refusing to write "
                "into it (choose an empty or new folder)"
            )
        # the manifest goes first, so an interruption never leaves a complete-looking dataset
        for entry in (MANIFEST_NAME, *GENERATED_ENTRIES[:-1]):
            path = out / entry
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER_NAME).write_text(f"{GENERATOR} {GENERATOR_VERSION}\n")


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise SyntheticDataError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_arguments(
    videos: int, frames: int, size: int, seed: int, test_fraction: float, clips: int, workers: int
) -> None:
    _check_positive_int("videos", videos)
    _check_positive_int("frames", frames, 2)
    _check_size(size)
    _check_positive_int("seed", seed, 0)
    _check_positive_int("clips_per_identity", clips)
    _check_positive_int("workers", workers)
    if not 0 <= test_fraction < 1:
        raise SyntheticDataError(f"test_fraction must be in [0, 1), got {test_fraction!r}")


def _run_jobs(
    jobs: list[_VideoJob], workers: int, progress: bool
) -> dict[str, list[dict[str, float]]]:
    """Render every job; the motion statistics of each clip, per split, in job order."""
    bar = tqdm(total=len(jobs), desc="synthetic puppets", unit="video", disable=not progress)
    found: dict[_VideoJob, dict[str, float]] = {}
    with bar:
        if workers == 1:
            for job in jobs:
                found[job] = _render_job(job)[1]
                bar.update()
        else:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                for future in as_completed([pool.submit(_render_job, job) for job in jobs]):
                    job, statistics = future.result()
                    found[job] = statistics
                    bar.update()
    return {split: [found[j] for j in jobs if j.split == split] for split in SPLITS}


def generate_dataset(
    out: str | Path,
    videos: int,
    frames: int,
    size: int = 64,
    seed: int = 0,
    test_fraction: float = 0.2,
    clips_per_identity: int = 4,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Render a synthetic puppet dataset into `out` (FOMM layout) and return its manifest.

    `videos` is the total over both splits; train and test share no identity. Every clip is
    seeded from (seed, identity, clip) alone, so the bytes do not depend on `workers`.
    `out` must be missing, empty or a previous synthetic dataset (which is replaced).
    """
    _check_arguments(videos, frames, size, seed, test_fraction, clips_per_identity, workers)
    out = Path(out)
    _prepare_output(out)
    plan = plan_split(videos, test_fraction, clips_per_identity)
    jobs = [
        _VideoJob(out, split, identity, clip, int(seed), frames, size)
        for split in SPLITS
        for identity, clip in plan[split]
    ]
    statistics = _run_jobs(jobs, min(workers, len(jobs)), progress)
    for split in SPLITS:  # a split without videos is still a folder
        (out / split).mkdir(exist_ok=True)
        (out / "groundtruth" / split).mkdir(parents=True, exist_ok=True)
    manifest = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "size": size,
        "frames": frames,
        "test_fraction": test_fraction,
        "clips_per_identity": clips_per_identity,
        "counts": {split: len(plan[split]) for split in SPLITS},
        "joint_names": list(JOINT_NAMES),
        "identities": {split: sorted({f"id{i:04d}" for i, _ in plan[split]}) for split in SPLITS},
        "videos": {split: [video_name(i, c) for i, c in plan[split]] for split in SPLITS},
        "style": DEFAULT_STYLE.to_json(),
        # mean over each split's clips, in pixels: see kptoolkit.data.puppet_style
        "motion": {split: summarise_motion(statistics[split]) for split in SPLITS},
    }
    _write_manifest(out, manifest)
    return manifest


def _write_manifest(out: Path, manifest: dict) -> None:
    atomic_write_text(out / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")


_MANIFEST_KEYS = ("generator", "version", "seed", "size", "frames", "counts", "joint_names")


def read_manifest(root: str | Path) -> dict | None:
    """The manifest of a complete synthetic dataset at `root`, or None if missing or incomplete."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR:
        return None
    if any(key not in manifest for key in _MANIFEST_KEYS):
        return None
    listed = manifest.get("videos")
    if not isinstance(listed, dict) or any(not isinstance(listed.get(s), list) for s in SPLITS):
        return None
    for split in SPLITS:
        for name in listed[split]:
            if not (root / split / name).is_dir():
                return None
            if not (root / "groundtruth" / split / f"{name}.npz").is_file():
                return None
    return manifest


def load_groundtruth(root: str | Path, split: str, video: str) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of one video: joints (T, 15, 2) float32 in pixels and visible (T, 15) bool."""
    if split not in SPLITS:
        raise SyntheticDataError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(root) / "groundtruth" / split / f"{video}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no ground truth for video '{video}' in split '{split}': {path}")
    with np.load(path) as data:
        return data["joints"].astype(np.float32), data["visible"].astype(bool)
