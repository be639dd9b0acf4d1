"""The command line: list, info and config, including a broken plugin on the path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import write_distribution

from kptoolkit.cli import main

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


def test_list_shows_plugin_with_distribution(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if "learned_projection" in row)
    assert "kptoolkit-learned-mask 0.1.0" in line and line.startswith("masker")


def test_list_filters_by_kind_and_glob(capsys):
    assert main(["list", "--kind", "maskers", "learned*"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 2 and "learned_projection" in rows[1]
    assert main(["list", "--kind", "generators", "zzz*"]) == 0
    assert "no generators match" in capsys.readouterr().out


def test_list_imports_no_component_and_no_torch():
    code = (
        "import sys; from kptoolkit.cli import main; main(['list']); "
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
    assert "learned_projection" in rows and "BROKEN" not in rows["learned_projection"]
    assert "frame" in rows

    info = run_cli("info", "broken_mask", pythonpath=tmp_path)
    assert info.returncode == 1
    assert "broken-plugin 0.1.0" in info.stdout
    assert "broken_mask = broken_plugin_mod:BrokenMasker" in info.stdout
    assert "ImportError: needs libfoo 2.0" in info.stdout


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
