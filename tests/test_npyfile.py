"""Reading a .npy header without its data, and the size check every .npy reader runs before np.load."""

from __future__ import annotations

import os

import numpy as np
import pytest

from bptrain.core.errors import DataError
from bptrain.data.npyfile import check_npy_size, format_bytes, read_npy_header


def test_format_bytes():
    assert [format_bytes(n) for n in (0, 999, 1000, 1234, 4 * 10**11, 10**18)] == \
        ["0 bytes", "999 bytes", "1.0 KB", "1.2 KB", "400.0 GB", "1000.0 PB"]


def test_header_of_a_real_file(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 4), np.float32))
    header = read_npy_header(tmp_path / "a.npy")
    assert header.shape == (3, 4) and header.dtype == np.float32 and header.data_bytes == 48
    assert header.data_offset + header.data_bytes == (tmp_path / "a.npy").stat().st_size
    assert check_npy_size(tmp_path / "a.npy", DataError) == header


def test_what_cannot_be_parsed_is_left_to_np_load(tmp_path):
    (tmp_path / "text.npy").write_text("hello")
    assert read_npy_header(tmp_path / "text.npy") is None
    assert read_npy_header(tmp_path / "absent.npy") is None
    np.save(tmp_path / "objects.npy", np.array([None, {}], dtype=object), allow_pickle=True)
    assert check_npy_size(tmp_path / "objects.npy", DataError).dtype.hasobject  # a pickle: length unknown


def test_one_byte_short_is_truncated(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(10, dtype=np.int64))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataError, match=r"truncated or corrupt: its header claims 208 bytes \(shape \(10,\) int64\) "
                                        r"but the file holds 207 bytes"):
        check_npy_size(path, DataError)


# ------------------------------------------------------------------ one refusal, every caller
def _model_reader(path):
    from bptrain.data.model_io import load_model

    return load_model(path)


def _images_reader(path):
    from bptrain.app.inputs import read_images

    return read_images(path)


def _pickled(path):
    np.save(path, np.array([{"W1": np.zeros(3)}], dtype=object), allow_pickle=True)


def _lying(path):
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (100000, 1000000)})
        handle.write(bytes(1000))


def _cut(path):
    np.save(path, np.zeros((50, 784), np.float32))
    path.write_bytes(path.read_bytes()[:5000])


def _fifo(path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("FIFOs are a POSIX thing")
    os.mkfifo(path)


@pytest.mark.parametrize("reader", [_model_reader, _images_reader], ids=["model file", "images array"])
@pytest.mark.parametrize("make, phrase", [
    (_pickled, "needs pickle to load; bptrain refuses such files"),
    (_lying, "is truncated or corrupt: its header claims 400.0 GB"),
    (_cut, "is truncated or corrupt: its header claims"),
    (_fifo, "is a FIFO (named pipe), not a regular file"),
], ids=["pickled", "lying header", "cut short", "fifo"])
def test_every_npy_reader_refuses_each_case_in_one_line(tmp_path, monkeypatch, reader, make, phrase):
    """load_npy is the one place .npy files a user gave are loaded: both readers go through it."""
    from bptrain.core.errors import BptrainError

    path = tmp_path / "given.npy"
    make(path)
    monkeypatch.setattr(np, "load", _counting(np.load))
    with pytest.raises(BptrainError) as caught:
        reader(path)
    assert phrase in str(caught.value) and "\n" not in str(caught.value)
    assert np.load.calls == (1 if make is _pickled else 0)  # a lying or cut header is never handed to np.load


@pytest.mark.parametrize("reader, advice", [(_model_reader, ""), (_images_reader, "; split the images")],
                         ids=["model file", "images array"])
def test_every_npy_reader_says_out_of_memory_for_a_true_header(tmp_path, monkeypatch, reader, advice):
    from bptrain.core.errors import BptrainError
    from bptrain.data.model_io import save_model
    from bptrain.core.network import MLP

    path = tmp_path / "given.npy"
    if reader is _model_reader:
        save_model(MLP((4, 3, 2), seed=1), path)
    else:
        np.save(path, np.zeros((3, 784), np.uint8))

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate")

    monkeypatch.setattr(np, "load", out_of_memory)
    with pytest.raises(BptrainError, match=f"does not fit in memory{advice}"):
        reader(path)


def _counting(function):
    def counted(*args, **kwargs):
        counted.calls += 1
        return function(*args, **kwargs)

    counted.calls = 0
    return counted
