"""What happens around the steps of an epoch: reporting, the divergence check, learning-speed samples, knobs.

The step itself (forward, backward, update) is the engine's. Around it the loop
wants to hear, now and then, how the epoch goes; :class:`EpochSteps` cuts the
epoch into groups of batches (about 1/:data:`UPDATES_PER_EPOCH` of it each) and,
after each group, checks the running loss for divergence, tells the callbacks,
and lets them pause, stop or turn the knobs (η, μ). Once every few groups it
keeps the last step's gradient norms (:mod:`.learning_speed`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .errors import TrainingDiverged
from .learning_speed import SAMPLES_PER_EPOCH, gradient_norms

#: The progress callback and the divergence check run at most this many times per epoch,
#: so their cost does not grow with the number of batches (50,000 at batch size 1).
UPDATES_PER_EPOCH = 100
#: Training has diverged when the running loss is this many times the loss of
#: guessing (uniform outputs): far past anything a learning network produces.
DIVERGENCE_FACTOR = 100.0


class Group(NamedTuple):
    """Rows [start, stop) of the epoch: a group of batches; ``sample_speed``: record its last step's gradients."""

    start: int
    stop: int
    sample_speed: bool


class EpochSteps:
    """One epoch's plan for an engine: its groups of batches, and what the loop wants to hear.

    An engine runs the batches of each of :meth:`groups` in order, then tells :meth:`group_done`
    the loss summed so far (which checks for divergence, reports progress and lets the callbacks
    turn the knobs), and, for a group whose ``sample_speed`` is set (at most :data:`SAMPLES_PER_EPOCH`
    of them), first hands its last step's gradients to :meth:`record_speed`.
    """

    def __init__(self, model, epoch: int, n_samples: int, batch_size: int, lr: float, callbacks=(),
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
        """Each :class:`Group` of the epoch's batches, in order."""
        group_rows = self.batches_per_group * self.batch_size
        for index, start in enumerate(range(0, self.n_samples, group_rows)):
            yield Group(start, min(start + group_rows, self.n_samples), index % self.groups_per_sample == 0)

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


def guessing_loss(model) -> float:
    """The loss of a network that knows nothing: uniform softmax (ce) or outputs of ½ (mse)."""
    n_classes = model.sizes[-1]
    if model.loss == "ce":
        return max(math.log(n_classes), math.log(2))
    return 0.125 * n_classes  # ½‖a − y‖² with every a_j = ½
