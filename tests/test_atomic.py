"""Atomic writes: the target is either the old file or the complete new one, never half."""

from __future__ import annotations

import pytest

from kptoolkit.utils.atomic import atomic_path, atomic_write_text


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


def test_a_target_name_near_the_file_system_limit_still_writes(tmp_path):
    from kptoolkit.utils.atomic import partial_path, remove_orphans

    names = ["v" * 250 + ".mp4", "w" * 250 + ".mp4"]  # 254 bytes: the partial would not fit
    for name in names:
        with atomic_path(tmp_path / name, suffix=".mp4") as partial:
            assert len(partial.name.encode()) <= 255 and partial.suffix == ".mp4"
            partial.write_bytes(b"frames")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert partial_path(tmp_path / names[0]) != partial_path(tmp_path / names[1])
    orphan = partial_path(tmp_path / names[0], ".mp4")
    orphan.write_bytes(b"half")
    assert remove_orphans(tmp_path) == [orphan]


def test_orphans_below_a_folder_go_only_when_asked_for(tmp_path):
    from kptoolkit.utils.atomic import partial_path, remove_orphans

    nested = tmp_path / "runs" / "row" / "png"
    nested.mkdir(parents=True)
    orphan = partial_path(nested / "clip.png", ".png")
    orphan.write_bytes(b"half")
    kept = nested / "clip.png"
    kept.write_bytes(b"whole")
    assert remove_orphans(tmp_path) == [] and orphan.exists()
    assert remove_orphans(tmp_path, recursive=True) == [orphan]
    assert not orphan.exists() and kept.exists()


def test_orphans_in_a_folder_another_writer_holds_are_live_writes_and_stay(tmp_path):
    from kptoolkit.utils.atomic import partial_path, remove_orphans
    from kptoolkit.utils.locks import folder_lock, held

    live_run, dead_run = tmp_path / "runs" / "live", tmp_path / "runs" / "dead"
    live = partial_path(live_run / "reconstruction" / "png" / "clip.png", ".png")
    dead = partial_path(dead_run / "reconstruction" / "png" / "clip.png", ".png")
    for orphan in (live, dead):
        orphan.parent.mkdir(parents=True)
        orphan.write_bytes(b"half")
    # the bench holds its own folder; a job of a killed bench still reconstructs in one run
    with folder_lock(tmp_path), folder_lock(live_run, "a job"):
        assert remove_orphans(tmp_path, recursive=True, busy=held) == [dead]
    assert live.exists() and not dead.exists()
