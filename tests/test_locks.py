"""The two locks on one primitive: a folder's writer lock fails fast, a cache lock waits."""

from __future__ import annotations

import threading

import pytest

from kptoolkit.utils.locks import FolderBusyError, exclusive, folder_lock


def test_a_held_folder_is_refused_at_once_and_free_again_after(tmp_path):
    folder = tmp_path / "out"
    busy = pytest.raises(FolderBusyError, match=r"in use by a test run \(pid \d+\)")
    with folder_lock(folder, "a test run"), busy, folder_lock(folder, "a test run"):
        pass
    with folder_lock(tmp_path / "out"):
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
