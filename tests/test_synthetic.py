"""Synthetic puppets: rendering, ground truth, determinism, split by identity, dataset layout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import attrs
import numpy as np
import pytest
from PIL import Image

from kptoolkit.data.puppets.model import (
    JOINT_NAMES,
    PART_NAMES,
    Motion,
    PartStyle,
    fit_in_frame,
    forward_kinematics,
    visibility,
)
from kptoolkit.data.puppets.render import render_video, sample_background
from kptoolkit.data.puppets.sampling import sample_identity, sample_motion
from kptoolkit.data.puppets.style import STYLES, motion_statistics
from kptoolkit.data.puppets.writer import generate_dataset, load_groundtruth, read_manifest
from kptoolkit.errors import KptoolkitError

NAME = re.compile(r"^(id\d{4})#clip\d{2}$")
BONES = [("head", "neck"), ("neck", "pelvis")] + [
    (f"{side}_{a}", f"{side}_{b}")
    for side in "rl"
    for a, b in [("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle")]
]


def _tree(root: Path) -> dict[str, bytes]:
    """Every PNG under train/ and test/, by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for split in ("train", "test")
        for p in sorted((root / split).rglob("*.png"))
    }


def _groundtruth(root: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted((root / "groundtruth").rglob("*.npz")):
        with np.load(path) as data:
            out[str(path.relative_to(root))] = {k: data[k] for k in data.files}
    return out


def _still(frames: int, centre: tuple[float, float], scale: float = 0.8) -> Motion:
    """The rest pose, held still at `centre` (fractions of the frame)."""
    rest = sample_motion(0, frames, amplitude=0.0)
    return Motion(
        angles=rest.angles,
        centre=np.tile(np.asarray(centre, dtype=float), (frames, 1)),
        scale=np.full(frames, scale),
    )


# ------------------------------------------------------------------------------ rendering


def test_render_video_shapes_dtypes_and_ranges() -> None:
    frames, joints, visible = render_video(0, 6, 64)
    assert len(JOINT_NAMES) == 15 and len(set(JOINT_NAMES)) == 15
    assert frames.shape == (6, 64, 64, 3) and frames.dtype == np.uint8
    assert joints.shape == (6, 15, 2) and joints.dtype == np.float32
    assert visible.shape == (6, 15) and visible.dtype == bool
    assert np.isfinite(joints).all()
    assert frames.std() > 20  # a picture, not a flat frame
    # a standing figure: head above pelvis above ankles (y grows downwards)
    y = joints[..., 1]
    head, pelvis = JOINT_NAMES.index("head"), JOINT_NAMES.index("pelvis")
    ankles = [JOINT_NAMES.index("r_ankle"), JOINT_NAMES.index("l_ankle")]
    assert (y[:, head] < y[:, pelvis]).all() and (y[:, pelvis, None] < y[:, ankles]).all()


@pytest.mark.parametrize("size", [32, 100, 512])
def test_render_rejects_unsupported_sizes(size: int) -> None:
    with pytest.raises(ValueError, match="size"):
        render_video(0, 2, size)


@pytest.mark.parametrize("size", [128, 256])
def test_render_supports_larger_sizes(size: int) -> None:
    frames, joints, _ = render_video(1, 2, size)
    small = render_video(1, 2, 64)[1]
    assert frames.shape == (2, size, size, 3)
    # the same clip at another size: the same pose, scaled about the frame
    np.testing.assert_allclose((joints + 0.5) / size, (small + 0.5) / 64, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_motion_is_smooth_and_changes_over_the_clip(seed: int) -> None:
    frames, joints, _ = render_video(seed, 40, 64)
    step = np.linalg.norm(np.diff(joints, axis=0), axis=-1)  # (T-1, 15) pixels
    travel = np.linalg.norm(joints - joints[:1], axis=-1).max(axis=0)  # per joint
    assert step.max() < 5.0
    assert travel.max() > 8.0 and travel.max() > 4 * step.max()
    pixels = frames.astype(float)
    consecutive = np.abs(np.diff(pixels, axis=0)).mean(axis=(1, 2, 3))
    assert np.abs(pixels[-1] - pixels[0]).mean() > 2 * consecutive.max()


def test_identity_keeps_its_look_across_motions() -> None:
    identity = sample_identity(5)
    background = np.zeros((64, 64, 3), np.uint8)
    still = _still(1, (0.5, 0.5))
    same = [
        render_video(k, 1, 64, identity=identity, motion=still, background=background)[0]
        for k in (1, 2)
    ]
    other = render_video(3, 1, 64, motion=still, background=background)[0]
    assert np.array_equal(same[0], same[1])
    assert not np.array_equal(same[0], other)


# ------------------------------------------------------------------------------ ground truth


@pytest.mark.parametrize("seed", [0, 7])
def test_visible_joints_lie_on_the_figure(seed: int) -> None:
    background = sample_background(100 + seed, 64)
    frames, joints, visible = render_video(seed, 8, 64, background=background)
    assert visible.any()
    for t, j in zip(*np.nonzero(visible), strict=True):
        x, y = np.rint(joints[t, j]).astype(int)
        assert (frames[t, y, x] != background[y, x]).any(), (t, JOINT_NAMES[j])
    # the middle of every bone is on the figure too (limbs and torso are solid)
    for a, b in BONES:
        middle = np.rint((joints[:, JOINT_NAMES.index(a)] + joints[:, JOINT_NAMES.index(b)]) / 2)
        for t, (x, y) in enumerate(middle.astype(int)):
            if 0 <= x < 64 and 0 <= y < 64:
                assert (frames[t, y, x] != background[y, x]).any(), (t, a, b)


def test_background_is_untouched_away_from_the_figure() -> None:
    background = sample_background(3, 64)
    motion = _still(2, (0.5, 0.5))
    frames, joints, _ = render_video(3, 2, 64, motion=motion, background=background)
    # the puppet stands in the middle: a band along the left and right edges stays background
    assert joints[..., 0].min() > 10 and joints[..., 0].max() < 53
    for band in (slice(0, 6), slice(58, 64)):
        np.testing.assert_array_equal(
            frames[:, :, band], np.repeat(background[None, :, band], 2, 0)
        )
    middle = frames[:, :, 24:40] != background[None, :, 24:40]
    assert middle.any(axis=-1).mean() > 0.3


def _red_head_only(identity) -> object:
    """The identity with a pure red, untextured head and no hair, everything else black."""
    black = PartStyle((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), "plain")
    red = PartStyle((255.0, 0.0, 0.0), (255.0, 0.0, 0.0), "plain")
    styles = {name: red if name == "head" else black for name in PART_NAMES}
    return attrs.evolve(identity, styles=styles, hair=(0.0, 0.0, 0.0), hairline=2.0)


@pytest.mark.parametrize("tilt", [0.0, 0.35])
def test_head_joint_is_the_centroid_of_the_rendered_head(tilt: float) -> None:
    identity = _red_head_only(sample_identity(11))
    offsets = np.array([[0.0, 0.0], [0.3, 0.7], [0.5, 0.5], [-0.25, 0.4]])  # sub-pixel shifts
    motion = _still(len(offsets), (0.5, 0.5))
    motion.centre = 0.45 + offsets / 64
    motion.angles[:, 1] = tilt  # the head's own angle: an ellipse stays symmetric about its centre
    black = np.zeros((64, 64, 3), np.uint8)
    frames, joints, _ = render_video(
        0, len(offsets), 64, identity=identity, motion=motion, background=black
    )
    rows, cols = np.mgrid[0:64, 0:64]
    head = joints[:, JOINT_NAMES.index("head")]
    for t in range(len(offsets)):
        weight = frames[t, :, :, 0].astype(float)
        assert weight.sum() > 255 * 10  # the head covers a good number of pixels
        centroid = np.array([(weight * cols).sum(), (weight * rows).sum()]) / weight.sum()
        np.testing.assert_allclose(centroid, head[t], atol=0.2)
    # the joints follow the sub-pixel shifts of the figure
    np.testing.assert_allclose(head - head[0], offsets, atol=1e-3)


def test_edges_are_anti_aliased() -> None:
    identity = _red_head_only(sample_identity(11))
    shifts = np.stack([np.linspace(0, 1, 12), np.linspace(0, 0.7, 12)], axis=1)
    motion = _still(len(shifts), (0.5, 0.5))
    motion.centre = 0.45 + shifts / 64
    black = np.zeros((64, 64, 3), np.uint8)
    red = render_video(0, len(shifts), 64, identity=identity, motion=motion, background=black)[0]
    red = red[..., 0].astype(float)
    # partly covered pixels along the outline (the shaded head itself is never darker than this)
    assert (((red > 0) & (red < 100)).sum(axis=(1, 2)) >= 4).all()
    # coverage tracks area: sub-pixel shifts leave the head's total intensity unchanged
    mass = red.sum(axis=(1, 2))
    assert mass.std() / mass.mean() < 0.005


def test_joints_outside_the_frame_are_not_visible() -> None:
    background = sample_background(4, 64)
    motion = _still(3, (0.5, 0.5))
    motion.centre = np.array([[0.05, 0.5], [0.5, 1.0], [3.0, 0.5]])  # left edge, low, far away
    frames, joints, visible = render_video(4, 3, 64, motion=motion, background=background)
    inside = ((joints >= -0.5) & (joints <= 63.5)).all(axis=-1)
    np.testing.assert_array_equal(visible, inside)
    index = JOINT_NAMES.index
    # straddling the left edge: the right side (image left) is out, the left side in
    assert not visible[0, index("r_wrist")] and visible[0, index("l_wrist")]
    # pushed down: ankles below the frame, head still in it
    assert not visible[1, index("r_ankle")] and not visible[1, index("l_ankle")]
    assert visible[1, index("head")]
    # far away: nothing visible and nothing drawn
    assert not visible[2].any()
    assert np.array_equal(frames[2], background)


# ------------------------------------------------------------------------------ dataset


def test_generate_is_deterministic_and_independent_of_workers(tmp_path: Path) -> None:
    kwargs = dict(videos=3, frames=3, size=64, clips_per_identity=2, progress=False)
    generate_dataset(tmp_path / "a", seed=5, workers=1, **kwargs)
    generate_dataset(tmp_path / "b", seed=5, workers=2, **kwargs)
    generate_dataset(tmp_path / "c", seed=6, workers=1, **kwargs)
    a, b, c = (_tree(tmp_path / n) for n in "abc")
    assert len(a) == 9 and a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)
    truth_a, truth_b = _groundtruth(tmp_path / "a"), _groundtruth(tmp_path / "b")
    assert truth_a.keys() == truth_b.keys() and len(truth_a) == 3
    for key, arrays in truth_a.items():
        for name, array in arrays.items():
            np.testing.assert_array_equal(array, truth_b[key][name])
    truth_c = _groundtruth(tmp_path / "c")
    assert any(not np.array_equal(truth_a[k]["joints"], truth_c[k]["joints"]) for k in truth_a)


def test_layout_manifest_and_split_by_identity(tmp_path: Path) -> None:
    out = tmp_path / "puppets"
    manifest = generate_dataset(
        out, videos=7, frames=2, clips_per_identity=2, test_fraction=0.3, workers=1, progress=False
    )
    assert manifest == read_manifest(out) == json.loads((out / "dataset.json").read_text())
    assert manifest["size"] == 64 and manifest["frames"] == 2 and manifest["seed"] == 0
    assert manifest["joint_names"] == list(JOINT_NAMES)
    videos = manifest["videos"]
    assert manifest["counts"] == {split: len(videos[split]) for split in ("train", "test")}
    assert manifest["counts"]["train"] + manifest["counts"]["test"] == 7
    assert 1 <= manifest["counts"]["test"] <= 3
    identities = {s: {NAME.match(v).group(1) for v in videos[s]} for s in ("train", "test")}
    assert identities["train"] and identities["test"]
    assert not identities["train"] & identities["test"]
    for split in ("train", "test"):
        assert sorted(p.name for p in (out / split).iterdir()) == sorted(videos[split])
        for video in videos[split]:
            files = sorted(p.name for p in (out / split / video).iterdir())
            assert files == ["0000000.png", "0000001.png"]
            with Image.open(out / split / video / files[0]) as image:
                assert image.mode == "RGB" and image.size == (64, 64)
            joints, visible = load_groundtruth(out, split, video)
            assert joints.shape == (2, 15, 2) and joints.dtype == np.float32
            assert visible.shape == (2, 15) and visible.dtype == bool
    # the manifest is written last
    written = [p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()]
    assert (out / "dataset.json").stat().st_mtime_ns == max(written)


def test_clips_of_one_identity_differ(tmp_path: Path) -> None:
    generate_dataset(
        tmp_path,
        videos=2,
        frames=2,
        clips_per_identity=2,
        test_fraction=0.0,
        workers=1,
        progress=False,
    )
    first, second = (
        np.asarray(Image.open(tmp_path / "train" / f"id0000#clip0{c}" / "0000000.png"))
        for c in (0, 1)
    )
    assert not np.array_equal(first, second)


def test_small_datasets_still_split_by_identity(tmp_path: Path) -> None:
    two = generate_dataset(tmp_path / "two", videos=2, frames=2, workers=1, progress=False)
    assert two["counts"] == {"train": 1, "test": 1}
    one = generate_dataset(tmp_path / "one", videos=1, frames=2, workers=1, progress=False)
    assert one["counts"] == {"train": 1, "test": 0}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"videos": 0}, "videos"),
        ({"frames": 1}, "frames"),
        ({"size": 96}, "size"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"clips_per_identity": 0}, "clips_per_identity"),
        ({"workers": 0}, "workers"),
    ],
)
def test_generate_validates_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    arguments = {"videos": 2, "frames": 2, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match) as error:
        generate_dataset(tmp_path / "out", **arguments)
    assert isinstance(error.value, KptoolkitError)
    assert not (tmp_path / "out").exists()


def test_refuses_a_foreign_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty") as error:
        generate_dataset(tmp_path, videos=2, frames=2, workers=1, progress=False)
    assert isinstance(error.value, KptoolkitError)  # the command line reports it in one line
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrites_a_previous_synthetic_dataset(tmp_path: Path) -> None:
    generate_dataset(tmp_path, videos=5, frames=2, clips_per_identity=1, workers=1, progress=False)
    manifest = generate_dataset(tmp_path, videos=2, frames=3, workers=1, progress=False)
    assert read_manifest(tmp_path) == manifest
    for split in ("train", "test"):
        assert sorted(p.name for p in (tmp_path / split).iterdir()) == manifest["videos"][split]
        npz = sorted(p.stem for p in (tmp_path / "groundtruth" / split).iterdir())
        assert npz == manifest["videos"][split]


def test_read_manifest_rejects_missing_or_incomplete_datasets(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) is None
    manifest = generate_dataset(tmp_path, videos=2, frames=2, workers=1, progress=False)
    assert read_manifest(tmp_path) == manifest
    video = manifest["videos"]["test"][0]
    (tmp_path / "groundtruth" / "test" / f"{video}.npz").unlink()
    assert read_manifest(tmp_path) is None
    (tmp_path / "dataset.json").write_text("{ truncated")
    assert read_manifest(tmp_path) is None
    (tmp_path / "groundtruth" / "test" / f"{video}.npz").write_bytes(b"")
    (tmp_path / "dataset.json").write_text(json.dumps(manifest))
    assert read_manifest(tmp_path) == manifest  # whole again
    del manifest["joint_names"]
    (tmp_path / "dataset.json").write_text(json.dumps(manifest))
    assert read_manifest(tmp_path) is None


def test_an_interrupted_generation_leaves_no_manifest(tmp_path: Path, monkeypatch) -> None:
    generate_dataset(tmp_path, videos=2, frames=2, workers=1, progress=False)
    saved = []
    original_save = Image.Image.save

    def failing_save(self, *args, **kwargs):
        if len(saved) == 3:
            raise KeyboardInterrupt
        saved.append(args)
        return original_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path, videos=3, frames=2, workers=1, progress=False)
    assert read_manifest(tmp_path) is None and not (tmp_path / "dataset.json").exists()
    monkeypatch.undo()
    # what an interrupted run left behind may be overwritten
    manifest = generate_dataset(tmp_path, videos=3, frames=2, workers=1, progress=False)
    assert read_manifest(tmp_path) == manifest


def test_load_groundtruth_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        load_groundtruth(tmp_path, "val", "id0000#clip00")
    with pytest.raises(FileNotFoundError, match="id0000#clip00"):
        load_groundtruth(tmp_path, "train", "id0000#clip00")


def test_visibility_follows_the_pixel_centre_convention() -> None:
    # the frame spans [-0.5, size - 0.5] on both axes: pixel centres sit at integers
    points = np.array([[-0.4, 10], [-0.6, 10], [63.4, 5], [63.6, 5], [10, -0.6], [10, 63.6]])
    np.testing.assert_array_equal(visibility(points, 64), [True, False, True, False, False, False])


def test_motion_statistics_by_hand() -> None:
    # two joints; frame 1 translates both by (3, 4); frame 2 moves only joint 1 by (0, 2)
    joints = np.array([[[0, 0], [10, 0]], [[3, 4], [13, 4]], [[0, 0], [10, 2]]], dtype=float)
    visible = np.ones((3, 2), dtype=bool)
    found = motion_statistics(joints, visible)
    assert found["joint"] == pytest.approx((5 + 5 + 0 + 2) / 4)
    assert found["centroid"] == pytest.approx((5 + 1) / 2)  # centroid moves (3,4) then (0,1)
    assert found["articulated"] == pytest.approx((0 + 0 + 1 + 1) / 4)  # only the last frame
    assert found["height"] == pytest.approx((0 + 0 + 2) / 3)
    visible[2, 1] = False  # a hidden joint leaves the joint averages
    assert motion_statistics(joints, visible)["joint"] == pytest.approx(10 / 3)


def test_version_two_puppets_move_more_and_stay_inside_the_frame(tmp_path: Path) -> None:
    moved = {}
    for version, style in STYLES.items():
        stats = []
        for seed in range(12):
            identity = sample_identity([seed, 1], style)
            motion = sample_motion([seed, 2], 32, style=style)
            motion = fit_in_frame(identity, motion, 64, style.margin)
            joints = forward_kinematics(identity, motion, 64)
            stats.append(motion_statistics(joints, visibility(joints, 64)))
            if style.margin:  # every joint of the clip at least the margin inside the frame
                inner = style.margin * 64 - 0.5 - 1e-6
                assert joints.min() >= inner and joints.max() <= 63 - inner
        moved[version] = {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}
    assert moved[2]["articulated"] > 1.5 * moved[1]["articulated"]
    assert moved[2]["centroid"] > 1.5 * moved[1]["centroid"]
    assert STYLES[2].patterns == ("plain",)  # flat clothes: motion, not texture, dominates
    manifest = generate_dataset(tmp_path, videos=3, frames=4, workers=1, progress=False)
    assert manifest["version"] == 2 and manifest["style"]["sinusoids"] == 2
    for split in ("train", "test"):
        assert manifest["motion"][split]["joint"] > 0
        assert manifest["motion"][split]["visible"] == 1.0


def test_fitting_shrinks_and_shifts_the_whole_clip_alike() -> None:
    identity = sample_identity(3)
    wide = Motion(
        angles=sample_motion(0, 4, amplitude=0.0).angles,
        centre=np.array([[0.2, 0.5], [0.5, 0.5], [0.8, 0.5], [0.95, 0.5]]),
        scale=np.full(4, 0.9),
    )
    fitted = fit_in_frame(identity, wide, 64, 0.05)
    ratio = fitted.scale / wide.scale
    assert np.allclose(ratio, ratio[0]) and ratio[0] < 1  # one shrink for the whole clip
    steps, fitted_steps = np.diff(wide.centre, axis=0), np.diff(fitted.centre, axis=0)
    np.testing.assert_allclose(fitted_steps, ratio[0] * steps)  # the path keeps its shape
    joints = forward_kinematics(identity, fitted, 64)
    assert joints.min() >= 0.05 * 64 - 0.5 - 1e-6 and joints.max() <= 0.95 * 64 - 0.5 + 1e-6
    assert fit_in_frame(identity, wide, 64, 0.0) is wide
