"""The fast engine: the reference engine's epoch of steps, in preallocated buffers on tuned BLAS threads.

Same interface as :class:`bptrain.core.training.ReferenceEngine` (``run_epoch``,
``evaluate``), same results (the tests hold them equal); the training loop
around it is the core's. What it does differently, each in its own module:

- :mod:`.network`: forward and backward into workspaces, deltas times η;
- :mod:`.optimizers`: updates fused into gemm, rotm, axpy calls (:mod:`.blas`);
- :mod:`.threads`: how many BLAS threads the steps get (on a busy machine: one
  or several, whichever is faster now, or one while other processes hold the
  cores, :mod:`.machine_load`), and whether a thread prepares the next epoch
  meanwhile (:mod:`.epoch_thread`);
- :mod:`.piecewise`: long products summed in fixed pieces, so that the numbers
  are the same whichever count the steps run on;
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
from .machine_load import OtherProcesses
from .network import FastNetwork
from .piecewise import same_bits
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
        self.several_threads = threads.several_threads(model.sizes, batch_size, kind, distorts)
        if hasattr(self.optimizer, "prepare"):
            self.optimizer.prepare(self.several_threads)  # momentum's form, for the whole run (optimizers.SGD)
        self.most_threads = self.step_threads or threads.most_threads()
        # Steps that would use several threads follow the load, once the first probe has seen
        # one thread and several give the same bits (_bits_agree); the rest keep their count.
        adapts = self.step_threads is None and self.most_threads > 1 and blas.can_set_threads()
        self.policy = (threads.ThreadPolicy(self.most_threads, others=OtherProcesses().busy) if adapts
                       else threads.FixedThreads(self.most_threads))
        self._checked = not adapts
        self._running = self.policy.current  # the steps' count now (a probe's, during one)
        self._first_epoch_ready = False
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
                                             distorter=distorter, buffers=buffers, background=self.background,
                                             threads=lambda: self.policy.current, gate=self._core_free)
        return self._images

    def _core_free(self) -> bool:
        """Whether the epoch thread may work beside the steps now: not while they adapt and run on several
        threads, nor during a probe (a chunk begun then would go on beside the steps after it; a probe of
        one thread is thus a little fast, which the first group after a move corrects)."""
        return not self.policy.adapts or max(self._running, self.policy.current) == 1

    def run_epoch(self, x: np.ndarray, y_onehot: np.ndarray, steps: EpochSteps) -> float:
        """The core's ``ReferenceEngine.run_epoch``: one pass in mini-batches; returns the mean training loss."""
        network, batch_size = self.network, steps.batch_size
        prepared = self._images if self._images is not None and self._images.x is x else None
        work = network.workspace(batch_size)
        # Each step leaves its output layer in these rows; the loss of a whole group of
        # steps is then one computation (FastNetwork.loss_sum) instead of three small ones per step.
        group_rows = steps.batches_per_group * batch_size
        outputs = aligned_empty((group_rows, self.model.sizes[-1]), self.model.dtype)
        row_sums = aligned_empty((group_rows, 1), self.model.dtype)
        loss_sum = 0.0
        policy = self.policy
        clock = policy.clock
        step = self._steps
        # exp overflows to inf in saturated sigmoids (harmless: σ = 0 there); a diverging
        # run makes NaNs, which EpochSteps.group_done reports in one clear line.
        with np.errstate(over="ignore", under="ignore", invalid="ignore"), blas.threads_at_most(self.most_threads):
            blas.set_threads(policy.current)
            for start, stop, sample_speed in steps.groups():
                lr = steps.lr
                if prepared is not None:
                    prepared.wait_for(stop)
                first = start
                # the steps start on one thread, beside the epoch thread, until it has the first epoch ready
                ready = prepared is None or self._first_epoch_ready or prepared.first_epoch_prepared()
                self._first_epoch_ready = ready
                if (stop - start) // batch_size >= 2 and ready and policy.probe_due():  # threads.ThreadPolicy
                    if prepared is not None:
                        policy.serial_per_row = prepared.serial_seconds_per_row()
                    first = self._probe(x, y_onehot, start, stop, lr, outputs, row_sums, work)
                    policy = self.policy  # the first probe may fix the count
                if first < stop:
                    began = clock()
                    step(x, y_onehot, first, stop, lr, outputs, row_sums, work, start)
                    if 2 * (stop - first) >= stop - start:  # what a long probe leaves is too short to judge
                        policy.record(stop - first, clock() - began)
                if sample_speed:
                    self._record_speed(steps, *self._last_step, lr)
                rows = stop - start
                loss_sum += network.loss_sum(outputs[:rows], row_sums[:rows], y_onehot[start:stop])
                if prepared is not None:
                    prepared.release(stop)
                steps.group_done(stop, loss_sum)
        return loss_sum / len(x)

    def _steps(self, x, y_onehot, begin: int, end: int, lr: float, outputs, row_sums, work, group_start: int):
        """The steps over rows [begin, end) of the epoch, each leaving its outputs in the group's rows.

        A partial last batch runs on one thread whatever the policy: its shapes are checked by no probe.
        """
        network, optimizer, batch_size = self.network, self.optimizer, self.batch_size
        for first in range(begin, end, batch_size):
            xb, yb = x[first:min(first + batch_size, end)], y_onehot[first:min(first + batch_size, end)]
            step_work = work
            if len(xb) != batch_size:
                step_work = work.first_rows(len(xb))
                blas.set_threads(1)
            row = first - group_start
            output = outputs[row:row + len(xb)], row_sums[row:row + len(xb)]
            activations = network.forward(xb, step_work, output)           # forward
            deltas = network.backward(activations, yb, step_work, lr)      # backward, ηΔ_l
            optimizer.step(activations, deltas, step_work, lr)             # update
            if step_work is not work:
                blas.set_threads(self.policy.current)
        self._last_step = activations, deltas, step_work

    def _probe(self, x, y_onehot, start: int, stop: int, lr: float, outputs, row_sums, work) -> int:
        """Steps of the group [start, stop) on the policy's other count until its full batches are done or
        that count is clearly slower; tells the policy; returns the row after the probe's steps."""
        policy, clock, batch_size = self.policy, self.policy.clock, self.batch_size
        first, last = start, start + (stop - start) // batch_size * batch_size
        self._running = policy.other  # shuts the epoch thread's gate for several threads
        if policy.other > 1 and self._images is not None and self._images.x is x:
            self._images.between_chunks()  # time the steps as they would run: the epoch thread waiting
        if not self._checked:
            if not self._bits_agree(x, y_onehot, first, lr, outputs, row_sums, work, start):
                return first + batch_size
            first += batch_size  # that step ran on the other count last: the probe's first, untimed
        blas.set_threads(policy.other)
        began, rows = clock(), 0
        while first < last:
            self._steps(x, y_onehot, first, first + batch_size, lr, outputs, row_sums, work, start)
            first += batch_size
            rows += batch_size
            if policy.clear(clock() - began, rows):  # no need to lose more time on the slower count
                break
        if rows:
            policy.probed((clock() - began) / rows, rows)
        self._running = policy.current
        blas.set_threads(policy.current)
        return first

    def _bits_agree(self, x, y_onehot, first: int, lr: float, outputs, row_sums, work, group_start: int) -> bool:
        """Whether one step gives the same bits on one thread and on the policy's other count.

        Why: the pieces of the long products (piecewise.PiecewiseProduct) are sized for the kernels
        measured, and another BLAS may still sum a shape differently on one and several threads.
        So the step at ``first`` runs on one thread, then again from the same state on the other
        count; only if every parameter and optimizer array comes out bit for bit the same may
        the count follow the load. Otherwise the run keeps one thread and that step's one-thread
        state: the numbers of a run on one thread, whenever the check ran.
        """
        state = self.model.weights + self.model.biases + self.optimizer.step_arrays()
        before = [a.copy() for a in state]
        counter = getattr(self.optimizer, "t", None)
        blas.set_threads(1)
        self._steps(x, y_onehot, first, first + self.batch_size, lr, outputs, row_sums, work, group_start)
        one_thread = [a.copy() for a in state]
        for array, saved in zip(state, before):
            array[...] = saved
        if counter is not None:
            self.optimizer.t = counter
        blas.set_threads(self.policy.other)
        self._steps(x, y_onehot, first, first + self.batch_size, lr, outputs, row_sums, work, group_start)
        self._checked = True
        if all(same_bits(a, b) for a, b in zip(one_thread, state)):
            return True
        for array, kept in zip(state, one_thread):
            array[...] = kept
        self.policy = threads.FixedThreads(1)
        self._running = 1
        blas.set_threads(1)
        return False

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
        with blas.threads_at_most(self.policy.current):
            return self.network.evaluate(x, labels)

    def set_momentum(self, momentum: float) -> None:
        """SGD's μ (Adam's β1), for the steps to come."""
        self.optimizer.set_momentum(momentum)
