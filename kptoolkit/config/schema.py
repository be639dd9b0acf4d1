"""Experiment configuration: attrs classes, strict YAML load/save and `--set a.b=value` overrides.

(`kptoolkit.config.structuring` checks every key; `kptoolkit.config.legacy` converts the
layout before presets.)

The defaults of `ExperimentConfig` are the embedded `synthetic-64` profile (CPU-sized widths on
the synthetic puppets); `configs/*.yaml` hold the other profiles. Every key is checked: an unknown
or misspelled key is an error naming its full dotted path. Component parameters (`params`) are
free-form here and checked against the component itself by `kptoolkit.experiment.resolve`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from kptoolkit.config.legacy import upgrade_legacy_layout
from kptoolkit.config.overrides import apply_overrides as apply_overrides
from kptoolkit.config.overrides import number_or_text as number_or_text
from kptoolkit.config.overrides import parse_override_value as parse_override_value
from kptoolkit.config.overrides import split_override as split_override
from kptoolkit.config.structuring import structure, unstructure
from kptoolkit.errors import ConfigError
from kptoolkit.utils.atomic import atomic_write_text


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"'{attribute.name}' must be positive, got {value}")


# precisions: fp32 exact; bf16 / fp16 autocast; `auto` chosen from the device when a run starts
# (`kptoolkit.runtime.precision.resolve_numerics`)
AUTO = "auto"
# how a metric is averaged over a test set: over every frame, or per video first
AVERAGES: tuple[str, ...] = ("frames", "videos")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
PRECISION_CHOICES: tuple[str, ...] = (AUTO, *PRECISIONS)


def _precision(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in PRECISION_CHOICES:
        raise ValueError(
            f"'{attribute.name}' must be one of {', '.join(PRECISION_CHOICES)}, got {value!r}"
        )


def _layout(instance: Any, attribute: attrs.Attribute, value: bool | str) -> None:
    if not isinstance(value, bool) and value != AUTO:
        raise ValueError(f"'{attribute.name}' must be true, false or auto, got {value!r}")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value < 0:
        raise ValueError(f"'{attribute.name}' must be >= 0, got {value}")


def _count_or_auto(instance: Any, attribute: attrs.Attribute, value: int | str) -> None:
    if value == AUTO:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"'{attribute.name}' must be a count >= 0 or 'auto', got {value!r}")


@attrs.define
class ComponentConfig:
    """A registered component by name, with the parameters passed to its constructor."""

    name: str
    params: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class LossConfig:
    """One loss term: its registered name, weight, the outputs it applies to, its parameters."""

    name: str
    weight: float = 1.0
    outputs: list[str] = attrs.field(factory=lambda: ["prediction"])
    params: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class ModelConfig:
    """A masker or generator: its name, the preset it starts from, single values over it.

    `preset` (None: the experiment's `preset`) names the component's own table of widths and
    loss terms (`kptoolkit.registry.presets`); `params` override single values of it.
    `losses` (None: the preset's) are the loss terms the component brings, added to the
    experiment's.
    """

    name: str
    preset: str | None = None
    params: dict[str, Any] = attrs.field(factory=dict)
    losses: list[LossConfig] | None = None


@attrs.define
class DataConfig:
    """Where frames come from and how they are augmented."""

    dataset: str = "synthetic_puppets"
    root: str | None = None
    frame_size: int = attrs.field(default=64, validator=_positive)
    params: dict[str, Any] = attrs.field(factory=dict)
    augmentation: dict[str, Any] = attrs.field(
        factory=lambda: {"horizontal_flip": True, "time_flip": True, "jitter": 0.1}
    )
    # loader processes while training; `auto` is resolved with the plan from the device and
    # the training threads (`kptoolkit.runtime.loading`): none where they would take the cores
    # the training threads use
    num_workers: int | str = attrs.field(default=AUTO, validator=_count_or_auto)


@attrs.define
class KeypointConfig:
    """The FOMM keypoint detector that keypoint maskers share (frozen) and FOMM trains; a
    width left empty comes from the detector's preset."""

    checkpoint: str | None = None
    # recorded by a run: the sha256 of the checkpoint's bytes (a resume with another file is
    # refused); in a run's config.yaml `checkpoint` is relative to the run folder
    checkpoint_sha256: str | None = None
    preset: str | None = None  # None: the experiment's `preset`
    # None: the detector's preset (`KeypointDetector.presets`)
    num_kp: int | None = attrs.field(default=None, validator=_positive)
    temperature: float = attrs.field(default=0.1, validator=_positive)
    block_expansion: int | None = attrs.field(default=None, validator=_positive)
    max_features: int | None = attrs.field(default=None, validator=_positive)
    num_blocks: int | None = attrs.field(default=None, validator=_positive)
    scale_factor: float | None = attrs.field(default=None, validator=_positive)
    estimate_jacobian: bool = True


def _decay(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"'{attribute.name}' must be 0 (off) or between 0 and 1, got {value}")


@attrs.define
class TrainConfig:
    """Optimisation settings; `steps`, when set, overrides epochs x repeats."""

    epochs: int = attrs.field(default=100, validator=_positive)
    repeats: int = attrs.field(default=150, validator=_positive)
    steps: int | None = attrs.field(default=None, validator=_positive)
    batch_size: int = attrs.field(default=28, validator=_positive)
    lr: float = attrs.field(default=2e-4, validator=_positive)
    betas: list[float] = attrs.field(factory=lambda: [0.5, 0.999])
    milestones: list[int] = attrs.field(factory=lambda: [60, 90])
    gamma: float = attrs.field(default=0.1, validator=_positive)
    # autocast precision (auto, fp32, bf16, fp16) and layout (auto, true, false); `auto` is
    # resolved from the device when the run starts (`kptoolkit.runtime.precision`) and the run's
    # config.yaml records what it resolved to
    precision: str = attrs.field(default=AUTO, validator=_precision)
    channels_last: bool | str = attrs.field(default=AUTO, validator=_layout)
    grad_clip: float | None = attrs.field(default=None, validator=_positive)
    # decay of the moving average of the trained networks' weights that the run is evaluated
    # with (`kptoolkit.engine.weight_average`); 0: none, the last step's weights
    ema_decay: float = attrs.field(default=0.0, validator=_decay)
    # torch intra-op threads while training (None: the process's count); part of what a run
    # is, because the count changes the order of float sums: a resume uses it again
    threads: int | None = attrs.field(default=None, validator=_positive)
    sync_batchnorm: bool = False
    checkpoint_every: int = attrs.field(default=500, validator=_positive)
    keep_last: int = attrs.field(default=3, validator=_positive)
    sample_every: int = attrs.field(default=500, validator=_positive)
    log_every: int = attrs.field(default=10, validator=_positive)


def _average(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in AVERAGES:
        raise ValueError(f"'{attribute.name}' must be one of {', '.join(AVERAGES)}, got {value!r}")


def _confidence(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"'{attribute.name}' must be between 0 and 1, got {value}")


@attrs.define
class EvalConfig:
    """Reconstruction, animation and scoring settings.

    `precision`: auto (the device's fast choice: bf16 where it is native, else fp32 on a CPU,
    fp16 on a GPU without bfloat16), fp32 (exact), bf16 (autocast) or fp16 (CUDA only) for
    reconstruction and animation. `average`: "frames" pools every frame of every test video (the
    published protocol), "videos" averages each video first. `bootstrap_resamples` resamples of
    the test videos (seed `bootstrap_seed`) give each score's `confidence` interval in the
    bench's tables.
    """

    batch_size: int = attrs.field(default=16, validator=_positive)
    max_videos: int | None = attrs.field(default=None, validator=_positive)
    save_png: bool = True
    save_mp4: bool = True
    precision: str = attrs.field(default=AUTO, validator=_precision)
    average: str = attrs.field(default="frames", validator=_average)
    bootstrap_resamples: int = attrs.field(default=1000, validator=_positive)
    bootstrap_seed: int = 0
    confidence: float = attrs.field(default=0.95, validator=_confidence)


# settings that change how stored per-video scores are summarised, not any trained model
SCORING_KEYS = (
    "eval.average",
    "eval.bootstrap_resamples",
    "eval.bootstrap_seed",
    "eval.confidence",
)
# settings of inference only: a trained model does not depend on them
INFERENCE_KEYS = ("eval.precision",)
# what a run records about where it ran: never a difference between two configs
RECORD_KEYS = ("runtime",)
# how training batches are loaded, not which: an item comes from (seed, epoch, index) alone
LOADING_KEYS = ("data.num_workers",)


@attrs.define
class ExperimentConfig:
    """One experiment: dataset, masker, generator, losses, metrics, training and evaluation.

    `preset` names the widths and loss terms every component takes from its own presets
    (paper, cpu64, micro; `kptoolkit.registry.presets`) unless its section names another.
    An empty masker name means the generator's natural masker.
    `kptoolkit.experiment.components.expand_presets` writes out what the presets give, so
    that a saved config lists what was built.
    """

    name: str = "synthetic-64"
    seed: int = 0
    preset: str = "cpu64"
    data: DataConfig = attrs.field(factory=DataConfig)
    keypoints: KeypointConfig = attrs.field(factory=KeypointConfig)
    masker: ModelConfig = attrs.field(factory=lambda: ModelConfig("heatmap_sum"))
    generator: ModelConfig = attrs.field(factory=lambda: ModelConfig("two_stage"))
    discriminator: dict[str, Any] = attrs.field(factory=dict)
    losses: list[LossConfig] = attrs.field(
        factory=lambda: [LossConfig("l1_pyramid", 1.0, ["prediction"], {"scales": [1, 0.5, 0.25]})]
    )
    metrics: list[ComponentConfig] = attrs.field(
        factory=lambda: [ComponentConfig(n) for n in ("l1", "akd", "mkr", "aed", "psnr", "ssim")]
    )
    train: TrainConfig = attrs.field(
        factory=lambda: TrainConfig(
            epochs=10,
            repeats=10,
            batch_size=8,
            milestones=[6, 9],
            checkpoint_every=200,
            sample_every=200,
        )
    )
    eval: EvalConfig = attrs.field(factory=EvalConfig)
    # written by a run, never read as a setting: the device it last started on and what its
    # `auto` precision and layout resolved to there (`Numerics.record`)
    runtime: dict[str, Any] | None = None


# -- YAML -------------------------------------------------------------------------------------


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read an experiment YAML file (safe loader) and apply `a.b=value` overrides."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    config = config_from_dict(data or {}, overrides)
    _find_detector_file(config, path.parent)
    return config


def _find_detector_file(config: ExperimentConfig, folder: Path) -> None:
    """A relative `keypoints.checkpoint` names a file from the current directory or, when none
    is there, from the config file's folder (a run's config.yaml names its detector relative to
    the run folder)."""
    checkpoint = config.keypoints.checkpoint
    if not checkpoint or Path(checkpoint).is_absolute() or Path(checkpoint).exists():
        return
    beside = folder / checkpoint
    if beside.exists():
        config.keypoints.checkpoint = os.path.normpath(beside)


def config_from_dict(data: Mapping[str, Any], overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Structure an experiment from plain data laid over the built-in default section by section
    (`merge_sections`; the layout before presets is converted first), then apply overrides."""
    merged = merge_sections(
        ExperimentConfig, unstructure(ExperimentConfig()), upgrade_legacy_layout(data)
    )
    config = structure(ExperimentConfig, merged)
    return apply_overrides(config, overrides)


def merge_sections(cls: type, base: Mapping[str, Any], data: Any) -> Any:
    """`data` laid over `base` key by key in the config's sections (attrs classes), so that a
    file holding only `train: {lr: 0.0001}` keeps the base's other training settings; free-form
    values (component `params`, lists) replace the base's whole."""
    if not isinstance(data, Mapping) or not attrs.has(cls):
        return data
    fields = attrs.fields_dict(attrs.resolve_types(cls))
    merged = dict(base)
    for key, value in data.items():
        field = fields.get(key)
        kind = field.type if field is not None else None
        if kind is not None and attrs.has(kind) and isinstance(merged.get(key), Mapping):
            if value is not None:  # an empty section (`train:`) keeps the base's
                merged[key] = merge_sections(kind, merged[key], value)
        else:
            merged[key] = value
    return merged


def dump_config(config: ExperimentConfig) -> str:
    """The config as YAML text that `load_config` reads back to an equal config (without the
    `runtime` record when there is none)."""
    data = unstructure(config)
    if data.get("runtime") is None:
        data.pop("runtime", None)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write the config as YAML (atomically: temp file then rename)."""
    atomic_write_text(path, dump_config(config))


# -- differences ----------------------------------------------------------------------------


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists as one dict keyed by dotted paths."""
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat or {prefix.rstrip("."): {}}
    if isinstance(data, list):
        flat = {}
        for index, value in enumerate(data):
            flat.update(flatten(value, f"{prefix}{index}."))
        return flat or {prefix.rstrip("."): []}
    return {prefix.rstrip("."): data}


def config_differences(
    old: ExperimentConfig, new: ExperimentConfig, ignore: Sequence[str] = ()
) -> list[str]:
    """'key: old -> new' for every setting that differs between two configs (`ignore`: keys,
    or sections with everything under them, left out of the comparison)."""
    before, after = flatten(unstructure(old)), flatten(unstructure(new))
    ignore = (*ignore, *RECORD_KEYS)

    def ignored(key: str) -> bool:
        return any(key == item or key.startswith(item + ".") for item in ignore)

    return [
        f"{key}: {before.get(key, '<absent>')!r} -> {after.get(key, '<absent>')!r}"
        for key in sorted(set(before) | set(after))
        if before.get(key, "<absent>") != after.get(key, "<absent>") and not ignored(key)
    ]


# -- overrides --------------------------------------------------------------------------------
