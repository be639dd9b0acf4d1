"""The package's shape: a small root, layers that import only downwards, no import cycle, short
modules, one resolution per command, and every component hook declared on a base class."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import kptoolkit
from kptoolkit.evaluators.base import Evaluator
from kptoolkit.generators.base import Generator
from kptoolkit.losses.base import Loss
from kptoolkit.maskers.base import Masker
from kptoolkit.metrics.base import Metric
from kptoolkit.nn.component import Component
from kptoolkit.registry.registries import GENERATORS, MASKERS

PACKAGE = Path(kptoolkit.__file__).parent
ROOT_MODULES = {"__init__", "__main__", "api", "errors", "structure"}
LONGEST_MODULE = 400

# the layers, lowest first: a module imports only from its own layer and those below
# (the longest matching prefix names a module's layer)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "structure"),
    ("nn",),
    ("utils",),
    ("registry",),
    ("config",),
    ("runtime",),
    ("keypoints", "maskers", "generators", "losses", "metrics", "evaluators", "data"),
    ("experiment",),
    ("config.importing", "config.official"),  # read official files into configs of components
    ("engine",),
    ("launchers",),  # where jobs run: this machine's processes, SLURM, Ray
    ("bench",),
    ("cli", "api", "__init__", "__main__"),
)
BASES = (Component, Masker, Generator, Loss, Metric, Evaluator)


def module_files() -> Iterator[tuple[str, Path]]:
    """(dotted name below kptoolkit, path) of every module of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        yield ".".join(parts), path


def layer_of(module: str) -> int:
    """The layer of a module (dotted, below kptoolkit)."""
    matches = [
        (len(prefix), index)
        for index, names in enumerate(LAYERS)
        for prefix in names
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"kptoolkit.{module} is in no layer: add its package to LAYERS"
    return max(matches)[1]


def runtime_imports(tree: ast.Module) -> Iterator[str]:
    """The kptoolkit modules a module imports (below kptoolkit), at any depth, except those
    only type checkers read (`if TYPE_CHECKING:`)."""
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for child in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kptoolkit."):
            yield node.module.removeprefix("kptoolkit.")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("kptoolkit."):
                    yield alias.name.removeprefix("kptoolkit.")


def test_the_package_root_holds_only_the_entry_modules():
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    assert modules <= ROOT_MODULES, sorted(modules - ROOT_MODULES)
    assert len(modules) <= 6


def test_no_module_is_longer_than_the_limit():
    long = {
        name: lines
        for name, path in module_files()
        if (lines := len(path.read_text().splitlines())) > LONGEST_MODULE
    }
    assert not long, long


def test_every_import_goes_down_the_layers():
    upward = [
        f"kptoolkit.{name} imports kptoolkit.{target}"
        for name, path in module_files()
        for target in runtime_imports(ast.parse(path.read_text()))
        if layer_of(target) > layer_of(name)
    ]
    assert not upward, upward


def test_no_two_modules_import_each_other_at_import_time():
    graph: dict[str, set[str]] = {}
    for name, path in module_files():
        tree = ast.parse(path.read_text())
        top = ast.Module(body=[n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)])
        graph[name] = set(runtime_imports(top))
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            assert seen.get(target) != 1, " -> ".join([*path, node, target])
            if target not in seen:
                visit(target, [*path, node])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [])


def test_the_layer_check_sees_an_upward_import():
    tree = ast.parse("from kptoolkit.bench.runner import Bench\n")
    assert [layer_of(t) > layer_of("nn.blocks") for t in runtime_imports(tree)] == [True]


def calls_of(function: str) -> dict[str, int]:
    """How many calls of `function` each module of the package makes (by name)."""
    counts: dict[str, int] = {}
    for name, path in module_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                called = node.func
                called_name = getattr(called, "id", None) or getattr(called, "attr", None)
                if called_name == function:
                    counts[name] = counts.get(name, 0) + 1
    return counts


def test_experiments_are_resolved_in_one_place_and_planned_once_per_command():
    # the resolver runs only inside the planner (and `config validate`'s problem list)
    assert calls_of("resolve_experiment") == {"experiment.plan": 1}
    assert set(calls_of("_resolve")) == {"experiment.resolve"}
    # one plan per command: train, a bench row, a loaded run (reconstruct, animate, load_run),
    # the notebook API's build, and the short form for scripts
    assert calls_of("plan_experiment") == {
        "cli.train": 1,
        "bench.row_runs": 1,
        "engine.checkpoints": 1,
        "engine.trainer": 1,
        "api": 1,
    }
    # nothing builds models without a plan
    assert set(calls_of("build_models")) <= {"engine.trainer", "engine.checkpoints", "api"}


def test_a_plan_is_frozen_picklable_and_leaves_its_config_alone():
    import pickle

    import attrs

    from kptoolkit.config.schema import ExperimentConfig
    from kptoolkit.experiment.plan import plan_experiment

    config = ExperimentConfig(preset="micro")
    plan = plan_experiment(config, device="cpu")
    assert config == ExperimentConfig(preset="micro")  # the caller's config is not changed
    assert plan.config.masker.name == "heatmap_sum" and plan.config.train.precision != "auto"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        plan.numerics = None  # type: ignore[misc]
    again = pickle.loads(pickle.dumps(plan))
    assert again.config == plan.config and again.components == plan.components


# -- hooks --------------------------------------------------------------------------------------


def hook_reads() -> Iterator[tuple[str, str, str]]:
    """(module, hook name, base class name) of every `hook(x, "name", Base)` in the package."""
    for module, path in module_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "hook"
                and len(node.args) == 3
                and isinstance(node.args[1], ast.Constant)
            ):
                yield module, node.args[1].value, ast.unparse(node.args[2])


def all_hooks() -> set[str]:
    return {name for base in BASES for name in base.HOOKS}


def test_every_declared_hook_has_a_default_on_its_base_class():
    for base in BASES:
        for name in base.HOOKS:
            assert hasattr(base, name), f"{base.__name__} declares hook '{name}' without a default"


def test_every_hook_read_is_declared_on_the_base_it_names():
    bases = {base.__name__: base for base in BASES}
    reads = list(hook_reads())
    assert len(reads) > 20
    for module, name, base in reads:
        assert name in bases[base].HOOKS, f"kptoolkit.{module} reads undeclared hook {base}.{name}"


def test_no_hook_is_read_around_the_accessor():
    """A hook read with getattr(x, "name", default) would bring its own default back."""
    names = all_hooks()
    for module, path in module_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) in ("getattr", "hasattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
            ):
                assert node.args[1].value not in names, (
                    f"kptoolkit.{module} reads hook '{node.args[1].value}' with "
                    f"{node.func.id}; use kptoolkit.nn.component.hook"
                )


def builtin_classes() -> list[type]:
    """Every class defined in the package's own modules."""
    found = []
    for info in pkgutil.walk_packages([str(PACKAGE)], "kptoolkit."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__:
                found.append(cls)
    return found


def own_class_attributes(cls: type, base: type) -> set[str]:
    """Public class-level data a component defines that its base class does not."""
    names = set()
    for klass in cls.__mro__:
        if klass is base or not issubclass(klass, base):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or callable(value) or isinstance(value, property):
                continue
            if isinstance(value, classmethod | staticmethod):
                continue
            names.add(name)
    return names - set(dir(base))


def test_builtin_components_define_no_undeclared_hook():
    """Class-level data a masker, generator, loss or metric defines is one of its base's
    declared hooks (evaluators keep constants of their models and are left out)."""
    undeclared = {
        cls.__qualname__: sorted(extra)
        for cls in builtin_classes()
        for base in (Masker, Generator, Loss, Metric)
        if issubclass(cls, base) and cls is not base
        if (extra := own_class_attributes(cls, base))
    }
    assert not undeclared, undeclared


def test_the_undeclared_hook_check_sees_one():
    class Sneaky(Masker):
        reads_depth = True  # read by no base class: an undeclared hook

    assert own_class_attributes(Sneaky, Masker) == {"reads_depth"}


def test_every_builtin_masker_and_generator_has_an_entry_point():
    registered = {
        base: {registry.get(name) for name in registry.names()}
        for base, registry in ((Masker, MASKERS), (Generator, GENERATORS))
    }
    classes = builtin_classes()
    # intermediate bases (subclassed by other built-ins) are not components themselves
    bases = {parent for cls in classes for parent in cls.__mro__[1:]}
    missing = [
        cls.__qualname__
        for cls in classes
        for base in (Masker, Generator)
        if issubclass(cls, base) and cls not in bases and cls not in registered[base]
    ]
    assert not missing, f"no entry point (pyproject.toml) for {missing}"


def test_the_hook_accessor_refuses_an_undeclared_name_and_falls_back_to_the_default():
    from kptoolkit.nn.component import hook

    class Bare:
        pass

    assert hook(Bare, "needs_detector", Masker) is False
    state = {"weight": 1}
    assert hook(Bare(), "adapt_state_dict", Component)(state) is state  # bound to the object
    assert hook(Bare(), "set_training_progress", Component)(step=1, epoch=0) is None
    assert hook(Bare, "requires", Generator) == frozenset({"mask"})
    with pytest.raises(AttributeError, match="declares no hook 'made_up'"):
        hook(Bare, "made_up", Masker)


def test_the_bench_defaults_module_names_every_profile_and_registered_component():
    from kptoolkit.bench import defaults
    from kptoolkit.bench.profiles import PROFILES
    from kptoolkit.registry.registries import EVALUATORS

    assert tuple(PROFILES) == defaults.PROFILE_NAMES
    for name in (*defaults.DEFAULT_GENERATORS, *defaults.DEFAULT_BASELINES):
        assert name in GENERATORS
    assert defaults.REFERENCE_GENERATOR in defaults.DEFAULT_BASELINES
    assert all(name in MASKERS for name in (*defaults.DEFAULT_MASKERS, defaults.ORACLE_MASKER))
    assert all(name in EVALUATORS for name in defaults.SYNTHETIC_EVALUATORS.values())
    assert set(defaults.QUICK_LEARNING_RATES) <= set(GENERATORS.names())


def test_training_and_building_leave_the_plan_as_it_was(tmp_path):
    from train_fixtures import tiny_config, tiny_kp_checkpoint

    from kptoolkit.config.schema import unstructure
    from kptoolkit.engine.trainer import Trainer
    from kptoolkit.experiment.plan import plan_experiment

    kp = str(tiny_kp_checkpoint(tmp_path))
    plan = plan_experiment(tiny_config("train.steps=1"), kp, device="cpu")
    before = unstructure(plan.config)
    Trainer(plan, tmp_path / "run").train()
    assert unstructure(plan.config) == before
