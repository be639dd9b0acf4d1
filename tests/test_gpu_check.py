"""benchmarks/gpu_check.sh without a GPU: it says so in one line and exits 0, having run
nothing; and the script's logic (tolerances, loss comparison, summary, step bookkeeping,
configs) on fake inputs. The two `slow` tests run its parity and timing code on the CPU."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from hardware_fixtures import force_cuda

from kptoolkit.experiment.plan import plan_experiment
from kptoolkit.runtime.hardware import Hardware
from kptoolkit.runtime.precision import resolve_precision

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "benchmarks" / "scripts"
SCRIPT = SCRIPTS / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # registered as an import would register it
    # its sibling modules, found as when it runs as a file (its folder is sys.path[0] then)
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPTS))
    return module


gpu_check = _load()
# the modules the script imported; a test patches a name in the module that looks it up
gpu_check_compare = sys.modules["gpu_check_compare"]
gpu_check_report = sys.modules["gpu_check_report"]
gpu_check_workers = sys.modules["gpu_check_workers"]
gpu_check_parity = sys.modules["gpu_check_parity"]


def test_without_cuda_the_script_says_so_and_runs_nothing(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == gpu_check.EXIT_NO_CUDA == 0
    assert done.stdout.strip().splitlines() == [gpu_check.NO_CUDA_MESSAGE]
    assert "no CUDA device" in gpu_check.NO_CUDA_MESSAGE
    assert "nothing was run" in gpu_check.NO_CUDA_MESSAGE
    assert not out.exists()


def test_bad_arguments_exit_2_before_anything_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "out"), "--only", "7"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == gpu_check.EXIT_USAGE
    assert "unknown steps ['7']" in done.stderr
    assert not (tmp_path / "out").exists()


def test_with_a_gpu_the_checks_run_in_a_new_or_empty_folder(tmp_path, monkeypatch, capsys):
    """main's path on a CUDA machine, with the checks themselves stood in for."""
    ran = []

    def fake_checks(out, budget, only):
        print("checks ran")
        ran.append((out, budget, only))
        return 1

    monkeypatch.setattr(gpu_check, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(gpu_check, "run_checks", fake_checks)
    out = tmp_path / "out"
    assert gpu_check.main([str(out), "--only", "3,6", "--budget", "100"]) == 1
    assert ran == [(out, 100.0, {"3", "6"})]
    assert (out / "gpu_check.log").read_text() == "checks ran\n"  # the console, teed
    assert gpu_check.main([str(out)]) == gpu_check.EXIT_USAGE  # not empty
    assert "is not empty" in capsys.readouterr().out and len(ran) == 1


# -- tolerances and comparisons -----------------------------------------------------------------


def test_tolerance_is_absolute_plus_relative_to_the_reference():
    tolerance = gpu_check_compare.Tolerance(rtol=1e-3, atol=1e-6)
    assert tolerance.allows(1.0, 1.0 + 1e-3)
    assert not tolerance.allows(1.0, 1.0 + 1.1e-3)
    assert tolerance.allows(0.0, 1e-6) and not tolerance.allows(0.0, 2e-6)
    assert tolerance.allows(-2.0, -2.002)
    assert not tolerance.allows(math.nan, math.nan)
    assert not tolerance.allows(1.0, math.inf)


def test_loss_tolerance_is_a_share_of_the_steps_total():
    assert gpu_check_compare.loss_tolerance(1, "total", 0.5).allows(0.5, 0.5 + 4e-5)
    assert not gpu_check_compare.loss_tolerance(1, "total", 0.5).allows(0.5, 0.5 + 6e-5)
    # a small term gets the same absolute room as the total: 1e-4 of 0.5
    assert gpu_check_compare.loss_tolerance(1, "equivariance", 0.5).allows(0.01, 0.01 + 4e-5)
    assert gpu_check_compare.loss_tolerance(2, "equivariance", 0.5).allows(0.01, 0.01 + 4e-3)
    assert not gpu_check_compare.loss_tolerance(2, "equivariance", 0.5).allows(0.01, 0.01 + 6e-3)
    assert not gpu_check_compare.loss_tolerance(5, "lr", 0.5).allows(2e-4, 2e-5)
    assert gpu_check_compare.loss_tolerance(5, "lr", 0.5).allows(2e-4, 2e-4)


def test_compare_values_reports_the_worst_key():
    reference = {"a": 1.0, "b": 2.0}
    tolerance = gpu_check_compare.Tolerance(1e-3, 0.0)
    compared = gpu_check_compare.compare_values("x", reference, {"a": 1.0, "b": 2.001}, tolerance)
    assert compared.ok and compared.where == "b" and compared.compared == 2
    assert compared.worst_abs == pytest.approx(1e-3) and compared.worst_rel == pytest.approx(5e-4)
    assert compared.used == pytest.approx(0.5)  # 0.001 of the 0.002 allowed
    assert compared.describe().startswith("x: ok: |diff| 0.001 (relative 0.0005) at b, 0.5 of")
    failed = gpu_check_compare.compare_values("x", reference, {"a": 1.1, "b": 2.0}, tolerance)
    assert not failed.ok and failed.where == "a" and "OUT OF TOLERANCE" in failed.describe()


def test_compare_values_fails_on_missing_keys_or_nothing():
    tolerance = gpu_check_compare.Tolerance(1.0, 1.0)
    missing = gpu_check_compare.compare_values("x", {"a": 1.0, "b": 1.0}, {"a": 1.0}, tolerance)
    assert not missing.ok and "missing on one side: b" in missing.describe()
    assert not gpu_check_compare.compare_values("x", {}, {}, tolerance).ok
    assert not gpu_check_compare.compare_values("x", {"a": 1.0}, {"a": math.nan}, tolerance).ok


def _losses(values: dict[int, float]) -> dict[int, dict[str, float]]:
    return {
        step: {"epoch": 0.0, "lr": 2e-4, "total": v, "l1/prediction": v}
        for step, v in values.items()
    }


def test_compare_losses_holds_each_step_to_its_tolerance():
    cpu = _losses({1: 0.5, 2: 0.4, 3: 0.3, 4: 0.2, 5: 0.1, 6: 0.1})
    assert gpu_check_compare.compare_losses(cpu, cpu).ok

    def moved(step: int, column: str, relative: float) -> dict[int, dict[str, float]]:
        other = {s: dict(row) for s, row in cpu.items()}
        other[step][column] *= 1 + relative
        return other

    assert gpu_check_compare.compare_losses(cpu, moved(1, "total", 5e-5)).ok
    assert not gpu_check_compare.compare_losses(cpu, moved(1, "total", 5e-4)).ok  # step 1: 1e-4
    assert gpu_check_compare.compare_losses(cpu, moved(2, "l1/prediction", 9e-3)).ok  # later: 1e-2
    failed = gpu_check_compare.compare_losses(cpu, moved(6, "total", 2e-2), label="fomm losses.csv")
    assert not failed.ok and failed.where == "step 6 total"
    assert failed.describe().startswith("fomm losses.csv: OUT OF TOLERANCE")
    assert "within 0.0001 of the step's total loss at step 1, 0.01 later" in failed.tolerance
    assert not gpu_check_compare.compare_losses(
        cpu, moved(3, "lr", 1e-3)
    ).ok  # the schedule differs
    fewer = {s: row for s, row in cpu.items() if s != 6}
    assert not gpu_check_compare.compare_losses(cpu, fewer).ok


def test_read_losses_csv(tmp_path):
    path = tmp_path / "losses.csv"
    path.write_text("step,epoch,lr,total,l1\n1,0,0.0002,0.5,0.25\n2,0,0.0002,0.4,\n")
    rows = gpu_check_compare.read_losses_csv(path)
    assert rows == {
        1: {"epoch": 0.0, "lr": 2e-4, "total": 0.5, "l1": 0.25},
        2: {"epoch": 0.0, "lr": 2e-4, "total": 0.4},
    }


# -- precisions, reports, summary ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "native", "expected"),
    [
        ("cuda:0", True, ["fp32", "bf16", "fp16"]),
        ("cuda:0", False, ["fp32", "fp16"]),
        ("cpu", True, ["fp32", "bf16"]),
        ("cpu", False, ["fp32"]),
    ],
)
def test_offered_precisions_include_what_auto_resolves_to(device, native, expected):
    hardware = Hardware(device, "fake", "sm_90", native, "2", 1)
    offered = gpu_check_compare.offered_precisions(hardware.device_type, native)
    assert offered == expected
    assert resolve_precision("auto", hardware) in offered


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0"
failures="1" skipped="2" tests="5" time="3.2"><testcase classname="a" name="b"/></testsuite>
</testsuites>"""


def test_said_precision_reads_the_commands_line():
    output = "loading\nreconstructing in bf16, channels_last (auto: native bfloat16 on sm_90)\n"
    assert gpu_check_compare.said_precision(output) == "bf16"
    assert gpu_check_compare.said_precision("animating in fp16, contiguous", "animating") == "fp16"
    assert gpu_check_compare.said_precision("nothing said") == "?"
    gpu = "reconstructing in fp16, channels_last; NVIDIA H100 80GB HBM3 (sm_90, native bfloat16)"
    assert gpu_check_compare.said_gpu(gpu, "reconstructing")
    assert not gpu_check_compare.said_gpu(output, "reconstructing")


def test_junit_counts():
    counts = gpu_check_compare.junit_counts(JUNIT)
    assert counts == {"tests": 5, "failures": 1, "errors": 0, "skipped": 2, "passed": 2}


def test_summary_lists_every_step_and_the_verdict():
    passed = gpu_check_report.StepResult("1", "pytest -m cuda", "PASS", 12.3, "1 passed")
    failed = gpu_check_report.StepResult("4b", "NCCL + DDP", "FAIL", 75.0, "exit 1: ...")
    text = gpu_check_report.format_summary([passed, failed], 200.0)
    lines = text.splitlines()
    assert lines[0].split() == ["step", "result", "time", "detail"]
    assert "1 pytest -m cuda" in lines[1] and "PASS" in lines[1] and "12.3 s" in lines[1]
    assert "4b NCCL + DDP" in lines[2] and "FAIL" in lines[2] and "1 min 15 s" in lines[2]
    assert lines[-1] == "GPU check FAILED: 1 of 2 steps failed (4b) in 3 min 20 s"
    assert gpu_check.exit_code([passed, failed]) == 1
    assert gpu_check.exit_code([passed]) == 0
    assert gpu_check.exit_code([]) == 1
    assert gpu_check_report.format_summary([passed], 12.3).endswith(
        "GPU check PASSED: 1 steps in 12.3 s"
    )


def test_timing_table_rows_and_failures():
    row = {
        "generator": "fomm",
        "masker": "fomm_keypoints",
        "precision": "bf16",
        "auto": True,
        "channels_last": True,
        "params": 59_800_000,
        "mean_s": 0.1234,
        "min_s": 0.12,
        "peak_allocated_mib": 10240.4,
        "peak_reserved_mib": 12000.0,
        "losses": [1.5, 1.25],
        "ok": True,
    }
    error = {"generator": "x2face", "precision": "fp16", "ok": False, "error": "x2face fp16: OOM"}
    lines = gpu_check_report.timing_table([row, error]).splitlines()
    assert lines[1].startswith("|:---|") and len(lines) == 4
    assert "| fomm | fomm_keypoints | bf16 (auto) | channels_last | 59.8 | 0.1234 |" in lines[2]
    assert "| 10240 | 12000 | 1.5 -> 1.25 | PASS |" in lines[2]
    assert lines[3].startswith("| x2face | ? | fp16 |") and lines[3].endswith("| FAIL |")


def test_machine_lines_describe_the_gpu_and_the_software(monkeypatch):
    force_cuda(monkeypatch, native_bf16=True)
    properties = types.SimpleNamespace(total_memory=80 * 2**30, multi_processor_count=132)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Fake H100")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: properties)
    monkeypatch.setattr(gpu_check_report, "nvidia_smi_driver", lambda: "999.1")
    lines = gpu_check_report.machine_lines(torch)
    assert lines[0] == (
        "GPU 0: Fake H100, compute capability 9.0 (sm_90), 80.0 GiB, 132 SMs, native bfloat16"
    )
    assert lines[1].startswith(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN ")
    assert "NCCL" in lines[1] and lines[2] == "driver 999.1"
    assert lines[3].startswith("TF32 as kptoolkit runs: matmul ")
    assert lines[4].startswith("CPU: ") and lines[5].startswith("Python ")


# -- running steps -------------------------------------------------------------------------------


def test_a_command_past_its_limit_is_killed_and_reported(tmp_path):
    log = tmp_path / "log.txt"
    ran = gpu_check_report.run_command(
        [sys.executable, "-c", "import time; time.sleep(30)"], log, 1
    )
    assert ran.returncode is None and not ran.ok and ran.seconds < 20
    assert ran.describe().startswith("timed out after")
    assert "killed after 1 s" in log.read_text()
    ran = gpu_check_report.run_command(
        [sys.executable, "-c", "print('hello'); raise SystemExit(3)"], log, 30
    )
    assert ran.returncode == 3 and ran.describe() == "exit 3"
    assert "hello" in gpu_check_report.tail(log)


def test_steps_pass_fail_and_stop_at_the_budget(tmp_path, capsys):
    check = gpu_check_report.Check(tmp_path, budget_s=1000)

    def failing(folder):
        raise gpu_check_report.StepFailed("it did not hold")

    def broken(folder):
        raise ValueError("a bug")

    assert check.step("1", "fine", lambda folder: f"ran in {folder.name}").passed
    assert check.step("2", "failing", failing).detail == "it did not hold"
    assert check.step("3", "broken", broken).detail == "ValueError: a bug"
    check.budget_s = 0
    late = check.step("4", "late", lambda folder: "never")
    assert late.status == "FAIL" and late.detail.startswith("not run:")
    assert [r.status for r in check.results] == ["PASS", "FAIL", "FAIL", "FAIL"]
    assert check.results[0].detail == "ran in step1" and (tmp_path / "step4").is_dir()
    assert "PASS 1 fine" in capsys.readouterr().out


# -- the configs the GPU steps train ---------------------------------------------------------------


def test_paper_configs_plan_at_published_widths_with_untrained_perceptual_terms(tmp_path):
    data = tmp_path / "data"
    naturals = {}
    for generator in gpu_check_workers.PAPER_GENERATORS:
        config = gpu_check_workers.paper_config(generator, data, "fp16")
        kp = gpu_check_workers.detector_file_for(config, tmp_path)
        plan = plan_experiment(config, kp)  # no device: fp16 stays as asked
        naturals[generator] = plan.config.masker.name
        assert plan.config.generator.preset == "paper" and plan.config.data.frame_size == 256
        assert plan.config.train.batch_size == gpu_check_workers.PAPER_BATCH
        assert plan.config.train.precision == "fp16"
        terms = [*config.losses, *(config.generator.losses or [])]
        perceptual = [t for t in terms if t.name == "perceptual_pyramid"]
        assert perceptual and all(t.params["weights"] == "random" for t in perceptual)
        assert (kp is not None) == (generator == "two_stage")
    assert naturals == {
        "two_stage": "heatmap_sum",
        "fomm": "fomm_keypoints",
        "x2face": "frame",
        "monkey_net": "monkey_net_keypoints",
    }


def test_parity_config_is_micro_fp32_channels_last(tmp_path):
    config = gpu_check_parity.parity_config(tmp_path, "heatmap_sum", "two_stage", 6)
    assert (config.preset, config.train.precision, config.train.channels_last) == (
        "micro",
        "fp32",
        True,
    )
    assert (config.train.steps, config.train.log_every, config.train.checkpoint_every) == (6, 1, 3)
    assert config.data.root == str(tmp_path) and config.eval.save_mp4 is False


@pytest.fixture(scope="module")
def puppets(tmp_path_factory):
    return gpu_check_workers.render_puppets(
        tmp_path_factory.mktemp("puppets") / "d", 8, 6, 64, workers=1
    )


@pytest.mark.slow
def test_parity_of_two_identical_cpu_sides_is_exact(tmp_path, puppets):
    """The parity worker end to end on the CPU: training, losses, reconstructions, TF32."""
    sides = (gpu_check_parity.Side("a", "cpu"), gpu_check_parity.Side("b", "cpu"))
    pairs = [("heatmap_sum", "two_stage")]
    # the worker sets the TF32 flags; put them back by hand (pytest >= 9.2's monkeypatch
    # deletes, on undo, an attribute that a module's __getattr__ provides, and torch's
    # cuBLAS flags object refuses that)
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
    before = [flag.allow_tf32 for flag in flags]
    try:
        code = gpu_check_parity.worker_parity(tmp_path, puppets, steps=2, sides=sides, pairs=pairs)
    finally:
        for flag, value in zip(flags, before, strict=True):
            flag.allow_tf32 = value
    result = json.loads((tmp_path / "parity.json").read_text())
    assert code == 0 and result["ok"], result["lines"]
    assert [c["worst_abs"] for c in result["comparisons"]] == [0.0, 0.0, 0.0, 0.0]
    assert result["pairs"] == ["heatmap_sum+two_stage"]
    assert result["tf32_after"] == {"matmul": False, "cudnn": False}
    assert sorted(
        gpu_check_compare.read_losses_csv(tmp_path / "heatmap_sum+two_stage" / "b" / "losses.csv")
    ) == [1, 2]


@pytest.mark.slow
def test_training_steps_are_timed_and_a_failing_run_is_a_row(tmp_path, puppets):
    def make_config(generator, precision):
        if generator == "nonexistent":
            raise ValueError("no such generator")
        return gpu_check_parity.parity_config(
            puppets, "", generator, 100, [f"train.precision={precision}"]
        )

    rows = gpu_check_workers.timing_rows(
        tmp_path, "cpu", ["x2face", "nonexistent"], ["fp32"], make_config, warmup=1, steps=2
    )
    row, failed = rows
    assert row["ok"] and len(row["losses"]) == 3 and row["min_s"] <= row["mean_s"]
    assert (row["generator"], row["masker"], row["precision"]) == ("x2face", "frame", "fp32")
    assert row["params"] > 0 and row["peak_allocated_mib"] == 0.0
    assert failed == {
        "generator": "nonexistent",
        "precision": "fp32",
        "ok": False,
        "error": "nonexistent fp32: ValueError: no such generator",
        "wall_s": failed["wall_s"],
    }
    assert not list(tmp_path.glob("run-*"))  # timing writes no run folder


@pytest.mark.slow
def test_the_ddp_worker_on_gloo_without_cuda(tmp_path):
    done = subprocess.run(
        [*gpu_check.TORCHRUN, "--nproc_per_node=1", *gpu_check.worker_command("ddp", tmp_path)[1:]],
        capture_output=True,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        timeout=300,
    )
    result = json.loads((tmp_path / "ddp.json").read_text())
    assert done.returncode == 0, done.stderr[-2000:]
    assert result["ok"] and result["backend"] == "gloo" and result["world_size"] == 1
    assert result["largest_gradient_difference"] == 0.0
