"""Convert official FOMM-family YAML configs into kptoolkit experiment configs.

Three families share the layout of First Order Motion Model's configs (`dataset_params`,
`model_params`, `train_params`, `reconstruction_params`, `animate_params`, `visualizer_params`):

- `fomm`: first-order-model itself (a `dense_motion_params` block in `generator_params`, a
  `discriminator_params` block, `transform_params` for the equivariance loss);
- `keypoint_mask`: "Image Animation with Keypoint Mask" (the mask type in `kp_detector_params`:
  `kp_after_softmax`, `softmax_mask`; the mask resolution as `common_params.scale_factor`; a
  generator without dense motion; no discriminator, no equivariance);
- `perturbed_mask`: "Image Animation with Perturbed Masks" (`mask_generator_params`, the
  perturbation threshold `th` in `generator_params`, `lr_mask_generator`).

Every parameter kptoolkit can represent is mapped; every other key becomes a warning naming its
official dotted path, so nothing is dropped silently. Files are read with `yaml.safe_load` only.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from kptoolkit.components import detector_params
from kptoolkit.config import (
    DataConfig,
    ExperimentConfig,
    KeypointConfig,
    TrainConfig,
    config_from_dict,
    dump_config,
    number_or_text,
    unstructure,
)
from kptoolkit.errors import ConfigError
from kptoolkit.presets import PAPER, find_preset
from kptoolkit.registry import get_registry

FOMM = "fomm"
KEYPOINT_MASK = "keypoint_mask"
PERTURBED_MASK = "perturbed_mask"
FAMILY_LABELS = {
    FOMM: "FOMM (first-order-model)",
    KEYPOINT_MASK: "keypoint mask (animation-with-keypoint-mask)",
    PERTURBED_MASK: "perturbed mask (Image-Animation-with-Perturbed-Masks)",
}
VGG19_LAYERS = 5  # relu1_1 ... relu5_1
OFFICIAL_FRAME_SIZE = 256
MASK_CORRECTION_WEIGHT = 100.0  # hard-coded in the perturbed-mask code, from the second epoch
_MISSING = object()


class ImportResult(NamedTuple):
    """An imported config, the warnings about what it cannot represent, and the family found.

    `evidence` says which keys identified the family; `notes` list what the user still has to
    set (files that official configs take on the command line).
    """

    config: ExperimentConfig
    warnings: list[str]
    family: str
    evidence: str
    notes: list[str]


# -- the published widths ---------------------------------------------------------------------

# the components an official config may set, by registry kind
_IMPORTED = {"two_stage": "generators", "fomm": "generators", "perturbed_mask": "maskers"}


def paper_params(kind: str, name: str) -> dict[str, Any]:
    """A component's published parameters: its constructor's defaults under its `paper`
    preset (kptoolkit keeps the published widths there, not in copies)."""
    factory = get_registry(kind).get(name)
    defaults = {
        key: parameter.default
        for key, parameter in inspect.signature(factory).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    return {**defaults, **find_preset(factory, PAPER, name).params}


def paper_losses(kind: str, name: str) -> list[dict[str, Any]]:
    """The loss terms a component brings under its `paper` preset, as plain data."""
    factory = get_registry(kind).get(name)
    return [dict(term) for term in find_preset(factory, PAPER, name).losses]


def _perceptual(output: str, scales: list[float], layer_weights: list[float]) -> dict[str, Any]:
    return {
        "name": "perceptual_pyramid",
        "weight": 1.0,
        "outputs": [output],
        "params": {"weights": None, "scales": scales, "layer_weights": layer_weights},
    }


def _equivariance(params: dict[str, Any]) -> dict[str, Any]:
    return {"name": "equivariance", "weight": 1.0, "outputs": [], "params": params}


def _mask_correction() -> dict[str, Any]:
    return {
        "name": "mask_correction",
        "weight": MASK_CORRECTION_WEIGHT,
        "outputs": [],
        "params": {"start_epoch": 1},
    }


# -- reading the official file ----------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_CHECKS = {
    "int": (_is_int, "an integer"),
    "number": (_is_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "numbers": (lambda v: isinstance(v, list) and all(map(_is_number, v)), "a list of numbers"),
    "ints": (lambda v: isinstance(v, list) and all(map(_is_int, v)), "a list of integers"),
    "mapping": (lambda v: isinstance(v, Mapping), "a mapping"),
}


class _Reader:
    """Reads an official config by dotted path, remembering every key it used."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.used: set[tuple[str, ...]] = set()
        self.warnings: list[str] = []

    def _lookup(self, path: tuple[str, ...]) -> Any:
        node: Any = self.data
        for part in path:
            if not isinstance(node, Mapping) or part not in node:
                return _MISSING
            node = node[part]
        return node

    def raw(self, dotted: str) -> Any:
        """The value at `dotted` as written (None when absent), without marking it used."""
        value = self._lookup(tuple(dotted.split(".")))
        return None if value is _MISSING else value

    def has(self, dotted: str) -> bool:
        """Whether the key is present with a value other than null."""
        return self._lookup(tuple(dotted.split("."))) not in (_MISSING, None)

    def get(self, dotted: str, kind: str, default: Any = None) -> Any:
        """The value at `dotted` (marked as used), checked against `kind`; `default` if absent."""
        path = tuple(dotted.split("."))
        self.used.add(path)
        value = self._lookup(path)
        if value is _MISSING or value is None:
            return default
        if kind in ("number", "numbers"):
            value = (
                [number_or_text(v) for v in value]
                if isinstance(value, list)
                else number_or_text(value)
            )
        check, expected = _CHECKS[kind]
        if not check(value):
            raise ConfigError(f"official key '{dotted}': expected {expected}, got {value!r}")
        return value

    def warn(self, dotted: str, message: str) -> None:
        """Record that `dotted` is not (fully) represented, and mark it as handled."""
        self.used.add(tuple(dotted.split(".")))
        self.warnings.append(f"{dotted}: {message}")

    def warn_if_present(self, dotted: str, message: str) -> None:
        """`warn` only when the key is in the file."""
        if self._lookup(tuple(dotted.split("."))) is not _MISSING:
            self.warn(dotted, message)

    def leftovers(self) -> list[str]:
        """Warnings for every key of the file that no mapping used."""
        found: list[str] = []

        def walk(node: Mapping[str, Any], prefix: tuple[str, ...]) -> None:
            for key, value in node.items():
                path = (*prefix, str(key))
                if any(path[:i] in self.used for i in range(1, len(path) + 1)):
                    continue
                if isinstance(value, Mapping) and value:
                    walk(value, path)
                else:
                    found.append(
                        f"{'.'.join(path)}: not recognised; kptoolkit has no equivalent (ignored)"
                    )

        walk(self.data, ())
        return found


# -- family detection -------------------------------------------------------------------------


def _detect(data: Any) -> tuple[str, str]:
    if not isinstance(data, Mapping):
        raise ConfigError(
            "not an official FOMM-family config: expected a YAML mapping with dataset_params, "
            f"model_params and train_params, got {type(data).__name__}"
        )
    model = data.get("model_params")
    if not isinstance(model, Mapping):
        raise ConfigError(
            "not an official FOMM-family config: no 'model_params' mapping (expected "
            "dataset_params, model_params and train_params)"
        )
    train = data.get("train_params")
    train = train if isinstance(train, Mapping) else {}
    if "mask_generator_params" in model:
        return PERTURBED_MASK, "model_params.mask_generator_params"
    if "lr_mask_generator" in train:
        return PERTURBED_MASK, "train_params.lr_mask_generator"
    generator = model.get("generator_params")
    if not isinstance(generator, Mapping):
        raise ConfigError(
            "not an official FOMM-family config: no 'model_params.generator_params' mapping"
        )
    if not isinstance(model.get("kp_detector_params"), Mapping):
        raise ConfigError(
            "not an official FOMM-family config: no 'model_params.kp_detector_params' (nor "
            "'mask_generator_params') mapping"
        )
    detector = model["kp_detector_params"]
    common = model.get("common_params")
    common = common if isinstance(common, Mapping) else {}
    markers = [
        f"kp_detector_params.{k}" for k in ("kp_after_softmax", "softmax_mask") if k in detector
    ]
    if "scale_factor" in common:
        markers.append("common_params.scale_factor")
    if markers:
        return KEYPOINT_MASK, ", ".join(markers)
    if "dense_motion_params" in generator:
        return FOMM, "generator_params.dense_motion_params"
    return KEYPOINT_MASK, "generator_params without dense_motion_params"


def detect_family(data: Any) -> str:
    """Which official code a config belongs to: 'fomm', 'keypoint_mask' or 'perturbed_mask'."""
    return _detect(data)[0]


# -- the mapping ------------------------------------------------------------------------------


def _base(name: str) -> dict[str, Any]:
    """A kptoolkit config at the published settings, as plain data, for the importers to fill."""
    config = ExperimentConfig(
        name=name,
        data=DataConfig(dataset="fomm_frames", frame_size=OFFICIAL_FRAME_SIZE),
        keypoints=KeypointConfig(),
        train=TrainConfig(),
        losses=[],
    )
    data = unstructure(config)
    data["preset"] = PAPER
    data["keypoints"].update(detector_params(config))
    # scratch tables of every component an official file may set; `_finish_components` keeps
    # those of the components that run
    data["component_params"] = {name: paper_params(kind, name) for name, kind in _IMPORTED.items()}
    data["component_losses"] = {
        "two_stage": [],
        "fomm": [_equivariance({})],
        "perturbed_mask": [_mask_correction()],
    }
    return data


def _finish_components(out: dict[str, Any]) -> None:
    """Move the running masker's and generator's settings from the scratch tables into their
    sections: the values that differ from the paper preset, and their loss terms when they
    differ from the preset's."""
    params, losses = out.pop("component_params"), out.pop("component_losses")
    for section in ("masker", "generator"):
        component = out[section]
        name = component["name"]
        kind = _IMPORTED.get(name)
        if kind is None:
            continue
        published = paper_params(kind, name)
        component["params"] = {
            key: value for key, value in params[name].items() if published.get(key) != value
        }
        if losses[name] != paper_losses(kind, name):
            component["losses"] = losses[name]


def _import_dataset(r: _Reader, out: dict[str, Any]) -> None:
    data = out["data"]
    if not r.has("dataset_params"):
        r.warn("dataset_params", "missing; kptoolkit's defaults are kept (set data.root)")
        return
    root = r.get("dataset_params.root_dir", "str")
    if root is not None:
        data["root"] = root
    shape_key = "frame_shape" if r.has("dataset_params.frame_shape") else "image_shape"
    shape = r.get(f"dataset_params.{shape_key}", "ints")
    if shape is not None:
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise ConfigError(
                f"official key 'dataset_params.{shape_key}': expected [height, width, channels], "
                f"got {shape!r}"
            )
        data["frame_size"] = shape[0]
        if shape[1] != shape[0]:
            data["params"]["frame_width"] = shape[1]
            r.warn(
                f"dataset_params.{shape_key}",
                f"kptoolkit trains on square frames (data.frame_size {shape[0]}); the width "
                f"{shape[1]} is kept as data.params.frame_width for stacked images only",
            )
        if len(shape) == 3 and shape[2] != 3:
            r.warn(f"dataset_params.{shape_key}", f"kptoolkit reads RGB frames, not {shape[2]}")
    data["params"]["id_sampling"] = r.get("dataset_params.id_sampling", "bool", False)
    seed = r.get("dataset_params.random_seed", "int", 0)
    if seed != 0:
        r.warn(
            "dataset_params.random_seed",
            f"kptoolkit always splits a folder without train/ and test/ with seed 0, not {seed}",
        )
    if r.has("dataset_params.pairs_list"):
        r.warn(
            "dataset_params.pairs_list",
            "animation pairs are not part of a kptoolkit config; give the CSV to the animation "
            "step (kptoolkit.data.datasets.AnimationPairs)",
        )
    else:
        r.get("dataset_params.pairs_list", "str")
    data["augmentation"] = _import_augmentation(r)


def _import_augmentation(r: _Reader) -> dict[str, Any]:
    base = "dataset_params.augmentation_params"
    aug: dict[str, Any] = {
        "horizontal_flip": r.get(f"{base}.flip_param.horizontal_flip", "bool", False),
        "time_flip": r.get(f"{base}.flip_param.time_flip", "bool", False),
        "jitter": 0.0,
    }
    strengths = {
        key: r.get(f"{base}.jitter_param.{key}", "number", 0.0)
        for key in ("brightness", "contrast", "saturation", "hue")
    }
    aug["jitter"] = float(max(strengths.values()))
    if len(set(strengths.values())) > 1:
        r.warn(
            f"{base}.jitter_param",
            f"kptoolkit uses one strength for brightness, contrast, saturation and hue "
            f"(data.augmentation.jitter); {strengths} became {aug['jitter']}",
        )
    if r.has(f"{base}.rotation_param"):
        key = f"{base}.rotation_param.degrees"
        degrees = r.get(key, "numbers" if isinstance(r.raw(key), list) else "number", 0.0)
        if isinstance(degrees, list):
            if len(degrees) != 2:
                raise ConfigError(
                    f"official key '{key}': expected a number or [min, max], got {degrees!r}"
                )
            largest = max(abs(d) for d in degrees)
            if degrees[0] != -degrees[1]:
                r.warn(
                    key,
                    f"kptoolkit rotates symmetrically (+-data.augmentation.rotation); {degrees} "
                    f"became +-{largest}",
                )
            degrees = largest
        aug["rotation"] = float(abs(degrees))
    if r.has(f"{base}.resize_param"):
        ratio = r.get(f"{base}.resize_param.ratio", "numbers", [3 / 4, 4 / 3])
        if len(ratio) != 2:
            raise ConfigError(
                f"official key '{base}.resize_param.ratio': expected [min, max], got {ratio!r}"
            )
        aug["scale_min"], aug["scale_max"] = float(min(ratio)), float(max(ratio))
        r.warn_if_present(
            f"{base}.resize_param.interpolation",
            "kptoolkit resizes and rotates in one bilinear affine warp (no interpolation option)",
        )
    if r.has(f"{base}.crop_param"):
        key = f"{base}.crop_param.size"
        size = r.get(key, "ints" if isinstance(r.raw(key), list) else "int", None)
        if isinstance(size, list) and len(size) != 2:
            raise ConfigError(f"official key '{key}': expected a size or [h, w], got {size!r}")
        if size is not None:
            aug["crop"] = [size, size] if isinstance(size, int) else size
    return aug


def _import_detector(r: _Reader, out: dict[str, Any], family: str) -> None:
    kp, params = out["keypoints"], out["component_params"]
    common, det = "model_params.common_params", "model_params.kp_detector_params"
    channels = r.get(f"{common}.num_channels", "int", 3)
    if channels != 3:
        r.warn(f"{common}.num_channels", f"kptoolkit works on RGB frames, not {channels} channels")
    if family == PERTURBED_MASK:
        return
    kp["num_kp"] = r.get(f"{common}.num_kp", "int", kp["num_kp"])
    kp["estimate_jacobian"] = r.get(f"{common}.estimate_jacobian", "bool", False)
    params["fomm"]["num_kp"] = kp["num_kp"]
    params["fomm"]["estimate_jacobian"] = kp["estimate_jacobian"]
    scale = r.get(f"{det}.scale_factor", "number", None)
    common_scale = r.get(f"{common}.scale_factor", "number", None)
    kp["scale_factor"] = scale if scale is not None else (common_scale or 1.0)
    if common_scale is not None:  # the keypoint-mask generator's resolution too
        params["two_stage"]["scale_factor"] = common_scale
    kp["temperature"] = r.get(f"{det}.temperature", "number", kp["temperature"])
    kp["block_expansion"] = r.get(f"{det}.block_expansion", "int", kp["block_expansion"])
    kp["max_features"] = r.get(f"{det}.max_features", "int", kp["max_features"])
    kp["num_blocks"] = r.get(f"{det}.num_blocks", "int", kp["num_blocks"])
    if r.get(f"{det}.single_jacobian_map", "bool", False):
        r.warn(
            f"{det}.single_jacobian_map",
            "the keypoints section has no single_jacobian_map option (KeypointDetector has one)",
        )
    pad = r.get(f"{det}.pad", "int", 0)
    if pad != 0:
        r.warn(f"{det}.pad", f"kptoolkit's detector convolutions have no padding (not {pad})")
    if family == KEYPOINT_MASK:
        softmax_mask = r.get(f"{det}.softmax_mask", "bool", False)
        after_softmax = r.get(f"{det}.kp_after_softmax", "bool", False)
        if softmax_mask:
            out["masker"]["name"] = "softmax_sum"
        elif after_softmax:
            out["masker"]["name"] = "gaussian_circles"
        else:
            out["masker"]["name"] = "heatmap_sum"
        out["generator"]["name"] = "two_stage"
        out["notes"].append(
            "keypoints.checkpoint: the official code takes the frozen detector from "
            "--checkpoint_with_kp; set keypoints.checkpoint (e.g. taichi-cpk.pth.tar)"
        )


def _import_fomm_generator(r: _Reader, out: dict[str, Any]) -> None:
    gen, dense = (
        "model_params.generator_params",
        "model_params.generator_params.dense_motion_params",
    )
    fomm = out["component_params"]["fomm"]
    for key in ("block_expansion", "max_features", "num_down_blocks", "num_bottleneck_blocks"):
        fomm[key] = r.get(f"{gen}.{key}", "int", fomm[key])
    fomm["estimate_occlusion_map"] = r.get(f"{gen}.estimate_occlusion_map", "bool", False)
    fomm["dense_block_expansion"] = r.get(
        f"{dense}.block_expansion", "int", fomm["dense_block_expansion"]
    )
    fomm["dense_max_features"] = r.get(f"{dense}.max_features", "int", fomm["dense_max_features"])
    fomm["dense_num_blocks"] = r.get(f"{dense}.num_blocks", "int", fomm["dense_num_blocks"])
    fomm["scale_factor"] = r.get(f"{dense}.scale_factor", "number", 1.0)
    fomm["kp_variance"] = r.get(f"{dense}.kp_variance", "number", fomm["kp_variance"])
    out["generator"]["name"] = "fomm"
    out["masker"]["name"] = ""  # its natural masker: fomm_keypoints


def _import_two_stage(r: _Reader, out: dict[str, Any]) -> None:
    """The keypoint-mask / perturbed-mask generator: FOMM-style widths -> two_stage params."""
    gen = "model_params.generator_params"
    two = out["component_params"]["two_stage"]
    expansion = r.get(f"{gen}.block_expansion", "int", 64)
    max_features = r.get(f"{gen}.max_features", "int", 512)
    num_down = r.get(f"{gen}.num_down_blocks", "int", 2)
    two["features"] = min(max_features, expansion * 2**num_down)
    two["num_residual_blocks"] = r.get(f"{gen}.num_bottleneck_blocks", "int", 6)
    if two["features"] != 256:
        r.warn(
            f"{gen}.block_expansion",
            f"min(max_features, block_expansion * 2**num_down_blocks) = {two['features']}, but the "
            "official generator's first block always has 256 channels (it only runs with 256)",
        )
    ups = round(math.log2(1 / two["scale_factor"])) if two["scale_factor"] > 0 else -1
    if ups != num_down:
        r.warn(
            f"{gen}.num_down_blocks",
            f"kptoolkit derives the stage-1 up blocks from scale_factor {two['scale_factor']} "
            f"({ups}); the official generator's {num_down} do not match it",
        )
    r.warn_if_present(
        f"{gen}.estimate_occlusion_map", "unused by the two-stage generator (FOMM only)"
    )
    r.warn_if_present(f"{gen}.dense_motion_params", "unused by the two-stage generator (FOMM only)")


def _import_perturbed_masker(r: _Reader, out: dict[str, Any]) -> None:
    mask = "model_params.mask_generator_params"
    pm = out["component_params"]["perturbed_mask"]
    pm["temperature"] = r.get(f"{mask}.temperature", "number", pm["temperature"])
    pm["block_expansion"] = r.get(f"{mask}.block_expansion", "int", pm["block_expansion"])
    pm["max_features"] = r.get(f"{mask}.max_features", "int", pm["max_features"])
    pm["num_blocks"] = r.get(f"{mask}.num_blocks", "int", pm["num_blocks"])
    pm["scale_factor"] = r.get(f"{mask}.scale_factor", "number", 1.0)
    out["component_params"]["two_stage"]["scale_factor"] = pm["scale_factor"]
    threshold = r.get("model_params.generator_params.th", "number", None)
    if threshold is not None:
        pm["threshold"] = threshold / 255
    out["masker"]["name"] = "perturbed_mask"
    out["generator"]["name"] = "two_stage"


def _import_discriminator(r: _Reader, out: dict[str, Any], num_kp: int) -> None:
    disc = "model_params.discriminator_params"
    if not r.has(disc):
        return
    found: dict[str, Any] = {}
    scales = r.get(f"{disc}.scales", "numbers", None)
    if scales is not None:
        found["scales"] = scales
    for key in ("block_expansion", "max_features", "num_blocks"):
        value = r.get(f"{disc}.{key}", "int", None)
        if value is not None:
            found[key] = value
    variance = r.get(f"{disc}.kp_variance", "number", None)
    if variance is not None:
        found["kp_variance"] = variance
    if r.get(f"{disc}.use_kp", "bool", False):
        found["use_kp"] = True
        found["num_kp"] = num_kp
    if r.get(f"{disc}.sn", "bool", False):
        r.warn(f"{disc}.sn", "kptoolkit's discriminator has no spectral normalisation")
    out["discriminator"] = found


def _import_train(r: _Reader, out: dict[str, Any], family: str) -> None:
    t = "train_params"
    train = out["train"]
    if not r.has(t):
        r.warn(t, "missing; kptoolkit's published training settings are kept")
        return
    train["epochs"] = r.get(f"{t}.num_epochs", "int", train["epochs"])
    train["repeats"] = r.get(f"{t}.num_repeats", "int", 1)
    train["milestones"] = r.get(f"{t}.epoch_milestones", "ints", [])
    train["batch_size"] = r.get(f"{t}.batch_size", "int", train["batch_size"])
    train["lr"] = float(r.get(f"{t}.lr_generator", "number", train["lr"]))
    others = {
        FOMM: {"lr_kp_detector": "the detector", "lr_discriminator": "the discriminator"},
        KEYPOINT_MASK: {},
        PERTURBED_MASK: {"lr_mask_generator": "the mask generator"},
    }[family]
    for key, what in others.items():
        lr = r.get(f"{t}.{key}", "number", None)
        if lr is None or lr == train["lr"]:
            continue
        if key == "lr_discriminator" and not _gan_on(r):
            continue  # reported with the other unused adversarial settings
        r.warn(
            f"{t}.{key}",
            f"kptoolkit trains every network with train.lr ({train['lr']}), not {lr} for {what}",
        )
    if family == KEYPOINT_MASK:
        for key in ("lr_kp_detector", "lr_discriminator"):
            r.warn_if_present(
                f"{t}.{key}",
                "unused: the keypoint-mask code optimises the generator only (kptoolkit freezes "
                "the detector)",
            )
    if family == PERTURBED_MASK:
        r.warn_if_present(f"{t}.lr_kp_detector", "unused by the perturbed-mask code")
        r.warn_if_present(f"{t}.lr_discriminator", "unused by the perturbed-mask code")
    freq = r.get(f"{t}.checkpoint_freq", "int", None)
    if freq is not None:
        r.warn(
            f"{t}.checkpoint_freq",
            f"every {freq} epoch(s) in the official code; kptoolkit's train.checkpoint_every "
            f"counts steps, so it keeps {train['checkpoint_every']} (set it by hand)",
        )
    _import_losses(r, out, family)


def _gan_on(r: _Reader) -> bool:
    weight = number_or_text(r.raw("train_params.loss_weights.generator_gan"))
    return _is_number(weight) and weight != 0


def _import_losses(r: _Reader, out: dict[str, Any], family: str) -> None:
    w = "train_params.loss_weights"
    scales = [float(s) for s in r.get("train_params.scales", "numbers", [1.0])]
    layers = [float(x) for x in r.get(f"{w}.perceptual", "numbers", [0.0] * VGG19_LAYERS)]
    if len(layers) > VGG19_LAYERS:
        raise ConfigError(
            f"official key '{w}.perceptual': at most {VGG19_LAYERS} weights (VGG19 relu1_1 .. "
            f"relu5_1), got {len(layers)}"
        )
    layers += [0.0] * (VGG19_LAYERS - len(layers))  # the official loop uses the first N layers
    perceptual_on = any(layers)
    if perceptual_on:
        out["losses"] = [_perceptual("prediction", scales, layers)]
        out["notes"].append(
            "losses.0.params.weights (and generator.losses.perceptual_pyramid.params.weights "
            "with the two-stage generator): set to a local torchvision VGG19 file "
            "(vgg19-dcbb9e9d.pth); kptoolkit never downloads it"
        )
    # the two-stage generators put the perceptual term on both stages
    out["component_losses"]["two_stage"] = (
        [_perceptual("low_res_prediction", scales, layers)] if perceptual_on else []
    )
    unused_family = {KEYPOINT_MASK: "keypoint-mask", PERTURBED_MASK: "perturbed-mask"}.get(family)

    gan = r.get(f"{w}.generator_gan", "number", 0)
    feature = r.get(f"{w}.feature_matching", "numbers", None)
    if unused_family:
        for key in ("generator_gan", "discriminator_gan", "feature_matching"):
            r.warn_if_present(f"{w}.{key}", f"unused: the {unused_family} code has no GAN")
    elif gan:
        extra = [{"name": "gan", "weight": float(gan), "outputs": ["prediction"], "params": {}}]
        if feature is not None and any(feature):
            extra.append(
                {
                    "name": "feature_matching",
                    "weight": 1.0,
                    "outputs": ["prediction"],
                    "params": {"layer_weights": [float(x) for x in feature]},
                }
            )
        out["component_losses"]["fomm"].extend(extra)
        d_weight = r.get(f"{w}.discriminator_gan", "number", 1)
        if d_weight != 1:
            r.warn(
                f"{w}.discriminator_gan",
                f"kptoolkit weights the discriminator's LSGAN objective by 1, not {d_weight}",
            )
    else:
        for key in ("discriminator_gan", "feature_matching", "lr_discriminator"):
            section = "train_params" if key.startswith("lr_") else w
            r.warn_if_present(
                f"{section}.{key}",
                "unused: generator_gan is 0 (no adversarial training, as in the official code)",
            )

    tp = "train_params.transform_params"
    if unused_family:
        for key in ("equivariance_value", "equivariance_jacobian"):
            r.warn_if_present(
                f"{w}.{key}",
                f"unused: the {unused_family} code trains no detector (a FOMM row keeps "
                "FOMM's published equivariance, its paper preset)",
            )
        r.warn_if_present(tp, f"unused by the {unused_family} code")
        return
    value = r.get(f"{w}.equivariance_value", "number", 0)
    jacobian = r.get(f"{w}.equivariance_jacobian", "number", 0)
    equivariance = [
        loss for loss in out["component_losses"]["fomm"] if loss["name"] != "equivariance"
    ]
    if value or jacobian:
        params = {"value_weight": float(value), "jacobian_weight": float(jacobian)}
        params["sigma_affine"] = float(r.get(f"{tp}.sigma_affine", "number", 0.05))
        params["sigma_tps"] = float(r.get(f"{tp}.sigma_tps", "number", 0.005))
        params["points_tps"] = r.get(f"{tp}.points_tps", "int", 5)
        equivariance.insert(0, _equivariance(params))
    else:
        r.warn_if_present(tp, "unused: both equivariance weights are 0")
    out["component_losses"]["fomm"] = equivariance


def _import_eval(r: _Reader, out: dict[str, Any]) -> None:
    rec, anim = "reconstruction_params", "animate_params"
    num_videos = r.get(f"{rec}.num_videos", "int", None)
    if num_videos is not None:
        out["eval"]["max_videos"] = num_videos
    formats = {key: r.get(f"{key}.format", "str", None) for key in (rec, anim)}
    for key, fmt in formats.items():
        if fmt is None or fmt == ".mp4":
            continue
        r.warn(
            f"{key}.format",
            f"kptoolkit writes lossless PNG frames and (eval.save_mp4) MP4 videos, not {fmt!r}",
        )
    if formats[rec] not in (None, ".mp4"):
        out["eval"]["save_mp4"] = False
    r.warn_if_present(
        f"{anim}.num_pairs",
        "not a kptoolkit config key (the animation step chooses its pairs)",
    )
    norm = f"{anim}.normalization_params"
    relative = r.get(f"{norm}.use_relative_movement", "bool", None)
    if relative is not None:
        r.warn(
            f"{norm}.use_relative_movement",
            f"an animation option, not a config key: use `kptoolkit animate "
            f"{'--relative' if relative else '(without --relative)'}`",
        )
    if r.get(f"{norm}.adapt_movement_scale", "bool", None) is not None:
        r.warn(
            f"{norm}.adapt_movement_scale",
            "an animation option, not a config key: `kptoolkit animate --relative --adapt-scale`",
        )
    if r.get(f"{norm}.use_relative_jacobian", "bool", None) is not None:
        r.warn(
            f"{norm}.use_relative_jacobian",
            "an animation option, not a config key: part of `kptoolkit animate --relative`",
        )
    r.warn_if_present(
        "visualizer_params",
        "visualisation settings (kp_size, draw_border, colormap) are not configurable",
    )


def import_official_config(data: Mapping[str, Any], name: str | None = None) -> ImportResult:
    """Convert an official FOMM / keypoint-mask / perturbed-mask config (parsed YAML).

    Returns the kptoolkit config, a warning per official key that it cannot represent (never
    dropped silently), the detected family and the keys that identified it, and notes about
    what to set before training (weights files). Raises `ConfigError` for input that is not
    such a config or has values of the wrong type.
    """
    family, evidence = _detect(data)
    r = _Reader(data)
    out = _base(name or f"imported-{family.replace('_', '-')}")
    out["notes"] = []
    _import_dataset(r, out)
    _import_detector(r, out, family)
    if family == FOMM:
        _import_fomm_generator(r, out)
    else:
        if family == PERTURBED_MASK:
            _import_perturbed_masker(r, out)
        _import_two_stage(r, out)
    _import_discriminator(r, out, out["keypoints"]["num_kp"])
    _import_train(r, out, family)
    _import_eval(r, out)
    if family == FOMM:
        out["notes"].append(
            "keypoints.checkpoint: null trains the detector from scratch, as the official code "
            "does; set it to start from a released checkpoint"
        )
    notes = out.pop("notes")
    _finish_components(out)
    config = config_from_dict(out)
    from kptoolkit.data.augment import augmentation_from_dict

    augmentation_from_dict(config.data.augmentation)  # value errors name the key
    return ImportResult(config, [*r.warnings, *r.leftovers()], family, evidence, notes)


def read_official_file(path: str | Path) -> Any:
    """Parse an official YAML file with `yaml.safe_load`; errors are one-line `ConfigError`s."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: empty file, not an official FOMM-family config")
    return data


def import_official_file(path: str | Path) -> ImportResult:
    """Read and convert an official config file; the experiment is named after the file."""
    path = Path(path)
    try:
        return import_official_config(read_official_file(path), name=path.stem)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if str(path) in message else f"{path}: {message}") from None


def render_imported(result: ImportResult, source: str) -> str:
    """The imported config as kptoolkit YAML, headed by comments with the warnings and notes."""
    lines = [
        f"# Imported from {source} by `kptoolkit config import`",
        f"# (detected: {FAMILY_LABELS[result.family]}, from {result.evidence}).",
    ]
    if result.notes:
        lines.append("# To set before training:")
        lines.extend(f"#   - {note}" for note in result.notes)
    if result.warnings:
        lines.append("# Not represented in kptoolkit (also printed as warnings):")
        lines.extend(f"#   - {warning}" for warning in result.warnings)
    return "\n".join(lines) + "\n" + dump_config(result.config)
