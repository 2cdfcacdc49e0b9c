"""The fast engine: the reference engine's epoch of steps, in preallocated buffers on tuned BLAS threads.

Same interface as :class:`bptrain.core.training.ReferenceEngine` (``run_epoch``,
``evaluate``), same results (the tests hold them equal); the training loop
around it is the core's. What it does differently, each in its own module:

- :mod:`.network`: forward and backward into workspaces, deltas times η;
- :mod:`.optimizers`: updates fused into gemm, rotm, axpy calls (:mod:`.blas`);
- :mod:`.threads`: how many BLAS threads the steps get, and whether a thread
  prepares the next epoch meanwhile (:mod:`.epoch_thread`);
- :mod:`.aligned`: every buffer on a cache line.
"""

from __future__ import annotations

import numpy as np

from ..core.optimizers import make_optimizer
from ..core.epoch_steps import EpochSteps
from ..core.training import TrainSettings
from . import blas
from . import threads
from .aligned import aligned_empty, aligned_zeros
from .epoch_thread import BackgroundEpochImages
from .network import FastNetwork
from .optimizers import NEGLIGIBLE_LR, SGD, Adam


class FastEngine:
    """Runs the steps of ``model``'s epochs at ``batch_size`` with ``settings``' optimizer.

    ``distorts``: the epochs are distorted, so their preparation is worth a core of its own.
    """

    name = "fast"
    #: Float arrays per parameter the optimizers keep: SGD's velocity; Adam's m, v and its flat gradient
    #: and step buffers (:mod:`.optimizers`).
    OPTIMIZER_ARRAYS = {"sgd": 1, "plain": 0, "adam": 4}
    #: Its workspaces are made once and live through every step and the evaluation (the memory estimate adds).
    KEEPS_WORKSPACES = True

    @classmethod
    def memory(cls, sizes, batch_size: int, optimizer: str, itemsize: int, group_rows: int) -> dict:
        """Bytes the engine allocates to train ``sizes`` at ``batch_size``, by what they hold: the optimizer's
        state, and per layer Z_l (then A_l in place), Δ_l and a scratch, with the rows a group's loss is read
        from (:class:`.network.Workspace`)."""
        params = sum(m * n + n for m, n in zip(sizes[:-1], sizes[1:]))
        return {"optimizer state": cls.OPTIMIZER_ARRAYS[optimizer] * params * itemsize,
                "per-batch workspace": (cls.activations(sizes, batch_size, 3)
                                        + group_rows * (sizes[-1] + 1)) * itemsize}

    @staticmethod
    def activations(sizes, rows: int, kept: int) -> int:
        """Floats of ``kept`` arrays of every layer's width for ``rows`` rows (evaluation keeps 1, a step 3)."""
        return kept * rows * sum(sizes[1:])

    def __init__(self, model, settings: TrainSettings, batch_size: int, distorts: bool = False):
        self.network = FastNetwork(model)  # first: it moves the parameters onto cache lines
        self.model = model
        self.optimizer = make_optimizer(settings, model.weights, model.biases, sgd=SGD, adam=Adam)
        self.batch_size = batch_size
        kind = self.optimizer.update_kind
        self.step_threads = threads.step_threads(model.sizes, batch_size, kind, distorts)
        self.background = threads.epoch_thread(model.sizes, batch_size, kind, distorts)
        self._images: BackgroundEpochImages | None = None
        self._grad_w = [aligned_empty(w.shape, w.dtype) for w in model.weights]  # for the learning speed
        self._grad_b = [aligned_empty(b.shape, b.dtype) for b in model.biases]

    def epoch_images(self, x, labels, rng, epochs: int, *, shift: int = 0, distorter=None,
                     buffers=None) -> BackgroundEpochImages:
        """The epochs' images for these steps: on cache lines, prepared ahead when a core is free."""
        n_classes, dtype = self.model.sizes[-1], self.model.dtype
        if buffers is None:
            buffers = aligned_empty((len(x), x.shape[1]), dtype), aligned_zeros((len(x), n_classes), dtype)
        self._images = BackgroundEpochImages(x, labels, n_classes, dtype, rng, epochs, shift=shift,
                                             distorter=distorter, buffers=buffers, background=self.background)
        return self._images

    def run_epoch(self, x: np.ndarray, y_onehot: np.ndarray, steps: EpochSteps) -> float:
        """The core's ``ReferenceEngine.run_epoch``: one pass in mini-batches; returns the mean training loss."""
        network, optimizer, batch_size = self.network, self.optimizer, steps.batch_size
        prepared = self._images if self._images is not None and self._images.x is x else None
        work = network.workspace(batch_size)
        # Each step leaves its output layer in these rows; the loss of a whole group of
        # steps is then one computation (FastNetwork.loss_sum) instead of three small ones per step.
        group_rows = steps.batches_per_group * batch_size
        outputs = aligned_empty((group_rows, self.model.sizes[-1]), self.model.dtype)
        row_sums = aligned_empty((group_rows, 1), self.model.dtype)
        loss_sum = 0.0
        # exp overflows to inf in saturated sigmoids (harmless: σ = 0 there); a diverging
        # run makes NaNs, which EpochSteps.group_done reports in one clear line.
        with np.errstate(over="ignore", under="ignore", invalid="ignore"), blas.threads_at_most(self.step_threads):
            if hasattr(optimizer, "prepare"):
                optimizer.prepare(blas.threads())  # momentum's form for this many threads (optimizers.SGD)
            for start, stop, sample_speed in steps.groups():
                lr = steps.lr
                if prepared is not None:
                    prepared.wait_for(stop)
                for first in range(start, stop, batch_size):
                    xb, yb = x[first:first + batch_size], y_onehot[first:first + batch_size]
                    step_work = work if len(xb) == batch_size else work.first_rows(len(xb))
                    row = first - start
                    output = outputs[row:row + len(xb)], row_sums[row:row + len(xb)]
                    activations = network.forward(xb, step_work, output)           # forward
                    deltas = network.backward(activations, yb, step_work, lr)      # backward, ηΔ_l
                    optimizer.step(activations, deltas, step_work, lr)             # update
                if sample_speed:
                    self._record_speed(steps, activations, deltas, step_work, lr)
                rows = stop - start
                loss_sum += network.loss_sum(outputs[:rows], row_sums[:rows], y_onehot[start:stop])
                if prepared is not None:
                    prepared.release(stop)
                steps.group_done(stop, loss_sum)
        return loss_sum / len(x)

    def _record_speed(self, steps: EpochSteps, activations, deltas, work, lr: float) -> None:
        """∂C/∂W_l = A_{l-1}ᵀ Δ_l and ∂C/∂b_l = Σ_rows Δ_l of the group's last step, from its ηΔ_l."""
        if lr < NEGLIGIBLE_LR:  # deltas scaled by such an η have underflowed: no gradient to measure
            return
        for l, delta in enumerate(deltas):
            blas.matmul_at_b(activations[l], delta, self._grad_w[l])     # η ∂C/∂W_l
            np.matmul(work.ones, delta, out=self._grad_b[l])             # η ∂C/∂b_l
        steps.record_speed(self._grad_w, self._grad_b, scale=1.0 / lr)

    def evaluate(self, x: np.ndarray, labels: np.ndarray):
        """(mean loss, predicted classes) over a data set."""
        return self.network.evaluate(x, labels)

    def set_momentum(self, momentum: float) -> None:
        """SGD's μ (Adam's β1), for the steps to come."""
        self.optimizer.set_momentum(momentum)
