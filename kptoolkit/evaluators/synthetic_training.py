"""What the synthetic evaluators share: reading a puppet split with its ground truth, and the
base class that trains an evaluator once per dataset (deterministically under its seed on CPU)
and caches it with the metadata that identifies it."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from kptoolkit.data.datasets import frames_to_tensor
from kptoolkit.data.puppets.writer import load_groundtruth, read_manifest
from kptoolkit.data.video_io import iter_frames
from kptoolkit.errors import KptoolkitError
from kptoolkit.evaluators.base import Evaluator
from kptoolkit.utils.checkpoint_io import atomic_save

CACHE_FORMAT = 1
DEFAULT_BACKBONE = "resnet10t"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class EvaluatorDataError(KptoolkitError, ValueError):
    """The dataset folder is not a complete synthetic puppet dataset, or lacks what is needed."""


def manifest_fingerprint(manifest: dict) -> str:
    """A short hash of a dataset manifest: a retrained dataset gets a new fingerprint."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def identity_of(video: str) -> str:
    """The identity of a video named `<identity>#<clip>`."""
    return video.split("#", 1)[0]


def load_split(root: str | Path, split: str) -> dict[str, Any]:
    """Every frame of a split in memory: frames (N, H, W, 3) uint8, joints (N, 15, 2), visible
    (N, 15), video index (N,) and the video names."""
    manifest = read_manifest(root)
    if manifest is None:
        raise EvaluatorDataError(f"{root} is not a complete synthetic puppet dataset")
    names = list(manifest["videos"][split])
    frames, joints, visible, video = [], [], [], []
    for index, name in enumerate(names):
        clip = np.stack(list(iter_frames(Path(root) / split / name)))
        gt_joints, gt_visible = load_groundtruth(root, split, name)
        count = min(len(clip), len(gt_joints))
        frames.append(clip[:count])
        joints.append(gt_joints[:count])
        visible.append(gt_visible[:count])
        video.append(np.full(count, index, dtype=np.int64))
    if not frames:
        raise EvaluatorDataError(f"{root}: split {split!r} has no videos")
    return {
        "frames": np.concatenate(frames),
        "joints": np.concatenate(joints),
        "visible": np.concatenate(visible),
        "video": np.concatenate(video),
        "names": names,
    }


class SyntheticEvaluator(Evaluator):
    """Shared caching and training loop; subclasses build the head and define the loss."""

    cache_name: ClassVar[str] = ""
    default_steps: ClassVar[int] = 0

    def __init__(
        self,
        root: str,
        steps: int | None = None,
        batch_size: int = 32,
        seed: int = 0,
        backbone: str = DEFAULT_BACKBONE,
        progress: bool = True,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        manifest = read_manifest(self.root)
        if manifest is None:
            raise EvaluatorDataError(f"{root} is not a complete synthetic puppet dataset")
        self.size = int(manifest["size"])
        self.steps = int(self.default_steps if steps is None else steps)
        if self.steps < 0 or batch_size < 1:
            raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {steps}, {batch_size}")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.backbone_name = backbone
        self.progress = progress
        self.metadata = {
            "evaluator": self.cache_name,
            "format": CACHE_FORMAT,
            "backbone": backbone,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "dataset": manifest_fingerprint(manifest),
            **self._extra_metadata(manifest),
        }
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._build(manifest)
        self.trained = False  # True when this construction trained (no usable cache)
        self.train_seconds = 0.0
        self.loaded_from: Path | None = None  # the cache file read, when one was
        if not self._load_cache():
            self._train()
            path = self._recipe_path()
            atomic_save({"metadata": self.metadata, "state": self.state_dict()}, path)
            self.loaded_from = path
        self.eval()

    @property
    def cache_path(self) -> Path:
        """The file that holds the trained weights: `<root>/evaluators/<name>-<digest>.pth`,
        the digest of everything that changes the trained evaluator (its metadata: steps,
        batch, seed, backbone, dataset), so that evaluators trained another way (by `metrics`
        with other steps, by a bench) never replace each other; or the file of an earlier
        version (`<name>.pth`) that holds this very evaluator."""
        return self.loaded_from or self._recipe_path()

    def _recipe_path(self) -> Path:
        text = json.dumps(self.metadata, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        return self.root / "evaluators" / f"{self.cache_name}-{digest}.pth"

    def _shared_path(self) -> Path:
        """Where earlier versions cached an evaluator: one file per name, whatever the recipe
        (read when its metadata is this evaluator's, never written)."""
        return self.root / "evaluators" / f"{self.cache_name}.pth"

    def _extra_metadata(self, manifest: dict) -> dict:
        return {}

    def _build(self, manifest: dict) -> None:
        raise NotImplementedError

    def _load_cache(self) -> bool:
        return any(self._load_from(path) for path in (self._recipe_path(), self._shared_path()))

    def _load_from(self, path: Path) -> bool:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # missing, truncated or foreign file: retrain
            return False
        if not isinstance(payload, dict) or payload.get("metadata") != self.metadata:
            return False
        try:
            self.load_state_dict(payload["state"])
        except (KeyError, RuntimeError):
            return False
        self.loaded_from = path
        return True

    def _normalise(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.shape[-2:] != (self.size, self.size):
            frames = F.interpolate(
                frames, size=(self.size, self.size), mode="bilinear", align_corners=False
            )
        return (frames - self.mean) / self.std

    def _train(self) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self._train_loop()

    def _train_loop(self) -> None:
        start = time.perf_counter()
        data = self._training_data()
        count = len(data["frames"])
        generator = torch.Generator().manual_seed(self.seed)
        optimiser = torch.optim.AdamW(self.parameters(), lr=2e-3, weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=2e-3, total_steps=max(self.steps, 1), pct_start=0.15
        )
        self.train()
        bar = tqdm(
            range(self.steps),
            desc=f"training {self.cache_name}",
            disable=not self.progress,
            leave=False,
        )
        for _ in bar:
            index = torch.randint(count, (self.batch_size,), generator=generator).numpy()
            frames = frames_to_tensor(data["frames"][index])
            loss = self._loss(self._normalise(frames), data, index)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        self.eval()
        self.trained = True
        self.train_seconds = time.perf_counter() - start

    def _training_data(self) -> dict[str, Any]:
        return load_split(self.root, "train")

    def _loss(self, frames: torch.Tensor, data: dict, index: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def _batched(self, frames: np.ndarray, fn, batch: int = 256) -> torch.Tensor:
        return torch.cat(
            [fn(frames_to_tensor(frames[i : i + batch])) for i in range(0, len(frames), batch)]
        )
