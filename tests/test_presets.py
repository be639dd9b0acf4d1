"""Components own their presets: a config names one, overrides single values, and a saved config
lists what was built."""

from __future__ import annotations

import warnings

import pytest
import yaml

from kptoolkit.cli.main import main
from kptoolkit.config.legacy import LegacyLayoutWarning
from kptoolkit.config.schema import (
    ExperimentConfig,
    ModelConfig,
    config_from_dict,
    dump_config,
    load_config,
)
from kptoolkit.errors import ConfigError, KptoolkitError
from kptoolkit.experiment.components import apply_with_presets, choose_components
from kptoolkit.experiment.plan import plan_experiment
from kptoolkit.experiment.resolve import resolve_experiment
from kptoolkit.generators.fomm import FommGenerator
from kptoolkit.generators.two_stage import TwoStageGenerator
from kptoolkit.keypoints.detector import KeypointDetector
from kptoolkit.registry.presets import PRESET_NAMES
from kptoolkit.registry.registries import GENERATORS, MASKERS

BUILT_IN = {
    "generators": ("two_stage", "fomm", "x2face", "monkey_net"),
    "maskers": ("perturbed_mask", "monkey_net_keypoints"),
}


def fomm(*overrides: str) -> ExperimentConfig:
    return apply_with_presets(choose_components(ExperimentConfig(), None, "fomm"), list(overrides))


@pytest.mark.parametrize(
    "factory",
    [GENERATORS.get(n) for n in BUILT_IN["generators"]]
    + [MASKERS.get(n) for n in BUILT_IN["maskers"]]
    + [KeypointDetector],
)
def test_built_in_components_carry_every_preset_and_their_keys_exist(factory):
    import inspect

    assert set(PRESET_NAMES) <= set(factory.presets)
    accepted = inspect.signature(factory).parameters
    for name, preset in factory.presets.items():
        unknown = set(preset.params) - set(accepted)
        assert not unknown, (factory.__name__, name, unknown)


def test_the_preset_sizes_every_component_and_the_detector():
    cpu = resolve_experiment(ExperimentConfig())
    micro = resolve_experiment(ExperimentConfig(preset="micro"))
    paper = resolve_experiment(
        apply_with_presets(ExperimentConfig(preset="paper"), ["data.frame_size=256"])
    )
    assert cpu.generator_params["features"] == 64
    assert micro.generator_params["features"] == 16
    assert "features" not in paper.generator_params  # the constructor's default: published
    assert (cpu.detector_params["block_expansion"], cpu.detector_params["num_kp"]) == (16, 10)
    assert (micro.detector_params["block_expansion"], micro.detector_params["num_kp"]) == (4, 5)
    assert paper.detector_params["max_features"] == 1024


def test_a_section_may_name_its_own_preset_and_override_single_values():
    config = apply_with_presets(
        ExperimentConfig(), ["generator.preset=micro", "generator.params.features=24"]
    )
    resolved = resolve_experiment(config)
    micro = TwoStageGenerator.presets["micro"].params
    assert resolved.generator_params["features"] == 24
    assert resolved.generator_params["refine_max_features"] == micro["refine_max_features"]
    assert resolved.detector_params["block_expansion"] == 16  # the detector stays cpu64


def test_preset_choices_apply_before_other_values_whatever_their_order():
    config = apply_with_presets(
        ExperimentConfig(), ["generator.params.features=24", "preset=micro"]
    )
    resolved = resolve_experiment(config)
    assert resolved.generator_params["features"] == 24
    assert resolved.generator_params["num_residual_blocks"] == 2  # micro's


def test_component_losses_come_from_the_preset_and_can_be_set_by_name():
    (term,) = [t for t in resolve_experiment(fomm()).losses if t.name == "equivariance"]
    assert term.weight == FommGenerator.presets["cpu64"].losses[0]["weight"]
    changed = fomm("generator.losses.equivariance.weight=0.01")
    (term,) = [t for t in resolve_experiment(changed).losses if t.name == "equivariance"]
    assert term.weight == 0.01
    paper = fomm("preset=paper", "data.frame_size=256")
    (term,) = [t for t in resolve_experiment(paper).losses if t.name == "equivariance"]
    assert term.weight == 1.0


def test_list_items_by_name_must_be_unique_and_known():
    config = ExperimentConfig()
    config.losses = config.losses * 2
    with pytest.raises(ConfigError, match="2 items are called 'l1_pyramid'"):
        apply_with_presets(config, ["losses.l1_pyramid.weight=2"])
    with pytest.raises(ConfigError, match=r"the list has 1 item.*l1_pyramid"):
        apply_with_presets(ExperimentConfig(), ["losses.perceptual.weight=2"])


def test_an_unknown_preset_names_the_component_and_its_presets():
    with pytest.raises(KptoolkitError, match="has no preset 'cpu46'; it has cpu64, micro, paper"):
        resolve_experiment(ExperimentConfig(preset="cpu46"))
    config = ExperimentConfig()
    config.generator.preset = "cpu46"
    with pytest.raises(KptoolkitError, match="generator 'two_stage' has no preset 'cpu46'"):
        resolve_experiment(config)


def test_a_written_out_config_lists_what_is_built_and_reads_back_equal(tmp_path):
    plan = plan_experiment(choose_components(ExperimentConfig(), "all_k", None))
    config, resolved = plan.config, plan.components
    text = dump_config(config)
    data = yaml.safe_load(text)
    assert data["generator"]["params"]["features"] == 64
    assert data["generator"]["params"]["mask_channels"] == 10
    assert data["generator"]["losses"][0]["outputs"] == ["low_res_prediction"]
    assert data["keypoints"]["block_expansion"] == 16
    (tmp_path / "config.yaml").write_text(text)
    again = load_config(tmp_path / "config.yaml")
    assert again == config
    # another family named afterwards changes nothing that was written out
    again.preset = "micro"
    assert resolve_experiment(again).generator_params == resolved.generator_params


def old_layout_run_config() -> dict:
    """A run folder's config.yaml as kptoolkit wrote it before presets (CPU widths)."""
    return {
        "name": "old-run",
        "keypoints": {
            "checkpoint": None,
            "num_kp": 10,
            "temperature": 0.1,
            "block_expansion": 16,
            "max_features": 128,
            "num_blocks": 4,
            "scale_factor": 0.5,
            "estimate_jacobian": True,
        },
        "masker": {"name": "heatmap_sum", "params": {}},
        "generator": {"name": "two_stage", "params": {"features": 48}},
        "component_params": {
            "two_stage": {"scale_factor": 0.5, "features": 64, "num_residual_blocks": 3},
            "fomm": {"block_expansion": 16},
        },
        "component_losses": {
            "two_stage": [{"name": "l1_pyramid", "outputs": ["low_res_prediction"]}],
            "fomm": [{"name": "equivariance", "weight": 0.001, "outputs": []}],
        },
        "eval": {"evaluators": []},
    }


def test_a_config_in_the_layout_before_presets_builds_the_same_model():
    with pytest.warns(LegacyLayoutWarning, match="fomm"):
        config = config_from_dict(old_layout_run_config())
    resolved = resolve_experiment(config)
    # the old layout built on the constructors' defaults: the paper preset
    assert config.preset == "paper"
    assert resolved.generator_params == {
        "scale_factor": 0.5,
        "features": 48,  # the explicit value won over component_params, as before
        "num_residual_blocks": 3,
    }
    assert [(t.name, t.outputs) for t in resolved.losses] == [
        ("l1_pyramid", ["prediction"]),
        ("l1_pyramid", ["low_res_prediction"]),
    ]
    assert resolved.detector_params["block_expansion"] == 16


def test_the_old_layout_without_other_components_converts_silently():
    data = old_layout_run_config()
    del data["component_params"]["fomm"], data["component_losses"]["fomm"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config_from_dict(data)


def test_evaluators_in_the_eval_section_say_where_they_went():
    with pytest.raises(ConfigError, match="kptoolkit metrics --evaluator"):
        config_from_dict({"eval": {"evaluators": ["synthetic_pose"]}})
    assert config_from_dict({"eval": {"evaluators": []}}) == ExperimentConfig()


def test_config_show_writes_out_the_presets_of_the_chosen_generator(capsys):
    assert main(["config", "show", "--generator", "fomm", "--set", "preset=micro"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["masker"]["name"] == "fomm_keypoints"
    assert shown["generator"]["params"] == FommGenerator.presets["micro"].params
    assert shown["generator"]["losses"][0]["name"] == "equivariance"
    assert shown["keypoints"]["num_kp"] == 5


def test_a_bench_row_that_changes_a_component_starts_from_its_preset(tmp_path):
    from train_fixtures import detector_file

    from kptoolkit.bench.runner import Bench, BenchOptions, Entry

    bench = Bench(
        BenchOptions(
            ["heatmap_sum"],
            ["two_stage"],
            profile="micro",
            overrides=["generator.params.features=24"],
        )
    )
    kp = str(detector_file(tmp_path / "kp.pth", preset="micro"))
    own = bench.entry_config(Entry("heatmap_sum", "two_stage", "variant"), kp)
    baseline = bench.entry_config(Entry("fomm_keypoints", "fomm", "baseline"), None)
    assert own.generator.params["features"] == 24
    assert baseline.generator == ModelConfig(
        "fomm",
        preset="micro",
        params=dict(FommGenerator.presets["micro"].params),
        losses=baseline.generator.losses,
    )
    assert [t.name for t in baseline.generator.losses] == ["equivariance"]


def test_a_run_saved_in_the_layout_before_presets_loads_with_the_same_weights(tmp_path):
    import torch

    import kptoolkit
    from kptoolkit.config.schema import unstructure
    from kptoolkit.engine.checkpoints import latest_checkpoint

    config = ExperimentConfig(name="old", preset="micro")
    config.masker = ModelConfig("frame")
    config.generator = ModelConfig("x2face")
    config = plan_experiment(config).config
    models = kptoolkit.build(config)
    with torch.no_grad():
        for parameter in models.generator.parameters():
            parameter.add_(torch.randn_like(parameter))
    kptoolkit.save_run(tmp_path, models, config, step=3)
    # rewrite the stored config as kptoolkit wrote it before presets
    path = latest_checkpoint(tmp_path / "checkpoints")
    payload = torch.load(path, weights_only=True)
    old = unstructure(config)
    del old["preset"], old["keypoints"]["preset"]
    for section in ("masker", "generator"):
        name, params = old[section]["name"], old[section]["params"]
        old.setdefault("component_params", {})[name] = params
        old.setdefault("component_losses", {})[name] = old[section]["losses"]
        old[section] = {"name": name, "params": {}}
    payload["config"] = old
    torch.save(payload, path)

    loaded = kptoolkit.load_run(tmp_path)
    for name, tensor in models.generator.state_dict().items():
        assert torch.equal(loaded.generator.state_dict()[name], tensor), name
