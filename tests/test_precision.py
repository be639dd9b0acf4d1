"""Inference precision: fp32 exact, bf16 autocast close to it, coordinates kept in float32."""

from __future__ import annotations

import copy

import pytest
import torch
from model_fixtures import micro_params, tiny_detector

from kptoolkit import create_generator, inference_model
from kptoolkit.generators.motion import warp
from kptoolkit.keypoints.functional import keypoints_from_heatmaps, spatial_softmax
from kptoolkit.nn.video_kernels import to_memory_format
from kptoolkit.runtime.precision import PrecisionError, to_float32
from kptoolkit.structure import Structure

GENERATORS = ["two_stage", "fomm", "x2face", "monkey_net"]
BF16 = torch.autocast("cpu", dtype=torch.bfloat16)


def _generator(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_generator(name, **micro_params(name)).eval()


def _inputs(name: str, batch: int = 2) -> tuple[torch.Tensor, Structure, Structure]:
    """Frames and a source / driving structure of the generator's kind, seeded."""
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(batch, 3, 64, 64, generator=g)
    if name == "two_stage":
        src, drv = (Structure(mask=torch.rand(batch, 1, 16, 16, generator=g)) for _ in range(2))
    elif name == "fomm":
        num_kp = micro_params("fomm")["num_kp"]
        src, drv = (
            Structure(
                keypoints=torch.rand(batch, num_kp, 2, generator=g) * 1.6 - 0.8,
                jacobians=torch.eye(2) + 0.1 * torch.randn(batch, num_kp, 2, 2, generator=g),
            )
            for _ in range(2)
        )
    elif name == "monkey_net":
        src, drv = (
            Structure(
                keypoints=torch.rand(batch, 10, 2, generator=g) * 1.6 - 0.8,
                covariances=torch.eye(2) * 0.02 + 0.005 * torch.rand(batch, 10, 1, 1, generator=g),
            )
            for _ in range(2)
        )
    else:
        src = Structure(frame=frames)
        drv = Structure(frame=torch.rand(frames.shape, generator=g))
    return frames, src, drv


@pytest.mark.parametrize("name", GENERATORS)
def test_fp32_is_exactly_the_plain_channels_last_call(name):
    frames, src, drv = _inputs(name)
    plain = to_memory_format(copy.deepcopy(_generator(name)), torch.channels_last)
    with torch.inference_mode():
        expected = plain(frames.contiguous(memory_format=torch.channels_last), src, drv)
        contiguous = _generator(name)(frames, src, drv)
    got = inference_model(_generator(name), "fp32")(frames, src, drv)
    assert torch.equal(got["prediction"], expected["prediction"])
    # the layout changes the order of float sums only
    torch.testing.assert_close(got["prediction"], contiguous["prediction"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", GENERATORS)
def test_bf16_autocasts_and_returns_float32_close_to_fp32(name):
    frames, src, drv = _inputs(name)
    exact = inference_model(_generator(name), "fp32")(frames, src, drv)["prediction"]
    fast = inference_model(_generator(name), "bf16")(frames, src, drv)
    assert all(t.dtype == torch.float32 for t in fast.values() if t.is_floating_point())
    difference = (fast["prediction"] - exact).abs().max()
    assert 0 < difference < 0.02  # autocast was on; bfloat16 keeps about 3 digits


@pytest.mark.parametrize("name", GENERATORS)
def test_output_heads_compute_in_float32_under_autocast(name):
    """Generated pixels come out of autocast in float32 (the sigmoid runs in float32), and the
    heads that give sampling grids and blending masks compute in float32."""
    frames, src, drv = _inputs(name)
    with torch.inference_mode(), BF16:
        outputs = _generator(name)(frames, src, drv)
    assert outputs["prediction"].dtype == torch.float32


def test_detector_heatmaps_keypoints_and_jacobians_are_float32_under_autocast():
    detector = tiny_detector(estimate_jacobian=True)
    frames = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    exact = detector(frames)
    with BF16:
        fast = detector(frames)
    for field in ("logits", "heatmaps", "keypoints", "jacobians"):
        assert getattr(fast, field).dtype == torch.float32, field
    # 64 px frames: 1 px is 2/63 of the [-1, 1] range
    assert (fast.keypoints - exact.keypoints).abs().max() < 0.25 * 2 / 63


def test_keypoints_from_bfloat16_heatmaps_are_computed_in_float32():
    logits = torch.randn(2, 5, 29, 29, generator=torch.Generator().manual_seed(3))
    heatmaps = spatial_softmax(logits)
    expected = keypoints_from_heatmaps(heatmaps)
    with BF16:
        got = keypoints_from_heatmaps(heatmaps)
        unprotected = torch.einsum("bkhw,hwc->bkc", heatmaps, torch.rand(29, 29, 2))
    assert unprotected.dtype == torch.bfloat16  # what autocast would do without float32_op
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_warp_samples_in_float32_whatever_its_inputs():
    g = torch.Generator().manual_seed(4)
    image = torch.rand(1, 3, 32, 32, generator=g)
    grid = torch.rand(1, 32, 32, 2, generator=g) * 2 - 1
    expected = warp(image, grid)
    with BF16:
        got = warp(image.bfloat16(), grid)
    assert got.dtype == torch.float32
    # the image was rounded to bfloat16 (2^-9 relative); the grid was not
    torch.testing.assert_close(got, expected, atol=4e-3, rtol=0)


def test_unknown_or_unsupported_precisions_are_refused():
    with pytest.raises(PrecisionError, match="must be one of auto, fp32, bf16, fp16"):
        inference_model(_generator("two_stage"), "int8")
    if not torch.cuda.is_available():
        with pytest.raises(PrecisionError, match="fp16 runs on CUDA only"):
            inference_model(_generator("two_stage"), "fp16")


def test_inference_module_stays_in_eval_and_reads_the_wrapped_attributes():
    generator = _generator("two_stage").train()
    wrapped = inference_model(generator, "bf16")
    wrapped.train()
    assert not wrapped.training and not any(m.training for m in generator.modules())
    assert wrapped.requires == generator.requires
    assert wrapped.module is generator
    weights = [p for p in generator.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    assert not inference_model(_generator("two_stage"), channels_last=False).channels_last


def test_to_float32_reaches_into_structures_dicts_and_tuples():
    half = torch.ones(2, dtype=torch.bfloat16)
    value = {"s": Structure(mask=half, keypoints=None), "t": (half, [half, 3]), "i": torch.ones(2)}
    cast = to_float32(value)
    assert cast["s"].mask.dtype == torch.float32 and cast["s"].keypoints is None
    assert cast["t"][0].dtype == torch.float32 and cast["t"][1][0].dtype == torch.float32
    assert cast["t"][1][1] == 3 and cast["i"] is value["i"]


def test_compile_calls_go_through_torch_compile(monkeypatch):
    """Wiring only (compiling for real takes minutes on a CPU): the compiled callable is used,
    and it is not registered as a second copy of the weights."""
    compiled = []

    def fake_compile(module, **kwargs):
        def call(*args, **kw):
            compiled.append(type(module).__name__)
            return module(*args, **kw)

        return call

    monkeypatch.setattr(torch, "compile", fake_compile)
    frames, src, drv = _inputs("two_stage")
    generator = _generator("two_stage")
    wrapped = inference_model(generator, "fp32", compile=True)
    expected = inference_model(_generator("two_stage"), "fp32")(frames, src, drv)
    assert torch.equal(wrapped(frames, src, drv)["prediction"], expected["prediction"])
    assert compiled == ["TwoStageGenerator"]
    assert wrapped.state_dict().keys() == {f"module.{k}" for k in generator.state_dict()}


def test_heads_stay_in_the_lower_precision_while_training():
    """A mixed-precision training step keeps the heads in bfloat16 (speed); only the
    coordinate arithmetic after them is float32."""
    detector = tiny_detector(frozen=False, estimate_jacobian=True).train()
    frames = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    with BF16:
        training = detector(frames)
    assert training.logits.dtype == torch.bfloat16
    assert training.keypoints.dtype == torch.float32
    detector.eval()
    with BF16:
        assert detector(frames).logits.dtype == torch.float32
