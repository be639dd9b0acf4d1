"""Read official FOMM-family YAML configs and tell which official code wrote them.

Four families share the layout of First Order Motion Model's configs (`dataset_params`,
`model_params`, `train_params`, `reconstruction_params`, `animate_params`, `visualizer_params`):

- `fomm`: first-order-model itself (a `dense_motion_params` block in `generator_params`, a
  `discriminator_params` block, `transform_params` for the equivariance loss);
- `keypoint_mask`: "Image Animation with Keypoint Mask" (the mask type in `kp_detector_params`:
  `kp_after_softmax`, `softmax_mask`; the mask resolution as `common_params.scale_factor`; a
  generator without dense motion; no discriminator, no equivariance);
- `perturbed_mask`: "Image Animation with Perturbed Masks" (`mask_generator_params`, the
  perturbation threshold `th` in `generator_params`, `lr_mask_generator`);
- `monkey_net`: Monkey-Net, "Animating Arbitrary Objects via Deep Motion Transfer" (Gaussian
  keypoints with `common_params.kp_variance`, a generator with `num_refinement_blocks` and
  `kp_embedding_params`, the motion module's `mask_embedding_params`).

`OfficialReader` reads values by dotted path, checks their types and remembers every key it used,
so that the importers can warn about the rest. Files are read with `yaml.safe_load` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kptoolkit.config.schema import number_or_text
from kptoolkit.errors import ConfigError

FOMM = "fomm"
KEYPOINT_MASK = "keypoint_mask"
PERTURBED_MASK = "perturbed_mask"
MONKEY_NET = "monkey_net"
FAMILY_LABELS = {
    FOMM: "FOMM (first-order-model)",
    KEYPOINT_MASK: "keypoint mask (animation-with-keypoint-mask)",
    PERTURBED_MASK: "perturbed mask (Image-Animation-with-Perturbed-Masks)",
    MONKEY_NET: "Monkey-Net (monkey-net)",
}
_MISSING = object()


# -- reading the official file ----------------------------------------------------------------


def is_number(value: Any) -> bool:
    """Whether `value` is an int or a float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    """Whether `value` is an int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


_CHECKS = {
    "int": (is_int, "an integer"),
    "number": (is_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "numbers": (lambda v: isinstance(v, list) and all(map(is_number, v)), "a list of numbers"),
    "ints": (lambda v: isinstance(v, list) and all(map(is_int, v)), "a list of integers"),
    "mapping": (lambda v: isinstance(v, Mapping), "a mapping"),
}


class OfficialReader:
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


def identify_family(data: Any) -> tuple[str, str]:
    """The family of an official config and the keys that identified it; `ConfigError` if none."""
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
    dense = generator.get("dense_motion_params")
    monkey = [f"common_params.{k}" for k in ("kp_variance",) if k in common]
    monkey += [
        f"generator_params.{k}"
        for k in ("num_refinement_blocks", "kp_embedding_params")
        if k in generator
    ]
    if isinstance(dense, Mapping) and "mask_embedding_params" in dense:
        monkey.append("generator_params.dense_motion_params.mask_embedding_params")
    if monkey:
        return MONKEY_NET, ", ".join(monkey)
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
    """Which official code a config belongs to: 'fomm', 'keypoint_mask', 'perturbed_mask' or
    'monkey_net'."""
    return identify_family(data)[0]


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
