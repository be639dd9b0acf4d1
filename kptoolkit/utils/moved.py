"""Module paths of the flat layout before 0.2, still importable: each old name is an alias of
the module it moved to, with a DeprecationWarning naming the new path."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED: dict[str, str] = {
    "kptoolkit.introspect": "kptoolkit.registry.introspect",
    "kptoolkit.presets": "kptoolkit.registry.presets",
    "kptoolkit.structuring": "kptoolkit.config.structuring",
    "kptoolkit.config_legacy": "kptoolkit.config.legacy",
    "kptoolkit.config_import": "kptoolkit.config.importing",
    "kptoolkit.official_config": "kptoolkit.config.official.configs",
    "kptoolkit.import_data": "kptoolkit.config.official.data",
    "kptoolkit.import_training": "kptoolkit.config.official.training",
    "kptoolkit.components": "kptoolkit.experiment.components",
    "kptoolkit.resolve": "kptoolkit.experiment.resolve",
    "kptoolkit.engine.experiment": "kptoolkit.experiment.build",
    "kptoolkit.engine.hardware": "kptoolkit.runtime.hardware",
    "kptoolkit.engine.precision": "kptoolkit.runtime.precision",
    "kptoolkit.commands": "kptoolkit.cli",
    "kptoolkit.atomic": "kptoolkit.utils.atomic",
    "kptoolkit.folder_lock": "kptoolkit.utils.locks",
    "kptoolkit.paths": "kptoolkit.utils.paths",
    "kptoolkit.checkpoint_io": "kptoolkit.utils.checkpoint_io",
    "kptoolkit.discriminator": "kptoolkit.generators.discriminator",
    "kptoolkit.data.puppet_model": "kptoolkit.data.puppets.model",
    "kptoolkit.data.puppet_render": "kptoolkit.data.puppets.render",
    "kptoolkit.data.puppet_style": "kptoolkit.data.puppets.style",
    "kptoolkit.data.synthetic": "kptoolkit.data.puppets.writer",
    **{
        f"kptoolkit.bench.{name}": f"kptoolkit.bench.stages.{name}"
        for name in (
            "data",
            "detector_prior",
            "evaluation",
            "training",
            "reconstruction",
            "scoring",
            "timing",
            "reference",
            "stage_cache",
            "parallel",
            "figures",
        )
    },
    "kptoolkit.bench.results": "kptoolkit.bench.report.results",
    "kptoolkit.bench.rows": "kptoolkit.bench.report.rows",
    "kptoolkit.bench.published": "kptoolkit.bench.report.published",
}


def new_name(old: str) -> str | None:
    """The module an old dotted name now lives in (also for `kptoolkit.commands.<command>`)."""
    if old in MOVED:
        return MOVED[old]
    if old.startswith("kptoolkit.commands."):
        return "kptoolkit.cli." + old.removeprefix("kptoolkit.commands.")
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.target}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module is the one at its new path."""


class MovedModules(importlib.abc.MetaPathFinder):
    """Answers imports of the old module paths with the modules at their new paths."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        target_name = new_name(fullname)
        if target_name is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(target_name))


def install() -> None:
    """Add the finder once (importing kptoolkit calls this)."""
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
