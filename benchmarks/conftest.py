"""Benchmarks write generated data to a temporary cache, never the user's."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Point kptoolkit's cache at a temporary folder."""
    cache = tmp_path_factory.mktemp("kptoolkit-cache")
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(cache))
    return cache
