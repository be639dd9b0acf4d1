"""`kptoolkit bench --set masker.*` / `generator.*`: each value reaches every row whose masker
or generator takes it (the rows change components, so the base config's cannot carry them),
and a parameter no row takes is one line before anything is written."""

from __future__ import annotations

import attrs
import pytest

from kptoolkit.bench.runner import Bench, BenchOptions
from kptoolkit.cli.main import main
from kptoolkit.errors import ConfigError


def _bench(tmp_path, profile, overrides=(), maskers=("heatmap_sum",)):
    options = BenchOptions(list(maskers), ["two_stage"], profile=profile, overrides=overrides)
    return Bench(attrs.evolve(options, out=str(tmp_path)))


def _rows(tmp_path, maskers, overrides):
    bench = _bench(tmp_path, "micro", overrides, maskers)
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


def test_the_profile_generator_parameters_reach_their_rows_but_not_the_prior(tmp_path):
    from kptoolkit.bench.defaults import QUICK_GENERATOR_PARAMS

    assert QUICK_GENERATOR_PARAMS  # the quick recipe departs from the published generators
    bench = _bench(tmp_path, "quick")
    rows = {entry.generator: bench.row_config(entry) for entry in bench.entries}
    for generator, params in QUICK_GENERATOR_PARAMS.items():
        assert params.items() <= rows[generator].generator.params.items()
    micro = _bench(tmp_path / "micro", "micro")  # other profiles: the published generators
    for entry in micro.entries:
        assert not set(micro.row_config(entry).generator.params) & {
            key for params in QUICK_GENERATOR_PARAMS.values() for key in params
        }
    # the prior trains FOMM as published (its recipe was validated without them)
    for stage in bench.bench_prior_stages():
        assert not QUICK_GENERATOR_PARAMS["fomm"].items() & stage.generator.params.items()


def _loss_names(config):
    return [term.name for term in config.generator.losses or []]


def test_the_profile_loss_terms_join_their_generators_own(tmp_path):
    from kptoolkit.bench.defaults import QUICK_GENERATOR_LOSSES

    assert QUICK_GENERATOR_LOSSES
    bench, micro = _bench(tmp_path / "q", "quick"), _bench(tmp_path / "m", "micro")
    base = _bench(tmp_path / "b", "quick")
    base.profile = attrs.evolve(base.profile, generator_losses={})
    for entry in bench.entries:
        added = [t["name"] for t in QUICK_GENERATOR_LOSSES.get(entry.generator, [])]
        quick_names, micro_names = (
            _loss_names(bench.row_config(entry)),
            _loss_names(micro.row_config(entry)),
        )
        assert [n for n in added if n in quick_names] == added
        assert not set(added) & set(micro_names)
        # the preset's own terms stay (two_stage's coarse frame keeps its L1 pyramid)
        assert [n for n in quick_names if n not in added] == _loss_names(base.row_config(entry))
    for stage in bench.bench_prior_stages():
        assert "feature_pyramid" not in _loss_names(stage)


def test_a_set_value_wins_over_the_profile_generator_parameters(tmp_path):
    bench = _bench(tmp_path, "quick", ["generator.params.blend_warped_source=false"])
    fomm = next(e for e in bench.entries if e.generator == "fomm")
    assert bench.row_config(fomm).generator.params["blend_warped_source"] is False


def test_the_standard_profile_trains_the_published_generators_longer_on_the_quick_prior(tmp_path):
    from kptoolkit.bench.defaults import QUICK_GENERATOR_PARAMS
    from kptoolkit.config.schema import unstructure

    quick, standard = _bench(tmp_path / "q", "quick"), _bench(tmp_path / "s", "standard")
    for entry in standard.entries:
        row, quick_row = standard.row_config(entry), quick.row_config(entry)
        assert row.train.repeats == 16 * quick_row.train.repeats
        published = QUICK_GENERATOR_PARAMS.get(entry.generator, {})
        assert not set(published) & set(row.generator.params)
    # the same detector prior, so a cached quick prior serves the standard bench
    stages = [unstructure(c) for c in standard.bench_prior_stages()]
    assert stages == [unstructure(c) for c in quick.bench_prior_stages()]
