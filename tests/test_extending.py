"""Extending kptoolkit: a masker, a generator, two losses (one adversarial) and a metric, each
written here and registered in-process, run through `kptoolkit bench --profile micro` with no
file of kptoolkit touched. This is docs/extending.md's "how to add a component", checked."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import kptoolkit
from kptoolkit.cli.main import main
from kptoolkit.config.schema import ExperimentConfig, unstructure
from kptoolkit.generators.base import Generator
from kptoolkit.losses.base import Loss, LossInputs
from kptoolkit.maskers.base import Masker
from kptoolkit.metrics.base import FramePairs, Metric
from kptoolkit.structure import Structure

SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def edges(frames: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) Sobel gradient magnitude of the frames' grey level."""
    grey = frames.mean(dim=1, keepdim=True)
    kernels = torch.stack([SOBEL, SOBEL.T])[:, None].to(frames)
    gradient = F.conv2d(grey, kernels, padding=1)
    return gradient.pow(2).sum(dim=1, keepdim=True).add(1e-12).sqrt()


class EdgeMasker(Masker):
    """A mask without a detector: the driving frame's edges, at a quarter of its size."""

    def forward(self, frame: torch.Tensor) -> Structure:
        mask = F.avg_pool2d(edges(frame), 4)
        return Structure(mask=mask / mask.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6))


class BlendGenerator(Generator):
    """A two-layer network from the source and both masks to the prediction."""

    requires: ClassVar[frozenset[str]] = frozenset({"mask"})

    def __init__(self, mask_channels: int = 1, features: int = 8) -> None:
        super().__init__()
        self.mask_channels = mask_channels
        self.net = nn.Sequential(
            nn.Conv2d(3 + 2 * mask_channels, features, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(features, 3, 3, padding=1),
        )

    def forward(
        self, source: torch.Tensor, source_structure: Structure, driving_structure: Structure
    ) -> dict[str, torch.Tensor]:
        size = source.shape[-2:]
        masks = [F.interpolate(s.mask, size=size) for s in (source_structure, driving_structure)]
        residual = self.net(torch.cat([source, *masks], dim=1))
        return {"prediction": (source + residual).clamp(0, 1)}


class EdgeLoss(Loss):
    """L1 between the edges of the output and of the target."""

    def forward(self, inputs: LossInputs, output: str) -> torch.Tensor:
        return (edges(inputs.outputs[output]) - edges(inputs.target)).abs().mean()


class HingeGanLoss(Loss):
    """A hinge GAN term against the engine's discriminator (adversarial: it has a D step)."""

    adversarial = True

    def _scores(self, inputs: LossInputs, frames: torch.Tensor) -> list[torch.Tensor]:
        outputs = inputs.discriminator(frames)
        return [o.prediction_map for o in outputs.values()]

    def forward(self, inputs: LossInputs, output: str) -> torch.Tensor:
        return -sum(s.mean() for s in self._scores(inputs, inputs.outputs[output]))

    def discriminator_loss(self, inputs: LossInputs, output: str) -> torch.Tensor:
        real = self._scores(inputs, inputs.target.detach())
        fake = self._scores(inputs, inputs.outputs[output].detach())
        pairs = zip(real, fake, strict=True)
        return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in pairs)


class EdgeMetric(Metric):
    """Mean |edges(fake) - edges(real)| per frame."""

    def frame_values(self, pairs: FramePairs) -> torch.Tensor:
        real, fake = pairs.frames("edge_l1")
        return (edges(fake) - edges(real)).abs().flatten(1).mean(1)


COMPONENTS = [
    (kptoolkit.MASKERS, "edge_mask", EdgeMasker),
    (kptoolkit.GENERATORS, "blend_net", BlendGenerator),
    (kptoolkit.LOSSES, "edge_l1_loss", EdgeLoss),
    (kptoolkit.LOSSES, "hinge_gan", HingeGanLoss),
    (kptoolkit.METRICS, "edge_l1", EdgeMetric),
]


@pytest.fixture
def registered():
    for registry, name, component in COMPONENTS:
        registry.register(name)(component)
    yield
    for registry, name, _ in COMPONENTS:
        registry.unregister(name)


@pytest.mark.slow
def test_new_components_run_through_the_bench(registered, tmp_path, monkeypatch):
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(tmp_path / "cache"))
    config = unstructure(ExperimentConfig())
    config["losses"] += [
        {"name": "edge_l1_loss", "weight": 1.0, "outputs": ["prediction"], "params": {}},
        {"name": "hinge_gan", "weight": 0.1, "outputs": ["prediction"], "params": {}},
    ]
    config["metrics"].append({"name": "edge_l1", "params": {}})
    config["discriminator"] = {"block_expansion": 8, "max_features": 32, "num_blocks": 2}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "bench"
    args = ["bench", "--profile", "micro", "--config", str(path), "--masker", "edge_mask"]
    args += ["--generator", "blend_net", "--baselines", "", "--out", str(out), "--no-progress"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0

    payload = json.loads((out / "results.json").read_text())
    (row,) = [r for r in payload["rows"] if r["role"] == "variant"]
    assert row["method"] == "edge_mask + blend_net" and row["steps"] == 4
    assert 0 < row["metrics"]["edge_l1"] < 10 and 0 < row["metrics"]["l1"] < 1
    losses = (out / "runs" / "edge_mask+blend_net-seed0" / "losses.csv").read_text()
    header = losses.splitlines()[0]
    assert "edge_l1_loss" in header and "hinge_gan" in header and "discriminator" in header
    for table in ("results.md", "results.tex"):
        assert "edge_l1" in (out / table).read_text().replace("\\_", "_"), table
    with open(out / "results.csv", newline="") as handle:
        assert "edge_l1" in next(csv.reader(handle))


class ThreeChannelMasker(Masker):
    """A plugin masker that declares one mask channel (the default) but returns three."""

    provides: ClassVar[frozenset[str]] = frozenset({"mask"})

    def forward(self, frame: torch.Tensor) -> Structure:
        return Structure(mask=torch.zeros(frame.shape[0], 3, 16, 16, device=frame.device))


class BrokenMasker(Masker):
    """A plugin masker whose constructor fails."""

    provides: ClassVar[frozenset[str]] = frozenset({"mask"})

    def __init__(self) -> None:
        super().__init__()
        raise RuntimeError("boom in the plugin")


@pytest.mark.parametrize(
    ("masker", "expected"),
    [
        (ThreeChannelMasker, "masker 'plugin_masker' returned 3-channel masks but declares 1"),
        (BrokenMasker, "masker 'plugin_masker' (in-process) failed to build: RuntimeError: boom"),
    ],
)
def test_a_faulty_plugin_masker_is_named_in_one_line(masker, expected, tmp_path, capsys):
    kptoolkit.MASKERS.register("plugin_masker")(masker)
    try:
        args = ["train", "--masker", "plugin_masker", "--out", str(tmp_path / "run")]
        settings = ["preset=micro", "train.steps=1", "data.params.videos=4", "data.params.frames=4"]
        code = main([*args, "--no-progress", "--set", *settings])
    finally:
        kptoolkit.MASKERS.unregister("plugin_masker")
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("kptoolkit: error: ") and expected in last
