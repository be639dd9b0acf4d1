"""Reading a pickled pose-evaluation table without running code from the file.

`pickle` (and `pandas.read_pickle`, which uses it) calls whatever a file names: a pickle can
start a shell command. `load_table_pickle` unpickles with an allow-list instead: a global the
file names is looked up only when it is one of those that pandas (0.25 to 3.x) and numpy (1.x
and 2.x) pickle a table of `file_name`, `frame_number` and `value` through (found by reading
the opcodes, `pickletools.dis`, of such tables written by each of those versions). Anything
else, such as `os.system`, `builtins.exec` or `functools.partial`, is refused before anything is
called, in one line that names the file and the refused global. The allowed globals build
data only: pandas frames, series and indexes, numpy arrays, dtypes and scalars, slices.
"""

from __future__ import annotations

import bz2
import gzip
import importlib
import importlib.util
import lzma
import pickle
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kptoolkit.errors import KptoolkitError

_NUMPY_CORE = ("_reconstruct", "scalar")
_NUMPY_NUMERIC = ("_frombuffer",)

# module -> the names a table's pickle may ask for (as written, old and new locations alike)
ALLOWED: dict[str, frozenset[str]] = {
    name: frozenset(names)
    for name, names in {
        # pandas 3 pickles classes under their public path
        "pandas": ("DataFrame", "Series", "Index", "RangeIndex", "StringDtype", "NA"),
        "pandas.arrays": ("StringArray", "ArrowStringArray"),
        # pandas 0.25 - 2.x: the defining modules
        "pandas.core.frame": ("DataFrame",),
        "pandas.core.series": ("Series",),
        "pandas.core.indexes.base": ("Index", "_new_Index"),
        "pandas.core.indexes.range": ("RangeIndex",),
        "pandas.core.indexes.numeric": ("Int64Index", "UInt64Index", "Float64Index"),  # < 2.0
        "pandas.core.internals": ("BlockManager", "SingleBlockManager"),  # < 0.24
        "pandas.core.internals.managers": ("BlockManager", "SingleBlockManager"),
        "pandas.core.internals.blocks": ("new_block",),  # 1.3
        "pandas.core.arrays.string_": ("StringArray", "StringDtype"),
        "pandas.core.arrays.string_arrow": ("ArrowStringArray",),
        "pandas._libs.internals": ("_unpickle_block",),
        "pandas._libs.arrays": ("__pyx_unpickle_NDArrayBacked",),
        "pandas._libs.missing": ("NA",),
        # numpy 2 (numpy._core) and 1.x (numpy.core)
        "numpy": ("ndarray", "dtype"),
        "numpy._core.multiarray": _NUMPY_CORE,
        "numpy.core.multiarray": _NUMPY_CORE,
        "numpy._core.numeric": _NUMPY_NUMERIC,
        "numpy.core.numeric": _NUMPY_NUMERIC,
        # the string column of pandas 3 with pyarrow installed
        "pyarrow.lib": ("type_for_alias", "py_buffer", "_restore_array"),
        # Python: slices (block placements), bytes in protocols 0-2, objects in protocols 0-1
        "builtins": ("slice", "bytearray", "object"),
        "copyreg": ("_reconstructor",),
        "_codecs": ("encode",),
    }.items()
}

# where a name lives when its recorded location has gone (tried after the recorded one)
MOVED: dict[tuple[str, str], tuple[str, str]] = {
    ("pandas.core.indexes.numeric", "Int64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.numeric", "UInt64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.numeric", "Float64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.internals.blocks", "new_block"): ("pandas._libs.internals", "_unpickle_block"),
}

# pandas.to_pickle compresses by the file's suffix; these are the ones Python reads itself
OPENERS: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


class RefusedPickleError(KptoolkitError):
    """A table's pickle names a global outside the allow-list; nothing of it was run."""


def load_table_pickle(path: str | Path) -> object:
    """The object pickled in `path` (optionally .gz, .bz2 or .xz), unpickled with the allow-list.

    A RefusedPickleError names the file and the first global outside the allow-list; any other
    failure to unpickle is a KptoolkitError that names the file.
    """
    path = Path(path)
    opener = OPENERS.get(path.suffix.lower(), open)
    try:
        with opener(path, "rb") as handle:
            return _TableUnpickler(handle, path).load()
    except KptoolkitError:
        raise
    except Exception as exc:  # a damaged or foreign file: unpickling fails in many ways
        raise KptoolkitError(
            f"{path} cannot be read as a pickled pose-evaluation table "
            f"({type(exc).__name__}: {_one_line(str(exc))})"
        ) from None


def _one_line(text: str, limit: int = 200) -> str:
    """`text` on one printable line (a file's names could hold newlines or escapes)."""
    text = " ".join(text.split())
    text = text if text.isprintable() else ascii(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _TableUnpickler(pickle.Unpickler):
    """An unpickler that looks up only the globals of `ALLOWED`."""

    def __init__(self, handle: Any, path: Path) -> None:
        super().__init__(handle)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        module, name = _python3_name(module, name)  # protocols 0-2: __builtin__, copy_reg
        if name not in ALLOWED.get(module, ()):
            raise RefusedPickleError(
                f"{self.path}: refused to load `{_one_line(f'{module}.{name}')}`: a pose-"
                "evaluation table holds only pandas, numpy and plain Python data, and nothing "
                "in the file was run"
            )
        found = _lookup_global(module, name)
        if found is None:
            package = module.split(".")[0]
            if importlib.util.find_spec(package) is None:
                raise KptoolkitError(
                    f"{self.path} needs {package} to be read: pip install {package}"
                )
            raise KptoolkitError(f"{self.path} needs `{module}.{name}`, which this {package} lacks")
        return _GUARDS.get((module, name), lambda target: target)(found)


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """The Python 3 name of a global that protocols 0-2 record under its Python 2 name (the
    allow-list judges what would be loaded)."""
    if (module, name) in NAME_MAPPING:
        return NAME_MAPPING[(module, name)]
    return IMPORT_MAPPING.get(module, module), name


def _lookup_global(module: str, name: str) -> Any:
    """The allowed global (None where this pandas, numpy or pyarrow has none of its names)."""
    candidates = [(module, name)]
    if module.startswith("numpy.core."):  # numpy 2 warns on numpy.core; 1.26 has numpy._core
        candidates.insert(0, ("numpy._core." + module.removeprefix("numpy.core."), name))
    elif module.startswith("numpy._core."):
        candidates.append(("numpy.core." + module.removeprefix("numpy._core."), name))
    if (module, name) in MOVED:
        candidates.append(MOVED[(module, name)])
    for where, what in candidates:
        try:
            return getattr(importlib.import_module(where), what)
        except (ImportError, AttributeError):
            continue
    return None


def _latin1_only(encode: Callable[..., bytes]) -> Callable[..., bytes]:
    """`_codecs.encode` as protocols 0-2 use it (text to bytes in latin1), and nothing else."""

    def latin1(text: str, encoding: str = "latin1") -> bytes:
        if not isinstance(text, str) or encoding.lower() not in ("latin1", "latin-1"):
            raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not for bytes")
        return encode(text, encoding)

    return latin1


def _validated(restore: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """pyarrow's array restorer, with the restored array fully validated (offsets in bounds)."""

    def restore_array(data: Any) -> Any:
        array = restore(data)
        array.validate(full=True)
        return array

    return restore_array


_GUARDS: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("_codecs", "encode"): _latin1_only,
    ("pyarrow.lib", "_restore_array"): _validated,
}
