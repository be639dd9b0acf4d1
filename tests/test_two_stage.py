"""The two-stage generator: shapes, official layout, detaching, compatibility, one train step."""

from __future__ import annotations

import pytest
import torch
from model_fixtures import TINY_TWO_STAGE, read_reference_table, tiny_detector
from train_fixtures import pair_plan, tiny_kp_checkpoint

from kptoolkit import create_generator, create_masker
from kptoolkit.errors import CompatibilityError
from kptoolkit.keypoints.detector import KeypointDetector
from kptoolkit.keypoints.loading import load_detector
from kptoolkit.structure import Structure
from kptoolkit.utils.checkpoint_io import CheckpointError, load_strict, model_state, read_checkpoint

REFERENCE = read_reference_table("keypoint-mask-generator-state-dict.tsv")["generator"]


def masks(batch=2, channels=1, size=16):
    return Structure(mask=torch.rand(batch, channels, size, size)), Structure(
        mask=torch.rand(batch, channels, size, size)
    )


def test_outputs_at_cpu_widths():
    generator = create_generator("two_stage", **TINY_TWO_STAGE)
    out = generator(torch.rand(2, 3, 64, 64), *masks())
    assert set(out) == {"prediction", "low_res_prediction"}
    for value in out.values():
        assert value.shape == (2, 3, 64, 64) and value.min() >= 0 and value.max() <= 1


def test_paper_widths_have_the_official_layout_without_dead_layers():
    generator = create_generator("two_stage")
    shapes = {k: tuple(v.shape) for k, v in generator.state_dict().items()}
    used = {k: v for k, v in REFERENCE.items() if not k.startswith("down_blocks.")}
    assert shapes == used
    assert len(REFERENCE) - len(used) == 14  # the unused down blocks are not built
    assert sum(p.numel() for p in generator.parameters()) == 45_165_086


@pytest.mark.slow
def test_official_checkpoint_loads_into_detector_and_two_stage(tmp_path):
    torch.manual_seed(0)
    official = create_generator("two_stage").state_dict()
    official.update(
        {
            k: torch.randn(shape) if shape else torch.tensor(0)
            for k, shape in REFERENCE.items()
            if k.startswith("down_blocks.")
        }
    )
    path = tmp_path / "taichi-keypoint-mask.pth.tar"
    torch.save(
        {
            "kp_detector": KeypointDetector().state_dict(),
            "generator": official,
            "optimizer_generator": {},
            "epoch": 99,
        },
        path,
    )
    checkpoint = read_checkpoint(path)
    generator = create_generator("two_stage")
    load_strict(generator, model_state(checkpoint, "generator"), "two_stage")
    torch.testing.assert_close(generator.final.weight, official["final.weight"])
    assert load_detector(path).num_kp == 10
    official["first.conv.weight"] = torch.zeros(256, 7, 7, 7)
    with pytest.raises(CheckpointError, match=r"first\.conv\.weight"):
        load_strict(create_generator("two_stage"), official, "two_stage")


def test_stage_two_inputs_are_detached_as_published():
    generator = create_generator("two_stage", **TINY_TWO_STAGE)
    out = generator(torch.rand(1, 3, 64, 64), *masks(batch=1))
    out["prediction"].mean().backward()
    assert generator.first.conv.weight.grad is None  # stage 1 learns from its own output only
    assert generator.final_hourglass.weight.grad is not None


def test_k_channel_masks_and_mask_resizing():
    generator = create_generator("two_stage", mask_channels=5, **TINY_TWO_STAGE)
    out = generator(torch.rand(1, 3, 64, 64), *masks(batch=1, channels=5, size=20))
    assert out["prediction"].shape == (1, 3, 64, 64)


def test_compatibility_errors_name_both():
    with pytest.raises(CompatibilityError, match=r"masker 'frame'.*generator 'two_stage'"):
        pair_plan("frame", "two_stage")
    with pytest.raises(CompatibilityError, match=r"mask_channels=1 but masker 'all_k' gives"):
        pair_plan("all_k", "two_stage", generator_params={"mask_channels": 1})
    plan = pair_plan("all_k", "two_stage")
    assert plan.components.generator_params["mask_channels"] == plan.config.keypoints.num_kp
    assert pair_plan("heatmap_sum", "two_stage").pair == "heatmap_sum+two_stage"


def test_a_training_step_learns_and_leaves_the_detector_unchanged():
    detector = tiny_detector()
    frozen_state = {k: v.clone() for k, v in detector.state_dict().items()}
    masker = create_masker("heatmap_sum")
    masker.attach_detector(detector)
    generator = create_generator("two_stage", **TINY_TWO_STAGE)
    generator.train()
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3)
    source, driving = torch.rand(2, 2, 3, 64, 64).unbind(0)
    before = generator.first.conv.weight.detach().clone()
    for _ in range(2):
        out = generator(source, masker(source), masker(driving))
        loss = sum((out[k] - driving).abs().mean() for k in out)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not torch.equal(before, generator.first.conv.weight)
    assert all(torch.equal(frozen_state[k], v) for k, v in detector.state_dict().items())


def test_building_a_plan_attaches_the_detector_its_file_holds(tmp_path):
    from kptoolkit.experiment.build import build_models

    kp = str(tiny_kp_checkpoint(tmp_path))
    models = build_models(pair_plan("all_k", "two_stage", kp_checkpoint=kp))
    masker, generator = models.masker, models.generator
    assert masker.detector is models.detector and masker.channels == 5
    assert generator.mask_channels == 5  # derived from the file's detector (K = 5)
    frames = torch.rand(1, 3, 64, 64)
    assert generator(frames, masker(frames), masker(frames))["prediction"].shape == (1, 3, 64, 64)
    with pytest.raises(CompatibilityError, match="--kp-checkpoint"):
        build_models(pair_plan("heatmap_sum", "two_stage"))
    models = build_models(pair_plan("perturbed_mask", "two_stage"))
    assert any(p.requires_grad for p in models.masker.parameters())


def test_channels_last_inference_gives_the_same_prediction():
    from kptoolkit.engine.prediction import for_inference

    torch.manual_seed(0)
    generator = create_generator("two_stage", **TINY_TWO_STAGE).eval()
    source = torch.rand(2, 3, 64, 64)
    src, drv = masks()
    with torch.inference_mode():
        expected = generator(source, src, drv)["prediction"]
        fast = for_inference(generator)
        got = fast(source.contiguous(memory_format=torch.channels_last), src, drv)["prediction"]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_source_residual_starts_from_the_copy_and_learns():
    torch.manual_seed(0)
    generator = create_generator("two_stage", **TINY_TWO_STAGE, source_residual=True)
    plain = create_generator("two_stage", **TINY_TWO_STAGE)
    assert {k: v.shape for k, v in generator.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }
    source, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    masks = Structure(mask=torch.rand(2, 1, 32, 32)), Structure(mask=torch.rand(2, 1, 32, 32))
    out = generator(source, *masks)
    # the logit's clamp moves pixels by at most eps
    assert (out["prediction"] - source).abs().max() <= 1.01e-3
    plain_out = plain(source, *masks)
    assert (plain_out["prediction"] - source).abs().max() > 0.1
    # the zeroed last convolution still gets a gradient, so the refinement can grow
    (out["prediction"] - target).abs().mean().backward()
    assert generator.final_hourglass.weight.grad.abs().sum() > 0
