"""The fast engine: the reference engine's epoch of steps, in preallocated buffers on tuned BLAS threads.

Same interface and results as :class:`bptrain.core.training.ReferenceEngine`. What differs, by module:
:mod:`.network` (workspaces, deltas times η), :mod:`.optimizers` (updates fused into :mod:`.blas`
calls), :mod:`.threads` (the steps' BLAS threads, and whether :mod:`.epoch_thread` prepares the next
epoch meanwhile), :mod:`.same_bits` (the same numbers on any count), :mod:`.aligned` (cache lines).
"""

from __future__ import annotations

import numpy as np

from ..core.epoch_steps import EpochSteps
from ..core.optimizers import make_optimizer
from ..core.training import TrainSettings
from ..data.epochs import EpochImages
from . import blas
from .aligned import aligned_empty
from .epoch_thread import BackgroundEpochImages
from .network import FastNetwork
from .optimizers import NEGLIGIBLE_LR, SGD, Adam
from .threads import StepThreads


class FastEngine:
    """Runs the steps of ``model``'s epochs at ``batch_size`` with ``settings``' optimizer (``distorts``: the
    epochs are distorted, so their preparation is worth a core of its own)."""

    name = "fast"
    #: Float arrays per parameter the optimizers keep: SGD's velocity; Adam's m, v and its flat gradient
    #: and step buffers (:mod:`.optimizers`).
    OPTIMIZER_ARRAYS = {"sgd": 1, "plain": 0, "adam": 4}
    #: Its workspaces are made once and live through every step and the evaluation (the memory estimate adds).
    KEEPS_WORKSPACES = True

    @classmethod
    def memory(cls, sizes, batch_size: int, optimizer: str, itemsize: int, group_rows: int) -> dict:
        """Bytes the engine allocates to train ``sizes`` at ``batch_size``: the optimizer's state, and per layer
        Z_l (then A_l), Δ_l and a scratch (:class:`.network.Workspace`), with the rows a group's loss is read from."""
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
        self.threads = StepThreads(model.sizes, batch_size, self.optimizer, model.weights + model.biases, distorts)
        if hasattr(self.optimizer, "prepare"):
            self.optimizer.prepare(self.threads.several_when_quiet)  # momentum's form, for the whole run
        self._images: BackgroundEpochImages | None = None
        self._grad_w = [aligned_empty(w.shape, w.dtype) for w in model.weights]  # for the learning speed
        self._grad_b = [aligned_empty(b.shape, b.dtype) for b in model.biases]

    def prepare_ahead(self, images: EpochImages) -> BackgroundEpochImages:
        """``images``' epochs, prepared ahead in a thread when a core is free for it."""
        self._images = BackgroundEpochImages(images, background=self.threads.epoch_thread,
                                             threads=lambda: self.threads.count, gate=self.threads.may_prepare)
        return self._images

    def run_epoch(self, x: np.ndarray, y_onehot: np.ndarray, steps: EpochSteps) -> float:
        """The core's ``ReferenceEngine.run_epoch``: one pass in mini-batches; returns the mean training loss."""
        network, optimizer, batch_size = self.network, self.optimizer, steps.batch_size
        prepared = self._images if self._images is not None and self._images.x is x else None
        work = network.workspace(batch_size)
        # Each step leaves its output layer in these rows: one loss computation per group (FastNetwork.loss_sum).
        group_rows = steps.batches_per_group * batch_size
        outputs = aligned_empty((group_rows, self.model.sizes[-1]), self.model.dtype)
        row_sums = aligned_empty((group_rows, 1), self.model.dtype)
        loss_sum = 0.0
        # exp overflows to inf in saturated sigmoids (harmless: σ = 0 there); a diverging
        # run makes NaNs, which EpochSteps.group_done reports in one clear line.
        with np.errstate(over="ignore", under="ignore", invalid="ignore"), self.threads.steps():
            for group in steps.groups():
                lr, start, stop = steps.lr, group.start, group.stop
                if prepared is not None:
                    prepared.wait_for(stop)                                    # the group's images are ready

                def step(first, end):                                          # one batch of the group's rows
                    xb, yb, row = x[first:end], y_onehot[first:end], first - start
                    batch = work if end - first == batch_size else work.first_rows(end - first)
                    output = outputs[row:row + end - first], row_sums[row:row + end - first]
                    activations = network.forward(xb, batch, output)           # forward, Z_L into the group's rows
                    deltas = network.backward(activations, yb, batch, lr)      # backward, ηΔ_l
                    optimizer.step(activations, deltas, batch, lr)             # update
                    self._last_step = activations, deltas, batch

                self.threads.run(step, start, stop, batch_size, prepared)      # on the count chosen now
                if group.sample_speed:
                    self._record_speed(steps, *self._last_step, lr)
                loss_sum += network.loss_sum(outputs[:stop - start], row_sums[:stop - start], y_onehot[start:stop])
                if prepared is not None:
                    prepared.release(stop)                                     # the next epoch may use its rows
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
        """(mean loss, predicted classes) over a data set, on the threads the steps found fastest."""
        with blas.threads_at_most(self.threads.count):
            return self.network.evaluate(x, labels)

    def set_momentum(self, momentum: float) -> None:
        """SGD's μ (Adam's β1), for the steps to come."""
        self.optimizer.set_momentum(momentum)
