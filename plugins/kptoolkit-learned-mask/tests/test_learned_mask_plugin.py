"""The example plugin's masker: starts as the paper's summed mask, trains, needs a detector."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

pytest.importorskip(
    "kptoolkit_learned_mask",
    reason="the kptoolkit-learned-mask plugin is not installed "
    "(pip install ./plugins/kptoolkit-learned-mask)",
)

from kptoolkit import create_masker
from kptoolkit.errors import CompatibilityError
from kptoolkit.maskers.functional import finish_mask


class FakeDetector(torch.nn.Module):
    """Stands in for the frozen FOMM detector: fixed random logits of the right shape."""

    def __init__(self, num_kp: int = 10) -> None:
        super().__init__()
        self.num_kp = num_kp

    def forward(self, frame: torch.Tensor) -> SimpleNamespace:
        generator = torch.Generator().manual_seed(0)
        logits = torch.randn(frame.shape[0], self.num_kp, 58, 58, generator=generator)
        return SimpleNamespace(logits=logits)


def test_initialised_as_the_summed_heatmap():
    masker = create_masker("learned_projection", num_kp=10)
    logits = torch.randn(2, 10, 58, 58)
    expected = finish_mask(logits.sum(dim=1, keepdim=True))
    torch.testing.assert_close(masker.project(logits), expected)


def test_forward_with_attached_detector_and_training_step():
    masker = create_masker("learned_projection", num_kp=10, out_channels=2, init="random")
    masker.attach_detector(FakeDetector())
    structure = masker(torch.rand(3, 3, 256, 256))
    assert structure.mask.shape == (3, 2, 64, 64)
    assert structure.mask.min() >= 0 and structure.mask.max() <= 1
    assert "_detector" not in dict(masker.named_modules())
    assert all(not k.startswith("_detector") for k in masker.state_dict())
    before = masker.projection.weight.detach().clone()
    optimizer = torch.optim.SGD(masker.parameters(), lr=0.1)
    loss = (structure.mask[:, 0] - structure.mask[:, 1]).abs().mean()
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, masker.projection.weight)


def test_clear_errors():
    masker = create_masker("learned_projection", num_kp=5)
    with pytest.raises(CompatibilityError, match="keypoint detector"):
        masker(torch.rand(1, 3, 64, 64))
    masker.attach_detector(FakeDetector(num_kp=10))
    with pytest.raises(CompatibilityError, match="built for 5 keypoints"):
        masker(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="init"):
        create_masker("learned_projection", init="zeros")
