"""The notebook API: a run or an official checkpoint, then frames in memory, in a few lines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from run_fixtures import BATCH, record_inference_tasks
from train_fixtures import tiny_config

import kptoolkit
from kptoolkit.data.video_io import iter_frames
from kptoolkit.engine.checkpoints import load_run as load_checkpoint
from kptoolkit.engine.prediction import quantize
from kptoolkit.engine.reconstruction import build_test_dataset, reconstruct
from kptoolkit.errors import CompatibilityError
from kptoolkit.experiment.components import choose_components


def video_tensor(video) -> torch.Tensor:
    frames = np.stack(list(iter_frames(video)))
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


def test_reconstruct_video_gives_what_the_reconstruct_command_writes(runs, tmp_path):
    config, models = load_checkpoint(runs["heatmap_sum"])
    dataset = build_test_dataset(config)
    reconstruct(models, dataset, tmp_path / "rec", BATCH, max_videos=1, progress=False)
    (png,) = (tmp_path / "rec" / "png").iterdir()
    written = np.asarray(Image.open(png))  # (H, T*W, 3): the frames side by side
    video = next(v for v in dataset.videos if png.stem == v.name)

    run_folder = runs["heatmap_sum"].parent.parent
    frames = kptoolkit.reconstruct_video(kptoolkit.load_run(run_folder), video_tensor(video.path))
    ours = quantize(frames).numpy()  # (T, H, W, 3) uint8
    assert np.array_equal(np.concatenate(list(ours), axis=1), written)


def test_animate_frames_takes_the_maskers_inference_path(runs):
    models = kptoolkit.load_run(runs["perturbed_mask"])
    tasks = record_inference_tasks(models.masker)
    driving = torch.rand(5, 3, 64, 64)
    video = kptoolkit.animate_frames(models, driving[0], driving, batch_size=2)
    assert video.shape == (5, 3, 64, 64) and video.min() >= 0 and video.max() <= 1
    assert set(tasks) == {"animation"}  # the refined driving mask, as `kptoolkit animate`
    tasks.clear()
    kptoolkit.reconstruct_video(models, driving)
    assert set(tasks) == {"reconstruction"}


def test_relative_animation_needs_a_keypoint_masker(runs):
    models = kptoolkit.load_run(runs["heatmap_sum"])
    with pytest.raises(CompatibilityError, match="relative"):
        kptoolkit.animate_frames(models, torch.rand(3, 64, 64), torch.rand(2, 3, 64, 64), True)


def test_build_loads_an_official_layout_checkpoint(tmp_path):
    """FOMM's published files hold `kp_detector` and `generator` state dicts."""
    config = choose_components(tiny_config(), None, "fomm")
    published = kptoolkit.build(config)
    with torch.no_grad():  # weights that a fresh build (same seed) does not have
        for module in (published.generator, published.detector):
            for parameter in module.parameters():
                parameter.add_(torch.randn_like(parameter))
    path = tmp_path / "official-cpk.pth.tar"
    state = {"kp_detector": published.detector, "generator": published.generator}
    torch.save({key: module.state_dict() for key, module in state.items()}, path)

    models = kptoolkit.build(config, weights=path)
    for ours, theirs in (
        (models.generator, published.generator),
        (models.detector, published.detector),
    ):
        for name, tensor in theirs.state_dict().items():
            assert torch.equal(ours.state_dict()[name], tensor), name
    frames = torch.rand(3, 3, 64, 64)
    video = kptoolkit.animate_frames(models, frames[0], frames, relative=True)
    assert video.shape == (3, 3, 64, 64)


def test_a_run_folder_without_checkpoints_is_a_clear_error(tmp_path):
    with pytest.raises(kptoolkit.KptoolkitError, match="no checkpoint"):
        kptoolkit.load_run(tmp_path)


def test_a_module_made_of_several_official_networks_reads_one_entry_per_submodule():
    from typing import ClassVar

    import pytest
    from torch import nn

    from kptoolkit.utils.checkpoint_io import CheckpointError, load_strict, model_state

    class TwoNetworks(nn.Module):
        official_entries: ClassVar[dict[str, str]] = {
            "motion.": "dense_motion_network",
            "painter.": "inpainting_network",
        }

        def __init__(self) -> None:
            super().__init__()
            self.motion, self.painter = nn.Linear(2, 3), nn.Linear(3, 2)

    published = {
        "dense_motion_network": nn.Linear(2, 3).state_dict(),
        "inpainting_network": nn.Linear(3, 2).state_dict(),
        "optimizer": {},
    }
    module = TwoNetworks()
    load_strict(module, model_state(published, "generator", "x.pth", module), "generator")
    assert torch.equal(module.painter.weight, published["inpainting_network"]["weight"])
    del published["inpainting_network"]
    with pytest.raises(CheckpointError, match=r"x\.pth has no 'inpainting_network' entry"):
        model_state(published, "generator", "x.pth", module)
