"""`kptoolkit bench` end to end on the micro profile, its caching, and its results tables."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from train_fixtures import detector_file

from kptoolkit.bench.plan import BenchOptions, Entry, plan_entries
from kptoolkit.bench.report.formats import (
    published_markdown,
    results_csv,
    results_json,
    results_latex,
    results_markdown,
)
from kptoolkit.bench.report.header import optimiser_text
from kptoolkit.bench.report.published import PUBLISHED_TAICHI
from kptoolkit.bench.report.results import ResultRow, TableSettings, build_table
from kptoolkit.bench.runner import Bench
from kptoolkit.bench.stages.detector_prior import (
    PriorRecipe,
    ensure_prior,
    prior_config,
    prior_diagnostics,
    prior_folder,
    prior_is_trained,
    prior_stages,
)
from kptoolkit.cli.main import main
from kptoolkit.config.schema import ExperimentConfig, structure, unstructure
from kptoolkit.data.video_io import iter_frames
from kptoolkit.errors import ConfigError, UnknownComponentError
from kptoolkit.experiment.resolve import file_sha256
from kptoolkit.runtime.precision import resolve_numerics

ABLATION = "heatmap_sum,gaussian_circles,all_k,perturbed_mask"
ORACLE = "Oracle: gt_circles + two_stage (ground-truth joints)"
SLUGS = [
    "fomm_keypoints+fomm",
    "frame+x2face",
    "heatmap_sum+two_stage",
    "gaussian_circles+two_stage",
    "all_k+two_stage",
    "perturbed_mask+two_stage",
    "gt_circles+two_stage",  # the oracle, added on synthetic data
]


def _copy_source_l1(out):
    """Mean over every frame of the reconstructed test videos of |frame - frame 0|, by hand."""
    config = yaml.safe_load((out / "runs" / f"{SLUGS[0]}-seed0" / "config.yaml").read_text())
    test = Path(config["data"]["root"]) / "test"
    names = sorted(p.stem for p in (out / "reference-source-frame" / "png").glob("*.png"))
    assert len(names) == 2  # micro: eval.max_videos
    per_frame = []
    for name in names:
        frames = np.stack(list(iter_frames(test / name))).astype(np.float64) / 255
        per_frame += list(np.abs(frames - frames[:1]).mean(axis=(1, 2, 3)))
    return float(np.mean(per_frame))


def _stamps(folder):
    """(name, modification time) of every file under `folder` but the writers' lock files
    (taking a lock records its holder)."""
    return sorted(
        (p.name, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and p.name != ".kptoolkit.lock"
    )


@pytest.fixture(scope="module")
def micro_bench(tmp_path_factory):
    """The four-masker ablation on the micro profile, run twice into the same folder."""
    root = tmp_path_factory.mktemp("bench")
    out = root / "out"
    args = ["bench", "--profile", "micro", "--masker", ABLATION, "--out", str(out), "--oracle"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KPTOOLKIT_CACHE", str(root / "cache"))
        first, second = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(first):
            assert main([*args, "--no-progress"]) == 0
        stamps = {slug: _stamps(out / "runs" / f"{slug}-seed0") for slug in SLUGS}
        stamps["reference"] = _stamps(out / "reference-source-frame")
        with contextlib.redirect_stdout(second):
            assert main([*args, "--no-progress"]) == 0
    return out, first.getvalue(), second.getvalue(), stamps, root


@pytest.mark.slow
def test_micro_bench_writes_every_output(micro_bench):
    out, first, _, _, _ = micro_bench
    for name in ("results.md", "results.csv", "results.json", "results.tex"):
        assert (out / name).is_file(), name
    for name in ("published.md", "published.tex", "evaluators.json"):
        assert (out / name).is_file(), name
    for slug in SLUGS:
        assert (out / "figures" / f"{slug}-sample.gif").stat().st_size > 0
        assert (out / "figures" / f"{slug}-losses.png").stat().st_size > 0
        assert (out / "runs" / f"{slug}-seed0" / "reconstruction" / "png").is_dir()
    assert "| Method | L1 | AKD | MKR | AED | PSNR | SSIM |" in first
    assert "Improvement over FOMM (heatmap_sum + two_stage)" in first


@pytest.mark.slow
def test_micro_bench_rows_are_measured(micro_bench):
    out = micro_bench[0]
    payload = json.loads((out / "results.json").read_text())
    rows = {row["method"]: row for row in payload["rows"]}
    floor = "Evaluator floor (synthetic_pose: real frames vs ground truth)"
    assert list(rows) == [
        "Source frame (no motion)",
        floor,
        "FOMM",
        "X2Face",
        "heatmap_sum + two_stage",
        "gaussian_circles + two_stage",
        "all_k + two_stage",
        "perturbed_mask + two_stage",
        ORACLE,
        "FOMM, driven by frame 0",
        "FOMM, warped source only",
        "X2Face, driven by frame 0",
        "heatmap_sum + two_stage, driven by frame 0",
        "gaussian_circles + two_stage, driven by frame 0",
        "all_k + two_stage, driven by frame 0",
        "perturbed_mask + two_stage, driven by frame 0",
        f"{ORACLE}, driven by frame 0",
    ]
    controls = {m: rows.pop(m) for m in list(rows) if ", " in m}
    assert rows[ORACLE]["role"] == "oracle"
    assert {row["role"] for row in controls.values()} == {"control"}
    assert all(math.isfinite(row["metrics"]["l1"]) for row in controls.values())
    reference = rows.pop("Source frame (no motion)")
    assert reference["params"] == 0 and reference["steps"] == 0
    assert reference["metrics"]["l1"] == pytest.approx(_copy_source_l1(out), abs=1e-9)
    low, high = reference["interval"]["l1"]
    assert low <= reference["metrics"]["l1"] <= high and low < high
    floor_row = rows.pop(floor)
    assert set(floor_row["metrics"]) == {"akd", "mkr"} and floor_row["metrics"]["akd"] > 0
    for row in rows.values():
        for key in ("l1", "akd", "mkr", "aed", "psnr", "ssim"):
            assert math.isfinite(row["metrics"][key]), (row["method"], key)
        assert 0 < row["metrics"]["l1"] < 1
        assert row["params"] > 0 and row["ms_per_frame"] > 0 and row["steps"] == 4
    # all_k gets a K-channel generator; the others a one-channel one: more parameters
    assert rows["all_k + two_stage"]["params"] > rows["heatmap_sum + two_stage"]["params"]
    gains = payload["improvement_over_fomm_percent"]
    assert set(gains) == {m for m, row in rows.items() if row["role"] == "variant"}
    trained = {m for m, row in rows.items() if row["role"] != "control"}  # the oracle too
    assert set(payload["gain_over_frame0_control_percent"]) == trained
    assert payload["machine"]["torch_threads"] >= 1
    assert payload["evaluators"]["pose"]["floor"]["akd"] >= 0
    detector = payload["detector"]  # micro: the detector prior, with its diagnostics
    # two stages: 4 steps of the prior's recipe, then 8 of the FOMM row's (refine_budget 2)
    assert "detector-priors" in detector["checkpoint"] and detector["steps"] == 4 + 8
    assert detector["keypoint_spread_px"] > 0 and math.isfinite(detector["probe_r2"])
    assert "keypoint spread" in (out / "results.md").read_text()
    assert payload["budget"]["lr"] == {method: 2e-4 for method in rows}  # micro: the config's
    # the training precision and layout, as this machine resolved `auto`, and the machine
    resolved = resolve_numerics(device="cpu")
    budget = payload["budget"]
    assert (budget["precision"], budget["channels_last"]) == (resolved.precision, True)
    assert budget["requested_precision"] == "auto"
    machine = payload["machine"]
    assert machine["capability"] == torch.backends.cpu.get_cpu_capability()
    assert machine["native_bf16"] is resolved.hardware.native_bf16
    assert payload["inference"]["precision"] == "fp32"  # the table scores exact frames
    header = (out / "results.md").read_text()
    assert f"at batch 2{optimiser_text(budget)}, seed 0" in header
    assert "channels_last (auto), learning rate 0.0002" in header
    # published numbers stay apart
    assert len(payload["published_taichi_256"]["rows"]) == 8
    with open(out / "results.csv", newline="") as handle:
        methods = [r["method"] for r in csv.DictReader(handle)]
    assert "Monkey-Net" not in methods and "Monkey-Net" not in (out / "results.tex").read_text()


@pytest.mark.slow
def test_second_bench_reuses_every_stage(micro_bench):
    out, _, second, stamps, _ = micro_bench
    for stage, count in (("train", 7), ("reconstruct", 16), ("metrics", 16)):
        cached = [line for line in second.splitlines() if f" {stage}] " in line]
        assert len(cached) == count, cached
        assert all("cached" in line for line in cached), cached
    assert "(cached)" in second  # the evaluators' floors
    for slug in SLUGS:
        assert _stamps(out / "runs" / f"{slug}-seed0") == stamps[slug], (
            slug
        )  # nothing was retrained, rewritten or redrawn


@pytest.mark.slow
def test_interrupted_training_resumes_from_its_checkpoint(micro_bench, capsys, monkeypatch):
    out, _, _, _, root = micro_bench
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(root / "cache"))
    run = out / "runs" / "frame+x2face-seed0"
    (run / "checkpoints" / "step-00000004.pth").unlink()  # as if stopped after step 2
    (run / "bench-state.json").unlink()
    args = ["bench", "--profile", "micro", "--masker", "heatmap_sum", "--out", str(out)]
    assert main([*args, "--baselines", "x2face", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "X2Face: training resuming at step 2" in printed
    assert (run / "checkpoints" / "step-00000004.pth").is_file()


@pytest.mark.slow
def test_other_settings_in_the_same_folder_are_refused(micro_bench, capsys, monkeypatch):
    out, _, _, _, root = micro_bench
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(root / "cache"))
    before = (out / "runs" / "frame+x2face-seed0" / "config.yaml").read_text()
    args = ["bench", "--profile", "micro", "--baselines", "x2face", "--out", str(out)]
    assert main([*args, "--set", "train.lr=0.001", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "train.lr: 0.0002 -> 0.001" in err and "another --out" in err
    assert (out / "runs" / "frame+x2face-seed0" / "config.yaml").read_text() == before


@pytest.mark.slow
def test_a_second_bench_on_a_busy_folder_stops_before_writing(micro_bench, capsys, monkeypatch):
    from kptoolkit.utils.locks import folder_lock

    out, _, _, _, root = micro_bench
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(root / "cache"))
    before = _stamps(out)
    args = ["bench", "--profile", "micro", "--baselines", "x2face", "--out", str(out)]
    with folder_lock(out, "a kptoolkit bench"):  # as a bench in another process holds it
        assert main([*args, "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"pid {os.getpid()}" in err and "nothing was changed" in err
    assert _stamps(out) == before


@pytest.mark.slow
def test_a_moved_bench_folder_reuses_its_rows_with_its_detector(micro_bench, capsys, monkeypatch):
    root = micro_bench[4]
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(root / "cache"))
    first, second = root / "project-a", root / "project-b"
    first.mkdir()
    shutil.copy(next((root / "cache").rglob("detector-priors/*/checkpoints/step-*.pth")), first)
    args = ["bench", "--profile", "micro", "--masker", "heatmap_sum", "--baselines", "x2face"]
    for project in (first, second):
        detector = next(project.glob("step-*.pth"))
        given = ["--kp-checkpoint", str(detector), "--out", str(project / "bench")]
        assert main([*args, *given, "--no-progress"]) == 0
        if project == first:
            capsys.readouterr()
            shutil.move(first, second)
    printed = capsys.readouterr().out
    trained = [line for line in printed.splitlines() if " train] " in line]
    assert len(trained) == 2 and all("cached" in line for line in trained), printed
    # the row names its detector file relative to its folder, and records its bytes' sha256
    run = second / "bench" / "runs" / "heatmap_sum+two_stage-seed0"
    stored = yaml.safe_load((run / "config.yaml").read_text())["keypoints"]
    assert stored["checkpoint"] == os.path.join("..", "..", "..", detector.name)
    assert stored["checkpoint_sha256"] == file_sha256(detector)


def test_a_bench_refuses_a_folder_of_other_files(tmp_path, capsys):
    folder = tmp_path / "paper"
    folder.mkdir()
    (folder / "results.md").write_text("my own table\n")
    code = main(["bench", "--profile", "micro", "--out", str(folder), "--no-progress"])
    assert code == 1 and "not a folder of a kptoolkit bench" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["results.md"]
    assert (folder / "results.md").read_text() == "my own table\n"


@pytest.mark.slow
def test_inference_precision_reconstructs_again_without_retraining(micro_bench, monkeypatch):
    out, _, _, _, root = micro_bench
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(root / "cache"))
    run = out / "runs" / "frame+x2face-seed0"
    checkpoints = _stamps(run / "checkpoints")
    args = ["bench", "--profile", "micro", "--masker", "heatmap_sum", "--baselines", "x2face"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*args, "--out", str(out), "--precision", "bf16", "--no-progress"]) == 0
    lines = printed.getvalue().splitlines()
    assert all("cached" in line for line in lines if " train] " in line)
    rebuilt = [line for line in lines if " reconstruct] " in line and "cached" not in line]
    assert len(rebuilt) == 4, rebuilt  # X2Face and heatmap_sum, each with its static control
    assert _stamps(run / "checkpoints") == checkpoints
    state = json.loads((run / "bench-state.json").read_text())
    assert state["reconstruction"]["precision"] == "bf16"
    results = json.loads((out / "results.json").read_text())
    assert results["inference"] == {"precision": "bf16"}
    assert "test frames reconstructed in bf16 autocast" in (out / "results.md").read_text()


def test_all_k_gets_a_k_channel_generator_and_the_fomm_detector(tmp_path):
    detector = str(detector_file(tmp_path / "d.pth", preset="cpu64", num_kp=10))
    bench = Bench(BenchOptions(maskers=["all_k", "perturbed_mask"], generators=["two_stage"]))
    all_k = bench.entry_config(Entry("all_k", "two_stage", "variant"), detector)
    assert all_k.generator.params["mask_channels"] == all_k.keypoints.num_kp == 10
    assert all_k.keypoints.checkpoint == detector
    perturbed = bench.entry_config(Entry("perturbed_mask", "two_stage", "variant"), detector)
    assert "mask_channels" not in perturbed.generator.params
    fomm = bench.entry_config(Entry("fomm_keypoints", "fomm", "baseline"), detector)
    assert fomm.keypoints.checkpoint is None  # FOMM trains its own detector
    assert bench.base.train.steps is None and bench.base.train.repeats == 9  # quick: 2,250 steps


def test_quick_rows_take_their_generators_learning_rate_unless_one_is_given(tmp_path):
    detector = str(detector_file(tmp_path / "d.pth", preset="cpu64", num_kp=10))
    micro_detector = str(detector_file(tmp_path / "micro.pth", preset="micro"))
    rows = [Entry("fomm_keypoints", "fomm", "baseline"), Entry("heatmap_sum", "two_stage", "v")]
    chosen = Bench(BenchOptions(["heatmap_sum"], ["two_stage"]))
    assert [chosen.entry_config(e, detector).train.lr for e in rows] == [2e-4, 1e-3]
    given = Bench(BenchOptions(["heatmap_sum"], ["two_stage"], overrides=["train.lr=5e-4"]))
    assert [given.entry_config(e, detector).train.lr for e in rows] == [5e-4, 5e-4]
    micro = Bench(BenchOptions(["heatmap_sum"], ["two_stage"], profile="micro"))
    assert micro.entry_config(rows[1], micro_detector).train.lr == 2e-4
    budget = {"lr": {e.label: chosen.learning_rate(e) for e in rows}, "precision": "bf16"}
    assert optimiser_text({**budget, "channels_last": True, "requested_precision": "auto"}) == (
        ", in bfloat16 autocast, channels_last (auto), learning rate 0.0002 (FOMM), 0.001 "
        "(heatmap_sum + two_stage)"
    )
    fp32 = {"lr": {"FOMM": 2e-4}, "precision": "fp32", "channels_last": False}
    assert optimiser_text(fp32) == ", in float32, contiguous layout, learning rate 0.0002"
    # the prior keeps its 1,500 validated steps under the quick profile's longer rows, at
    # the rows' precision (what `auto` resolved to on this machine)
    rows_precision = chosen.numerics.precision
    prior = prior_config(chosen.entry_config(rows[0], None), chosen.profile.detector_budget)
    assert prior.train.repeats == 6
    assert (prior.train.lr, prior.train.precision) == (2e-4, rows_precision)
    # then the FOMM row's own recipe, 14 repeats (3,500 steps) at its constant learning rate
    profile = chosen.profile
    fomm_row = chosen.entry_config(rows[0], None)
    _, refine = prior_stages(fomm_row, profile.detector_budget, profile.detector_refine_budget)
    assert refine.train.repeats == 14 and refine.train.milestones == []
    assert (refine.train.lr, refine.train.precision) == (2e-4, rows_precision)
    assert (fomm_row.train.lr, fomm_row.train.precision) == (2e-4, rows_precision)


def test_plan_puts_baselines_first_and_checks_names():
    entries = plan_entries(["heatmap_sum", "all_k"], ["two_stage"], ["fomm", "x2face"])
    assert [e.label for e in entries] == [
        "FOMM",
        "X2Face",
        "heatmap_sum + two_stage",
        "all_k + two_stage",
    ]
    with pytest.raises(UnknownComponentError, match="heatmap_sum"):
        plan_entries(["heatmap_sums"], ["two_stage"], [])
    with pytest.raises(ConfigError, match="--config"):
        Bench(BenchOptions(maskers=["heatmap_sum"], generators=["two_stage"], profile="full"))
    with pytest.raises(ConfigError, match="no such file"):
        Bench(BenchOptions(["heatmap_sum"], ["two_stage"], kp_checkpoint="missing.pth"))


def _row(method, role, generator, per_video=None, seeds=(0,), **metrics):
    return ResultRow(
        method,
        role,
        "m",
        generator,
        metrics,
        2_500_000,
        12.5,
        90.0,
        100,
        list(seeds),
        per_video or {},
    )


def test_improvement_over_fomm_by_hand():
    """Rows with point values only: relative changes, no intervals."""
    fomm = _row(
        "FOMM", "baseline", "fomm", l1=0.050, akd=2.0, mkr=0.1, aed=0.4, psnr=20.0, ssim=0.5
    )
    ours = _row("ours", "variant", "two_stage", l1=0.040, akd=2.5, mkr=0.0, aed=0.2, psnr=22.0)
    table = build_table([fomm, ours])
    gain = {key: change.value for key, change in table.improvements["ours"].items()}
    assert gain["l1"] == pytest.approx(20.0)  # (0.05 - 0.04) / 0.05
    assert gain["akd"] == pytest.approx(-25.0)  # worse: negative
    assert gain["mkr"] == pytest.approx(100.0)
    assert gain["psnr"] == pytest.approx(10.0)  # higher is better
    assert math.isnan(gain["ssim"])  # not measured for `ours`
    assert build_table([ours]).improvements == {}  # no FOMM row, no improvement row
    text = results_markdown(table)
    assert "| Improvement over FOMM (ours) | +20.0% | -25.0% | +100.0% | +50.0% | +10.0% | - |" in (
        text
    )
    assert "| FOMM | 0.0500 | 2.000 | 0.100 | 0.400 | 20.00 | 0.500 | 2.50 | 12.5 | 1.5 |" in text
    lines = results_csv(table).splitlines()
    assert lines[0].startswith("method,kind,masker,generator,l1,l1_ci_low,l1_ci_high,l1_seed_std,")
    assert lines[-1].startswith("ours,improvement_over_fomm_percent,,,20.0")
    latex = results_latex(table, "a caption with under_score")
    assert r"\toprule" in latex and r"under\_score" in latex and r"+20.0\%" in latex


# four test videos of unequal length: per-video sums and frame counts of a metric
COUNTS = np.array([[10.0, 2.0, 30.0, 5.0]])
FOMM_SUMS = np.array([[1.0, 0.1, 2.4, 0.6]])  # frame means 0.1, 0.05, 0.08, 0.12
BETTER_SUMS = FOMM_SUMS * 0.8  # 20% lower on every video
NOISY_SUMS = FOMM_SUMS * np.array([[0.9, 1.3, 1.02, 0.85]])  # better on some, worse on others


def _bootstrap_by_hand(sums, counts, resamples, seed):
    """Percentile interval of the pooled mean over videos drawn with replacement."""
    draws = np.random.default_rng(seed).integers(
        0, sums.shape[-1], size=(resamples, sums.shape[-1])
    )
    pooled = [sums[0, d].sum() / counts[0, d].sum() for d in draws]
    return draws, np.percentile(pooled, [2.5, 97.5])


def test_bootstrap_intervals_and_paired_changes_by_hand():
    settings = TableSettings(resamples=300, seed=3)
    fomm = _row("FOMM", "baseline", "fomm", per_video={"l1": (FOMM_SUMS, COUNTS)})
    better = _row("better", "variant", "two_stage", per_video={"l1": (BETTER_SUMS, COUNTS)})
    noisy = _row("noisy", "variant", "two_stage", per_video={"l1": (NOISY_SUMS, COUNTS)})
    table = build_table([fomm, better, noisy], settings)
    found = table.estimate(fomm, "l1")
    assert found.value == pytest.approx(4.1 / 47)  # frames pooled, not the mean of video means
    assert table.estimate(fomm, "l1").value != pytest.approx(np.mean([0.1, 0.05, 0.08, 0.12]))
    draws, (low, high) = _bootstrap_by_hand(FOMM_SUMS, COUNTS, 300, 3)
    assert (found.low, found.high) == pytest.approx((low, high), abs=1e-12)
    # the paired change: the same drawn videos for both rows
    changes = []
    for d in draws:
        theirs = FOMM_SUMS[0, d].sum() / COUNTS[0, d].sum()
        mine = NOISY_SUMS[0, d].sum() / COUNTS[0, d].sum()
        changes.append(100 * (theirs - mine) / theirs)
    noisy_change = table.improvements["noisy"]["l1"]
    assert (noisy_change.low, noisy_change.high) == pytest.approx(
        tuple(np.percentile(changes, [2.5, 97.5])), abs=1e-9
    )
    assert not noisy_change.significant and noisy_change.low < 0 < noisy_change.high
    better_change = table.improvements["better"]["l1"]
    assert better_change.value == pytest.approx(20.0) and better_change.significant
    assert better_change.low == pytest.approx(20.0) == better_change.high  # paired: no noise
    text = results_markdown(table)
    assert "| Improvement over FOMM (better) | +20.0% [+20.0, +20.0]* |" in text
    assert "| Improvement over FOMM (noisy) |" in text and "* |" not in text.split("(noisy)")[1]
    cell = f"{found.value:.4f} ± {(found.high - found.low) / 2:.4f}"
    assert f"| FOMM | {cell} |" in text
    assert "4 test videos" in text and "300 resamples" in text
    assert r"\pm" in results_latex(table, "caption") and "±" not in results_latex(table, "c")
    rows = list(csv.DictReader(io.StringIO(results_csv(table))))
    assert float(rows[0]["l1_ci_low"]) == pytest.approx(low, abs=1e-12)
    payload = json.loads(results_json(table, {}))
    assert payload["improvement_over_fomm_percent"]["better"]["l1"]["significant"] is True
    assert payload["rows"][0]["interval"]["l1"] == pytest.approx([low, high], abs=1e-12)
    assert payload["uncertainty"]["videos"] == 4


def test_each_trained_row_is_compared_with_its_own_frame0_control():
    """The gain rows: a row that uses the driving frames against one that ignores them."""
    settings = TableSettings(resamples=200, seed=1)
    static = NOISY_SUMS  # the frame-0 control's per-video scores

    def rows(method, role, sums):
        return [
            _row(method, role, "two_stage", per_video={"l1": (sums, COUNTS)}),
            # another control of the same row, which the gain must not be measured against
            _row(
                f"{method}, warped source only",
                "control",
                "two_stage",
                per_video={"l1": (sums * 2, COUNTS)},
            ),
            _row(
                f"{method}, driven by frame 0",
                "control",
                "two_stage",
                per_video={"l1": (static, COUNTS)},
            ),
        ]

    uses = rows("uses motion", "variant", static * 0.75)  # 25% lower error on every video
    # the same frames as its control, scored in another order: float rounding apart
    ignores = rows("ignores motion", "baseline", static * (1 + 1e-13))
    reference = _row(
        "Source frame (no motion)", "reference", "", per_video={"l1": (static, COUNTS)}
    )
    table = build_table([reference, *uses, *ignores], settings)
    assert set(table.motion) == {"uses motion", "ignores motion"}  # no row for the copy
    gain = table.motion["uses motion"]["l1"]
    assert (gain.value, gain.low, gain.high) == pytest.approx((25.0, 25.0, 25.0))
    assert gain.significant
    none = table.motion["ignores motion"]["l1"]
    assert none.value == pytest.approx(0.0, abs=1e-9) and none.high < 0  # noise, all below 0
    assert not none.significant
    text = results_markdown(table)
    assert "| Gain over its frame-0 control (uses motion) | +25.0% [+25.0, +25.0]* |" in text
    assert "| Gain over its frame-0 control (ignores motion) | 0.0% [+0.0, +0.0] |" in text
    assert "driven by frame 0 for every frame" in text  # the note says what the rows mean
    csv_rows = list(csv.DictReader(io.StringIO(results_csv(table))))
    gains = [r for r in csv_rows if r["kind"] == "gain_over_frame0_control_percent"]
    assert [(r["method"], float(r["l1"])) for r in gains] == [
        ("uses motion", pytest.approx(25.0)),
        ("ignores motion", pytest.approx(0.0, abs=1e-9)),
    ]
    payload = json.loads(results_json(table, {}))
    assert payload["gain_over_frame0_control_percent"]["uses motion"]["l1"]["significant"]


def test_several_seeds_give_the_mean_and_their_spread():
    sums = np.concatenate([FOMM_SUMS, BETTER_SUMS])  # two seeds, (2, 4)
    counts = np.concatenate([COUNTS, COUNTS])
    row = _row("two seeds", "variant", "two_stage", {"l1": (sums, counts)}, seeds=(0, 1))
    table = build_table([row], TableSettings(resamples=50))
    found = table.estimate(row, "l1")
    per_seed = [4.1 / 47, 0.8 * 4.1 / 47]
    assert found.value == pytest.approx(np.mean(per_seed))
    assert found.seed_std == pytest.approx(np.std(per_seed, ddof=1))
    assert found.seeds == 2 and found.low < found.value < found.high
    assert f"(sd {found.seed_std:.4f})" in results_markdown(table)
    assert "standard deviation across seeds" in results_markdown(table)


def test_published_table_is_labelled_and_complete():
    text = published_markdown()
    assert text.startswith("### Published Tai-Chi-HD 256x256")
    assert "not measured here" in text.splitlines()[0]
    heatmap = next(p for p in PUBLISHED_TAICHI if p.method == "Keypoint mask, heatmap")
    assert (heatmap.l1, heatmap.akd, heatmap.aed) == (0.045, 5.551, 0.141)
    assert len(PUBLISHED_TAICHI) == 8


@pytest.fixture(scope="module")
def seeds_bench(tmp_path_factory):
    """heatmap_sum + two_stage and FOMM, two seeds each, run twice into one folder."""
    root = tmp_path_factory.mktemp("seeds")
    out = root / "out"
    args = ["bench", "--profile", "micro", "--baselines", "fomm", "--seeds", "0,1"]
    outputs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KPTOOLKIT_CACHE", str(root / "cache"))
        for _ in range(2):
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                assert main([*args, "--out", str(out), "--no-progress"]) == 0
            outputs.append(printed.getvalue())
    return out, outputs, root


@pytest.mark.slow
def test_seeds_train_every_row_once_per_seed(seeds_bench):
    out, (_, second), _ = seeds_bench
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == [
        "fomm_keypoints+fomm-seed0",
        "fomm_keypoints+fomm-seed1",
        "heatmap_sum+two_stage-seed0",
        "heatmap_sum+two_stage-seed1",
    ]
    for run in runs:  # the seed is part of the run's own config
        config = yaml.safe_load((out / "runs" / run / "config.yaml").read_text())
        assert config["seed"] == int(run[-1])
    # every seed's variant reads the same pretrained detector (the prior, trained with seed 0)
    checkpoints = {
        yaml.safe_load((out / "runs" / run / "config.yaml").read_text())["keypoints"]["checkpoint"]
        for run in runs[2:]
    }
    assert len(checkpoints) == 1 and "detector-priors" in checkpoints.pop()
    # rows: FOMM, heatmap; controls: FOMM static and warped, heatmap static
    for stage, count in (("train", 4), ("reconstruct", 1 + 2 * 5), ("metrics", 1 + 2 * 5)):
        lines = [line for line in second.splitlines() if f" {stage}] " in line]
        assert len(lines) == count and all("cached" in line for line in lines), lines


@pytest.mark.slow
def test_seed_tables_carry_intervals_and_spread_in_every_format(seeds_bench):
    out = seeds_bench[0]
    markdown = (out / "results.md").read_text()
    variant = next(line for line in markdown.splitlines() if line.startswith("| heatmap_sum"))
    assert variant.count("±") == 6 and variant.count("(sd ") == 6
    assert "once per seed (0, 1)" in markdown
    payload = json.loads((out / "results.json").read_text())
    row = next(r for r in payload["rows"] if r["method"] == "heatmap_sum + two_stage")
    assert row["seeds"] == [0, 1] and math.isfinite(row["seed_std"]["l1"])
    low, high = row["interval"]["l1"]
    assert low <= row["metrics"]["l1"] <= high
    gains = payload["improvement_over_fomm_percent"]["heatmap_sum + two_stage"]["l1"]
    assert set(gains) == {"value", "low", "high", "significant"}
    with open(out / "results.csv", newline="") as handle:
        rows = {(r["method"], r["kind"]): r for r in csv.DictReader(handle)}
    assert float(rows["heatmap_sum + two_stage", "variant"]["l1_seed_std"]) == pytest.approx(
        row["seed_std"]["l1"]
    )
    latex = (out / "results.tex").read_text()
    assert r"$\pm$" in latex and "(sd " in latex and "mean of seeds 0, 1" in latex


@pytest.mark.slow
def test_averaging_can_change_without_retraining(seeds_bench, monkeypatch, capsys):
    out, _, root = seeds_bench
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(root / "cache"))
    args = ["bench", "--profile", "micro", "--baselines", "fomm", "--seeds", "0,1"]
    assert main([*args, "--out", str(out), "--no-progress", "--set", "eval.average=videos"]) == 0
    printed = capsys.readouterr().out
    assert "per-video means averaged over videos" in printed
    scoring = [line for line in printed.splitlines() if " metrics] " in line]
    assert all("cached" in line for line in scoring)
    assert main([*args, "--out", str(out), "--no-progress", "--seeds", "1,1"]) == 1
    assert "a seed twice" in capsys.readouterr().err


def test_a_detector_prior_is_trained_once_per_dataset_and_cached(tmp_path, monkeypatch):
    """The prior trains in the cache, once, with its own recipe."""
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(tmp_path / "cache"))
    bench = Bench(BenchOptions(["heatmap_sum"], ["two_stage"], [], profile="micro"))
    bench.prepare_data()
    fomm = Entry("fomm_keypoints", "fomm", "baseline")
    row = bench.entry_config(fomm, None)
    config = prior_config(row, 2.0)
    assert config.train.steps == 8  # twice the row's 4 steps
    # FOMM's balance of reconstruction and equivariance, in the row and the prior alike (the
    # exact value the prior was cached under before the weight moved into the profile)
    (row_equivariance,) = row.generator.losses
    (equivariance,) = config.generator.losses
    assert row_equivariance.weight == equivariance.weight == 1.0 * 1e-3
    # the recipe: the warp trained directly
    warp = [t for t in config.losses if t.outputs == ["deformed"]]
    assert [(t.name, t.weight) for t in warp] == [(t.name, t.weight) for t in row.losses]
    assert prior_folder(prior_config(row, 2.0, PriorRecipe(warp_weight=0))) != prior_folder(config)
    # the prior keeps the learning rate it was validated with, whatever the rows train with,
    # at the rows' precision unless a recipe pins one
    row.train.lr, row.train.precision = 1e-3, "bf16"
    pinned = prior_config(row, 2.0)
    assert (pinned.train.lr, pinned.train.precision) == (2e-4, "bf16")
    fp32 = prior_config(row, 2.0, PriorRecipe(precision="fp32"))
    assert fp32.train.precision == "fp32" and prior_folder(fp32) != prior_folder(pinned)
    free = prior_config(row, 2.0, PriorRecipe(lr=None, precision=None))
    assert (free.train.lr, free.train.precision) == (1e-3, "bf16")
    said = []
    first = ensure_prior(config, bench.device, said.append, progress=False)
    assert "detector-priors" in str(first) and first.name == "step-00000008.pth"
    stamp = first.stat().st_mtime_ns
    again = structure(ExperimentConfig, unstructure(config))
    again.train.keep_last, again.name = 7, "renamed"  # neither changes the trained detector
    assert ensure_prior(again, bench.device, said.append, progress=False) == first
    assert first.stat().st_mtime_ns == stamp and "cached" in said[-1]
    other = prior_config(bench.entry_config(fomm, None), 3.0)
    assert prior_folder(other) != prior_folder(config)
    info = prior_diagnostics(first, bench.dataset_root, bench.device)
    assert info["steps"] == 8 and info["keypoint_spread_px"] > 0
    assert info["figure_height_px"] > 0 and math.isfinite(info["probe_r2"])
    assert math.isfinite(info["centroid_probe_r2"])  # 8 tiny videos: any value


def test_the_prior_refines_its_detector_with_the_fomm_rows_own_config(tmp_path, monkeypatch):
    """Stage two trains the FOMM row's config from stage one's detector, cached inside stage
    one's folder under a name that changes with stage one's file."""
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(tmp_path / "cache"))
    bench = Bench(BenchOptions(["heatmap_sum"], ["two_stage"], [], profile="micro"))
    bench.prepare_data()
    row = bench.entry_config(Entry("fomm_keypoints", "fomm", "baseline"), None)
    first, refine = prior_stages(row, 2.0, 1.5)
    assert unstructure(first) == unstructure(prior_config(row, 2.0))
    # the row's own recipe (no warp term, the row's optimiser), only longer, renamed and at a
    # constant learning rate
    expected = unstructure(row)
    expected["name"], expected["train"]["steps"] = refine.name, 6  # 1.5 x the row's 4 steps
    assert row.train.milestones and refine.train.milestones == []
    expected["train"]["milestones"] = []
    assert unstructure(refine) == expected
    assert len(prior_stages(row, 2.0)) == 1  # no second stage unless a profile asks
    # the bench's: the profile's budgets (micro: the row's 4 steps x 2)
    assert [c.train.steps for c in bench.bench_prior_stages()] == [4, 8]
    assert not prior_is_trained([first, refine])
    said = []
    final = ensure_prior([first, refine], bench.device, said.append, progress=False)
    assert prior_is_trained([first, refine])
    stage_one = prior_folder(first)
    assert final.parent.parent.parent == stage_one and final.name == "step-00000006.pth"
    # initialised from stage one's final checkpoint, recorded by its sha256
    recorded = yaml.safe_load((final.parent.parent / "config.yaml").read_text())["keypoints"]
    stage_one_file = stage_one / "checkpoints" / "step-00000008.pth"
    assert recorded["checkpoint_sha256"] == file_sha256(stage_one_file)
    assert [line.split(":")[0] for line in said[-4:]] == [
        "detector prior, stage 1/2",
        "detector prior, stage 1/2",
        "detector prior, stage 2/2",
        "detector prior, stage 2/2",
    ]
    info = prior_diagnostics(final, bench.dataset_root, bench.device)
    assert info["steps"] == 8 + 6  # the detector's steps over both stages
    assert prior_diagnostics(stage_one_file, bench.dataset_root, bench.device)["steps"] == 8
    # cached: nothing retrains
    stamp = final.stat().st_mtime_ns
    assert ensure_prior([first, refine], bench.device, said.append, progress=False) == final
    assert final.stat().st_mtime_ns == stamp and "cached" in said[-1]
    # another stage-one file (retrained elsewhere, edited) never reuses the old stage two
    stage_one_file.write_bytes(stage_one_file.read_bytes() + b"\0")
    assert not prior_is_trained([first, refine])
