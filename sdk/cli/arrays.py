"""Reading and writing the CLI's NumPy files (.npz keyed by tensor name, .npy for one tensor)
with one-line errors.

Every array's header (dtype, shape) is checked before its data is read: numbers only (no
object arrays, no pickles), and a size that the file really holds and that stays under
:data:`MAX_ARRAY_BYTES`, so a corrupted header cannot make the reader allocate first."""

from __future__ import annotations

import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npformat

from sdk.errors import EdgeError, InputError

MAX_ARRAY_BYTES = 4 << 30  #: one array
MAX_ARRAYS = 4096          #: arrays in one .npz

_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, struct.error,
                NotImplementedError, RuntimeError, UnicodeDecodeError, OverflowError,
                MemoryError, SyntaxError, tokenize.TokenError, TypeError, KeyError,
                IndexError, RecursionError)


class _Bad(Exception):
    """A header check failed (the message says which)."""


def _check_header(f: IO[bytes], available: int, label: str) -> None:
    """Read an .npy header from ``f`` and check it against the ``available`` bytes."""
    version = npformat.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = npformat.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = npformat.read_array_header_2_0(f)
    else:
        raise _Bad(f"{label}: unsupported .npy version {version}")
    if dtype.hasobject or dtype.kind not in "biufc":
        raise _Bad(f"{label}: dtype {dtype} is not numeric")
    count = 1
    for d in shape:
        if not isinstance(d, int) or d < 0:
            raise _Bad(f"{label}: shape {shape} is not a shape")
        count *= d
    nbytes = count * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise _Bad(f"{label}: shape {shape} of {dtype} is {nbytes:,} bytes, over the "
                   f"{MAX_ARRAY_BYTES:,}-byte limit")
    if nbytes > available:
        raise _Bad(f"{label}: shape {shape} of {dtype} needs {nbytes:,} bytes but the file "
                   f"holds {available:,}")


def _check_npy(path: Path) -> None:
    size = path.stat().st_size
    with path.open("rb") as f:
        _check_header(f, size, path.name)
        # the header was read: what is left is the data
        if size - f.tell() < 0:
            raise _Bad(f"{path.name}: truncated")


def _check_npz(path: Path) -> None:
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        if len(infos) > MAX_ARRAYS:
            raise _Bad(f"holds {len(infos)} members, over {MAX_ARRAYS}")
        seen = set()
        for info in infos:
            if info.filename in seen:
                raise _Bad(f"member {info.filename!r} appears twice")
            seen.add(info.filename)
            if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED,
                                                                  zipfile.ZIP_DEFLATED):
                raise _Bad(f"member {info.filename!r} is encrypted or uses compression "
                           f"method {info.compress_type}")
            if not info.filename.endswith(".npy"):
                continue
            with z.open(info) as f:
                _check_header(f, info.file_size, f"member {info.filename!r}")


def load_arrays(path: str | Path, names: list[str], error: type[EdgeError] = InputError,
                what: str = "input") -> dict[str, np.ndarray]:
    """``.npz`` → dict name → array; ``.npy`` → the single name in ``names``."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file {path} does not exist")
    try:
        if path.suffix.lower() == ".npy":
            if len(names) != 1:
                raise error(f"{path} holds one array but the model has {len(names)} inputs "
                            f"{names}; pass an .npz keyed by input name")
            _check_npy(path)
            arr = np.load(path, allow_pickle=False)
            return {names[0]: arr}
        if not zipfile.is_zipfile(path):
            raise error(f"cannot read {what} file {path} (not an .npz archive); save "
                        f"{what}s with numpy.savez")
        _check_npz(path)
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise error(f"{path} is not an .npz archive; save {what}s with numpy.savez")
            return {k: z[k] for k in z.files}
    except EdgeError:
        raise
    except _Bad as exc:
        raise error(f"cannot read {what} file {path} ({exc}); save it with numpy.savez / "
                    "numpy.save") from None
    except _READ_ERRORS as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"cannot read {what} file {path} ({first}); "
                    "save it with numpy.savez / numpy.save") from None
