"""The training loop: epochs of mini-batch steps, validation, history, early stopping.

The loop is written once, for both engines. An engine runs the steps of one
epoch (:class:`ReferenceEngine` here: forward, backward, update, in three
lines; :class:`bptrain.fast.FastEngine`: the same in preallocated buffers) and
evaluates the network; everything else is here. What happens around the steps
(reporting, the divergence check, learning-speed samples, knobs) is
:mod:`.epoch_steps`. Each epoch's training set comes in a new random order
(:class:`ShuffledEpochs`), or ready from the data side, which can also shift,
distort and prepare it ahead (:mod:`bptrain.data.epochs`). The loop prints
nothing: it tells its :class:`Callbacks`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .epoch_steps import EpochSteps
from .learning_speed import INITIAL_BATCH, batch_speed
from .network import MLP, one_hot
from .optimizers import DEFAULT_LR, OPTIMIZERS, make_optimizer
from .schedules import learning_rate


#: The settings that distort the training images (all 0: none; bptrain.data.distort).
DISTORTION_SETTINGS = ("elastic_alpha", "affine_rotate", "affine_scale", "affine_shear", "affine_shift")


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


@dataclass
class LoopState:
    """Where a run stands at the end of ``epoch``: everything the loop needs to go on exactly from there.

    ``optimizer`` is the optimizer's :meth:`state` and ``rng`` the random generator's state that the
    next epoch's preparation starts from (None where the epochs' source keeps none); the arrays are the
    live ones, so a checkpoint writes them before the next step.
    """

    epoch: int
    best_epoch: int
    best_val_accuracy: float
    best: tuple  # the best epoch's ([W_l], [b_l])
    epochs_without_improvement: int
    history: list
    initial_speed: dict | None
    optimizer: dict | None = None
    rng: dict | None = None


class Callbacks:
    """What the loop tells its caller. Override what you need; every method is optional."""

    def epoch_started(self, epoch: int, n_batches: int) -> None:
        """An epoch of ``n_batches`` steps begins."""

    def progress(self, epoch: int, batches_done: int, running_loss: float) -> None:
        """Up to :data:`UPDATES_PER_EPOCH` times per epoch, between steps."""

    def control(self, steps: EpochSteps) -> None:
        """Before an epoch's first step and after each progress report: may wait (pause), raise
        KeyboardInterrupt (stop: the best model is kept), or change the learning rate or the
        momentum with ``steps.set_lr`` / ``steps.set_momentum``, from the next step on."""

    def validated(self, epoch: int, predictions: np.ndarray) -> None:
        """The classes the network predicts for the validation images at the end of ``epoch`` (read only;
        the page's confusion matrix comes from them, without a second pass over the data)."""

    def epoch_state(self, state: LoopState) -> None:
        """The run's whole state at the end of an epoch, before the epoch is reported: a checkpoint."""

    def epoch_ended(self, record: EpochRecord, improved: bool) -> None:
        """After validation; ``improved``: this epoch is the best so far."""

    def closed(self) -> None:
        """Training is over (finished, stopped early, interrupted or failed)."""


class ShuffledEpochs:
    """Each epoch's training set in a new random order: a permutation, then (x, Y) gathered in that order.

    The plain way to feed the loop from arrays. The data side's :class:`bptrain.data.epochs.EpochImages`
    draws the same permutation from the same generator, and adds shifts, distortions and preparing ahead.
    """

    def __init__(self, x: np.ndarray, labels: np.ndarray, n_classes: int, dtype, rng: np.random.Generator):
        self.training_set = x, labels  # as given: what the loop's fixed batch is taken from
        self.x, self.labels, self.n_classes, self.rng = np.asarray(x, dtype), labels, n_classes, rng

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        order = self.rng.permutation(len(self.x))
        return self.x[order], one_hot(self.labels[order], self.n_classes, dtype=self.x.dtype)

    def rng_state(self) -> dict:
        """The generator's state that the next epoch starts from."""
        return self.rng.bit_generator.state

    def close(self) -> None:
        """Nothing to stop."""


class ReferenceEngine:
    """The readable engine: each step is the forward pass, the backward pass and the update, as written."""

    name = "reference"

    def __init__(self, model: MLP, settings: TrainSettings):
        self.model = model
        self.optimizer = make_optimizer(settings, model.weights, model.biases)

    def run_epoch(self, x: np.ndarray, y_onehot: np.ndarray, steps: EpochSteps) -> float:
        """One pass over the shuffled (x, Y) in mini-batches, at η = ``steps.lr``; returns the mean training loss."""
        model, batch_size, loss_sum = self.model, steps.batch_size, 0.0
        for group in steps.groups():
            for first in range(group.start, group.stop, batch_size):
                xb, yb = x[first:first + batch_size], y_onehot[first:first + batch_size]
                zs, activations = model.forward(xb)                          # Z_l = A_{l-1} W_l + b_l, A_l = f(Z_l)
                grads = model.backward(activations, yb)                      # Δ_l; ∂C/∂W_l = A_{l-1}ᵀ Δ_l; ∂C/∂b_l
                self.optimizer.step(grads.weights, grads.biases, steps.lr)   # W_l -= η ∂C/∂W_l (+ momentum, decay)
                loss_sum += model.loss_value(zs[-1], activations[-1], yb) * len(xb)  # C of the batch, times B
            if group.sample_speed:
                steps.record_speed(grads.weights, grads.biases)              # ‖∂C/∂W_l‖, ‖∂C/∂b_l‖ now and then
            steps.group_done(group.stop, loss_sum)                           # report; divergence; the knobs
        return loss_sum / len(x)

    def evaluate(self, x: np.ndarray, labels: np.ndarray):
        """(mean loss, predicted classes) over a data set."""
        return self.model.evaluate(x, labels)

    def set_momentum(self, momentum: float) -> None:
        """SGD's μ (Adam's β1), for the steps to come."""
        self.optimizer.set_momentum(momentum)

    #: Float arrays per parameter each update rule keeps (v; Adam's m and v), and the arrays of a layer's
    #: size its formulas make while they run (v = μv + g + λW: two beside v; Adam's step: four).
    OPTIMIZER_ARRAYS = {"sgd": 1, "plain": 0, "adam": 2}
    UPDATE_TEMPORARIES = {"sgd": 2, "plain": 2, "adam": 4}
    #: A step's arrays are made and dropped again: the memory estimate counts the largest such moment once.
    KEEPS_WORKSPACES = False

    @classmethod
    def memory(cls, sizes, batch_size: int, optimizer: str, itemsize: int, group_rows: int) -> dict:
        """Bytes a step allocates, by what they hold (for the memory estimate): the optimizer's state;
        Z_l, A_l and Δ_l per layer, ∂C/∂W_l and ∂C/∂b_l, the update's temporaries and the loss's rows."""
        layers = [m * n + n for m, n in zip(sizes[:-1], sizes[1:])]
        arrays = (cls.activations(sizes, batch_size, 3) + sum(layers)
                  + cls.UPDATE_TEMPORARIES[optimizer] * max(layers) + group_rows * (sizes[-1] + 1))
        return {"optimizer state": cls.OPTIMIZER_ARRAYS[optimizer] * sum(layers) * itemsize,
                "per-step arrays": arrays * itemsize}

    @staticmethod
    def activations(sizes, rows: int, kept: int) -> int:
        """Floats of ``kept`` arrays of every layer's width for ``rows`` rows, and the forward pass's temporaries."""
        return kept * rows * sum(sizes[1:]) + 2 * rows * max(sizes)


def train(model: MLP, data, settings: TrainSettings, engine=None, epoch_images=None, *, callbacks=(),
          first_epoch: int = 1, resume: LoopState | None = None) -> TrainResult:
    """Train ``model`` in place; leave it holding the parameters of its best validation epoch.

    ``data``: ((x_train, labels_train), (x_val, labels_val)), or anything with ``train`` and
    ``validation`` pairs (a :class:`bptrain.Dataset`). ``engine`` runs the steps
    (:class:`ReferenceEngine` when None, or the fast one); ``epoch_images`` hands out each epoch's
    shuffled training set, (x, Y) with ``next()``, holds the set it draws from as ``training_set``
    (then ``data``'s training pair is not read), and is closed at the end (when None:
    :class:`ShuffledEpochs` from ``settings.seed``). Epochs are numbered from ``first_epoch``; above 1
    the run continues a saved model, whose own validation accuracy is the one to beat. A Ctrl-C
    (KeyboardInterrupt) ends training cleanly: the result says ``interrupted`` and the model holds the
    best parameters seen (or the current ones if no epoch finished). ``resume``: a run's :class:`LoopState`
    to go on from exactly (the model, the optimizer and ``epoch_images`` already restored to it).
    """
    x_val, y_val = data.validation if hasattr(data, "validation") else data[1]
    if epoch_images is None:  # the plain way: the training set in a new order each epoch
        epoch_images = ShuffledEpochs(*(data.train if hasattr(data, "train") else data[0]), model.sizes[-1],
                                      model.dtype, np.random.default_rng(settings.seed))
    x_train, y_train = epoch_images.training_set
    batch_size = min(settings.batch_size, len(x_train))
    engine = engine if engine is not None else ReferenceEngine(model, settings)
    result = TrainResult()
    best = _snapshot(model)
    fixed_x, fixed_y = x_train[:INITIAL_BATCH], y_train[:INITIAL_BATCH]
    epochs_without_improvement, next_epoch = 0, first_epoch
    try:
        if resume is not None:  # going on exactly where a run stood
            result = TrainResult(list(resume.history), resume.best_epoch, resume.best_val_accuracy,
                                 initial_speed=resume.initial_speed)
            best, epochs_without_improvement = resume.best, resume.epochs_without_improvement
            next_epoch = resume.epoch + 1
        else:
            if first_epoch > 1:  # continuing a saved model: it is the one to beat
                _, predictions = engine.evaluate(x_val, y_val)
                result.best_val_accuracy = float(np.mean(predictions == y_val))
                result.best_epoch = first_epoch - 1
            result.initial_speed = batch_speed(model, fixed_x, fixed_y)
        try:
            for epoch in range(next_epoch, first_epoch + settings.epochs):
                started = time.perf_counter()
                lr = learning_rate(settings.schedule, settings.lr, epoch - first_epoch, settings.epochs,
                                   settings.step_size, settings.gamma, settings.min_lr)
                x, y_onehot = epoch_images.next()                       # this epoch's order (and distortions)
                steps = EpochSteps(model, epoch, len(x), batch_size, lr, callbacks, engine)
                for callback in callbacks:
                    callback.epoch_started(epoch, steps.n_batches)
                steps.control()
                train_loss = engine.run_epoch(x, y_onehot, steps)       # the steps
                val_loss, predictions = engine.evaluate(x_val, y_val)   # validation
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
                if improved:                                            # keep the best
                    result.best_val_accuracy, result.best_epoch = val_accuracy, epoch
                    best = _snapshot(model)
                    epochs_without_improvement = 0
                else:
                    epochs_without_improvement += 1
                if callbacks:
                    state = LoopState(epoch, result.best_epoch, result.best_val_accuracy, best,
                                      epochs_without_improvement, result.history, result.initial_speed,
                                      _optimizer_state(engine), _rng_state(epoch_images))
                    for callback in callbacks:
                        callback.epoch_state(state)
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
    restore(model, best)
    return result


def _optimizer_state(engine):
    optimizer = getattr(engine, "optimizer", None)
    return optimizer.state() if optimizer is not None else None


def _rng_state(epoch_images):
    return epoch_images.rng_state() if hasattr(epoch_images, "rng_state") else None


def _snapshot(model: MLP):
    return [w.copy() for w in model.weights], [b.copy() for b in model.biases]


def restore(model: MLP, snapshot) -> None:
    """Put ``snapshot``'s ([W_l], [b_l]) back into the model's own arrays."""
    for param, saved in zip(model.weights + model.biases, snapshot[0] + snapshot[1]):
        param[...] = saved
