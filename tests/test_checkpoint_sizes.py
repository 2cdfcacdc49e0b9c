"""Sizes a checkpoint claims are checked against the file before anything is allocated: a header that
claims terabytes is a corrupt file, not "out of memory"; a member that inflates is refused before it does."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import numpy as np
import pytest

from bptrain.app import checkpoints
from bptrain.data.checkpoint_io import CheckpointError

from conftest import assert_clean_error, invoke
from test_checkpoints import _stop_after

INFLATED = 512 * 2**20  # what the member inflates to


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _write(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)


def _stopped(runner, tmp_path, synthetic_data):
    _stop_after(runner, tmp_path, synthetic_data, tmp_path / "m.npy", epochs=6, k=2)
    return _members(tmp_path / "m.checkpoint.npz")


def test_a_header_that_claims_terabytes_is_a_corrupt_file(runner, tmp_path, synthetic_data):
    members = _stopped(runner, tmp_path, synthetic_data)
    array = np.load(io.BytesIO(members["a0.npy"]))
    huge = io.BytesIO()
    np.lib.format.write_array_header_1_0(huge, {"descr": array.dtype.str, "fortran_order": False,
                                                "shape": (2**20, 2**26)})  # 400 TB of float32
    members["a0.npy"] = huge.getvalue() + array.tobytes()
    forged = tmp_path / "huge.checkpoint.npz"
    _write(forged, members)
    line = assert_clean_error(invoke(runner, "train", "--resume", forged, "--out", tmp_path / "h.npy"), exit_code=1)
    assert "truncated or corrupt" in line and "claims" in line and "memory" not in line, line


def test_a_member_that_inflates_is_refused_before_it_fills_the_memory(runner, tmp_path, synthetic_data):
    members = _stopped(runner, tmp_path, synthetic_data)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (INFLATED // 4,)})
    bomb = tmp_path / "bomb.checkpoint.npz"
    # a zip whose a0 is 1 MB on disk and 512 MiB inflated
    with zipfile.ZipFile(bomb, "w") as archive:
        for name, payload in members.items():
            if name != "a0.npy":
                archive.writestr(name, payload)
        info = zipfile.ZipInfo("a0.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as member:
            member.write(header.getvalue())
            zeros = bytes(2**20)
            for _ in range(INFLATED // len(zeros)):
                member.write(zeros)
    assert bomb.stat().st_size < 4 * 2**20
    tracemalloc.start()  # NumPy's arrays are traced too (and a child's ru_maxrss would count its parent's)
    try:
        with pytest.raises(CheckpointError) as refused:
            checkpoints.read(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "bomb.checkpoint.npz" in str(refused.value)
    assert peak < INFLATED // 4, f"peak {peak >> 20} MiB reading a {INFLATED >> 20} MiB bomb"
