"""The `perturbed_mask` masker: mask network, perturbation, refinement and its loss."""

from __future__ import annotations

import io

import pytest
import torch

from kptoolkit.errors import CompatibilityError
from kptoolkit.losses.image import mask_correction
from kptoolkit.maskers.base import Masker
from kptoolkit.maskers.mask_perturbation import (
    add_signed_poisson_noise,
    perturb_mask,
    pivot_bounds,
    prepare_inference_mask,
    rescale_axis,
    rescale_strips,
    sample_strip_boundaries,
    threshold_mask,
)
from kptoolkit.maskers.perturbed_mask import PerturbedMaskMasker
from kptoolkit.structure import Structure

TINY = {
    "block_expansion": 8,
    "max_features": 64,
    "num_blocks": 3,
    "refine_block_expansion": 8,
    "refine_max_features": 64,
    "refine_num_blocks": 3,
}


def tiny(seed: int = 0, **params: object) -> PerturbedMaskMasker:
    torch.manual_seed(seed)
    return PerturbedMaskMasker(**{**TINY, **params})


def frames(batch: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- the mask network ------------------------------------------------------------------------


def test_interface_flags():
    masker = tiny()
    assert isinstance(masker, Masker)
    assert masker.provides == {"mask"} and masker.channels == 1
    assert any(p.requires_grad for p in masker.parameters())  # it trains with the generator
    assert not masker.needs_detector and not masker.supports_relative


def test_mask_shape_range_and_zero_border():
    # 64 px * 0.25 = 16; the 7x7 conv without padding gives 16 - 6 = 10; padding 3 -> 16
    masker = tiny()
    mask = masker(frames(3)).mask
    assert mask.shape == (3, 1, 64 // 4 - 6 + 2 * 3, 64 // 4 - 6 + 2 * 3) == (3, 1, 16, 16)
    assert mask.min() >= 0 and mask.max() <= 1
    border = torch.ones(16, 16, dtype=torch.bool)
    border[3:-3, 3:-3] = False
    assert mask[..., border].abs().max() == 0
    assert (mask[..., 3:-3, 3:-3] > 0).all()  # a sigmoid is never exactly zero


def test_mask_network_rejects_bad_frames():
    masker = tiny()
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        masker(torch.rand(2, 1, 64, 64))
    with pytest.raises(ValueError, match="divisible by 8"):
        masker(torch.rand(1, 3, 40, 40))  # 10 px after downscaling


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"scale_factor": 0.3}, "1/n"),
        ({"temperature": 0.0}, "temperature"),
        ({"block_expansion": 0}, "block_expansion"),
        ({"refine_num_blocks": 2.5}, "refine_num_blocks"),
        ({"num_pivots": -1}, "num_pivots"),
        ({"pivot_range": (40, 42)}, "pivot_range"),
        ({"pivot_range": (0, 46)}, "pivot_range"),
        ({"pivot_range": (15,)}, "pivot_range"),
        ({"scale_range": (1.25, 0.75)}, "scale_range"),
        ({"scale_range": (0.0, 1.0)}, "scale_range"),
        ({"threshold": 1.5}, "threshold"),
        ({"noise_lambda": -1.0}, "noise_lambda"),
        ({"inference_mask": "perturbed"}, "inference_mask"),
        ({"inference_scale": 0.0}, "inference_scale"),
    ],
)
def test_constructor_validation(params, message):
    with pytest.raises(ValueError, match=message):
        PerturbedMaskMasker(**{**TINY, **params})


def test_paper_layout_matches_the_original():
    masker = PerturbedMaskMasker()
    shapes = {k: tuple(v.shape) for k, v in masker.state_dict().items()}
    assert shapes["down.weight"] == (3, 1, 13, 13)
    assert shapes["predictor.encoder.down_blocks.0.conv.weight"] == (64, 3, 3, 3)
    assert shapes["predictor.encoder.down_blocks.4.conv.weight"] == (1024, 512, 3, 3)
    # no skip concatenation: each up block takes only the previous block's output
    assert shapes["predictor.decoder.up_blocks.0.conv.weight"] == (512, 1024, 3, 3)
    assert shapes["predictor.decoder.up_blocks.4.conv.weight"] == (32, 64, 3, 3)
    assert shapes["ref.weight"] == (1, 32, 7, 7)
    assert shapes["refiner.mask_fix_net.encoder.down_blocks.0.conv.weight"] == (128, 5, 3, 3)
    assert shapes["refiner.mask_fix_net.encoder.down_blocks.4.conv.weight"] == (1024, 1024, 3, 3)
    assert shapes["refiner.mask_fix_net.decoder.up_blocks.0.conv.weight"] == (1024, 1024, 3, 3)
    assert shapes["refiner.ref.weight"] == (1, 64, 7, 7)
    assert masker.ref.padding == (0, 0) and masker.refiner.ref.padding == (3, 3)


# -- strip rescaling -------------------------------------------------------------------------


def test_scale_one_is_the_identity():
    mask = torch.rand(4, 1, 16, 16)
    boundaries = sample_strip_boundaries(4, 16, generator=seeded(0))
    ones = torch.ones(4, 6)
    assert torch.equal(rescale_strips(mask, boundaries, ones, dim=-1), mask)
    assert torch.equal(rescale_strips(mask, boundaries, ones, dim=-2), mask)


def test_one_strip_scaled_by_two_moves_content_as_expected():
    row = torch.tensor([0.0, 10, 20, 30, 40, 50, 60, 70]).view(1, 1, 1, 8)
    # strip [0, 4) has centre 1.5: pixel x reads 1.5 + (x - 1.5) / 2 -> 0.75, 1.25, 1.75, 2.25
    out = rescale_strips(row, torch.tensor([0, 4, 8]), torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(out.flatten(), torch.tensor([7.5, 12.5, 17.5, 22.5, 40, 50, 60, 70]))
    # shrinking reads zeros outside the strip: nothing leaks in from the neighbouring strip
    out = rescale_strips(row, torch.tensor([0, 4, 8]), torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(out.flatten(), torch.tensor([0.0, 5, 25, 0, 40, 50, 60, 70]))


def test_rows_are_columns_transposed_and_per_sample_parameters():
    mask = torch.rand(2, 1, 12, 12)
    boundaries = torch.tensor([[0, 3, 7, 12], [0, 5, 6, 12]])
    scales = torch.tensor([[0.8, 1.2, 1.1], [1.25, 0.75, 0.9]])
    rows = rescale_strips(mask, boundaries, scales, dim=-2)
    columns = rescale_strips(mask.transpose(-1, -2), boundaries, scales, dim=-1)
    torch.testing.assert_close(rows, columns.transpose(-1, -2))
    single = rescale_strips(mask[1:], boundaries[1], scales[1], dim=-2)
    torch.testing.assert_close(rows[1:], single)


def test_rescale_matches_zero_padded_bilinear_resampling_of_each_strip():
    ndimage = pytest.importorskip("scipy.ndimage")
    image = torch.rand(12, 20, generator=seeded(3), dtype=torch.float64)
    bounds, scales = [0, 5, 9, 15, 20], [0.8, 1.2, 1.0, 0.77]
    parts = []
    for start, end, scale in zip(bounds[:-1], bounds[1:], scales, strict=True):
        part = image[:, start:end].numpy()
        rows, cols = torch.meshgrid(
            torch.arange(12.0), torch.arange(float(end - start)), indexing="ij"
        )
        centre = (end - start - 1) / 2
        coords = [rows.numpy(), (centre + (cols - centre) / scale).numpy()]
        resampled = ndimage.map_coordinates(part, coords, order=1, mode="grid-constant", cval=0)
        parts.append(torch.from_numpy(resampled))
    expected = torch.cat(parts, dim=1)
    out = rescale_strips(image[None, None], torch.tensor(bounds), torch.tensor(scales))
    torch.testing.assert_close(out[0, 0], expected, atol=1e-5, rtol=0)


def test_rescale_validates_boundaries():
    mask = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="start at 0"):
        rescale_strips(mask, torch.tensor([0, 4, 7]), torch.ones(2))
    with pytest.raises(ValueError, match="strictly increasing"):
        rescale_strips(mask, torch.tensor([0, 4, 4, 8]), torch.ones(3))
    with pytest.raises(ValueError, match="need 2 scales"):
        rescale_strips(mask, torch.tensor([0, 4, 8]), torch.ones(3))


def test_pivots_are_distinct_sorted_and_scaled_with_the_size():
    assert pivot_bounds(64) == (15, 46) and pivot_bounds(16) == (4, 12)
    for size, (low, high) in ((64, (15, 46)), (16, (4, 12))):
        boundaries = sample_strip_boundaries(256, size, generator=seeded(1))
        assert boundaries.shape == (256, 7)
        assert (boundaries[:, 0] == 0).all() and (boundaries[:, -1] == size).all()
        pivots = boundaries[:, 1:-1]
        assert (pivots.diff(dim=1) > 0).all()
        assert pivots.min() == low and pivots.max() == high - 1
    with pytest.raises(ValueError, match="distinct"):
        sample_strip_boundaries(1, 8, generator=seeded(1))  # pivot range [2, 6): 4 values


# -- threshold, noise and the whole perturbation ---------------------------------------------


def test_threshold_zeroes_values_at_or_below_60_of_255():
    mask = torch.tensor([0.0, 59.5 / 255, 60 / 255, 60.5 / 255, 0.5, 1.0])
    out = threshold_mask(mask)
    torch.testing.assert_close(out, torch.tensor([0.0, 0, 0, 60.5 / 255, 0.5, 1.0]))


def test_signed_poisson_noise_in_grey_levels():
    mask = torch.full((4, 1, 16, 16), 0.5)
    out = add_signed_poisson_noise(mask, 20.0, seeded(0))
    steps = (out - mask) * 255
    torch.testing.assert_close(steps, steps.round(), atol=1e-3, rtol=0)
    assert abs(steps.abs().mean().item() - 20) < 1.5  # E|+-Poisson(20)| = 20
    assert abs(steps.mean().item()) < 3  # random signs
    assert (steps > 0).any() and (steps < 0).any()
    assert out.min() >= 0 and out.max() <= 1
    assert add_signed_poisson_noise(mask, 0.0, seeded(0)) is mask


def test_perturbation_is_seeded_shape_preserving_and_detached():
    mask = torch.rand(3, 1, 16, 16, requires_grad=True)
    a = perturb_mask(mask, seeded(7))
    b = perturb_mask(mask, seeded(7))
    c = perturb_mask(mask, seeded(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == mask.shape and a.dtype == mask.dtype and not a.requires_grad
    assert a.min() >= 0 and a.max() <= 1
    full = perturb_mask(torch.rand(2, 1, 64, 64), seeded(0))
    assert full.shape == (2, 1, 64, 64)


def test_perturbation_without_rescale_or_noise_is_the_threshold():
    mask = torch.rand(2, 1, 16, 16, generator=seeded(2))
    out = perturb_mask(mask, seeded(0), scale_range=(1.0, 1.0), noise_lambda=0.0)
    assert torch.equal(out, threshold_mask(mask))
    moved = perturb_mask(mask, seeded(0), noise_lambda=0.0)
    assert not torch.equal(moved, threshold_mask(mask))


def test_threshold_comes_before_the_noise():
    # 0.1 = 25.5 grey levels is below the threshold: zeroed first, so the output is pure noise
    # (multiples of 1/255, zero where the sign was negative, about half of the pixels)
    mask = torch.full((4, 1, 16, 16), 0.1)
    out = perturb_mask(mask, seeded(0), scale_range=(1.0, 1.0))
    grey = out * 255
    torch.testing.assert_close(grey, grey.round(), atol=1e-3, rtol=0)
    assert 0.35 < (out > 0).float().mean().item() < 0.65


def test_inference_preparation_thresholds_then_shrinks_about_the_centre():
    mask = torch.full((1, 1, 16, 16), 0.1)
    mask[..., 4:12, 4:12] = 1.0
    out = prepare_inference_mask(mask, 60 / 255, 0.75)
    # centre 7.5: pixel x reads 7.5 + (x - 7.5) / 0.75, i.e. 2.83, 4.17, ..., 10.83, 12.17 for
    # x = 4, 5, ..., 10, 11: the block [4, 12) shrinks to [5, 11) and the background is zeroed
    expected = torch.zeros(16, 16)
    expected[5:11, 5:11] = 1.0
    torch.testing.assert_close(out[0, 0], expected)
    assert torch.equal(prepare_inference_mask(mask, 60 / 255, 1.0), threshold_mask(mask))
    torch.testing.assert_close(rescale_axis(mask, 1.0, -1), mask)


# -- refinement, its loss, training and inference --------------------------------------------


def test_loss_is_zero_when_refined_equals_clean_and_positive_otherwise():
    clean = torch.rand(2, 1, 16, 16)
    zero = mask_correction({"refined_driving_mask": clean.clone(), "clean_driving_mask": clean})
    assert zero.item() == 0
    shifted = (clean + 0.25).clamp(max=1)
    term = mask_correction({"refined_driving_mask": shifted, "clean_driving_mask": clean})
    torch.testing.assert_close(term, (shifted - clean).abs().mean())
    assert term > 0
    with pytest.raises(CompatibilityError, match="perturbed_mask"):
        mask_correction({})


def test_correction_gradients_reach_only_the_refiner():
    masker = tiny()
    source, driving = frames(2, seed=1), frames(2, seed=2)
    source_structure, driving_structure = masker(source), masker(driving)
    structure, extras = masker.driving_for_training(
        source, source_structure, driving_structure, seeded(0)
    )
    assert structure is driving_structure  # the generator trains on the clean mask
    assert {"refined_driving_mask", "clean_driving_mask", "perturbed_driving_mask"} <= set(extras)
    assert extras["refined_driving_mask"].shape == (2, 1, 16, 16)
    assert not extras["clean_driving_mask"].requires_grad
    assert not extras["perturbed_driving_mask"].requires_grad
    mask_correction(extras).backward()
    refiner = list(masker.refiner.parameters())
    assert all(p.grad is not None for p in refiner)
    assert any(p.grad.abs().sum() > 0 for p in refiner)
    mask_network = [p for n, p in masker.named_parameters() if not n.startswith("refiner.")]
    assert mask_network and all(p.grad is None for p in mask_network)


def test_training_perturbation_is_seeded():
    masker = tiny()
    source, driving = frames(2, seed=1), frames(2, seed=2)
    with torch.no_grad():
        s, d = masker(source), masker(driving)
        runs = [masker.driving_for_training(source, s, d, seeded(k))[1] for k in (5, 5, 6)]
    key = "perturbed_driving_mask"
    assert torch.equal(runs[0][key], runs[1][key]) and not torch.equal(runs[0][key], runs[2][key])


def test_one_training_step_updates_both_networks():
    masker = tiny()
    optimizer = torch.optim.Adam(masker.parameters(), lr=1e-2)
    before = {n: p.detach().clone() for n, p in masker.named_parameters()}
    source, driving = frames(2, seed=1), frames(2, seed=2)
    structure, extras = masker.driving_for_training(source, masker(source), masker(driving))
    # stand-in for the generator's losses, which reach the mask network through the clean mask
    generator_loss = (structure.mask - torch.rand_like(structure.mask)).abs().mean()
    loss = 100 * mask_correction(extras) + generator_loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    changed = {n for n, p in masker.named_parameters() if not torch.equal(p, before[n])}
    for name in (
        "ref.weight",
        "predictor.encoder.down_blocks.0.conv.weight",
        "refiner.ref.weight",
        "refiner.mask_fix_net.encoder.down_blocks.0.conv.weight",
    ):
        assert name in changed


def test_inference_drives_with_the_refined_or_the_clean_mask():
    masker = tiny().eval()
    source, driving = frames(2, seed=1), frames(2, seed=2)
    with torch.no_grad():
        s, d = masker(source), masker(driving)
        # as in the original: clean mask to reconstruct, refined mask to animate
        assert masker.driving_for_inference(source, s, d, task="reconstruction") is d
        refined = masker.driving_for_inference(source, s, d, task="animation")
        expected = masker.refiner(source, s.mask, prepare_inference_mask(d.mask, 60 / 255, 0.75))
    assert refined.mask.shape == (2, 1, 16, 16)
    assert refined.mask.min() >= 0 and refined.mask.max() <= 1
    torch.testing.assert_close(refined.mask, expected)
    assert not torch.equal(refined.mask, d.mask)
    clean = tiny(inference_mask="clean").eval()
    assert clean.driving_for_inference(source, s, d, task="animation") is d
    forced = tiny(inference_mask="refined").eval()
    with torch.no_grad():
        assert forced.driving_for_inference(source, s, d, task="reconstruction") is not d
    with pytest.raises(ValueError, match="task"):
        masker.driving_for_inference(source, s, d, task="dance")
    with pytest.raises(ValueError, match="masks"):
        masker.driving_for_inference(source, s, Structure(keypoints=torch.zeros(2, 10, 2)))


def test_strict_state_dict_round_trip():
    a, b = tiny(seed=0), tiny(seed=1)
    a(frames(2))  # move the BatchNorm running statistics away from their defaults
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert {"down.weight", "ref.weight", "refiner.ref.weight"} <= set(state)
    assert not torch.equal(state["ref.weight"], b.state_dict()["ref.weight"])
    b.load_state_dict(state, strict=True)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    a.eval(), b.eval()
    source, driving = frames(2, seed=1), frames(2, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(a(driving).mask, b(driving).mask, rtol=0, atol=0)
        sa, da = a(source), a(driving)
        torch.testing.assert_close(
            a.driving_for_inference(source, sa, da).mask,
            b.driving_for_inference(source, sa, da).mask,
            rtol=0,
            atol=0,
        )
    with pytest.raises(RuntimeError):
        tiny(refine_block_expansion=4).load_state_dict(state, strict=True)
