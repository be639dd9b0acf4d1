"""`kptoolkit data carve`: a validation dataset from a training split, by whole identities."""

from __future__ import annotations

import pytest

from kptoolkit.cli.main import main
from kptoolkit.data.datasets import FramesDataset
from kptoolkit.data.puppets.writer import generate_dataset, read_manifest
from kptoolkit.data.validation import CarveError, carve_validation


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("carve") / "puppets"
    generate_dataset(root, videos=12, frames=3, clips_per_identity=2, workers=1, progress=False)
    return root


def test_carved_splits_hold_whole_training_identities_only(source, tmp_path):
    summary = carve_validation(source, tmp_path / "val", fraction=0.25)
    source_manifest = read_manifest(source)
    carved = read_manifest(tmp_path / "val")  # complete: ground truth present for every video
    assert carved is not None and carved["carved_from"]["fraction"] == 0.25
    train, held = summary["videos"]["train"], summary["videos"]["test"]
    assert sorted(train + held) == sorted(source_manifest["videos"]["train"])
    assert not set(source_manifest["videos"]["test"]) & set(train + held)  # test never read
    assert not {n.split("#")[0] for n in train} & {n.split("#")[0] for n in held}
    assert len(held) == 2  # the last identity of five: 2 of 8 videos, the closest to 25%
    validation = FramesDataset(tmp_path / "val", "test")
    assert [v.name for v in validation.videos] == sorted(held)
    assert validation.videos[0].path.resolve().parent == (source / "train").resolve()


def test_carve_command_and_refusals(source, tmp_path, capsys):
    out = tmp_path / "val"
    assert main(["data", "carve", str(source), "--out", str(out)]) == 0
    assert "validation videos" in capsys.readouterr().out
    assert main(["data", "carve", str(source), "--out", str(out)]) == 0  # ours: replaced
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CarveError, match="not carved by kptoolkit"):
        carve_validation(source, foreign)
    assert (foreign / "notes.txt").read_text() == "mine"
    with pytest.raises(CarveError, match="between 0 and 1"):
        carve_validation(source, tmp_path / "x", fraction=1.0)
