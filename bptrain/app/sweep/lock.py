"""One sweep at a time in a folder: a lock on a file in it, held by the sweep's process.

Two sweeps into one folder would take over each other's checkpoints and mark each other's runs failed.
The lock is ``fcntl.flock`` on ``.bptrain-sweep.lock`` in the folder: the kernel lets go of it when the
process ends, however it ends (a SIGKILL, a power cut), so a dead sweep holds nothing and no stale lock
is ever to be removed by hand. The file holds the owner's PID, for the message, and is removed by its
owner at the end (one that finds, once it holds a lock, that the name is no longer its file tries again,
so a removal never lets two hold it). Where there is no ``flock`` (Windows) there is no lock.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

from ...core.errors import BptrainError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

LOCK_NAME = ".bptrain-sweep.lock"


class FolderBusy(BptrainError):
    """Another sweep (a live process) is running in the folder."""


@contextmanager
def folder_lock(out_dir: Path):
    """Hold the folder for this process while the block runs; :class:`FolderBusy` if another holds it."""
    if fcntl is None:
        yield
        return
    path = Path(out_dir) / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # not inherited by the runs' processes
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise FolderBusy(f"another sweep (PID {owner}) is running in {out_dir}; wait for it to end, or give "
                             "another --out-dir") from None
        if _same_file(fd, path):
            break
        os.close(fd)  # its owner removed it as we opened it: the lock is the file now at the path
    held = os.pread(fd, 64, 0)
    if held and not re.fullmatch(rb"\d+\n?", held):  # someone's own file under the lock's name: not ours
        os.close(fd)
        raise FolderBusy(f"{path} is not a bptrain sweep's lock file; bptrain replaces only its own files: move "
                         "it away first")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # still held: whoever opens the name next makes a new lock
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        held, named = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)
