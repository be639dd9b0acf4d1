"""The kptoolkit-tpsmm plugin (plugins/kptoolkit-tpsmm): the published checkpoint layout loads
strictly through `kptoolkit.build`, thin-plate splines by hand, motion sensitivity, keypoint
dropout, training through kptoolkit's trainer, and a tiny overfit."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip(
    "kptoolkit_tpsmm",
    reason="the kptoolkit-tpsmm plugin is not installed (pip install ./plugins/kptoolkit-tpsmm)",
)

from kptoolkit_tpsmm import tps
from kptoolkit_tpsmm.dense_motion import dropout_softmax
from kptoolkit_tpsmm.generator import dropout_probability
from motion_fixtures import FRAME_A, FRAME_B, animate, l1, overfit, tiny_models
from train_fixtures import tiny_config

import kptoolkit
from kptoolkit import create_generator, create_masker
from kptoolkit.config.schema import ExperimentConfig
from kptoolkit.experiment.components import choose_components
from kptoolkit.registry.presets import preset_params
from kptoolkit.structure import Structure
from kptoolkit.utils.checkpoint_io import CheckpointError

TABLE = Path(__file__).parent / "data" / "tpsmm-taichi-256-state-dict.tsv"
# FACTS.md section 11: entries / parameters (buffers excluded) of each published network
PUBLISHED = {
    "kp_detector": (122, 11_227_812),
    "dense_motion_network": (59, 37_941_397),
    "inpainting_network": (78, 24_737_283),
    "bg_predictor": (122, 11_188_998),
    "avd_network": (69, 2_583_652),
}


def published_table() -> dict[str, dict[str, tuple[int, ...]]]:
    table: dict[str, dict[str, tuple[int, ...]]] = {}
    with TABLE.open() as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            shape = tuple(int(d) for d in row["shape"].split("x")) if row["shape"] else ()
            table.setdefault(row["module"], {})[row["key"]] = shape
    return table


def paper_networks() -> dict[str, torch.nn.Module]:
    generator, masker = create_generator("tpsmm"), create_masker("tpsmm_keypoints")
    avd = create_masker("tpsmm_keypoints", avd=True).avd_network
    return {
        "kp_detector": masker,
        "avd_network": avd,
        "dense_motion_network": generator.dense_motion_network,
        "inpainting_network": generator.inpainting_network,
        "bg_predictor": generator.bg_predictor,
    }


def micro(kind: str, name: str, **extra):
    create = create_generator if kind == "generators" else create_masker
    return create(name, **{**preset_params(kind, name, "micro"), **extra})


def test_paper_widths_have_the_published_entries_shapes_and_parameter_counts():
    table = published_table()
    for entry, module in paper_networks().items():
        shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        assert shapes == table[entry], entry
        entries, parameters = PUBLISHED[entry]
        assert len(shapes) == entries
        assert sum(p.numel() for p in module.parameters()) == parameters


def official_file(path: Path, drop: str | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """A file laid out like the published taichi.pth.tar: random values of the table's keys and
    shapes under its top-level entry names, plus optimiser entries and the epoch."""
    generator = torch.Generator().manual_seed(0)
    published: dict = {}
    for entry, keys in published_table().items():
        published[entry] = {
            key: torch.randint(0, 5, (), dtype=torch.long)
            if key.endswith("num_batches_tracked")
            else torch.rand(shape, generator=generator) + 0.5 * key.endswith("running_var")
            for key, shape in keys.items()
            if key != drop
        }
        published[f"optimizer_{entry}"] = {"state": {}, "param_groups": []}
    published["epoch"] = 99
    torch.save(published, path)
    return published


def paper_config(**masker_params) -> ExperimentConfig:
    config = ExperimentConfig(name="tpsmm-paper", preset="paper")
    config = choose_components(config, None, "tpsmm")
    config.masker.params.update(masker_params)
    return config


@pytest.mark.slow
def test_official_layout_loads_strictly_through_build(tmp_path):
    path = tmp_path / "taichi.pth.tar"
    published = official_file(path)
    models = kptoolkit.build(paper_config(), weights=path)
    assert models.masker_name == "tpsmm_keypoints"
    loaded = {
        "kp_detector": models.masker.state_dict(),
        **{
            entry: getattr(models.generator, entry).state_dict()
            for entry in ("dense_motion_network", "inpainting_network", "bg_predictor")
        },
    }
    for entry, state in loaded.items():
        assert state.keys() == published[entry].keys()
        for key, value in state.items():
            torch.testing.assert_close(value, published[entry][key], msg=f"{entry}.{key}")


@pytest.mark.slow
def test_the_avd_network_loads_from_its_published_entry(tmp_path):
    path = tmp_path / "taichi.pth.tar"
    published = official_file(path)
    models = kptoolkit.build(paper_config(avd=True), weights=path)
    state = models.masker.avd_network.state_dict()
    assert state.keys() == published["avd_network"].keys()
    for key, value in state.items():
        torch.testing.assert_close(value, published["avd_network"][key], msg=key)
    detector = published["kp_detector"]["fg_encoder.fc.bias"]
    torch.testing.assert_close(models.masker.fg_encoder.fc.bias, detector)


@pytest.mark.slow
def test_a_file_missing_one_entry_is_refused_naming_it(tmp_path):
    path = tmp_path / "broken.pth.tar"
    official_file(path, drop="occlusion.3.bias")
    with pytest.raises(CheckpointError, match=r"occlusion\.3\.bias"):
        kptoolkit.build(paper_config(), weights=path)


def test_tps_by_hand():
    # U(d) = d log d: zero at d = 1, e at d = e
    basis = tps.radial_basis(torch.tensor([1.0, math.e]))
    torch.testing.assert_close(basis, torch.tensor([0.0, math.e]))
    # a random TPS on a 2x2 control grid with one radial weight: at the centre every control
    # point is at squared distance 2, so both coordinates move by 0.1 * 2 ln 2
    transform = tps.RandomTPS(1, sigma_affine=0.0, sigma_tps=0.0, points_tps=2)
    transform.weights = torch.tensor([[[0.1, 0.0, 0.0, 0.0]]])
    moved = transform.warp(torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]))
    shift = 0.1 * 2 * math.log(2)
    # at (1, 1): distances 8, 4, 4, 0 to the controls -> 0.1 * 8 ln 8
    far = 0.1 * 8 * math.log(8)
    torch.testing.assert_close(moved, torch.tensor([[[shift, shift], [1 + far, 1 + far]]]))
    grid = transform.grid(3, 3)
    torch.testing.assert_close(grid[0, 1, 1], torch.tensor([shift, shift]))


def test_keypoint_tps_interpolates_and_reproduces_affine_maps(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    source = torch.rand(2, 3, 5, 2, generator=generator) * 1.6 - 0.8
    target = torch.rand(2, 3, 5, 2, generator=generator) * 1.6 - 0.8
    monkeypatch.setattr(tps, "RIDGE", 0.0)  # without the published ridge: exact interpolation
    fitted = tps.KeypointTPS(source, target)
    for g in range(3):
        torch.testing.assert_close(fitted.warp(source[:, g])[:, g], target[:, g], atol=1e-4, rtol=0)
    matrix, offset = torch.tensor([[1.1, 0.2], [-0.1, 0.9]]), torch.tensor([0.05, -0.1])
    affine = tps.KeypointTPS(source, source @ matrix.T + offset)
    points = torch.rand(2, 7, 2, generator=generator) * 2 - 1
    expected = (points @ matrix.T + offset).unsqueeze(1).expand(2, 3, 7, 2)
    torch.testing.assert_close(affine.warp(points), expected, atol=1e-4, rtol=0)
    monkeypatch.undo()
    # the published ridge (0.01 I) is in effect: a translation by 0.1 moves points by about
    # 0.1, but not exactly
    translated = tps.KeypointTPS(source, source + 0.1).warp(points)
    error = (translated - (points.unsqueeze(1) + 0.1)).abs()
    assert 1e-3 < error.max() < 0.06


def test_keypoint_dropout_schedule_and_softmax():
    schedule = (35, 0.7, 0.0, 10)
    assert [dropout_probability(e, *schedule) for e in (0, 5, 10, 34, 35)] == [
        0.0,
        0.35,
        0.7,
        0.7,
        0.0,
    ]
    logits = torch.randn(3, 11, 4, 4)
    only_background = dropout_softmax(logits, 1.0)
    assert torch.all(only_background[:, 1:] == 0)  # p = 1 drops every TPS map
    torch.testing.assert_close(only_background[:, 0], torch.ones(3, 4, 4), atol=1e-3, rtol=0)
    torch.testing.assert_close(
        dropout_softmax(logits, 0.0), torch.softmax(logits, dim=1), atol=1e-5, rtol=0
    )
    generator = micro("generators", "tpsmm", dropout_epoch=5)
    generator.set_training_progress(step=0, epoch=2)
    assert generator.dropout_p == pytest.approx(0.14)
    generator.eval()
    assert generator.dropout_p == 0.0


def test_driving_keypoints_move_the_prediction_and_equal_keypoints_keep_the_source_grid():
    torch.manual_seed(0)
    generator = micro("generators", "tpsmm").eval()
    source = torch.rand(2, 3, 64, 64)
    kp = torch.rand(2, 50, 2) * 1.4 - 0.7
    still = generator(source, Structure(keypoints=kp), Structure(keypoints=kp))
    grid = tps.coordinate_grid(16, 16).expand(2, 16, 16, 2)
    # close to the identity (the published 0.01 ridge keeps each fit from being exact)
    assert (still["deformation"] - grid).abs().mean() < 0.02
    # driving keypoints 0.1 right of and below the source ones: every transform samples the
    # source 0.1 up-left of each driving pixel; the background (channel 0) is the identity, or
    # the given affine
    grids = generator.dense_motion_network.transformations(kp, kp + 0.1, 16, 16, None)
    assert torch.equal(grids[:, 0], grid)
    assert (grids[:, 1:] - (grid.unsqueeze(1) - 0.1)).abs().mean() < 0.02
    shift = torch.tensor([[1.0, 0.0, 0.2], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    shifted = generator.dense_motion_network.transformations(kp, kp, 16, 16, shift)[:, 0]
    torch.testing.assert_close(shifted, grid + torch.tensor([0.2, 0.0]))
    moved = generator(source, Structure(keypoints=kp), Structure(keypoints=kp + 0.1))
    assert (moved["deformation"] - still["deformation"]).abs().mean() > 0.05
    assert (moved["prediction"] - still["prediction"]).abs().mean() > 1e-3
    # the driving frame reaches the background predictor
    frame = torch.rand(2, 3, 64, 64)
    with_frame = generator(source, Structure(keypoints=kp), Structure(keypoints=kp, frame=frame))
    assert set(with_frame) >= {"prediction", "deformed", "occlusion_map", "contribution_maps"}


@pytest.mark.slow
def test_trains_through_kptoolkit_with_every_tpsmm_term(tmp_path):
    from kptoolkit.engine.trainer import Trainer

    config = choose_components(tiny_config(), None, "tpsmm")
    trainer = Trainer.from_config(config, tmp_path / "run")
    masker_before = {k: v.clone() for k, v in trainer.models.masker.state_dict().items()}
    result = trainer.train()
    assert result.steps == 2
    assert {"tpsmm_warp", "tpsmm_background", "tpsmm_equivariance"} <= set(result.last_losses)
    assert all(result.last_losses[k] > 0 for k in ("tpsmm_warp", "tpsmm_equivariance"))
    after = trainer.models.masker.state_dict()
    assert any(not torch.equal(masker_before[k], after[k]) for k in after)  # the detector trains


def test_animation_drives_without_background_motion_and_reconstruction_with_it():
    masker = micro("maskers", "tpsmm_keypoints").eval()
    source, driving = torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64)
    source_structure, driving_structure = masker(source), masker(driving)
    animated = masker.driving_for_inference(source, source_structure, driving_structure)
    rebuilt = masker.driving_for_inference(
        source, source_structure, driving_structure, task="reconstruction"
    )
    assert animated.frame is None and rebuilt.frame is driving
    assert torch.equal(animated.keypoints, driving_structure.keypoints)
    keeping = micro("maskers", "tpsmm_keypoints", animation_background=True)
    assert (
        keeping.driving_for_inference(source, source_structure, driving_structure).frame is driving
    )


@pytest.mark.slow
def test_avd_drives_absolute_animation_only_and_trains_with_its_loss(tmp_path):
    from kptoolkit.config.schema import LossConfig
    from kptoolkit.engine.trainer import Trainer

    masker = micro("maskers", "tpsmm_keypoints", avd=True).eval()
    source, driving = torch.rand(1, 3, 64, 64), torch.rand(3, 3, 64, 64)
    source_structure, driving_structure = masker(source), masker(driving)
    animated = masker.driving_for_inference(source, source_structure, driving_structure)
    assert animated.frame is None and animated.keypoints.shape == (3, 50, 2)
    assert not torch.allclose(animated.keypoints, driving_structure.keypoints)
    for kept in (
        masker.driving_for_inference(source, source_structure, driving_structure, "reconstruction"),
        masker.driving_for_inference(
            source, source_structure, driving_structure.replace(frame=None)
        ),
    ):
        assert torch.equal(kept.keypoints, driving_structure.keypoints)

    config = choose_components(tiny_config(), None, "tpsmm")
    config.masker.params["avd"] = True
    config.masker.losses = [
        LossConfig("tpsmm_equivariance", 0.01, outputs=[]),
        LossConfig("tpsmm_avd", 1.0, outputs=[]),
    ]
    trainer = Trainer.from_config(config, tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.models.masker.avd_network.state_dict().items()}
    result = trainer.train()
    assert result.last_losses["tpsmm_avd"] > 0
    after = trainer.models.masker.avd_network.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in after)


@pytest.mark.slow
def test_overfitted_tpsmm_follows_the_driving_frame(tmp_path):
    """tests/test_motion_transfer.py's overfit test (60 steps at 2e-3 fit TPSMM well enough)."""
    torch.manual_seed(0)
    models = tiny_models("tpsmm", None, tmp_path)
    copy_error = l1(FRAME_A, FRAME_B)
    before = l1(animate(models, FRAME_A, FRAME_B), FRAME_B)
    overfit(models, steps=60, lr=2e-3)
    moved = animate(models, FRAME_A, FRAME_B)
    kept = animate(models, FRAME_A, FRAME_A)
    assert l1(moved, FRAME_B) < 0.5 * min(before, copy_error)
    assert l1(moved, FRAME_B) < 0.5 * l1(moved, FRAME_A)
    assert l1(kept, FRAME_A) < 0.5 * copy_error


def test_the_bench_names_its_baseline_row_as_the_plugin_declares():
    from kptoolkit.bench.plan import Entry, plan_entries

    entries = plan_entries(["heatmap_sum"], ["two_stage"], ["fomm", "tpsmm"])
    tpsmm = next(entry for entry in entries if entry.generator == "tpsmm")
    assert (tpsmm.masker, tpsmm.label) == ("tpsmm_keypoints", "TPSMM")
    assert Entry("frame", "x2face", "baseline").label == "X2Face"
