"""The trainer: every sensible pair trains; resume, SIGKILL, NaN and DDP behave as promised."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from plugin_fixtures import needs_learned_mask
from train_fixtures import cli_env, detector_file, tiny_cli_args, tiny_config, tiny_kp_checkpoint

from kptoolkit import LOSSES
from kptoolkit.config.schema import LossConfig, load_config
from kptoolkit.engine.checkpoints import latest_checkpoint, list_checkpoints
from kptoolkit.engine.trainer import Trainer, TrainingDiverged
from kptoolkit.errors import ConfigError
from kptoolkit.experiment.components import apply_with_presets, choose_components
from kptoolkit.losses.base import Loss
from kptoolkit.utils.atomic import partial_path
from kptoolkit.utils.checkpoint_io import read_checkpoint

REPO = Path(__file__).resolve().parents[1]


def read_losses(run: Path) -> list[dict[str, float]]:
    with (run / "losses.csv").open() as handle:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(handle)]


PAIRS = [
    ("heatmap_sum", "two_stage"),
    ("gaussian_circles", "two_stage"),
    ("softmax_sum", "two_stage"),
    ("all_k", "two_stage"),
    pytest.param("learned_projection", "two_stage", marks=needs_learned_mask),
    ("perturbed_mask", "two_stage"),
    ("", "fomm"),
    ("", "x2face"),
    ("", "monkey_net"),
]


@pytest.mark.parametrize(("masker", "generator"), PAIRS)
def test_every_sensible_pair_trains(tmp_path, masker, generator):
    overrides = ["train.steps=2"]
    if generator == "two_stage" and masker == "all_k":
        overrides.append("generator.params.mask_channels=5")
    if masker == "perturbed_mask":
        overrides.append("masker.losses.mask_correction.params.start_epoch=0")
    config = choose_components(tiny_config(), masker or None, generator)
    config = apply_with_presets(config, overrides)
    trainer = Trainer.from_config(
        config, tmp_path / "run", kp_checkpoint=str(tiny_kp_checkpoint(tmp_path))
    )
    before = {k: v.clone() for k, v in trainer.models.generator.state_dict().items()}
    result = trainer.train()
    assert result.steps == 2 and result.checkpoint is not None
    rows = read_losses(tmp_path / "run")
    assert [row["step"] for row in rows] == [1, 2] and all(row["total"] > 0 for row in rows)
    after = trainer.models.generator.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    if masker == "perturbed_mask":
        assert "mask_correction" in rows[0]
    if generator == "fomm":
        assert "equivariance" in rows[0] and "detector" in trainer.optimizers
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert load_config(tmp_path / "run" / "config.yaml") == trainer.plan.config
    # planning works on a copy: the caller's config is left as it was
    assert config.keypoints.checkpoint is None and config.train.precision == "auto"
    assert list((tmp_path / "run" / "samples").glob("*.png"))
    checkpoint = read_checkpoint(result.checkpoint)
    assert checkpoint["step"] == 2 and "generator" in checkpoint["models"]


def test_frozen_detector_is_untouched_by_training(tmp_path):
    trainer = Trainer.from_config(
        tiny_config(), tmp_path / "run", str(tiny_kp_checkpoint(tmp_path))
    )
    frozen = {k: v.clone() for k, v in trainer.models.detector.state_dict().items()}
    trainer.train()
    assert all(torch.equal(frozen[k], v) for k, v in trainer.models.detector.state_dict().items())
    assert "detector" not in trainer.optimizers


def test_resumed_run_repeats_the_uninterrupted_losses(tmp_path):
    kp = str(tiny_kp_checkpoint(tmp_path))
    settings = ("train.checkpoint_every=3", "train.steps=6", "data.augmentation.rotation=5")
    Trainer.from_config(tiny_config(*settings), tmp_path / "full", kp).train()
    Trainer.from_config(
        tiny_config(*settings[:1], "train.steps=3", *settings[2:]), tmp_path / "cut", kp
    ).train()
    # resumed with batches loaded by two worker processes instead of in the training process:
    # allowed, and the same batches (an item comes from (seed, epoch, index) alone)
    loaded_apart = tiny_config(*settings, "data.num_workers=2")
    resumed = Trainer.from_config(loaded_apart, tmp_path / "cut", kp, resume=True)
    assert resumed.train().steps == 6
    full, cut = read_losses(tmp_path / "full"), read_losses(tmp_path / "cut")
    assert [r["step"] for r in cut] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(full, cut, strict=True):
        assert a["total"] == pytest.approx(b["total"], rel=1e-6, abs=1e-7)


def test_a_run_killed_before_its_first_checkpoint_restarts_its_log(tmp_path):
    """The folder of a run killed before any checkpoint holds log rows but nothing to resume:
    a fresh start (or --resume, which finds no checkpoint) must not append to them."""
    kp = str(tiny_kp_checkpoint(tmp_path))
    settings = ("train.steps=3", "train.checkpoint_every=1000")
    Trainer.from_config(tiny_config(*settings), tmp_path / "full", kp).train()
    uninterrupted = (tmp_path / "full" / "losses.csv").read_text()
    for resume in (False, True):
        run = tmp_path / f"killed-{resume}"
        Trainer.from_config(tiny_config(*settings), run, kp).train()
        shutil.rmtree(run / "checkpoints")  # as if killed before the first checkpoint
        Trainer.from_config(tiny_config(*settings), run, kp, resume=resume).train()
        assert (run / "losses.csv").read_text() == uninterrupted


def test_a_resumed_log_keeps_integer_steps_and_epochs(tmp_path):
    kp = str(tiny_kp_checkpoint(tmp_path))
    settings = ("train.checkpoint_every=2", "data.augmentation.rotation=5")
    Trainer.from_config(tiny_config(*settings, "train.steps=4"), tmp_path / "run", kp).train()
    (tmp_path / "run" / "checkpoints" / "step-00000004.pth").unlink()  # killed after step 4's row
    Trainer.from_config(
        tiny_config(*settings, "train.steps=4"), tmp_path / "run", kp, resume=True
    ).train()
    with (tmp_path / "run" / "losses.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["step"] for row in rows] == ["1", "2", "3", "4"]
    assert all(row["epoch"].isdigit() for row in rows)


def test_existing_run_is_not_overwritten(tmp_path):
    kp = str(tiny_kp_checkpoint(tmp_path))
    Trainer.from_config(tiny_config(), tmp_path / "run", kp).train()
    with pytest.raises(ConfigError, match="--resume"):
        Trainer.from_config(tiny_config(), tmp_path / "run", kp)


class NanAtStep3(Loss):
    """Test loss: fine for two steps, then NaN."""

    calls = 0

    def forward(self, inputs, output):
        NanAtStep3.calls += 1
        value = (inputs.outputs["prediction"] - inputs.target).abs().mean()
        return value * float("nan") if NanAtStep3.calls >= 3 else value


def test_nan_stops_training_naming_the_term_and_keeps_the_last_checkpoint(tmp_path):
    LOSSES.register("nan_at_step_3")(NanAtStep3)
    try:
        config = tiny_config("train.steps=5", "train.checkpoint_every=1")
        config.losses = [LossConfig("nan_at_step_3", 1.0, ["prediction"], {})]
        trainer = Trainer.from_config(config, tmp_path / "run", str(tiny_kp_checkpoint(tmp_path)))
        with pytest.raises(TrainingDiverged, match=r"'nan_at_step_3/prediction' is nan at step 3"):
            trainer.train()
    finally:
        LOSSES.unregister("nan_at_step_3")
    last = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert last is not None and read_checkpoint(last)["step"] == 2


def test_missing_perceptual_weights_fail_before_any_work(tmp_path):
    config = tiny_config()
    config.losses = [LossConfig("perceptual_pyramid", 1.0, ["prediction"], {})]
    with pytest.raises(ConfigError, match="VGG19"):
        Trainer.from_config(config, tmp_path / "run", str(tiny_kp_checkpoint(tmp_path)))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume(tmp_path):
    out = tmp_path / "run"
    base = [sys.executable, "-m", "kptoolkit", "train", *tiny_cli_args(tmp_path)]
    base += ["--out", str(out), "--no-progress"]
    settings = ["train.checkpoint_every=1", "train.keep_last=2"]
    command = [*base, "--set", "train.steps=400", *settings]
    process = subprocess.Popen(command, env=cli_env(tmp_path), cwd=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and len(list_checkpoints(out / "checkpoints")) < 2:
        time.sleep(0.05)
    time.sleep(0.3)  # land somewhere in the middle of later steps and writes
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = latest_checkpoint(out / "checkpoints")
    assert killed_at is not None  # loadable after the kill
    step = read_checkpoint(killed_at)["step"]
    assert 0 < step < 400
    resume = [*base, "--resume", "--set", f"train.steps={step + 3}", *settings]
    finished = subprocess.run(resume, env=cli_env(tmp_path), cwd=tmp_path, capture_output=True)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    assert read_checkpoint(latest_checkpoint(out / "checkpoints"))["step"] == step + 3
    steps = [r["step"] for r in read_losses(out)]
    assert steps == sorted(steps) and steps[-1] == step + 3


@pytest.mark.slow
def test_two_processes_reproduce_the_single_process_losses(tmp_path):
    args = tiny_cli_args(tmp_path)
    common = [
        "--no-progress",
        "--set",
        "train.steps=3",
        "train.batch_size=4",
        "train.sync_batchnorm=true",
        "train.precision=fp32",  # the same batches and statistics agree to float32 rounding
    ]
    single = subprocess.run(
        [
            sys.executable,
            "-m",
            "kptoolkit",
            "train",
            *args,
            "--out",
            str(tmp_path / "one"),
            *common,
        ],
        env=cli_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
    )
    assert single.returncode == 0, single.stderr.decode()[-2000:]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "kptoolkit",
        "train",
        *args,
        "--out",
        str(tmp_path / "two"),
        *common,
    ]
    double = subprocess.run(torchrun, env=cli_env(tmp_path), cwd=tmp_path, capture_output=True)
    assert double.returncode == 0, double.stderr.decode()[-3000:]
    one, two = read_losses(tmp_path / "one"), read_losses(tmp_path / "two")
    assert len(one) == len(two) == 3
    for a, b in zip(one, two, strict=True):
        assert a["total"] == pytest.approx(b["total"], rel=1e-4)


def test_a_second_process_on_a_run_folder_stops_before_writing(tmp_path):
    from kptoolkit.utils.locks import FolderBusyError, folder_lock

    kp = str(tiny_kp_checkpoint(tmp_path))
    run = tmp_path / "run"
    with folder_lock(run, "a kptoolkit run"):  # as another process holding it would
        trainer = Trainer.from_config(tiny_config("train.steps=2"), run, kp)
        with pytest.raises(FolderBusyError, match=rf"pid {os.getpid()}.*nothing was changed"):
            trainer.train()
        assert sorted(p.name for p in run.iterdir()) == [".kptoolkit.lock"]
    assert Trainer.from_config(tiny_config("train.steps=2"), run, kp).train().steps == 2  # released


def test_a_run_killed_in_its_first_checkpoint_save_starts_again(tmp_path):
    kp = str(tiny_kp_checkpoint(tmp_path))
    run = tmp_path / "run"
    Trainer.from_config(tiny_config("train.steps=2"), run, kp).train()
    # as a kill during the first save leaves it: the config, the log and a partial checkpoint
    for _, path in list_checkpoints(run / "checkpoints"):
        path.rename(partial_path(path))
    assert Trainer.from_config(tiny_config("train.steps=2"), run, kp).train().steps == 2
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000002.pth"]


def test_partial_files_a_killed_save_left_are_removed_on_the_next_start(tmp_path):
    kp = str(tiny_kp_checkpoint(tmp_path))
    run = tmp_path / "run"
    settings = ("train.steps=2", "train.checkpoint_every=1")
    Trainer.from_config(tiny_config(*settings), run, kp).train()
    orphans = [
        run / "checkpoints" / ".step-00000003.pth.4242.partial",
        run / ".config.yaml.4242.partial",
    ]
    for orphan in orphans:
        orphan.write_bytes(b"half a checkpoint")
    Trainer.from_config(
        tiny_config("train.steps=3", "train.checkpoint_every=1"), run, kp, resume=True
    ).train()
    assert not any(orphan.exists() for orphan in orphans)
    assert sorted(p.name for p in (run / "checkpoints").iterdir())[-1] == "step-00000003.pth"


def test_a_folder_of_other_files_is_refused_untouched(tmp_path):
    from kptoolkit.utils.locks import ForeignFolderError

    kp = str(tiny_kp_checkpoint(tmp_path))
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "config.yaml").write_text("chapter: 1\n")
    (folder / "losses.csv").write_text("epoch,accuracy\n1,0.5\n")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ForeignFolderError, match=r"thesis is not empty.*config\.yaml, losses\.csv"):
        Trainer.from_config(tiny_config("train.steps=2"), folder, kp).train()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_resume_with_other_settings_is_refused_before_anything_is_written(tmp_path):
    kp = str(tiny_kp_checkpoint(tmp_path))
    run = tmp_path / "run"
    Trainer.from_config(tiny_config("train.steps=2"), run, kp).train()
    stored = (run / "config.yaml").read_text()
    other_lr = tiny_config("train.steps=4", "train.lr=0.001")
    with pytest.raises(ConfigError, match=r"train\.lr: 0\.0002 -> 0\.001.*nothing was changed"):
        Trainer.from_config(other_lr, run, kp, resume=True)
    other_generator = choose_components(tiny_config("train.steps=4"), None, "x2face")
    with pytest.raises(ConfigError, match=r"generator\.name: 'two_stage' -> 'x2face'"):
        Trainer.from_config(apply_with_presets(other_generator, []), run, kp, resume=True)
    assert (run / "config.yaml").read_text() == stored
    # a longer schedule is what a resume is for: applied and recorded
    assert (
        Trainer.from_config(tiny_config("train.steps=4"), run, kp, resume=True).train().steps == 4
    )
    assert load_config(run / "config.yaml").train.steps == 4


# a detector whose every width differs from the micro preset's (num_kp 5, 4/16/3 blocks, 0.25)
OTHER_WIDTHS = {
    "num_kp": 7,
    "block_expansion": 8,
    "max_features": 32,
    "num_blocks": 2,
    "scale_factor": 0.5,
}


def test_a_run_records_its_detector_file_hash_and_shape(tmp_path, monkeypatch):
    kp = detector_file(tmp_path / "detectors" / "other.pth.tar", 0, **OTHER_WIDTHS)
    run = tmp_path / "runs" / "a"
    Trainer.from_config(tiny_config("train.steps=2"), run, str(kp)).train()
    stored = yaml.safe_load((run / "config.yaml").read_text())["keypoints"]
    # relative to the run folder, so that the folder moves with its detector
    assert stored["checkpoint"] == os.path.join("..", "..", "detectors", "other.pth.tar")
    assert stored["checkpoint_sha256"] == hashlib.sha256(kp.read_bytes()).hexdigest()
    assert {key: stored[key] for key in OTHER_WIDTHS} == OTHER_WIDTHS
    embedded = read_checkpoint(latest_checkpoint(run / "checkpoints"))["config"]["keypoints"]
    assert embedded == stored
    # a run's config names the file wherever it is read from
    monkeypatch.chdir(tmp_path / "detectors")
    assert Path(load_config(run / "config.yaml").keypoints.checkpoint).samefile(kp)


def test_a_moved_run_resumes_and_another_detector_file_is_refused(tmp_path):
    kp = detector_file(tmp_path / "a" / "detector.pth", 0, **OTHER_WIDTHS)
    Trainer.from_config(tiny_config("train.steps=2"), tmp_path / "a" / "run", str(kp)).train()
    shutil.move(tmp_path / "a", tmp_path / "b")
    run, kp = tmp_path / "b" / "run", tmp_path / "b" / "detector.pth"
    other = detector_file(tmp_path / "other.pth", 1, **OTHER_WIDTHS)  # same shape, other weights
    stored = (run / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"keypoints\.checkpoint_sha256"):
        Trainer.from_config(tiny_config("train.steps=4"), run, str(other), resume=True)
    assert (run / "config.yaml").read_text() == stored
    assert (
        Trainer.from_config(tiny_config("train.steps=4"), run, str(kp), resume=True).train().steps
        == 4
    )
