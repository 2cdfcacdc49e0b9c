"""A committee of trained networks: each gives its class probabilities, the committee takes their mean.

Networks trained from different random starts on differently distorted images make partly different
mistakes, so the average of their probabilities is wrong less often than a typical member (Cireşan,
Meier & Schmidhuber averaged committees of MLPs and of convolutional nets this way). Nothing is trained
here: the members are saved models.
"""

from __future__ import annotations

import numpy as np

from .errors import ModelFileError


def output_probabilities(model, a_out: np.ndarray) -> np.ndarray:
    """P(class | x) from a network's output layer A_L: A_L itself (softmax) for a "ce" model; for an "mse"
    model its sigmoid outputs normalised to sum to 1 (they are not probabilities on their own)."""
    if model.loss == "ce":
        return a_out
    return a_out / np.maximum(a_out.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)


def class_probabilities(model, x: np.ndarray) -> np.ndarray:
    """P(class | x) from one network for every row of ``x``, in float64."""
    return output_probabilities(model, model.predict_proba(x).astype(np.float64))


def mean_negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The mean of -ln p(true class): the cross-entropy of any probabilistic classifier, committee or not."""
    tiny = np.finfo(np.float64).tiny
    return float(-np.mean(np.log(np.maximum(probabilities[np.arange(len(labels)), labels], tiny))))


class Committee:
    """Networks that classify together: P(class | x) = the mean over members of their P(class | x)."""

    def __init__(self, members, names=None):
        members = list(members)
        if not members:
            raise ValueError("a committee needs at least one network")
        names = list(names) if names is not None else [f"network {i + 1}" for i in range(len(members))]
        first = members[0]
        for model, name in zip(members[1:], names[1:]):
            if model.sizes[0] != first.sizes[0] or model.sizes[-1] != first.sizes[-1]:
                raise ModelFileError(
                    f"{name} ({'-'.join(map(str, model.sizes))}) cannot vote with {names[0]} "
                    f"({'-'.join(map(str, first.sizes))}): a committee's networks need the same input width "
                    f"and the same classes")
        self.members, self.names = members, names

    @property
    def sizes(self):
        """Input width and number of classes, as far as they are shared (hidden layers may differ)."""
        return self.members[0].sizes

    def votes(self, x: np.ndarray) -> np.ndarray:
        """Every member's class probabilities: shape (members, rows of x, classes)."""
        return np.stack([class_probabilities(model, x) for model in self.members])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.votes(x).mean(axis=0)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(axis=1)
