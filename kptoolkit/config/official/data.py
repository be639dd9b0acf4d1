"""Map the data side of an official FOMM-family config: dataset_params and its augmentation.

The importers fill a kptoolkit config held as plain data (`out`); every official key they cannot
represent becomes a warning on the `OfficialReader`.
"""

from __future__ import annotations

from typing import Any

from kptoolkit.config.official.configs import OfficialReader
from kptoolkit.errors import ConfigError


def import_dataset(r: OfficialReader, out: dict[str, Any]) -> None:
    """Map dataset_params (root, frame shape, sampling, augmentation) into `out['data']`."""
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


def _import_augmentation(r: OfficialReader) -> dict[str, Any]:
    """The data.augmentation section for dataset_params.augmentation_params."""
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
