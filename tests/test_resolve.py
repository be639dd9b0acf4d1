"""The experiment resolver: one place that derives a pair's parameters and rejects bad pairs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_fixtures import tiny_config, tiny_kp_checkpoint

from kptoolkit.cli.main import main
from kptoolkit.config.schema import ExperimentConfig, apply_overrides, load_config
from kptoolkit.errors import CompatibilityError
from kptoolkit.experiment.build import build_models
from kptoolkit.experiment.components import choose_components
from kptoolkit.experiment.plan import plan_experiment
from kptoolkit.experiment.resolve import (
    FROZEN_DETECTOR,
    NO_DETECTOR,
    TRAINED_DETECTOR,
    experiment_problems,
    resolve_experiment,
    validate_components,
)
from kptoolkit.registry.registries import MASKERS

REPO = Path(__file__).resolve().parents[1]


def pair(masker: str, generator: str, *overrides: str) -> ExperimentConfig:
    config = choose_components(ExperimentConfig(), masker, generator)
    return apply_overrides(config, overrides)


def test_all_k_gives_two_stage_one_mask_channel_per_keypoint():
    resolved = resolve_experiment(pair("all_k", "two_stage", "keypoints.num_kp=7"))
    assert resolved.masker_params["num_kp"] == 7
    assert resolved.generator_params["mask_channels"] == 7
    assert resolved.detector == FROZEN_DETECTOR
    assert validate_components(pair("all_k", "two_stage")) == []


def test_heatmap_sum_keeps_a_single_mask_channel():
    resolved = resolve_experiment(pair("heatmap_sum", "two_stage"))
    assert "mask_channels" not in resolved.generator_params
    assert "num_kp" not in resolved.masker_params


def test_fomm_takes_num_kp_and_jacobians_from_the_detector_it_trains():
    config = pair("", "fomm", "keypoints.num_kp=5", "keypoints.estimate_jacobian=false")
    resolved = resolve_experiment(config)
    assert resolved.masker == "fomm_keypoints"
    assert resolved.generator_params["num_kp"] == 5
    assert resolved.generator_params["estimate_jacobian"] is False
    assert resolved.detector == TRAINED_DETECTOR
    assert [loss.name for loss in resolved.losses] == ["l1_pyramid", "equivariance"]


def test_fomm_with_five_keypoints_builds_and_runs():
    config = tiny_config("keypoints.num_kp=5")
    choose_components(config, None, "fomm")
    models = build_models(plan_experiment(config))
    frame = torch.rand(1, 3, 64, 64)
    structure = models.masker(frame)
    assert structure.keypoints.shape == (1, 5, 2)
    out = models.generator(frame, structure, structure)
    assert out["prediction"].shape == (1, 3, 64, 64)


def test_frame_masker_has_no_detector():
    assert resolve_experiment(pair("", "x2face")).detector == NO_DETECTOR


@pytest.mark.parametrize(
    ("masker", "generator", "overrides", "expected"),
    [
        ("heatmap_sum", "fomm", (), "masker 'heatmap_sum' provides ['mask'] but generator 'fomm'"),
        ("frame", "two_stage", (), "missing: mask"),
        ("", "fomm", ("generator.params.num_kp=10", "keypoints.num_kp=5"), "num_kp=10"),
        ("all_k", "two_stage", ("masker.params.num_kp=4",), "masker.params.num_kp=4"),
        ("all_k", "two_stage", ("generator.params.mask_channels=3",), "mask_channels=3"),
        ("heatmap_sum", "two_stage", ("masker.params.radius=2",), "no parameter 'radius'"),
        ("heatmap_sum", "two_stage", ("generator.params.featurs=8",), "did you mean 'features'"),
    ],
)
def test_bad_pairs_give_one_problem_naming_the_fix(masker, generator, overrides, expected):
    problems = experiment_problems(pair(masker, generator, *overrides))
    assert len(problems) == 1, problems
    assert expected in problems[0]
    with pytest.raises(CompatibilityError, match=r"masker|generator"):
        resolve_experiment(pair(masker, generator, *overrides))


def test_every_registered_masker_states_its_mask_channels_before_it_is_built():
    for name in MASKERS.names():
        factory = MASKERS.get(name)
        params = {"num_kp": 4} if name in ("all_k", "learned_projection") else {}
        assert factory.mask_channels_for(params) == MASKERS.create(name, **params).channels, name


def test_a_checkpoint_fixes_num_kp(tmp_path):
    checkpoint = str(tiny_kp_checkpoint(tmp_path))  # a five-keypoint detector
    resolved = resolve_experiment(pair("all_k", "two_stage"), kp_checkpoint=checkpoint)
    assert resolved.masker_params["num_kp"] == 5
    assert resolved.generator_params["mask_channels"] == 5
    config = pair("all_k", "two_stage", "masker.params.num_kp=10")
    (problem,) = experiment_problems(config, checkpoint)
    assert "masker.params.num_kp=10" in problem and "num_kp=5" in problem


def test_a_missing_checkpoint_is_reported_before_anything_is_built(tmp_path):
    config = pair("heatmap_sum", "two_stage", f"keypoints.checkpoint={tmp_path / 'none.pth'}")
    (problem,) = experiment_problems(config)
    assert problem.startswith("keypoints.checkpoint:")


# -- the command line -----------------------------------------------------------------------


def test_config_validate_rejects_a_pair_in_one_line(capsys):
    code = main(["config", "validate", "--set", "masker.name=heatmap_sum", "generator.name=fomm"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "generator 'fomm' requires" in err[0]


def test_config_validate_rejects_a_num_kp_clash_in_one_line(capsys):
    overrides = ["generator.name=fomm", "masker.name=", "keypoints.num_kp=5"]
    code = main(["config", "validate", "--set", *overrides, "generator.params.num_kp=10"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "generator.params.num_kp=10" in err[0]


def _tiny_data(tmp_path: Path) -> list[str]:
    return [
        "train.steps=2",
        "train.batch_size=2",
        "train.log_every=1",
        "data.num_workers=0",
        "data.params.videos=4",
        "data.params.frames=4",
        "data.params.workers=1",
    ]


def test_train_all_k_with_two_stage_needs_no_extra_flag(tmp_path):
    checkpoint = tiny_kp_checkpoint(tmp_path)
    out = tmp_path / "run"
    args = ["train", "--config", str(REPO / "configs" / "synthetic-64.yaml")]
    args += ["--masker", "all_k", "--generator", "two_stage", "--kp-checkpoint", str(checkpoint)]
    args += ["--out", str(out), "--no-progress", "--set", *_tiny_data(tmp_path)]
    assert main(args) == 0
    saved = load_config(out / "config.yaml")
    assert saved.masker.params["num_kp"] == 5
    assert saved.generator.params["mask_channels"] == 5


def test_train_applies_masker_params_to_the_masker_the_command_line_chose(tmp_path, capsys):
    checkpoint = tiny_kp_checkpoint(tmp_path)
    out = tmp_path / "run"
    args = ["train", "--masker", "gaussian_circles", "--kp-checkpoint", str(checkpoint)]
    args += ["--out", str(out), "--no-progress", "--set", *_tiny_data(tmp_path)]
    assert main([*args, "masker.params.variance=0.01"]) == 0
    assert load_config(out / "config.yaml").masker.params == {"variance": 0.01}
    assert main([*args, "masker.params.varianse=0.01"]) == 1
    assert "did you mean 'variance'" in capsys.readouterr().err


def test_a_frame_size_the_detector_cannot_take_names_the_sizes_that_work(capsys):
    args = ["config", "validate", "--generator", "fomm", "--set", "preset=micro"]
    assert main([*args, "data.frame_size=48"]) == 1
    err = capsys.readouterr().err
    assert "data.frame_size=48 does not fit the keypoint detector" in err
    assert "multiples of 32 px, e.g. 32, 64, 96" in err
    assert main([*args, "data.frame_size=96"]) == 0


def test_a_frame_size_a_network_cannot_take_is_one_line(tmp_path, capsys):
    args = ["train", "--generator", "x2face", "--out", str(tmp_path / "run"), "--no-progress"]
    settings = ["preset=micro", "train.steps=1", "data.params.videos=4", "data.params.frames=4"]
    assert main([*args, "--set", *settings, "data.frame_size=36"]) == 1
    err = capsys.readouterr().err  # the puppets' progress bar, then the error
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("kptoolkit: error: x2face:")
    assert "divisible by 8" in last and "data.frame_size" in last
