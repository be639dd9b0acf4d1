"""Writes `pandas-<version>.pkl` here: one small table the way the public pose-evaluation
scripts build theirs (a dict of lists to a DataFrame, `to_pickle`), with the pandas and numpy
that run this script. The committed files were written by pandas 0.25.3 / numpy 1.17.5
(Python 3.7), 1.5.3 / 1.24.4, 2.2.3 / 1.26.4 and 3.1.1 / 2.4.6, with and without pyarrow, so
that tests/test_table_safety.py checks the allow-list against the globals each version pickles.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

table = {"file_name": [], "frame_number": [], "value": []}
for offset, name in enumerate(["a.mp4", "b.mp4"]):
    for frame in range(3):
        keypoints = np.arange(8, dtype=np.float64).reshape(4, 2) * (frame + 1) + 10 * offset
        table["file_name"].append(name)
        table["frame_number"].append(frame)
        table["value"].append(None if (offset, frame) == (1, 1) else keypoints)
frame = pd.DataFrame(table).set_index(pd.Index([5, 3, 9, 1, 7, 0]))  # not a RangeIndex
try:
    import pyarrow  # noqa: F401

    suffix = "-pyarrow"
except ImportError:
    suffix = ""
frame.to_pickle(str(Path(__file__).parent / f"pandas-{pd.__version__}{suffix}.pkl"))
print(sys.version.split()[0], pd.__version__, np.__version__, suffix)
