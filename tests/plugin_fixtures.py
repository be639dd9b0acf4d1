"""Plugin distributions for tests: fake ones laid out as pip installs them, and skip markers for
tests that need one of the example plugins under plugins/ installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def write_distribution(
    root: Path,
    name: str,
    modules: dict[str, str],
    entry_points: dict[str, dict[str, str]],
    version: str = "0.1.0",
) -> None:
    """Lay out a distribution as pip installs it: module files plus a .dist-info folder."""
    for module_path, source in modules.items():
        path = root / module_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{ep_name} = {target}" for ep_name, target in eps.items())
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def plugin_installed(module: str) -> bool:
    """Whether an example plugin's top-level module can be imported."""
    return importlib.util.find_spec(module) is not None


def needs_plugin(module: str, folder: str) -> pytest.MarkDecorator:
    """Skip, saying how to install it, when the plugin in plugins/<folder> is not installed."""
    return pytest.mark.skipif(
        not plugin_installed(module),
        reason=f"the {folder} plugin is not installed (pip install ./plugins/{folder})",
    )


# the example masker `learned_projection` (plugins/kptoolkit-learned-mask)
needs_learned_mask = needs_plugin("kptoolkit_learned_mask", "kptoolkit-learned-mask")
# the TPSMM generator `tpsmm`, its masker `tpsmm_keypoints` and losses (plugins/kptoolkit-tpsmm)
needs_tpsmm = needs_plugin("kptoolkit_tpsmm", "kptoolkit-tpsmm")


@pytest.fixture(autouse=True)
def isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Keep generated datasets and models of a test out of the user's real cache."""
    cache = tmp_path_factory.mktemp("kptoolkit-cache")
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(cache))
    return cache
