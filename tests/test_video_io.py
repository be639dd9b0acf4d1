"""Streaming video IO: every layout reads back in order; corrupt files raise naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from video_fixtures import frame_index, level_frames, make_video

from kptoolkit.data.video_io import (
    VideoReadError,
    count_frames,
    iter_frames,
    load_image,
    read_frames,
    video_kind,
    write_mp4,
    write_png_frames,
)

KINDS = ["frames", "stacked", "mp4", "mov", "gif"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_layout_reads_back_in_order(tmp_path, kind):
    path = make_video(tmp_path / "clip", kind, count=9)
    assert video_kind(path) == ("video" if kind in ("mp4", "mov", "gif") else kind)
    frames = list(iter_frames(path))
    assert len(frames) == 9 == count_frames(path)
    assert all(f.shape == (16, 16, 3) and f.dtype == np.uint8 for f in frames)
    assert [frame_index(f) for f in frames] == list(range(9))


@pytest.mark.parametrize("kind", KINDS)
def test_read_frames_returns_requested_indices_in_order(tmp_path, kind):
    path = make_video(tmp_path / "clip", kind, count=9)
    frames = read_frames(path, [7, 2])
    assert frames.shape == (2, 16, 16, 3)
    assert [frame_index(f) for f in frames] == [7, 2]
    with pytest.raises(VideoReadError):
        read_frames(path, [0, 9])


def test_png_frames_are_lossless_and_named_for_evaluation(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 10, 12, 3), dtype=np.uint8)
    assert write_png_frames(frames, tmp_path / "out") == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "0000000.png",
        "0000001.png",
        "0000002.png",
    ]
    np.testing.assert_array_equal(np.stack(list(iter_frames(tmp_path / "out"))), frames)
    floats = frames.astype(np.float32) / 255
    write_png_frames(floats, tmp_path / "float")
    np.testing.assert_array_equal(np.stack(list(iter_frames(tmp_path / "float"))), frames)


def test_frame_folder_sorted_by_name(tmp_path):
    folder = tmp_path / "v"
    frames = level_frames(3)
    write_png_frames([frames[2]], folder, start=2)
    write_png_frames([frames[0], frames[1]], folder, start=0)
    (folder / "notes.txt").write_text("not a frame")
    assert [frame_index(f) for f in iter_frames(folder)] == [0, 1, 2]


def test_stacked_non_square_needs_frame_width(tmp_path):
    from PIL import Image

    strip = np.concatenate(list(level_frames(4, size=12)[:, :, :6]), axis=1)  # 12x6 frames
    Image.fromarray(strip).save(tmp_path / "s.png")
    assert len(list(iter_frames(tmp_path / "s.png", frame_width=6))) == 4
    assert count_frames(tmp_path / "s.png", frame_width=6) == 4
    with pytest.raises(VideoReadError, match="not a multiple"):
        list(iter_frames(tmp_path / "s.png", frame_width=5))


def test_mp4_with_odd_size_is_padded(tmp_path):
    frames = np.zeros((2, 15, 17, 3), dtype=np.uint8)
    write_mp4(frames, tmp_path / "odd.mp4")
    assert next(iter_frames(tmp_path / "odd.mp4")).shape == (16, 18, 3)


def test_truncated_png_is_named(tmp_path):
    folder = make_video(tmp_path / "clip", "frames", count=5)
    bad = folder / "0000003.png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(VideoReadError) as err:
        list(iter_frames(folder))
    assert err.value.path == bad
    # reading stops at the frames it needs, so the earlier ones are still usable
    assert [frame_index(f) for f in read_frames(folder, [0, 2])] == [0, 2]


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_mp4_is_named(tmp_path, keep):
    path = make_video(tmp_path / "clip", "mp4", count=20)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(VideoReadError) as err:
        list(iter_frames(path))
    assert err.value.path == path


def test_not_a_video(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(VideoReadError, match="not a frame folder"):
        list(iter_frames(tmp_path / "x.txt"))


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        ("L", lambda v: (v * 255).round().astype(np.uint8)),
        ("I;16", lambda v: (v * 65535).round().astype(np.uint16)),
        ("F", lambda v: v.astype(np.float32)),
    ],
)
def test_grey_images_of_any_depth_load_with_their_values(tmp_path, mode, make):
    values = np.linspace(0, 1, 16 * 16).reshape(16, 16)
    image = Image.fromarray(make(values))
    assert image.mode == mode
    path = tmp_path / ("frame.tiff" if mode == "F" else "frame.png")
    image.save(path)
    rgb = load_image(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (16, 16, 3)
    expected = np.repeat((values * 255).round()[..., None], 3, axis=2)
    assert np.abs(rgb.astype(int) - expected).max() <= 1  # not white: the values survive


def test_rgba_and_palette_images_load_as_their_colours(tmp_path):
    colours = np.zeros((8, 8, 3), np.uint8)
    colours[:, :4] = (200, 30, 90)
    colours[:, 4:] = (10, 120, 250)
    rgba = np.concatenate([colours, np.full((8, 8, 1), 255, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(colours).quantize(colors=2).save(tmp_path / "palette.png")
    assert np.array_equal(load_image(tmp_path / "rgba.png"), colours)
    assert Image.open(tmp_path / "palette.png").mode == "P"
    assert np.array_equal(load_image(tmp_path / "palette.png"), colours)
