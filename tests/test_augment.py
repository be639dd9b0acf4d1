"""Pair augmentation: seeding, shared per-pair parameters, each step, config and input checks."""

from __future__ import annotations

import pytest
import torch

from kptoolkit.data.augment import (
    AugmentationConfig,
    ColorFactors,
    PairAugmentation,
    adjust_color,
    augmentation_from_dict,
    rotate_zoom_crop,
    sample_params,
)
from kptoolkit.errors import ConfigError

ALL_ON = AugmentationConfig(jitter=0.1, rotation=15.0, scale_min=0.8, scale_max=1.25)
ONLY_TIME_FLIP = AugmentationConfig(horizontal_flip=False, jitter=0.0)
ONLY_HORIZONTAL_FLIP = AugmentationConfig(time_flip=False, jitter=0.0)
ALL_OFF = AugmentationConfig(horizontal_flip=False, time_flip=False, jitter=0.0)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def frames(batch: int, height: int = 16, width: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=seeded(seed))


def blob(batch: int, height: int, width: int, sigma: float) -> torch.Tensor:
    """A white Gaussian spot on black, centred in the image."""
    ys = torch.arange(height, dtype=torch.float32) - (height - 1) / 2
    xs = torch.arange(width, dtype=torch.float32) - (width - 1) / 2
    spot = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))
    return spot.expand(batch, 3, height, width).clone()


def centroid_and_spread(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image intensity centroid (x, y) relative to the image centre, and RMS radius."""
    weight = x.mean(1)  # (B,H,W)
    height, width = weight.shape[-2:]
    ys = (torch.arange(height, dtype=x.dtype) - (height - 1) / 2)[:, None]
    xs = (torch.arange(width, dtype=x.dtype) - (width - 1) / 2)[None, :]
    mass = weight.sum((-2, -1))
    cx = (weight * xs).sum((-2, -1)) / mass
    cy = (weight * ys).sum((-2, -1)) / mass
    spread = ((weight * (xs**2 + ys**2)).sum((-2, -1)) / mass).sqrt()
    return cx, cy, spread


# -- seeding and shared parameters ------------------------------------------------------------


def test_same_seed_same_output_and_other_seed_differs():
    augment = PairAugmentation(ALL_ON)
    source, driving = frames(4, seed=1), frames(4, seed=2)
    first = augment(source, driving, seeded(7))
    again = augment(source, driving, seeded(7))
    other = augment(source, driving, seeded(8))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.allclose(first[0], other[0])


def test_seeded_call_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    PairAugmentation(ALL_ON)(frames(2), frames(2, seed=1), seeded(0))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_both_frames_of_a_pair_get_the_same_parameters_and_pairs_differ():
    image = frames(1).expand(6, -1, -1, -1).contiguous()  # six identical pairs (s, s)
    source, driving = PairAugmentation(ALL_ON)(image, image.clone(), seeded(3))
    assert torch.equal(source, driving)
    assert source.shape == image.shape
    for b in range(1, 6):
        assert not torch.allclose(source[0], source[b], atol=1e-3)


def test_distinct_frames_see_the_parameters_they_would_see_alone():
    config = AugmentationConfig(time_flip=False, jitter=0.2, rotation=30.0, scale_min=0.7)
    augment = PairAugmentation(config)
    source, driving = frames(5, seed=1), frames(5, seed=2)
    out_source, out_driving = augment(source, driving, seeded(4))
    alone_source, _ = augment(source, source, seeded(4))
    alone_driving, _ = augment(driving, driving, seeded(4))
    torch.testing.assert_close(out_source, alone_source)
    torch.testing.assert_close(out_driving, alone_driving)


# -- flips ------------------------------------------------------------------------------------


def test_time_flip_swaps_some_pairs_and_keeps_the_others():
    source, driving = frames(32, seed=1), frames(32, seed=2)
    out_source, out_driving = PairAugmentation(ONLY_TIME_FLIP)(source, driving, seeded(0))
    swapped = []
    for b in range(32):
        kept = torch.equal(out_source[b], source[b]) and torch.equal(out_driving[b], driving[b])
        flipped = torch.equal(out_source[b], driving[b]) and torch.equal(out_driving[b], source[b])
        assert kept != flipped, f"pair {b} is neither (s, d) nor (d, s)"
        swapped.append(flipped)
    assert any(swapped) and not all(swapped)
    assert swapped == sample_params(ONLY_TIME_FLIP, 32, seeded(0)).swap.tolist()


def test_horizontal_flip_is_an_exact_mirror_of_both_frames():
    source, driving = frames(32, 8, 12, seed=1), frames(32, 8, 12, seed=2)
    out_source, out_driving = PairAugmentation(ONLY_HORIZONTAL_FLIP)(source, driving, seeded(0))
    mirrored = []
    for b in range(32):
        flip = torch.equal(out_source[b], torch.flip(source[b], dims=[-1]))
        assert flip or torch.equal(out_source[b], source[b])
        expected = torch.flip(driving[b], dims=[-1]) if flip else driving[b]
        assert torch.equal(out_driving[b], expected)
        mirrored.append(flip)
    assert any(mirrored) and not all(mirrored)


# -- colour -----------------------------------------------------------------------------------


def test_colour_jitter_stays_in_range_and_changes_colours():
    image = frames(8)
    image[0], image[1] = 0.0, 1.0
    image[2, :, :4] = 1.0
    augment = PairAugmentation(
        AugmentationConfig(horizontal_flip=False, time_flip=False, jitter=0.5)
    )
    source, driving = augment(image, image.clone(), seeded(0))
    assert torch.equal(source, driving)
    assert source.min() >= 0.0 and source.max() <= 1.0
    assert (source[3:] - image[3:]).abs().amax((1, 2, 3)).min() > 1e-2


def test_unit_colour_factors_change_nothing():
    image = frames(3)
    ones, zeros = torch.ones(3), torch.zeros(3)
    torch.testing.assert_close(adjust_color(image, ColorFactors(ones, ones, ones, zeros)), image)


def test_everything_off_is_the_exact_identity():
    source, driving = frames(4, seed=1), frames(4, seed=2)
    out_source, out_driving = PairAugmentation(ALL_OFF)(source, driving, seeded(0))
    assert torch.equal(out_source, source) and torch.equal(out_driving, driving)
    assert ALL_OFF.is_identity and not ALL_ON.is_identity


# -- geometry ---------------------------------------------------------------------------------


def test_rotation_keeps_a_centred_blob_centred_in_a_non_square_frame():
    image = blob(8, 24, 32, sigma=3.0)
    config = AugmentationConfig(jitter=0.0, rotation=90.0)
    source, driving = PairAugmentation(config)(image, image.clone(), seeded(0))
    angles = sample_params(config, 8, seeded(0)).angle
    assert angles.abs().max() > 30  # the draw really rotated
    assert torch.equal(source, driving)
    cx, cy, spread = centroid_and_spread(source)
    assert cx.abs().max() < 1e-3 and cy.abs().max() < 1e-3
    torch.testing.assert_close(spread, centroid_and_spread(image)[2], atol=0.05, rtol=0)


def test_zoom_about_the_centre_scales_a_centred_blob():
    image = blob(2, 32, 40, sigma=2.5)
    zoomed = rotate_zoom_crop(image, torch.zeros(2), torch.tensor([2.0, 0.5]), torch.zeros(2, 2))
    cx, cy, spread = centroid_and_spread(zoomed)
    before = centroid_and_spread(image)[2]
    assert cx.abs().max() < 1e-3 and cy.abs().max() < 1e-3
    torch.testing.assert_close(spread / before, torch.tensor([2.0, 0.5]), atol=0.05, rtol=0)


def test_plus_90_degrees_turns_counter_clockwise():
    image = frames(2, 9, 9)
    turned = rotate_zoom_crop(image, torch.full((2,), 90.0), torch.ones(2), torch.zeros(2, 2))
    torch.testing.assert_close(turned, torch.rot90(image, 1, dims=(-2, -1)))


def test_identity_warp_changes_nothing():
    image = frames(2, 10, 14)
    same = rotate_zoom_crop(image, torch.zeros(2), torch.ones(2), torch.zeros(2, 2))
    torch.testing.assert_close(same, image)
    assert not AugmentationConfig(rotation=0.0, scale_min=1.0, scale_max=1.0).geometric


def test_crop_window_reaches_both_corners_and_sets_the_output_size():
    image = frames(1, 20, 48)
    args = (torch.zeros(1), torch.ones(1))
    top_left = rotate_zoom_crop(image, *args, -torch.ones(1, 2), out_size=(12, 40))
    bottom_right = rotate_zoom_crop(image, *args, torch.ones(1, 2), out_size=(12, 40))
    torch.testing.assert_close(top_left, image[..., :12, :40])
    torch.testing.assert_close(bottom_right, image[..., -12:, -40:])
    config = AugmentationConfig(crop=(12, 40), scale_min=0.9, scale_max=1.5, rotation=5.0)
    source, driving = PairAugmentation(config)(frames(3, 20, 48), frames(3, 20, 48, 1), seeded(0))
    assert source.shape == driving.shape == (3, 3, 12, 40)


def test_all_steps_on_a_non_square_batch():
    image = frames(1, 20, 36).expand(5, -1, -1, -1).contiguous()
    source, driving = PairAugmentation(ALL_ON)(image, image.clone(), seeded(1))
    assert source.shape == (5, 3, 20, 36)
    assert torch.equal(source, driving)
    assert source.min() >= 0.0 and source.max() <= 1.0
    assert not torch.allclose(source[0], source[1], atol=1e-3)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_generator_drives_cuda_frames_like_cpu_frames():
    source, driving = frames(4, seed=1), frames(4, seed=2)
    augment = PairAugmentation(ALL_ON)
    on_cpu = augment(source, driving, seeded(5))
    on_gpu = augment(source.cuda(), driving.cuda(), seeded(5))
    assert on_gpu[0].is_cuda
    torch.testing.assert_close(on_gpu[0].cpu(), on_cpu[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(on_gpu[1].cpu(), on_cpu[1], atol=1e-4, rtol=0)


# -- configuration ----------------------------------------------------------------------------


def test_config_from_the_experiment_mapping():
    config = augmentation_from_dict({"horizontal_flip": True, "time_flip": False, "jitter": 0.2})
    assert config == AugmentationConfig(time_flip=False, jitter=0.2)
    config = augmentation_from_dict({"rotation": 10, "scale_min": 0.9, "crop": [64, 48]})
    assert config.rotation == 10.0 and config.crop == [64, 48]


def test_unknown_key_names_its_full_path_and_the_closest_key():
    with pytest.raises(ConfigError, match=r"data\.augmentation\.jiter") as info:
        augmentation_from_dict({"jiter": 0.1})
    assert "data.augmentation.jitter" in str(info.value)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": 0.7}, "jitter"),
        ({"rotation": -5.0}, "rotation"),
        ({"scale_min": 1.5, "scale_max": 1.2}, "scale_min"),
        ({"scale_min": 0.0}, "scale_min"),
        ({"crop": [64]}, "crop"),
        ({"padding": "wrap"}, "padding"),
        ({"time_flip": "yes"}, "time_flip"),
    ],
)
def test_invalid_values_are_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        augmentation_from_dict(params)


def test_direct_construction_validates():
    with pytest.raises(ValueError, match="jitter"):
        AugmentationConfig(jitter=-1.0)
    with pytest.raises(ValueError, match="must not exceed"):
        AugmentationConfig(scale_min=2.0, scale_max=1.0)
    with pytest.raises(ValueError, match="crop"):
        AugmentationConfig(crop=(0, 8))


# -- inputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "driving", "message"),
    [
        (torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8), r"\(B,3,H,W\)"),
        (torch.rand(3, 8, 8), torch.rand(3, 8, 8), r"\(B,3,H,W\)"),
        (torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 9), "shapes differ"),
        (torch.rand(2, 3, 8, 8), torch.rand(1, 3, 8, 8), "shapes differ"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.rand(2, 3, 8, 8), "float"),
        (torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8, dtype=torch.float64), "dtype"),
    ],
)
def test_bad_inputs_are_rejected(source, driving, message):
    with pytest.raises(ValueError, match=message):
        PairAugmentation(ALL_ON)(source, driving)
