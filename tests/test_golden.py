"""Official-checkpoint paths against numbers kptoolkit produced once (`tests/data/golden.json`).

A change in how official files are read (a key mapped to the wrong layer, a transposed weight),
in the published-width networks or in the inference path moves these numbers; the tolerance
only absorbs floating-point differences between machines and thread counts.
"""

from __future__ import annotations

import json

import pytest
import torch
from golden_cases import CASES, GOLDEN

EXPECTED = json.loads(GOLDEN.read_text())
TOLERANCE = {"rtol": 1e-4, "atol": 2e-5}
# frame-to-frame changes are small with random weights: compared relatively
TOLERANCES = {"change": {"rtol": 2e-3, "atol": 1e-7}}


def assert_moving_and_structured(name: str, values: dict) -> None:
    """The outputs are not flat: the pinned numbers would not notice a broken path if they were
    (a constant frame, a prediction the driving frames do not move, keypoints on one point)."""
    pixels = torch.tensor(values["pixels"])
    assert values["std"] > 0.02, f"{name}: a flat prediction (std {values['std']:.4f})"
    assert pixels.std() > 0.01, f"{name}: flat pixels"
    # the driving frames move the prediction
    assert min(values["change"]) > 1e-5, f"{name}: still frames {values['change']}"
    keypoints = torch.tensor(values["keypoints"]).view(-1, 2)
    assert keypoints.std(dim=0).min() > 0.02, f"{name}: keypoints on one point"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_official_checkpoint_outputs_move_and_match_the_stored_values(name):
    got, expected = CASES[name](), EXPECTED[name]
    assert_moving_and_structured(name, got)
    assert set(got) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(
            torch.tensor(got[key], dtype=torch.float64),
            torch.tensor(value, dtype=torch.float64),
            msg=lambda text, key=key: f"{name}: {key}: {text}",
            **TOLERANCES.get(key, TOLERANCE),
        )


def test_the_motion_check_fails_flat_outputs():
    """The check above on outputs a broken path would give: a constant prediction, frames
    that do not move, keypoints collapsed onto one point."""
    moving = {"std": 0.06, "pixels": [0.1, 0.5, 0.9], "change": [1e-4, 2e-4]}
    spread = {"keypoints": [-0.5, -0.5, 0.5, 0.5, 0.0, 0.3]}
    assert_moving_and_structured("fine", {**moving, **spread})
    broken = [
        {"std": 0.0, "pixels": [0.5, 0.5, 0.5]},
        {"change": [0.0, 0.0]},
        {"keypoints": [0.1, 0.1] * 3},
    ]
    for change in broken:
        with pytest.raises(AssertionError):
            assert_moving_and_structured("broken", {**moving, **spread, **change})
