"""`kptoolkit bench --set masker.*` / `generator.*`: each value reaches every row whose masker
or generator takes it (the rows change components, so the base config's cannot carry them),
and a parameter no row takes is one line before anything is written."""

from __future__ import annotations

import attrs
import pytest

from kptoolkit.bench.runner import Bench, BenchOptions
from kptoolkit.cli.main import main
from kptoolkit.errors import ConfigError


def _rows(tmp_path, maskers, overrides):
    options = BenchOptions(maskers, ["two_stage"], profile="micro", overrides=overrides)
    bench = Bench(attrs.evolve(options, out=str(tmp_path)))
    return {entry.slug: bench.row_config(entry) for entry in bench.entries}


def test_a_masker_value_reaches_the_rows_whose_masker_takes_it(tmp_path):
    rows = _rows(tmp_path, ["gaussian_circles", "heatmap_sum"], ["masker.params.variance=0.01"])
    assert rows["gaussian_circles+two_stage"].masker.params["variance"] == 0.01
    assert "variance" not in rows["heatmap_sum+two_stage"].masker.params  # takes none
    assert "variance" not in rows["fomm_keypoints+fomm"].masker.params


def test_a_generator_value_reaches_every_generator_that_takes_it(tmp_path):
    rows = _rows(tmp_path, ["heatmap_sum"], ["generator.params.zero_init=false"])
    assert rows["frame+x2face"].generator.params["zero_init"] is False  # X2Face takes it
    assert "zero_init" not in rows["heatmap_sum+two_stage"].generator.params
    rows = _rows(tmp_path, ["heatmap_sum"], ["generator.params.features=24"])
    assert rows["heatmap_sum+two_stage"].generator.params["features"] == 24


def test_a_parameter_no_row_takes_is_refused_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no row's masker takes 'sigma'"):
        _rows(tmp_path / "a", ["gaussian_circles"], ["masker.params.sigma=3"])
    out = tmp_path / "b"
    args = ["bench", "--profile", "micro", "--masker", "gaussian_circles", "--out", str(out)]
    assert main([*args, "--set", "masker.params.sigma=3", "--no-progress"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "gaussian_circles" in error
    assert not out.exists()
