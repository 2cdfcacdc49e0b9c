"""The training loop: shuffled mini-batches, metrics per epoch, progress, early stopping.

Knows nothing about files or the command line; reports through callbacks so
the CLI (or a notebook) decides what to print.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
from tqdm import tqdm

from . import blas, cores
from .distort import Distorter, Distortion
from .epochs import EpochImages
from .errors import TrainingDiverged
from .loader import Dataset
from .network import MLP
from .optim import DEFAULT_LR, OPTIMIZERS, SGD, learning_rate, make_optimizer
from .speed import INITIAL_BATCH, SpeedRecorder, batch_speed

#: The progress bar and the divergence check run at most this many times per epoch,
#: so their cost does not grow with the number of batches (50,000 at batch size 1).
UPDATES_PER_EPOCH = 100
#: Training has diverged when the running loss is this many times the loss of
#: guessing (uniform outputs): far past anything a learning network produces.
DIVERGENCE_FACTOR = 100.0


@dataclass
class TrainSettings:
    """Everything that decides how a network is trained (and is recorded in the model file)."""

    # The defaults of `bptrain train`, chosen on the validation split (README, "How the defaults were chosen").
    lr: float | None = None  # None: DEFAULT_LR of the optimizer (0.1 for sgd, 0.001 for adam)
    epochs: int = 20
    batch_size: int = 32
    seed: int = 0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    step_size: int = 10
    gamma: float = 0.1
    min_lr: float = 0.0
    early_stopping: int = 0  # 0 = off; else stop after this many epochs without a better validation accuracy
    augment: int = 0  # 0 = off; else shift each (square) training image by up to this many pixels, anew each epoch
    # Distortions of the training images, anew each epoch (bptrain.distort; all 0 = off). Elastic:
    # Simard et al. 2003 (α = 34, σ = 4 there); affine: ranges of rotation (degrees), scale, shear, shift (pixels).
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0
    affine_rotate: float = 0.0
    affine_scale: float = 0.0
    affine_shear: float = 0.0
    affine_shift: float = 0.0
    # --- optimizer (issue 11): "sgd" uses momentum/nesterov above; "adam" uses beta1/beta2/eps ---
    optimizer: str = "sgd"
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.optimizer]

    def to_dict(self) -> dict:
        return asdict(self)

    def distortion(self) -> Distortion:
        return Distortion(self.elastic_alpha, self.elastic_sigma, self.affine_rotate, self.affine_scale,
                          self.affine_shear, self.affine_shift)


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float
    # Per layer 1..L: mean over sampled steps of ‖∂C/∂b_l‖ (Nielsen's speed of learning) and ‖∂C/∂W_l‖,
    # each on its own mini-batch; and both at the end of the epoch on the fixed batch of TrainResult.initial_speed
    grad_b_norm: list | None = None
    grad_w_norm: list | None = None
    fixed_grad_b_norm: list | None = None
    fixed_grad_w_norm: list | None = None


@dataclass
class TrainResult:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0  # 1-based; 0 when no epoch finished (first_epoch - 1 when resuming and none beat the start)
    best_val_accuracy: float = float("nan")
    stopped_early: bool = False
    interrupted: bool = False
    # ‖∂C/∂b_l‖ and ‖∂C/∂W_l‖ before the first update, on the first INITIAL_BATCH training images
    initial_speed: dict | None = None


def train(model: MLP, data: Dataset, settings: TrainSettings, *, progress: bool = True,
          on_epoch: Callable[[EpochRecord, bool], None] | None = None, first_epoch: int = 1) -> TrainResult:
    """Train ``model`` in place; leave it holding the parameters of its best validation epoch.

    Epochs are numbered from ``first_epoch``; above 1 the run continues a saved
    model, whose own validation accuracy is the one to beat.
    ``on_epoch(record, improved)`` is called after every epoch. A Ctrl-C stops
    training cleanly: the result says ``interrupted`` and the model holds the
    best parameters seen (or the current ones if no epoch finished).
    """
    x_train, y_train = data.train
    n_samples, n_classes = len(x_train), model.sizes[-1]
    batch_size = min(settings.batch_size, n_samples)
    rng = np.random.default_rng(settings.seed)
    distortion = settings.distortion()
    distorter = Distorter(x_train.shape[1], distortion) if distortion.active else None
    optimizer = make_optimizer(settings, model.weights, model.biases)
    speed = SpeedRecorder(model)

    result = TrainResult()
    best = _snapshot(model)
    if first_epoch > 1:
        # Resuming: the model we were given is the one to beat, so a worse run never replaces it.
        _, predictions = model.evaluate(*data.validation)
        result.best_val_accuracy = float(np.mean(predictions == data.validation.y))
        result.best_epoch = first_epoch - 1
    # One shuffled (shifted, distorted) copy of the training set per epoch, in a buffer made once:
    # every batch is then a contiguous slice, never a fancy-indexed gather. When the steps leave a core
    # free, a thread prepares the next epoch into the rows this one is done with (bptrain.epochs, .cores).
    epoch_images = EpochImages(x_train, y_train, n_classes, model.dtype, rng, settings.epochs,
                               shift=settings.augment, distorter=distorter,
                               background=cores.epoch_thread(model.sizes, batch_size, optimizer.update_kind,
                                                             distorts=distorter is not None))
    epochs_without_improvement = 0
    fixed_x, fixed_y = x_train[:INITIAL_BATCH], y_train[:INITIAL_BATCH]
    result.initial_speed = batch_speed(model, fixed_x, fixed_y)
    try:
        for epoch in range(first_epoch, first_epoch + settings.epochs):
            started = time.perf_counter()
            lr = learning_rate(settings.schedule, settings.lr, epoch - first_epoch, settings.epochs,
                               settings.step_size, settings.gamma, settings.min_lr)
            shuffled_x, shuffled_y = epoch_images.next()
            train_loss = run_epoch(model, optimizer, shuffled_x, shuffled_y, batch_size, lr,
                                    epoch, progress, speed, prepared=epoch_images)
            val_loss, predictions = model.evaluate(*data.validation)
            val_accuracy = float(np.mean(predictions == data.validation.y))
            grad_b_norm, grad_w_norm = speed.take_means()
            fixed = batch_speed(model, fixed_x, fixed_y)  # one forward/backward of 1,000 rows, like validation
            record = EpochRecord(epoch, train_loss, val_loss, val_accuracy, lr, time.perf_counter() - started,
                                 grad_b_norm, grad_w_norm, fixed["grad_b_norm"], fixed["grad_w_norm"])
            result.history.append(record)

            improved = not (val_accuracy <= result.best_val_accuracy)  # the first epoch always counts
            if improved:
                result.best_val_accuracy, result.best_epoch = val_accuracy, epoch
                best = _snapshot(model)
                epochs_without_improvement = 0
            else:
                epochs_without_improvement += 1
            if on_epoch is not None:
                on_epoch(record, improved)
            if settings.early_stopping and epochs_without_improvement >= settings.early_stopping:
                result.stopped_early = True
                break
    except KeyboardInterrupt:
        result.interrupted = True
        if result.best_epoch == 0:
            best = _snapshot(model)
    finally:
        epoch_images.close()
    _restore(model, best)
    return result


def run_epoch(model: MLP, optimizer: SGD, x: np.ndarray, y_onehot: np.ndarray, batch_size: int,
               lr: float, epoch: int, progress: bool, speed: SpeedRecorder | None = None,
               prepared: EpochImages | None = None) -> float:
    """One pass over the (already shuffled) data; returns the mean training loss.

    ``speed``, if given, records the gradient norms of the last step of some of
    the groups of batches between progress updates (at most
    ``speed.samples_per_epoch``): outside the per-step loop, so it costs nothing there.
    ``prepared``: when the data is still being prepared in the background, wait for each group of
    rows before reading it and release it after (bptrain.epochs).
    """
    n_samples = len(x)
    n_batches = math.ceil(n_samples / batch_size)
    work = model.workspace(batch_size)
    update_kind = getattr(optimizer, "update_kind", "ufuncs")  # an optimizer of the caller's own: NumPy's, say
    batches_per_update = max(1, n_batches // UPDATES_PER_EPOCH)
    bar = tqdm(total=n_batches, desc=f"epoch {epoch}", unit="batch", leave=False,
               disable=not progress, mininterval=0.2, file=sys.stderr)
    loss_sum = 0.0
    divergence_limit = DIVERGENCE_FACTOR * guessing_loss(model)
    # Each step leaves its output layer in these rows; the loss of the whole group
    # of batches is then one vectorised computation (see Workspace.keep_outputs).
    group_rows = batches_per_update * batch_size
    kept_outputs = np.empty((group_rows, model.sizes[-1]), model.dtype)
    kept_row_sums = np.empty((group_rows, 1), model.dtype)
    n_groups = math.ceil(n_batches / batches_per_update)
    groups_per_sample = math.ceil(n_groups / speed.samples_per_epoch) if speed is not None else 0
    # exp overflows to inf in saturated sigmoids (harmless, see network.sigmoid); a
    # diverging run makes NaNs, which the loss check below reports in one clear line.
    with bar, np.errstate(over="ignore", under="ignore", invalid="ignore"), \
            blas.threads_at_most(cores.step_threads(model.sizes, batch_size, update_kind,
                                                    distorts=prepared is not None and prepared.distorts)):
        if hasattr(optimizer, "prepare"):
            optimizer.prepare(blas.threads())  # momentum's form for this many threads (optim.SGD)
        for first_batch in range(0, n_batches, batches_per_update):
            group_start = first_batch * batch_size
            group_stop = min((first_batch + batches_per_update) * batch_size, n_samples)
            if prepared is not None:
                prepared.wait_for(group_stop)
            for start in range(group_start, group_stop, batch_size):
                xb = x[start:start + batch_size]
                yb = y_onehot[start:start + batch_size]
                step_work = work if len(xb) == batch_size else work.first_rows(len(xb))
                row = start - group_start
                step_work.keep_outputs(kept_outputs[row:row + len(xb)], kept_row_sums[row:row + len(xb)])
                activations, deltas = model.train_step(xb, yb, step_work, lr)
                optimizer.step(activations, deltas, step_work, lr)
            if groups_per_sample and (first_batch // batches_per_update) % groups_per_sample == 0:
                speed.record(activations, deltas, step_work, lr)  # the group's last step (its gradient, not its update)
            rows = group_stop - group_start
            loss_sum += model.loss_sum(kept_outputs[:rows], kept_row_sums[:rows], y_onehot[group_start:group_stop])
            running_loss = loss_sum / group_stop
            if prepared is not None:
                prepared.release(group_stop)
            if not running_loss < divergence_limit:  # also true for NaN
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch}: the loss reached {running_loss:.4g} "
                    f"(guessing scores {guessing_loss(model):.3g}); the learning rate {lr:g} is too large, "
                    f"try a smaller --lr")
            bar.update(math.ceil(rows / batch_size))
            if not bar.disable:
                bar.set_postfix(loss=f"{running_loss:.4f}", refresh=False)
    return loss_sum / n_samples


def guessing_loss(model: MLP) -> float:
    """The loss of a network that knows nothing: uniform softmax (ce) or outputs of ½ (mse)."""
    n_classes = model.sizes[-1]
    if model.loss == "ce":
        return max(math.log(n_classes), math.log(2))
    return 0.125 * n_classes  # ½‖a − y‖² with every a_j = ½


def _snapshot(model: MLP):
    return [w.copy() for w in model.weights], [b.copy() for b in model.biases]


def _restore(model: MLP, snapshot) -> None:
    for param, saved in zip(model.weights + model.biases, snapshot[0] + snapshot[1]):
        param[...] = saved
