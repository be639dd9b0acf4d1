"""Registry: entry-point discovery, in-process registration and every error path."""

from __future__ import annotations

import pytest
from plugin_fixtures import needs_learned_mask, plugin_installed

import kptoolkit
from kptoolkit.errors import (
    DuplicateComponentError,
    ParameterError,
    PluginLoadError,
    UnknownComponentError,
)
from kptoolkit.registry.registries import (
    MASKERS,
    Registry,
    check_params,
    get_registry,
    list_components,
)

GOOD_MODULE = '''
"""A fine plugin."""


class GoodMasker:
    """Good masker for tests."""

    def __init__(self, width: int = 4, depth: int = 2):
        self.width = width
        self.depth = depth
'''


@needs_learned_mask
def test_example_plugin_is_discovered_with_its_distribution():
    info = MASKERS.info("learned_projection")
    assert info.origin.startswith("kptoolkit-learned-mask ")
    assert info.target == "kptoolkit_learned_mask.masker:LearnedProjectionMasker"
    assert info.ok
    assert "1x1" in info.description


def test_builtins_are_entry_points_of_kptoolkit_itself():
    info = MASKERS.info("frame")
    assert info.origin.startswith("kptoolkit ")
    assert MASKERS.get("frame").__name__ == "FrameMasker"


def test_in_process_registration_and_factory():
    registry = Registry("maskers")

    @registry.register("tiny_test_masker")
    class Tiny:
        """Tiny masker."""

        def __init__(self, channels: int = 1):
            self.channels = channels

    try:
        built = registry.create("tiny_test_masker", channels=3)
        assert isinstance(built, Tiny) and built.channels == 3
        info = registry.info("tiny_test_masker")
        assert info.origin == "in-process" and info.description == "Tiny masker."
        assert [i.name for i in registry.list("tiny_*")] == ["tiny_test_masker"]
    finally:
        registry.unregister("tiny_test_masker")
    assert "tiny_test_masker" not in registry


def test_global_factory_uses_in_process_registration():
    @kptoolkit.MASKERS.register("factory_test_masker")
    class FactoryMasker:
        def __init__(self, scale: float = 1.0):
            self.scale = scale

    try:
        assert kptoolkit.create_masker("factory_test_masker", scale=2.0).scale == 2.0
        names = [i.name for i in kptoolkit.list_components("maskers", "factory_*")]
        assert names == ["factory_test_masker"]
    finally:
        kptoolkit.MASKERS.unregister("factory_test_masker")


def test_reregistering_the_same_object_is_allowed():
    registry = Registry("maskers")

    class Same:
        pass

    registry.register("same_test")(Same)
    registry.register("same_test")(Same)  # a notebook cell run twice
    assert registry.get("same_test") is Same


@needs_learned_mask
def test_unknown_name_lists_registered_and_closest():
    with pytest.raises(UnknownComponentError) as err:
        MASKERS.get("learned_projektion")
    message = str(err.value)
    assert "Did you mean: learned_projection" in message
    assert "frame" in message and "learned_projection" in message


def test_singular_names():
    assert [get_registry(k).singular for k in ("maskers", "losses", "metrics")] == [
        "masker",
        "loss",
        "metric",
    ]


def test_unknown_kind():
    with pytest.raises(UnknownComponentError, match="kinds: maskers"):
        get_registry("shaders")
    assert get_registry("masker") is MASKERS


@needs_learned_mask
def test_bad_parameter_names_the_key_and_component():
    with pytest.raises(ParameterError) as err:
        MASKERS.create("learned_projection", num_kps=10)
    message = str(err.value)
    assert "'num_kps'" in message and "learned_projection" in message
    assert "did you mean 'num_kp'" in message


def test_missing_required_parameter():
    def needs_width(width: int, depth: int = 1):
        return width

    with pytest.raises(ParameterError, match="needs parameter"):
        check_params(needs_width, {"depth": 2}, "masker 'x'")


def test_third_party_plugin_discovered(install):
    install(
        "fakeplug-good",
        {"fakeplug_good.py": GOOD_MODULE},
        {"kptoolkit.maskers": {"good_one": "fakeplug_good:GoodMasker"}},
    )
    registry = Registry("maskers")
    info = registry.info("good_one")
    assert info.origin == "fakeplug-good 0.1.0"
    assert info.description == "Good masker for tests."
    assert registry.create("good_one", width=8).width == 8


def test_duplicate_entry_points_name_both_origins(install):
    for dist in ("fakeplug-one", "fakeplug-two"):
        module = dist.replace("-", "_")
        install(
            dist,
            {f"{module}.py": GOOD_MODULE},
            {"kptoolkit.maskers": {"clash": f"{module}:GoodMasker"}},
        )
    registry = Registry("maskers")
    with pytest.raises(DuplicateComponentError) as err:
        registry.get("clash")
    assert "fakeplug-one" in str(err.value) and "fakeplug-two" in str(err.value)
    listed = registry.list("clash")
    assert len(listed) == 2 and not any(i.ok for i in listed)
    assert registry.get("frame").__name__ == "FrameMasker"  # others unaffected


def test_in_process_duplicate_of_entry_point_names_both():
    registry = Registry("maskers")

    class Impostor:
        pass

    with pytest.raises(DuplicateComponentError) as err:
        registry.register("frame")(Impostor)
    assert "kptoolkit 0.1.0" in str(err.value) and "Impostor" in str(err.value)


def test_broken_plugin_is_marked_and_others_still_work(install):
    install(
        "fakeplug-broken",
        {"fakeplug_broken.py": 'raise RuntimeError("model file missing")\n'},
        {"kptoolkit.maskers": {"broken_one": "fakeplug_broken:Broken"}},
    )
    registry = Registry("maskers")
    listed = {i.name: i for i in registry.list()}
    assert not listed["broken_one"].ok
    assert "raises at import" in listed["broken_one"].problem
    assert listed["frame"].ok
    if plugin_installed("kptoolkit_learned_mask"):  # a real plugin beside the broken one
        assert listed["learned_projection"].ok
    with pytest.raises(PluginLoadError) as err:
        registry.get("broken_one")
    message = str(err.value)
    assert "fakeplug-broken 0.1.0" in message
    assert "broken_one = fakeplug_broken:Broken" in message
    assert "RuntimeError: model file missing" in message
    assert registry.get("frame").__name__ == "FrameMasker"


def test_plugin_with_missing_dependency_is_marked_without_import(install):
    install(
        "fakeplug-nodep",
        {
            "fakeplug_nodep.py": "import package_that_is_not_installed_anywhere\n"
            "class M:\n    pass\n"
        },
        {"kptoolkit.maskers": {"nodep": "fakeplug_nodep:M"}},
    )
    info = Registry("maskers").info("nodep")
    assert "package_that_is_not_installed_anywhere" in info.problem
    assert "fakeplug_nodep" not in __import__("sys").modules  # it was only read, not imported


def test_failure_only_an_import_can_reveal_is_found_by_check(install):
    install(
        "fakeplug-late",
        {"fakeplug_late.py": '"""Late."""\nVALUE = 1 // 0\n\nclass M:\n    """Late masker."""\n'},
        {"kptoolkit.maskers": {"late": "fakeplug_late:M"}},
    )
    registry = Registry("maskers")
    assert registry.info("late").ok  # a static read cannot know
    checked = {i.name: i for i in registry.list(load=True)}
    assert "ZeroDivisionError" in checked["late"].problem
    assert checked["frame"].ok
    if plugin_installed("kptoolkit_learned_mask"):  # a real plugin, imported
        assert checked["learned_projection"].ok


def test_missing_object_and_module_are_marked(install):
    install(
        "fakeplug-typo",
        {"fakeplug_typo.py": GOOD_MODULE},
        {
            "kptoolkit.maskers": {
                "typo": "fakeplug_typo:GodMasker",
                "gone": "fakeplug_gone_module:GoodMasker",
            }
        },
    )
    registry = Registry("maskers")
    assert "defines no 'GodMasker'" in registry.info("typo").problem
    assert "not installed" in registry.info("gone").problem


@needs_learned_mask
def test_list_components_all_kinds_and_glob():
    everything = list_components()
    assert {"frame", "learned_projection"} <= {i.name for i in everything}
    assert [i.name for i in list_components("maskers", "learned*")] == ["learned_projection"]
    assert list_components("generators", "nothing_like_this*") == []
