"""A saved bptrain model as an ONNX graph, for onnxruntime and every other ONNX runtime.

The graph computes what ``bptrain predict`` reports, layer by layer as the core writes it::

    pixels (float32, batch x n_0)  -> Cast to float64 (float64 models only)
    Z_l = MatMul(A_{l-1}, W_l) + b_l,  A_l = Sigmoid / Tanh / Relu(Z_l)      hidden layers
    "ce":  probabilities = Softmax(Z_L)
    "mse": A_L = Sigmoid(Z_L), probabilities = A_L / max(Σ_j A_L,j, tiny)   (bptrain's normalisation)
    -> Cast to float32 (float64 models only)

It is built with ``onnx.helper`` and checked by ``onnx.checker`` (full check) before it is written.
The ``onnx`` package is an extra: only this module imports it, and only when an export is asked for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.errors import BptrainError, ModelFileError, PathClash
from ..core.network import MLP
from ..data.model_io import class_names, load_model, write_new
from .paths import same_file

#: The operator set the graph is written in: current enough for every op used, old enough for runtimes years old.
OPSET = 17
#: The IR version that goes with opset 17; a newer onnx would stamp its own, which older runtimes refuse.
IR_VERSION = 8
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
#: protobuf cannot serialise a message of 2 GiB or more; leave room for everything but the weights.
MAX_WEIGHT_BYTES = 2**31 - 2**24
MISSING_ONNX = "bptrain export needs the onnx package: pip install 'bptrain[onnx]'"
HIDDEN_OPS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}


def require_onnx():
    """Import onnx (an extra), or say in one line how to install it."""
    try:
        import onnx
        import onnx.checker
        import onnx.helper
        import onnx.numpy_helper
    except ImportError:
        raise BptrainError(MISSING_ONNX) from None
    return onnx


def describe_input(n_inputs: int) -> str:
    side = int(round(n_inputs ** 0.5))
    shape = f", a {side}x{side} image row by row" if side * side == n_inputs and side > 1 else ""
    return (f"float32 (batch, {n_inputs}): one row of {n_inputs} pixel values per image{shape}, as 0-1 floats "
            f"(0 the background, 1 full ink, as in MNIST; divide 0-255 bytes by 255)")


def onnx_model(model: MLP, names: list[str], source: str = ""):
    """The ONNX ModelProto of ``model`` (its output: the class probabilities, float32, one row per input row)."""
    onnx = require_onnx()
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    if model.n_parameters * model.dtype.itemsize > MAX_WEIGHT_BYTES:
        raise ModelFileError(f"{source or 'the model'} has {model.n_parameters:,} parameters: more than one ONNX "
                             f"file can hold (protobuf's 2 GB limit)")
    n_inputs, n_classes = model.sizes[0], model.sizes[-1]
    elem = helper.np_dtype_to_tensor_dtype(model.dtype)
    float32 = onnx.TensorProto.FLOAT
    nodes, initializers = [], []
    current = INPUT_NAME
    if elem != float32:
        nodes.append(helper.make_node("Cast", [current], ["pixels_cast"], to=elem, name="cast_input"))
        current = "pixels_cast"
    for l, (w, b) in enumerate(zip(model.weights, model.biases), start=1):
        initializers += [numpy_helper.from_array(np.ascontiguousarray(w), f"W{l}"),
                         numpy_helper.from_array(np.ascontiguousarray(b), f"b{l}")]
        nodes.append(helper.make_node("MatMul", [current, f"W{l}"], [f"AW{l}"], name=f"layer{l}_matmul"))
        nodes.append(helper.make_node("Add", [f"AW{l}", f"b{l}"], [f"Z{l}"], name=f"layer{l}_add"))
        current = f"Z{l}"
        if l < model.n_layers:
            nodes.append(helper.make_node(HIDDEN_OPS[model.activation], [current], [f"A{l}"], name=f"layer{l}_unit"))
            current = f"A{l}"
    last = f"P{model.n_layers}" if elem != float32 else OUTPUT_NAME
    if model.loss == "ce":
        nodes.append(helper.make_node("Softmax", [current], [last], axis=-1, name="softmax"))
    else:  # sigmoid outputs normalised to sum to 1 (bptrain.core.committee.output_probabilities)
        initializers += [numpy_helper.from_array(np.array([1], np.int64), "class_axis"),
                         numpy_helper.from_array(np.array(np.finfo(model.dtype).tiny, model.dtype), "tiny")]
        nodes += [helper.make_node("Sigmoid", [current], ["A_out"], name="output_sigmoid"),
                  helper.make_node("ReduceSum", ["A_out", "class_axis"], ["A_sum"], keepdims=1, name="output_sum"),
                  helper.make_node("Max", ["A_sum", "tiny"], ["A_norm"], name="output_sum_floor"),
                  helper.make_node("Div", ["A_out", "A_norm"], [last], name="normalise")]
    if elem != float32:
        nodes.append(helper.make_node("Cast", [last], [OUTPUT_NAME], to=float32, name="cast_output"))
    output_text = ("softmax of the output layer" if model.loss == "ce"
                   else "the sigmoid outputs normalised to sum to 1")
    graph = helper.make_graph(
        nodes, "bptrain_mlp",
        [helper.make_tensor_value_info(INPUT_NAME, float32, ["batch", n_inputs], describe_input(n_inputs))],
        [helper.make_tensor_value_info(OUTPUT_NAME, float32, ["batch", n_classes],
                                       f"float32 (batch, {n_classes}): class probabilities ({output_text}), "
                                       f"in the order of the class_names metadata")],
        initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bptrain",
                              producer_version=__version__, ir_version=IR_VERSION,
                              doc_string=(f"A {'-'.join(map(str, model.sizes))} MLP trained by bptrain "
                                          f"({model.activation} hidden units, {model.loss} loss, {model.dtype.name} "
                                          f"weights). Input '{INPUT_NAME}': {describe_input(n_inputs)}. Output "
                                          f"'{OUTPUT_NAME}': float32 (batch, {n_classes}), the class probabilities "
                                          f"bptrain predict reports ({output_text}). Class names: the "
                                          f"class_names metadata, a JSON list."))
    helper.set_model_props(proto, {
        "class_names": json.dumps(names),  # ASCII: JSON escapes the rest, so any name survives protobuf
        "sizes": json.dumps(list(model.sizes)), "activation": model.activation, "loss": model.loss,
        "dtype": model.dtype.name, "input_range": "0-1",
    })
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model_path, out_path) -> Path:
    """Write the ONNX form of the bptrain model ``model_path`` to ``out_path``, which must not exist.

    Nothing is written unless everything succeeds; an existing file is never replaced, not even one
    that appears while the export runs.
    """
    model_path, out_path = Path(model_path), Path(out_path)
    if same_file(model_path, out_path):
        raise PathClash(f"--out {out_path} is the model file itself; choose another --out", field="out")
    check_new_file(out_path)
    require_onnx()
    model, meta = load_model(model_path)
    proto = onnx_model(model, class_names(meta, model.sizes[-1]), str(model_path))  # checked by load_model
    write_new_file(out_path, proto.SerializeToString())
    return out_path


def check_new_file(path: Path) -> None:
    """Refuse an output that exists (of any kind: a file, a folder, a dangling link), or whose folder does not."""
    if os.path.lexists(path):
        raise PathClash(f"--out {path} already exists; bptrain export never replaces a file: choose another --out",
                        field="out")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise PathClash(f"--out {path}: the folder {directory} does not exist", field="out")


def write_new_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all, never replacing a file created meanwhile
    (:func:`bptrain.data.model_io.write_new`)."""
    try:
        write_new(path, data)
    except FileExistsError:
        raise PathClash(f"--out {path} appeared while exporting; it was left as it is: choose another --out",
                        field="out") from None
    except OSError as exc:
        raise BptrainError(f"cannot write {path}: {exc.strerror or exc}") from None
