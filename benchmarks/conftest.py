"""The speed suites (bench_*.py): a temporary cache, and a smoke mode.

`python -m pytest benchmarks/` times every case (pytest-benchmark); with `--benchmark-disable`
each case runs its function once, on smaller inputs where a case has a size to shrink (the
`smoke` fixture), and measures no peak memory: a quick check that every suite still runs.
The one-off scripts in scripts/ are not collected.
"""

from __future__ import annotations

import pytest

collect_ignore = ["scripts"]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Point kptoolkit's cache at a temporary folder: benchmarks never write the user's."""
    cache = tmp_path_factory.mktemp("kptoolkit-cache")
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def smoke(request: pytest.FixtureRequest) -> bool:
    """True under `--benchmark-disable`: run each case once, small, and skip the figures."""
    return bool(request.config.getoption("benchmark_disable"))
