"""The training loop: epochs of mini-batch steps, validation, history, early stopping.

The loop is written once, for both engines. An engine runs the steps of one
epoch (:class:`ReferenceEngine` here: forward, backward, update, in three
lines; :class:`bptrain.fast.FastEngine`: the same in preallocated buffers) and
evaluates the network; everything else is here. The epochs' images come
ready from the data side (shuffled, shifted, distorted: :mod:`bptrain.data.epochs`).
The loop prints nothing: it tells its :class:`Callbacks`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import TrainingDiverged
from .learning_speed import INITIAL_BATCH, SAMPLES_PER_EPOCH, batch_speed, gradient_norms
from .network import MLP
from .optimizers import DEFAULT_LR, OPTIMIZERS, make_optimizer
from .schedules import learning_rate

#: The progress callback and the divergence check run at most this many times per epoch,
#: so their cost does not grow with the number of batches (50,000 at batch size 1).
UPDATES_PER_EPOCH = 100
#: Training has diverged when the running loss is this many times the loss of
#: guessing (uniform outputs): far past anything a learning network produces.
DIVERGENCE_FACTOR = 100.0


@dataclass
class TrainSettings:
    """Everything that decides how a network is trained (and is recorded in the model file)."""

    # The defaults of `bptrain train`, chosen on the validation split (docs/options.md).
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
    # Distortions of the training images, anew each epoch (bptrain.data.distort; all 0 = off). Elastic:
    # Simard et al. 2003 (α = 34, σ = 4 there); affine: ranges of rotation (degrees), scale, shear, shift (pixels).
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0
    affine_rotate: float = 0.0
    affine_scale: float = 0.0
    affine_shear: float = 0.0
    affine_shift: float = 0.0
    # "sgd" uses momentum/nesterov above; "adam" uses beta1/beta2/eps
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
    # Changes made by hand during the epoch (Callbacks.control), in order: {"batch", "lr" and/or "momentum"}
    controls: list | None = None


@dataclass
class TrainResult:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0  # 1-based; 0 when no epoch finished (first_epoch - 1 when resuming and none beat the start)
    best_val_accuracy: float = float("nan")
    stopped_early: bool = False
    interrupted: bool = False
    # ‖∂C/∂b_l‖ and ‖∂C/∂W_l‖ before the first update, on the first INITIAL_BATCH training images
    initial_speed: dict | None = None


class Callbacks:
    """What the loop tells its caller. Override what you need; every method is optional."""

    def epoch_started(self, epoch: int, n_batches: int) -> None:
        """An epoch of ``n_batches`` steps begins."""

    def progress(self, epoch: int, batches_done: int, running_loss: float) -> None:
        """Up to :data:`UPDATES_PER_EPOCH` times per epoch, between steps."""

    def control(self, steps: "EpochSteps") -> None:
        """Before an epoch's first step and after each progress report: may wait (pause), raise
        KeyboardInterrupt (stop: the best model is kept), or change the learning rate or the
        momentum with ``steps.set_lr`` / ``steps.set_momentum``, from the next step on."""

    def validated(self, epoch: int, predictions: np.ndarray) -> None:
        """The classes the network predicts for the validation images at the end of ``epoch`` (read only;
        the page's confusion matrix comes from them, without a second pass over the data)."""

    def epoch_ended(self, record: EpochRecord, improved: bool) -> None:
        """After validation; ``improved``: this epoch is the best so far."""

    def closed(self) -> None:
        """Training is over (finished, stopped early, interrupted or failed)."""


class EpochSteps:
    """One epoch's plan for an engine: its groups of batches, and what the loop wants to hear.

    The batches come in groups of about 1/:data:`UPDATES_PER_EPOCH` of the epoch.
    After each group the engine calls :meth:`group_done` with the loss summed so
    far, which checks for divergence and reports progress. Of some groups (at most
    :data:`SAMPLES_PER_EPOCH`) the engine hands the last step's gradients to
    :meth:`record_speed`.
    """

    def __init__(self, model: MLP, epoch: int, n_samples: int, batch_size: int, lr: float, callbacks=(),
                 engine=None):
        self.model, self.epoch, self.n_samples, self.batch_size, self.lr = model, epoch, n_samples, batch_size, lr
        self.engine = engine
        self.batches_done = 0
        self.changes: list[dict] = []
        self.n_batches = math.ceil(n_samples / batch_size)
        self.batches_per_group = max(1, self.n_batches // UPDATES_PER_EPOCH)
        n_groups = math.ceil(self.n_batches / self.batches_per_group)
        self.groups_per_sample = math.ceil(n_groups / SAMPLES_PER_EPOCH)
        self.callbacks = callbacks
        self.divergence_limit = DIVERGENCE_FACTOR * guessing_loss(model)
        self._sum_b = np.zeros(model.n_layers)
        self._sum_w = np.zeros(model.n_layers)
        self.samples = 0

    def groups(self):
        """(first row, row after the last, sample the speed?) of each group of batches."""
        group_rows = self.batches_per_group * self.batch_size
        for index, start in enumerate(range(0, self.n_samples, group_rows)):
            yield start, min(start + group_rows, self.n_samples), index % self.groups_per_sample == 0

    def record_speed(self, grad_w, grad_b, scale: float = 1.0) -> None:
        """Add one step's ‖∂C/∂W_l‖ and ‖∂C/∂b_l‖ (the gradients times ``scale``) to the epoch's means."""
        norms = gradient_norms(grad_w, grad_b)
        self._sum_b += np.asarray(norms["grad_b_norm"]) * scale
        self._sum_w += np.asarray(norms["grad_w_norm"]) * scale
        self.samples += 1

    def speed_means(self):
        """(mean ‖∂C/∂b_l‖ per layer, mean ‖∂C/∂W_l‖ per layer) of the recorded steps; (None, None) if none."""
        if not self.samples:
            return None, None
        return (self._sum_b / self.samples).tolist(), (self._sum_w / self.samples).tolist()

    def group_done(self, rows_done: int, loss_sum: float) -> None:
        """The steps of rows [0, rows_done) are taken and their losses add up to ``loss_sum``."""
        running_loss = loss_sum / rows_done
        if not running_loss < self.divergence_limit:  # also true for NaN
            raise TrainingDiverged(
                f"training diverged in epoch {self.epoch}: the loss reached {running_loss:.4g} "
                f"(guessing scores {guessing_loss(self.model):.3g}); the learning rate {self.lr:g} is too large, "
                f"try a smaller --lr")
        self.batches_done = math.ceil(rows_done / self.batch_size)
        for callback in self.callbacks:
            callback.progress(self.epoch, self.batches_done, running_loss)
        self.control()

    def control(self) -> None:
        """Let the callbacks pause, stop, or change η or μ (:meth:`Callbacks.control`)."""
        for callback in self.callbacks:
            callback.control(self)

    def set_lr(self, lr: float) -> None:
        """Use η = ``lr`` from the next step on (the engines read it before each group of steps)."""
        if not lr > 0:
            raise ValueError(f"the learning rate must be above 0, got {lr}")
        self.lr = lr
        self.changes.append({"batch": self.batches_done, "lr": lr})

    def set_momentum(self, momentum: float) -> None:
        """SGD's μ (Adam's β1) from the next step on."""
        self.engine.set_momentum(momentum)
        self.changes.append({"batch": self.batches_done, "momentum": momentum})


class ReferenceEngine:
    """The readable engine: each step is the forward pass, the backward pass and the update, as written."""

    name = "reference"

    def __init__(self, model: MLP, settings: TrainSettings):
        self.model = model
        self.optimizer = make_optimizer(settings, model.weights, model.biases)

    def run_epoch(self, x: np.ndarray, y_onehot: np.ndarray, steps: EpochSteps) -> float:
        """One pass over the shuffled (x, Y) in mini-batches of η = ``steps.lr``; returns the mean training loss."""
        model, batch_size, loss_sum = self.model, steps.batch_size, 0.0
        for start, stop, sample_speed in steps.groups():
            lr = steps.lr
            for first in range(start, stop, batch_size):
                xb, yb = x[first:first + batch_size], y_onehot[first:first + batch_size]
                zs, activations = model.forward(xb)                               # forward
                loss_sum += model.loss_value(zs[-1], activations[-1], yb) * len(xb)
                grads = model.backward(activations, yb)                           # backward
                self.optimizer.step(grads.weights, grads.biases, lr)              # update
            if sample_speed:
                steps.record_speed(grads.weights, grads.biases)
            steps.group_done(stop, loss_sum)
        return loss_sum / len(x)

    def evaluate(self, x: np.ndarray, labels: np.ndarray):
        """(mean loss, predicted classes) over a data set."""
        return self.model.evaluate(x, labels)

    def set_momentum(self, momentum: float) -> None:
        """SGD's μ (Adam's β1), for the steps to come."""
        self.optimizer.set_momentum(momentum)


def train(model: MLP, data, settings: TrainSettings, engine, epoch_images, *, callbacks=(),
          first_epoch: int = 1) -> TrainResult:
    """Train ``model`` in place; leave it holding the parameters of its best validation epoch.

    ``data`` has ``train`` and ``validation`` splits, each an (x, labels) pair.
    ``engine`` runs the steps (:class:`ReferenceEngine` or the fast one);
    ``epoch_images`` hands out each epoch's shuffled training set, (x, Y) with
    ``next()``, and is closed at the end. Epochs are numbered from
    ``first_epoch``; above 1 the run continues a saved model, whose own
    validation accuracy is the one to beat. A Ctrl-C (KeyboardInterrupt) ends
    training cleanly: the result says ``interrupted`` and the model holds the best
    parameters seen (or the current ones if no epoch finished).
    """
    x_train, y_train = data.train
    x_val, y_val = data.validation
    batch_size = min(settings.batch_size, len(x_train))
    result = TrainResult()
    best = _snapshot(model)
    try:
        if first_epoch > 1:  # resuming: the model we were given is the one to beat
            _, predictions = engine.evaluate(x_val, y_val)
            result.best_val_accuracy = float(np.mean(predictions == y_val))
            result.best_epoch = first_epoch - 1
        fixed_x, fixed_y = x_train[:INITIAL_BATCH], y_train[:INITIAL_BATCH]
        result.initial_speed = batch_speed(model, fixed_x, fixed_y)
        epochs_without_improvement = 0
        try:
            for epoch in range(first_epoch, first_epoch + settings.epochs):
                started = time.perf_counter()
                lr = learning_rate(settings.schedule, settings.lr, epoch - first_epoch, settings.epochs,
                                   settings.step_size, settings.gamma, settings.min_lr)
                x, y_onehot = epoch_images.next()
                steps = EpochSteps(model, epoch, len(x), batch_size, lr, callbacks, engine)
                for callback in callbacks:
                    callback.epoch_started(epoch, steps.n_batches)
                steps.control()
                train_loss = engine.run_epoch(x, y_onehot, steps)
                val_loss, predictions = engine.evaluate(x_val, y_val)
                for callback in callbacks:
                    callback.validated(epoch, predictions)
                val_accuracy = float(np.mean(predictions == y_val))
                grad_b_norm, grad_w_norm = steps.speed_means()
                fixed = batch_speed(model, fixed_x, fixed_y)
                record = EpochRecord(epoch, train_loss, val_loss, val_accuracy, steps.lr,
                                     time.perf_counter() - started, grad_b_norm, grad_w_norm,
                                     fixed["grad_b_norm"], fixed["grad_w_norm"], steps.changes or None)
                result.history.append(record)
                improved = not (val_accuracy <= result.best_val_accuracy)  # the first epoch always counts
                if improved:
                    result.best_val_accuracy, result.best_epoch = val_accuracy, epoch
                    best = _snapshot(model)
                    epochs_without_improvement = 0
                else:
                    epochs_without_improvement += 1
                for callback in callbacks:
                    callback.epoch_ended(record, improved)
                if settings.early_stopping and epochs_without_improvement >= settings.early_stopping:
                    result.stopped_early = True
                    break
        except KeyboardInterrupt:
            result.interrupted = True
            if result.best_epoch == 0:
                best = _snapshot(model)
    finally:
        epoch_images.close()
        for callback in callbacks:
            callback.closed()
    _restore(model, best)
    return result


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
