"""A restricted unpickler for dataset pickles (mini-ImageNet, tiered-ImageNet, …).

Unpickling runs code: a pickle names any importable callable and the arguments to call it with, so a downloaded
"dataset" could run ``os.system``. Datasets only need plain containers and numpy arrays, so this unpickler resolves
nothing but the few globals those need, from a fixed table (it imports nothing), and refuses any other before it runs.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from gpicl_bench.errors import UserError

try:  # numpy >= 2 moved numpy.core to numpy._core; pickles from either name the module they were written with
    from numpy._core import multiarray, numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray, numeric  # type: ignore[no-redef]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 pickles ``bytes`` at protocols 0–2, limited to that use (no codec lookups)."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"bytes encoded as {encoding!r}, not latin1")
    return text.encode("latin1")


_CORES = ("numpy.core", "numpy._core")
_ALLOWED: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _latin1_encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(f"{core}.multiarray", "_reconstruct"): multiarray._reconstruct for core in _CORES},
    **{(f"{core}.multiarray", "scalar"): multiarray.scalar for core in _CORES},
    **{(f"{core}.numeric", "_frombuffer"): numeric._frombuffer for core in _CORES},  # arrays at protocol 5
    # Python 2 pickles name the module __builtin__
    **{(module, t.__name__): t for module in ("builtins", "__builtin__") for t in (set, frozenset, bytearray, complex)},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path, encoding: str) -> None:
        super().__init__(file, encoding=encoding)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UserError(
                f"refusing to unpickle {self.path}: it imports {module}.{name}; "
                "dataset pickles may hold only containers and numpy arrays"
            ) from None


def load(path: Path, *, encoding: str = "ASCII") -> Any:
    """The object pickled in ``path``, if it holds only containers and numpy arrays; anything else, and any
    unreadable or corrupt file, is a user error naming the file. Python 2 pickles need ``encoding="latin1"``
    (text) or ``"bytes"`` (their ``str`` become ``bytes``)."""
    try:
        with path.open("rb") as file:
            return _Unpickler(file, path, encoding).load()
    except UserError:
        raise
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    except Exception as error:  # a corrupt pickle can fail in any of pickle's or numpy's checks
        raise UserError(f"{path} is not a readable dataset pickle ({type(error).__name__}: {error})") from None
