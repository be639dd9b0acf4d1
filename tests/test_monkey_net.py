"""The Monkey-Net baseline: official checkpoint layout, keypoint moments, Gaussians, motion."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from train_fixtures import pair_plan

import kptoolkit
from kptoolkit import create_generator, create_masker
from kptoolkit.config.schema import ExperimentConfig
from kptoolkit.engine.prediction import for_inference
from kptoolkit.errors import CompatibilityError
from kptoolkit.experiment.components import choose_components, natural_masker
from kptoolkit.generators.monkey_net import (
    MonkeyNetGenerator,
    covariance_gaussians,
    translated_copies,
)
from kptoolkit.keypoints.relative import relative_structure
from kptoolkit.maskers.monkey_net import (
    MonkeyNetKeypoints,
    heatmap_moments,
    smallest_singular_value,
)
from kptoolkit.nn.video_kernels import FrameKernelConv
from kptoolkit.registry.presets import MICRO
from kptoolkit.structure import STRUCTURE_FIELDS, Structure

TABLE = "monkey-net-taichi-state-dict.tsv"
# FACTS.md section 11: entries and parameters per module of the official Tai-Chi checkpoint
OFFICIAL_COUNTS = {"kp_detector": (72, 14_132_728), "generator": (214, 28_528_571)}
MICRO_MASKER = dict(MonkeyNetKeypoints.presets[MICRO].params)
MICRO_GENERATOR = dict(MonkeyNetGenerator.presets[MICRO].params)


def reference() -> dict[str, dict[str, tuple[int, ...]]]:
    from model_fixtures import DATA

    table: dict[str, dict[str, tuple[int, ...]]] = {}
    with (DATA / TABLE).open() as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            shape = tuple(int(d) for d in row["shape"].split("x")) if row["shape"] else ()
            assert math.prod(shape) == int(row["numel"])
            table.setdefault(row["module"], {})[row["key"]] = shape
    return table


def random_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        key: torch.tensor(7)
        if key.endswith("num_batches_tracked")
        else torch.randn(shape, generator=g)
        for key, shape in shapes.items()
    }


def shapes_of(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def test_paper_widths_have_exactly_the_official_layout():
    table = reference()
    modules = {
        "kp_detector": create_masker("monkey_net_keypoints"),
        "generator": create_generator("monkey_net"),
    }
    for section, module in modules.items():
        entries, parameters = OFFICIAL_COUNTS[section]
        assert shapes_of(module) == table[section]
        assert len(table[section]) == entries
        assert sum(p.numel() for p in module.parameters()) == parameters
    convs = [m for m in modules["generator"].modules() if isinstance(m, torch.nn.Conv2d)]
    assert not convs  # every convolution keeps the official 5-D video kernel


@pytest.mark.slow
def test_an_official_checkpoint_loads_strictly_through_build(tmp_path):
    table = reference()
    published = {
        section: random_state(shapes, seed) for seed, (section, shapes) in enumerate(table.items())
    }
    published["optimizer_generator"] = {"state": {}, "param_groups": []}
    published["epoch"] = 749
    path = tmp_path / "taichi.cpk"
    torch.save(published, path)
    config = choose_components(ExperimentConfig(preset="paper"), None, "monkey_net")
    models = kptoolkit.build(config, weights=path)
    assert isinstance(models.masker, MonkeyNetKeypoints) and models.detector is None
    for section, module in (("kp_detector", models.masker), ("generator", models.generator)):
        state = module.state_dict()
        assert state.keys() == published[section].keys()
        for key, value in published[section].items():
            assert torch.equal(state[key], value), key
    # a checkpoint of other widths is refused, naming what differs
    published["kp_detector"] = random_state(shapes_of(MonkeyNetKeypoints(**MICRO_MASKER)), 9)
    torch.save(published, path)
    with pytest.raises(kptoolkit.KptoolkitError, match=r"masker of .*does not match.*shape"):
        kptoolkit.build(config, weights=path)


def test_keypoint_mean_and_covariance_of_known_heatmaps():
    # a 3x3 grid: x and y take -1, 0, 1
    corners = torch.zeros(1, 1, 3, 3)
    corners[0, 0, ::2, ::2] = 0.25
    mean, cov = heatmap_moments(corners)
    torch.testing.assert_close(mean, torch.zeros(1, 1, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(cov, torch.eye(2).view(1, 1, 2, 2), atol=1e-6, rtol=0)
    # mass on the top-left and the centre: mean (-0.5, -0.5), correlated covariance
    diagonal = torch.zeros(1, 1, 3, 3)
    diagonal[0, 0, 0, 0] = diagonal[0, 0, 1, 1] = 0.5
    mean, cov = heatmap_moments(diagonal)
    torch.testing.assert_close(mean, torch.full((1, 1, 2), -0.5), atol=1e-6, rtol=0)
    torch.testing.assert_close(cov, torch.full((1, 1, 2, 2), 0.25), atol=1e-6, rtol=0)
    # clipping scales a covariance up until its smallest singular value is clip_variance: all
    # mass on the centre leaves only the 1e-7 floor (6e-7 on each axis), scaled to 0.001
    point = torch.zeros(1, 1, 3, 3)
    point[0, 0, 1, 1] = 1.0
    _, tiny = heatmap_moments(point)
    torch.testing.assert_close(tiny, 6e-7 * torch.eye(2).view(1, 1, 2, 2), atol=0, rtol=1e-3)
    _, clipped = heatmap_moments(point, clip_variance=0.001)
    torch.testing.assert_close(clipped, 1e-3 * torch.eye(2).view(1, 1, 2, 2), atol=0, rtol=1e-3)
    _, singular = heatmap_moments(diagonal, clip_variance=0.001)
    assert float(smallest_singular_value(singular)) == pytest.approx(0.001, rel=1e-2)
    _, kept = heatmap_moments(corners, clip_variance=0.001)
    torch.testing.assert_close(kept, torch.eye(2).view(1, 1, 2, 2), atol=1e-6, rtol=0)


def test_smallest_singular_value_in_closed_form():
    matrices = torch.tensor([[[3.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [0.0, 1.0]]])
    expected = torch.tensor([2.0, (math.sqrt(5) - 1) / 2])
    torch.testing.assert_close(smallest_singular_value(matrices), expected)
    random = torch.randn(50, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(smallest_singular_value(random), torch.linalg.svdvals(random)[:, -1])


def test_covariance_gaussian_at_known_points():
    keypoints = torch.zeros(1, 2, 2)
    covariances = torch.tensor([[[0.5, 0.0], [0.0, 2.0]], [[1.0, 0.5], [0.5, 1.0]]]).unsqueeze(0)
    maps = covariance_gaussians(keypoints, covariances, 3, 3)  # rows y, columns x in -1, 0, 1
    assert float(maps[0, 0, 1, 1]) == 1.0
    assert float(maps[0, 0, 1, 2]) == pytest.approx(math.exp(-1.0))  # (1, 0): 1 / 0.5
    assert float(maps[0, 0, 2, 1]) == pytest.approx(math.exp(-0.25))  # (0, 1): 1 / 2
    # (1, 1) with correlation 0.5: z^T C^-1 z = (1 - 0.5 - 0.5 + 1) / 0.75
    assert float(maps[0, 1, 2, 2]) == pytest.approx(math.exp(-0.5 / 0.75))
    assert float(maps[0, 1, 0, 2]) == pytest.approx(math.exp(-0.5 * 3 / 0.75))  # (1, -1)


def test_translated_copies_sample_at_the_shifted_grid():
    image = torch.arange(25.0).view(1, 1, 5, 5)
    shifts = torch.tensor([[[0.0, 0.0], [0.5, 0.0]]])  # 0.5 is one pixel on a 5-pixel axis
    copies = translated_copies(image, shifts)
    torch.testing.assert_close(copies[0, 0], image[0])
    torch.testing.assert_close(copies[0, 1, 0, :, :4], image[0, 0, :, 1:])  # content moves left
    assert torch.all(copies[0, 1, 0, :, 4] == 0)  # sampled outside: zero padding


def test_masker_gives_keypoints_and_covariances_and_trains():
    torch.manual_seed(0)
    masker = MonkeyNetKeypoints(**MICRO_MASKER)
    assert not masker.needs_detector and masker.supports_relative
    structure = masker(torch.rand(2, 3, 64, 64))
    assert structure.provided == {"keypoints", "covariances"}
    assert structure.keypoints.shape == (2, 10, 2)
    assert structure.covariances.shape == (2, 10, 2, 2)
    torch.testing.assert_close(structure.covariances, structure.covariances.transpose(-1, -2))
    assert torch.all(torch.linalg.eigvalsh(structure.covariances) > 0.0009)
    structure.keypoints.sum().backward()
    assert all(p.grad is not None for p in masker.parameters())


def test_generator_outputs_and_identity_at_initialisation():
    torch.manual_seed(0)
    masker = MonkeyNetKeypoints(**MICRO_MASKER)
    generator = MonkeyNetGenerator(**MICRO_GENERATOR).eval()
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        s, d = masker(source), masker(driving)
        out = generator(source, s, d)
        same = generator(source, s, s)
    assert out["prediction"].shape == out["deformed"].shape == (2, 3, 64, 64)
    assert out["deformation"].shape == (2, 64, 64, 2)
    assert out["motion_masks"].shape == (2, 11, 64, 64)
    torch.testing.assert_close(out["motion_masks"].sum(1), torch.ones(2, 64, 64))
    assert out["prediction"].min() >= 0 and out["prediction"].max() <= 1
    # the motion head starts at zero: no displacement, no correction -> the identity warp
    torch.testing.assert_close(same["deformed"], source, atol=1e-4, rtol=0)
    assert not torch.allclose(out["deformed"], source, atol=1e-3)


def test_channels_last_inference_matches_the_contiguous_model():
    torch.manual_seed(0)
    generator = MonkeyNetGenerator(**MICRO_GENERATOR).eval()
    masker = MonkeyNetKeypoints(**MICRO_MASKER).eval()
    frames = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        s, d = masker(frames), masker(frames.flip(0))
        expected = generator(frames, s, d)["prediction"]
        for_inference(generator)  # 5-D video kernels keep their layout, 4-D tensors convert
        got = generator(frames.contiguous(memory_format=torch.channels_last), s, d)["prediction"]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    kernels = [m.weight for m in generator.modules() if isinstance(m, FrameKernelConv)]
    assert kernels and all(k.dim() == 5 for k in kernels)


def test_pairing_rules():
    assert natural_masker("monkey_net") == "monkey_net_keypoints"
    assert "covariances" in STRUCTURE_FIELDS
    with pytest.raises(CompatibilityError, match=r"missing: covariances"):
        pair_plan("gaussian_circles", "monkey_net")
    generator = MonkeyNetGenerator(**{**MICRO_GENERATOR, "num_kp": 5})
    masker = MonkeyNetKeypoints(**MICRO_MASKER)
    frames = torch.rand(1, 3, 64, 64)
    with pytest.raises(CompatibilityError, match="built for 5 keypoints"):
        generator(frames, masker(frames), masker(frames))


def test_relative_motion_moves_the_keypoints_and_keeps_the_driving_covariances():
    masker = MonkeyNetKeypoints(**MICRO_MASKER)
    g = torch.Generator().manual_seed(0)

    def structure() -> Structure:
        return Structure(
            keypoints=torch.rand(1, 10, 2, generator=g),
            covariances=torch.eye(2) * torch.rand(1, 10, 1, 1, generator=g),
        )

    source, driving, first = structure(), structure(), structure()
    moved = relative_structure(masker, source, driving, first)
    torch.testing.assert_close(
        moved.keypoints, source.keypoints + driving.keypoints - first.keypoints
    )
    assert torch.equal(moved.covariances, driving.covariances)


def test_listed_among_the_generators_and_maskers(capsys):
    from kptoolkit.cli.main import main

    assert main(["list", "--kind", "generators"]) == 0
    assert "monkey_net " in capsys.readouterr().out
    assert main(["list", "--kind", "maskers"]) == 0
    assert "monkey_net_keypoints" in capsys.readouterr().out
