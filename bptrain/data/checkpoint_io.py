"""The checkpoint file: a run's whole state, written as safely as the model file and checked as strictly.

A NumPy ``.npz`` archive (a zip of ``.npy`` arrays, read with ``allow_pickle=False``: loading it runs no
code): the arrays ``a0``, ``a1``, ... in the order the metadata names them, and ``meta``, the metadata as
UTF-8 JSON bytes. The metadata says what the file is (:data:`FORMAT_NAME`, :data:`FORMAT_VERSION`) and
holds the SHA-256 of every array's dtype, shape and bytes, and of the metadata itself, so a truncated or
altered file is refused in one line rather than half-continued (what a file says is also checked against
the run it claims to be: :mod:`bptrain.app.checkpoint_checks`). Written atomically: a temporary file in the same folder, fsynced,
then renamed over the old one (:func:`.model_io.atomic_write`).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ..core.errors import ModelFileError
from .model_io import atomic_write
from .npyfile import describe, format_bytes, read_npy_header_from

FORMAT_NAME = "bptrain-checkpoint"
FORMAT_VERSION = 1
#: What a checkpoint's name ends with (not .npy: compare, plot and sweep take those for models).
SUFFIX = ".checkpoint.npz"
#: The metadata is small (the history of a run of a thousand epochs is well under this).
MAX_META_BYTES = 64 * 1024 * 1024


class CheckpointError(ModelFileError):
    """A checkpoint file is missing, truncated, altered, or not a bptrain checkpoint."""


def digest(arrays) -> str:
    """SHA-256 of the arrays, each by its dtype, shape and bytes, in order."""
    sha = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        sha.update(f"{array.dtype.str}{array.shape}".encode("ascii"))
        sha.update(array.tobytes())
    return sha.hexdigest()


def meta_digest(document: dict) -> str:
    """SHA-256 of the metadata (but this digest itself), as canonical JSON: a changed field is found too."""
    rest = {key: value for key, value in document.items() if key != "meta_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode("utf-8")).hexdigest()


def save_checkpoint(path: Path, meta: dict, arrays: list) -> int:
    """Write ``meta`` (JSON-able) and ``arrays`` to ``path`` atomically; returns the bytes written."""
    document = {**meta, "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "n_arrays": len(arrays),
                "sha256": digest(arrays)}
    document["meta_sha256"] = meta_digest(document)
    payload = {f"a{i}": np.ascontiguousarray(a) for i, a in enumerate(arrays)}
    payload["meta"] = np.frombuffer(json.dumps(document).encode("utf-8"), np.uint8)
    atomic_write(Path(path), lambda handle: np.savez(handle, **payload))
    return os.path.getsize(path)


def load_checkpoint(path: Path) -> tuple[dict, list]:
    """(metadata, arrays) of a checkpoint; one line of :class:`CheckpointError` for anything wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        check_sizes(path)
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            if "meta" not in names:
                raise CheckpointError(f"{path} is not a bptrain checkpoint (it has no metadata)")
            raw = archive["meta"]
            if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size > MAX_META_BYTES:
                raise CheckpointError(f"{path} is not a bptrain checkpoint (its metadata is not JSON bytes)")
            meta = json.loads(raw.tobytes().decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
                raise CheckpointError(f"{path} is not a bptrain checkpoint")
            if meta.get("format_version") != FORMAT_VERSION:
                raise CheckpointError(f"{path} is a checkpoint of format version {meta.get('format_version')}; "
                                      f"this bptrain reads version {FORMAT_VERSION}")
            count = meta.get("n_arrays")
            if not isinstance(count, int) or names != {"meta", *(f"a{i}" for i in range(count))}:
                raise CheckpointError(f"{path} is truncated or corrupt: its arrays are not the ones it lists")
            arrays = [archive[f"a{i}"] for i in range(count)]
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path} is truncated or corrupt ({reason})") from None
    if "meta_sha256" in meta and meta_digest(meta) != meta["meta_sha256"]:  # older files have none
        raise CheckpointError(f"{path} is truncated or corrupt: its metadata does not match the checksum it was "
                              "written with")
    if any(a.dtype.kind not in "fiu" for a in arrays) or digest(arrays) != meta.get("sha256"):
        raise CheckpointError(f"{path} is truncated or corrupt: its arrays do not match the checksum it was "
                              "written with")
    return meta, arrays


def check_sizes(path: Path) -> None:
    """Before ``np.load`` allocates anything: every member stored as :func:`save_checkpoint` stores it,
    uncompressed (so none can inflate beyond the file), and every ``.npy`` header claiming exactly the bytes
    its member holds, all of them within the file (a header's word would otherwise be an allocation)."""
    held, total = path.stat().st_size, 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise CheckpointError(f"{path} is not a checkpoint bptrain wrote: its member {info.filename} is "
                                      "compressed (bptrain stores its arrays as they are, so none can inflate)")
            total += info.file_size
            if total > held:
                raise CheckpointError(f"{path} is truncated or corrupt: its members claim more than "
                                      f"{format_bytes(total)} but the file holds {format_bytes(held)}")
            with archive.open(info) as member:
                header = read_npy_header_from(member)
            if header is None or header.dtype.hasobject:
                continue  # np.load refuses it in its own words
            claimed = header.data_offset + header.data_bytes
            if claimed != info.file_size:
                raise CheckpointError(f"{path} is truncated or corrupt: the header of {info.filename} claims "
                                      f"{format_bytes(claimed)} ({describe(header)}) but it holds "
                                      f"{format_bytes(info.file_size)}")


def is_checkpoint_file(path: Path) -> bool:
    """Whether ``path`` is a zip archive with a ``meta`` entry, as checkpoints are (judged without loading it)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "meta.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
