"""kptoolkit: image animation with keypoint masks, as a toolkit of swappable plugins.

Importing the package is cheap: registries read entry-point metadata only, and components
(and torch) are imported when first used.
"""

from typing import Any

from kptoolkit.errors import (
    CompatibilityError,
    ConfigError,
    DuplicateComponentError,
    KptoolkitError,
    ParameterError,
    PluginLoadError,
    UnknownComponentError,
)
from kptoolkit.registry.registries import (
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
from kptoolkit.utils import moved as _moved

__version__ = "0.1.0"

_moved.install()


def inference_model(
    model: Any, precision: str = "auto", channels_last: bool | str = "auto", compile: bool = False
) -> Any:
    """`model` (a generator, masker or detector) ready for inference, called like the original:
    eval mode, autocast at `precision` ("auto": bf16 where the device runs it natively, else
    fp32 on a CPU and fp16 on a GPU; "fp32" exact, "bf16", or "fp16" on CUDA), the
    channels_last layout where it is faster (or as `channels_last` says), float32 outputs,
    optionally `torch.compile`d (`kptoolkit.runtime.precision.InferenceModule`)."""
    from kptoolkit.runtime.precision import inference_model as prepare

    return prepare(model, precision, channels_last, compile)


# the notebook API (kptoolkit/api.py), imported on first use so that `import kptoolkit` stays cheap
NOTEBOOK_API = ("build", "load_run", "save_run", "animate_frames", "reconstruct_video")


def __getattr__(name: str) -> Any:
    if name in NOTEBOOK_API:
        from kptoolkit import api

        return getattr(api, name)
    raise AttributeError(f"module 'kptoolkit' has no attribute {name!r}")


__all__ = [
    *NOTEBOOK_API,
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
    "inference_model",
    "list_components",
]
