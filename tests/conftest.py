"""Shared fixtures: an isolated cache, fake installed plugin distributions, and tiny saved runs
with a puppet dataset for the reconstruction and animation tests.

Plain helpers live in the *_fixtures.py modules; test modules never import from each other.
"""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from model_fixtures import TINY_DETECTOR
from plugin_fixtures import (
    isolated_cache,  # noqa: F401 (autouse: every test's cache apart)
    write_distribution,
)
from run_fixtures import FRAMES, SIZE, write_run

from kptoolkit.data.puppets.writer import generate_dataset
from kptoolkit.data.video_io import iter_frames, write_mp4
from kptoolkit.keypoints.detector import KeypointDetector


@pytest.fixture(autouse=True, scope="session")
def interruptible() -> None:
    """Processes the tests start take SIGINT as a user's Ctrl-C reaches them, even when pytest
    itself was started with SIGINT ignored (a background job of a non-interactive shell, whose
    children would inherit the ignored signal)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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


# ---------------------------------------------------------------- tiny runs (module-scoped)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 puppet videos x 6 frames at 64 px: 2 train, 2 test."""
    root = tmp_path_factory.mktemp("puppets")
    generate_dataset(
        root, 4, FRAMES, SIZE, clips_per_identity=1, test_fraction=0.5, workers=1, progress=False
    )
    return root


@pytest.fixture(scope="module")
def kp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random detector in the official FOMM layout."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("kp") / "tiny-cpk.pth.tar"
    torch.save({"kp_detector": KeypointDetector(num_kp=5, **TINY_DETECTOR).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, data_root: Path, kp_file: Path):
    """Checkpoints of tiny runs for three maskers, written once per module."""
    base = tmp_path_factory.mktemp("runs")
    return {
        name: write_run(base / name, data_root, kp_file, name)
        for name in ("heatmap_sum", "gaussian_circles", "perturbed_mask")
    }


@pytest.fixture(scope="module")
def driving_mp4(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """A 7-frame, 10 fps driving video (one test video, then its first frame again)."""
    video = sorted((data_root / "test").iterdir())[0]
    frames = list(iter_frames(video))
    path = tmp_path_factory.mktemp("driving") / "driving.mp4"
    write_mp4([*frames, frames[0]], path, fps=10)
    return path
