"""Evaluators whose models ship inside pip packages: MediaPipe body pose and dlib faces.

Nothing is downloaded at run time. `mediapipe==0.10.21` carries the BlazePose "full" landmark
model (`model_complexity=1`; the lite and heavy variants would be fetched from the internet, so
they are not offered). `dlib-bin` provides dlib and its HOG face detector, and the
`face_recognition_models` package carries the 5- and 68-point shape predictors and the ResNet
face-recognition model. That package is located with `importlib.util.find_spec` and never
imported: its `__init__` needs `pkg_resources`, which recent setuptools no longer provide.

The optional packages are imported inside the constructors, so this module imports (and
`kptoolkit list` describes it) without them; constructing an evaluator whose package is missing
raises `MissingPackageError`, which names what to install (`pip install "kptoolkit[eval]"`).

Conventions (see `kptoolkit.evaluators.base`): keypoints are (x, y) pixels with pixel centres at
integer coordinates, and (-1, -1) marks a missing point, which includes a point predicted
outside the frame. Frames are handed to the packages as contiguous RGB uint8 arrays.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import torch

from kptoolkit.errors import ConfigError, KptoolkitError
from kptoolkit.evaluators.base import MISSING, Evaluator

INSTALL_HINT = 'pip install "kptoolkit[eval]"'
MEDIAPIPE_REQUIREMENT = "mediapipe==0.10.21"
MODELS_PACKAGE = "face_recognition_models"
LANDMARKS_68_FILE = "shape_predictor_68_face_landmarks.dat"
LANDMARKS_5_FILE = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
NO_FACE_CHOICES = ("frame", "nan")
RELATIVE_SCORE = 0.5  # faces scoring below this share of the best detection are ignored

# BlazePose's 33 landmarks in the order MediaPipe returns them (its `PoseLandmark` enum).
POSE_LANDMARK_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
)


class MissingPackageError(KptoolkitError, ImportError):
    """An optional package that an evaluator needs is not installed or does not import."""


class ModelFileError(KptoolkitError, FileNotFoundError):
    """A model file that an evaluator needs is absent or cannot be loaded."""


def import_optional(module: str, requirement: str, evaluator: str) -> ModuleType:
    """Import `module` for `evaluator`, or raise `MissingPackageError` saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == module:
            reason = "is not installed"
        else:
            reason = f"is installed but does not import ({exc})"
        raise MissingPackageError(
            f"evaluator '{evaluator}' needs the '{module}' package, which {reason}; "
            f'install it with {INSTALL_HINT} (or pip install "{requirement}")'
        ) from exc


def packaged_model(filename: str, evaluator: str) -> Path:
    """Path of `filename` in the `face_recognition_models` package, found without importing it."""
    try:
        spec = importlib.util.find_spec(MODELS_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            f"evaluator '{evaluator}' needs the model file {filename} from the "
            f"'{MODELS_PACKAGE}' package, which is not installed; install it with "
            f"{INSTALL_HINT} (or pip install {MODELS_PACKAGE}), or pass the file's path"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / filename
        if path.is_file():
            return path
    raise ModelFileError(
        f"evaluator '{evaluator}': the installed '{MODELS_PACKAGE}' has no models/{filename}; "
        f"reinstall it (pip install --force-reinstall {MODELS_PACKAGE}) or pass the file's path"
    )


def model_file(explicit: str | Path | None, filename: str, evaluator: str) -> Path:
    """An explicitly given model path (which must exist), else the packaged `filename`."""
    if explicit is None:
        return packaged_model(filename, evaluator)
    path = Path(explicit).expanduser()
    if not path.is_file():
        raise ModelFileError(f"evaluator '{evaluator}': model file {path} does not exist")
    return path


def to_rgb_uint8(frames: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) floats in [0, 1] -> (B, H, W, 3) C-contiguous RGB uint8 on the CPU."""
    images = (frames.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return np.ascontiguousarray(images.permute(0, 2, 3, 1).cpu().numpy())


def inside_frame(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """(..., 2) pixel points -> (...) True where the point lies on a pixel of the frame."""
    x, y = points[..., 0], points[..., 1]
    return (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)


class MediaPipePoseEvaluator(Evaluator):
    """33 body landmarks from MediaPipe Pose (BlazePose full, shipped in mediapipe==0.10.21).

    Each frame is processed independently (`static_image_mode=True`, `model_complexity=1`, the
    only variant that needs no download); at most one person is detected. `keypoints` returns
    (B, 33, 2) float32 pixels, pixel centres at integer coordinates (MediaPipe's normalised x * W
    minus 0.5), in the order of `joint_names`. A landmark is (-1, -1) when its visibility is below
    `visibility`, when it falls outside the frame, or when no person is detected (then all 33
    are). `detection_confidence` is MediaPipe's `min_detection_confidence`.
    """

    kind = "pose"
    joint_names: ClassVar[tuple[str, ...]] = POSE_LANDMARK_NAMES

    def __init__(self, visibility: float = 0.5, detection_confidence: float = 0.5) -> None:
        super().__init__()
        _check_unit("visibility", visibility)
        _check_unit("detection_confidence", detection_confidence)
        self.visibility = float(visibility)
        self.detection_confidence = float(detection_confidence)
        mediapipe = import_optional("mediapipe", MEDIAPIPE_REQUIREMENT, "mediapipe_pose")
        solutions = getattr(mediapipe, "solutions", None)
        if solutions is None or not hasattr(solutions, "pose"):
            version = getattr(mediapipe, "__version__", "?")
            raise MissingPackageError(
                f"evaluator 'mediapipe_pose' needs the legacy `mediapipe.solutions.pose` API, "
                f"which mediapipe {version} lacks; install {INSTALL_HINT} "
                f'(or pip install "{MEDIAPIPE_REQUIREMENT}")'
            )
        self._pose = solutions.pose.Pose(
            static_image_mode=True,
            model_complexity=1,
            smooth_landmarks=False,
            enable_segmentation=False,
            min_detection_confidence=self.detection_confidence,
        )

    def _keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        height, width = frames.shape[-2:]
        points = np.full((len(frames), len(self.joint_names), 2), MISSING, dtype=np.float32)
        for index, image in enumerate(to_rgb_uint8(frames)):
            found = self._pose.process(image).pose_landmarks
            if found is None:
                continue
            marks = found.landmark
            xy = np.array([(m.x * width - 0.5, m.y * height - 0.5) for m in marks], np.float32)
            visible = np.array([m.visibility for m in marks]) >= self.visibility
            keep = visible & inside_frame(xy, width, height)
            points[index][keep] = xy[keep]
        return torch.from_numpy(points).to(frames.device)

    def close(self) -> None:
        """Release MediaPipe's graph; the evaluator cannot be used afterwards."""
        pose = self.__dict__.pop("_pose", None)
        if pose is not None:
            pose.close()


class _DlibFaceEvaluator(Evaluator):
    """Shared part of the dlib evaluators: import dlib, find the main face of a frame."""

    component: ClassVar[str] = ""

    def __init__(self, upsample: int) -> None:
        super().__init__()
        if isinstance(upsample, bool) or not isinstance(upsample, int) or upsample < 0:
            raise ConfigError(
                f"{self.component}: upsample must be an integer >= 0, not {upsample!r}"
            )
        self.upsample = upsample
        self.frames_seen = 0
        self.no_face_frames = 0

    def _load_dlib(self) -> None:
        self._dlib = import_optional("dlib", "dlib-bin", self.component)
        self._detector = self._dlib.get_frontal_face_detector()

    def _load(self, loader: Any, path: Path) -> Any:
        try:
            return loader(str(path))
        except RuntimeError as exc:
            raise ModelFileError(f"{self.component}: cannot load {path}: {exc}") from exc

    def _load_predictor(self, path: Path, counts: tuple[int, ...]) -> Any:
        """Load a shape predictor and check that it predicts one of `counts` points."""
        predictor = self._load(self._dlib.shape_predictor, path)
        probe = np.zeros((8, 8, 3), dtype=np.uint8)
        found = predictor(probe, self._dlib.rectangle(0, 0, 7, 7)).num_parts
        if found not in counts:
            wanted = " or ".join(str(c) for c in counts)
            raise ModelFileError(f"{self.component}: {path} predicts {found} points, not {wanted}")
        return predictor

    def _main_face(self, image: np.ndarray) -> Any:
        """The main face box: the largest confident one that the HOG detector finds, or None.

        Confident: scoring at least `RELATIVE_SCORE` times the best detection's score. The HOG
        detector's boxes come in a few sizes only, so a weak false positive (a hand, a patch of
        texture) is often as large as the real face; this keeps it from being picked.
        """
        self.frames_seen += 1
        boxes, scores, _ = self._detector.run(image, self.upsample, 0.0)
        if not boxes:
            self.no_face_frames += 1
            return None
        floor = RELATIVE_SCORE * max(scores)
        confident = [box for box, score in zip(boxes, scores, strict=True) if score >= floor]
        return max(confident, key=lambda box: box.width() * box.height())


class DlibFaceLandmarksEvaluator(_DlibFaceEvaluator):
    """68 face landmarks (iBUG 300-W layout) from dlib's shape predictor on the frame's main face.

    The face box comes from dlib's HOG frontal-face detector, run on the frame upsampled
    `upsample` times (each doubles the size: faces down to about 80 / 2**upsample pixels are
    found; more is slower). When it finds several, the largest of those scoring at least half
    the best detection's score is used (weak false positives are often as large as the real face
    in the detector's few box sizes). `keypoints` returns (B, 68, 2) float32 integer pixel
    indices (pixel centres); every point of a frame without a detected face is (-1, -1), as is a
    point predicted outside the frame. `landmark_model` overrides the packaged
    `shape_predictor_68_face_landmarks.dat`. `no_face_frames` counts the frames without a face.
    """

    kind = "pose"
    component = "dlib_face_landmarks"
    missing_as_none = True
    num_points: ClassVar[int] = 68

    def __init__(self, landmark_model: str | None = None, upsample: int = 1) -> None:
        super().__init__(upsample)
        self.landmark_model = model_file(landmark_model, LANDMARKS_68_FILE, self.component)
        self._load_dlib()
        self._predictor = self._load_predictor(self.landmark_model, (self.num_points,))

    def _keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        height, width = frames.shape[-2:]
        points = np.full((len(frames), self.num_points, 2), MISSING, dtype=np.float32)
        for index, image in enumerate(to_rgb_uint8(frames)):
            box = self._main_face(image)
            if box is None:
                continue
            shape = self._predictor(image, box)
            xy = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
            keep = inside_frame(xy, width, height)
            points[index][keep] = xy[keep]
        return torch.from_numpy(points).to(frames.device)


class DlibFaceIdEvaluator(_DlibFaceEvaluator):
    """128-d face embeddings from dlib's ResNet face-recognition model, for AED.

    The main face found by dlib's HOG detector (upsampled `upsample` times; the largest of the
    detections scoring at least half the best one's score) is aligned with a
    shape predictor (`landmark_model`: the packaged 5-point one when shipped, else the 68-point
    one; either works) and embedded with `recognition_model` (default: the packaged
    `dlib_face_recognition_resnet_model_v1.dat`). Embeddings are dlib's raw descriptors (not
    re-normalised), float32 (B, 128); dlib calls two faces the same person below a Euclidean
    distance of 0.6, i.e. a squared distance (AED's unit) of 0.36.

    A frame without a detected face never stops an evaluation. With `no_face="frame"` (default)
    the whole frame is used as the face box, so a generated frame that lost the face is still
    compared (and typically lands far away); with `no_face="nan"` its embedding is NaN, which AED
    skips. Either way `no_face_frames` counts such frames and a warning is issued once.
    """

    kind = "identity"
    component = "dlib_face_id"
    embedding_dim: ClassVar[int] = 128

    def __init__(
        self,
        recognition_model: str | None = None,
        landmark_model: str | None = None,
        upsample: int = 1,
        no_face: str = "frame",
    ) -> None:
        super().__init__(upsample)
        if no_face not in NO_FACE_CHOICES:
            raise ConfigError(
                f"{self.component}: no_face must be one of {', '.join(NO_FACE_CHOICES)}, "
                f"not {no_face!r}"
            )
        self.no_face = no_face
        self.recognition_model = model_file(recognition_model, RECOGNITION_FILE, self.component)
        if landmark_model is None:
            try:
                self.landmark_model = packaged_model(LANDMARKS_5_FILE, self.component)
            except ModelFileError:
                self.landmark_model = packaged_model(LANDMARKS_68_FILE, self.component)
        else:
            self.landmark_model = model_file(landmark_model, LANDMARKS_5_FILE, self.component)
        self._load_dlib()
        self._predictor = self._load_predictor(self.landmark_model, (5, 68))
        self._recogniser = self._load(self._dlib.face_recognition_model_v1, self.recognition_model)
        self._warned = False

    def _embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        height, width = frames.shape[-2:]
        out = np.full((len(frames), self.embedding_dim), np.nan, dtype=np.float32)
        for index, image in enumerate(to_rgb_uint8(frames)):
            box = self._main_face(image)
            if box is None:
                self._warn_no_face()
                if self.no_face == "nan":
                    continue
                box = self._dlib.rectangle(0, 0, width - 1, height - 1)
            shape = self._predictor(image, box)
            out[index] = np.asarray(self._recogniser.compute_face_descriptor(image, shape))
        return torch.from_numpy(out).to(frames.device)

    def _warn_no_face(self) -> None:
        if self._warned:
            return
        self._warned = True
        action = (
            "using the whole frame as the face box"
            if self.no_face == "frame"
            else "its embedding is NaN and AED skips it"
        )
        warnings.warn(
            f"{self.component}: no face detected in a frame; {action} (counted in "
            "no_face_frames; this warning is shown once per evaluator)",
            RuntimeWarning,
            stacklevel=4,
        )


def _check_unit(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError(f"mediapipe_pose: {name} must be a number in [0, 1], not {value!r}")
