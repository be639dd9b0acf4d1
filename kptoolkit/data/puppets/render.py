"""Synthetic puppets: the rasteriser that draws a figure and its background into frames.

Rendering evaluates signed distances of capsules, an ellipse and a rounded quadrilateral on the
pixel grid and composites the parts back to front (`PART_NAMES`) with a one-pixel coverage ramp,
so edges are anti-aliased. Backgrounds are procedural and drawn per video. The figure itself
(identity, motion, joints) comes from `kptoolkit.data.puppets.model`.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from kptoolkit.data.puppets.model import (
    JOINT_INDEX,
    PART_NAMES,
    Identity,
    Motion,
    PartStyle,
    SyntheticDataError,
    as_rng,
    check_frames,
    check_size,
    fit_in_frame,
    forward_kinematics,
    pixels_per_unit,
    visibility,
)
from kptoolkit.data.puppets.sampling import hsv_colour, sample_identity, sample_motion
from kptoolkit.data.puppets.style import DEFAULT_STYLE, PuppetStyle

# --------------------------------------------------------------------------------------------
# background


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
    check_size(size)
    rng = as_rng(rng)
    x, y = _pixel_grid(size)
    start, end = (
        np.array(hsv_colour(rng, rng.uniform(), (0.1, 0.6), (0.3, 0.9))) for _ in range(2)
    )
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
    check_size(size)
    check_frames(frames)
    rng = as_rng(rng)
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
    unit = pixels_per_unit(identity, motion, size)
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
