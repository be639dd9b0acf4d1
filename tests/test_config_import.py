"""Importing official FOMM-family configs, and the shipped taichi-256 / vox-256 profiles."""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

import pytest
import yaml

from kptoolkit.cli.main import main
from kptoolkit.config.importing import (
    FOMM,
    KEYPOINT_MASK,
    MONKEY_NET,
    PERTURBED_MASK,
    detect_family,
    import_official_config,
    import_official_file,
)
from kptoolkit.config.schema import ModelConfig, load_config
from kptoolkit.data.augment import augmentation_from_dict
from kptoolkit.errors import ConfigError
from kptoolkit.experiment.components import component_losses, component_params, expand_presets
from kptoolkit.experiment.resolve import validate_components
from kptoolkit.registry.registries import LOSSES, METRICS, get_registry

REPO = Path(__file__).resolve().parents[1]

# Minimal official-style configs, written after the layouts of first-order-model
# (config/taichi-256.yaml), animation-with-keypoint-mask (config/taichi-256-q.yaml) and
# Image-Animation-with-Perturbed-Masks (config/vox-256.yaml). Values differ from the published
# ones where that makes the mapping visible.
FOMM_YAML = """
dataset_params:
  root_dir: data/dance-png
  frame_shape: [128, 128, 3]
  id_sampling: True
  pairs_list: data/dance128.csv
  augmentation_params:
    flip_param: {horizontal_flip: True, time_flip: False}
    jitter_param: {brightness: 0.2, contrast: 0.2, saturation: 0.2, hue: 0.2}
model_params:
  common_params: {num_kp: 15, num_channels: 3, estimate_jacobian: False}
  kp_detector_params:
     temperature: 0.2
     block_expansion: 16
     max_features: 512
     num_blocks: 4
     scale_factor: 0.5
  generator_params:
    block_expansion: 32
    max_features: 256
    num_down_blocks: 3
    num_bottleneck_blocks: 4
    estimate_occlusion_map: True
    dense_motion_params: {block_expansion: 16, max_features: 512, num_blocks: 4, scale_factor: 0.5}
  discriminator_params: {scales: [1, 0.5], block_expansion: 16, max_features: 256, num_blocks: 3}
train_params:
  num_epochs: 40
  num_repeats: 20
  epoch_milestones: [30, 35]
  lr_generator: 1.0e-4
  lr_discriminator: 1.0e-4
  lr_kp_detector: 1.0e-4
  batch_size: 12
  scales: [1, 0.5, 0.25]
  checkpoint_freq: 5
  transform_params: {sigma_affine: 0.04, sigma_tps: 0.006, points_tps: 4}
  loss_weights:
    generator_gan: 0
    discriminator_gan: 1
    feature_matching: [10, 10, 10]
    perceptual: [1, 2, 3, 4, 5]
    equivariance_value: 7
    equivariance_jacobian: 3
reconstruction_params: {num_videos: 30, format: '.mp4'}
animate_params:
  num_pairs: 20
  format: '.mp4'
  normalization_params:
    adapt_movement_scale: False
    use_relative_movement: True
    use_relative_jacobian: True
visualizer_params: {kp_size: 5, draw_border: True, colormap: 'gist_rainbow'}
"""

KEYPOINT_MASK_YAML = """
dataset_params:
  root_dir: /datasets/taichi/
  frame_shape: [ 256, 256, 3 ]
  id_sampling: True
  augmentation_params:
    flip_param: {horizontal_flip: True, time_flip: True}
    jitter_param: {brightness: 0.1, contrast: 0.1, saturation: 0.1, hue: 0.1}
model_params:
  common_params: {num_kp: 10, num_channels: 3, estimate_jacobian: True, scale_factor: 0.25}
  kp_detector_params:
    kp_after_softmax: False
    temperature: 0.1
    block_expansion: 32
    max_features: 1024
    num_blocks: 5
  generator_params: {block_expansion: 64, max_features: 512, num_down_blocks: 2,
                     num_bottleneck_blocks: 6}
train_params:
  num_epochs: 100
  num_repeats: 150
  epoch_milestones: [ 60, 90 ]
  lr_generator: 2.0e-4
  lr_discriminator: 2.0e-4
  lr_kp_detector: 2.0e-4
  batch_size: 28
  scales: [ 1, 0.5, 0.25, 0.125 ]
  checkpoint_freq: 10
  loss_weights:
    generator_gan: 0
    discriminator_gan: 1
    feature_matching: [ 10, 10, 10, 10 ]
    perceptual: [ 10, 10, 10, 10, 10 ]
    equivariance_value: 10
    equivariance_jacobian: 10
reconstruction_params: {num_videos: 1000, format: '.mp4'}
animate_params: {num_pairs: 50, format: '.mp4'}
visualizer_params: {draw_border: True, colormap: 'gist_rainbow'}
"""

PERTURBED_MASK_YAML = """
dataset_params:
  root_dir: ../data/vox
  frame_shape: [256, 256, 3]
  id_sampling: True
  pairs_list:
  augmentation_params:
    flip_param: {horizontal_flip: True, time_flip: True}
    jitter_param: {brightness: 0.1, contrast: 0.1, saturation: 0.1, hue: 0.1}
model_params:
  common_params: {num_channels: 3}
  mask_generator_params:
     temperature: 0.2
     block_expansion: 16
     max_features: 512
     scale_factor: 0.25
     num_blocks: 4
  generator_params: {block_expansion: 64, max_features: 512, num_down_blocks: 2,
                     num_bottleneck_blocks: 5, th: 102}
train_params:
  num_epochs: 100
  num_repeats: 75
  epoch_milestones: [60, 90]
  lr_generator: 2.0e-4
  lr_mask_generator: 2.0e-4
  batch_size: 16
  scales: [1, 0.5, 0.25, 0.125]
  checkpoint_freq: 1
  loss_weights:
    perceptual: [10, 10, 10, 0, 0]
reconstruction_params: {num_videos: 1000, format: '.mp4'}
animate_params: {num_pairs: 50, format: '.mp4'}
"""


# Monkey-Net (monkey-net, config/taichi.yaml at the published values)
MONKEY_NET_YAML = """
dataset_params:
  root_dir: data/taichi
  pairs_list: data/taichi.csv
  augmentation_params:
    flip_param: {horizontal_flip: True, time_flip: True}
    crop_param: {size: [64, 64]}
model_params:
  common_params: {num_kp: 10, kp_variance: 'matrix', num_channels: 3}
  kp_detector_params:
     temperature: 0.1
     block_expansion: 32
     max_features: 1024
     num_blocks: 5
     clip_variance: 0.001
  generator_params:
    block_expansion: 32
    max_features: 1024
    num_blocks: 5
    num_refinement_blocks: 4
    dense_motion_params:
      block_expansion: 32
      max_features: 1024
      num_blocks: 5
      use_mask: True
      use_correction: True
      mask_embedding_params:
        use_heatmap: True
        use_deformed_source_image: True
        heatmap_type: 'difference'
        norm_const: 100
      num_group_blocks: 2
    kp_embedding_params: {use_heatmap: True, norm_const: 100, heatmap_type: 'difference'}
  discriminator_params:
    kp_embedding_params: {norm_const: 100}
    block_expansion: 32
    max_features: 256
    num_blocks: 4
train_params:
  detach_kp_generator: False
  detach_kp_discriminator: True
  num_epochs: 750
  epoch_milestones: [500]
  lr: 2.0e-4
  batch_size: 32
  loss_weights:
    reconstruction: [10, 10, 10, 10, 1]
    reconstruction_deformed: 0
    generator_gan: 1
    discriminator_gan: 1
  log_params: {log_freq_iter: 200, cpk_freq_epoch: 100}
reconstruction_params: {num_videos: null, format: '.gif'}
transfer_params:
  num_pairs: 100
  format: '.gif'
  normalization_params: {movement_mult: False, move_location: True, adapt_variance: False}
visualizer_params: {kp_size: 2, draw_border: False, colormap: 'gist_rainbow'}
"""


def load(text: str) -> dict:
    return yaml.safe_load(text)


def warned(warnings: list[str], key: str) -> bool:
    return any(w.startswith(f"{key}: ") for w in warnings)


def loss(losses, name: str):
    (found,) = [item for item in losses if item.name == name]
    return found


def section(config, name: str, kind: str = "generators") -> ModelConfig:
    """The component `name` as `config` builds it (its section when it runs, else a fresh one):
    every constructor parameter, and its loss terms."""
    running = config.masker if kind == "maskers" else config.generator
    chosen = running if running.name == name else ModelConfig(name)
    built = {
        **defaults(get_registry(kind).get(name)),
        **component_params(config, kind, chosen, name),
    }
    return ModelConfig(
        name,
        params=built,
        losses=component_losses(config, kind, chosen, name),
    )


# -- FOMM -------------------------------------------------------------------------------------


def test_fomm_detector_generator_and_data():
    result = import_official_config(load(FOMM_YAML), name="dance")
    config = result.config
    assert result.family == FOMM and "dense_motion_params" in result.evidence
    assert config.name == "dance"
    kp = config.keypoints
    assert (kp.num_kp, kp.temperature, kp.scale_factor, kp.estimate_jacobian) == (
        15,
        0.2,
        0.5,
        False,
    )
    assert (kp.block_expansion, kp.max_features, kp.num_blocks) == (16, 512, 4)
    assert kp.checkpoint is None
    assert config.generator.name == "fomm" and config.masker.name == ""
    fomm = section(config, "fomm").params
    assert fomm["num_kp"] == 15 and fomm["estimate_jacobian"] is False
    assert (fomm["block_expansion"], fomm["max_features"]) == (32, 256)
    assert (fomm["num_down_blocks"], fomm["num_bottleneck_blocks"]) == (3, 4)
    assert fomm["estimate_occlusion_map"] is True
    assert (fomm["dense_block_expansion"], fomm["dense_max_features"]) == (16, 512)
    assert (fomm["dense_num_blocks"], fomm["scale_factor"]) == (4, 0.5)
    data = config.data
    assert (data.dataset, data.root, data.frame_size) == ("fomm_frames", "data/dance-png", 128)
    assert data.params == {"id_sampling": True}
    assert data.augmentation == {"horizontal_flip": True, "time_flip": False, "jitter": 0.2}
    assert config.discriminator == {
        "scales": [1, 0.5],
        "block_expansion": 16,
        "max_features": 256,
        "num_blocks": 3,
    }
    assert config.eval.max_videos == 30 and config.eval.save_mp4


def test_fomm_training_and_losses():
    result = import_official_config(load(FOMM_YAML))
    train = result.config.train
    assert (train.epochs, train.repeats, train.batch_size) == (40, 20, 12)
    assert train.lr == 1e-4 and train.milestones == [30, 35]
    assert (train.betas, train.gamma) == ([0.5, 0.999], 0.1)
    (perceptual,) = result.config.losses
    assert perceptual.name == "perceptual_pyramid" and perceptual.weight == 1.0
    assert perceptual.outputs == ["prediction"]
    assert perceptual.params == {
        "weights": None,
        "scales": [1.0, 0.5, 0.25],
        "layer_weights": [1.0, 2.0, 3.0, 4.0, 5.0],
    }
    fomm_losses = section(result.config, "fomm").losses
    assert [item.name for item in fomm_losses] == ["equivariance"]  # generator_gan: 0
    assert fomm_losses[0].weight == 1.0
    assert fomm_losses[0].params == {
        "value_weight": 7.0,
        "jacobian_weight": 3.0,
        "sigma_affine": 0.04,
        "sigma_tps": 0.006,
        "points_tps": 4,
    }
    # a FOMM config carries no two-stage settings: a two-stage row gets its paper preset
    assert result.config.generator.name == "fomm"
    two_stage = loss(section(result.config, "two_stage").losses, "perceptual_pyramid")
    assert two_stage.outputs == ["low_res_prediction"]


def test_fomm_warnings_name_every_unrepresented_key():
    warnings = import_official_config(load(FOMM_YAML)).warnings
    for key in (
        "dataset_params.pairs_list",
        "train_params.checkpoint_freq",
        "train_params.loss_weights.discriminator_gan",
        "train_params.loss_weights.feature_matching",
        "train_params.lr_discriminator",
        "animate_params.num_pairs",
        "animate_params.normalization_params.use_relative_movement",
        "animate_params.normalization_params.adapt_movement_scale",
        "animate_params.normalization_params.use_relative_jacobian",
        "visualizer_params",
    ):
        assert warned(warnings, key), key
    # represented exactly: no warning
    assert not warned(warnings, "train_params.lr_kp_detector")
    assert not any(w.startswith("model_params.") for w in warnings)


def test_fomm_adversarial_settings():
    data = load(FOMM_YAML)
    weights = data["train_params"]["loss_weights"]
    weights.update(generator_gan=2, discriminator_gan=0.5)
    data["model_params"]["discriminator_params"].update(use_kp=True, sn=True)
    data["train_params"]["lr_discriminator"] = 5e-5
    result = import_official_config(data)
    fomm_losses = section(result.config, "fomm").losses
    assert [item.name for item in fomm_losses] == ["equivariance", "gan", "feature_matching"]
    assert loss(fomm_losses, "gan").weight == 2.0
    fm = loss(fomm_losses, "feature_matching")
    assert fm.weight == 1.0 and fm.params == {"layer_weights": [10.0, 10.0, 10.0]}
    assert result.config.discriminator["use_kp"] is True
    assert result.config.discriminator["num_kp"] == 15
    for key in (
        "train_params.loss_weights.discriminator_gan",
        "train_params.lr_discriminator",
        "model_params.discriminator_params.sn",
    ):
        assert warned(result.warnings, key), key
    assert not warned(result.warnings, "train_params.loss_weights.feature_matching")


def test_zero_weights_switch_terms_off():
    data = load(FOMM_YAML)
    data["train_params"]["loss_weights"].update(
        perceptual=[0, 0, 0, 0, 0], equivariance_value=0, equivariance_jacobian=0
    )
    result = import_official_config(data)
    assert result.config.losses == []
    assert section(result.config, "fomm").losses == []
    assert warned(result.warnings, "train_params.transform_params")


def test_augmentation_parameters():
    data = load(FOMM_YAML)
    data["dataset_params"]["augmentation_params"] = {
        "flip_param": {"horizontal_flip": False, "time_flip": True},
        "rotation_param": {"degrees": 15},
        "resize_param": {"ratio": [0.9, 1.1]},
        "crop_param": {"size": [120, 110]},
        "jitter_param": {"brightness": 0.1, "contrast": 0.2, "saturation": 0.1, "hue": 0.05},
    }
    result = import_official_config(data)
    aug = result.config.data.augmentation
    assert aug == {
        "horizontal_flip": False,
        "time_flip": True,
        "jitter": 0.2,
        "rotation": 15.0,
        "scale_min": 0.9,
        "scale_max": 1.1,
        "crop": [120, 110],
    }
    augmentation_from_dict(aug)
    assert warned(result.warnings, "dataset_params.augmentation_params.jitter_param")

    data["dataset_params"]["augmentation_params"] = {"rotation_param": {"degrees": [-5, 10]}}
    result = import_official_config(data)
    assert result.config.data.augmentation["rotation"] == 10.0
    assert result.config.data.augmentation["horizontal_flip"] is False  # no flip_param: off
    assert warned(result.warnings, "dataset_params.augmentation_params.rotation_param.degrees")


def test_frame_shape_variants():
    data = load(FOMM_YAML)
    del data["dataset_params"]["frame_shape"]
    data["dataset_params"]["image_shape"] = [64, 64, 3]  # the older key
    assert import_official_config(data).config.data.frame_size == 64
    data["dataset_params"]["image_shape"] = [64, 128, 3]
    result = import_official_config(data)
    assert result.config.data.params["frame_width"] == 128
    assert warned(result.warnings, "dataset_params.image_shape")


def test_unknown_keys_are_warned_not_dropped():
    data = load(FOMM_YAML)
    data["model_params"]["kp_detector_params"]["mystery"] = 3
    data["train_params"]["loss_weights"]["new_term"] = 1
    data["extra_section"] = {"a": {"b": 1}}
    warnings = import_official_config(data).warnings
    for key in (
        "model_params.kp_detector_params.mystery",
        "train_params.loss_weights.new_term",
        "extra_section.a.b",
    ):
        assert warned(warnings, key), key


# -- keypoint mask and perturbed mask -----------------------------------------------------------


def test_keypoint_mask_family():
    data = load(KEYPOINT_MASK_YAML)
    result = import_official_config(data)
    config = result.config
    assert result.family == KEYPOINT_MASK and "kp_after_softmax" in result.evidence
    assert (config.masker.name, config.generator.name) == ("heatmap_sum", "two_stage")
    assert config.keypoints.scale_factor == 0.25  # from common_params
    two_stage = section(config, "two_stage")
    assert (two_stage.params["scale_factor"], two_stage.params["features"]) == (0.25, 256)
    assert two_stage.params["num_residual_blocks"] == 6
    assert [item.outputs for item in config.losses] == [["prediction"]]
    assert [item.outputs for item in two_stage.losses] == [["low_res_prediction"]]
    for key in (
        "train_params.lr_kp_detector",
        "train_params.lr_discriminator",
        "train_params.loss_weights.equivariance_value",
        "train_params.loss_weights.generator_gan",
    ):
        assert warned(result.warnings, key), key
    assert any(note.startswith("keypoints.checkpoint") for note in result.notes)

    data["model_params"]["kp_detector_params"]["kp_after_softmax"] = True
    assert import_official_config(data).config.masker.name == "gaussian_circles"
    data["model_params"]["kp_detector_params"]["softmax_mask"] = True
    assert import_official_config(data).config.masker.name == "softmax_sum"


def test_keypoint_mask_import_matches_the_shipped_profile():
    imported = import_official_config(load(KEYPOINT_MASK_YAML)).config
    shipped = load_config(REPO / "configs" / "taichi-256.yaml")
    assert imported.keypoints == shipped.keypoints
    assert imported.preset == shipped.preset == "paper"
    assert expand_presets(copy.deepcopy(imported)).generator == expand_presets(shipped).generator
    assert expand_presets(imported).masker == shipped.masker
    assert imported.losses == shipped.losses
    for field in ("epochs", "repeats", "batch_size", "lr", "betas", "milestones", "gamma"):
        assert getattr(imported.train, field) == getattr(shipped.train, field), field
    shipped_aug = augmentation_from_dict(shipped.data.augmentation)
    assert augmentation_from_dict(imported.data.augmentation) == shipped_aug
    assert imported.data.params == shipped.data.params


def test_generator_params_without_dense_motion_is_keypoint_mask():
    data = load(FOMM_YAML)
    del data["model_params"]["generator_params"]["dense_motion_params"]
    assert detect_family(data) == KEYPOINT_MASK
    assert detect_family(load(FOMM_YAML)) == FOMM


def test_perturbed_mask_family():
    result = import_official_config(load(PERTURBED_MASK_YAML))
    config = result.config
    assert result.family == PERTURBED_MASK
    assert (config.masker.name, config.generator.name) == ("perturbed_mask", "two_stage")
    masker = section(config, "perturbed_mask", "maskers").params
    assert masker["threshold"] == pytest.approx(102 / 255)
    assert (masker["temperature"], masker["block_expansion"]) == (0.2, 16)
    assert (masker["max_features"], masker["num_blocks"], masker["scale_factor"]) == (512, 4, 0.25)
    assert section(config, "two_stage").params["num_residual_blocks"] == 5
    assert config.losses[0].params["layer_weights"] == [10.0, 10.0, 10.0, 0.0, 0.0]
    correction = loss(section(config, "perturbed_mask", "maskers").losses, "mask_correction")
    assert (correction.weight, correction.params) == (100.0, {"start_epoch": 1})
    assert (config.train.repeats, config.train.batch_size) == (75, 16)
    assert not warned(result.warnings, "dataset_params.pairs_list")  # empty: random pairs


# -- invalid input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "not an official FOMM-family config"),
        ({"train_params": {}}, "no 'model_params'"),
        ({"model_params": {"kp_detector_params": {}}}, "generator_params"),
    ],
)
def test_not_an_official_config(data, message):
    with pytest.raises(ConfigError, match=message):
        import_official_config(data)


def test_wrong_types_name_the_official_key():
    data = load(FOMM_YAML)
    data["model_params"]["common_params"]["num_kp"] = "ten"
    with pytest.raises(ConfigError, match=r"'model_params\.common_params\.num_kp'"):
        import_official_config(data)
    data = load(FOMM_YAML)
    data["train_params"]["loss_weights"]["perceptual"] = [1] * 6
    with pytest.raises(ConfigError, match="at most 5"):
        import_official_config(data)


def test_dotless_exponents_are_numbers():
    data = load(FOMM_YAML.replace("lr_generator: 1.0e-4", "lr_generator: 3e-4"))
    assert import_official_config(data).config.train.lr == 3e-4


# -- the command line -------------------------------------------------------------------------


def test_cli_import_prints_yaml_and_warnings(tmp_path, capsys):
    source = tmp_path / "dance-128.yaml"
    source.write_text(FOMM_YAML)
    assert main(["config", "import", str(source)]) == 0
    captured = capsys.readouterr()
    assert "detected FOMM" in captured.err
    assert "warning: train_params.checkpoint_freq" in captured.err
    target = tmp_path / "kptoolkit.yaml"
    target.write_text(captured.out)
    assert captured.out.startswith("# Imported from dance-128.yaml")
    assert load_config(target) == import_official_file(source).config
    assert load_config(target).name == "dance-128"


def test_cli_import_writes_out(tmp_path, capsys):
    source = tmp_path / "km.yaml"
    source.write_text(KEYPOINT_MASK_YAML)
    out = tmp_path / "sub" / "km-kptoolkit.yaml"
    assert main(["config", "import", str(source), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "detected keypoint mask" in captured.err and f"wrote {out}" in captured.out
    assert load_config(out).masker.name == "heatmap_sum"


@pytest.mark.parametrize(
    "content", ["model_params: [1,\n", "dataset_params: {}\n", "", "- a\n- b\n"]
)
def test_cli_import_bad_input_is_one_line_error(tmp_path, capsys, content):
    source = tmp_path / "bad.yaml"
    source.write_text(content)
    assert main(["config", "import", str(source)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("kptoolkit: error: ") and "\n" not in err


def test_cli_import_missing_file(tmp_path, capsys):
    assert main(["config", "import", str(tmp_path / "none.yaml")]) == 1
    assert "not found" in capsys.readouterr().err


# -- the shipped profiles ---------------------------------------------------------------------


# the published widths (FACTS sections 2, 4, 5; X2Face's public code), checked against the
# constructors' defaults that the paper presets keep
PUBLISHED_WIDTHS = {
    "two_stage": {
        "scale_factor": 0.25,
        "features": 256,
        "num_residual_blocks": 6,
        "refine_block_expansion": 64,
        "refine_max_features": 1024,
        "refine_num_blocks": 5,
    },
    "fomm": {
        "block_expansion": 64,
        "max_features": 512,
        "num_down_blocks": 2,
        "num_bottleneck_blocks": 6,
        "dense_block_expansion": 64,
        "dense_max_features": 1024,
        "dense_num_blocks": 5,
        "scale_factor": 0.25,
        "kp_variance": 0.01,
    },
    "x2face": {
        "embedding_block_expansion": 32,
        "embedding_max_features": 512,
        "embedding_num_blocks": 8,
        "driving_bottleneck_features": 128,
    },
    "perturbed_mask": {
        "scale_factor": 0.25,
        "block_expansion": 32,
        "max_features": 1024,
        "num_blocks": 5,
        "refine_block_expansion": 64,
        "refine_max_features": 1024,
        "refine_num_blocks": 5,
        "threshold": 60 / 255,
    },
}
KINDS = {"two_stage": "generators", "fomm": "generators", "x2face": "generators"}


def defaults(factory) -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(factory).parameters.items()
        if p.default is not p.empty
    }


@pytest.mark.parametrize("name", ["taichi-256", "vox-256"])
def test_shipped_profiles_load_and_validate(name):
    config = load_config(REPO / "configs" / f"{name}.yaml")
    assert config.name == name
    assert config.data.dataset == "fomm_frames" and config.data.frame_size == 256
    assert config.data.params == {"id_sampling": True}
    augmentation_from_dict(config.data.augmentation)
    assert config.keypoints.checkpoint is None  # set by the user
    assert (config.masker.name, config.generator.name) == ("heatmap_sum", "two_stage")
    for problem in validate_components(config):
        # only what needs files (the dataset root) or metrics that are not installed yet
        where = problem.split(":")[0]
        if where == "data":
            assert "root" in problem, problem
        else:
            assert where.startswith("metrics."), problem
            assert problem.split("'")[1] not in METRICS.names(), problem


@pytest.mark.parametrize("name", ["taichi-256", "vox-256"])
def test_shipped_profiles_use_published_widths_and_losses(name):
    config = load_config(REPO / "configs" / f"{name}.yaml")
    assert config.preset == "paper"
    # every component a bench may add runs at its constructor's defaults: the published widths
    for component in PUBLISHED_WIDTHS:
        kind = KINDS.get(component, "maskers")
        params = section(config, component, kind).params
        for key, value in PUBLISHED_WIDTHS[component].items():
            assert params[key] == pytest.approx(value), (component, key)
    perceptual = loss(config.losses, "perceptual_pyramid")
    assert perceptual.outputs == ["prediction"] and perceptual.params["weights"] is None
    assert perceptual.params["scales"] == [1, 0.5, 0.25, 0.125]
    assert perceptual.params["layer_weights"] == [10] * 5
    low_res = loss(section(config, "two_stage").losses, "perceptual_pyramid")
    assert low_res.outputs == ["low_res_prediction"] and low_res.params == perceptual.params
    equivariance = loss(section(config, "fomm").losses, "equivariance")
    assert equivariance.weight == 1.0
    built = LOSSES.create("equivariance", **equivariance.params)
    assert (built.value_weight, built.jacobian_weight) == (10, 10)
    correction = loss(section(config, "perturbed_mask", "maskers").losses, "mask_correction")
    assert (correction.weight, correction.params) == (100.0, {"start_epoch": 1})
    train = config.train
    assert (train.lr, train.betas, train.milestones, train.gamma, train.epochs) == (
        2e-4,
        [0.5, 0.999],
        [60, 90],
        0.1,
        100,
    )
    assert (train.repeats, train.batch_size) == ((150, 28) if name == "taichi-256" else (75, 40))
    names = {item.name for item in section(config, "fomm").losses}
    assert "gan" not in names  # FOMM's vox-256 and taichi-256 train no GAN (generator_gan: 0)


def test_monkey_net_family_at_the_published_values_builds_the_paper_models():
    result = import_official_config(load(MONKEY_NET_YAML))
    config = result.config
    assert result.family == MONKEY_NET and "kp_variance" in result.evidence
    assert (config.masker.name, config.generator.name) == ("monkey_net_keypoints", "monkey_net")
    assert config.preset == "paper" and config.data.frame_size == 64  # the crop size
    # taichi.yaml's widths are the paper preset's (the constructors' defaults)
    assert config.masker.params == {} and config.generator.params == {}
    assert [(t.name, t.weight, t.outputs, t.params) for t in config.losses] == [
        ("l1_pyramid", 10.0, ["prediction"], {"scales": [1.0]})
    ]
    assert (config.train.lr, config.train.epochs, config.train.batch_size) == (2e-4, 750, 32)
    for key in (
        "model_params.discriminator_params",
        "train_params.loss_weights.reconstruction",
        "train_params.loss_weights.generator_gan",
        "train_params.detach_kp_discriminator",
        "transfer_params",
    ):
        assert warned(result.warnings, key), key
    validate_components(config)
    from kptoolkit.experiment.build import build_models
    from kptoolkit.experiment.plan import plan_experiment

    models = build_models(plan_experiment(config))
    assert models.detector is None
    assert sum(p.numel() for p in models.generator.parameters()) == 28_528_571


def test_monkey_net_values_map_to_the_components():
    data = load(MONKEY_NET_YAML)
    model = data["model_params"]
    model["common_params"]["num_kp"] = 12
    model["kp_detector_params"].update(scale_factor=0.25, block_expansion=16, clip_variance=0.01)
    generator = model["generator_params"]
    generator.update(num_blocks=6, interpolation_mode="trilinear", num_refinement_blocks=2)
    generator["dense_motion_params"].update(scale_factor=0.5, num_group_blocks=1)
    generator["dense_motion_params"]["mask_embedding_params"]["use_difference"] = True
    generator["kp_embedding_params"]["scale_factor"] = 0.5
    generator["kp_embedding_params"]["norm_const"] = 50
    data["train_params"]["loss_weights"].update(reconstruction_deformed=2, generator_gan=0)
    result = import_official_config(data)
    masker = section(result.config, "monkey_net_keypoints", "maskers").params
    params = section(result.config, "monkey_net").params
    assert (masker["num_kp"], masker["scale_factor"], masker["block_expansion"]) == (12, 0.25, 16)
    assert masker["clip_variance"] == 0.01
    assert (params["num_kp"], params["num_blocks"], params["num_refinement_blocks"]) == (12, 6, 2)
    assert params["interpolation_mode"] == "trilinear" and params["use_difference"] is True
    assert (params["dense_scale_factor"], params["embedding_scale_factor"]) == (0.5, 0.5)
    assert params["num_group_blocks"] == 1
    assert [(t.outputs, t.weight) for t in result.config.losses] == [
        (["prediction"], 10.0),
        (["deformed"], 2.0),
    ]
    assert warned(result.warnings, "model_params.generator_params.kp_embedding_params.norm_const")
    assert not warned(result.warnings, "train_params.loss_weights.generator_gan")
    validate_components(result.config)
    assert detect_family(load(FOMM_YAML)) == FOMM  # FOMM's dense motion stays FOMM
