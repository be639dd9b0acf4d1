"""The command line: list, info and config, including a broken plugin on the path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_fixtures import needs_learned_mask, plugin_installed, write_distribution
from train_fixtures import tiny_cli_args

from kptoolkit.cli.main import main

REPO = Path(__file__).resolve().parents[1]

BROKEN_MODULE_FILE = "broken_plugin_mod.py"
BROKEN_MODULE = '''import os

raise ImportError("needs libfoo 2.0")


class BrokenMasker:
    """Never reached: the module raises first."""
'''


def run_cli(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "kptoolkit", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


@needs_learned_mask
def test_list_shows_plugin_with_distribution(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if "learned_projection" in row)
    assert "kptoolkit-learned-mask 0.1.0" in line and line.startswith("masker")


@needs_learned_mask
def test_list_filters_by_kind_and_glob(capsys):
    assert main(["list", "--kind", "maskers", "learned*"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 2 and "learned_projection" in rows[1]
    assert main(["list", "--kind", "generators", "zzz*"]) == 0
    assert "no generators match" in capsys.readouterr().out


def test_list_imports_no_component_and_no_torch():
    code = (
        "import sys; from kptoolkit.cli.main import main; main(['list']); "
        "heavy = [m for m in ('torch', 'kptoolkit_learned_mask.masker', 'kptoolkit.maskers.frame')"
        " if m in sys.modules]; print('HEAVY', heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_broken_plugin_is_marked_and_explained(tmp_path):
    write_distribution(
        tmp_path,
        "broken-plugin",
        {BROKEN_MODULE_FILE: BROKEN_MODULE},
        {"kptoolkit.maskers": {"broken_mask": "broken_plugin_mod:BrokenMasker"}},
    )
    listed = run_cli("list", pythonpath=tmp_path)
    assert listed.returncode == 0, listed.stderr
    table = listed.stdout.split("\n\n")[0].splitlines()[1:]
    rows = {row.split()[1]: row for row in table}
    assert "BROKEN" in rows["broken_mask"] and "broken-plugin 0.1.0" in rows["broken_mask"]
    assert "raises at import" in rows["broken_mask"]
    assert "frame" in rows and "BROKEN" not in rows["frame"]
    if plugin_installed("kptoolkit_learned_mask"):  # a real plugin beside the broken one
        assert "learned_projection" in rows and "BROKEN" not in rows["learned_projection"]

    info = run_cli("info", "broken_mask", pythonpath=tmp_path)
    assert info.returncode == 1
    assert "broken-plugin 0.1.0" in info.stdout
    assert "broken_mask = broken_plugin_mod:BrokenMasker" in info.stdout
    assert "ImportError: needs libfoo 2.0" in info.stdout


@needs_learned_mask
def test_info_shows_parameters(capsys):
    assert main(["info", "learned_projection"]) == 0
    out = capsys.readouterr().out
    assert "num_kp" in out and "kptoolkit-learned-mask" in out


def test_info_unknown_name(capsys):
    assert main(["info", "no_such_component"]) == 1
    assert "no component named 'no_such_component'" in capsys.readouterr().err


def test_config_show_with_override(capsys):
    assert main(["config", "show", "configs/synthetic-64.yaml", "--set", "train.lr=0.001"]) == 0
    out = capsys.readouterr().out
    assert "  lr: 0.001\n" in out and "name: synthetic-64" in out


@pytest.mark.slow
def test_config_show_misspelled_key_is_one_line_error():
    result = run_cli("config", "show", "configs/synthetic-64.yaml", "--set", "train.lrr=0.001")
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0
    assert "train.lrr" in result.stderr and "Traceback" not in result.stderr


def test_config_validate_reports_unknown_component(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("masker:\n  name: heatmap_summ\n")
    assert main(["config", "validate", str(path)]) == 1
    assert "masker: unknown masker 'heatmap_summ'" in capsys.readouterr().err


def test_file_system_errors_a_user_can_fix_are_one_line_with_what_to_do():
    import errno

    from kptoolkit.errors import file_system_error

    line = file_system_error(OSError(errno.EROFS, "Read-only file system", "/data/out"))
    assert line is not None and line.startswith("cannot write /data/out: Read-only file system")
    assert "--out" in line
    assert "ulimit -f" in file_system_error(OSError(errno.EFBIG, "File too large", "x.pth"))
    assert file_system_error(OSError(errno.ECONNRESET, "Connection reset")) is None  # a bug


def test_an_out_folder_under_a_file_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "notes.txt").write_text("mine\n")
    out = tmp_path / "notes.txt" / "run"
    code = main(["train", *tiny_cli_args(tmp_path), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0, err
    assert err.startswith(f"kptoolkit: error: cannot write {out}: Not a directory")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_folder_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code = main(["train", *tiny_cli_args(tmp_path), "--out", str(folder / "run")])
    finally:
        folder.chmod(0o755)
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0 and "Permission denied" in err, err


def test_a_cache_folder_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "notes.txt").write_text("mine\n")
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(tmp_path / "notes.txt" / "cache"))
    code = main(["train", *tiny_cli_args(tmp_path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0, err
    assert err.startswith(f"kptoolkit: error: cannot write {tmp_path / 'notes.txt' / 'cache'}")
    assert "a part of the path is a file" in err
