"""Relative motion (FOMM): move the source keypoints by the driving motion since its first frame."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from kptoolkit.structure import Structure

if TYPE_CHECKING:
    from kptoolkit.maskers.base import Masker


def convex_hull_area(points: torch.Tensor) -> torch.Tensor:
    """Area of the convex hull of each (B,K,2) point set -> (B,) (monotone chain, shoelace)."""
    areas = []
    for sample in points.detach().cpu().double():
        pts = sorted({(float(x), float(y)) for x, y in sample})
        if len(pts) < 3:
            areas.append(0.0)
            continue

        def cross(o: tuple, a: tuple, b: tuple) -> float:
            return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

        lower: list[tuple[float, float]] = []
        upper: list[tuple[float, float]] = []
        for p in pts:
            while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
                lower.pop()
            lower.append(p)
        for p in reversed(pts):
            while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
                upper.pop()
            upper.append(p)
        hull = lower[:-1] + upper[:-1]
        twice = sum(
            hull[i][0] * hull[(i + 1) % len(hull)][1] - hull[(i + 1) % len(hull)][0] * hull[i][1]
            for i in range(len(hull))
        )
        areas.append(abs(twice) / 2)
    return torch.tensor(areas, dtype=points.dtype, device=points.device)


def relative_keypoints(
    kp_source: torch.Tensor,
    kp_driving: torch.Tensor,
    kp_driving_initial: torch.Tensor,
    jac_source: torch.Tensor | None = None,
    jac_driving: torch.Tensor | None = None,
    jac_driving_initial: torch.Tensor | None = None,
    adapt_scale: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """kp = kp_source + (kp_driving - kp_driving_initial) * scale; J = J_d J_d0^-1 J_s.

    With `adapt_scale`, scale = sqrt(hull area of kp_source) / sqrt(hull area of
    kp_driving_initial) per sample, so a small driving figure moves a large source figure by
    proportionally larger steps; otherwise scale is 1.
    """
    scale = torch.ones(kp_source.shape[0], dtype=kp_source.dtype, device=kp_source.device)
    if adapt_scale:
        source_area = convex_hull_area(kp_source)
        driving_area = convex_hull_area(kp_driving_initial)
        scale = torch.sqrt(source_area) / torch.sqrt(driving_area).clamp_min(1e-12)
    keypoints = kp_source + (kp_driving - kp_driving_initial) * scale.view(-1, 1, 1)
    jacobians = None
    if jac_source is not None and jac_driving is not None and jac_driving_initial is not None:
        jacobians = jac_driving @ torch.linalg.inv(jac_driving_initial) @ jac_source
    return keypoints, jacobians


def relative_structure(
    masker: Masker,
    source: Structure,
    driving: Structure,
    driving_initial: Structure,
    adapt_scale: bool = False,
) -> Structure:
    """The driving structure re-expressed relative to the source (relative animation).

    Only for maskers that support relative motion (their structure is drawn from keypoints):
    the keypoints (and jacobians) are normalised by `relative_keypoints`, then redrawn with
    `masker.from_keypoints` on the grid of the source structure.
    """
    if source.keypoints is None or driving.keypoints is None or driving_initial.keypoints is None:
        raise ValueError("relative motion needs keypoints in all three structures")
    keypoints, jacobians = relative_keypoints(
        source.keypoints,
        driving.keypoints,
        driving_initial.keypoints,
        source.jacobians,
        driving.jacobians,
        driving_initial.jacobians,
        adapt_scale=adapt_scale,
    )
    structure = masker.from_keypoints(keypoints, jacobians, source)
    if driving.covariances is not None and structure.covariances is not None:
        # the keypoints move; their extent stays the driving one (Monkey-Net's transfer)
        structure = structure.replace(covariances=driving.covariances)
    return structure
