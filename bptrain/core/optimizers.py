"""The update rules, as their formulas: SGD with momentum (classical or Nesterov) and Adam.

Each optimizer gets the gradients ∂C/∂W_l and ∂C/∂b_l of a batch
(:meth:`bptrain.core.network.MLP.backward`) and the learning rate η of this
epoch, and changes the parameters in place. Weight decay λ applies to the
weights only, never to the biases.
"""

from __future__ import annotations

import numpy as np

from .errors import SettingError

OPTIMIZERS = ("sgd", "adam")
#: The learning rate each optimizer starts from when none is given. Adam's steps
#: are about η per parameter whatever the gradient's size, so it needs a far
#: smaller η than SGD (Kingma & Ba's default, 0.001).
DEFAULT_LR = {"sgd": 0.1, "adam": 0.001}


class SGD:
    """Mini-batch gradient descent, with optional momentum μ and L2 weight decay λ.

    For a parameter θ with gradient g = ∂C/∂θ (λ = 0 for biases)::

        plain:      θ ← θ − η(g + λθ)
        classical:  v ← μv + η(g + λθ);   θ ← θ − v
        Nesterov:   v ← μv + η(g + λθ);   θ ← θ − η(g + λθ) − μv

    The velocity v carries η inside it, as in PyTorch's SGD.
    """

    def __init__(self, weights, biases, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        check_sgd(momentum, nesterov, weight_decay)
        self.weights, self.biases = list(weights), list(biases)
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.velocity_w = [np.zeros_like(w) for w in self.weights]
        self.velocity_b = [np.zeros_like(b) for b in self.biases]

    def step(self, grad_w, grad_b, lr: float) -> None:
        for W, g, v in zip(self.weights, grad_w, self.velocity_w):
            self._update(W, g, v, lr, self.weight_decay)
        for b, g, v in zip(self.biases, grad_b, self.velocity_b):
            self._update(b, g, v, lr, 0.0)

    def _update(self, theta, g, v, lr, decay) -> None:
        step = lr * (g + decay * theta)          # η(g + λθ)
        if not self.momentum:
            theta -= step                        # θ ← θ − η(g + λθ)
            return
        v *= self.momentum
        v += step                                # v ← μv + η(g + λθ)
        if self.nesterov:
            theta -= step + self.momentum * v    # θ ← θ − η(g + λθ) − μv
        else:
            theta -= v                           # θ ← θ − v

    def set_momentum(self, momentum: float) -> None:
        """μ for the steps to come (a run started with momentum; μ in (0, 1))."""
        check_new_momentum(self.momentum, momentum)
        self.momentum = momentum

    def velocities(self) -> list:
        """v of W_1..W_L, then of b_1..b_L (empty without momentum)."""
        return [v.copy() for v in self.velocity_w + self.velocity_b] if self.momentum else []

    def state(self) -> dict:
        """What the next step depends on besides the parameters: μ and the velocities (the live arrays)."""
        return {"momentum": self.momentum, "arrays": self.velocity_w + self.velocity_b}

    def load_state(self, state: dict) -> None:
        """Go on from a :meth:`state` of the same network."""
        self.momentum = state["momentum"]
        for v, saved in zip(self.velocity_w + self.velocity_b, state["arrays"], strict=True):
            v[...] = saved


class Adam:
    """Adam (Kingma & Ba 2015), with decoupled weight decay (AdamW, Loshchilov & Hutter 2019).

    For every parameter θ with gradient g = ∂C/∂θ, at step t = 1, 2, ...::

        m ← β1 m + (1 − β1) g           v ← β2 v + (1 − β2) g²
        m̂ = m / (1 − β1ᵗ)               v̂ = v / (1 − β2ᵗ)
        θ ← θ − η m̂ / (√v̂ + ε)          and for weights also  W ← W − ηλW

    The decay is decoupled: it shrinks the weights directly instead of adding λW
    to g, where Adam's division by √v̂ would weaken it wherever gradients are large.
    """

    def __init__(self, weights, biases, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        check_adam(beta1, beta2, eps, weight_decay)
        self.weights, self.biases = list(weights), list(biases)
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.m = [np.zeros_like(p) for p in self.weights + self.biases]
        self.v = [np.zeros_like(p) for p in self.weights + self.biases]
        self.t = 0

    def step(self, grad_w, grad_b, lr: float) -> None:
        self.t += 1
        beta1, beta2, t = self.beta1, self.beta2, self.t
        decays = [self.weight_decay] * len(self.weights) + [0.0] * len(self.biases)
        for theta, g, m, v, decay in zip(self.weights + self.biases, list(grad_w) + list(grad_b), self.m, self.v,
                                         decays):
            m *= beta1
            m += (1 - beta1) * g                             # m ← β1 m + (1 − β1) g
            v *= beta2
            v += (1 - beta2) * g * g                         # v ← β2 v + (1 − β2) g²
            m_hat = m / (1 - beta1 ** t)                     # m̂ = m / (1 − β1ᵗ)
            v_hat = v / (1 - beta2 ** t)                     # v̂ = v / (1 − β2ᵗ)
            theta -= lr * (m_hat / (np.sqrt(v_hat) + self.eps) + decay * theta)   # θ ← θ − η m̂/(√v̂ + ε) − ηλθ

    def set_momentum(self, beta1: float) -> None:
        """β1 for the steps to come."""
        check_new_momentum(1.0, beta1, "beta1")
        self.beta1 = beta1

    def state(self) -> dict:
        """What the next step depends on besides the parameters: t, β1, m and v (the live arrays)."""
        return {"t": self.t, "beta1": self.beta1, "arrays": self.m + self.v}

    def load_state(self, state: dict) -> None:
        """Go on from a :meth:`state` of the same network."""
        self.t, self.beta1 = state["t"], state["beta1"]
        for array, saved in zip(self.m + self.v, state["arrays"], strict=True):
            array[...] = saved


def check_new_momentum(current: float, new: float, name: str = "momentum") -> None:
    """A momentum (or β1) changed during a run: the run must have one, and the new value is in (0, 1)."""
    if not current:
        raise SettingError(f"this run has no {name} to change (it started with {name} 0)", field=name)
    if not 0.0 < new < 1.0:
        raise SettingError(f"{name} must be in (0, 1), got {new}", field=name)


def check_sgd(momentum: float, nesterov: bool, weight_decay: float) -> None:
    """SGD's settings: μ in [0, 1), Nesterov only with a momentum, a decay of at least 0."""
    if not 0.0 <= momentum < 1.0:
        raise SettingError(f"momentum must be in [0, 1), got {momentum}", field="momentum")
    if nesterov and momentum == 0.0:
        raise SettingError("Nesterov momentum needs a momentum above 0", field="nesterov")
    if weight_decay < 0.0:
        raise SettingError(f"weight decay must be >= 0, got {weight_decay}", field="weight_decay")


def check_adam(beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
    """Adam's settings: β1, β2 in [0, 1), ε above 0, a decay of at least 0."""
    for name, beta in (("beta1", beta1), ("beta2", beta2)):
        if not 0.0 <= beta < 1.0:
            raise SettingError(f"{name} must be in [0, 1), got {beta}", field=name)
    if not eps > 0.0:
        raise SettingError(f"eps must be above 0, got {eps}", field="eps")
    if weight_decay < 0.0:
        raise SettingError(f"weight decay must be >= 0, got {weight_decay}", field="weight_decay")


def make_optimizer(settings, weights, biases, sgd=SGD, adam=Adam):
    """The optimizer ``settings.optimizer`` names, set up from the other settings.

    ``sgd`` and ``adam`` are the classes to build: the fast engine passes its own.
    """
    if settings.optimizer == "sgd":
        return sgd(weights, biases, settings.momentum, settings.nesterov, settings.weight_decay)
    if settings.optimizer == "adam":
        return adam(weights, biases, settings.beta1, settings.beta2, settings.eps, settings.weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {settings.optimizer!r}")

