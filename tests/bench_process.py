"""A `kptoolkit` command (a bench) run as a user runs it, in a process session of its own, for
the tests that kill benches or their jobs: its output as it comes, the processes its session
leaves, and its results table without the columns that time it."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

TIME_COLUMNS = ("ms_per_frame", "train_minutes")


def cache_env(cache: Path) -> dict[str, str]:
    """This environment with its own kptoolkit cache, offline."""
    return {**os.environ, "KPTOOLKIT_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


class BenchProcess:
    """`python -m kptoolkit ARGS --out OUT` in a session of its own; its output lines are read
    as they come, each with the seconds since it started."""

    def __init__(self, args: list[str], out: Path, env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.seconds = 0.0  # how long it ran, once waited for
        self.lines: list[tuple[float, str]] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kptoolkit", *args, "--out", str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic() - self.started, line))

    def output(self) -> str:
        """Everything it printed so far."""
        return "".join(line for _, line in self.lines)

    def first(self, prefix: str) -> float:
        """Seconds from its start to its first line that starts with `prefix`."""
        return next(at for at, line in self.lines if line.startswith(prefix))

    def wait(self, timeout: float = 900) -> int:
        """Its exit code, once it ends."""
        code = self.process.wait(timeout)
        self.seconds = time.monotonic() - self.started
        self._reader.join(1)  # a job that outlives the bench may keep the pipe open
        return code

    def stop_all(self) -> None:
        """Kill what is left of its session (cleanup after a failed test)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def session_processes(session: int) -> list[str]:
    """'pid state command' of each live (not zombie) process of `session` (Linux: /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        command, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        state, _parent, _group, sid = rest.split()[:4]
        if int(sid) == session and state != "Z":
            found.append(f"{entry.name} {state} {command}")
    return found


def survivors(session: int, wait_s: float = 20.0) -> list[str]:
    """The processes of `session` still alive after up to `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    while (alive := session_processes(session)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def results_table(out: Path) -> list[dict[str, str]]:
    """A bench's results.csv without its time columns (a rerun's times are its own)."""
    with (out / "results.csv").open(newline="") as handle:
        return [
            {k: v for k, v in row.items() if k not in TIME_COLUMNS}
            for row in csv.DictReader(handle)
        ]
