"""`bptrain export`: the ONNX graph gives bptrain's own probabilities under ONNX's reference implementation and
onnxruntime, passes onnx's full check, and a bad input writes nothing."""

from __future__ import annotations

import errno
import signal
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx.reference import ReferenceEvaluator

from bptrain import MLP, save_model
from bptrain.app import export_onnx as export
from bptrain.app.stopping import Stopped
from bptrain.core.committee import class_probabilities
from bptrain.core.errors import BptrainError, PathClash
from bptrain.core.training import TrainSettings
from bptrain.data.loader import Dataset, Split, load_dataset
from bptrain.engines import train

from conftest import assert_clean_error, invoke

TOLERANCE = 1e-5


def run_both(path, x):
    """The probabilities of ONNX's reference evaluator and of onnxruntime for the float32 rows ``x``."""
    model = onnx.load(str(path))
    reference = ReferenceEvaluator(model).run(None, {"pixels": x})[0]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    runtime = session.run(None, {"pixels": x})[0]
    return reference, runtime


def assert_same_predictions(path, model, x):
    expected = class_probabilities(model, x)
    for name, got in zip(("reference", "onnxruntime"), run_both(path, x)):
        assert got.dtype == np.float32 and got.shape == expected.shape, name
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE, err_msg=name)
        assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1)), name


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------ every kind of network
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("sizes", [(12, 4), (12, 7, 3), (16, 9, 8, 5), (9, 6, 5, 4, 2)])
def test_every_kind_of_network_gives_bptrains_probabilities(tmp_path, runner, sizes, activation, loss, dtype):
    seed = len(sizes) * 100 + ["sigmoid", "tanh", "relu"].index(activation) * 10 + (loss == "mse")
    # N(0, 1) weights and biases: outputs far from uniform, some units saturated
    model = MLP(sizes, loss, activation=activation, dtype=np.dtype(dtype), init="normal", seed=seed)
    save_model(model, tmp_path / "m.npy")
    result = invoke(runner, "export", tmp_path / "m.npy")
    assert result.exit_code == 0, result.output + result.stderr
    out = tmp_path / "m.onnx"
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    x = np.random.default_rng(seed).random((40, sizes[0]), dtype=np.float32)
    x[0] = 0.0
    x[1] = 1.0
    assert_same_predictions(out, model, x)


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")
def test_an_mse_network_whose_outputs_all_vanish_gives_zeros_as_bptrain_does(tmp_path):
    model = MLP((5, 4, 3), "mse", seed=0)
    model.biases[-1][:] = -200.0  # σ(-200) is 0 in float32: the sum is 0, bptrain's floor keeps it finite
    save_model(model, tmp_path / "m.npy")
    export.export_onnx(tmp_path / "m.npy", tmp_path / "m.onnx")
    x = np.random.default_rng(0).random((6, 5), dtype=np.float32)
    assert np.array_equal(class_probabilities(model, x), np.zeros((6, 3)))
    for got in run_both(tmp_path / "m.onnx", x):
        assert np.array_equal(got, np.zeros((6, 3), np.float32))


def test_an_empty_batch_gives_no_rows(tmp_path):
    save_model(MLP((5, 4, 3), "ce", seed=0), tmp_path / "m.npy")
    export.export_onnx(tmp_path / "m.npy", tmp_path / "m.onnx")
    for got in run_both(tmp_path / "m.onnx", np.zeros((0, 5), np.float32)):
        assert got.shape == (0, 3)


# ------------------------------------------------------------------ what the file says of itself
def test_the_graph_declares_its_input_output_opset_and_class_names(tmp_path):
    names = ["zero", "un", "deux,trois", "\"quoted\"", "ü ✓"]
    save_model(MLP((784, 8, 5), "ce", seed=0), tmp_path / "m.npy", {"class_names": names})
    export.export_onnx(tmp_path / "m.npy", tmp_path / "m.onnx")
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")][0] >= 17
    assert model.producer_name == "bptrain"
    (graph_input,) = model.graph.input
    assert graph_input.name == "pixels"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_value == 784
    (graph_output,) = model.graph.output
    assert graph_output.name == "probabilities"
    assert "0-1" in model.doc_string and "784" in model.doc_string and "pixels" in model.doc_string
    assert "0-1" in graph_input.doc_string and "28x28" in graph_input.doc_string
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["class_names"]) == names
    assert props["class_names"].isascii()
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert json.loads(session.get_modelmeta().custom_metadata_map["class_names"]) == names


def test_a_model_without_class_names_names_its_classes_by_number(tmp_path):
    save_model(MLP((6, 4, 3), "mse", seed=0), tmp_path / "m.npy")
    export.export_onnx(tmp_path / "m.npy", tmp_path / "m.onnx")
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(props["class_names"]) == ["0", "1", "2"]


def test_a_float64_model_takes_float32_pixels_and_computes_in_float64(tmp_path):
    save_model(MLP((6, 4, 3), "ce", seed=0, dtype=np.float64), tmp_path / "m.npy")
    export.export_onnx(tmp_path / "m.npy", tmp_path / "m.onnx")
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.node[0].op_type == "Cast"
    assert {t.data_type for t in model.graph.initializer} == {onnx.TensorProto.DOUBLE}


# ------------------------------------------------------------------ bad input writes nothing
def test_a_file_that_is_not_a_bptrain_model_is_one_line_and_writes_nothing(tmp_path, runner):
    (tmp_path / "notes.txt").write_text("hello\n")
    np.save(tmp_path / "array.npy", np.zeros((3, 4)))
    for name in ("notes.txt", "array.npy", "missing.npy"):
        before = files_in(tmp_path)
        result = invoke(runner, "export", tmp_path / name, "--out", tmp_path / "out.onnx")
        assert_clean_error(result)
        assert files_in(tmp_path) == before


def test_tampered_class_names_are_refused(tmp_path, runner):
    save_model(MLP((6, 4, 3), "ce", seed=0), tmp_path / "m.npy", {"class_names": ["a", "b"]})
    save_model(MLP((6, 4, 3), "ce", seed=0), tmp_path / "n.npy", {"class_names": "abc"})
    for name in ("m.npy", "n.npy"):  # the model reader's rule (bptrain.data.model_io), which every command follows
        assert "class_names are not 3 different names" in assert_clean_error(invoke(runner, "export", tmp_path / name))
    assert files_in(tmp_path) == ["m.npy", "n.npy"]


def test_an_existing_out_is_never_replaced(tmp_path, runner):
    save_model(MLP((6, 4, 3), "ce", seed=0), tmp_path / "m.npy")
    (tmp_path / "m.onnx").write_bytes(b"somebody's file")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling.onnx")
    (tmp_path / "folder").mkdir()
    for out in ("m.onnx", "dangling.onnx", "folder"):
        line = assert_clean_error(invoke(runner, "export", tmp_path / "m.npy", "--out", tmp_path / out))
        assert "already exists" in line
    assert (tmp_path / "m.onnx").read_bytes() == b"somebody's file"
    assert files_in(tmp_path) == ["dangling.onnx", "folder", "m.npy", "m.onnx"]
    assert not os.path.exists(tmp_path / "nowhere")


def test_an_out_that_is_the_model_itself_is_refused_however_it_is_spelled(tmp_path, runner, monkeypatch):
    save_model(MLP((6, 4, 3), "ce", seed=0), tmp_path / "m.npy")
    content = (tmp_path / "m.npy").read_bytes()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    for out in ("../m.npy", str(tmp_path / "m.npy")):
        line = assert_clean_error(invoke(runner, "export", "../m.npy", "--out", out))
        assert "is the model file itself" in line
    os.symlink(tmp_path / "m.npy", tmp_path / "link.npy")
    assert "is the model file itself" in assert_clean_error(
        invoke(runner, "export", tmp_path / "link.npy", "--out", tmp_path / "m.npy"))
    assert (tmp_path / "m.npy").read_bytes() == content
    assert files_in(tmp_path) == ["link.npy", "m.npy", "sub"] and files_in(tmp_path / "sub") == []


def test_a_model_too_big_for_one_onnx_file_is_one_line_and_writes_nothing(tmp_path, runner, monkeypatch):
    save_model(MLP((6, 4, 3), "ce", seed=0), tmp_path / "m.npy")
    monkeypatch.setattr(export, "MAX_WEIGHT_BYTES", 6 * 4 * 4)  # as if the weights passed protobuf's 2 GB
    assert "2 GB" in assert_clean_error(invoke(runner, "export", tmp_path / "m.npy"))
    assert files_in(tmp_path) == ["m.npy"]


def test_an_out_in_a_missing_folder_is_one_line(tmp_path, runner):
    save_model(MLP((6, 4, 3), "ce", seed=0), tmp_path / "m.npy")
    assert "does not exist" in assert_clean_error(
        invoke(runner, "export", tmp_path / "m.npy", "--out", tmp_path / "no" / "m.onnx"))


def test_a_file_that_appears_while_exporting_is_kept_and_no_temporary_file_stays(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"theirs")
    with pytest.raises(PathClash, match="appeared while exporting"):
        export.write_new_file(tmp_path / "m.onnx", b"ours")
    assert (tmp_path / "m.onnx").read_bytes() == b"theirs" and files_in(tmp_path) == ["m.onnx"]


def test_without_hard_links_the_name_is_still_claimed_exclusively(tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    export.write_new_file(tmp_path / "a.onnx", b"ours")
    assert (tmp_path / "a.onnx").read_bytes() == b"ours" and files_in(tmp_path) == ["a.onnx"]
    with pytest.raises(PathClash):
        export.write_new_file(tmp_path / "a.onnx", b"again")
    assert (tmp_path / "a.onnx").read_bytes() == b"ours" and files_in(tmp_path) == ["a.onnx"]


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export.write_new_file(tmp_path / "m.onnx", b"x" * 100_000)
    assert files_in(tmp_path) == []


def test_the_exported_file_is_readable_like_any_file(tmp_path):
    save_model(MLP((6, 4, 3), "ce", seed=0), tmp_path / "m.npy")
    export.export_onnx(tmp_path / "m.npy", tmp_path / "m.onnx")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "m.onnx").stat().st_mode & 0o777 == 0o666 & ~mask


def test_without_the_onnx_package_export_says_how_to_install_it(tmp_path, runner, monkeypatch):
    save_model(MLP((6, 4, 3), "ce", seed=0), tmp_path / "m.npy")
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    line = assert_clean_error(invoke(runner, "export", tmp_path / "m.npy"))
    assert "pip install 'bptrain[onnx]'" in line
    assert files_in(tmp_path) == ["m.npy"]
    with pytest.raises(BptrainError):
        export.require_onnx()


def test_the_command_line_does_not_load_onnx_until_an_export():
    code = "import sys, bptrain.app.commands; print('onnx' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_help_names_the_opset_and_the_input(runner):
    result = invoke(runner, "export", "--help")
    assert result.exit_code == 0 and "opset 17" in result.output and "0-1" in result.output
    assert export.OPSET == 17


# ------------------------------------------------------------------ the whole MNIST test set
@pytest.fixture(scope="module")
def mnist_model(real_mnist_path):
    """The default network (784-128-64-10, sigmoid, ce) after one epoch on 10,000 training images."""
    data = load_dataset(real_mnist_path)
    small = Dataset(Split(data.train.x[:10_000], data.train.y[:10_000]), data.validation, data.test, data.source)
    model = MLP((784, 128, 64, 10), "ce", seed=0)
    train(model, small, TrainSettings(epochs=1), progress=False)
    return model, data


def test_the_whole_mnist_test_set_gets_bptrains_probabilities(mnist_model, tmp_path):
    model, data = mnist_model
    save_model(model, tmp_path / "m.npy")
    export.export_onnx(tmp_path / "m.npy", tmp_path / "m.onnx")
    x = data.test.x
    assert len(x) == 10_000
    assert_same_predictions(tmp_path / "m.onnx", model, x)
    assert np.mean(model.predict(x) == data.test.y) > 0.85  # a trained network, not a blank one


def test_a_stop_signal_while_writing_leaves_nothing_and_says_so(tmp_path, runner, monkeypatch):
    save_model(MLP((6, 4, 3), "ce", seed=0), tmp_path / "m.npy")
    real_fsync = os.fsync

    def terminated(fd):
        real_fsync(fd)
        raise Stopped(signal.SIGTERM)  # what StopSignals raises when SIGTERM lands mid-write

    monkeypatch.setattr(os, "fsync", terminated)
    result = invoke(runner, "export", tmp_path / "m.npy")
    assert result.exit_code == 128 + signal.SIGTERM
    assert "terminated by SIGTERM" in result.stderr and "was not written" in result.stderr
    assert files_in(tmp_path) == ["m.npy"]
