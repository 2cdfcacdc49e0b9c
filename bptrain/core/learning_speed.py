"""How fast each layer learns: the lengths of its gradients (Nielsen, ch. 5).

Nielsen calls ‖∂C/∂b_l‖, the length of layer l's bias gradient (= ‖δ^l‖
summed over the batch), the *speed of learning* of layer l: gradient descent
moves b_l by η times it. Training records it and ‖∂C/∂W_l‖ for every layer:

* before any update, and after every epoch, on the first :data:`INITIAL_BATCH`
  training images (as Nielsen does): :func:`batch_speed`;
* during training, averaged over a few sampled steps per epoch, each on its own
  mini-batch (:class:`bptrain.core.epoch_steps.EpochSteps`). A mini-batch gradient is
  noisier, so longer, than the 1,000-image one: compare layers with each other,
  and epochs with epochs.

In deep sigmoid networks the first layers' speeds are far below the last ones':
Δ_{l-1} = (Δ_l W_lᵀ) ⊙ σ'(Z_{l-1}) multiplies by σ' ≤ 1/4 once per layer on the way back.
"""

from __future__ import annotations

import numpy as np

#: Images in the fixed batch of the "initial" measurement (Nielsen's training_data[:1000]).
INITIAL_BATCH = 1000
#: Steps sampled per epoch, at most: each costs one gradient per layer, a fraction of a percent of an epoch.
SAMPLES_PER_EPOCH = 25


def gradient_norms(grad_w, grad_b) -> dict:
    """{"grad_b_norm": [‖∂C/∂b_l‖ for l = 1..L], "grad_w_norm": [‖∂C/∂W_l‖ ...]} as Python floats."""
    return {"grad_b_norm": [float(np.linalg.norm(g)) for g in grad_b],
            "grad_w_norm": [float(np.linalg.norm(g)) for g in grad_w]}


def batch_speed(model, x: np.ndarray, labels: np.ndarray) -> dict:
    """Gradient norms per layer for the mean loss over (x, labels), at the model's current parameters."""
    grad_w, grad_b = model.gradients(x, labels)
    return {"batch": int(len(x)), **gradient_norms(grad_w, grad_b)}
