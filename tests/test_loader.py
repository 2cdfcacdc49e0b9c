"""The pickle loader: the classic Python 2 file, Python 3 pickles, every bad input, hostile pickles."""

from __future__ import annotations

import os
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest

from bptrain.core.errors import BptrainError, DataError
from bptrain.data.loader import DEFAULT_DATA_PATH, Dataset, Split, load_dataset, resolve_data_path

from conftest import make_blobs, py2_array_header, py2_array_opcodes, py2_pickle_bytes, write_gz, write_py2_pickle


def assert_same_splits(dataset: Dataset, splits):
    assert isinstance(dataset, Dataset)
    for got, (x, y) in zip((dataset.train, dataset.validation, dataset.test), splits):
        assert isinstance(got, Split)
        assert got.x.dtype == np.float32 and got.y.dtype == np.int64
        assert got.x.flags.c_contiguous
        np.testing.assert_array_equal(got.x, x.astype(np.float32))
        np.testing.assert_array_equal(got.y, y)


def load_error(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "messages are one line"
    return message


# ====================================================================== good files
def test_python2_style_pickle_needs_latin1_and_loads(tmp_path, blobs):
    raw = py2_pickle_bytes(blobs)
    # it really is a Python 2 pickle: str payloads that only latin1 can turn back into bytes
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(raw)
    ops = {op.name for op, _, _ in pickletools.genops(raw)}
    assert {"PROTO", "GLOBAL", "BINSTRING", "SHORT_BINSTRING", "REDUCE", "BUILD", "NEWFALSE"} <= ops
    assert not ops & {"BINBYTES", "SHORT_BINBYTES", "BINUNICODE", "FRAME", "STACK_GLOBAL"}
    assert b"numpy.core.multiarray\n_reconstruct\n" in raw

    path = write_py2_pickle(tmp_path / "mnist.pkl.gz", blobs)
    dataset = load_dataset(path)
    assert_same_splits(dataset, blobs)
    assert dataset.n_features == 20 and dataset.n_classes == 3
    assert dataset.source == str(path)
    assert [len(s.x) for s in (dataset.train, dataset.validation, dataset.test)] == [600, 150, 150]


def test_python2_style_array_opcodes_match_the_classic_file_header():
    """The first bytes of the real mnist.pkl.gz, as shown by pickletools (no real data needed)."""
    header = py2_array_header((50000, 784), np.float32) + pickle.BINSTRING
    assert header == (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
        b"(K\x01(JP\xc3\x00\x00J\x10\x03\x00\x00tcnumpy\ndtype\nU\x02f4K\x00K\x01\x87R"
        b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T"
    )


@pytest.mark.parametrize("protocol", [2, 5])
def test_python3_pickle_loads(tmp_path, blobs, protocol):
    path = write_gz(tmp_path / "py3.pkl.gz", pickle.dumps(blobs, protocol=protocol))
    assert_same_splits(load_dataset(path), blobs)


def test_lists_other_dtypes_and_tiny_arrays_are_accepted_and_normalised(tmp_path):
    x = np.array([[0.0, 0.5], [1.0, 0.25]])  # float64 -> float32
    y = np.array([0, 1], np.uint8)            # uint8 -> int64
    splits = [(x, y), (x[:1], y[:1]), (x.astype(np.int32), y.astype(np.int16))]
    dataset = load_dataset(write_gz(tmp_path / "d.pkl.gz", pickle.dumps(splits, protocol=4)))
    for split in dataset:
        if isinstance(split, Split):
            assert split.x.dtype == np.float32 and split.y.dtype == np.int64
    assert dataset.n_classes == 2
    assert dataset.split("validation").x.shape == (1, 2)
    with pytest.raises(DataError, match="unknown split"):
        dataset.split("dev")


def test_labels_within_n_classes_pass(tmp_path, blobs):
    path = write_py2_pickle(tmp_path / "d.pkl.gz", blobs)
    assert load_dataset(path, n_classes=3).n_classes == 3
    assert load_dataset(path, n_classes=10).n_classes == 3


# ====================================================================== where the data is looked for
def test_default_path_is_data_mnist_relative_to_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_data_path() == Path("data") / "mnist.pkl.gz" == DEFAULT_DATA_PATH
    (tmp_path / "data").mkdir()
    splits = make_blobs(n_train=30, n_validation=9, n_test=9, n_features=5)
    write_py2_pickle(tmp_path / "data" / "mnist.pkl.gz", splits)
    dataset = load_dataset()
    assert dataset.n_features == 5
    assert Path(dataset.source) == Path("data/mnist.pkl.gz")


def test_env_var_overrides_default_and_explicit_path_overrides_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    write_py2_pickle(tmp_path / "data" / "mnist.pkl.gz", make_blobs(30, 9, 9, n_features=5))
    env_file = write_py2_pickle(tmp_path / "env.pkl.gz", make_blobs(30, 9, 9, n_features=7))
    explicit = write_py2_pickle(tmp_path / "explicit.pkl.gz", make_blobs(30, 9, 9, n_features=9))

    monkeypatch.setenv("BPTRAIN_DATA", str(env_file))
    assert resolve_data_path() == env_file
    assert load_dataset().n_features == 7
    assert load_dataset(explicit).n_features == 9

    monkeypatch.setenv("BPTRAIN_DATA", "")  # empty means unset
    assert load_dataset().n_features == 5


def test_missing_default_file_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = load_error(None)
    assert str(Path("data") / "mnist.pkl.gz") in message
    assert str(tmp_path) in message  # relative to which directory
    assert "bptrain download" in message
    assert "BPTRAIN_DATA" in message


def test_missing_env_file_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BPTRAIN_DATA", str(tmp_path / "nowhere.pkl.gz"))
    message = load_error(None)
    assert "nowhere.pkl.gz" in message and "bptrain download" in message


def test_missing_explicit_file(tmp_path):
    message = load_error(tmp_path / "missing.pkl.gz")
    assert f"no data at {tmp_path / 'missing.pkl.gz'}" in message
    assert "bptrain download" in message


# ====================================================================== bad files
def test_empty_file(tmp_path):
    path = tmp_path / "empty.pkl.gz"
    path.write_bytes(b"")
    assert "is empty" in load_error(path)


def test_not_gzip(tmp_path, blobs):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps(blobs, protocol=2))  # a good pickle, but not compressed
    assert "not a gzip file" in load_error(path)
    text = tmp_path / "notes.txt"
    text.write_text("hello, I am not data\n")
    message = load_error(text)
    assert "none of the data formats" in message and "a .csv with a label column" in message


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_truncated_gzip(tmp_path, synthetic_data, keep):
    raw = synthetic_data.read_bytes()
    path = tmp_path / "cut.pkl.gz"
    path.write_bytes(raw[: int(len(raw) * keep)])
    message = load_error(path)
    assert "truncated or corrupt" in message
    assert str(path) in message


def test_corrupt_gzip_body(tmp_path, synthetic_data):
    raw = bytearray(synthetic_data.read_bytes())
    raw[200:400] = bytes(200)
    path = tmp_path / "bad.pkl.gz"
    path.write_bytes(bytes(raw))
    assert "truncated or corrupt" in load_error(path)


@pytest.mark.parametrize("seed", range(4))
def test_gzip_of_random_bytes(tmp_path, seed):
    path = write_gz(tmp_path / "random.pkl.gz", np.random.default_rng(seed).bytes(5000))
    message = load_error(path)
    assert "not a readable pickle" in message or "truncated or corrupt" in message


def test_gzip_of_truncated_pickle(tmp_path, blobs):
    raw = py2_pickle_bytes(blobs)
    path = write_gz(tmp_path / "short.pkl.gz", raw[: len(raw) // 2])
    message = load_error(path)
    assert "truncated or corrupt" in message or "not a readable pickle" in message


def bad_structure(tmp_path, splits, protocol=2) -> str:
    return load_error(write_gz(tmp_path / "bad.pkl.gz", pickle.dumps(splits, protocol=protocol)))


def good(**changes):
    """The three default synthetic splits as mutable [x, y] lists, with ``changes`` applied."""
    splits = [list(s) for s in make_blobs(n_train=60, n_validation=15, n_test=15)]
    for key, value in changes.items():
        name, part = key.split("_")
        splits[("train", "validation", "test").index(name)][("x", "y").index(part)] = value
    return [tuple(s) for s in splits]


def test_two_splits(tmp_path):
    assert "expected 3 splits" in bad_structure(tmp_path, good()[:2])
    assert "found a tuple of 2 items" in bad_structure(tmp_path, tuple(good()[:2]))


def test_python2_style_pickle_with_two_splits(tmp_path, blobs):
    message = load_error(write_py2_pickle(tmp_path / "two.pkl.gz", blobs[:2]))
    assert "expected 3 splits" in message


def test_not_a_tuple(tmp_path):
    assert "expected 3 splits" in bad_structure(tmp_path, {"train": 1})
    assert "expected 3 splits" in bad_structure(tmp_path, np.zeros((3, 2)))


def test_split_not_a_pair(tmp_path):
    splits = good()
    splits[1] = splits[1] + (np.zeros(3),)
    assert "validation split must be a pair" in bad_structure(tmp_path, splits)


def test_split_not_arrays(tmp_path):
    splits = good()
    splits[0] = (splits[0][0].tolist(), splits[0][1])
    assert "must hold numpy arrays" in bad_structure(tmp_path, splits)


def test_x_one_dimensional(tmp_path):
    message = bad_structure(tmp_path, good(test_x=np.zeros(15, np.float32)))
    assert "test x must be 2-D" in message and "(15,)" in message


def test_y_two_dimensional(tmp_path):
    assert "train y must be 1-D" in bad_structure(tmp_path, good(train_y=np.zeros((60, 1), np.int64)))


def test_widths_differ_between_splits(tmp_path):
    message = bad_structure(tmp_path, good(validation_x=np.zeros((15, 19), np.float32)))
    assert "validation images have 19 features but train images have 20" in message


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_pixels(tmp_path, value):
    x = make_blobs(n_train=60, n_validation=15, n_test=15)[2][0].copy()
    x[3, 4] = value
    assert "test x contains NaN or infinite values" in bad_structure(tmp_path, good(test_x=x))


@pytest.mark.filterwarnings("error")  # no RuntimeWarning from the cast on the way to the clean error
def test_float64_pixels_that_overflow_float32_are_not_finite(tmp_path):
    x = np.full((15, 20), 1e300)
    assert "NaN or infinite" in bad_structure(tmp_path, good(test_x=x))


def test_labels_out_of_range(tmp_path):
    y = np.zeros(60, np.int64)
    y[7] = 10
    path = write_gz(tmp_path / "bad.pkl.gz", pickle.dumps(good(train_y=y), protocol=2))
    message = load_error(path, n_classes=10)
    assert "label 10, outside 0..9" in message and "train" in message


def test_negative_labels(tmp_path):
    y = np.zeros(15, np.int64)
    y[0] = -1
    assert "negative label (-1)" in bad_structure(tmp_path, good(validation_y=y))


def test_float_labels(tmp_path):
    assert "labels must be integers" in bad_structure(tmp_path, good(test_y=np.zeros(15, np.float64)))


def test_non_numeric_pixels(tmp_path):
    assert "only bools, integers and floats" in bad_structure(tmp_path, good(test_x=np.full((15, 20), "a")))


def test_length_mismatch(tmp_path):
    message = bad_structure(tmp_path, good(train_y=np.zeros(59, np.int64)))
    assert "train has 60 images but 59 labels" in message


def test_empty_split(tmp_path):
    splits = good(test_x=np.zeros((0, 20), np.float32), test_y=np.zeros(0, np.int64))
    assert "test split is empty" in bad_structure(tmp_path, splits, protocol=4)


def test_errors_are_bptrain_errors(tmp_path):
    with pytest.raises(BptrainError):
        load_dataset(tmp_path / "nope.pkl.gz")


# ====================================================================== hostile pickles
def reduce_call(module: str, name: str, argument: str) -> bytes:
    """Protocol 2 opcodes for ``module.name(argument)``: GLOBAL, the argument, TUPLE1, REDUCE."""
    arg = argument.encode("utf-8")
    return (pickle.GLOBAL + f"{module}\n{name}\n".encode() + pickle.BINUNICODE + len(arg).to_bytes(4, "little")
            + arg + pickle.TUPLE1 + pickle.REDUCE)


def os_system_payload(marker: Path) -> bytes:
    return pickle.PROTO + b"\x02" + reduce_call("os", "system", f"touch '{marker}'") + pickle.STOP


def eval_payload(marker: Path, module="builtins") -> bytes:
    return (pickle.PROTO + b"\x02" + reduce_call(module, "eval", f"open({str(marker)!r}, 'w').close()")
            + pickle.STOP)


def test_the_payloads_are_real(tmp_path):
    """Control: unrestricted pickle.loads does run them (so their refusal below means something)."""
    for make in (os_system_payload, eval_payload):
        marker = tmp_path / f"control-{make.__name__}"
        pickle.loads(make(marker))
        assert marker.exists()


@pytest.mark.parametrize("payload, named", [
    (os_system_payload, "os.system"),
    (eval_payload, "builtins.eval"),
    (lambda m: eval_payload(m, "__builtin__"), "__builtin__.eval"),
], ids=["os.system", "builtins.eval", "__builtin__.eval"])
def test_malicious_pickle_is_refused_without_running(tmp_path, payload, named):
    marker = tmp_path / "pwned"
    path = write_gz(tmp_path / "evil.pkl.gz", payload(marker))
    message = load_error(path)
    assert "refusing to load" in message and named in message
    assert not marker.exists(), "the payload ran"


def test_payload_hidden_after_real_arrays_is_refused(tmp_path, blobs):
    """A file that starts like mnist.pkl.gz and calls os.system in its last split."""
    marker = tmp_path / "pwned"
    (x0, y0), (x1, y1), (x2, _) = blobs
    raw = (pickle.PROTO + b"\x02"
           + py2_array_opcodes(x0) + py2_array_opcodes(y0) + pickle.TUPLE2
           + py2_array_opcodes(x1) + py2_array_opcodes(y1) + pickle.TUPLE2
           + py2_array_opcodes(x2) + reduce_call("os", "system", f"touch '{marker}'") + pickle.TUPLE2
           + pickle.TUPLE3 + pickle.STOP)
    message = load_error(write_gz(tmp_path / "evil.pkl.gz", raw))
    assert "refusing to load" in message and "os.system" in message
    assert not marker.exists()


def test_pickle_of_a_python_object_is_refused(tmp_path):
    """Even harmless classes are refused: only numpy array reconstruction may be named."""
    import collections

    splits = collections.OrderedDict(a=1)
    message = load_error(write_gz(tmp_path / "obj.pkl.gz", pickle.dumps(splits, protocol=2)))
    assert "refusing to load" in message and "collections.OrderedDict" in message


def test_posix_system_via_reduce_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch '{marker}'",)

    raw = pickle.dumps(Evil(), protocol=2)  # names posix.system on Linux
    message = load_error(write_gz(tmp_path / "evil.pkl.gz", raw))
    assert "refusing to load" in message
    assert not marker.exists()
