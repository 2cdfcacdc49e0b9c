"""The header of a ``.npy`` file, read without reading (or allocating) its data, and the one way bptrain
loads a ``.npy`` file a user gave it (:func:`load_npy`: models, arrays of images).

``np.load`` believes the header: a file whose header claims a (100000, 1000000)
float32 array makes it try to allocate 400 GB, and the user is told "out of
memory" about a 1 KB file. Comparing the size the header claims with the size
of the file first turns that into what it is: a truncated or corrupt file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core.errors import BptrainError
from .regular import open_regular

_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


class NpyHeader(NamedTuple):
    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    data_offset: int  # where the array's bytes start

    @property
    def data_bytes(self) -> int:
        """How many bytes of data the header promises (Python ints: no overflow)."""
        return self.dtype.itemsize * math.prod(self.shape)


def read_npy_header(path: str | os.PathLike) -> NpyHeader | None:
    """The header of the ``.npy`` file at ``path``, or None when it cannot be parsed here.

    None covers files that are not .npy, broken headers and format 3.0 (UTF-8
    field names, which the public NumPy readers do not parse): ``np.load`` then
    gives its own error, which the callers already turn into one line.
    """
    try:
        with open(path, "rb") as handle:
            return read_npy_header_from(handle)
    except OSError:
        return None


def read_npy_header_from(handle) -> NpyHeader | None:
    """:func:`read_npy_header` of an open binary stream at its start (a member of an ``.npz``, say)."""
    try:
        version = np.lib.format.read_magic(handle)
        reader = _READERS.get(version)
        if reader is None:
            return None
        shape, fortran_order, dtype = reader(handle)
        return NpyHeader(tuple(shape), bool(fortran_order), dtype, handle.tell())
    except (ValueError, OSError, EOFError, SyntaxError, TypeError):
        return None


def check_npy_size(path: str | os.PathLike, error: type[BptrainError], what: str = "") -> NpyHeader | None:
    """Raise ``error`` if the header of ``path`` claims more bytes than the file holds.

    Call it before ``np.load``: that way a lying header never gets to ask for
    the memory it claims. ``what`` names the file in the message ("model file").
    Object arrays are skipped (their data is a pickle
    of unknown length; ``np.load(allow_pickle=False)`` refuses them anyway).
    """
    header = read_npy_header(path)
    if header is None or header.dtype.hasobject:
        return header
    claimed = header.data_offset + header.data_bytes
    held = Path(path).stat().st_size
    if claimed > held:
        name = f"{what} {path}" if what else str(path)
        raise error(f"{name} is truncated or corrupt: its header claims {format_bytes(claimed)} "
                    f"({describe(header)}) but the file holds {format_bytes(held)}")
    return header


def format_bytes(n: int) -> str:
    """1234 -> '1.2 KB', 4e11 -> '400.0 GB' (decimal units, as disks are sold)."""
    if n < 1000:
        return f"{n} bytes"
    for unit in ("KB", "MB", "GB", "TB", "PB"):
        n /= 1000
        if n < 1000 or unit == "PB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def describe(header: NpyHeader) -> str:
    if header.dtype.names is not None:
        return f"a record of {len(header.dtype.names)} fields" if header.shape == () else \
            f"shape {header.shape} of records"
    return f"shape {header.shape} {header.dtype}"


def load_npy(path: str | os.PathLike, error: type[BptrainError], kind: str = ".npy array", what: str = "",
             memory_advice: str = ""):
    """``np.load(path, allow_pickle=False)``, every refusal one line of ``error``.

    A header claiming more than the file holds is refused before anything is allocated
    (:func:`check_npy_size`); a file that needs pickle (loading it could run code), a truncated or
    otherwise unreadable one, and one that does not fit in memory are each said as such. ``kind`` names
    what the file should be in messages (".npy model file"), ``what`` prefixes the path where the
    size is the subject ("model file"), ``memory_advice`` follows "does not fit in memory".
    A FIFO or a device is refused, never waited on (:func:`.regular.open_regular`).
    """
    check_npy_size(path, error, what)
    named = f"{what} {path}" if what else str(path)
    try:
        with open_regular(path, error, f"{what} " if what else "") as handle:
            return np.load(handle, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise error(f"{path} holds Python objects and needs pickle to load; bptrain refuses such files "
                        "(loading them can run arbitrary code)") from None
        raise error(f"{path} is not a readable {kind} ({_first_line(exc)})") from None
    except (OSError, EOFError) as exc:
        raise error(f"{path} is not a readable {kind} (truncated or corrupt: {_first_line(exc)})") from None
    except MemoryError:  # the file does hold what its header claims (checked above): it is just too big
        raise error(f"{named} ({format_bytes(Path(path).stat().st_size)}) does not fit in memory"
                    f"{memory_advice}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__
