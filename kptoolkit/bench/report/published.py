"""Published Tai-Chi-HD 256x256 reconstruction results, kept apart from measured rows.

These numbers were measured by the papers' authors with their own evaluators (an 18-joint body
pose model and a person re-identification network) on real Tai-Chi-HD videos; they are shown for
reference and never compared with, or mixed into, a bench's measured table.
"""

from __future__ import annotations

import attrs

TITLE = "Published Tai-Chi-HD 256x256 reconstruction results (from the papers; not measured here)"


@attrs.frozen
class PublishedRow:
    """One published result; None where the paper reports no value."""

    method: str
    l1: float
    akd: float
    mkr: float | None
    aed: float
    source: str


PAPER = "keypoint-mask paper, Table 2"
QUOTED = "as quoted elsewhere"

PUBLISHED_TAICHI: tuple[PublishedRow, ...] = (
    PublishedRow("X2Face", 0.080, 17.654, None, 0.272, PAPER),
    PublishedRow("Monkey-Net", 0.077, 10.798, None, 0.228, PAPER),
    PublishedRow("FOMM", 0.063, 6.872, None, 0.167, PAPER),
    PublishedRow("Perturbed mask", 0.047, 4.239, None, 0.147, PAPER),
    PublishedRow("Keypoint mask, circles (softmax)", 0.077, 14.760, None, 0.245, PAPER),
    PublishedRow("Keypoint mask, heatmap", 0.045, 5.551, None, 0.141, PAPER),
    PublishedRow("MRAA", 0.048, 5.59, 0.027, 0.152, f"MRAA paper, {QUOTED}"),
    PublishedRow("TPSMM", 0.045, 4.57, 0.018, 0.151, f"TPSMM paper, {QUOTED}"),
)
