"""``bptrain export``: a saved model as an ONNX file, for onnxruntime and the other ONNX runtimes."""

from __future__ import annotations

from pathlib import Path

import click

from ..export_onnx import INPUT_NAME, OPSET, OUTPUT_NAME, export_onnx
from ..stopping import Stopped, StopSignals, exit_status
from .common import stopped_by


@click.command("export")
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write the ONNX model [default: MODEL with the suffix .onnx]. It must not exist: "
                   "export never replaces a file.")
def export_command(model_path, out):
    """Write MODEL as an ONNX graph (opset 17) that gives the class probabilities `bptrain predict` reports.

    Its input `pixels` is a float32 batch of pixel rows as 0-1 floats (784 per MNIST digit); its output
    `probabilities` one row of class probabilities per input row; the class names are in its metadata
    (`class_names`, a JSON list). Needs the onnx extra: pip install 'bptrain[onnx]'.
    """
    if out is None:
        if not model_path.name or model_path.name in (".", ".."):
            raise click.UsageError(f"{model_path} names no file; give --out")
        out = model_path.with_suffix(".onnx")
    with StopSignals():  # Ctrl-C, SIGTERM, SIGHUP: the temporary file is removed, nothing is written
        try:
            export_onnx(model_path, out)
        except Stopped as stop:
            click.echo(f"{stopped_by(stop.signum)}: {out} was not written", err=True)
            click.get_current_context().exit(exit_status(stop.signum))
    click.echo(f"wrote {out} (ONNX opset {OPSET}): input '{INPUT_NAME}' float32 (batch, n_inputs) in 0-1, "
               f"output '{OUTPUT_NAME}'")
