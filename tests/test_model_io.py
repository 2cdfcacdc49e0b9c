"""Model files: a single pickle-free .npy record, round trip, atomic writes, every broken file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from bptrain.core.errors import BptrainError, ModelFileError
from bptrain.data.model_io import FORMAT_NAME, FORMAT_VERSION, format_version_for, load_model, save_model
from bptrain.core.network import MLP

from conftest import one_line_error


@pytest.fixture
def model():
    return MLP((6, 5, 4, 3), "mse", seed=3)


@pytest.fixture
def saved(tmp_path, model) -> Path:
    return save_model(model, tmp_path / "model.npy", {"note": "hello", "val_accuracy": 0.5})


def record_bytes_of(layers: dict, meta: dict | bytes) -> np.ndarray:
    """A hand-built model record: one field per array in ``layers`` plus ``meta``."""
    meta_bytes = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    fields = [(name, array.dtype.str, array.shape) for name, array in layers.items()]
    fields.append(("meta", f"S{max(len(meta_bytes), 1)}"))
    record = np.zeros((), dtype=np.dtype(fields))
    for name, array in layers.items():
        record[name] = array
    record["meta"] = meta_bytes
    return record


def good_meta(**changes):
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "sizes": [4, 3, 2], "loss": "ce",
            "dtype": "float32"}
    meta.update(changes)
    return meta


def good_layers(**changes):
    layers = {"W1": np.zeros((4, 3), np.float32), "b1": np.zeros(3, np.float32),
              "W2": np.zeros((3, 2), np.float32), "b2": np.zeros(2, np.float32)}
    layers.update(changes)
    return {k: v for k, v in layers.items() if v is not None}


def write_record(path: Path, layers: dict, meta) -> Path:
    np.save(path, record_bytes_of(layers, meta), allow_pickle=False)
    return path


def model_error(path) -> str:
    message = one_line_error(ModelFileError, load_model, path)
    assert str(path) in message
    return message


# ====================================================================== round trip
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_round_trip(tmp_path, loss, dtype):
    model = MLP((7, 5, 4, 3), loss, dtype=dtype, seed=1)
    path = save_model(model, tmp_path / "m.npy", {"settings": {"lr": 0.1}, "best_epoch": 3})
    loaded, meta = load_model(path)
    assert loaded.sizes == model.sizes and loaded.loss == loss and loaded.dtype == np.dtype(dtype)
    for a, b in zip(model.weights + model.biases, loaded.weights + loaded.biases):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert meta["settings"] == {"lr": 0.1} and meta["best_epoch"] == 3
    assert meta["format"] == FORMAT_NAME and meta["format_version"] == format_version_for("sigmoid") == 1
    assert meta["sizes"] == [7, 5, 4, 3] and meta["loss"] == loss
    x = np.random.default_rng(0).uniform(size=(9, 7))
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_load_model_in_another_dtype(saved, model):
    loaded, _ = load_model(saved, dtype=np.float64)
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded.weights[0], model.weights[0].astype(np.float64))


def test_np_load_without_pickle_opens_it(saved, model):
    record = np.load(saved, allow_pickle=False)
    assert record.shape == ()
    assert set(record.dtype.names) == {"W1", "b1", "W2", "b2", "W3", "b3", "meta"}
    np.testing.assert_array_equal(record["W2"], model.weights[1])
    meta = json.loads(bytes(record["meta"]).decode())
    assert meta["note"] == "hello" and meta["sizes"] == [6, 5, 4, 3]
    assert saved.read_bytes()[:6] == b"\x93NUMPY"


def test_same_model_same_bytes(tmp_path, model):
    a = save_model(model, tmp_path / "a.npy", {"x": 1})
    b = save_model(MLP((6, 5, 4, 3), "mse", seed=3), tmp_path / "b.npy", {"x": 1})
    assert a.read_bytes() == b.read_bytes()
    c = save_model(MLP((6, 5, 4, 3), "mse", seed=4), tmp_path / "c.npy", {"x": 1})
    assert a.read_bytes() != c.read_bytes()


def test_saved_file_has_ordinary_permissions(saved):
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o666 & ~umask


def test_save_overwrites_and_leaves_no_temp_files(tmp_path, model):
    path = tmp_path / "m.npy"
    save_model(MLP((6, 3), seed=0), path)
    save_model(model, path)
    assert load_model(path)[0].sizes == model.sizes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy"]


# ====================================================================== atomic write
class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_interrupted_save_keeps_the_old_file_and_leaves_nothing(tmp_path, saved, monkeypatch, error):
    before = saved.read_bytes()
    real_save = np.save

    def half_save(handle, array, *args, **kwargs):
        handle.write(b"\x93NUMPY\x01\x00partial")  # a few bytes, then the crash
        handle.flush()
        raise error("disk on fire")

    monkeypatch.setattr(np, "save", half_save)
    with pytest.raises(error):
        save_model(MLP((6, 2), seed=9), saved)
    monkeypatch.setattr(np, "save", real_save)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [saved.name]
    load_model(saved)


def test_interrupted_first_save_creates_nothing(tmp_path, model, monkeypatch):
    def failing_save(handle, array, *args, **kwargs):
        handle.write(b"\x93NUMPY")
        raise Boom("no")

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(Boom):
        save_model(model, tmp_path / "new.npy")
    assert list(tmp_path.iterdir()) == []


# ====================================================================== broken files
def test_missing(tmp_path):
    assert "no model file" in model_error(tmp_path / "missing.npy")


def test_directory(tmp_path):
    (tmp_path / "dir.npy").mkdir()
    assert "is a directory" in model_error(tmp_path / "dir.npy")


def test_empty(tmp_path):
    path = tmp_path / "empty.npy"
    path.write_bytes(b"")
    assert "is empty" in model_error(path)


def test_text_file(tmp_path):
    path = tmp_path / "model.npy"
    path.write_text("W1 = [[1, 2], [3, 4]]\n")
    message = model_error(path)
    assert "not a .npy file" in message
    assert "pickle" not in message  # a text file is not a pickle: say what it is not


def test_npy_that_needs_pickle(tmp_path):
    path = tmp_path / "object.npy"
    np.save(path, np.array([{"W1": np.zeros(3)}], dtype=object), allow_pickle=True)
    assert "needs pickle" in model_error(path)


def test_a_pickle_is_not_loaded(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch '{marker}'",)

    path = tmp_path / "evil.npy"
    path.write_bytes(pickle.dumps(Evil()))
    model_error(path)
    assert not marker.exists()


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.05], ids=["half", "most", "header-cut"])
def test_truncated(tmp_path, saved, keep):
    raw = saved.read_bytes()
    path = tmp_path / "cut.npy"
    path.write_bytes(raw[: int(len(raw) * keep)])
    message = model_error(path)
    assert "not a readable .npy model file" in message or "truncated" in message


def test_plain_float_npy(tmp_path):
    path = tmp_path / "floats.npy"
    np.save(path, np.zeros((4, 3)))
    assert "not a bptrain model (no metadata record)" in model_error(path)


def test_structured_array_with_many_records(tmp_path):
    path = tmp_path / "many.npy"
    record = record_bytes_of(good_layers(), good_meta())
    np.save(path, np.stack([record, record]))
    assert "expected one record" in model_error(path)


def test_good_hand_built_record_loads(tmp_path):
    """The reference point for the broken records below: this one is fine."""
    path = write_record(tmp_path / "ok.npy", good_layers(W2=np.ones((3, 2), np.float32)), good_meta())
    loaded, meta = load_model(path)
    assert loaded.sizes == (4, 3, 2) and loaded.loss == "ce"
    np.testing.assert_array_equal(loaded.weights[1], np.ones((3, 2)))


def test_missing_layer(tmp_path):
    path = write_record(tmp_path / "m.npy", good_layers(W2=None, b2=None), good_meta())
    assert "layer 2 is missing" in model_error(path)


def test_missing_bias(tmp_path):
    path = write_record(tmp_path / "m.npy", good_layers(b1=None), good_meta())
    assert "layer 1 is missing (b1" in model_error(path)


def test_mismatched_shapes(tmp_path):
    path = write_record(tmp_path / "m.npy", good_layers(W2=np.zeros((2, 3), np.float32)), good_meta())
    message = model_error(path)
    assert "W2 has shape (2, 3), expected (3, 2)" in message


def test_sizes_disagree_with_arrays(tmp_path):
    path = write_record(tmp_path / "m.npy", good_layers(), good_meta(sizes=[5, 3, 2]))
    assert "W1 has shape (4, 3), expected (5, 3)" in model_error(path)


def test_future_format_version(tmp_path):
    path = write_record(tmp_path / "m.npy", good_layers(), good_meta(format_version=FORMAT_VERSION + 1))
    message = model_error(path)
    assert f"format version {FORMAT_VERSION + 1}" in message and "upgrade bptrain" in message


def test_not_our_format(tmp_path):
    path = write_record(tmp_path / "m.npy", good_layers(), good_meta(format="keras"))
    assert "not a bptrain model" in model_error(path)


def test_metadata_not_json(tmp_path):
    path = write_record(tmp_path / "m.npy", good_layers(), b"\xff{not json")
    assert "metadata is not valid JSON" in model_error(path)


@pytest.mark.parametrize("sizes", [[4], [4, "3", 2], [4, 0, 2], "4,3,2", None])
def test_invalid_sizes_in_metadata(tmp_path, sizes):
    path = write_record(tmp_path / "m.npy", good_layers(), good_meta(sizes=sizes))
    assert "invalid layer sizes" in model_error(path)


def test_unknown_loss(tmp_path):
    path = write_record(tmp_path / "m.npy", good_layers(), good_meta(loss="hinge"))
    assert "unknown loss 'hinge'" in model_error(path)


@pytest.mark.parametrize("bad", [np.full((4, 3), np.nan, np.float32), np.zeros((4, 3), np.int32)],
                         ids=["nan", "int"])
def test_non_finite_or_non_float_weights(tmp_path, bad):
    path = write_record(tmp_path / "m.npy", good_layers(W1=bad), good_meta())
    assert "non-finite or non-float" in model_error(path)


def test_model_errors_are_bptrain_errors(tmp_path):
    with pytest.raises(BptrainError):
        load_model(tmp_path / "nothing.npy")


# ====================================================================== a header that lies about the size
def lying_npy(path: Path, dtype, shape) -> Path:
    """A .npy file of 1 KB whose header claims an array of ``shape`` and ``dtype``."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(bytes(1000))
    return path


@pytest.fixture
def no_np_load(monkeypatch):
    """np.load must not even be called: it would try to allocate what the header claims."""
    def refuse(*args, **kwargs):
        raise AssertionError("np.load was called on a file whose header lies")

    monkeypatch.setattr(np, "load", refuse)


@pytest.mark.parametrize("dtype, shape, claim", [
    (np.float32, (100000, 1000000), "400.0 GB"),
    ([("W1", "<f4", (784, 10**5)), ("b1", "<f4", (10**5,)), ("meta", "S100")], (), "314.0 MB"),
])
def test_a_header_claiming_more_than_the_file_holds_is_a_corrupt_file(tmp_path, no_np_load, dtype, shape, claim):
    path = lying_npy(tmp_path / "model.npy", dtype, shape)
    message = one_line_error(ModelFileError, load_model, path)
    assert message.startswith(f"model file {path} is truncated or corrupt: its header claims {claim}")
    assert " KB" in message.split("but the file holds")[1] and "memory" not in message


def test_a_complete_file_too_big_for_memory_is_called_that(saved, monkeypatch):
    """The header told the truth: then running out of memory is the machine's limit, not a broken file."""
    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate")

    monkeypatch.setattr(np, "load", out_of_memory)
    message = one_line_error(ModelFileError, load_model, saved)
    assert message == f"model file {saved} ({saved.stat().st_size} bytes) does not fit in memory"
