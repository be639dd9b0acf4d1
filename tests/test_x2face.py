"""The X2Face generator: outputs, identity and shifted warps, gradients, training, checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from train_fixtures import pair_plan

from kptoolkit import create_masker
from kptoolkit.errors import CompatibilityError
from kptoolkit.generators.x2face import X2FaceGenerator
from kptoolkit.structure import Structure

TINY_X2FACE = {
    "embedding_block_expansion": 8,
    "embedding_max_features": 64,
    "embedding_num_blocks": 3,
    "driving_block_expansion": 8,
    "driving_max_features": 64,
    "driving_num_blocks": 3,
    "driving_bottleneck_features": 32,
}


def tiny(seed: int = 0, **overrides) -> X2FaceGenerator:
    torch.manual_seed(seed)
    return X2FaceGenerator(**{**TINY_X2FACE, **overrides})


def smooth_frames(batch: int = 2, size: int = 64, seed: int = 1) -> torch.Tensor:
    """Smooth random images in [0, 1] (upsampled noise), so that small warps change them."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size // 8, size // 8, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def run(generator: X2FaceGenerator, source: torch.Tensor, driving: torch.Tensor) -> dict:
    return generator(source, Structure(frame=source), Structure(frame=driving))


@pytest.mark.parametrize("grid_mode", ["absolute", "residual"])
def test_outputs_have_the_documented_keys_shapes_and_ranges(grid_mode):
    generator = tiny(grid_mode=grid_mode)
    if grid_mode == "residual":  # away from the identity start, so the ranges are exercised
        for final in (generator.embedding_network.final, generator.driving_network.final):
            torch.nn.init.normal_(final.weight, std=0.05)
    out = run(generator, torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    assert set(out) == {"prediction", "embedded", "embedding_grid", "driving_grid"}
    for key in ("prediction", "embedded"):
        assert out[key].shape == (2, 3, 64, 64)
        assert out[key].min() >= 0 and out[key].max() <= 1
    for key in ("embedding_grid", "driving_grid"):
        assert out[key].shape == (2, 64, 64, 2)
        assert torch.isfinite(out[key]).all()
    bound = 1.0 if grid_mode == "absolute" else 1.0 + generator.residual_scale
    for key in ("embedding_grid", "driving_grid"):  # tanh, plus the identity in residual mode
        assert out[key].abs().max() <= bound
    assert not torch.equal(out["prediction"], out["embedded"])


def test_class_attributes_declare_the_frame_interface():
    generator = tiny()
    assert X2FaceGenerator.requires == frozenset({"frame"})
    assert X2FaceGenerator.natural_masker == "frame"
    assert generator.mask_channels is None
    # the default is the released code's grid: identity + tanh offset, random last layer
    assert generator.grid_mode == "residual" and generator.residual_scale == 1.0
    assert generator.driving_network.final.weight.abs().sum() > 0


def test_residual_mode_starts_as_the_identity_warp():
    generator = tiny(grid_mode="residual", zero_init=True, residual_scale=0.25)
    source = torch.rand(2, 3, 64, 64)
    out = run(generator, source, torch.rand(2, 3, 64, 64))
    torch.testing.assert_close(out["embedded"], source, atol=2e-5, rtol=0)
    torch.testing.assert_close(out["prediction"], source, atol=2e-5, rtol=0)
    xs = torch.linspace(-1, 1, 64)
    torch.testing.assert_close(out["driving_grid"][0, 5, :, 0], xs)  # x runs along width
    torch.testing.assert_close(out["driving_grid"][0, :, 5, 1], xs)  # y runs along height


def test_absolute_mode_is_not_the_identity_at_initialisation():
    out = run(tiny(), smooth_frames(), smooth_frames(seed=2))
    assert (out["prediction"] - smooth_frames()).abs().mean() > 1e-2


def test_prediction_is_the_embedded_face_sampled_at_the_driving_grid():
    """A driving grid shifted by k pixels gives the embedded face shifted by k pixels."""
    shift, scale = 3, 0.25
    generator = tiny(grid_mode="residual", residual_scale=scale, zero_init=True).eval()
    with torch.no_grad():  # a non-trivial embedding, and a driving net with a constant output
        torch.nn.init.normal_(generator.embedding_network.final.weight, std=0.05)
        offset = 2 * shift / 63  # k pixels in the align_corners=True convention at 64 px
        generator.driving_network.final.bias.copy_(torch.tensor([math.atanh(offset / scale), 0]))
    source = smooth_frames()
    with torch.no_grad():
        out = run(generator, source, torch.rand(2, 3, 64, 64))
    embedded, prediction = out["embedded"], out["prediction"]
    assert (embedded - source).abs().max() > 1e-3  # the embedding warp does something
    torch.testing.assert_close(
        out["driving_grid"][..., 0] - torch.linspace(-1, 1, 64), torch.full((2, 64, 64), offset)
    )
    # output column j samples embedded column j + shift; beyond the right border, zeros
    torch.testing.assert_close(prediction[..., :-shift], embedded[..., shift:], atol=1e-4, rtol=0)
    assert prediction[..., -shift:].abs().max() < 1e-4


def test_gradients_reach_every_parameter_from_an_l1_loss():
    # Absolute mode (random final convolutions): every parameter is on the path to the output.
    generator = tiny().train()
    source, driving = smooth_frames(), smooth_frames(seed=2)
    F.l1_loss(run(generator, source, driving)["prediction"], driving).backward()
    missing = [
        name
        for name, p in generator.named_parameters()
        if p.grad is None or p.grad.abs().sum() == 0
    ]
    assert not missing, f"no gradient for {missing}"


def test_residual_mode_gradients_reach_everything_after_one_step():
    # At step 0 of residual mode the final convolutions are zero, so only they receive
    # gradients (nothing flows back through a zero weight); one optimiser step unblocks the rest.
    generator = tiny(grid_mode="residual", zero_init=True, residual_scale=0.25).train()
    source, driving = smooth_frames(), smooth_frames(seed=2)
    optimizer = torch.optim.SGD(generator.parameters(), lr=0.1)
    F.l1_loss(run(generator, source, driving)["prediction"], driving).backward()
    with_grad = {n for n, p in generator.named_parameters() if p.grad is not None and p.grad.any()}
    assert with_grad == {
        "embedding_network.final.weight",
        "embedding_network.final.bias",
        "driving_network.final.weight",
        "driving_network.final.bias",
    }
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    F.l1_loss(run(generator, source, driving)["prediction"], driving).backward()
    missing = [
        n for n, p in generator.named_parameters() if p.grad is None or p.grad.abs().sum() == 0
    ]
    assert not missing, f"no gradient for {missing}"


def test_a_few_steps_on_a_fixed_pair_reduce_the_l1_loss():
    generator = tiny(grid_mode="residual", zero_init=True, residual_scale=0.25).train()
    source = smooth_frames(batch=2, seed=3)
    driving = torch.roll(source, shifts=2, dims=-1)  # a small motion a warp can explain
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = F.l1_loss(run(generator, source, driving)["prediction"], driving)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0], losses  # Adam is noisy step to step


def test_requires_is_met_by_the_frame_masker_only():
    assert pair_plan("frame", "x2face").components.masker == "frame"
    with pytest.raises(CompatibilityError, match="missing: frame"):
        pair_plan("heatmap_sum", "x2face")


def test_frame_masker_output_drives_the_generator():
    masker = create_masker("frame")
    source, driving = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    out = tiny(grid_mode="residual")(source, masker(source), masker(driving))
    assert out["prediction"].shape == (1, 3, 64, 64)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"embedding_block_expansion": 0}, "embedding_block_expansion"),
        ({"embedding_max_features": -4}, "embedding_max_features"),
        ({"embedding_num_blocks": 0}, "embedding_num_blocks"),
        ({"driving_block_expansion": 2.5}, "driving_block_expansion"),
        ({"driving_max_features": 0}, "driving_max_features"),
        ({"driving_num_blocks": True}, "driving_num_blocks"),
        ({"driving_bottleneck_features": 0}, "driving_bottleneck_features"),
        ({"grid_mode": "relative"}, "grid_mode must be one of absolute, residual"),
        ({"residual_scale": 0.0}, "residual_scale"),
        ({"residual_scale": float("nan")}, "residual_scale"),
        ({"grid_mode": "absolute", "zero_init": True}, "zero_init"),
    ],
)
def test_bad_parameters_are_clear_value_errors(params, match):
    with pytest.raises(ValueError, match=match):
        X2FaceGenerator(**{**TINY_X2FACE, **params})


@pytest.mark.parametrize(
    ("source_shape", "driving_shape", "match"),
    [
        ((2, 3, 64, 64), (2, 3, 32, 32), "same batch size and frame size"),
        ((2, 3, 64, 64), (1, 3, 64, 64), "same batch size and frame size"),
        ((2, 1, 64, 64), (2, 1, 64, 64), r"source frame must be \(B,3,H,W\)"),
        ((2, 3, 64, 64), (2, 4, 64, 64), r"driving frame must be \(B,3,H,W\)"),
        ((3, 64, 64), (3, 64, 64), r"source frame must be \(B,3,H,W\)"),
        ((1, 3, 60, 64), (1, 3, 60, 64), "divisible by 8"),
    ],
)
def test_bad_inputs_are_clear_value_errors(source_shape, driving_shape, match):
    generator = tiny()
    with pytest.raises(ValueError, match=match):
        run(generator, torch.rand(source_shape), torch.rand(driving_shape))


def test_missing_driving_frame_and_deeper_network_sets_the_size_multiple():
    with pytest.raises(ValueError, match=r"driving_structure\.frame"):
        tiny()(torch.rand(1, 3, 64, 64), Structure(), Structure(mask=torch.rand(1, 1, 64, 64)))
    generator = tiny(driving_num_blocks=5)
    with pytest.raises(ValueError, match="divisible by 32"):
        run(generator, torch.rand(1, 3, 48, 48), torch.rand(1, 3, 48, 48))
    assert run(generator, torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))["prediction"].shape


def test_default_widths_follow_the_released_layout():
    generator = X2FaceGenerator()
    assert generator.driving_network.bottleneck_features == 128  # the driving vector
    assert generator.size_multiple == 256  # 1x1 bottlenecks at 256 px
    assert sum(p.numel() for p in generator.parameters()) == 49_126_506
