"""`kptoolkit bench` end to end on the micro profile, its caching, and its results tables."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from kptoolkit.bench.published import PUBLISHED_TAICHI
from kptoolkit.bench.results import (
    ResultRow,
    improvement,
    improvements_over_fomm,
    published_markdown,
    results_csv,
    results_latex,
    results_markdown,
)
from kptoolkit.bench.runner import Bench, BenchError, BenchOptions, Entry, plan_entries
from kptoolkit.cli import main
from kptoolkit.data.video_io import iter_frames
from kptoolkit.errors import ConfigError, UnknownComponentError

ABLATION = "heatmap_sum,gaussian_circles,all_k,perturbed_mask"
SLUGS = [
    "fomm_keypoints+fomm",
    "frame+x2face",
    "heatmap_sum+two_stage",
    "gaussian_circles+two_stage",
    "all_k+two_stage",
    "perturbed_mask+two_stage",
]


def _copy_source_l1(out):
    """Mean over the reconstructed test videos of mean |frame - frame 0|, by hand."""
    config = yaml.safe_load((out / "runs" / SLUGS[0] / "config.yaml").read_text())
    test = Path(config["data"]["root"]) / "test"
    names = sorted(p.stem for p in (out / "reference-source-frame" / "png").glob("*.png"))
    assert len(names) == 2  # micro: eval.max_videos
    per_video = []
    for name in names:
        frames = np.stack(list(iter_frames(test / name))).astype(np.float64) / 255
        per_video.append(np.abs(frames - frames[:1]).mean())
    return float(np.mean(per_video))


def _stamps(folder):
    """(name, modification time) of every file under `folder`."""
    return sorted((p.name, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def micro_bench(tmp_path_factory):
    """The four-masker ablation on the micro profile, run twice into the same folder."""
    root = tmp_path_factory.mktemp("bench")
    out = root / "out"
    args = ["bench", "--profile", "micro", "--masker", ABLATION, "--out", str(out)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KPTOOLKIT_CACHE", str(root / "cache"))
        first, second = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(first):
            assert main([*args, "--no-progress"]) == 0
        stamps = {slug: _stamps(out / "runs" / slug) for slug in SLUGS}
        stamps["reference"] = _stamps(out / "reference-source-frame")
        with contextlib.redirect_stdout(second):
            assert main([*args, "--no-progress"]) == 0
    return out, first.getvalue(), second.getvalue(), stamps, root


def test_micro_bench_writes_every_output(micro_bench):
    out, first, _, _, _ = micro_bench
    for name in ("results.md", "results.csv", "results.json", "results.tex"):
        assert (out / name).is_file(), name
    for name in ("published.md", "published.tex", "evaluators.json"):
        assert (out / name).is_file(), name
    for slug in SLUGS:
        assert (out / "figures" / f"{slug}-sample.gif").stat().st_size > 0
        assert (out / "figures" / f"{slug}-losses.png").stat().st_size > 0
        assert (out / "runs" / slug / "reconstruction" / "png").is_dir()
    assert "| Method | L1 | AKD | MKR | AED | PSNR | SSIM |" in first
    assert "Improvement over FOMM (heatmap_sum + two_stage)" in first


def test_micro_bench_rows_are_measured(micro_bench):
    out = micro_bench[0]
    payload = json.loads((out / "results.json").read_text())
    rows = {row["method"]: row for row in payload["rows"]}
    assert list(rows) == [
        "Source frame (no motion)",
        "FOMM",
        "X2Face",
        "heatmap_sum + two_stage",
        "gaussian_circles + two_stage",
        "all_k + two_stage",
        "perturbed_mask + two_stage",
    ]
    reference = rows.pop("Source frame (no motion)")
    assert reference["params"] == 0 and reference["steps"] == 0
    assert reference["metrics"]["l1"] == pytest.approx(_copy_source_l1(out), abs=1e-9)
    for row in rows.values():
        for key in ("l1", "akd", "mkr", "aed", "psnr", "ssim"):
            assert math.isfinite(row["metrics"][key]), (row["method"], key)
        assert 0 < row["metrics"]["l1"] < 1
        assert row["params"] > 0 and row["ms_per_frame"] > 0 and row["steps"] == 4
    # all_k gets a K-channel generator; the others a one-channel one: more parameters
    assert rows["all_k + two_stage"]["params"] > rows["heatmap_sum + two_stage"]["params"]
    gains = payload["improvement_over_fomm_percent"]
    assert set(gains) == {m for m in rows if "+" in m}
    assert payload["machine"]["torch_threads"] >= 1
    assert payload["evaluators"]["pose"]["floor"]["akd"] >= 0
    # published numbers stay apart
    assert len(payload["published_taichi_256"]["rows"]) == 8
    with open(out / "results.csv", newline="") as handle:
        methods = [r["method"] for r in csv.DictReader(handle)]
    assert "Monkey-Net" not in methods and "Monkey-Net" not in (out / "results.tex").read_text()


def test_second_bench_reuses_every_stage(micro_bench):
    out, _, second, stamps, _ = micro_bench
    for stage, count in (("train", 6), ("reconstruct", 7), ("metrics", 7)):
        cached = [line for line in second.splitlines() if f" {stage}] " in line]
        assert len(cached) == count, cached
        assert all("cached" in line for line in cached), cached
    assert "(cached)" in second  # the evaluators' floors
    for slug in SLUGS:
        assert _stamps(out / "runs" / slug) == stamps[slug], (
            slug
        )  # nothing was retrained, rewritten or redrawn


def test_interrupted_training_resumes_from_its_checkpoint(micro_bench, capsys, monkeypatch):
    out, _, _, _, root = micro_bench
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(root / "cache"))
    run = out / "runs" / "frame+x2face"
    (run / "checkpoints" / "step-00000004.pth").unlink()  # as if stopped after step 2
    (run / "bench-state.json").unlink()
    args = ["bench", "--profile", "micro", "--masker", "heatmap_sum", "--out", str(out)]
    assert main([*args, "--baselines", "x2face", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "X2Face: training resuming at step 2" in printed
    assert (run / "checkpoints" / "step-00000004.pth").is_file()


def test_other_settings_in_the_same_folder_are_refused(micro_bench, capsys, monkeypatch):
    out, _, _, _, root = micro_bench
    monkeypatch.setenv("KPTOOLKIT_CACHE", str(root / "cache"))
    before = (out / "runs" / "frame+x2face" / "config.yaml").read_text()
    args = ["bench", "--profile", "micro", "--baselines", "x2face", "--out", str(out)]
    assert main([*args, "--set", "train.lr=0.001", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "train.lr: 0.0002 -> 0.001" in err and "another --out" in err
    assert (out / "runs" / "frame+x2face" / "config.yaml").read_text() == before


def test_all_k_gets_a_k_channel_generator_and_the_fomm_detector():
    bench = Bench(BenchOptions(maskers=["all_k", "perturbed_mask"], generators=["two_stage"]))
    all_k = bench.entry_config(Entry("all_k", "two_stage", "variant"), "detector.pth")
    assert all_k.generator.params["mask_channels"] == all_k.keypoints.num_kp
    assert all_k.keypoints.checkpoint == "detector.pth"
    perturbed = bench.entry_config(Entry("perturbed_mask", "two_stage", "variant"), "d.pth")
    assert "mask_channels" not in perturbed.generator.params
    fomm = bench.entry_config(Entry("fomm_keypoints", "fomm", "baseline"), "d.pth")
    assert fomm.keypoints.checkpoint is None  # FOMM trains its own detector
    assert bench.base.train.steps is None and bench.base.train.repeats == 6  # quick: 1,500 steps


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
    assert issubclass(BenchError, Exception)


def _row(method, role, generator, **metrics):
    return ResultRow(method, role, "m", generator, metrics, 2_500_000, 12.5, 90.0, 100)


def test_improvement_over_fomm_by_hand():
    fomm = _row(
        "FOMM", "baseline", "fomm", l1=0.050, akd=2.0, mkr=0.1, aed=0.4, psnr=20.0, ssim=0.5
    )
    ours = _row("ours", "variant", "two_stage", l1=0.040, akd=2.5, mkr=0.0, aed=0.2, psnr=22.0)
    gain = improvement(ours, fomm)
    assert gain["l1"] == pytest.approx(20.0)  # (0.05 - 0.04) / 0.05
    assert gain["akd"] == pytest.approx(-25.0)  # worse: negative
    assert gain["mkr"] == pytest.approx(100.0)
    assert gain["psnr"] == pytest.approx(10.0)  # higher is better
    assert math.isnan(gain["ssim"])  # not measured for `ours`
    assert improvements_over_fomm([ours]) == {}  # no FOMM row, no improvement row
    table = results_markdown([fomm, ours])
    assert "| Improvement over FOMM (ours) | +20.0% | -25.0% | +100.0% | +50.0% | +10.0% | - |" in (
        table
    )
    assert "| FOMM | 0.0500 | 2.000 | 0.100 | 0.400 | 20.00 | 0.500 | 2.50 | 12.5 | 1.5 |" in table
    lines = results_csv([fomm, ours]).splitlines()
    assert lines[0].startswith("method,kind,masker,generator,l1,akd")
    assert lines[-1].startswith("ours,improvement_over_fomm_percent,,,20.0")
    latex = results_latex([fomm, ours], "a caption with under_score")
    assert r"\toprule" in latex and r"under\_score" in latex and r"+20.0\%" in latex


def test_published_table_is_labelled_and_complete():
    text = published_markdown()
    assert text.startswith("### Published Tai-Chi-HD 256x256")
    assert "not measured here" in text.splitlines()[0]
    heatmap = next(p for p in PUBLISHED_TAICHI if p.method == "Keypoint mask, heatmap")
    assert (heatmap.l1, heatmap.akd, heatmap.aed) == (0.045, 5.551, 0.141)
    assert len(PUBLISHED_TAICHI) == 8
