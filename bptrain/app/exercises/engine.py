"""A training engine that runs the learner's own forward, backward and sgd_step.

It has :class:`bptrain.core.training.ReferenceEngine`'s interface and its shape, line for line, with the
workbook's functions where the core's stand: the same loop (:func:`bptrain.engines.train`), data, schedule
and files around it. Plain SGD (momentum 0, no weight decay): with the same seed and settings it ends with
the reference engine's weights.
"""

from __future__ import annotations

import traceback

import numpy as np

from ...core.epoch_steps import EpochSteps
from ...core.errors import SettingError
from ...core.network import MLP, PREDICT_CHUNK, one_hot
from ...core.optimizers import SGD
from .workbook import WorkbookError


class WorkbookEngine:
    """The readable engine with the learner's functions: forward, backward, update, as they wrote them."""

    name = "workbook"

    def __init__(self, model: MLP, functions: dict, filename: str, momentum: float = 0.0):
        self.model, self.functions, self.filename = model, functions, filename
        # The core's SGD object holds μ and the velocities (with plain SGD, none that matter), so that a
        # checkpoint records them as the reference engine keeps them and a stopped run continues exactly
        # with it. It never steps here: the workbook's sgd_step or momentum_step does.
        self.optimizer = SGD(model.weights, model.biases, momentum=momentum)

    def run_epoch(self, x: np.ndarray, y_onehot: np.ndarray, steps: EpochSteps) -> float:
        """One pass over the shuffled (x, Y) in mini-batches, at η = ``steps.lr``; returns the mean training loss."""
        model, batch_size, loss_sum = self.model, steps.batch_size, 0.0
        for group in steps.groups():
            for first in range(group.start, group.stop, batch_size):
                xb, yb = x[first:first + batch_size], y_onehot[first:first + batch_size]
                zs, activations = self._call("forward", xb, model.weights, model.biases)   # the learner's Z_l, A_l
                dWs, dbs = self._call("backward", zs, activations, yb, model.weights)     # ∂C/∂W_l, ∂C/∂b_l
                self._update(dWs, dbs, float(steps.lr))                                   # W_l ← the new W_l
                loss_sum += self._call("cross_entropy", zs[-1], yb) * len(xb)            # C of the batch, times B
            if group.sample_speed:
                steps.record_speed(dWs, dbs)
            steps.group_done(group.stop, loss_sum)
        return loss_sum / len(x)

    def evaluate(self, x: np.ndarray, labels: np.ndarray):
        """(mean loss, predicted classes) over a data set, with the learner's forward and cross_entropy."""
        model = self.model
        total, predictions = 0.0, np.empty(len(x), np.int64)
        for start in range(0, len(x), PREDICT_CHUNK):
            xb = np.asarray(x[start:start + PREDICT_CHUNK], model.dtype)
            zs, activations = self._call("forward", xb, model.weights, model.biases)
            y = one_hot(labels[start:start + len(xb)], model.sizes[-1], model.dtype)
            total += self._call("cross_entropy", zs[-1], y) * len(y)
            predictions[start:start + len(y)] = activations[-1].argmax(axis=1)
        return total / len(x), predictions

    def set_momentum(self, momentum: float) -> None:
        """μ for the steps to come (a run with the workbook's momentum_step; plain SGD has none to change)."""
        if not self.optimizer.momentum:
            raise SettingError("the workbook trains with plain SGD (its sgd_step): there is no momentum to change",
                               field="momentum")
        self.optimizer.set_momentum(momentum)

    def _update(self, dWs, dbs, lr: float) -> None:
        """The learner's update, its results put into the model's own arrays (the loop keeps and restores those)
        and, with momentum, the velocities into the optimizer's."""
        model, sgd = self.model, self.optimizer
        if not sgd.momentum:
            new = self._call("sgd_step", model.weights, model.biases, dWs, dbs, lr)     # θ − η g
            self._keep("sgd_step", new, [model.weights, model.biases])
            return
        new = self._call("momentum_step", model.weights, model.biases, dWs, dbs, sgd.velocity_w, sgd.velocity_b,
                         lr, float(sgd.momentum))                                       # v ← μv + η g; θ − v
        self._keep("momentum_step", new, [model.weights, model.biases, sgd.velocity_w, sgd.velocity_b])

    def _keep(self, name: str, returned, targets) -> None:
        parts = list(returned) if isinstance(returned, (tuple, list)) else []
        if len(parts) != len(targets) or any(len(list(p)) != len(t) for p, t in zip(parts, targets)):
            raise WorkbookError(f"the workbook's {name} returned something else than {len(targets)} lists of "
                                f"{len(targets[0])} arrays")
        for part, target in zip(parts, targets):
            for new, array in zip(part, target):
                if np.shape(new) != array.shape:
                    raise WorkbookError(f"the workbook's {name} returned an array of shape {np.shape(new)} where "
                                        f"{array.shape} was expected")
                array[...] = new

    def _call(self, name: str, *args):
        """The learner's function ``name``; what it raises on real data becomes one line naming it."""
        try:
            return self.functions[name](*args)
        except Exception as exc:  # the learner's code: say where, in one line
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == self.filename]
            where = f" (line {frames[-1].lineno}, in {frames[-1].name})" if frames else ""
            raise WorkbookError(f"the workbook's {name} raised {type(exc).__name__}: {exc}{where}; the check passed, "
                                "so this is something the real data meets and the check's small networks do not"
                                ) from None
