"""Tiny CPU-sized detectors and generators for fast tests (the components' `micro` presets), and
the reference state-dict tables of the official checkpoints (tests/data/*.tsv)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kptoolkit.keypoints.detector import FrozenDetector, KeypointDetector
from kptoolkit.registry.presets import MICRO
from kptoolkit.registry.registries import get_registry

MICRO_DETECTOR = dict(KeypointDetector.presets[MICRO].params)
TINY_DETECTOR = {key: value for key, value in MICRO_DETECTOR.items() if key != "num_kp"}
DATA = Path(__file__).resolve().parent / "data"


def read_reference_table(name: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """Parse a reference `*.tsv` of tests/data into {section: {key: shape}}."""
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


def micro_params(name: str, kind: str = "generators") -> dict[str, Any]:
    """A component's `micro` preset parameters, with the micro detector's K where it takes one."""
    factory = get_registry(kind).get(name)
    params = dict(factory.presets[MICRO].params)
    if name == "fomm":
        params["num_kp"] = MICRO_DETECTOR["num_kp"]
    return params


TINY_TWO_STAGE = micro_params("two_stage")


def tiny_detector(num_kp: int = 5, seed: int = 0, frozen: bool = True, **overrides):
    """A small random detector (64 px frames give 10x10 heatmaps and 16x16 masks)."""
    import torch

    torch.manual_seed(seed)
    detector = KeypointDetector(num_kp=num_kp, **{**TINY_DETECTOR, **overrides})
    return FrozenDetector(detector) if frozen else detector
