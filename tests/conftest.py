"""Shared fixtures: fake installed plugin distributions and reference state-dict tables."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def read_reference_table(name: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """Parse a reference `*.tsv` into {section: {key: shape}}."""
    sections: dict[str, dict[str, tuple[int, ...]]] = {}
    current = None
    for line in (DATA / name).read_text().splitlines():
        if line.startswith("## "):
            current = line[3:].split(":")[0]
            sections[current] = {}
        elif line.strip():
            key, shape = line.split("\t")
            dims = tuple(int(d) for d in re.findall(r"\d+", shape))
            sections[current][key] = dims
    return sections


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


@pytest.fixture(autouse=True)
def isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Keep generated datasets and models of a test out of the user's real cache."""
    cache = tmp_path_factory.mktemp("kptoolkit-cache")
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(cache))
    return cache


@pytest.fixture
def site_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh directory on sys.path where tests 'install' plugin distributions."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    before = set(sys.modules)
    yield site
    for name in set(sys.modules) - before:
        if name.startswith("fakeplug"):
            del sys.modules[name]


@pytest.fixture
def install(site_dir: Path) -> Callable[..., None]:
    """Install a fake distribution into `site_dir`."""

    def _install(name: str, modules: dict[str, str], entry_points: dict[str, dict[str, str]]):
        write_distribution(site_dir, name, modules, entry_points)
        importlib.invalidate_caches()

    return _install
