"""The two locks on one primitive: a folder's writer lock fails fast, a cache lock waits."""

from __future__ import annotations

import threading

import pytest

from kptoolkit.utils.locks import LOCK_NAME, FolderBusyError, exclusive, folder_lock, held


def test_a_held_folder_is_refused_at_once_and_free_again_after(tmp_path):
    folder = tmp_path / "out"
    busy = pytest.raises(FolderBusyError, match=r"in use by a test run \(pid \d+\)")
    with folder_lock(folder, "a test run"), busy, folder_lock(folder, "a test run"):
        pass
    with folder_lock(tmp_path / "out"):
        pass


def test_held_says_whether_another_writer_holds_the_folder_now(tmp_path):
    folder = tmp_path / "run"
    assert not held(folder)  # no folder, no lock file
    with folder_lock(folder):
        assert held(folder)
    assert not held(folder)  # released: the lock file stays, nobody holds it
    assert (folder / LOCK_NAME).is_file()


def test_a_holder_on_another_host_is_named_with_it(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    monkeypatch.setattr("socket.gethostname", lambda: "node07")
    with folder_lock(folder, "a job"):
        monkeypatch.setattr("socket.gethostname", lambda: "login1")
        busy = pytest.raises(FolderBusyError, match=r"in use by a job \(pid \d+ on node07\)")
        with busy, folder_lock(folder, "a job"):
            pass


def test_a_cache_lock_waits_for_its_holder(tmp_path):
    lock = tmp_path / "cache" / "item.lock"
    events: list[str] = []
    held, asked = threading.Event(), threading.Event()

    def second() -> None:
        held.wait()
        asked.set()
        with exclusive(lock):
            events.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    with exclusive(lock):
        held.set()
        asked.wait()
        thread.join(timeout=0.2)  # it cannot finish while the lock is held
        assert thread.is_alive()
        events.append("first")
    thread.join()
    assert events == ["first", "second"]
