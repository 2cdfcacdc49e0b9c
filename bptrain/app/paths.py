"""What a command may write: never a file the user gave it, never one file twice.

Every command that writes calls :func:`check_no_clash` before any work, with its
inputs and outputs named by the option that gave them::

    check_no_clash(inputs={"--data": data_files(data), "--config": [config], "--resume": [resume]},
                   outputs={"--out": [out], "--history": [history]},
                   allow={("--out", "--resume")})

Paths are compared by what they point to, not by how they are spelled: two
existing paths clash when they are the same file (``os.path.samefile``: same
device and inode, so symlinks and hard links are caught); a path that does not
exist yet is compared by its resolved form (symlinked parent directories and
a dangling symlink followed), which is where the file will be created.

A directory a command writes into is an :class:`OutputDir`. When the command
knows the names of the files it will write (``plot`` does: ``NAME.curves.png``
...), it lists them and each is checked like a file output. When the names are
only decided later (one file per input image, say), it passes ``names=None``
and then no input may lie directly inside that directory: the only safe rule
when the names are not known yet.

:func:`check_replaceable` adds the rule for files that are not inputs: an
output that already exists is replaced only if it holds what that option
writes (a bptrain model for ``--out``, a bptrain history for ``--history``, a
PNG for a plot), or is empty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from ..core.errors import PathClash
from ..data.idx import IDX_NAME, IDX_NAMES
from ..data.splits import classes_file_beside
from ..data.json_text import is_json_object
from ..data.npyfile import read_npy_header

#: A history JSON larger than this is not one bptrain wrote (a year of epochs is ~100 MB).
MAX_HISTORY_BYTES = 256 * 1024 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class OutputDir:
    """A directory a command writes into: ``names`` are the files it will write (None: not known yet)."""

    path: Path
    names: tuple[str, ...] | None = None

    def files(self) -> list[Path]:
        return [self.path / name for name in self.names or ()]


Output = Path | OutputDir


def data_files(path: str | os.PathLike) -> list[Path]:
    """The files a ``--data`` path stands for: the file itself (with the other files of its IDX set), or every
    file a data directory may be read from; and the ``classes.txt`` that names its classes.

    Each of the four IDX names counts plain and ``.gz``, present or not: the
    loader reads the plain file when both exist, so writing a plain one next to
    a ``.gz`` would change the data as surely as overwriting it.
    """
    path = Path(path)
    if path.is_dir():
        files = [path / (name + suffix) for name in IDX_NAMES for suffix in ("", ".gz")]
        files += _files_in(path)
    else:
        files = [path]
        if IDX_NAME.match(path.name):
            files += [f for f in _files_in(path.parent) if IDX_NAME.match(f.name)]
    files.append(classes_file_beside(path))
    return list(dict.fromkeys(files))


def _files_in(folder: Path) -> list[Path]:
    try:
        return sorted(entry for entry in folder.iterdir() if entry.is_file())
    except OSError:
        return []


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are (or would be created as) the same file."""
    return _identity(a) == _identity(b)


def _identity(path: Path):
    try:
        info = os.stat(path)  # follows symlinks; hard links share the inode
    except (FileNotFoundError, NotADirectoryError):
        return ("new", str(Path(path).resolve()))
    except OSError:  # unreadable parent and the like: fall back to the spelling, made absolute
        return ("new", os.path.abspath(path))
    return ("file", info.st_dev, info.st_ino)


def check_no_clash(inputs: Mapping[str, Iterable[Path | None]], outputs: Mapping[str, Iterable[Output | None]],
                   allow: Iterable[tuple[str, str]] = (), show: Callable[[Path], str] = str) -> None:
    """Raise :class:`PathClash` if an output is an input or another output.

    ``inputs`` and ``outputs`` map an option name (``"--out"``, ``"MODEL"``) to
    its paths; None entries (options not given) are skipped. ``allow`` holds
    ``(output option, input option)`` pairs that may be the same file, such as
    ``("--out", "--resume")`` for continuing a model in place. ``show``: how a message names a path
    (the page names files only, never the folders of the machine that serves it).
    """
    allowed = set(allow)
    given_inputs = [(option, Path(p)) for option, paths in inputs.items() for p in paths if p is not None]
    given_outputs = [(option, out) for option, paths in outputs.items() for out in paths if out is not None]
    input_ids = [(option, path, _identity(path)) for option, path in given_inputs]
    output_files = [(option, path, shown, _identity(path))
                    for option, output in given_outputs for path, shown in _output_files(option, output, show)]
    open_dirs = [(option, out) for option, out in given_outputs if isinstance(out, OutputDir) and out.names is None]

    for out_option, _, shown, target in output_files:
        for in_option, in_path, source in input_ids:
            if source == target and (out_option, in_option) not in allowed:
                raise PathClash(f"{shown} is the same file as {in_option} {show(in_path)}; choose another {out_option}",
                                field=out_option)
    for dir_option, directory in open_dirs:
        for in_option, in_path, _ in input_ids:
            if same_file(in_path.resolve().parent, directory.path) and (dir_option, in_option) not in allowed:
                raise PathClash(f"{dir_option} {directory.path} is the directory of {in_option} {in_path}, and "
                                f"the files written there could replace it; choose another {dir_option}")

    earlier: dict = {}  # by identity: a sweep of thousands of runs has tens of thousands of outputs
    for out_option, _, shown, target in output_files:
        if target in earlier:
            raise PathClash(f"{shown} is the same file as {earlier[target]}; choose another {out_option}")
        earlier[target] = shown
    for dir_option, directory in open_dirs:
        for out_option, out_path, shown, _ in output_files:
            if same_file(out_path.resolve().parent, directory.path):
                raise PathClash(f"{shown} is inside {dir_option} {directory.path}, whose files could replace it; "
                                f"choose another {out_option}")


def _output_files(option: str, output: Output, show=str) -> list[tuple[Path, str]]:
    """(path, how to name it in a message) for each file an output stands for."""
    if isinstance(output, OutputDir):
        return [(path, f"{option} {show(output.path)} would write {show(path)}, which") for path in output.files()]
    path = Path(output)
    return [(path, f"{option} {show(path)}")]


def check_replaceable(option: str, path: Path | None, holds_ours: Callable[[Path], bool], what: str,
                      shown: str | None = None) -> None:
    """Refuse to replace an existing ``path`` unless it is empty or ``holds_ours(path)``.

    ``what`` names what ``option`` writes ("a bptrain model"). A file that is
    not one is somebody's data, config or other work: never ours to replace.
    ``shown`` names the file in the message [default: "OPTION PATH"].
    """
    if path is None:
        return
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return  # absent (or a directory, which check_writable reports), or empty: nothing to lose
    except OSError:
        return
    if not holds_ours(path):
        shown = shown or f"{option} {path}"
        raise PathClash(f"{shown} already exists and is not {what}; bptrain replaces only its own files: "
                        f"choose another {option}, or move {path} away first")


def is_model_file(path: Path) -> bool:
    """A bptrain model, judged by its .npy header alone: one record with a ``meta`` field."""
    header = read_npy_header(path)
    return (header is not None and header.shape == () and header.dtype.names is not None
            and "meta" in header.dtype.names)


def is_history_file(path: Path) -> bool:
    """A history JSON as ``bptrain train`` writes it: an object with a list of ``epochs``."""
    try:
        if path.stat().st_size > MAX_HISTORY_BYTES:
            return False
        document = is_json_object(path.read_bytes())
    except OSError:
        return False
    return document is not None and isinstance(document.get("epochs"), list) and "best_epoch" in document


def is_png_file(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(PNG_MAGIC)) == PNG_MAGIC
    except OSError:
        return False
