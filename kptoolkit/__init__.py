"""kptoolkit: image animation with keypoint masks, as a toolkit of swappable plugins.

Importing the package is cheap: registries read entry-point metadata only, and components
(and torch) are imported when first used.
"""

from kptoolkit.errors import (
    CompatibilityError,
    ConfigError,
    DuplicateComponentError,
    KptoolkitError,
    ParameterError,
    PluginLoadError,
    UnknownComponentError,
)
from kptoolkit.registry import (
    DATASETS,
    EVALUATORS,
    GENERATORS,
    LOSSES,
    MASKERS,
    METRICS,
    ComponentInfo,
    Registry,
    create_dataset,
    create_evaluator,
    create_generator,
    create_loss,
    create_masker,
    create_metric,
    get_registry,
    list_components,
)

__version__ = "0.1.0"

__all__ = [
    "DATASETS",
    "EVALUATORS",
    "GENERATORS",
    "LOSSES",
    "MASKERS",
    "METRICS",
    "CompatibilityError",
    "ComponentInfo",
    "ConfigError",
    "DuplicateComponentError",
    "KptoolkitError",
    "ParameterError",
    "PluginLoadError",
    "Registry",
    "UnknownComponentError",
    "__version__",
    "create_dataset",
    "create_evaluator",
    "create_generator",
    "create_loss",
    "create_masker",
    "create_metric",
    "get_registry",
    "list_components",
]
