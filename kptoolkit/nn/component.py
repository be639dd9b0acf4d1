"""The optional hooks of kptoolkit's components, declared once with their defaults.

Every network a run builds (maskers, generators, the keypoint detector, the discriminator)
derives from `Component`; maskers and generators add hooks of their own on their base classes
(`kptoolkit.maskers.base.Masker`, `kptoolkit.generators.base.Generator`), as do losses
(`kptoolkit.losses.base.Loss`) and metrics (`kptoolkit.metrics.base.Metric`). Each base class
names its hooks in `HOOKS`, and the engine reads every hook through `hook(component, name,
base)`, so that a component which does not define one gets the base class's default, and a
hook that no base declares is an error rather than a silent `None`.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

if TYPE_CHECKING:
    from kptoolkit.registry.presets import Preset


def hook(component: Any, name: str, base: type) -> Any:
    """The hook `name` of `component` (a class or an instance): its own value, else the
    default that `base` declares. `name` must be one of `base.HOOKS`."""
    declared = getattr(base, "HOOKS", ())
    if name not in declared:
        raise AttributeError(f"{base.__name__} declares no hook '{name}' (its hooks: {declared})")
    if hasattr(component, name):
        return getattr(component, name)
    default = getattr(base, name)
    if inspect.isfunction(default) and not isinstance(component, type):
        return types.MethodType(default, component)  # the base's method, bound to `component`
    return default


class Component(nn.Module):
    """Base of every network a run builds; its hooks (all optional):"""

    #: the hooks this class declares (subclasses' bases extend the tuple)
    HOOKS: ClassVar[tuple[str, ...]] = (
        "presets",
        "official_entries",
        "adapt_state_dict",
        "set_training_progress",
    )

    #: named widths and loss terms (paper, cpu64, micro, ...) a config chooses from
    presets: ClassVar[Mapping[str, Preset]] = {}
    #: {state-dict prefix: top-level entry} of an official checkpoint this network is read
    #: from, when it is assembled from several entries (None: the role's usual entry)
    official_entries: ClassVar[Mapping[str, str] | None] = None

    def adapt_state_dict(self, state: Mapping[str, Any]) -> Mapping[str, Any]:
        """A published state dict in this network's layout, before the strict load (default:
        unchanged)."""
        return state

    def set_training_progress(self, step: int, epoch: int) -> None:
        """Told the step and epoch before each training step (for schedules inside a model;
        default: ignored)."""
