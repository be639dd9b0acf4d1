"""Drawing puppets from a seed: identities (proportions, widths, colours and textures) and
their motion (joint-angle sinusoids, drift and scale), as the dataset's style says."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence

import numpy as np

from kptoolkit.data.puppets.model import (
    DOF_NAMES,
    PATTERNS,
    RGB,
    Identity,
    Motion,
    PartStyle,
    as_rng,
    check_frames,
    dof_group,
)
from kptoolkit.data.puppets.style import DEFAULT_STYLE, PuppetStyle


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
        group = dof_group(dof)
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
