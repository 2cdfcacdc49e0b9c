"""Opening a file a user named, refusing what is not a regular file before it can block or never end.

``open()`` of a FIFO waits for a writer for ever, and a device (``/dev/zero``, ``/dev/urandom``) has no
end. Files bptrain reads because a user named them are opened here: with ``O_NONBLOCK``, so the open
itself returns at once whatever the path is, and then what was opened is checked (``fstat``: no window
between a check and the open for the path to be swapped in).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

from ..core.errors import BptrainError

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_regular(mode: int) -> str | None:
    """What a file of this ``st_mode`` is when it is neither a regular file nor a directory, else None."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def check_regular(path: str | os.PathLike, error: type[BptrainError], what: str = "") -> None:
    """Raise ``error`` if ``path`` (followed through symlinks) is a FIFO, a device or a socket.

    A missing path or a directory is left to the caller, which says it in its own words.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    kind = not_regular(mode)
    if kind is not None:
        raise error(f"{what}{os.fspath(path)} is {kind}, not a regular file")


def open_regular(path: str | os.PathLike, error: type[BptrainError], what: str = "") -> BinaryIO:
    """``open(path, "rb")`` that refuses, without waiting, anything but a regular file (``error``).

    A directory raises IsADirectoryError and a missing path FileNotFoundError, as ``open`` does.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        kind = not_regular(mode)
        if kind is not None:
            raise error(f"{what}{os.fspath(path)} is {kind}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_small(path: str | os.PathLike, error: type[BptrainError], what: str, limit: int) -> bytes:
    """The bytes of a small file a user named (a workbook, a search space), read at most ``limit`` of them:
    refused in one line (``error``) when it is missing, not a regular file (never waited on) or longer."""
    try:
        with open_regular(path, error, f"{what} ") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read {what} {os.fspath(path)}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{what} {os.fspath(path)} is more than {limit:,} bytes; {what} is far smaller")
    return data
