"""Launchers are plugins: found through `kptoolkit.launchers`, chosen with `--launcher`, built
with `--launcher-set`; a bad choice is one line before anything is written."""

from __future__ import annotations

import pytest

from kptoolkit.bench.launching import build_launcher
from kptoolkit.bench.plan import BenchOptions
from kptoolkit.cli.main import main
from kptoolkit.cli.options import parse_key_values
from kptoolkit.errors import ConfigError, KptoolkitError
from kptoolkit.launchers.base import Job, Launcher, LaunchSettings, WithRegistrations
from kptoolkit.launchers.local import LocalLauncher
from kptoolkit.registry.registries import LAUNCHERS, MASKERS


def _options(**changes) -> BenchOptions:
    return BenchOptions(maskers=["heatmap_sum"], generators=["two_stage"], **changes)


def test_the_built_in_launchers_are_entry_points():
    assert {"local", "submitit", "ray"} <= set(LAUNCHERS.names())
    assert LAUNCHERS.get("local") is LocalLauncher


def test_jobs_is_the_local_launchers_worker_count():
    launcher = build_launcher(_options(jobs=3))
    assert isinstance(launcher, LocalLauncher) and launcher.jobs == 3
    assert launcher.runs_here


def test_jobs_with_another_launcher_is_refused():
    with pytest.raises(ConfigError, match="--jobs sets the local launcher's workers"):
        build_launcher(_options(jobs=2, launcher="submitit"))


def test_an_unknown_launcher_or_parameter_is_one_line(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--profile", "micro", "--launcher", "slurmm", "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "slurmm" in error
    args = ["bench", "--profile", "micro", "--launcher-set", "job=2", "--out", str(out)]
    assert main(args) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "'job'" in error and "did you mean 'jobs'" in error
    assert not out.exists()  # nothing written


def test_launcher_settings_are_key_values():
    assert parse_key_values(["partition=gpu", "gpus_per_job=1", "mem_gb=7.5"], "--x") == {
        "partition": "gpu",
        "gpus_per_job": 1,
        "mem_gb": 7.5,
    }
    with pytest.raises(ConfigError, match="--x 'partition' is not of the form key=value"):
        parse_key_values(["partition"], "--x")


def test_a_launcher_must_run_its_jobs():
    with pytest.raises(NotImplementedError):
        Launcher().run([Job("a", "a", print, tuple)], LaunchSettings())


class _Probe:
    """A component registered in this process only."""


def _registered(name: str) -> bool:
    return name in MASKERS.names()


def test_work_sent_elsewhere_registers_the_bench_process_components_first():
    MASKERS.register("probe_only_here")(_Probe)
    try:
        registrations = {"maskers": {"probe_only_here": _Probe}}
        MASKERS.unregister("probe_only_here")
        assert not _registered("probe_only_here")
        assert WithRegistrations(_registered, registrations)("probe_only_here")
    finally:
        if _registered("probe_only_here"):
            MASKERS.unregister("probe_only_here")


def test_a_missing_engine_is_one_line_naming_its_extra(monkeypatch):
    import builtins

    from kptoolkit.launchers.base import require

    real = builtins.__import__

    def no_engine(name, *args, **kwargs):
        if name == "not_an_engine":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_engine)
    with pytest.raises(KptoolkitError, match=r"pip install 'kptoolkit\[engine\]'"):
        require("not_an_engine", "engine")
