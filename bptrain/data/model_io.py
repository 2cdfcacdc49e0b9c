"""Model files: one ``.npy`` holding every layer's weights and biases plus metadata.

The file is a single record of a structured dtype: fields ``W1, b1, ..., WL,
bL`` (float arrays of the layer shapes) and ``meta`` (UTF-8 JSON bytes with the
format version, sizes, loss, hidden activation and training settings). ``np.load(path,
allow_pickle=False)`` opens it, so loading a model can never run code, and
``bptrain eval`` needs nothing but the file to rebuild the network.

Writes are atomic: a temporary file in the same directory, fsynced, then
renamed over the target, so an interrupted save never leaves a broken model.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..core.errors import ModelFileError
from ..core.network import ACTIVATIONS, DTYPES, LOSSES, MLP
from .json_text import parse_json
from .npyfile import load_npy
from .regular import check_regular

#: The newest format this bptrain reads and writes. Version 2 adds "activation";
#: a file without it (version 1, or any file written before it existed) is sigmoid.
FORMAT_VERSION = 2
FORMAT_NAME = "bptrain-mlp"
NPY_MAGIC = b"\x93NUMPY"


def format_version_for(activation: str) -> int:
    """The oldest format version that describes a model with these hidden units.

    A sigmoid model is written as version 1, which every bptrain reads (an
    older one ignores the "activation" key and computes exactly what the file
    means). Any other unit needs version 2: a bptrain from before activations
    existed refuses it ("upgrade bptrain") instead of silently running it as sigmoid.
    """
    return 1 if activation == "sigmoid" else 2


def model_record(model: MLP, metadata: dict | None = None) -> np.ndarray:
    """The model as a 0-d structured array: one field per weight and bias, plus ``meta``."""
    meta = {
        "format": FORMAT_NAME,
        "format_version": format_version_for(model.activation),
        "sizes": list(model.sizes),
        "loss": model.loss,
        "activation": model.activation,
        "dtype": model.dtype.name,
        **(metadata or {}),
    }
    meta_bytes = json.dumps(meta, sort_keys=True).encode("utf-8")
    fields = []
    for l, (w, b) in enumerate(zip(model.weights, model.biases), 1):
        fields.append((f"W{l}", w.dtype.str, w.shape))
        fields.append((f"b{l}", b.dtype.str, b.shape))
    fields.append(("meta", f"S{len(meta_bytes)}"))
    record = np.zeros((), dtype=np.dtype(fields))
    for l, (w, b) in enumerate(zip(model.weights, model.biases), 1):
        record[f"W{l}"] = w
        record[f"b{l}"] = b
    record["meta"] = meta_bytes
    return record


def save_model(model: MLP, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ``model`` to ``path`` atomically. ``metadata`` (JSON-able) is stored with it."""
    path = Path(path)
    record = model_record(model, metadata)
    atomic_write(path, lambda handle: np.save(handle, record, allow_pickle=False))
    return path


def atomic_write(path: Path, write) -> None:
    """Call ``write(handle)`` on a temp file next to ``path``, then rename it into place."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_current_umask())  # mkstemp makes 0600; a saved model should be like any file
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise


def write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all, never replacing a file of that name: a temporary file
    beside it, fsynced, then linked to the name (the link fails if the name exists by then: FileExistsError).
    On a file system without hard links the name is claimed exclusively first, then the file renamed onto it."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_current_umask())  # mkstemp makes 0600; the file is like any the user makes
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp_name, path)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            os.replace(temp_name, path)
    finally:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_model_record(path: str | os.PathLike):
    """Load and check a model file; return (weights, biases, metadata)."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"no model file at {path}")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory, not a model file")
    check_regular(path, ModelFileError, "model file ")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty, not a model file")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(NPY_MAGIC))
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    if magic != NPY_MAGIC:  # without this check np.load takes any other file for a pickle
        raise ModelFileError(f"{path} is not a .npy file (bptrain models are .npy files written by `bptrain train`)")
    record = load_npy(path, ModelFileError, ".npy model file", "model file")
    if not isinstance(record, np.ndarray) or record.dtype.names is None or "meta" not in record.dtype.names:
        raise ModelFileError(f"{path} is a .npy file but not a bptrain model (no metadata record)")
    if record.shape != ():
        raise ModelFileError(f"{path} is not a bptrain model (expected one record, found shape {record.shape})")
    try:
        meta = parse_json(bytes(record["meta"]), f"{path}: the model metadata", ModelFileError)
    except ModelFileError:
        raise ModelFileError(f"{path}: the model metadata is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} is not a bptrain model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(f"{path} has model format version {version}; this bptrain reads up to "
                             f"{FORMAT_VERSION}: upgrade bptrain to load it")
    sizes = meta.get("sizes")
    if not (isinstance(sizes, list) and len(sizes) >= 2 and all(isinstance(n, int) and n > 0 for n in sizes)):
        raise ModelFileError(f"{path}: the model metadata has invalid layer sizes {sizes!r}")
    if meta.get("loss") not in LOSSES:
        raise ModelFileError(f"{path}: unknown loss {meta.get('loss')!r} in the model metadata")
    meta.setdefault("activation", "sigmoid")  # written before activations existed: sigmoid
    if meta["activation"] not in ACTIVATIONS:
        raise ModelFileError(f"{path}: unknown hidden activation {meta['activation']!r} in the model metadata "
                             f"(this bptrain knows {', '.join(ACTIVATIONS)})")
    _check_classes(meta, path)
    weights, biases = [], []
    for l in range(1, len(sizes)):
        expected = {f"W{l}": (sizes[l - 1], sizes[l]), f"b{l}": (sizes[l],)}
        for name, shape in expected.items():
            if name not in record.dtype.names:
                raise ModelFileError(f"{path}: layer {l} is missing ({name} not in the file)")
            array = np.asarray(record[name])
            if array.shape != shape:
                raise ModelFileError(f"{path}: {name} has shape {array.shape}, expected {shape} for sizes {sizes}")
            if array.dtype.kind != "f" or not np.isfinite(array).all():
                raise ModelFileError(f"{path}: {name} holds non-finite or non-float values")
            (weights if name[0] == "W" else biases).append(array)
    return weights, biases, meta


def load_model(path: str | os.PathLike, dtype=None) -> tuple[MLP, dict]:
    """Rebuild the network stored in ``path``; returns (model, metadata)."""
    weights, biases, meta = read_model_record(path)
    dtype = dtype or DTYPES.get(meta.get("dtype"), np.float32)
    model = MLP(meta["sizes"], meta["loss"], weights=weights, biases=biases, dtype=dtype,
                activation=meta["activation"])
    return model, meta


#: A class name longer than this is not one a model file may carry (the loader's limit too).
MAX_CLASS_NAME = 64


def _check_classes(meta: dict, path: Path) -> None:
    """What a model says of its classes is what every reader trusts: one printable name per output, its
    label values increasing integers, its image size two positive sides."""
    n_outputs = meta["sizes"][-1]
    names = meta.get("class_names")
    if names is not None and not (
            isinstance(names, list) and len(names) == n_outputs and len(set(names)) == n_outputs
            and all(isinstance(n, str) and n.strip() and n.isprintable() and len(n) <= MAX_CLASS_NAME
                    for n in names)):
        raise ModelFileError(f"{path}: the model metadata's class_names are not {n_outputs} different names")
    values = meta.get("label_values")
    if values is not None and not (
            isinstance(values, list) and len(values) == n_outputs
            and all(isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**63 for v in values)
            and all(a < b for a, b in zip(values, values[1:]))):
        raise ModelFileError(f"{path}: the model metadata's label_values are not {n_outputs} increasing integers")
    size = meta.get("image_size")
    if size is not None and not (
            isinstance(size, list) and len(size) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size)
            and size[0] * size[1] == meta["sizes"][0]):
        raise ModelFileError(f"{path}: the model metadata's image_size does not match its {meta['sizes'][0]} inputs")


def class_names(meta: dict, n_outputs: int) -> list[str]:
    """The names of a model's classes: its metadata's ``class_names``, else the output numbers."""
    names = meta.get("class_names") if meta else None
    return list(names) if isinstance(names, list) and len(names) == n_outputs else [str(i) for i in range(n_outputs)]


def label_values(meta: dict, n_outputs: int) -> list[int]:
    """The label each output stands for in the data: its metadata's ``label_values``, else 0..n-1."""
    values = meta.get("label_values") if meta else None
    return list(values) if isinstance(values, list) and len(values) == n_outputs else list(range(n_outputs))
