"""Atomic writes: the target is either the old file or the complete new one, never half."""

from __future__ import annotations

import pytest

from kptoolkit.atomic import atomic_path, atomic_write_text


def test_a_completed_write_replaces_the_file_and_leaves_no_partial(tmp_path):
    target = tmp_path / "sub" / "results.md"
    atomic_write_text(target, "old\n")
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["results.md"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_partial(tmp_path):
    target = tmp_path / "losses.csv"
    target.write_text("step,loss\n1,0.5\n")
    with pytest.raises(RuntimeError), atomic_path(target, durable=True) as partial:
        partial.write_text("step,loss\n")  # half written when the writer dies
        raise RuntimeError("killed")
    assert target.read_text() == "step,loss\n1,0.5\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["losses.csv"]


def test_the_partial_keeps_the_suffix_a_writer_needs(tmp_path):
    with atomic_path(tmp_path / "a.png", suffix=".png") as partial:
        assert partial.name.startswith(".a.png.") and partial.suffix == ".png"
        partial.write_bytes(b"x")
    assert (tmp_path / "a.png").read_bytes() == b"x"
