"""A new user's bad inputs: each ends in one line on stderr, exit status 1, and nothing written.

Outputs in the way (`reconstruct` / `animate`), a damaged checkpoint, an empty `--seeds` item, a
component parameter of the wrong type, a file-size limit; and what training and skipped videos
report (the steps this call trained; one clean line per unreadable video)."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plugin_fixtures import needs_learned_mask
from train_fixtures import tiny_cli_args
from video_fixtures import make_video

from kptoolkit.cli.bench import parse_seeds
from kptoolkit.cli.main import main
from kptoolkit.errors import ConfigError
from kptoolkit.maskers.base import Masker
from kptoolkit.registry.registries import MASKERS
from kptoolkit.utils.atomic import atomic_path
from kptoolkit.utils.checkpoint_io import read_checkpoint

PROGRESS_BARS = ("reconstruct:", "animate:", "train:")


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The command's stderr (its progress bars aside), checked to be one `kptoolkit: error:`
    line."""
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith(PROGRESS_BARS)]
    assert len(lines) == 1 and lines[0].startswith("kptoolkit: error: "), err
    return lines[0]


def listing(folder: Path) -> list[str]:
    """Every path below `folder`, relative, with a trailing / for folders."""
    return sorted(
        str(p.relative_to(folder)) + ("/" if p.is_dir() else "") for p in folder.rglob("*")
    )


# -- 6a: outputs in the way are refused before anything is written ------------------------------


@pytest.mark.parametrize(
    "case", ["out-is-a-file", "out-under-a-file", "png-is-a-file", "csv-is-a-folder"]
)
def test_reconstruct_refuses_an_output_in_the_way_and_writes_nothing(case, runs, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine\n")
    out = tmp_path / "rec"
    if case == "out-is-a-file":
        out, expected = tmp_path / "notes.txt", "it is a file, not a folder"
    elif case == "out-under-a-file":
        out, expected = tmp_path / "notes.txt" / "rec", "notes.txt is a file, not a folder"
    elif case == "png-is-a-file":
        out.mkdir()
        (out / "png").write_text("")
        expected = f"{out / 'png'}: it is a file"
    else:
        (out / "reconstruction.csv").mkdir(parents=True)
        expected = f"{out / 'reconstruction.csv'}: it is a folder"
    before = listing(tmp_path)
    args = ["reconstruct", "--checkpoint", str(runs["heatmap_sum"]), "--out", str(out)]
    assert main(args) == 1
    assert expected in one_error_line(capsys)
    assert listing(tmp_path) == before  # no png/ or mp4/ written before the refusal


def test_reconstruct_with_no_readable_video_leaves_nothing(runs, tmp_path, capsys):
    (tmp_path / "data" / "test").mkdir(parents=True)
    (tmp_path / "data" / "test" / "broken.mp4").write_bytes(b"\x00" * 64)
    out = tmp_path / "rec"
    args = ["reconstruct", "--checkpoint", str(runs["heatmap_sum"]), "--out", str(out)]
    with pytest.warns(UserWarning, match="broken.mp4"):
        assert main([*args, "--data", str(tmp_path / "data")]) == 1
    assert "no test video could be reconstructed (1 unreadable: broken)" in one_error_line(capsys)
    assert not out.exists()  # no CSV of no video, no empty png/ and mp4/


def test_animate_refuses_an_out_under_a_file(runs, driving_mp4, tmp_path, capsys):
    source = tmp_path / "s.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(source)
    (tmp_path / "notes.txt").write_text("mine\n")
    out = tmp_path / "notes.txt" / "x.mp4"
    args = ["animate", "--source", str(source), "--driving", str(driving_mp4)]
    assert main([*args, "--checkpoint", str(runs["heatmap_sum"]), "--out", str(out)]) == 1
    assert f"cannot write {out}: " in one_error_line(capsys)
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_animate_refuses_an_out_that_is_a_folder(runs, driving_mp4, tmp_path, capsys):
    source = tmp_path / "s.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(source)
    out = tmp_path / "x.mp4"
    out.mkdir()
    args = ["animate", "--source", str(source), "--driving", str(driving_mp4)]
    assert main([*args, "--checkpoint", str(runs["heatmap_sum"]), "--out", str(out)]) == 1
    assert "it is a folder, not a file" in one_error_line(capsys)
    assert listing(out) == []


# -- 6b: a damaged checkpoint ------------------------------------------------------------------


def rewritten(checkpoint: Path, path: Path, old: bytes, new: bytes) -> Path:
    """A copy of a torch zip checkpoint whose data.pkl has `old` replaced by `new` (the
    archive's checksums agree with the damage: as a tool that rewrites the pickle leaves it)."""
    with zipfile.ZipFile(checkpoint) as archive:
        records = [(info.filename, archive.read(info.filename)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in records:
            if name.endswith("/data.pkl"):
                assert old in data
                data = data.replace(old, new, 1)
            archive.writestr(name, data)
    return path


def test_a_checkpoint_with_a_corrupt_pickle_is_one_line_naming_it(runs, tmp_path, capsys):
    bad = rewritten(runs["heatmap_sum"], tmp_path / "bad.pth", b"kptoolkit", b"\xffptoolkit")
    assert main(["reconstruct", "--checkpoint", str(bad), "--out", str(tmp_path / "rec")]) == 1
    err = one_error_line(capsys)
    assert f"cannot read checkpoint {bad}" in err and "UnicodeDecodeError" in err
    assert not (tmp_path / "rec").exists()


def test_a_checkpoint_damaged_on_disk_names_the_record_that_fails_its_checksum(runs, tmp_path):
    data = bytearray(runs["heatmap_sum"].read_bytes())
    start = data.find(b"/data.pkl") + 200  # inside the pickle's bytes, past the local header
    for offset in range(start, start + 64, 7):
        data[offset] ^= 0x5A
    bad = tmp_path / "flipped.pth"
    bad.write_bytes(bytes(data))
    with pytest.raises(Exception, match=r"data\.pkl fails its checksum") as error:
        read_checkpoint(bad)
    assert str(bad) in str(error.value)


def test_a_fault_of_the_reading_code_keeps_its_traceback(runs, monkeypatch):
    import torch

    def broken_load(*args, **kwargs):
        raise KeyError("a bug, not a damaged file")

    monkeypatch.setattr(torch, "load", broken_load)
    with pytest.raises(KeyError, match="a bug"):
        read_checkpoint(runs["heatmap_sum"])  # a sound archive: not reported as damaged


# -- 7a: --seeds with an empty item --------------------------------------------------------------


@pytest.mark.parametrize("text", ["0,,1", "0,", ",1", " , "])
def test_seeds_with_an_empty_item_are_refused(text):
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds(text)


def test_bench_with_an_empty_seed_stops_before_it_starts(tmp_path, capsys, monkeypatch):
    import kptoolkit.bench.runner

    started = []
    monkeypatch.setattr(kptoolkit.bench.runner, "Bench", lambda options: started.append(options))
    out = tmp_path / "bench"
    assert main(["bench", "--seeds", "0,,1", "--out", str(out), "--no-progress"]) == 1
    assert "--seeds has an empty item" in one_error_line(capsys)
    assert started == [] and not out.exists()
    assert parse_seeds("0, 1,2") == [0, 1, 2]


# -- 7b: a component parameter of the wrong type -------------------------------------------------


class ThickMasker(Masker):
    """A plugin-style masker whose constructor declares typed parameters."""

    def __init__(self, thickness: int = 2, softness: float = 0.5, shape: str = "disc") -> None:
        super().__init__()
        self.ring = [0.0] * thickness  # a str here: TypeError
        self.softness = softness
        self.shape = shape


@pytest.fixture
def thick_masker():
    MASKERS.register("thick_test")(ThickMasker)
    try:
        yield "thick_test"
    finally:
        MASKERS.unregister("thick_test")


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("thickness=abc", "masker.params.thickness: expected int, got 'abc'"),
        ("thickness=2.5", "masker.params.thickness: expected int, got 2.5"),
        ("shape=3", "masker.params.shape: expected str, got 3"),
    ],
)
def test_a_wrong_parameter_type_is_refused_naming_key_type_and_value(
    setting, expected, thick_masker, tmp_path, capsys
):
    out = tmp_path / "run"
    args = ["train", *tiny_cli_args(tmp_path), "--masker", thick_masker, "--out", str(out)]
    assert main([*args, "--set", f"masker.params.{setting}", "--no-progress"]) == 1
    assert expected in one_error_line(capsys)
    assert not out.exists()
    validate = ["config", "validate", "--masker", thick_masker, "--set", f"masker.params.{setting}"]
    assert main(validate) == 1 and expected in one_error_line(capsys)


def test_parameters_of_the_declared_types_are_converted(thick_masker):
    from kptoolkit.config.schema import ExperimentConfig, ModelConfig
    from kptoolkit.experiment.components import component_params

    config = ExperimentConfig(preset="micro")
    config.masker = ModelConfig(thick_masker, params={"softness": 1, "thickness": "3"})
    params = component_params(config, "maskers", config.masker, thick_masker)
    assert params == {"softness": 1.0, "thickness": 3} and isinstance(params["softness"], float)


@needs_learned_mask
def test_the_example_plugin_refuses_a_wrong_type(capsys):
    setting = "masker.params.out_channels=abc"
    assert main(["config", "validate", "--masker", "learned_projection", "--set", setting]) == 1
    assert "masker.params.out_channels: expected int, got 'abc'" in one_error_line(capsys)


# -- 7c: a write the OS refuses names the file ---------------------------------------------------


def test_a_file_size_limit_during_reconstruction_names_the_file_and_leaves_nothing(
    runs, tmp_path, capsys, monkeypatch
):
    def too_large(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half")  # as far as the limit let it get
        raise OSError(errno.EFBIG, "File too large")  # a write() names no file

    monkeypatch.setattr(Image.Image, "save", too_large)
    out = tmp_path / "rec"
    assert main(["reconstruct", "--checkpoint", str(runs["heatmap_sum"]), "--out", str(out)]) == 1
    err = one_error_line(capsys)
    assert f"cannot write {out / 'png'}/" in err and ".png: File too large" in err
    assert "ulimit -f" in err and ".partial" not in err
    assert not out.exists()  # the MP4 written before the PNG failed is removed with its folders


def test_a_failure_keeps_what_was_there_before(runs, tmp_path, monkeypatch):
    out = tmp_path / "rec"
    (out / "png").mkdir(parents=True)
    (out / "png" / "mine.png").write_bytes(b"kept")

    def too_large(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", too_large)
    assert main(["reconstruct", "--checkpoint", str(runs["heatmap_sum"]), "--out", str(out)]) == 1
    assert listing(out) == ["png/", "png/mine.png"]


def test_atomic_path_names_the_target_not_the_partial(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(OSError) as error, atomic_path(target) as partial:
        raise OSError(errno.EFBIG, "File too large", str(partial))
    assert error.value.filename == str(target)
    with pytest.raises(OSError) as error, atomic_path(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert error.value.filename == str(target)
    with pytest.raises(OSError) as error, atomic_path(target):
        raise OSError(errno.ECONNRESET, "Connection reset")  # not about the file: left alone
    assert error.value.filename is None


@pytest.mark.slow
def test_a_real_file_size_limit_names_the_file(runs, tmp_path):
    import resource

    out = tmp_path / "rec"
    limit = 4096  # room for the shared-memory arena of a page; less than a stacked PNG

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    command = [sys.executable, "-m", "kptoolkit", "reconstruct", "--no-mp4"]
    command += ["--checkpoint", str(runs["heatmap_sum"]), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=limited)
    lines = [
        line for line in done.stderr.strip().splitlines() if not line.startswith(PROGRESS_BARS)
    ]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert f"cannot write {out / 'png'}/" in lines[0] and "File too large" in lines[0]
    assert not out.exists()


# -- 8a: what a resumed training reports ---------------------------------------------------------


def test_a_train_result_says_the_steps_of_this_call():
    from kptoolkit.engine.run_parts import TrainResult

    resumed = TrainResult(Path("run"), 120, {}, None, 1.0, start_step=20)
    assert resumed.trained_steps == 100
    assert resumed.describe() == "trained 100 steps (20 -> 120)"
    assert TrainResult(Path("run"), 120, {}, None, 1.0).describe() == "trained 120 steps"


@pytest.mark.slow
def test_a_resumed_train_reports_the_steps_it_trained(tmp_path, capsys):
    args = ["train", *tiny_cli_args(tmp_path), "--out", str(tmp_path / "run"), "--no-progress"]
    assert main([*args, "--set", "train.steps=2"]) == 0
    assert ": trained 2 steps in " in capsys.readouterr().out
    assert main([*args, "--resume", "--set", "train.steps=3"]) == 0
    printed = capsys.readouterr().out
    assert ": trained 1 steps (2 -> 3) in " in printed, printed


# -- 8b: an unreadable video is warned once per run, as one line ---------------------------------

LOADER_SCRIPT = """
import sys
from torch.utils.data import DataLoader
from kptoolkit.data.datasets import FramesDataset

dataset = FramesDataset(sys.argv[1], "train", repeats=4)
loader = DataLoader(dataset, batch_size=2, num_workers=2)
for epoch in range(2):  # the workers start again each epoch
    dataset.set_epoch(epoch)
    for _ in loader:
        pass
print(dataset.skipped)
"""


def test_a_skipped_video_is_warned_once_per_run_as_one_clean_line(tmp_path):
    root = tmp_path / "data"
    for name in ("a#1", "b#1", "c#1", "d#1"):
        make_video(root / "train" / name, "mp4")
    bad = root / "train" / "b#1.mp4"
    bad.write_bytes(bad.read_bytes()[:200])
    script = tmp_path / "load.py"
    script.write_text(textwrap.dedent(LOADER_SCRIPT))
    done = subprocess.run(
        [sys.executable, str(script), str(root)], capture_output=True, text=True, check=True
    )
    assert int(done.stdout) == 8  # every skip counted: 4 repeats x 2 epochs
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("kptoolkit: warning: skipping unreadable video: ")
    assert str(bad) in lines[0] and "warnings.warn" not in done.stderr
