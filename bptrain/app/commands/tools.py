"""The smaller commands: ``download`` the data, ``bench`` the engine, ``gradcheck`` backprop, ``info`` on a model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ...core.errors import DataError
from ...core.network import DTYPES
from ...data.download import MNIST_FILENAME, download_mnist
from ...data.loader import DEFAULT_DATA_PATH, load_dataset, resolve_data_path
from ...data.model_io import load_model
from ...data.shifts import is_square_image
from .. import bench, memory
from ..bench import SETTINGS_CHOICES as BENCH_SETTINGS
from ..gradcheck import TOLERANCE, gradient_check
from ..checkpoints import checkpoint_state
from ..history import format_speed_table, history_path, load_history
from ..options import CLI_AUGMENT, table_option
from .common import check_memory, stoppable_download


@click.command("download")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_PATH.parent,
              show_default=True, help="Directory to put mnist.pkl.gz in.")
@click.option("--force", is_flag=True, help="Download again even if the file is already there.")
def download_command(dest, force):
    """Fetch mnist.pkl.gz from known mirrors and verify its size and MD5."""
    target = dest / MNIST_FILENAME
    if target.exists() and not force:
        click.echo(f"{target} is already there; use --force to download it again")
        return
    path = stoppable_download(download_mnist, dest, force=force, progress=sys.stderr.isatty())
    click.echo(f"downloaded and verified {path}")


@click.command("bench")
@table_option("sizes")
@table_option("batch_size", multiple=True, default=(1, 10, 128), help="Repeat the option to time several batch sizes.")
@table_option("loss")
@table_option("dtype")
@table_option("engine")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed epochs per batch size (the median is reported).")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True,
              help="Untimed epochs before the timed ones.")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="Use only the first N training images [default: all].")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Data to time on [default: $BPTRAIN_DATA or data/mnist.pkl.gz; synthetic data of the "
                   "same shape when absent].")
@click.option("--settings", "settings_choice", type=click.Choice(BENCH_SETTINGS), default="both",
              show_default=True,
              help="default: what `bptrain train` trains with (momentum, weight decay, shifts); plain: SGD without "
                   "them; both: the two in alternation, with the ratio default / plain.")
@click.option("--augment", type=click.IntRange(min=0, max=4), default=CLI_AUGMENT, show_default=True,
              help="Largest shift in pixels of the default settings (0: time them without the shifts).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_command(sizes, batch_size, loss, dtype, engine, runs, warmup, samples, data, settings_choice, augment,
                  as_json):
    """Time training epochs (train's default settings and plain SGD) against this machine's matrix-multiply peak."""
    path = resolve_data_path(data)
    if path.exists():
        dataset = load_dataset(path)
        x, y, source = dataset.train.x, dataset.train.y, str(path)
        if sizes[0] != x.shape[1] or sizes[-1] < dataset.n_classes:
            raise click.UsageError(f"--sizes {','.join(map(str, sizes))} does not fit {path} "
                                   f"({x.shape[1]} features, {dataset.n_classes} classes)")
    else:
        if data is not None:
            raise DataError(f"no data at {path}")
        x, y = bench.synthetic_like(50_000, sizes[0], sizes[-1])
        source = "synthetic (no data file found)"
    if samples is not None:
        x, y = x[:samples], y[:samples]
    if augment and not is_square_image(x.shape[1]):
        augment = 0  # as in train: shifts need square images (the settings line says "no shifts")
    settings = bench.settings_to_time(settings_choice, augment)
    check_memory(memory.bench_estimate(sizes, batch_size, dtype=dtype, settings=settings, n_samples=len(x),
                                        engine=engine))
    rows, peak = bench.bench(sizes, loss, x, y, batch_size, dtype=DTYPES[dtype], runs=runs, warmup=warmup,
                             settings=settings, engine=engine)
    if as_json:
        click.echo(json.dumps({"sizes": list(sizes), "loss": loss, "dtype": dtype, "engine": engine, "samples": len(x),
                               "data": source, "gemm_peak_gflops": peak,
                               "settings": {s.name: s.to_dict() for s in settings},
                               "rows": [r.to_dict() for r in rows]}))
        return
    click.echo(f"{'-'.join(map(str, sizes))} {loss} {dtype}, {engine} engine, {len(x)} samples per epoch from {source}")
    for s in settings:
        click.echo(f"{s.name}: {s.describe()}" + (" (bptrain train's defaults)" if s.name == "default" else ""))
    click.echo("threads: BLAS threads of the steps, +1 when a thread prepares each epoch alongside "
               "(bptrain/fast/threads.py)")
    click.echo(f"GEMM peak {peak:.1f} GFLOP/s -> matmul floor {rows[0].floor_seconds:.3f} s/epoch")
    click.echo(f"{'settings':<9} {'batch':>6} {'s/epoch':>9} {'samples/s':>11} {'GFLOP/s':>8} {'x floor':>8} "
               f"{'x plain':>8} {'threads':>8}  runs")
    for r in rows:
        ratio = f"{r.ratio_to_plain:>8.2f}" if r.ratio_to_plain is not None else f"{'':>8}"
        click.echo(f"{r.settings:<9} {r.batch_size:>6} {r.seconds_per_epoch:>9.3f} {r.samples_per_second:>11,.0f} "
                   f"{r.gflops:>8.1f} {r.ratio_to_floor:>8.2f} {ratio} {r.threads:>8}  "
                   f"{' '.join(f'{t:.3f}' for t in r.runs)}")


@click.command("gradcheck")
@table_option("sizes", default="784,30,10")
@table_option("loss")
@table_option("activation", help="Hidden units (relu is checked where no unit sits on its kink at 0).")
@table_option("batch_size", default=8)
@table_option("seed")
@click.option("--max-entries", type=click.IntRange(min=0), default=500, show_default=True,
              help="Entries compared per array, chosen at random (0: all of them).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def gradcheck_command(sizes, loss, activation, batch_size, seed, max_entries, as_json):
    """Compare backprop's gradients with central differences, layer by layer (float64).

    Exits with code 1 if any relative error reaches the tolerance.
    """
    check_memory(memory.gradcheck_estimate(sizes, batch_size, engine="reference"))  # the core's own arrays
    rows = gradient_check(sizes, loss, batch_size, seed, max_entries or None, activation=activation)
    passed = all(row.passed for row in rows)
    if as_json:
        click.echo(json.dumps({"sizes": list(sizes), "loss": loss, "activation": activation,
                               "tolerance": TOLERANCE, "passed": passed,
                               "rows": [{**vars(r), "shape": list(r.shape), "passed": r.passed} for r in rows]}))
    else:
        click.echo(f"gradient check of {'-'.join(map(str, sizes))} ({activation} hidden, {loss}, float64, "
                   f"batch {batch_size}): "
                   f"backprop vs central differences")
        click.echo(f"{'layer':>5} {'param':>5} {'shape':>12} {'checked':>8} {'rel. error':>11}  result")
        for r in rows:
            shape = "x".join(map(str, r.shape))
            click.echo(f"{r.layer:>5} {r.name:>5} {shape:>12} {r.checked:>8} {r.relative_error:>11.2e}  "
                       f"{'pass' if r.passed else 'FAIL'}")
        click.echo(f"{'all passed' if passed else 'FAILED'} (tolerance {TOLERANCE:g})")
    if not passed:
        raise SystemExit(1)


#: Settings every model file records that its optimizer never used (info leaves them out).
UNUSED_BY = {"sgd": ("beta1", "beta2", "eps"), "adam": ("momentum", "nesterov")}


@click.command("info")
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the metadata as JSON.")
def info_command(model_path, as_json):
    """Show a model's architecture, parameter count, training settings and recorded accuracy."""
    model, meta = load_model(model_path)
    if as_json:
        click.echo(json.dumps({**meta, "parameters": model.n_parameters,
                               "checkpoint": checkpoint_state(Path(model_path), meta)}, sort_keys=True))
        return
    click.echo(f"model        {model_path}")
    click.echo(f"layers       {' -> '.join(map(str, model.sizes))}  "
               f"({model.activation} hidden, {'softmax' if model.loss == 'ce' else 'sigmoid'} output)")
    click.echo(f"loss         {model.loss}")
    click.echo(f"parameters   {model.n_parameters:,}")
    click.echo(f"dtype        {meta.get('dtype')}   format version {meta.get('format_version')}")
    if meta.get("val_accuracy") is not None:
        run = f" of {meta['epochs_run']} run" if meta.get("epochs_run") else ""
        click.echo(f"validation   {100 * meta['val_accuracy']:.2f}% (the best epoch, {meta.get('best_epoch')}{run})")
    settings = dict(meta.get("settings") or {})
    for name in UNUSED_BY.get(settings.get("optimizer"), ()):  # beta1 of an SGD model was never used
        settings.pop(name, None)
    if settings:
        click.echo("settings     " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    if meta.get("data"):
        click.echo(f"data         {meta['data']}")
    click.echo(f"checkpoint   {checkpoint_state(Path(model_path), meta)}")
    history = history_path(model_path)
    if history.is_file():
        table = format_speed_table(load_history(history))
        if table:
            click.echo(f"\nlearning speed per layer, ‖∂C/∂b_l‖ (Nielsen's speed), from {history}:")
            click.echo(table)
