"""Evaluators on models shipped in pip packages: MediaPipe pose, dlib face landmarks and ids.

Tests that run a model skip when its package is missing, except under CI (`CI` set), which
installs the eval extra as the README's Quick start says: there a missing package fails. The
error-path and listing tests run without any of the optional packages.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import socket
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kptoolkit
from kptoolkit.cli.main import main
from kptoolkit.errors import ConfigError, KptoolkitError
from kptoolkit.evaluators import package_models
from kptoolkit.evaluators.package_models import (
    INSTALL_HINT,
    DlibFaceIdEvaluator,
    DlibFaceLandmarksEvaluator,
    MediaPipePoseEvaluator,
    MissingPackageError,
    ModelFileError,
    inside_frame,
    to_rgb_uint8,
)
from kptoolkit.metrics.base import FramePairs
from kptoolkit.metrics.keypoint_metrics import AedMetric
from kptoolkit.registry.introspect import inspect_target
from kptoolkit.registry.registries import EVALUATORS

NAMES = {
    "mediapipe_pose": MediaPipePoseEvaluator,
    "dlib_face_landmarks": DlibFaceLandmarksEvaluator,
    "dlib_face_id": DlibFaceIdEvaluator,
}
POSE = {name: i for i, name in enumerate(package_models.POSE_LANDMARK_NAMES)}
# CI installs the eval extra and scikit-image (.ci/run): there these tests must run, not skip
IN_CI = bool(os.environ.get("CI"))


def need(module: str) -> ModuleType:
    """Import `module`; when it is missing, skip (fail under CI)."""
    return importlib.import_module(module) if IN_CI else pytest.importorskip(module)


def models_folder() -> Path:
    """The face_recognition_models package's models/ folder (found without importing it)."""
    # not imported: importing face_recognition_models fails without pkg_resources
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        if IN_CI:
            pytest.fail("face_recognition_models is not installed (CI installs the eval extra)")
        pytest.skip("face_recognition_models is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def need_dlib() -> ModuleType:
    """dlib, once dlib and the face_recognition_models files are known to be installed."""
    dlib = need("dlib")
    models_folder()
    return dlib


def as_frames(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    return as_frames(
        need("skimage.data").astronaut()
    )  # 512 x 512, face box about x 175-265, y 76-170


@pytest.fixture(scope="module")
def landmarks() -> DlibFaceLandmarksEvaluator:
    need_dlib()
    return EVALUATORS.create("dlib_face_landmarks")


@pytest.fixture(scope="module")
def face_id() -> DlibFaceIdEvaluator:
    need_dlib()
    return EVALUATORS.create("dlib_face_id", upsample=0)  # 512 px frames: an 88 px face


@pytest.fixture(scope="module")
def pose() -> Iterator[MediaPipePoseEvaluator]:
    need("mediapipe")
    evaluator = EVALUATORS.create("mediapipe_pose")
    yield evaluator
    evaluator.close()


# -- without the optional packages ------------------------------------------------------------


def test_module_has_no_top_level_import_of_optional_packages() -> None:
    tree = ast.parse(Path(package_models.__file__).read_text(encoding="utf-8"))
    imported = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in stmt.names}
        elif isinstance(stmt, ast.ImportFrom) and stmt.module:
            imported.add(stmt.module.split(".")[0])
    assert not imported & {"mediapipe", "dlib", "face_recognition_models", "face_recognition"}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_registered_and_described_statically(name: str) -> None:
    assert name in EVALUATORS.names()
    info = inspect_target(f"kptoolkit.evaluators.package_models:{NAMES[name].__name__}")
    assert info.problem is None and info.description
    assert EVALUATORS.get(name) is NAMES[name]


def test_list_and_info_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--kind", "evaluators"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in NAMES)
    assert main(["info", "dlib_face_landmarks"]) == 0
    out = capsys.readouterr().out
    assert "landmark_model" in out and "upsample" in out and "68 face landmarks" in out


@pytest.mark.parametrize(
    ("name", "module", "mention"),
    [
        ("mediapipe_pose", "mediapipe", "mediapipe==0.10.21"),
        ("dlib_face_landmarks", "dlib", "dlib-bin"),
        ("dlib_face_id", "dlib", "dlib-bin"),
    ],
)
def test_missing_package_fails_fast_with_install_hint(
    name: str, module: str, mention: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    dummy = tmp_path / "model.dat"
    dummy.write_bytes(b"")  # explicit model paths: only the package itself is missing
    accepted = inspect.signature(NAMES[name]).parameters
    params = {p: str(dummy) for p in ("landmark_model", "recognition_model") if p in accepted}
    with pytest.raises(MissingPackageError) as caught:
        EVALUATORS.create(name, **params)
    assert isinstance(caught.value, KptoolkitError)
    message = str(caught.value)
    assert INSTALL_HINT in message and mention in message and name in message


@pytest.mark.parametrize("name", ["dlib_face_landmarks", "dlib_face_id"])
def test_missing_model_package_names_it(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    with pytest.raises(MissingPackageError, match="face_recognition_models") as caught:
        EVALUATORS.create(name)
    assert INSTALL_HINT in str(caught.value)


def test_metrics_command_reports_the_missing_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    args = ["metrics", "--real", str(tmp_path), "--fake", str(tmp_path)]
    assert main([*args, "--evaluator", "mediapipe_pose"]) == 1
    assert INSTALL_HINT in capsys.readouterr().err


def test_explicit_model_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        DlibFaceLandmarksEvaluator(landmark_model=str(tmp_path / "absent.dat"))
    with pytest.raises(ModelFileError, match="does not exist"):
        DlibFaceIdEvaluator(recognition_model=str(tmp_path / "absent.dat"))


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("mediapipe_pose", {"visibility": 1.5}),
        ("mediapipe_pose", {"detection_confidence": -0.1}),
        ("dlib_face_landmarks", {"upsample": -1}),
        ("dlib_face_id", {"upsample": 0.5}),
        ("dlib_face_id", {"no_face": "drop"}),
    ],
)
def test_invalid_parameters(name: str, params: dict) -> None:
    with pytest.raises(ConfigError):
        EVALUATORS.create(name, **params)


def test_frame_conversion_and_frame_bounds() -> None:
    frames = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    images = to_rgb_uint8(frames)
    assert images.shape == (2, 5, 7, 3) and images.dtype == np.uint8
    assert images[1].flags["C_CONTIGUOUS"]
    back = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    assert (back - frames).abs().max() <= 0.5 / 255 + 1e-6
    points = np.array([[-0.5, 0.0], [6.5, 4.5], [-0.6, 0.0], [0.0, 4.6]])
    assert inside_frame(points, 7, 5).tolist() == [True, True, False, False]


# -- dlib face landmarks ------------------------------------------------------------------------


def test_dlib_landmarks_on_a_face(
    landmarks: DlibFaceLandmarksEvaluator, astronaut: torch.Tensor
) -> None:
    points = landmarks.keypoints(astronaut)
    assert points.shape == (1, 68, 2) and points.dtype == torch.float32
    xy = points[0]
    assert (xy != -1).all() and (xy == xy.round()).all()  # integer pixel indices
    assert (xy[:, 0] > 160).all() and (xy[:, 0] < 290).all()  # about the face box
    assert (xy[:, 1] > 60).all() and (xy[:, 1] < 195).all()


def test_dlib_landmarks_batch_flip_and_blank(
    landmarks: DlibFaceLandmarksEvaluator, astronaut: torch.Tensor
) -> None:
    frames = torch.cat([astronaut, astronaut.flip(-1), torch.zeros_like(astronaut)])
    before = landmarks.no_face_frames
    points = landmarks.keypoints(frames)
    assert points.shape == (3, 68, 2) and points.dtype == torch.float32
    assert (points[2] == -1).all() and landmarks.no_face_frames == before + 1
    width = astronaut.shape[-1]
    mirrored = width - 1 - points[1, :, 0].mean()  # a pixel-centre flip maps x to W - 1 - x
    assert abs(mirrored - points[0, :, 0].mean()) < 1.5


def test_dlib_upsample_finds_small_faces(
    landmarks: DlibFaceLandmarksEvaluator, astronaut: torch.Tensor
) -> None:
    small = F.interpolate(astronaut, size=(256, 256), mode="area")  # face about 45 px wide
    assert landmarks.upsample == 1 and (landmarks.keypoints(small) != -1).all()
    landmarks.upsample = 0  # the HOG detector alone finds faces of about 80 px and more
    try:
        assert (landmarks.keypoints(small) == -1).all()
    finally:
        landmarks.upsample = 1


def test_dlib_landmarks_reject_a_predictor_of_another_size(
    landmarks: DlibFaceLandmarksEvaluator,
) -> None:
    five = Path(landmarks.landmark_model).with_name("shape_predictor_5_face_landmarks.dat")
    if not five.is_file():
        pytest.skip("face_recognition_models ships no 5-point predictor")
    with pytest.raises(ModelFileError, match="predicts 5 points, not 68"):
        DlibFaceLandmarksEvaluator(landmark_model=str(five))


# -- dlib face embeddings -----------------------------------------------------------------------


def test_dlib_embeddings_distances(face_id: DlibFaceIdEvaluator, astronaut: torch.Tensor) -> None:
    crop = F.interpolate(astronaut[..., 40:472, 60:492], size=(512, 512), mode="bilinear")
    shifted = torch.roll(astronaut, (20, -24), dims=(2, 3))
    frames = torch.cat([astronaut, astronaut, astronaut.flip(-1), shifted, crop])
    embeddings = face_id.embeddings(frames)
    assert embeddings.shape == (5, 128) and embeddings.dtype == torch.float32
    norms = embeddings.norm(dim=1)
    assert ((norms > 0.5) & (norms < 2.0)).all()  # dlib's raw descriptors: not unit norm
    squared = (embeddings - embeddings[0]).pow(2).sum(1)
    assert squared[1] < 1e-8
    assert (squared[2:] < 0.1).all()  # same person: far below dlib's 0.36 (0.6 ** 2)


def test_dlib_no_face_falls_back_to_the_whole_frame(astronaut: torch.Tensor) -> None:
    need_dlib()
    cat = as_frames(
        need("skimage.data").chelsea()
    )  # 300 x 451: a cat's face, which the detector ignores
    noise = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    evaluator = DlibFaceIdEvaluator(upsample=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        face = evaluator.embeddings(astronaut)
        others = torch.cat([evaluator.embeddings(cat), evaluator.embeddings(noise)])
    assert len([w for w in caught if "no face" in str(w.message)]) == 1  # warned once
    assert evaluator.no_face_frames == 2 and evaluator.frames_seen == 3
    assert torch.isfinite(others).all()
    assert ((others - face).pow(2).sum(1) > 0.3).all()  # far from the face


def test_dlib_no_face_nan_is_skipped_by_aed(astronaut: torch.Tensor) -> None:
    need_dlib()
    evaluator = DlibFaceIdEvaluator(upsample=0, no_face="nan")
    blank = torch.zeros_like(astronaut)
    with pytest.warns(RuntimeWarning, match="NaN"):
        embeddings = evaluator.embeddings(torch.cat([astronaut, blank]))
    assert torch.isfinite(embeddings[0]).all() and torch.isnan(embeddings[1]).all()
    pair = torch.cat([astronaut, astronaut])
    values = AedMetric().frame_values(
        FramePairs(pair, pair, real_embeddings=embeddings[[0, 0]], fake_embeddings=embeddings)
    )
    assert values[0] == 0 and torch.isnan(values[1])  # the metric skips NaN frames


def test_scoring_folders_with_dlib_evaluators(
    tmp_path: Path,
    landmarks: DlibFaceLandmarksEvaluator,
    astronaut: torch.Tensor,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kptoolkit.data.video_io import write_png_frames
    from kptoolkit.engine.evaluate import evaluate_folders
    from kptoolkit.registry.registries import create_metric

    small = F.interpolate(astronaut, size=(256, 256), mode="area")
    real = to_rgb_uint8(torch.cat([small, small.flip(-1)]))
    # every frame 2 pixels to the right; in the first, the detector also finds a weak false
    # positive (the mission patch on her suit) as large as the face: it must not be picked
    fake = np.roll(real, 2, axis=2)
    write_png_frames(real, tmp_path / "real" / "a#1")
    write_png_frames(fake, tmp_path / "fake" / "a#1")
    metrics = {name: create_metric(name) for name in ("akd", "mkr")}
    scores = evaluate_folders(
        tmp_path / "real", tmp_path / "fake", metrics, [landmarks], progress=False
    ).values()
    assert scores["akd"] < 3.0 and scores["mkr"] == 0.0  # ~1: (2 px in x + 0 in y) / 2
    # the command line builds its evaluator by name (the image metrics' imports take seconds)
    args = ["metrics", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake")]
    assert main([*args, "--evaluator", "dlib_face_id", "--metrics", "aed"]) == 0
    first = capsys.readouterr().out.splitlines()[0].split()  # "aed <score>", then a summary
    assert first[0] == "aed" and float(first[1]) < 0.1


# -- MediaPipe pose -----------------------------------------------------------------------------


def test_mediapipe_joint_names_match_the_package(pose: MediaPipePoseEvaluator) -> None:
    import mediapipe

    enum = mediapipe.solutions.pose.PoseLandmark
    assert tuple(m.name.lower() for m in enum) == pose.joint_names


def test_mediapipe_upper_body(pose: MediaPipePoseEvaluator, astronaut: torch.Tensor) -> None:
    points = pose.keypoints(astronaut)
    assert points.shape == (1, 33, 2) and points.dtype == torch.float32
    xy = points[0]
    nose, left, right = xy[POSE["nose"]], xy[POSE["left_shoulder"]], xy[POSE["right_shoulder"]]
    assert (nose != -1).all() and (left != -1).all() and (right != -1).all()
    assert 175 < nose[0] < 265 and 76 < nose[1] < 170  # inside the face
    assert left[0] > nose[0] > right[0]  # she faces the camera: her left is on the image right
    assert nose[1] + 60 < left[1] < 400 and nose[1] + 60 < right[1] < 400
    assert (xy[POSE["left_ankle"]] == -1).all() and (xy[POSE["right_ankle"]] == -1).all()


def test_mediapipe_batch_and_blank(pose: MediaPipePoseEvaluator, astronaut: torch.Tensor) -> None:
    frames = torch.cat([torch.zeros_like(astronaut), astronaut.flip(-1)])
    points = pose.keypoints(frames)
    assert points.shape == (2, 33, 2) and points.dtype == torch.float32
    assert (points[0] == -1).all()  # nobody there: every landmark missing
    single = pose.keypoints(astronaut.flip(-1))
    assert torch.equal(points[1], single[0])  # frames are independent


def test_mediapipe_visibility_threshold(astronaut: torch.Tensor) -> None:
    need("mediapipe")
    strict, lenient = MediaPipePoseEvaluator(visibility=0.99), MediaPipePoseEvaluator(0.0)
    try:
        few, many = [(e.keypoints(astronaut)[0] != -1).all(-1) for e in (strict, lenient)]
    finally:
        strict.close()
        lenient.close()
    assert few.sum() < many.sum() and not (few & ~many).any()


# -- offline, from the installed packages, the same numbers as the packages -------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No network and nothing written into the model packages: a download attempt fails."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args} {kwargs}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    folders = [package_folder("mediapipe"), models_folder()]
    before = [sorted(folder.rglob("*")) for folder in folders]
    yield
    assert [sorted(folder.rglob("*")) for folder in folders] == before, "a model was written"


def package_folder(module: str) -> Path:
    """The folder of an installed top-level package."""
    return Path(need(module).__file__).parent


def test_evaluators_load_from_their_entry_points_and_packages_offline(
    offline: None, astronaut: torch.Tensor
) -> None:
    points = importlib.metadata.entry_points(group="kptoolkit.evaluators")
    for name, cls in NAMES.items():
        (entry,) = [p for p in points if p.name == name]
        assert entry.value == f"{package_models.__name__}:{cls.__name__}"
        assert entry.dist is not None and entry.dist.name == "kptoolkit"
    pose = kptoolkit.create_evaluator("mediapipe_pose")
    try:
        assert (pose.keypoints(astronaut)[0, POSE["nose"]] != -1).all()
    finally:
        pose.close()
    # the BlazePose "full" model ships in the wheel; the lite and heavy ones would be downloaded
    full = package_folder("mediapipe") / "modules" / "pose_landmark" / "pose_landmark_full.tflite"
    assert full.is_file()
    landmarks = kptoolkit.create_evaluator("dlib_face_landmarks")
    face_id = kptoolkit.create_evaluator("dlib_face_id", upsample=0)
    for path in (landmarks.landmark_model, face_id.landmark_model, face_id.recognition_model):
        assert Path(path).parent == models_folder()  # the packaged files, not a download
    assert (landmarks.keypoints(astronaut) != -1).all()
    assert torch.isfinite(face_id.embeddings(astronaut)).all()


def test_mediapipe_pose_equals_calling_mediapipe(
    offline: None, pose: MediaPipePoseEvaluator, astronaut: torch.Tensor
) -> None:
    mediapipe = need("mediapipe")
    image = to_rgb_uint8(astronaut)[0]
    height, width = image.shape[:2]
    with mediapipe.solutions.pose.Pose(
        static_image_mode=True, model_complexity=1, min_detection_confidence=0.5
    ) as direct:
        marks = direct.process(image).pose_landmarks.landmark
    expected = np.array([(m.x * width - 0.5, m.y * height - 0.5) for m in marks], np.float32)
    visible = np.array([m.visibility for m in marks]) >= pose.visibility
    ours = pose.keypoints(astronaut)[0].numpy()
    assert visible.sum() >= 10  # the face and the shoulders at least
    assert np.array_equal(ours[visible], expected[visible])
    assert (ours[~visible] == -1).all()


def dlib_directly(image: np.ndarray, upsample: int) -> tuple[ModuleType, object]:
    """dlib and the best-scoring box that its HOG detector finds on `image`, called directly."""
    dlib = need_dlib()
    boxes, scores, _ = dlib.get_frontal_face_detector().run(image, upsample, 0.0)
    return dlib, boxes[int(np.argmax(scores))]


def test_dlib_landmarks_equal_calling_dlib(
    offline: None, landmarks: DlibFaceLandmarksEvaluator, astronaut: torch.Tensor
) -> None:
    image = to_rgb_uint8(astronaut)[0]
    dlib, face = dlib_directly(image, landmarks.upsample)
    predictor = dlib.shape_predictor(str(models_folder() / "shape_predictor_68_face_landmarks.dat"))
    expected = np.array([(p.x, p.y) for p in predictor(image, face).parts()], np.float32)
    assert np.array_equal(landmarks.keypoints(astronaut)[0].numpy(), expected)


def test_dlib_face_id_equals_calling_dlib(
    offline: None, face_id: DlibFaceIdEvaluator, astronaut: torch.Tensor
) -> None:
    image = to_rgb_uint8(astronaut)[0]
    dlib, face = dlib_directly(image, face_id.upsample)
    models = models_folder()
    shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))(image, face)
    recogniser = dlib.face_recognition_model_v1(
        str(models / "dlib_face_recognition_resnet_model_v1.dat")
    )
    expected = np.array(recogniser.compute_face_descriptor(image, shape), np.float32)
    assert np.array_equal(face_id.embeddings(astronaut)[0].numpy(), expected)
