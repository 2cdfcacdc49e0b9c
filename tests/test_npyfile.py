"""Reading a .npy header without its data, and the size check every .npy reader runs before np.load."""

from __future__ import annotations

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
