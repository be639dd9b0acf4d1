"""`feature_pyramid`: a seeded fixed network, zero for the real frame, gradients to the output
only, trained weights from a file, and one clear error for what cannot work."""

from __future__ import annotations

import pytest
import torch

from kptoolkit.errors import ConfigError
from kptoolkit.losses.base import LossInputs
from kptoolkit.losses.feature_pyramid import (
    FeaturePyramid,
    SmallFeatureNetwork,
    random_feature_network,
    save_feature_network,
)
from kptoolkit.registry.registries import LOSSES
from kptoolkit.structure import Structure


def _inputs(prediction: torch.Tensor, target: torch.Tensor) -> LossInputs:
    batch = {"source": target, "driving": target}
    return LossInputs(batch, {"prediction": prediction}, Structure(), Structure())


def _frames(seed: int, size: int = 32) -> torch.Tensor:
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_the_random_network_is_drawn_from_its_seed_alone():
    torch.manual_seed(123)
    first = random_feature_network((4, 8), seed=5).state_dict()
    torch.manual_seed(456)  # the process's state does not matter, and is left as it was
    state = torch.random.get_rng_state()
    second = random_feature_network((4, 8), seed=5).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = random_feature_network((4, 8), seed=6).state_dict()
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_the_term_is_zero_for_the_real_frame_and_grows_with_the_difference():
    loss = LOSSES.create("feature_pyramid", widths=[4, 8, 8])
    target = _frames(0)
    assert float(loss(_inputs(target.clone(), target), "prediction")) == 0.0
    near = loss(_inputs((target + 0.02 * _frames(1)).clamp(0, 1), target), "prediction")
    far = loss(_inputs(_frames(2), target), "prediction")
    assert 0 < float(near) < float(far)


def test_only_the_output_gets_gradients():
    loss = FeaturePyramid(widths=[4, 8])
    prediction = _frames(1).requires_grad_(True)
    loss(_inputs(prediction, _frames(0)), "prediction").backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.parameters())
    loss.train(True)
    assert not loss.features.training


def test_trained_weights_come_from_a_file(tmp_path):
    network = SmallFeatureNetwork((4, 8))
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.fill_(0.01)
    path = tmp_path / "features.pth"
    save_feature_network(network, path)
    loss = FeaturePyramid(weights=str(path))
    assert loss.features.widths == (4, 8)
    assert all(torch.all(p == 0.01) for p in loss.features.parameters())


def test_what_cannot_work_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no such weights file"):
        FeaturePyramid(weights=str(tmp_path / "missing.pth"))
    (tmp_path / "other.pth").write_bytes(b"")
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="not a feature network file"):
        FeaturePyramid(weights=str(tmp_path / "other.pth"))
    with pytest.raises(ValueError, match="layer_weights needs 3 values"):
        FeaturePyramid(layer_weights=[1.0])
    tiny = FeaturePyramid(widths=[4, 8], scales=[1.0, 0.125])
    with pytest.raises(ConfigError, match="below 8 px"):
        tiny(_inputs(_frames(1), _frames(0)), "prediction")
