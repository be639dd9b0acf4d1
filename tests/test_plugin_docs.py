"""The plugin examples stay runnable: the README's ("Writing a plugin") and docs/extending.md's
("A minimal masker and generator"). Each example's Python block is installed as a plugin
distribution with the entry points of its TOML block, found through them, then registered
in-process (the running registries have already read their entry points) and trained for two
steps by its documented `kptoolkit train` command on a tiny folder of videos, at the `micro`
widths; the trained run is loaded and its masks are checked against the mask contract."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import kptoolkit
from kptoolkit.cli.main import main
from kptoolkit.registry.registries import Registry, get_registry

REPO = Path(__file__).resolve().parents[1]
GROUP_PREFIX = "kptoolkit."
EXAMPLES = {
    "README.md": "## Writing a plugin",
    "docs/extending.md": "## A minimal masker and generator",
}
# appended to the documented command: two steps at the smallest widths, no data workers
TINY_RUN = ["--no-progress", "--device", "cpu", "--set", "preset=micro", "train.steps=2"]
TINY_RUN += ["train.batch_size=2", "train.log_every=1", "data.num_workers=0"]
SIZE = 64


def section(path: str, heading: str) -> str:
    """The text of `path` under `heading`, up to the next heading of the same level."""
    text = (REPO / path).read_text()
    assert heading in text, f"{path} has no heading {heading!r}"
    body = text.split(heading + "\n", 1)[1]
    return re.split(r"^## ", body, maxsplit=1, flags=re.MULTILINE)[0]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def entry_points(toml: str) -> dict[str, dict[str, str]]:
    """{group: {name: target}} of a pyproject's `[project.entry-points."group"]` tables (no
    tomllib: Python 3.10 has none)."""
    groups: dict[str, dict[str, str]] = {}
    for line in toml.splitlines():
        if table := re.fullmatch(r'\[project\.entry-points\."([\w.]+)"\]', line.strip()):
            group = groups.setdefault(table.group(1), {})
        elif entry := re.fullmatch(r'(\w+)\s*=\s*"([\w.]+:\w+)"', line.strip()):
            group[entry.group(1)] = entry.group(2)
        else:
            assert not line.strip() or line.startswith("#"), f"not an entry point: {line}"
    return groups


def train_argv(text: str) -> list[str]:
    """The arguments of the one `kptoolkit train` command in the section's bash blocks."""
    commands = [
        shlex.split(line, comments=True)
        for block in blocks(text, "bash")
        for line in block.replace("\\\n", " ").splitlines()
    ]
    (train,) = [argv[1:] for argv in commands if argv[:2] == ["kptoolkit", "train"]]
    return train


def write_videos(root: Path) -> None:
    """Two training videos and one test video: a bright block moving over 4 frames."""
    for split, count in (("train", 2), ("test", 1)):
        for video in range(count):
            folder = root / split / f"video{video}"
            folder.mkdir(parents=True)
            for index in range(4):
                frame = np.full((SIZE, SIZE, 3), 30, dtype=np.uint8)
                left = 8 + 8 * index + 4 * video
                frame[20:40, left : left + 14] = (200, 120, 40)
                Image.fromarray(frame).save(folder / f"{index:04d}.png")


def forget(package: str) -> None:
    """Drop an installed example's modules from this process."""
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.mark.slow
@pytest.mark.parametrize(("path", "heading"), EXAMPLES.items(), ids=list(EXAMPLES))
def test_documented_plugin_installs_and_trains(
    path: str,
    heading: str,
    install: Callable[..., None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = section(path, heading)
    (source,) = blocks(text, "python")
    (toml,) = blocks(text, "toml")
    groups = entry_points(toml)
    kinds = {
        name: group.removeprefix(GROUP_PREFIX) for group, eps in groups.items() for name in eps
    }
    targets = {target for eps in groups.values() for target in eps.values()}
    (module,) = {target.split(":")[0] for target in targets}  # one module holds the example
    for kind in set(kinds.values()):
        get_registry(kind).names()  # the running registries read their entry points first
    package = module.split(".")[0]
    forget(package)  # another example's package of the same name
    files = {module.replace(".", "/") + ".py": source, f"{package}/__init__.py": ""}
    install("my-plugin", files, groups)

    found = {}
    for name, kind in kinds.items():
        info = Registry(kind).info(name)  # a new registry reads the installed entry points
        assert info.ok and info.origin == "my-plugin 0.1.0", info
        assert info.description, f"{name} has no docstring for `kptoolkit list`"
        found[name] = Registry(kind).get(name)

    argv = train_argv(text)
    assert option(argv, "--masker") in kinds and option(argv, "--generator")
    (root,) = [arg.split("=", 1)[1] for arg in argv if arg.startswith("data.root=")]
    assert "data.dataset=fomm_frames" in argv
    write_videos(tmp_path / root)
    monkeypatch.chdir(tmp_path)
    for name, kind in kinds.items():
        get_registry(kind).register(name)(found[name])
    try:
        assert main([*argv, *TINY_RUN]) == 0
        models = kptoolkit.load_run(option(argv, "--out"))
    finally:
        for name, kind in kinds.items():
            get_registry(kind).unregister(name)
        forget(package)

    assert type(models.masker) is found[option(argv, "--masker")]
    frames = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        source, driving = models.masker(frames[:1]), models.masker(frames[1:])
        output = models.generator(frames[:1], source, driving)
    mask = source.mask
    assert mask.ndim == 4 and mask.shape[:2] == (1, models.masker.channels)
    assert mask.min() >= 0 and mask.max() <= 1
    assert models.generator.mask_channels in (None, models.masker.channels)
    assert output["prediction"].shape == (1, 3, SIZE, SIZE)
    losses = (tmp_path / option(argv, "--out") / "losses.csv").read_text().splitlines()
    assert len(losses) == 3  # the header and two steps
