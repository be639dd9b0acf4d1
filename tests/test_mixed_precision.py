"""Mixed precision on the CPU (`train.precision=bf16`: bfloat16 autocast) trains and stays close
to float32."""

from __future__ import annotations

import csv

import pytest
import torch
from train_fixtures import tiny_config, tiny_kp_checkpoint

from kptoolkit.engine.trainer import Trainer
from kptoolkit.losses.equivariance import equivariance_terms, sample_transform
from kptoolkit.nn.anti_alias import anti_alias_downscale, anti_alias_kernel


def _first_losses(run) -> dict[str, float]:
    with (run / "losses.csv").open() as handle:
        return {k: float(v) for k, v in next(csv.DictReader(handle)).items() if v}


@pytest.mark.parametrize(("masker", "generator"), [("heatmap_sum", "two_stage"), ("", "fomm")])
def test_bfloat16_training_runs_and_matches_float32_at_the_first_step(tmp_path, masker, generator):
    """FOMM covers the equivariance loss and the L1 pyramid's anti-aliased downscaling, the two
    places where a bfloat16 tensor met a float32 one."""
    losses = {}
    for amp in (False, True):
        precision = "train.precision=" + ("bf16" if amp else "fp32")
        overrides = [f"generator.name={generator}", f"masker.name={masker}", precision]
        run = tmp_path / f"amp-{amp}"
        trainer = Trainer.from_config(
            tiny_config(*overrides), run, str(tiny_kp_checkpoint(tmp_path))
        )
        assert trainer.train().steps == 2
        losses[amp] = _first_losses(run)
    # the same weights and batch at step 1: only the precision differs (bfloat16: 8 bits of
    # mantissa, so agreement to about 1%)
    assert losses[True]["total"] == pytest.approx(losses[False]["total"], rel=0.03)
    assert losses[True]["total"] != losses[False]["total"]  # autocast really was on


def test_anti_alias_downscale_keeps_a_reduced_precision_input_type():
    x = torch.rand(1, 3, 16, 16)
    weight = anti_alias_kernel(0.5).expand(3, 1, -1, -1)
    low = anti_alias_downscale(x.bfloat16(), weight, 2)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), anti_alias_downscale(x, weight, 2), atol=1e-2, rtol=0)


def test_equivariance_terms_are_float32_for_bfloat16_keypoints():
    torch.manual_seed(0)
    transform = sample_transform(2)
    kp = torch.rand(2, 5, 2) * 2 - 1
    jac = torch.eye(2).expand(2, 5, 2, 2) + 0.1 * torch.randn(2, 5, 2, 2)
    full = equivariance_terms(transform, kp, kp, jac, jac)
    half = equivariance_terms(
        transform, kp.bfloat16(), kp.bfloat16(), jac.bfloat16(), jac.bfloat16()
    )
    for exact, reduced in zip(full, half, strict=True):
        assert reduced.dtype == torch.float32
        assert reduced.item() == pytest.approx(exact.item(), rel=0.05, abs=1e-3)


@pytest.mark.parametrize(("masker", "generator"), [("heatmap_sum", "two_stage"), ("", "fomm")])
def test_channels_last_training_matches_the_contiguous_layout(tmp_path, masker, generator):
    """`train.channels_last` changes the memory layout only: the same losses to float
    rounding, and the networks really are channels_last while they train."""
    losses, layouts = {}, {}
    for channels_last in (False, True):
        overrides = [f"generator.name={generator}", f"masker.name={masker}"]
        overrides += ["train.precision=fp32", f"train.channels_last={channels_last}"]
        trainer = Trainer.from_config(
            tiny_config(*overrides),
            tmp_path / f"cl-{channels_last}",
            str(tiny_kp_checkpoint(tmp_path)),
        )
        trainer.train()
        weights = [p for p in trainer.models.generator.parameters() if p.dim() == 4]
        layouts[channels_last] = all(
            p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
            for p in weights
        )
        losses[channels_last] = _first_losses(tmp_path / f"cl-{channels_last}")
    assert layouts == {False: False, True: True}
    assert losses[True]["total"] == pytest.approx(losses[False]["total"], rel=1e-5)


@pytest.mark.parametrize("amp", [False, True])
def test_the_trainer_hands_its_autocast_to_the_losses(tmp_path, amp):
    """The losses learn the forward pass's precision (the equivariance term runs the detector
    at it): bfloat16 with `train.precision=bf16` on the CPU, none with fp32."""
    precision = "train.precision=" + ("bf16" if amp else "fp32")
    overrides = ["generator.name=fomm", "masker.name=", precision]
    trainer = Trainer.from_config(
        tiny_config(*overrides), tmp_path / "run", str(tiny_kp_checkpoint(tmp_path))
    )
    inputs, _ = trainer._forward(next(trainer._batches()))
    assert inputs.autocast_dtype == (torch.bfloat16 if amp else None)
