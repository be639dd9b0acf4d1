"""Does a keypoint detector know where the body is? Two numbers on frames with ground truth.

- **Keypoint spread** (pixels): per frame, the mean distance of the K keypoints to their
  centroid, averaged over frames. Keypoints that collapsed onto one spot (a detector that only
  says where the figure is) have a spread near 0; keypoints on the limbs spread over the body.
- **Linear-probe R^2**: a least-squares linear map (with bias) from the K keypoints (2K numbers)
  to the ground-truth joints (2J numbers) is fitted on one set of frames and scored on another:
  R^2 = 1 - sum of squared residuals / sum of squared deviations from the held-out joints' mean
  (every coordinate pooled). 1 means the keypoints determine the pose; 0 means they carry no
  more than the mean pose.

Only frames whose joints are all visible take part in the probe. For scale,
`centroid_probe_r2` gives the score of the joints' own centroid: a detector that knows where
the figure is and nothing of its pose (about 0.45 on puppets v2).
"""

from __future__ import annotations

import attrs
import numpy as np
import torch
from torch import nn


@attrs.frozen
class DetectorDiagnostics:
    """The spread (pixels) and probe R^2 of a detector, and the frames behind them."""

    keypoint_spread_px: float
    probe_r2: float
    fit_frames: int
    test_frames: int

    def to_json(self) -> dict[str, float | int]:
        """A JSON-ready form."""
        return attrs.asdict(self)


@torch.inference_mode()
def detect_keypoints(detector: nn.Module, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, K, 2) keypoints in pixels (x, y; pixel centres at integers) of (N, H, W, 3) uint8."""
    was_training = detector.training
    detector.eval()
    device = next(detector.parameters()).device
    found = []
    for start in range(0, len(frames), batch_size):
        batch = torch.from_numpy(frames[start : start + batch_size]).to(device)
        batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
        found.append(detector(batch).keypoints.float().cpu())
    detector.train(was_training)
    keypoints = torch.cat(found).numpy().astype(np.float64)
    height, width = frames.shape[1:3]
    scale = np.array([(width - 1) / 2, (height - 1) / 2])
    return (keypoints + 1) * scale  # [-1, 1] -> pixel centres 0 .. size-1


def keypoint_spread(keypoints: np.ndarray) -> float:
    """Mean over frames of the keypoints' mean distance to their centroid, (N, K, 2) -> float."""
    centroid = keypoints.mean(axis=1, keepdims=True)
    return float(np.linalg.norm(keypoints - centroid, axis=-1).mean())


def probe_r2(
    fit_keypoints: np.ndarray,
    fit_joints: np.ndarray,
    test_keypoints: np.ndarray,
    test_joints: np.ndarray,
) -> float:
    """R^2 on the test frames of a linear map keypoints -> joints fitted on the fit frames."""

    def design(keypoints: np.ndarray) -> np.ndarray:
        flat = keypoints.reshape(len(keypoints), -1)
        return np.concatenate([flat, np.ones((len(flat), 1))], axis=1)

    targets = fit_joints.reshape(len(fit_joints), -1)
    weights, *_ = np.linalg.lstsq(design(fit_keypoints), targets, rcond=None)
    truth = test_joints.reshape(len(test_joints), -1)
    residual = ((design(test_keypoints) @ weights - truth) ** 2).sum()
    total = ((truth - truth.mean(axis=0)) ** 2).sum()
    return float(1 - residual / total) if total > 0 else float("nan")


def centroid_probe_r2(fit_joints: np.ndarray, test_joints: np.ndarray) -> float:
    """The probe R^2 of the joints' own centroid (N, J, 2): what a detector that knew exactly
    where the figure is, and nothing of its pose, would score."""

    def centroid(joints: np.ndarray) -> np.ndarray:
        return joints.mean(axis=1, keepdims=True)

    return probe_r2(centroid(fit_joints), fit_joints, centroid(test_joints), test_joints)


def diagnose_detector(
    detector: nn.Module,
    fit: tuple[np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> DetectorDiagnostics:
    """Spread on the test frames and probe R^2 (fitted on `fit`, scored on `test`).

    Each of `fit` and `test` is (frames (N, H, W, 3) uint8, joints (N, J, 2) pixels,
    visible (N, J) bool).
    """
    sets = []
    for frames, joints, visible in (fit, test):
        complete = visible.all(axis=1)
        keypoints = detect_keypoints(detector, frames)
        sets.append((keypoints, keypoints[complete], joints[complete]))
    (_, fit_kp, fit_joints), (test_all, test_kp, test_joints) = sets
    return DetectorDiagnostics(
        keypoint_spread_px=keypoint_spread(test_all),
        probe_r2=probe_r2(fit_kp, fit_joints, test_kp, test_joints),
        fit_frames=len(fit_kp),
        test_frames=len(test_kp),
    )
