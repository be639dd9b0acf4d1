"""Motion reaches the prediction, through the same inference path as `reconstruct` / `animate`.

For every built-in generator, overfitted on two frames of a moving blob (the four source ->
driving pairs), the model driven by the other frame predicts that frame (far closer to it than
to the source, and than copying the source would be), and driven by the source itself keeps the
source.

A generator that ignores the driving structure, or an inference path that drives every frame by
the source structure, fails here. (FOMM's decoder can overfit two frames without its warp, so
sparse motion that ignores the source keypoints is caught by `test_fomm.py`'s first-order test.)
"""

from __future__ import annotations

import pytest
import torch
from motion_fixtures import FRAME_A, FRAME_B, animate, l1, overfit, tiny_models

PAIRS = [("two_stage", "heatmap_sum"), ("fomm", None), ("x2face", None), ("monkey_net", None)]


@pytest.mark.slow
@pytest.mark.parametrize(("generator", "masker"), PAIRS)
def test_overfitted_model_follows_the_driving_frame(generator, masker, tmp_path):
    torch.manual_seed(0)
    models = tiny_models(generator, masker, tmp_path)
    copy_error = l1(FRAME_A, FRAME_B)  # what copying the source scores
    before = l1(animate(models, FRAME_A, FRAME_B), FRAME_B)
    overfit(models)
    moved = animate(models, FRAME_A, FRAME_B)
    kept = animate(models, FRAME_A, FRAME_A)
    assert l1(moved, FRAME_B) < 0.5 * min(before, copy_error)
    assert l1(moved, FRAME_B) < 0.5 * l1(moved, FRAME_A)  # it moved: B, not A
    assert l1(kept, FRAME_A) < 0.5 * copy_error  # identity motion keeps the source
