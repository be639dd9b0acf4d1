"""Evaluators trained on a synthetic puppet dataset's train split with its ground truth.

`SyntheticPoseEvaluator` predicts the 15 puppet joints (heatmaps + soft-argmax over a small
timm ResNet's stride-4 feature map, plus a visibility logit per joint); `SyntheticIdEvaluator`
classifies the train identities and embeds frames with L2-normalised penultimate features. Both
are trained once (deterministically under `seed` on CPU) and cached in the dataset folder as
`<root>/evaluators/<name>.pth` with metadata (backbone, steps, batch size, seed, the manifest's
fingerprint); a cache whose metadata does not match is retrained. No weights are downloaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn

from kptoolkit.data.puppets.model import JOINT_NAMES
from kptoolkit.evaluators.base import MISSING
from kptoolkit.evaluators.synthetic_training import SyntheticEvaluator, identity_of, load_split
from kptoolkit.metrics.base import VideoScores
from kptoolkit.metrics.keypoint_metrics import akd_per_frame, mkr_per_frame


class SyntheticPoseEvaluator(SyntheticEvaluator):
    """The 15 puppet joints: heatmap soft-argmax on a stride-4 map and a visibility logit each.

    `keypoints` returns (x, y) pixels with pixel centres at integer coordinates; a joint whose
    visibility probability is below 0.5, or predicted outside the frame, is (-1, -1).
    """

    kind = "pose"
    cache_name = "synthetic_pose"
    default_steps = 400
    joint_names = JOINT_NAMES

    def _build(self, manifest: dict) -> None:
        joints = len(JOINT_NAMES)
        self.backbone = timm.create_model(
            self.backbone_name, pretrained=False, features_only=True, out_indices=(1, 2, 3)
        )
        channels = self.backbone.feature_info.channels()
        self.reductions = self.backbone.feature_info.reduction()
        width = 96
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.head = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, joints, 1),
        )
        self.visibility = nn.Linear(channels[-1], joints)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised frames -> (coordinates (B, J, 2) in training-size pixels, logits (B, J))."""
        features = self.backbone(frames)
        fused = self.lateral[0](features[0])
        for lateral, feature in zip(self.lateral[1:], features[1:], strict=True):
            fused = fused + F.interpolate(
                lateral(feature), size=fused.shape[-2:], mode="bilinear", align_corners=False
            )
        heatmaps = self.head(fused)
        b, j, h, w = heatmaps.shape
        prob = heatmaps.flatten(2).softmax(-1).view(b, j, h, w)
        stride_y, stride_x = frames.shape[-2] / h, frames.shape[-1] / w
        ys = (torch.arange(h, dtype=prob.dtype) + 0.5) * stride_y - 0.5
        xs = (torch.arange(w, dtype=prob.dtype) + 0.5) * stride_x - 0.5
        x = (prob.sum(2) * xs).sum(-1)
        y = (prob.sum(3) * ys).sum(-1)
        logits = self.visibility(features[-1].mean((2, 3)))
        return torch.stack([x, y], -1), logits

    def _loss(self, frames: torch.Tensor, data: dict, index: np.ndarray) -> torch.Tensor:
        coords, logits = self(frames)
        target = torch.from_numpy(data["joints"][index])
        visible = torch.from_numpy(data["visible"][index]).float()
        error = (coords - target).abs().sum(-1) / self.size
        coord_loss = (error * visible).sum() / visible.sum().clamp_min(1.0)
        return coord_loss + 0.1 * F.binary_cross_entropy_with_logits(logits, visible)

    def _keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        height, width = frames.shape[-2:]
        coords, logits = self(self._normalise(frames))
        coords = coords.float() * torch.tensor([width / self.size, height / self.size])
        inside = (
            (coords[..., 0] >= -0.5)
            & (coords[..., 0] <= width - 0.5)
            & (coords[..., 1] >= -0.5)
            & (coords[..., 1] <= height - 0.5)
        )
        present = (logits.sigmoid() >= 0.5) & inside
        return torch.where(present[..., None], coords, torch.full_like(coords, MISSING))

    def floor(self, split: str = "test") -> dict[str, Any]:
        """AKD and MKR of this model on real frames of `split` against ground truth.

        AKD: per frame the mean |gt - pred| (pixels, both coordinates) over joints present in
        both; MKR: per frame the fraction of ground-truth-present joints predicted missing; both
        pooled over the frames that have a value. `per_video` holds each video's sums and
        counts (the bench's floor row and its interval).
        """
        data = load_split(self.root, split)
        predicted = self._batched(data["frames"], self.keypoints).numpy()
        return pose_scores(data["joints"], data["visible"], predicted, data["video"], data["names"])


def pose_scores(
    gt_joints: np.ndarray,
    gt_visible: np.ndarray,
    predicted: np.ndarray,
    video_of_frame: np.ndarray | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """AKD and MKR of predicted keypoints (N, J, 2; -1 = missing) against ground truth, per
    frame as the metrics define them, then pooled over the frames that have a value.

    With `video_of_frame` (N,) indices into `names`, also `per_video`: per metric each video's
    names, sums and counts of frame values (`VideoScores.to_json`).
    """
    real = torch.from_numpy(np.where(gt_visible[..., None], gt_joints, MISSING)).double()
    fake = torch.tensor(np.asarray(predicted), dtype=torch.float64)
    values = {"akd": akd_per_frame(real, fake).numpy(), "mkr": mkr_per_frame(real, fake).numpy()}
    found: dict[str, Any] = {
        "akd": float(np.nanmean(values["akd"])) if np.isfinite(values["akd"]).any() else math.nan,
        "mkr": float(np.nanmean(values["mkr"])) if np.isfinite(values["mkr"]).any() else math.nan,
        "frames": len(gt_joints),
    }
    if video_of_frame is not None and names is not None:
        found["per_video"] = {}
        for metric, per_frame in values.items():
            valid = np.isfinite(per_frame)
            sums = np.bincount(
                video_of_frame[valid], per_frame[valid], minlength=len(names)
            ).astype(np.float64)
            counts = np.bincount(video_of_frame[valid], minlength=len(names)).astype(np.float64)
            found["per_video"][metric] = VideoScores(tuple(names), sums, counts).to_json()
    return found


class SyntheticIdEvaluator(SyntheticEvaluator):
    """Identity embeddings for AED: a classifier over the puppets' train identities.

    Embeddings are its L2-normalised penultimate features. The last clip of every train
    identity with several clips is held out of training to measure accuracy.
    """

    kind = "identity"
    cache_name = "synthetic_id"
    default_steps = 400
    embedding_dim = 128

    def _extra_metadata(self, manifest: dict) -> dict:
        return {"embedding_dim": self.embedding_dim}

    def _build(self, manifest: dict) -> None:
        names = manifest["videos"]["train"]
        self.identities = sorted({identity_of(n) for n in names})
        self.heldout = set()
        for identity in self.identities:
            clips = sorted(n for n in names if identity_of(n) == identity)
            if len(clips) > 1:
                self.heldout.add(clips[-1])
        self.backbone = timm.create_model(
            self.backbone_name, pretrained=False, num_classes=0, global_pool="avg"
        )
        self.project = nn.Linear(self.backbone.num_features, self.embedding_dim)
        self.classifier = nn.Linear(self.embedding_dim, len(self.identities), bias=False)
        self.scale = 16.0

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised frames -> unit-norm embeddings (B, D)."""
        return F.normalize(self.project(self.backbone(frames)), dim=-1)

    def _logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.scale * embeddings @ F.normalize(self.classifier.weight, dim=-1).T

    def _labels(self, data: dict) -> np.ndarray:
        lookup = {identity: i for i, identity in enumerate(self.identities)}
        per_video = np.array([lookup[identity_of(n)] for n in data["names"]], dtype=np.int64)
        return per_video[data["video"]]

    def _training_data(self) -> dict[str, Any]:
        data = load_split(self.root, "train")
        keep = np.array([data["names"][v] not in self.heldout for v in data["video"]])
        labels = self._labels(data)
        return {"frames": data["frames"][keep], "labels": labels[keep]}

    def _loss(self, frames: torch.Tensor, data: dict, index: np.ndarray) -> torch.Tensor:
        if torch.rand(()) < 0.5:  # horizontal flip: identity does not depend on the side
            frames = frames.flip(-1)
        labels = torch.from_numpy(data["labels"][index])
        return F.cross_entropy(self._logits(self(frames)), labels)

    def _embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        return self(self._normalise(frames))

    def floor(self) -> dict[str, float]:
        """Held-out identity accuracy (train identities, held-out clips) and the mean squared L2
        embedding distance between frames of the same and of different test identities."""
        train = load_split(self.root, "train")
        held = np.array([train["names"][v] in self.heldout for v in train["video"]])
        accuracy = float("nan")
        if held.any():
            embeddings = self._batched(train["frames"][held], self.embeddings)
            with torch.inference_mode():
                predicted = self._logits(embeddings).argmax(-1).numpy()
            accuracy = float((predicted == self._labels(train)[held]).mean())
        test = load_split(self.root, "test")
        embeddings = self._batched(test["frames"], self.embeddings).double()
        distance = torch.cdist(embeddings, embeddings).pow(2).numpy()
        ids = np.array([identity_of(test["names"][v]) for v in test["video"]])
        same = ids[:, None] == ids[None, :]
        np.fill_diagonal(same, False)
        different = ids[:, None] != ids[None, :]
        return {
            "heldout_accuracy": accuracy,
            "aed_same": float(distance[same].mean()) if same.any() else float("nan"),
            "aed_different": float(distance[different].mean()) if different.any() else float("nan"),
        }
