"""Config: YAML round trip, overrides with type conversion, and key/value errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kptoolkit import MASKERS
from kptoolkit.cli.main import main
from kptoolkit.config.schema import (
    ExperimentConfig,
    LossConfig,
    ModelConfig,
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
    parse_override_value,
    save_config,
)
from kptoolkit.errors import ConfigError
from kptoolkit.experiment.resolve import validate_components

REPO = Path(__file__).resolve().parents[1]


def test_round_trip_through_yaml(tmp_path):
    config = ExperimentConfig(
        name="rt",
        seed=7,
        losses=[LossConfig("l1_pyramid", 2.5, ["prediction"], {"scales": [1, 0.5]})],
        masker=ModelConfig("gaussian_circles", params={"variance": 0.003}),
    )
    config.train.steps = 20
    config.keypoints.checkpoint = "taichi-cpk.pth.tar"
    path = tmp_path / "exp.yaml"
    save_config(config, path)
    assert load_config(path) == config
    assert load_config(path) != ExperimentConfig()
    assert yaml.safe_load(dump_config(config))["train"]["steps"] == 20


def test_shipped_default_profile_matches_embedded_default():
    assert load_config(REPO / "configs" / "synthetic-64.yaml") == ExperimentConfig()


def test_overrides_convert_types():
    config = apply_overrides(
        ExperimentConfig(),
        [
            "train.lr=1e-4",
            "train.batch_size=4",
            "train.precision=bf16",
            "train.channels_last=false",
            "train.steps=20",
            "train.grad_clip=null",
            "train.milestones=[5, 8]",
            "data.root=/data/taichi",
            "masker.params.sigma=0.01",
            "masker.params.mode=abs",
            "losses.0.weight=5",
            "seed=3",
        ],
    )
    assert config.train.lr == pytest.approx(1e-4) and isinstance(config.train.lr, float)
    assert config.train.batch_size == 4 and config.train.precision == "bf16"
    assert config.train.channels_last is False
    assert config.train.steps == 20 and config.train.grad_clip is None
    assert config.train.milestones == [5, 8]
    assert config.data.root == "/data/taichi"
    assert config.masker.params == {"sigma": 0.01, "mode": "abs"}
    assert config.losses[0].weight == 5.0 and config.seed == 3


def test_yaml_dotless_exponent_is_a_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1e-4\n")  # YAML 1.1 reads this as a string
    assert load_config(path).train.lr == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.lrr=1", "unknown config key 'train.lrr' (did you mean 'train.lr'?)"),
        ("trian.lr=1", "unknown config key 'trian'"),
        ("masker.nmae=x", "unknown config key 'masker.nmae' (did you mean 'masker.name'?)"),
        ("losses.4.weight=1", "unknown config key 'losses.4'"),
        ("train.batch_size=many", "train.batch_size: expected int"),
        ("train.batch_size=-2", "'batch_size' must be positive"),
        ("train", "not of the form key.path=value"),
    ],
)
def test_bad_overrides_name_the_key(override, expected):
    with pytest.raises(ConfigError) as err:
        apply_overrides(ExperimentConfig(), [override])
    assert expected in str(err.value)


def test_unknown_key_in_file_names_full_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  frame_sise: 128\n")
    with pytest.raises(ConfigError, match=r"'data\.frame_sise' \(did you mean 'data\.frame_size'"):
        load_config(path)


def test_nested_list_item_errors_have_index_paths():
    with pytest.raises(ConfigError, match=r"'losses\.1\.wieght'"):
        config_from_dict({"losses": [{"name": "a"}, {"name": "b", "wieght": 2}]})
    with pytest.raises(ConfigError, match=r"losses\.0\.weight: expected float"):
        config_from_dict({"losses": [{"name": "a", "weight": "heavy"}]})


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listy)


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


def test_parse_override_value():
    assert parse_override_value("3") == 3
    assert parse_override_value("1e-3") == pytest.approx(1e-3)
    assert parse_override_value("[1, 2]") == [1, 2]
    assert parse_override_value("hello") == "hello"
    assert parse_override_value("false") is False


def test_component_parameters_are_validated_by_the_component():
    class Checked:
        def __init__(self, width: int = 4):
            self.width = width

    MASKERS.register("config_test_masker")(Checked)
    try:
        config = ExperimentConfig(masker=ModelConfig("config_test_masker", params={"widht": 3}))
        problems = validate_components(config)
        masker_problems = [p for p in problems if p.startswith("masker:")]
        assert len(masker_problems) == 1
        assert "'widht'" in masker_problems[0] and "config_test_masker" in masker_problems[0]
        config.masker.params = {"width": 3}
        assert not [p for p in validate_components(config) if p.startswith("masker:")]
    finally:
        MASKERS.unregister("config_test_masker")


def test_a_partial_section_keeps_the_defaults_of_its_siblings(tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("train: {lr: 0.0001}\ngenerator: {params: {features: 32}}\neval:\n")
    config = load_config(path)
    default = ExperimentConfig()
    assert config.train.lr == 0.0001
    assert (
        (config.train.epochs, config.train.repeats, config.train.batch_size)
        == (
            default.train.epochs,
            default.train.repeats,
            default.train.batch_size,
        )
        != (100, 150, 28)
    )  # the paper's, which a partial section used to reset to
    assert config.generator.name == "two_stage" and config.generator.params == {"features": 32}
    assert config.eval == default.eval
    # free-form values and lists replace the default's whole
    path.write_text("losses: []\ndata: {augmentation: {horizontal_flip: false}}\n")
    config = load_config(path)
    assert config.losses == [] and config.data.augmentation == {"horizontal_flip": False}
    assert config.data.frame_size == default.data.frame_size


def test_config_show_says_what_a_file_is_laid_over(tmp_path, capsys):
    path = tmp_path / "partial.yaml"
    path.write_text("train: {lr: 0.0001}\n")
    assert main(["config", "show", str(path)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"# {path} over the built-in synthetic-64 default, section by section"
