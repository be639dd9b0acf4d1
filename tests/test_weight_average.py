"""The moving average of a run's weights (`train.ema_decay`): its arithmetic, what checkpoints
store, that evaluation reads it, and that a resumed run averages exactly as an uninterrupted
one."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from train_fixtures import tiny_config, tiny_kp_checkpoint

from kptoolkit.engine.checkpoints import latest_checkpoint, load_run
from kptoolkit.engine.trainer import Trainer
from kptoolkit.engine.weight_average import WeightAverage, update_average, warmed_decay
from kptoolkit.errors import ConfigError
from kptoolkit.utils.checkpoint_io import read_checkpoint


def test_the_decay_is_warmed_up_then_held():
    assert warmed_decay(0.999, 1) == pytest.approx(2 / 11)
    assert warmed_decay(0.999, 90) == pytest.approx(91 / 100)
    assert warmed_decay(0.9, 10_000) == 0.9


def test_an_update_moves_weights_and_statistics_and_copies_counters():
    torch.manual_seed(0)
    live = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = {k: v.clone() for k, v in live.state_dict().items()}
    before = {k: v.clone() for k, v in average.items()}
    with torch.no_grad():
        live[0].weight.add_(1.0)
        live[1].running_mean.fill_(4.0)
        live[1].num_batches_tracked.fill_(7)
    update_average(average, live, 0.75)
    expected = 0.75 * before["0.weight"] + 0.25 * live[0].weight
    assert torch.allclose(average["0.weight"], expected)
    assert torch.allclose(average["1.running_mean"], 0.75 * before["1.running_mean"] + 1.0)
    assert int(average["1.num_batches_tracked"]) == 7


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_a_decay_outside_0_to_1_is_refused(decay):
    with pytest.raises(ConfigError, match="ema_decay"):
        tiny_config(f"train.ema_decay={decay}")
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage({"net": nn.Linear(1, 1)}, decay)


def _train(tmp_path, name, kp, *settings, resume=False):
    config = tiny_config("train.ema_decay=0.9", "train.checkpoint_every=2", *settings)
    return Trainer.from_config(config, tmp_path / name, kp, resume=resume).train()


def test_checkpoints_keep_the_average_and_evaluation_reads_it(tmp_path):
    kp = str(tiny_kp_checkpoint(tmp_path))
    result = _train(tmp_path, "run", kp, "train.steps=4")
    stored = read_checkpoint(result.checkpoint)
    assert set(stored["models_ema"]) == {"generator"}  # the trained networks (no masker here)
    live, averaged = stored["models"]["generator"], stored["models_ema"]["generator"]
    assert any(not torch.equal(live[k], averaged[k]) for k in live if live[k].is_floating_point())
    _, models = load_run(result.checkpoint)
    loaded = models.generator.state_dict()
    assert all(torch.equal(loaded[k], averaged[k]) for k in averaged)


def test_a_resumed_run_averages_as_an_uninterrupted_one(tmp_path):
    kp = str(tiny_kp_checkpoint(tmp_path))
    full = _train(tmp_path, "full", kp, "train.steps=4")
    _train(tmp_path, "cut", kp, "train.steps=2")
    resumed = _train(tmp_path, "cut", kp, "train.steps=4", resume=True)
    assert resumed.steps == 4
    first = read_checkpoint(full.checkpoint)["models_ema"]["generator"]
    second = read_checkpoint(latest_checkpoint(tmp_path / "cut" / "checkpoints"))["models_ema"]
    for key, value in first.items():
        assert torch.allclose(value, second["generator"][key], rtol=1e-5, atol=1e-7), key


def test_without_a_decay_checkpoints_hold_no_average(tmp_path):
    kp = str(tiny_kp_checkpoint(tmp_path))
    result = Trainer.from_config(tiny_config(), tmp_path / "run", kp).train()
    assert "models_ema" not in read_checkpoint(result.checkpoint)
