"""Experiment configs: the schema (`schema`), its YAML and `--set` handling, older layouts
(`legacy`) and the importers of the official FOMM-family files (`importing`, `official/`).

`from kptoolkit.config import ExperimentConfig` (and every public name of `schema`) works.
"""

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    schema = importlib.import_module("kptoolkit.config.schema")
    try:
        return getattr(schema, name)
    except AttributeError:
        raise AttributeError(f"module 'kptoolkit.config' has no attribute '{name}'") from None
