"""The precision and layout resolver: what `auto` becomes on each kind of machine, that explicit
values win, and what a run, a bench and an inference wrapper record and use."""

from __future__ import annotations

import pytest
import torch
import yaml
from hardware_fixtures import AVX2, AVX512_BF16, force_cpu, force_cuda
from model_fixtures import micro_params
from train_fixtures import tiny_config, tiny_kp_checkpoint

import kptoolkit
from kptoolkit.bench.plan import BenchOptions
from kptoolkit.bench.report.header import machine_description, markdown_header, optimiser_text
from kptoolkit.bench.runner import Bench
from kptoolkit.bench.stages.detector_prior import prior_folder
from kptoolkit.bench.stages.training import check_same_config
from kptoolkit.config.schema import AUTO, ExperimentConfig, config_from_dict, load_config
from kptoolkit.engine.checkpoints import check_resumable
from kptoolkit.engine.trainer import Trainer
from kptoolkit.errors import BenchError, ConfigError
from kptoolkit.experiment.plan import plan_experiment
from kptoolkit.runtime.hardware import describe
from kptoolkit.runtime.precision import (
    PrecisionError,
    resolve_numerics,
    scoring_precision,
)

# -- what auto resolves to ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "precision"), [(AVX2, "fp32"), (AVX512_BF16, "bf16")], ids=["avx2", "avx512-bf16"]
)
def test_auto_on_a_cpu_is_bf16_only_where_it_is_native(monkeypatch, kind, precision):
    force_cpu(monkeypatch, kind)
    numerics = resolve_numerics(AUTO, AUTO, "cpu")
    assert numerics.precision == precision
    assert numerics.channels_last  # measured faster on the CPU in fp32 and in bf16 alike
    assert numerics.hardware.capability == kind[0]
    assert numerics.hardware.native_bf16 is kind[1]
    assert not numerics.scales_gradients
    assert numerics.warning() is None  # nothing was forced


@pytest.mark.parametrize(
    ("native", "precision", "scaled"),
    [(True, "bf16", False), (False, "fp16", True)],
    ids=["gpu-with-bf16", "gpu-without-bf16"],
)
def test_auto_on_cuda_is_bf16_where_the_gpu_has_it_else_fp16_with_a_scaler(
    monkeypatch, native, precision, scaled
):
    force_cuda(monkeypatch, native)
    numerics = resolve_numerics(AUTO, AUTO, "cuda:0")
    assert (numerics.precision, numerics.scales_gradients) == (precision, scaled)
    assert numerics.channels_last  # not measured on a GPU: the layout used there before auto
    assert numerics.hardware.processor.startswith("Test")
    assert numerics.hardware.capability in ("sm_80", "sm_70")


def test_explicit_values_win_over_the_hardware(monkeypatch):
    force_cpu(monkeypatch, AVX512_BF16)
    exact = resolve_numerics("fp32", False, "cpu")
    assert (exact.precision, exact.channels_last) == ("fp32", False)
    force_cpu(monkeypatch, AVX2)
    forced = resolve_numerics("bf16", AUTO, "cpu")
    assert forced.precision == "bf16"  # asked for, so it runs, with a line that says the cost
    assert "no native bfloat16" in forced.warning() and "AVX2" in forced.warning()
    force_cuda(monkeypatch, False)
    assert resolve_numerics("fp32", AUTO, "cuda:0").precision == "fp32"


def test_a_precision_the_device_cannot_run_is_refused(monkeypatch):
    force_cpu(monkeypatch, AVX512_BF16)
    with pytest.raises(PrecisionError, match="fp16 runs on CUDA only"):
        resolve_numerics("fp16", AUTO, "cpu")
    with pytest.raises(PrecisionError, match="must be one of auto, fp32, bf16, fp16"):
        resolve_numerics("float8", AUTO, "cpu")
    with pytest.raises(PrecisionError, match="true, false or auto"):
        resolve_numerics(AUTO, "sometimes", "cpu")


def test_the_real_probes_describe_this_machine():
    hardware = describe("cpu")
    assert hardware.capability == torch.backends.cpu.get_cpu_capability()
    assert hardware.threads == torch.get_num_threads() and hardware.torch == torch.__version__
    expected = "bf16" if hardware.native_bf16 else "fp32"
    assert resolve_numerics(device="cpu").precision == expected


# -- configs: auto by default, the old train.amp still read ------------------------------------


def test_auto_is_the_default_and_train_amp_is_read_as_the_precision_it_meant(tmp_path):
    config = config_from_dict({})
    assert (config.train.precision, config.train.channels_last) == (AUTO, AUTO)
    assert config.eval.precision == AUTO
    assert config_from_dict({"train": {"amp": True}}).train.precision == "bf16"
    assert config_from_dict({"train": {"amp": False}}).train.precision == "fp32"
    assert config_from_dict({}, ["train.amp=true"]).train.precision == "bf16"
    with pytest.raises(ConfigError, match=r"train\.precision"):
        config_from_dict({"train": {"amp": "yes"}})
    with pytest.raises(ConfigError, match="'channels_last' must be true, false or auto"):
        config_from_dict({"train": {"channels_last": "maybe"}})
    # a run folder written before train.precision loads with the precision it trained in
    old = tmp_path / "config.yaml"
    old.write_text(yaml.safe_dump({"train": {"amp": True, "channels_last": True}}))
    assert load_config(old).train.precision == "bf16"


# -- a training run: resolved once, recorded ----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "precision", "dtype"),
    [(AVX2, "fp32", None), (AVX512_BF16, "bf16", torch.bfloat16)],
    ids=["avx2", "avx512-bf16"],
)
def test_a_run_trains_at_the_resolved_precision_and_records_it(
    tmp_path, monkeypatch, kind, precision, dtype
):
    force_cpu(monkeypatch, kind)
    run = tmp_path / "run"
    trainer = Trainer.from_config(
        tiny_config("train.steps=1"), run, str(tiny_kp_checkpoint(tmp_path))
    )
    assert trainer.amp_dtype is dtype and trainer.memory_format == torch.channels_last
    trainer.train()
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert stored["train"]["precision"] == precision and stored["train"]["channels_last"] is True
    runtime = stored["runtime"]
    assert runtime["requested_precision"] == AUTO and runtime["requested_channels_last"] == AUTO
    assert runtime["capability"] == kind[0] and runtime["native_bf16"] is kind[1]
    assert runtime["torch"] == torch.__version__
    assert runtime["threads"] == torch.get_num_threads()
    assert runtime["processor"] == f"Test CPU ({kind[0]})"
    # the stored config trains the same way again, wherever it is loaded
    assert load_config(run / "config.yaml").train.precision == precision


def test_a_run_resumed_on_another_kind_of_machine_is_refused_before_anything_is_written(
    tmp_path, monkeypatch
):
    force_cpu(monkeypatch, AVX512_BF16)
    run = tmp_path / "run"
    kp = str(tiny_kp_checkpoint(tmp_path))
    Trainer.from_config(tiny_config("train.steps=1"), run, kp).train()
    before = (run / "config.yaml").read_text()
    force_cpu(monkeypatch, AVX2)  # auto now means fp32: the run would mix precisions
    with pytest.raises(ConfigError, match=r"train\.precision: 'bf16' -> 'fp32'.*give its values"):
        Trainer.from_config(tiny_config("train.steps=2"), run, kp, resume=True)
    assert (run / "config.yaml").read_text() == before
    # its own values, given explicitly, continue it
    resumed = Trainer.from_config(
        tiny_config("train.steps=2", "train.precision=bf16"), run, kp, resume=True
    )
    assert resumed.train().steps == 2


# -- the bench: every row and the prior at the resolved precision -------------------------------


@pytest.mark.parametrize(
    ("kind", "precision"), [(AVX2, "fp32"), (AVX512_BF16, "bf16")], ids=["avx2", "avx512-bf16"]
)
def test_the_bench_trains_every_row_and_the_prior_at_the_resolved_precision(
    monkeypatch, kind, precision
):
    force_cpu(monkeypatch, kind)
    bench = Bench(BenchOptions(["heatmap_sum"], ["two_stage"]))  # the quick profile
    assert bench.numerics.precision == precision and bench.numerics.channels_last
    for entry in bench.entries:
        row = bench.entry_config(entry, None)
        assert (row.train.precision, row.train.channels_last) == (precision, True)
        planned = plan_experiment(row, device="cpu").config  # planned again, the values stand
        assert planned.train.precision == precision  # and the record says auto chose them
        assert planned.runtime["requested_precision"] == AUTO
        assert row.runtime["requested_precision"] == AUTO
    first, refine = bench.bench_prior_stages()
    # both stages at the precision the machine resolved: bfloat16 where it is native (the
    # first stage's validated float32 took twice as long for the same detector), else float32
    assert first.train.precision == refine.train.precision == precision
    assert first.train.channels_last is refine.train.channels_last is True
    # the table scores exact reconstructions unless a precision is asked for
    assert bench.base.eval.precision == "fp32"
    budget = {"lr": {"FOMM": 2e-4}, **_budget_numerics(bench)}
    text = optimiser_text(budget)
    assert text.startswith(", in bfloat16 autocast" if precision == "bf16" else ", in float32")
    assert "channels_last (auto)" in text


def _budget_numerics(bench: Bench) -> dict[str, object]:
    numerics = bench.numerics
    return {
        "precision": numerics.precision,
        "channels_last": numerics.channels_last,
        "requested_precision": numerics.requested_precision,
    }


def test_the_bench_keeps_an_explicit_training_and_scoring_precision(monkeypatch):
    force_cpu(monkeypatch, AVX2)
    options = BenchOptions(
        ["heatmap_sum"], ["two_stage"], overrides=["train.precision=bf16", "eval.precision=bf16"]
    )
    bench = Bench(options)
    assert bench.numerics.precision == "bf16" and bench.base.eval.precision == "bf16"
    assert scoring_precision(AUTO) == "fp32"
    with pytest.raises(PrecisionError):
        scoring_precision("fp16", "cpu")


def test_the_results_header_names_the_cpu_capability_and_bfloat16(monkeypatch):
    force_cpu(monkeypatch, AVX2)
    machine = machine_description(torch.device("cpu"))
    assert machine["capability"] == "AVX2" and machine["native_bf16"] is False
    assert machine["torch"] == torch.__version__
    context = {
        "profile": "quick",
        "date": "today",
        "machine": machine,
        "dataset": {"name": "synthetic_puppets", "frame_size": 64},
        "budget": {
            "steps": 1,
            "batch_size": 8,
            "lr": {"FOMM": 2e-4},
            "seeds": [0],
            "precision": "fp32",
            "channels_last": True,
        },
        "evaluators": {},
    }
    assert "AVX2, no native bfloat16" in markdown_header(context)
    machine["cpu_identity"] = "family 25 model 17 stepping 1, L2 1 MiB, L3 32 MiB"
    assert "(2 threads; family 25 model 17 stepping 1, L2 1 MiB" in markdown_header(
        context | {"machine": machine | {"torch_threads": 2}}
    )


def test_rows_trained_at_two_precisions_are_never_reused_for_each_other(tmp_path, monkeypatch):
    force_cpu(monkeypatch, AVX512_BF16)
    run, kp = tmp_path / "row", str(tiny_kp_checkpoint(tmp_path))
    Trainer.from_config(tiny_config("train.steps=1"), run, kp).train()

    def row() -> ExperimentConfig:  # the row's config as the bench hands it to training
        return plan_experiment(tiny_config("train.steps=1"), kp, device="cpu").config

    bf16 = row()
    check_same_config(run, bf16)  # the same row: reused
    force_cpu(monkeypatch, AVX2)
    fp32 = row()
    with pytest.raises(BenchError, match=r"train\.precision: 'bf16' -> 'fp32'"):
        check_same_config(run, fp32)
    check_resumable(run, bf16)
    # the detector prior's cache keeps them apart too
    assert prior_folder(fp32) != prior_folder(bf16)


# -- inference -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "precision"), [(AVX2, "fp32"), (AVX512_BF16, "bf16")], ids=["avx2", "avx512-bf16"]
)
def test_inference_model_resolves_auto_for_its_device(monkeypatch, kind, precision):
    force_cpu(monkeypatch, kind)
    wrapped = kptoolkit.inference_model(_x2face())
    assert (wrapped.precision, wrapped.channels_last) == (precision, True)
    assert wrapped.numerics.hardware.capability == kind[0]
    exact = kptoolkit.inference_model(_x2face(), "fp32", False)
    assert (exact.precision, exact.channels_last) == ("fp32", False)


def _x2face() -> torch.nn.Module:
    return kptoolkit.create_generator("x2face", **micro_params("x2face"))


def test_the_cpu_identity_tells_two_cpus_of_one_name_apart(tmp_path):
    from kptoolkit.runtime.hardware import cpu_identity

    cpuinfo = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
        "model name\t: AMD EPYC\nstepping\t: 1\n\nprocessor\t: 1\ncpu family\t: 99\n"
    )
    caches = [(1, "Data", "32K"), (1, "Instruction", "32K"), (2, "Unified", "1024K")]
    caches.append((3, "Unified", "32768K"))
    for index, (level, kind, size) in enumerate(caches):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (folder / name).write_text(f"{value}\n")
    found = cpu_identity(cpuinfo, tmp_path)
    assert found == "family 25 model 17 stepping 1, L2 1 MiB, L3 32 MiB"
    assert cpu_identity("", tmp_path / "none") == ""  # not Linux: nothing to say


def test_the_bench_header_names_the_cpu_identity():
    from kptoolkit.runtime.hardware import cpu_identity

    assert machine_description(torch.device("cpu"))["cpu_identity"] == cpu_identity()
