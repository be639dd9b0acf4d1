"""The kptoolkit-tpsmm plugin's tests: kptoolkit's cache in a temporary folder, as in tests/

Run from the repository root, with tests/ on the path (pyproject's `pythonpath`) for the shared
helper modules (train_fixtures.py, ...). The tests skip when the plugin is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Keep generated datasets and models of a test out of the user's real cache."""
    cache = tmp_path_factory.mktemp("kptoolkit-cache")
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(cache))
    return cache
