"""Convert official FOMM-family YAML configs into kptoolkit experiment configs.

The families (`fomm`, `keypoint_mask`, `perturbed_mask`) and the reading of an official file are
in `kptoolkit.config.official.configs`; the data side of the mapping is in
`kptoolkit.config.official.data`, the
training side (train_params, loss weights, reconstruction and animation settings) in
`kptoolkit.config.official.training`. This module maps the models (detector, masker, generator,
discriminator) and holds the public API: `import_official_config`, `import_official_file`,
`render_imported`.

Every parameter kptoolkit can represent is mapped; every other key becomes a warning naming its
official dotted path, so nothing is dropped silently. Files are read with `yaml.safe_load` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from kptoolkit.config.official.configs import (
    FAMILY_LABELS,
    FOMM,
    KEYPOINT_MASK,
    MONKEY_NET,
    PERTURBED_MASK,
    OfficialReader,
    detect_family,
    identify_family,
    read_official_file,
)
from kptoolkit.config.official.data import import_dataset
from kptoolkit.config.official.models import (
    import_detector,
    import_discriminator,
    import_fomm_generator,
    import_monkey_net_generator,
    import_perturbed_masker,
    import_two_stage,
    monkey_net_frame_size,
)
from kptoolkit.config.official.training import (
    MASK_CORRECTION_WEIGHT,
    VGG19_LAYERS,
    equivariance_term,
    import_eval,
    import_train,
    mask_correction_term,
)
from kptoolkit.config.schema import (
    DataConfig,
    ExperimentConfig,
    KeypointConfig,
    TrainConfig,
    config_from_dict,
    dump_config,
    unstructure,
)
from kptoolkit.errors import ConfigError
from kptoolkit.experiment.components import detector_params
from kptoolkit.registry.presets import PAPER, constructor_defaults, find_preset
from kptoolkit.registry.registries import get_registry

__all__ = [
    "FAMILY_LABELS",
    "FOMM",
    "KEYPOINT_MASK",
    "MASK_CORRECTION_WEIGHT",
    "MONKEY_NET",
    "OFFICIAL_FRAME_SIZE",
    "PERTURBED_MASK",
    "VGG19_LAYERS",
    "ImportResult",
    "detect_family",
    "import_official_config",
    "import_official_file",
    "paper_losses",
    "paper_params",
    "read_official_file",
    "render_imported",
]

OFFICIAL_FRAME_SIZE = 256


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
_IMPORTED = {
    "two_stage": "generators",
    "fomm": "generators",
    "perturbed_mask": "maskers",
    "monkey_net": "generators",
    "monkey_net_keypoints": "maskers",
}


def paper_params(kind: str, name: str) -> dict[str, Any]:
    """A component's published parameters: its constructor's defaults under its `paper`
    preset (kptoolkit keeps the published widths there, not in copies)."""
    factory = get_registry(kind).get(name)
    return {**constructor_defaults(factory), **find_preset(factory, PAPER, name).params}


def paper_losses(kind: str, name: str) -> list[dict[str, Any]]:
    """The loss terms a component brings under its `paper` preset, as plain data."""
    factory = get_registry(kind).get(name)
    return [dict(term) for term in find_preset(factory, PAPER, name).losses]


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
        "fomm": [equivariance_term({})],
        "perturbed_mask": [mask_correction_term()],
        "monkey_net": [],
        "monkey_net_keypoints": [],
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


def import_official_config(data: Mapping[str, Any], name: str | None = None) -> ImportResult:
    """Convert an official FOMM / keypoint-mask / perturbed-mask config (parsed YAML).

    Returns the kptoolkit config, a warning per official key that it cannot represent (never
    dropped silently), the detected family and the keys that identified it, and notes about
    what to set before training (weights files). Raises `ConfigError` for input that is not
    such a config or has values of the wrong type.
    """
    family, evidence = identify_family(data)
    r = OfficialReader(data)
    out = _base(name or f"imported-{family.replace('_', '-')}")
    out["notes"] = []
    import_dataset(r, out)
    if family == MONKEY_NET:
        monkey_net_frame_size(r, out)
    import_detector(r, out, family)
    if family == FOMM:
        import_fomm_generator(r, out)
    elif family == MONKEY_NET:
        import_monkey_net_generator(r, out)
    else:
        if family == PERTURBED_MASK:
            import_perturbed_masker(r, out)
        import_two_stage(r, out)
    if family != MONKEY_NET:
        import_discriminator(r, out, out["keypoints"]["num_kp"])
    import_train(r, out, family)
    import_eval(r, out)
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
