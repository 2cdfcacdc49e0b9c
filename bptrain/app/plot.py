"""Pictures of training and of a trained model, as PNG files.

* :func:`plot_history`   learning curves from a ``model.history.json`` document;
* :func:`plot_confusion` the confusion matrix as an annotated heat map;
* :func:`plot_mistakes`  a grid of misclassified digits ("true 4 / pred 9 (97%)"),
  usually those :func:`most_confident_mistakes` picks;
* :func:`plot_weights`   the first layer's weights, one 28x28 tile per hidden unit;
* :func:`plot_distortions` a few digits and what the network is shown instead: their
  elastic and affine distortions (bptrain.data.distort).

matplotlib is an optional extra (``pip install 'bptrain[plot]'``), imported only
when a picture is drawn; :func:`require_matplotlib` says how to install it.
Figures are :class:`matplotlib.figure.Figure` objects made directly, not through
pyplot's global figure manager, so nothing leaks between calls and nothing
changes the backend of a notebook that already imported pyplot. Every PNG is
written atomically (a temporary file next to the target, then renamed), so a
failed plot never leaves a half-written file.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from ..core.errors import BptrainError
from ..data.distort import Distorter
from ..data.model_io import atomic_write
from ..data.shifts import is_square_image
from .history import speed_columns, validate_history

MISSING_MATPLOTLIB = "plotting needs matplotlib: pip install 'bptrain[plot]'"
DPI = 100
#: Above this many classes the confusion matrix cells are too small for numbers.
MAX_ANNOTATED_CLASSES = 20


def require_matplotlib():
    """Import matplotlib for file output (Agg backend) and return ``matplotlib.pyplot``.

    Raises :class:`BptrainError` saying how to install it when it is missing.
    The Agg backend is selected only if pyplot has not been imported yet, so an
    interactive session keeps its own backend.
    """
    try:
        import matplotlib
    except ImportError:
        raise BptrainError(MISSING_MATPLOTLIB) from None
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(**kwargs):
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def _save(fig, out) -> Path:
    """Write ``fig`` as a PNG to ``out`` atomically and release it; return the path."""
    out = Path(out)
    directory = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise BptrainError(f"{out} is a directory; give a file name like plot.png")
    if not directory.is_dir():
        raise BptrainError(f"cannot write {out}: directory {directory} does not exist")
    try:
        atomic_write(out, lambda handle: fig.savefig(handle, format="png", dpi=DPI))
    except OSError as exc:
        raise BptrainError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        fig.clear()
    return out


# ------------------------------------------------------------------ history
def plot_history(history: dict, out) -> Path:
    """Learning curves: losses (left), validation accuracy with the best epoch (middle), learning rate (right)."""
    data = validate_history(history)
    require_matplotlib()
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    epoch = data["epoch"]
    best = data["best_epoch"]
    has_lr = data["lr"] is not None
    style = {"marker": "o", "markersize": 3} if len(epoch) <= 40 else {}

    fig = _figure(figsize=(13.5, 4.4) if has_lr else (11, 4.4))
    if has_lr:
        ax_loss, ax_acc, ax_lr = fig.subplots(1, 3, width_ratios=[1, 1, 0.6])
    else:
        (ax_loss, ax_acc), ax_lr = fig.subplots(1, 2), None

    ax_loss.plot(epoch, data["train_loss"], label="train", color="tab:blue", **style)
    ax_loss.plot(epoch, data["val_loss"], label="validation", color="tab:orange", **style)
    losses = np.concatenate([data["train_loss"], data["val_loss"]])
    losses = losses[np.isfinite(losses)]
    if len(losses) and losses.min() > 0 and losses.max() / losses.min() > 5:
        ax_loss.set_yscale("log")
    ax_loss.set_title("loss")
    ax_loss.set_ylabel("mean loss per image" + (" (log scale)" if ax_loss.get_yscale() == "log" else ""))
    ax_loss.legend()

    accuracy = 100 * data["val_accuracy"]
    ax_acc.plot(epoch, accuracy, color="tab:green", label="validation", **style)
    ax_acc.yaxis.set_major_formatter(PercentFormatter(decimals=None))
    ax_acc.set_title("validation accuracy")
    if best is not None:
        best_accuracy = accuracy[np.flatnonzero(epoch == best)[0]]
        for ax in (ax_loss, ax_acc):
            ax.axvline(best, color="grey", linestyle="--", linewidth=1)
        ax_acc.plot([best], [best_accuracy], marker="*", markersize=14, color="tab:red", linestyle="none",
                    label=f"best: {best_accuracy:.2f}% at epoch {best}")
    ax_acc.legend(loc="lower right")

    if ax_lr is not None:
        ax_lr.plot(epoch, data["lr"], color="tab:purple", **style)
        ax_lr.set_title("learning rate")
        ax_lr.set_ylim(bottom=0)
    for ax in (ax_loss, ax_acc, ax_lr):
        if ax is not None:
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if len(epoch) == 1:  # one point: give it a whole-number axis around it
                ax.set_xlim(epoch[0] - 1, epoch[0] + 1)
            ax.grid(True, alpha=0.3)

    last = -1
    summary = (f"{len(epoch)} epoch{'s' if len(epoch) != 1 else ''}: final train loss {data['train_loss'][last]:.4g}, "
               f"val loss {data['val_loss'][last]:.4g}, val accuracy {accuracy[last]:.2f}%")
    if data["seconds"] is not None:
        summary += f", {np.nansum(data['seconds']):.1f} s"
    if history.get("stopped_early"):
        summary += " (stopped early)"
    fig.suptitle(summary)
    return _save(fig, out)


# ---------------------------------------------------------------- confusion
def plot_confusion(confusion: np.ndarray, out, title: str = "Confusion matrix") -> Path:
    """Heat map of ``confusion[true, predicted]`` counts, each cell annotated with its count.

    Colour is the fraction of the true class (row) on a square-root scale, so a
    1% confusion is visible next to a 98% diagonal.
    """
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1] or confusion.size == 0:
        raise BptrainError(f"a confusion matrix must be square (classes x classes), got shape {confusion.shape}")
    if confusion.dtype.kind not in "uif" or not np.isfinite(confusion).all() or (confusion < 0).any():
        raise BptrainError("a confusion matrix must hold non-negative finite counts")
    require_matplotlib()
    from matplotlib.colors import PowerNorm

    n = len(confusion)
    totals = confusion.sum(axis=1, keepdims=True)
    fraction = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    side = min(4 + 0.55 * n, 16)
    fig = _figure(figsize=(side + 1.4, side))
    ax = fig.subplots()
    norm = PowerNorm(gamma=0.5, vmin=0, vmax=1)
    image = ax.imshow(fraction, cmap="Blues", norm=norm, interpolation="nearest")
    colorbar = fig.colorbar(image, ax=ax, shrink=0.8)
    colorbar.set_label("fraction of the true class (square-root scale)")

    ticks = np.arange(n)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    if n > MAX_ANNOTATED_CLASSES:  # label every 5th class only
        ax.set_xticks(ticks[::5])
        ax.set_yticks(ticks[::5])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = confusion.sum()
    accuracy = np.trace(confusion) / total if total else math.nan
    ax.set_title(f"{title}\naccuracy {100 * accuracy:.2f}% of {int(total):,} images")

    if n <= MAX_ANNOTATED_CLASSES:
        fontsize = 9 if n <= 12 else 7
        for i in range(n):
            for j in range(n):
                count = confusion[i, j]
                text = f"{count:g}" if confusion.dtype.kind == "f" else str(int(count))
                dark = norm(fraction[i, j]) > 0.55
                color = "white" if dark else ("0.65" if count == 0 else "black")
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=color)
    return _save(fig, out)


# ----------------------------------------------------------------- mistakes
def most_confident_mistakes(probabilities: np.ndarray, labels: np.ndarray, n: int = 25) -> np.ndarray:
    """Indices of the (at most) ``n`` misclassified rows with the highest predicted probability.

    ``probabilities`` is (N, classes), e.g. from ``MLP.predict_proba``; the
    prediction is the arg-max. Ties keep the data set's order.
    """
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels)
    if probabilities.ndim != 2 or labels.shape != (len(probabilities),):
        raise BptrainError(f"probabilities must be (N, classes) and labels (N,), got {probabilities.shape} "
                           f"and {labels.shape}")
    if n < 0:
        raise BptrainError(f"n must be at least 0, got {n}")
    predictions = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    confidence = probabilities[wrong, predictions[wrong]]
    order = np.argsort(-confidence, kind="stable")
    return wrong[order[:n]]


def plot_mistakes(images: np.ndarray, labels, predictions, confidences, out, n: int = 25,
                  title: str = "Most confident mistakes") -> Path:
    """A grid of the first ``n`` images, each titled "true 4 / pred 9 (97%)".

    ``images`` is (N, width) with width a perfect square (784 -> 28x28),
    values in [0, 1] drawn black on white like ink; ``confidences`` is the
    probability the model gave its (wrong) prediction. The caller chooses
    which images and in what order (see :func:`most_confident_mistakes`).
    """
    images = np.asarray(images)
    labels, predictions, confidences = (np.asarray(a).reshape(-1) for a in (labels, predictions, confidences))
    if images.ndim != 2:
        raise BptrainError(f"images must be (N, width), got shape {images.shape}")
    if not len(labels) == len(predictions) == len(confidences) == len(images):
        raise BptrainError(f"got {len(images)} images but {len(labels)} labels, {len(predictions)} predictions "
                           f"and {len(confidences)} confidences")
    side = _square_side(images.shape[1], "images")
    count = min(n, len(images))

    if count == 0:
        fig = _figure(figsize=(5, 2.5))
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "no mistakes to show", ha="center", va="center", fontsize=14)
        ax.set_title(title)
        return _save(fig, out)

    tiles = images[:count].reshape(count, side, side)
    captions = [f"true {labels[k]} / pred {predictions[k]} ({_percent(confidences[k])})" for k in range(count)]
    fig = _tile_figure(tiles, captions, cell_inches=1.75, fontsize=9, cmap="gray_r", background="white",
                       title=f"{title} ({count} shown)" if count > 1 else title)
    return _save(fig, out)


def _percent(probability: float) -> str:
    """97%, or 99.9% near certainty, so a 0.9996 prediction does not read as "100%"."""
    pct = 100 * float(probability)
    if pct < 99.5:
        return f"{pct:.0f}%"
    return f"{math.floor(pct * 10) / 10:.1f}%"


# ------------------------------------------------------------------ weights
def plot_weights(first_layer_weights: np.ndarray, out, max_units: int = 64,
                 title: str = "First-layer weights") -> Path:
    """Each hidden unit's incoming weights (a column of W1) as a square image.

    Red is positive, blue negative, white zero; every tile is scaled to its own
    largest |w| so each unit's pattern shows at full contrast. At most
    ``max_units`` units (the first ones) are drawn.
    """
    weights = np.asarray(first_layer_weights)
    if weights.ndim != 2:
        raise BptrainError(f"first-layer weights must be (inputs, hidden units), got shape {weights.shape}")
    if weights.dtype.kind not in "uif" or not np.isfinite(weights).all():
        raise BptrainError("first-layer weights must be finite numbers")
    if max_units < 1:
        raise BptrainError(f"max_units must be at least 1, got {max_units}")
    n_inputs, n_units = weights.shape
    side = _square_side(n_inputs, "the first layer's inputs")
    count = min(n_units, max_units)
    if count == 0:
        raise BptrainError("the first layer has no units to draw")

    tiles = weights[:, :count].T.reshape(count, side, side).astype(np.float64)
    limits = np.abs(tiles).max(axis=(1, 2), keepdims=True)
    tiles /= np.where(limits > 0, limits, 1)  # every tile to [-1, 1]: its own largest |w| is full colour
    shown = f"all {n_units} units" if count == n_units else f"first {count} of {n_units} units"
    fig = _tile_figure(tiles, [f"unit {k}" for k in range(count)], cell_inches=1.2, fontsize=8,
                       cmap="RdBu_r", vmin=-1, background="white",
                       title=f"{title}: {shown}, {side}x{side} each\n"
                             f"red positive, blue negative; each tile scaled to its own largest |w|")
    return _save(fig, out)


def _tile_figure(tiles: np.ndarray, labels, cell_inches: float, fontsize: float, cmap: str, title: str,
                 vmin: float = 0.0, vmax: float = 1.0, background: str = "white"):
    """One image made of ``tiles`` (count, side, side) in a near-square grid, each labelled above.

    A single ``imshow`` of a mosaic (gaps are NaN, drawn as ``background``)
    rather than one axes per tile: ten times faster to draw and save with 64 tiles.
    """
    require_matplotlib()
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    count, side, _ = tiles.shape
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    hgap = max(1, round(side / 7))         # 4 pixels between 28x28 tiles
    vgap = max(2, round(side * 0.25))      # room for the label above each tile
    cell_w, cell_h = side + hgap, side + vgap
    mosaic = np.full((rows * cell_h, columns * cell_w - hgap), np.nan)

    fig = _figure(figsize=(columns * cell_inches, rows * cell_inches * cell_h / cell_w + 0.7))
    ax = fig.subplots()
    for k in range(count):
        row, column = divmod(k, columns)
        top, left = row * cell_h + vgap, column * cell_w
        mosaic[top:top + side, left:left + side] = tiles[k]
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), side, side, fill=False, edgecolor="0.8", linewidth=0.6))
        ax.text(left + side / 2 - 0.5, top - 1.2, labels[k], ha="center", va="bottom", fontsize=fontsize)
    ax.imshow(mosaic, cmap=colormaps[cmap].with_extremes(bad=background), vmin=vmin, vmax=vmax,
              interpolation="nearest")
    height, width = mosaic.shape
    ax.set_xlim(-1.5, width + 0.5)  # a pixel of margin so the outer frames are not clipped
    ax.set_ylim(height + 0.5, -0.5)
    ax.set_axis_off()
    fig.suptitle(title, fontsize=11 if "\n" in title else 12)
    return fig


def _square_side(width: int, what: str) -> int:
    if width == 0 or not is_square_image(width):
        raise BptrainError(f"{what} have width {width}, not a perfect square; they cannot be drawn as square images")
    return math.isqrt(width)


# -------------------------------------------------------------------- speed
def has_speed(history: dict) -> bool:
    """Whether a history document holds per-layer gradient norms (histories written before the learning speed was recorded have none)."""
    return speed_columns(history) is not None


def plot_speed(history: dict, out) -> Path:
    """Learning speed per layer over the epochs, log scale, one line per layer.

    Top: ‖∂C/∂b_l‖, Nielsen's speed of learning; bottom: ‖∂C/∂W_l‖. Left: on the
    fixed batch (the first 1,000 training images), before the first update
    (drawn at the epoch before the first, 0 for a fresh run) and after every
    epoch; right: the mean over each epoch's sampled mini-batches (noisier, so longer).
    """
    columns = speed_columns(history)
    if columns is None:
        raise BptrainError("the history has no per-layer gradient norms (written by a bptrain without them)")
    require_matplotlib()
    from matplotlib.ticker import MaxNLocator

    epoch = columns["epoch"]
    n_layers = columns["n_layers"]
    start = (epoch[0] - 1) if len(epoch) else 0
    fixed = f"the first {columns['batch']} training images" if columns["batch"] else "a fixed batch"
    fig = _figure(figsize=(11, 8))
    axes = fig.subplots(2, 2, sharex=True)
    panels = ((0, "b", "‖∂C/∂b_l‖ (speed of learning)"), (1, "w", "‖∂C/∂W_l‖"))
    for row, kind, quantity in panels:
        for column, (key, initial, where) in enumerate(((f"fixed_{kind}", f"initial_{kind}", f"on {fixed}"),
                                                        (f"grad_{kind}", None, "mean over sampled mini-batches"))):
            ax = axes[row, column]
            for l in range(n_layers):
                xs, ys = list(epoch), list(columns[key][:, l])
                if initial is not None and columns[initial] is not None:
                    xs, ys = [start] + xs, [columns[initial][l]] + ys
                    ax.plot([start], [columns[initial][l]], marker="o", markersize=7, markerfacecolor="white",
                            color=f"C{l}", linestyle="none")
                style = {"marker": "o", "markersize": 3} if len(xs) <= 40 else {}
                ax.plot(xs, ys, color=f"C{l}", linestyle="--" if l == n_layers - 1 else "-",
                        label=f"layer {l + 1}" + (" (output)" if l == n_layers - 1 else " (hidden)"), **style)
            if any(line.get_ydata().size and np.nanmax(line.get_ydata()) > 0 for line in ax.get_lines()):
                ax.set_yscale("log")
            ax.set_title(f"{quantity}, {where}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[1]:
        ax.set_xlabel("epoch (hollow marker: before the first update)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Learning speed per layer (log scale; zero, e.g. dead relu units, is not drawn)")
    return _save(fig, out)


# -------------------------------------------------------------- distortions
def plot_distortions(images: np.ndarray, rows: dict, out, seed: int = 0,
                     title: str = "What the network is shown: digits and their distortions") -> Path:
    """A grid: the ``images`` (N, side²) in the first row, then one row per (name, Distortion) of ``rows``.

    Each row distorts the same digits with its own draw (a generator seeded by ``seed``),
    so a distortion that appears twice shows two different random versions.
    """
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 2 or len(images) == 0:
        raise BptrainError(f"images must be a non-empty (N, width) array, got shape {images.shape}")
    side = _square_side(images.shape[1], "images")
    rng = np.random.default_rng(seed)
    shown = [("original", images)]
    for name, distortion in rows.items():
        distorted = images.copy()
        Distorter(images.shape[1], distortion)(distorted, rng)
        shown.append((name, distorted))
    gap = max(1, side // 7)
    count = len(images)
    mosaic = np.ones((len(shown) * (side + gap) - gap, count * (side + gap) - gap))
    for r, (_, batch) in enumerate(shown):
        for c in range(count):
            mosaic[r * (side + gap):r * (side + gap) + side, c * (side + gap):c * (side + gap) + side] = \
                1 - batch[c].reshape(side, side)  # ink dark on white
    fig = _figure(figsize=(0.55 * count + 1.6, 0.55 * len(shown) + 0.5))
    ax = fig.subplots()
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([r * (side + gap) + side / 2 for r in range(len(shown))], [name for name, _ in shown], fontsize=8)
    ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(length=0)
    ax.set_title(title, fontsize=9)
    return _save(fig, out)


# ----------------------------------------------------------------- overlays
#: History column -> (title, y-axis label) of its overlay picture.
OVERLAY_QUANTITIES = {
    "train_loss": ("Training loss per epoch", "mean loss per training image"),
    "val_loss": ("Validation loss per epoch", "mean loss per validation image"),
    "val_accuracy": ("Validation accuracy per epoch", "validation accuracy"),
}
BEST_MARK = "★ best validation epoch"


def run_colours(n: int) -> list:
    """One colour per run: matplotlib's ten distinct ones, or a sequence of a colour map beyond ten."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    from matplotlib import colormaps

    return [colormaps["viridis"](i / (n - 1)) for i in range(n)]


def overlay_figure(runs, quantity: str, subtitle: str = ""):
    """Several runs' ``quantity`` ("train_loss", "val_loss", "val_accuracy") per epoch on shared axes.

    ``runs`` is a list of (label, history document); each run is one line in its own colour,
    named in the legend by its label, with a star at its best validation epoch. ``subtitle``
    says what the runs share. Returns the matplotlib Figure (see :func:`plot_overlay`).
    """
    if quantity not in OVERLAY_QUANTITIES:
        raise BptrainError(f"cannot overlay {quantity!r}; one of {', '.join(OVERLAY_QUANTITIES)}")
    if not runs:
        raise BptrainError("no runs to draw")
    columns = [validate_history(document, source=f"the history of {label}") for label, document in runs]
    require_matplotlib()
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    title, ylabel = OVERLAY_QUANTITIES[quantity]
    scale = 100 if quantity == "val_accuracy" else 1
    fig = _figure(figsize=(8.5, 5.2))
    ax = fig.subplots()
    longest = max(len(data["epoch"]) for data in columns)
    for (label, _), data, colour in zip(runs, columns, run_colours(len(runs))):
        values = scale * data[quantity]
        style = {"marker": "o", "markersize": 3} if longest <= 40 else {}
        ax.plot(data["epoch"], values, color=colour, label=label, linewidth=1.6, **style)
        best = data["best_epoch"]
        if best is not None:
            at = np.flatnonzero(data["epoch"] == best)[0]
            ax.plot([best], [values[at]], marker="*", markersize=15, color=colour, markeredgecolor="black",
                    markeredgewidth=0.6, linestyle="none", zorder=3)
    finite = np.concatenate([scale * data[quantity] for data in columns])
    finite = finite[np.isfinite(finite)]
    if quantity != "val_accuracy" and len(finite) and finite.min() > 0 and finite.max() / finite.min() > 5:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        ylabel += " (log scale)"
        plain = FuncFormatter(lambda value, _: f"{value:g}")  # 0.04, not 4×10⁻²
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    if quantity == "val_accuracy":
        ax.yaxis.set_major_formatter(PercentFormatter(decimals=None))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    ax.set_title(f"{title}   ({BEST_MARK})", fontsize=12)
    if subtitle:
        fig.suptitle(_shared(subtitle), fontsize=8, color="0.35")
    return fig


def _shared(subtitle: str) -> str:
    """The header line of what the runs share: "same in all: ...", unless it already says how far that holds."""
    return subtitle if subtitle.startswith("same in all") else "same in all: " + subtitle


def plot_overlay(runs, quantity: str, out, subtitle: str = "") -> Path:
    """Write :func:`overlay_figure` as a PNG to ``out``."""
    return _save(overlay_figure(runs, quantity, subtitle), out)


def overlay_speed_figure(runs, subtitle: str = ""):
    """Learning speed per layer of several runs: one panel per layer, one line per run (log scale, shared).

    The speed is ‖∂C/∂b_l‖ on the fixed batch (the first 1,000 training images), before the first update
    (hollow marker) and after every epoch, as in :func:`plot_speed`. Sharing the y axis puts the layers
    side by side: in a deep sigmoid network the first layers' lines sit far below the last ones'.
    """
    columns = [(label, speed_columns(document, source=f"the history of {label}")) for label, document in runs]
    columns = [(label, data) for label, data in columns if data is not None]
    if not columns:
        raise BptrainError("none of the runs has per-layer gradient norms")
    require_matplotlib()
    from matplotlib.ticker import MaxNLocator

    n_layers = max(data["n_layers"] for _, data in columns)
    per_row = min(n_layers, 3)
    rows = math.ceil(n_layers / per_row)
    fig = _figure(figsize=(4.2 * per_row + 0.6, 3.6 * rows + 0.9))
    axes = np.atleast_1d(fig.subplots(rows, per_row, sharex=True, sharey=True, squeeze=False)).ravel()
    colours = run_colours(len(runs))
    colour_of = {label: colours[i] for i, (label, _) in enumerate(runs)}
    for l in range(n_layers):
        ax = axes[l]
        for label, data in columns:
            if l == n_layers - 1:  # the last panel holds every run's output layer, however deep the run
                layer = data["n_layers"] - 1
            elif l < data["n_layers"] - 1:
                layer = l
            else:
                continue
            xs, ys = list(data["epoch"]), list(data["fixed_b"][:, layer])
            start = (data["epoch"][0] - 1) if len(data["epoch"]) else 0
            if data["initial_b"] is not None:
                xs, ys = [start] + xs, [data["initial_b"][layer]] + ys
                ax.plot([start], [data["initial_b"][layer]], marker="o", markersize=6, markerfacecolor="white",
                        color=colour_of[label], linestyle="none")
            style = {"marker": "o", "markersize": 2.5} if len(xs) <= 40 else {}
            ax.plot(xs, ys, color=colour_of[label], label=label, linewidth=1.4, **style)
        ax.set_title(f"layer {l + 1}" + (" (output)" if l == n_layers - 1 else " (hidden)"), fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if any(line.get_ydata().size and np.nanmax(line.get_ydata()) > 0 for line in ax.get_lines()):
            ax.set_yscale("log")
    for ax in axes[n_layers:]:
        ax.set_visible(False)
    for column in range(per_row):  # the lowest panel of each column carries the epochs
        ax = axes[max(range(column, n_layers, per_row))]
        ax.set_xlabel("epoch (hollow: before the first update)")
        ax.xaxis.set_tick_params(labelbottom=True)
    axes[0].set_ylabel("‖∂C/∂b_l‖ on 1,000 training images")
    axes[0].legend(fontsize=8)
    title = "Learning speed per layer, ‖∂C/∂b_l‖ (log scale)"
    fig.suptitle(title + ("\n" + _shared(subtitle) if subtitle else ""), fontsize=10)
    return fig


def plot_overlay_speed(runs, out, subtitle: str = "") -> Path:
    """Write :func:`overlay_speed_figure` as a PNG to ``out``."""
    return _save(overlay_speed_figure(runs, subtitle), out)
