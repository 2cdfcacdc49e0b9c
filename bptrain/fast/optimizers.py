"""The core's update rules (:mod:`bptrain.core.optimizers`), fused into few passes over memory.

The deltas come in times η, so plain SGD's update of a layer is one gemm that adds the product into
the weights, W ← W − A_{l-1}ᵀ(ηΔ_l). Each class computes what its namesake in the core computes.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.optimizers import check_adam, check_new_momentum, check_sgd
from .aligned import aligned_empty, aligned_zeros
from .blas import Axpby, Axpy, PairUpdate, PreparedGemmAtB

#: Below this η float32 deltas times η underflow, so no gradient can be recovered from them: Adam skips
#: such steps (they would move no parameter by more than ~η) and the speed recorder ignores them.
NEGLIGIBLE_LR = 1e-30


class SGD:
    """Mini-batch SGD with optional momentum (classical or Nesterov) and L2 weight decay.

    With g = A_{l-1}ᵀ(ηΔ_l) (for b_l: Σ_rows ηΔ_l), momentum μ, velocity v and L2 coefficient λ (weights
    only), as PyTorch's SGD with the learning rate inside the velocity::

        plain:      W ← (1 − ηλ) W − g
        classical:  v ← μ v + g + ηλ W;     W ← W − v
        Nesterov:   v ← μ v + g + ηλ W;     W ← (1 − ηλ) W − g − μ v

    g is never stored: gemm adds it into W or v as it forms it. Momentum has two forms, each faster on
    its number of BLAS threads; they round differently, so :meth:`prepare` picks one for the whole run,
    from the threads the steps would use on a quiet machine. One thread (:meth:`_update`): the arrays
    hold s = μv, the gemm only adds (β = 1), and one rotm pass (:class:`PairUpdate`) maps the old
    (s, W) to the new. Several threads (:meth:`_update_split`): the arrays hold v, and every operation
    is a gemm or an axpy, which OpenBLAS splits between its threads alike (docs/fast-engine.md).
    """

    def __init__(self, weights, biases, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        check_sgd(momentum, nesterov, weight_decay)
        self.weights = list(weights)
        self.biases = [b.reshape(1, -1) for b in biases]  # (1, n) views: a bias is a one-row weight matrix
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.split = False  # whether the velocity arrays hold v (several threads) rather than s = μv
        params = self.weights + self.biases  # W_1..W_L, then b_1..b_L
        scratch = [aligned_empty(p.shape, p.dtype) for p in params]  # used only where NumPy does an update
        self._into_param = [PreparedGemmAtB(p, s) for p, s in zip(params, scratch)]
        if momentum:
            # s = μv (one thread) or v (several) for each W_l and b_l
            self.velocity_w = [aligned_zeros(w.shape, w.dtype) for w in self.weights]  # bptrain.fast.aligned
            self.velocity_b = [aligned_zeros(b.shape, b.dtype) for b in self.biases]
            velocities = self.velocity_w + self.velocity_b
            self._into_velocity = [PreparedGemmAtB(v, s) for v, s in zip(velocities, scratch)]
            self._velocity_and_param = [PairUpdate(v, p, s) for v, p, s in zip(velocities, params, scratch)]
            self._param_into_velocity = [Axpy(p, v) for v, p in zip(velocities, params)]
            self._velocity_into_param = [Axpy(v, p) for v, p in zip(velocities, params)]

    #: How its update uses the cores (bptrain.fast.threads): plain SGD is one gemm, momentum gemm and axpy.
    @property
    def update_kind(self) -> str:
        return "gemm+axpy" if self.momentum else "gemm"

    def velocities(self) -> list[np.ndarray]:
        """The velocity v of W_1..W_L, then b_1..b_L (copies), whichever form the optimizer keeps."""
        if not self.momentum:
            return []
        scale = 1.0 if self.split else 1.0 / self.momentum
        return [v * scale for v in self.velocity_w + self.velocity_b]

    def state(self) -> dict:
        """What the next step depends on besides the parameters, in the form this optimizer keeps it:
        μ, which form the velocity arrays hold, and the arrays themselves (live)."""
        velocities = self.velocity_w + self.velocity_b if self.momentum else []
        return {"momentum": self.momentum, "split": self.split, "arrays": velocities}

    def load_state(self, state: dict) -> None:
        """Go on from a :meth:`state` of the same network (no conversion: the arrays are taken as they are)."""
        self.momentum, self.split = state["momentum"], state["split"]
        for v, saved in zip(self.velocity_w + self.velocity_b if self.momentum else [], state["arrays"], strict=True):
            v[...] = saved.reshape(v.shape)

    def set_momentum(self, momentum: float) -> None:
        """μ for the steps to come; on one thread the velocity arrays hold s = μv, so they follow μ."""
        check_new_momentum(self.momentum, momentum)
        if not self.split:
            for velocity in self.velocity_w + self.velocity_b:
                velocity *= momentum / self.momentum
        self.momentum = momentum

    def prepare(self, several_threads: bool) -> None:
        """Keep the velocity in the form for steps that run on several BLAS threads, or on one (see above)."""
        split = bool(self.momentum) and bool(several_threads)
        if split != self.split:
            factor = 1.0 / self.momentum if split else self.momentum  # s = μv  <->  v
            for velocity in self.velocity_w + self.velocity_b:
                velocity *= factor
            self.split = split

    def step(self, activations, deltas, work, lr: float) -> None:
        """Update every layer from a batch's activations [A_0..A_{L-1}] and η-scaled deltas [ηΔ_1..ηΔ_L]."""
        decay = lr * self.weight_decay
        n_layers = len(self.weights)
        update = self._update_split if self.split else self._update
        for l, delta in enumerate(deltas):
            # the weight sees inputs A_{l-1}; the bias sees a constant input of 1 and is not decayed
            update(l, activations[l], delta, decay)
            update(n_layers + l, work.ones_column, delta, 0.0)

    def _update(self, i, inputs, delta, decay) -> None:
        if not self.momentum:
            self._into_param[i](inputs, delta, -1.0, 1.0 - decay)                      # W ← (1−ηλ)W − g
            return
        mu = self.momentum
        self._into_velocity[i](inputs, delta, 1.0, 1.0)                            # s ← s + g
        if self.nesterov:
            # (s, W) ← (μs + μηλW, −μs + (1 − ηλ − μηλ)W), then W ← W − g
            self._velocity_and_param[i](mu, mu * decay, -mu, 1.0 - decay - mu * decay)
            self._into_param[i](inputs, delta, -1.0, 1.0)
        else:
            # (s, W) ← (μs + μηλW, −s + (1 − ηλ)W)
            self._velocity_and_param[i](mu, mu * decay, -1.0, 1.0 - decay)

    def _update_split(self, i, inputs, delta, decay) -> None:
        mu = self.momentum
        self._into_velocity[i](inputs, delta, 1.0, mu)                             # v ← μv + g
        if decay:
            self._param_into_velocity[i](decay)                                    # v ← v + ηλW
        if self.nesterov:
            self._into_param[i](inputs, delta, -1.0, 1.0 - decay)                  # W ← (1−ηλ)W − g
            self._velocity_into_param[i](-mu)                                      # W ← W − μv
        else:
            self._velocity_into_param[i](-1.0)                                     # W ← W − v


class Adam:
    """Adam (Kingma & Ba 2015), bias-corrected, with decoupled weight decay (AdamW, Loshchilov & Hutter 2019).

    For every parameter θ with gradient g = ∂C/∂θ, at step t = 1, 2, ...::

        m ← β1 m + (1 − β1) g          v ← β2 v + (1 − β2) g²
        θ ← θ − η m̂ / (√v̂ + ε)         m̂ = m / (1 − β1ᵗ),  v̂ = v / (1 − β2ᵗ);  W ← W − ηλW

    Scale: the network hands over s = ηg, and ε must keep its meaning while η changes, so the moments
    are M = ηm/(1 − β1) and V = η²v/(1 − β2), updated from s alone and rescaled when η changes; the step
    is then exactly Adam's (docs/fast-engine.md)::

        M ← β1 M + s                    V ← β2 V + s²
        θ ← θ − α M / (√V + ε')   with   α = η (1 − β1) √(1 − β2ᵗ) / ((1 − β1ᵗ) √(1 − β2)),
                                         ε' = ε η √(1 − β2ᵗ) / √(1 − β2)

    M, V and s of all layers live in one flat buffer each: one call per element-wise operation.
    """

    def __init__(self, weights, biases, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        check_adam(beta1, beta2, eps, weight_decay)
        self.weights, self.biases = list(weights), list(biases)
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.t = 0
        self._lr = None  # the η that M and V are scaled with
        params = [p for pair in zip(self.weights, self.biases) for p in pair]  # W1, b1, W2, b2, ...
        dtype = np.result_type(*params)
        total = sum(p.size for p in params)
        self.m, self.v = aligned_zeros(total, dtype), aligned_zeros(total, dtype)  # bptrain.fast.aligned
        self._grad, self._step = aligned_empty(total, dtype), aligned_empty(total, dtype)
        self._views = []  # (param, its gradient in _grad, its step in _step)
        start = 0
        for p in params:
            stop = start + p.size
            self._views.append((p, self._grad[start:stop].reshape(p.shape), self._step[start:stop].reshape(p.shape)))
            start = stop
        # one pass each (blas.Axpby) where NumPy takes two: M ← β1 M + s, V ← β2 V + s², θ ← keep·θ − step
        self._into_m = Axpby(self._grad, self.m)
        self._into_v = Axpby(self._grad, self.v)
        self._into_param = [Axpby(param_step, param) for param, _, param_step in self._views]
        # s = A_{l-1}ᵀ(ηΔ_l) for W_l, 1ᵀ(ηΔ_l) for b_l (a one-row matrix): gemm, β = 0 (scratch: NumPy's)
        self._into_grad = [PreparedGemmAtB(as_matrix(grad), np.empty_like(as_matrix(grad))) for _, grad, _ in self._views]

    #: How its update uses the cores (bptrain.fast.threads): NumPy's element-wise passes, on one core.
    update_kind = "ufuncs"

    def step(self, activations, deltas, work, lr: float) -> None:
        """Update every layer from a batch's activations [A_0..A_{L-1}] and η-scaled deltas [ηΔ_1..ηΔ_L]."""
        if lr < NEGLIGIBLE_LR:  # η-scaled gradients underflow: nothing to divide η out of, and the step is ~0
            return
        if lr != self._lr:
            self._rescale(lr)
        for l, delta in enumerate(deltas):
            self._into_grad[2 * l](activations[l], delta, 1.0, 0.0)        # s_W = A_{l-1}ᵀ(ηΔ_l) = η ∂C/∂W_l
            self._into_grad[2 * l + 1](work.ones_column, delta, 1.0, 0.0)  # s_b = Σ_rows ηΔ_l    = η ∂C/∂b_l
        self.t += 1
        beta1, beta2, t = self.beta1, self.beta2, self.t
        s, m, v, step = self._grad, self.m, self.v, self._step
        self._into_m(1.0, beta1)                                     # M ← β1 M + s
        np.square(s, out=s)
        self._into_v(1.0, beta2)                                     # V ← β2 V + s²
        correction = math.sqrt(1.0 - beta2 ** t) / math.sqrt(1.0 - beta2)
        alpha = lr * (1.0 - beta1) * correction / (1.0 - beta1 ** t)
        np.sqrt(v, out=step)
        step += self.eps * lr * correction                          # √V + ε'
        np.divide(alpha, step, out=step)                             # α / (√V + ε')
        step *= m                                                    # α M / (√V + ε')
        # (α/d)·M rather than (M/d)·α: M holds subnormal floats, and dividing them is slow; multiplying is not.
        keep = 1.0 - lr * self.weight_decay
        for k, into_param in enumerate(self._into_param):
            # θ ← θ − α M / (√V + ε'), and for weights (even k) first W ← W − ηλW
            into_param(-1.0, keep if k % 2 == 0 else 1.0)

    def state(self) -> dict:
        """What the next step depends on besides the parameters, in the form kept here: t, β1, the η that
        m and v are scaled with, and m and v (live)."""
        return {"t": self.t, "beta1": self.beta1, "lr": self._lr, "arrays": [self.m, self.v]}

    def load_state(self, state: dict) -> None:
        """Go on from a :meth:`state` of the same network."""
        self.t, self.beta1, self._lr = state["t"], state["beta1"], state["lr"]
        self.m[...], self.v[...] = state["arrays"]

    def set_momentum(self, beta1: float) -> None:
        """β1 for the steps to come: M = ηm/(1 − β1) is rescaled to stay true."""
        check_new_momentum(1.0, beta1, "beta1")
        self.m *= (1.0 - self.beta1) / (1.0 - beta1)
        self.beta1 = beta1

    def _rescale(self, lr: float) -> None:
        """Keep M = ηm/(1 − β1) and V = η²v/(1 − β2) true when η changes (between epochs, or set by hand)."""
        if self._lr is not None and self.t:
            ratio = lr / self._lr
            self.m *= ratio
            self.v *= ratio * ratio
        self._lr = lr

def as_matrix(array: np.ndarray) -> np.ndarray:
    """A weight matrix as it is, a bias vector as a one-row matrix (a view)."""
    return array.reshape(-1, array.shape[-1])
