"""Reconstruction and animation: protocol, output layout, L1, streaming, relative motion, CLI."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image
from run_fixtures import BATCH, FRAMES, SIZE, record_inference_tasks

from kptoolkit.cli.main import main
from kptoolkit.data.datasets import FramesDataset
from kptoolkit.data.video_io import count_frames, frame_files, iter_frames, video_fps
from kptoolkit.engine.animation import animate
from kptoolkit.engine.checkpoints import load_run
from kptoolkit.engine.prediction import (
    InferenceError,
    RelativeMotion,
    compute_structure,
    first_of,
    generate,
    inference_models,
)
from kptoolkit.engine.reconstruction import (
    ReconstructionMode,
    build_test_dataset,
    default_output_dir,
    read_reconstruction_csv,
    reconstruct,
)
from kptoolkit.errors import CompatibilityError


def test_reconstruction_layout_and_l1(runs, data_root, tmp_path):
    config, models = load_run(runs["heatmap_sum"])
    dataset = build_test_dataset(config)
    out = tmp_path / "rec"
    result = reconstruct(models, dataset, out, batch_size=BATCH, progress=False)

    assert [v.name for v in result.videos] == [v.name for v in dataset.videos]
    assert len(result.videos) == 2 and not result.skipped
    rows = read_reconstruction_csv(out / "reconstruction.csv")
    assert [(r.name, r.frames) for r in rows] == [(v.name, v.frames) for v in result.videos]
    assert [r.l1 for r in rows] == pytest.approx([v.l1 for v in result.videos], abs=1e-8)
    with open(out / "reconstruction.csv", newline="") as handle:
        assert next(csv.reader(handle)) == ["video", "frames", "l1"]

    l1s = []
    for video in dataset.videos:
        png = np.asarray(Image.open(out / "png" / f"{video.name}.png"))
        assert png.shape == (SIZE, FRAMES * SIZE, 3) and png.dtype == np.uint8
        generated = png.reshape(SIZE, FRAMES, SIZE, 3).transpose(1, 0, 2, 3)
        real = np.stack(list(iter_frames(video.path)))
        per_frame = np.abs(generated / 255.0 - real / 255.0).mean(axis=(1, 2, 3))
        l1s.append(per_frame.mean())
        score = next(v for v in result.videos if v.name == video.name)
        assert score.frames == FRAMES and score.l1 == pytest.approx(l1s[-1], abs=1e-6)

        preview = out / "mp4" / f"{video.name}.mp4"
        assert count_frames(preview) == FRAMES
        assert next(iter_frames(preview)).shape == (SIZE, 2 * SIZE, 3)  # driving | generated
    assert result.l1 == pytest.approx(float(np.mean(l1s)), abs=1e-6)
    assert not list(out.rglob(".*partial*"))


def test_source_structure_is_computed_once_per_video(runs, tmp_path):
    config, models = load_run(runs["heatmap_sum"])
    dataset = build_test_dataset(config)
    calls: list[int] = []
    forward = models.masker.forward
    models.masker.forward = lambda frames: calls.append(frames.shape[0]) or forward(frames)
    sources: list[torch.Tensor] = []
    generator_forward = models.generator.forward

    def record(source, source_structure, driving_structure):
        sources.append(source_structure.mask.clone())
        return generator_forward(source, source_structure, driving_structure)

    models.generator.forward = record
    result = reconstruct(
        models,
        dataset,
        tmp_path,
        4,
        save_png=False,
        save_mp4=False,
        progress=False,
        precision="fp32",
    )
    # one masker call per batch of driving frames (4 + 2), none extra for the source
    assert calls == [4, 2] * len(result.videos)
    first_mask = compute_structure(models, next(iter(dataset.iter_video(dataset.videos[0])))[None])
    for mask in sources[:2]:  # the first video's batches: every row is frame 0's mask
        torch.testing.assert_close(mask, first_mask.mask.expand_as(mask), atol=1e-5, rtol=0)


@pytest.mark.parametrize("masker", ["perturbed_mask", "heatmap_sum"])
def test_models_come_back_as_they_were(runs, masker):
    _, models = load_run(runs[masker])
    models.train(True)
    with inference_models(models):
        assert not models.generator.training and not models.masker.training
        weight = next(p for p in models.generator.parameters() if p.dim() == 4)
        assert weight.is_contiguous(memory_format=torch.channels_last)
    assert models.generator.training and models.masker.training
    assert all(p.is_contiguous() for p in models.generator.parameters())
    if models.detector is not None:
        assert not models.detector.training  # the frozen detector stays frozen


def test_perturbed_mask_uses_the_clean_mask_for_reconstruction(runs, driving_mp4, tmp_path):
    config, models = load_run(runs["perturbed_mask"])
    tasks = record_inference_tasks(models.masker)
    refines: list[int] = []
    models.masker.refiner.register_forward_hook(lambda *_: refines.append(1))
    reconstruct(models, build_test_dataset(config), tmp_path / "r", 4, max_videos=1, progress=False)
    assert set(tasks) == {"reconstruction"} and not refines  # the clean mask drives
    tasks.clear()
    source = next(iter_frames(driving_mp4))  # a uint8 (H,W,3) array works as the source too
    animate(models, source, driving_mp4, tmp_path / "a.mp4", batch_size=4)
    assert set(tasks) == {"animation"} and refines  # the refined mask drives


def test_animate_streams_every_frame(runs, driving_mp4, data_root, tmp_path):
    _, models = load_run(runs["heatmap_sum"])
    source = tmp_path / "source.png"  # a larger source image: resized to the model's size
    Image.open(frame_files(sorted((data_root / "train").iterdir())[0])[0]).resize((80, 80)).save(
        source
    )
    out = tmp_path / "out" / "anim.mp4"
    info = animate(models, source, driving_mp4, out, batch_size=3, frame_size=SIZE)
    assert info["frames"] == 7 == count_frames(out)
    assert info["fps"] == pytest.approx(10) and video_fps(out) == pytest.approx(10)
    assert info["size"] == (SIZE, SIZE) and next(iter_frames(out)).shape == (SIZE, SIZE, 3)
    assert not list(out.parent.glob(".*"))


def test_relative_animation(runs, driving_mp4, tmp_path):
    _, models = load_run(runs["gaussian_circles"])
    source = tmp_path / "s.png"
    Image.fromarray(next(iter_frames(driving_mp4))).save(source)
    for adapt in (False, True):
        out = tmp_path / f"rel-{adapt}.mp4"
        info = animate(models, source, driving_mp4, out, relative=True, adapt_scale=adapt)
        assert info["frames"] == count_frames(out) == 7

    # the first driving frame re-expressed relative to the source is the source's structure
    with inference_models(models), torch.inference_mode():
        frames = torch.rand(2, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
        source_frame = frames[:1]
        source_structure = compute_structure(models, source_frame)
        driving_structure = compute_structure(models, frames)
        motion = RelativeMotion(first_of(driving_structure))
        relative = generate(models, source_frame, source_structure, frames, relative=motion)
        still = generate(
            models, source_frame, source_structure, frames[:1], driving_structure=source_structure
        )
    torch.testing.assert_close(relative[:1], still, atol=1e-5, rtol=0)


def test_relative_animation_in_bf16_keeps_the_first_frame_still(runs):
    """Relative animation under bf16 autocast: float32 structures, and the first driving frame
    re-expressed relative to the source still gives the source's own structure."""
    _, models = load_run(runs["gaussian_circles"])
    with inference_models(models, "bf16"), torch.inference_mode():
        frames = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))
        frames = frames.contiguous(memory_format=torch.channels_last)
        source_structure = compute_structure(models, frames[:1])
        driving_structure = compute_structure(models, frames)
        assert driving_structure.keypoints.dtype == torch.float32
        motion = RelativeMotion(first_of(driving_structure))
        relative = generate(models, frames[:1], source_structure, frames, relative=motion)
        still = generate(
            models, frames[:1], source_structure, frames[:1], driving_structure=source_structure
        )
    assert relative.dtype == torch.float32
    torch.testing.assert_close(relative[:1], still, atol=1e-5, rtol=0)


def test_relative_needs_a_relative_capable_masker(runs, driving_mp4, tmp_path):
    _, models = load_run(runs["heatmap_sum"])
    out = tmp_path / "never.mp4"
    with pytest.raises(CompatibilityError, match=r"'heatmap_sum'.*absolute mode.*gaussian_circles"):
        animate(models, np.zeros((64, 64, 3), np.uint8), driving_mp4, out, relative=True)
    with pytest.raises(InferenceError, match="adapt_scale only applies"):
        animate(models, np.zeros((64, 64, 3), np.uint8), driving_mp4, out, adapt_scale=True)
    assert not out.exists()


def test_cli_reconstruct(runs, data_root, capsys):
    checkpoint = runs["heatmap_sum"]
    assert main(["reconstruct", "--checkpoint", str(checkpoint), "--max-videos", "1"]) == 0
    out = default_output_dir(checkpoint)
    assert out == checkpoint.parent.parent / "reconstruction"
    rows = read_reconstruction_csv(out / "reconstruction.csv")
    assert len(rows) == 1 and (out / "png" / f"{rows[0].name}.png").is_file()
    assert (out / "mp4" / f"{rows[0].name}.mp4").is_file()
    printed = capsys.readouterr().out
    assert rows[0].name in printed and "L1 " in printed and "over 1 videos" in printed


def test_cli_reconstruct_with_data_override(runs, data_root, tmp_path):
    flat = tmp_path / "flat"  # a FOMM folder without train/test: split 80/20 with seed 0
    flat.mkdir()
    for video in sorted((data_root / "train").iterdir()):
        (flat / video.name).symlink_to(video, target_is_directory=True)
    out = tmp_path / "rec"
    args = ["reconstruct", "--checkpoint", str(runs["heatmap_sum"]), "--data", str(flat)]
    assert main([*args, "--out", str(out), "--no-mp4", "--batch-size", "5"]) == 0
    rows = read_reconstruction_csv(out / "reconstruction.csv")
    expected = FramesDataset(flat, "test").videos
    assert [r.name for r in rows] == [v.name for v in expected]
    assert not (out / "mp4").exists() and all(math.isfinite(r.l1) for r in rows)


def test_unreadable_videos_are_skipped(runs, data_root, tmp_path):
    root = tmp_path / "data"
    (root / "test").mkdir(parents=True)
    good = sorted((data_root / "test").iterdir())[0]
    (root / "test" / good.name).symlink_to(good, target_is_directory=True)
    (root / "test" / "broken.mp4").write_bytes(b"\x00" * 64)
    _, models = load_run(runs["heatmap_sum"])
    dataset = FramesDataset(root, "test", frame_size=SIZE)
    with pytest.warns(UserWarning, match="broken.mp4"):
        result = reconstruct(models, dataset, tmp_path / "rec", BATCH, progress=False)
    assert result.skipped == ["broken"] and [v.name for v in result.videos] == [good.name]
    assert sorted(p.name for p in (tmp_path / "rec" / "mp4").iterdir()) == [f"{good.name}.mp4"]
    assert len(read_reconstruction_csv(result.csv_path)) == 1


def test_cli_animate(runs, driving_mp4, tmp_path, capsys):
    source = tmp_path / "s.png"
    Image.fromarray(next(iter_frames(driving_mp4))).save(source)
    out = tmp_path / "a.mp4"
    args = ["animate", "--source", str(source), "--driving", str(driving_mp4)]
    args += ["--checkpoint", str(runs["gaussian_circles"]), "--out", str(out)]
    assert main([*args, "--relative", "--batch-size", "2"]) == 0
    assert count_frames(out) == 7 and "wrote 7 frames" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-source", "source image not found"),
        ("missing-driving", "driving video not found"),
        ("bad-source", "cannot read image"),
        ("bad-driving", "cannot open video"),
        ("relative", "does not"),
        ("missing-checkpoint", "checkpoint not found"),
        ("empty-driving", "has no frames"),
    ],
)
def test_cli_animate_errors(case, message, runs, driving_mp4, tmp_path, capsys):
    source = tmp_path / "s.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(source)
    driving, checkpoint = driving_mp4, runs["heatmap_sum"]
    extra = []
    if case == "missing-source":
        source = tmp_path / "nope.png"
    elif case == "missing-driving":
        driving = tmp_path / "nope.mp4"
    elif case == "bad-source":
        source.write_bytes(b"not an image")
    elif case == "bad-driving":
        driving = tmp_path / "bad.mp4"
        driving.write_bytes(b"not a video at all")
    elif case == "relative":
        extra = ["--relative"]
    elif case == "empty-driving":
        driving = tmp_path / "empty"
        driving.mkdir()
    else:
        checkpoint = tmp_path / "nope.pth"
    out = tmp_path / "out.mp4"
    args = ["animate", "--source", str(source), "--driving", str(driving)]
    args += ["--checkpoint", str(checkpoint), "--out", str(out), *extra]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("kptoolkit: error:") and message in err
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_static_control_drives_every_frame_by_frame_zero(runs, data_root, tmp_path):
    """The static control predicts every frame from frame 0's structure: one image per video,
    the protocol's reconstruction of frame 0, scored against the moving real frames."""
    _, models = load_run(runs["heatmap_sum"])
    dataset = FramesDataset(data_root, "test")
    normal = reconstruct(
        models, dataset, tmp_path / "n", batch_size=4, save_mp4=False, progress=False
    )
    static = reconstruct(
        models,
        dataset,
        tmp_path / "s",
        batch_size=4,
        save_mp4=False,
        progress=False,
        mode=ReconstructionMode(static=True),
    )
    for video in dataset.videos:
        moving = list(iter_frames(tmp_path / "n" / "png" / f"{video.name}.png", SIZE))
        still = list(iter_frames(tmp_path / "s" / "png" / f"{video.name}.png", SIZE))
        assert len(still) == len(moving) == FRAMES
        for frame in still:
            np.testing.assert_array_equal(frame, moving[0])  # frame 0 reconstructs itself
        assert any(not np.array_equal(frame, moving[0]) for frame in moving[1:])
    assert static.l1 != normal.l1


def test_another_generator_output_or_a_clear_error(runs, data_root, tmp_path):
    _, models = load_run(runs["heatmap_sum"])
    dataset = FramesDataset(data_root, "test")
    with pytest.raises(InferenceError, match=r"no output 'deformed'.*low_res_prediction"):
        reconstruct(
            models,
            dataset,
            tmp_path,
            save_mp4=False,
            progress=False,
            mode=ReconstructionMode(output="deformed"),
        )
    result = reconstruct(
        models,
        dataset,
        tmp_path / "low",
        batch_size=4,
        save_mp4=False,
        progress=False,
        mode=ReconstructionMode(output="low_res_prediction"),
    )
    with inference_models(models):
        frames = torch.stack(list(dataset.iter_video(dataset.videos[0])))
        structure = compute_structure(models, frames)
        first = first_of(structure)
        expected = generate(
            models, frames[:1], first, frames, "reconstruction", output="low_res_prediction"
        )
    kept = np.stack(
        list(iter_frames(tmp_path / "low" / "png" / f"{dataset.videos[0].name}.png", SIZE))
    )
    np.testing.assert_allclose(
        kept / 255.0, expected.permute(0, 2, 3, 1).numpy(), atol=0.5 / 255 + 1e-6
    )
    assert math.isfinite(result.l1)


def test_bf16_reconstruction_stays_within_a_few_levels_of_fp32(runs, tmp_path):
    config, models = load_run(runs["heatmap_sum"])
    dataset = build_test_dataset(config)
    results, pngs = {}, {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        results[precision] = reconstruct(
            models, dataset, out, batch_size=BATCH, progress=False, precision=precision
        )
        pngs[precision] = np.stack(
            [np.asarray(Image.open(out / "png" / f"{v.name}.png")) for v in dataset.videos]
        ).astype(int)
    assert np.abs(pngs["bf16"] - pngs["fp32"]).max() <= 8  # 8-bit levels
    assert results["bf16"].l1 == pytest.approx(results["fp32"].l1, abs=2e-3)
    # fp32 through the precision machinery is what it always was: bitwise
    again = reconstruct(
        models, dataset, tmp_path / "again", batch_size=BATCH, progress=False, precision="fp32"
    )
    assert [v.l1 for v in again.videos] == [v.l1 for v in results["fp32"].videos]


def test_cli_precision_choices(runs, tmp_path, capsys):
    checkpoint = str(runs["heatmap_sum"])
    out = tmp_path / "rec"
    args = ["reconstruct", "--checkpoint", checkpoint, "--max-videos", "1", "--out", str(out)]
    assert main([*args, "--precision", "bf16", "--no-mp4"]) == 0
    assert len(read_reconstruction_csv(out / "reconstruction.csv")) == 1
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--precision", "int8"])
    assert exit_info.value.code == 2 and "invalid choice: 'int8'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*args, "--out", str(tmp_path / "fp16"), "--precision", "fp16"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("kptoolkit: error:") and "fp16 runs on CUDA only" in err
        assert not (tmp_path / "fp16").exists()


def test_compiled_reconstruction_calls_the_compiled_networks(runs, tmp_path, monkeypatch):
    """`--compile` wiring (compiling for real takes minutes): the masker and the generator are
    called through torch.compile during reconstruction, with the eager networks' scores."""
    called = []

    def fake_compile(module, **kwargs):
        class Recording(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = module

            def forward(self, *args, **kw):
                called.append(type(module).__name__)
                return module(*args, **kw)

            def __getattr__(self, name):
                try:
                    return super().__getattr__(name)
                except AttributeError:
                    return getattr(module, name)

        return Recording()

    monkeypatch.setattr(torch, "compile", fake_compile)
    checkpoint = str(runs["heatmap_sum"])
    out = tmp_path / "rec"
    args = ["reconstruct", "--checkpoint", checkpoint, "--max-videos", "1", "--out", str(out)]
    assert main([*args, "--compile", "--no-mp4"]) == 0
    assert {"HeatmapSumMasker", "TwoStageGenerator"} <= set(called)
    config, models = load_run(runs["heatmap_sum"])
    reference = reconstruct(
        models,
        build_test_dataset(config),
        tmp_path / "eager",
        batch_size=BATCH,
        max_videos=1,
        progress=False,
        save_mp4=False,
    )
    assert read_reconstruction_csv(out / "reconstruction.csv")[0].l1 == pytest.approx(
        reference.videos[0].l1, abs=1e-7
    )
