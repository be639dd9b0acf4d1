"""Pose-evaluation tables are read without running code from the file, and tables that cannot be
scored together say why in one line.

The payloads below would create a marker file when unpickled by `pickle` or `pandas.read_pickle`;
kptoolkit must refuse each before anything of it runs, naming the file and the refused global.
Legitimate tables (written by kptoolkit, built the way the public scripts build theirs, and
pickled by pandas 0.25 to 3.x: tests/data/pose_tables) still load with the same values.
"""

from __future__ import annotations

import builtins
import functools
import gzip
import os
import pathlib
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from kptoolkit.cli.main import main
from kptoolkit.engine.evaluate import evaluate_tables
from kptoolkit.errors import KptoolkitError
from kptoolkit.metrics.keypoint_metrics import akd_per_frame, mkr_per_frame
from kptoolkit.metrics.table_pickle import RefusedPickleError
from kptoolkit.metrics.tables import COLUMNS, export_table, import_table
from kptoolkit.registry.registries import create_metric

pd = pytest.importorskip("pandas")

FIXTURES = Path(__file__).parent / "data" / "pose_tables"


class Payload:
    """Unpickling calls `function(*args(marker))`, which creates the marker file."""

    def __init__(self, marker: Path, function, args) -> None:
        self.marker, self.function, self.args = marker, function, args

    def __reduce__(self):
        return self.function, self.args(self.marker)


PAYLOADS = {  # name -> (callable, its arguments for a marker, the global a pickle records)
    "os.system": (os.system, lambda m: (f"touch {m}",), f"{os.system.__module__}.system"),
    "open": (open, lambda m: (str(m), "w"), "io.open"),
    "pathlib touch": (pathlib.Path.touch, lambda m: (pathlib.Path(m),), "pathlib.Path.touch"),
    "builtins.exec": (
        builtins.exec,
        lambda m: (f"open({str(m)!r}, 'w').close()",),
        "builtins.exec",
    ),
    "builtins.eval": (builtins.eval, lambda m: (f"open({str(m)!r}, 'w')",), "builtins.eval"),
    "subprocess": (subprocess.call, lambda m: (["touch", str(m)],), "subprocess.call"),
    "partial": (
        functools.partial(os.system, "true"),
        lambda m: (f"; touch {m}",),
        "functools.partial",
    ),
}
PLACES = {  # where the payload sits in the pickled object
    "bare": lambda payload: payload,
    "cell": lambda payload: pd.DataFrame(
        {"file_name": ["a.mp4"], "frame_number": [0], "value": [payload]}
    ),
    "list in a column": lambda payload: pd.DataFrame(
        {"file_name": ["a.mp4", "b.mp4"], "frame_number": [0, 0], "value": [None, [payload]]}
    ),
}


def _evil_table(tmp_path: Path, payload: str, place: str) -> tuple[Path, Path, str]:
    function, args, refused = PAYLOADS[payload]
    marker, path = tmp_path / "marker", tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(PLACES[place](Payload(marker, function, args))))
    assert not marker.exists()
    return path, marker, refused


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_import_table_refuses_code_and_runs_none_of_it(tmp_path, payload, place):
    path, marker, refused = _evil_table(tmp_path, payload, place)
    with pytest.raises(RefusedPickleError) as caught:
        import_table(path)
    message = str(caught.value)
    assert not marker.exists()
    assert "\n" not in message and str(path) in message and f"`{refused}`" in message


@pytest.mark.parametrize("side", ["--real-table", "--fake-table"])
@pytest.mark.parametrize("place", PLACES)
def test_metrics_command_refuses_code_in_one_line(tmp_path, capsys, side, place):
    path, marker, refused = _evil_table(tmp_path, "os.system", place)
    good = tmp_path / "pose_gen.pkl"
    export_table([("a.png", 0, np.ones((4, 2)))], good)
    other = "--fake-table" if side == "--real-table" else "--real-table"
    assert main(["metrics", side, str(path), other, str(good)]) == 1
    err = capsys.readouterr().err
    assert not marker.exists()
    assert len(err.strip().splitlines()) == 1
    assert str(path) in err and f"`{refused}`" in err


def test_python2_names_and_codecs_are_judged_as_loaded(tmp_path):
    """Protocol 0 records `__builtin__.eval`: it is refused as builtins.eval; `_codecs.encode`,
    allowed for protocol-2 bytes, encodes latin1 only."""
    path, marker = tmp_path / "old.pkl", tmp_path / "marker"
    path.write_bytes(b"c__builtin__\neval\n(Vopen('%s', 'w')\ntR." % str(marker).encode())
    with pytest.raises(RefusedPickleError, match=r"`builtins\.eval`"):
        import_table(path)
    assert not marker.exists()
    path.write_bytes(b"c_codecs\nencode\n(Vx\nVrot13\ntR.")
    with pytest.raises(KptoolkitError, match="cannot be read as a pickled pose-evaluation table"):
        import_table(path)
    # a name with a line break stays on the error's one line
    name = b"os\nsystem"
    path.write_bytes(b"\x80\x04\x8c%c%s\x8c\x01x\x93." % (len(name), name))
    with pytest.raises(RefusedPickleError) as caught:
        import_table(path)
    assert "\n" not in str(caught.value) and "os system.x" in str(caught.value)


def test_records_are_refused_as_values(tmp_path):
    path = tmp_path / "records.pkl"
    records = np.zeros(4, dtype=[("x", "f8"), ("y", "f8")])
    pd.DataFrame({"file_name": ["a.mp4"], "frame_number": [0], "value": [records]}).to_pickle(path)
    with pytest.raises(KptoolkitError, match="not an array of numbers") as caught:
        import_table(path)
    assert str(path) in str(caught.value)


def _expected_fixture() -> dict[str, dict[int, np.ndarray | None]]:
    """What tests/data/pose_tables/make_tables.py writes."""
    base = np.arange(8, dtype=np.float64).reshape(4, 2)
    return {
        name: {
            frame: None if (offset, frame) == (1, 1) else base * (frame + 1) + 10 * offset
            for frame in range(3)
        }
        for offset, name in enumerate(["a.mp4", "b.mp4"])
    }


def _assert_same(table, expected) -> None:
    assert list(table) == list(expected)
    for name, video in expected.items():
        assert list(table[name]) == list(video)
        for frame, value in video.items():
            if value is None:
                assert table[name][frame] is None
            else:
                np.testing.assert_array_equal(table[name][frame], value)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.pkl")), ids=lambda p: p.stem)
def test_tables_pickled_by_each_pandas_version_load(path):
    if "pyarrow" in path.stem:
        pytest.importorskip("pyarrow")
    _assert_same(import_table(path), _expected_fixture())


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_table_built_like_the_scripts_loads_in_every_protocol(tmp_path, protocol):
    expected = _expected_fixture()
    table = {"file_name": [], "frame_number": [], "value": []}
    for name, video in expected.items():
        for frame, value in video.items():
            table["file_name"].append(name)
            table["frame_number"].append(frame)
            table["value"].append(value)
    path = tmp_path / "pose.pkl"
    pd.DataFrame(table).to_pickle(path, protocol=protocol)
    _assert_same(import_table(path), expected)
    compressed = tmp_path / "pose.pkl.gz"
    compressed.write_bytes(gzip.compress(path.read_bytes()))
    _assert_same(import_table(compressed), expected)


def test_our_tables_load_with_the_same_values_and_numbers(tmp_path):
    rng = np.random.default_rng(0)
    real = [(f"{n}.mp4", i, rng.uniform(0, 99, (5, 2))) for n in "ab" for i in range(4)]
    fake = [(f"{n}.png", i, v + rng.normal(0, 2, v.shape)) for (n, i, v) in real]
    fake[3] = (fake[3][0], fake[3][1], None)
    paths = tmp_path / "pose_gt.pkl", tmp_path / "pose_gen.pkl"
    export_table([(n[0] + ".mp4", i, v) for n, i, v in real], paths[0])
    export_table(fake, paths[1])
    loaded = import_table(paths[1])
    by_pandas = pd.read_pickle(paths[1])  # written by us, so safe to read with pandas here
    for name, frame, value in zip(*(by_pandas[c] for c in COLUMNS), strict=True):
        got = loaded[name][frame]
        assert got is None if value is None else np.array_equal(got, value)
    metrics = {"akd": create_metric("akd"), "mkr": create_metric("mkr")}
    values = evaluate_tables(*paths, metrics).values()
    kept = [i for i, row in enumerate(fake) if row[2] is not None]
    r, f = (torch.from_numpy(np.stack([rows[i][2] for i in kept])) for rows in (real, fake))
    assert values["akd"] == pytest.approx(float(akd_per_frame(r, f).mean()), abs=1e-12)
    assert values["mkr"] == pytest.approx(1 / len(fake), abs=1e-12)  # one frame lost all


# ---- tables that cannot be scored together: one line naming both files, a non-zero exit ----


def _score(real, fake, capsys) -> tuple[int, str, str]:
    rc = main(["metrics", "--real-table", str(real), "--fake-table", str(fake)])
    out, err = capsys.readouterr()
    return rc, out, err


def _keypoint_table(path: Path, joints: int, frames=range(3), value=None) -> Path:
    rng = np.random.default_rng(joints)
    rows = [
        ("a.mp4", i, rng.uniform(0, 99, (joints, 2)) if value is None else value) for i in frames
    ]
    export_table(rows, path)
    return path


def test_different_joint_counts_are_one_line(tmp_path, capsys):
    real = _keypoint_table(tmp_path / "real15.pkl", 15)
    fake = _keypoint_table(tmp_path / "fake10.pkl", 10)
    rc, _, err = _score(real, fake, capsys)
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert str(real) in err and str(fake) in err
    assert "15 joints" in err and "10 joints" in err


def test_tables_without_a_common_frame_are_an_error(tmp_path, capsys):
    real = _keypoint_table(tmp_path / "real.pkl", 15, frames=range(3))
    fake = _keypoint_table(tmp_path / "late.pkl", 15, frames=range(10, 13))
    rc, out, err = _score(real, fake, capsys)
    assert rc == 1 and "nan" not in out and len(err.strip().splitlines()) == 1
    assert "share no (file, frame) pair" in err and str(real) in err and str(fake) in err


def test_nan_keypoints_count_as_missing(tmp_path, capsys):
    """A NaN coordinate marks a missing joint, as x = -1 does in the scripts: the numbers equal
    those of the same table with -1 there, and are not NaN."""
    rng = np.random.default_rng(3)
    real = rng.uniform(0, 99, (4, 6, 2))
    fake = real + rng.normal(0, 3, real.shape)
    real[0, 1] = np.nan
    fake[1, 2, 1] = np.nan
    fake[2, :, 0] = np.inf
    as_scripts = {"real": real.copy(), "fake": fake.copy()}  # -1 where a coordinate is not finite
    for array in as_scripts.values():
        array[~np.isfinite(array).all(axis=-1)] = -1
    for name, rows in {"real": real, "fake": fake}.items():
        export_table([("a.mp4", i, v) for i, v in enumerate(rows)], tmp_path / f"{name}.pkl")
        rows = as_scripts[name]
        export_table([("a.mp4", i, v) for i, v in enumerate(rows)], tmp_path / f"{name}-1.pkl")
    rc, out, _ = _score(tmp_path / "real.pkl", tmp_path / "fake.pkl", capsys)
    rc_scripts, out_scripts, _ = _score(tmp_path / "real-1.pkl", tmp_path / "fake-1.pkl", capsys)
    assert rc == rc_scripts == 0 and "nan" not in out
    assert out.splitlines()[:2] == out_scripts.splitlines()[:2]
    r, f = torch.from_numpy(as_scripts["real"]), torch.from_numpy(as_scripts["fake"])
    assert float(out.split()[1]) == pytest.approx(float(akd_per_frame(r, f).nanmean()), abs=1e-6)
    assert float(out.split()[3]) == pytest.approx(float(mkr_per_frame(r, f).mean()), abs=1e-6)


def test_every_keypoint_missing_is_an_error(tmp_path, capsys):
    real = _keypoint_table(tmp_path / "real.pkl", 6)
    fake = _keypoint_table(tmp_path / "allnan.pkl", 6, value=np.full((6, 2), np.nan))
    rc, _, err = _score(real, fake, capsys)
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert f"every keypoint of {fake} is missing" in err and str(real) in err


@pytest.mark.parametrize("rows", [[], [("a.png", 0, None)]], ids=["no rows", "only None"])
def test_an_empty_table_names_its_file(tmp_path, capsys, rows):
    real = _keypoint_table(tmp_path / "real.pkl", 6)
    empty = tmp_path / "empty.pkl"
    export_table(rows, empty)
    for pair in ((real, empty), (empty, real)):
        rc, _, err = _score(*pair, capsys)
        assert rc == 1 and len(err.strip().splitlines()) == 1 and str(empty) in err
