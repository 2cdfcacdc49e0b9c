"""The data set's digits for the page: the ones a network reads as another (a cell of its confusion matrix),
a random test digit, and the matrix itself.

Built once, for every page that takes digits from the data: the confusion matrix's mistakes, the
"random test digit" button and the lessons. Each answer is read by the network on show (a
:class:`~.predictor.Predictor`: the served model, the live run's weights or a kept epoch), whose
probabilities over a split are computed once per network (:meth:`~.predictor.Predictor.probabilities_of`).
Nothing here knows HTTP; what cannot be done is a domain error (:class:`NoDigits`: no data set).
"""

from __future__ import annotations

import numpy as np

from ...core.errors import BptrainError
from ..metrics import confusion_matrix
from .errors import Unavailable

#: The splits the page may take digits from: validation for the confusion matrix (what the page's charts
#: measure), test for the random digit (digits neither training nor the choice of the best epoch saw).
SPLITS = ("validation", "test")
#: Digits of one cell at most in one answer (each is its 784 grey levels: about 4 KB of JSON).
MAX_DIGITS = 48
DEFAULT_DIGITS = 24


class NoDigits(Unavailable):
    """The server has no data set (or none the network can read): the message says why."""


def status(dataset, reason: str | None, model=None) -> dict:
    """Whether the page can take digits from the data, and if not why (GET /api/digits)."""
    problem = _problem(dataset, reason, model)
    return {"available": problem is None, "reason": problem,
            "splits": {} if problem else {name: int(len(dataset.split(name).y)) for name in SPLITS}}


def _problem(dataset, reason: str | None, model) -> str | None:
    if dataset is None:
        return reason or "this server was started without a data set (give --data to bptrain serve)"
    if model is not None and dataset.n_features != model.sizes[0]:
        return (f"the data's digits have {dataset.n_features} pixels, but the network takes {model.sizes[0]} "
                "inputs")
    if model is not None and dataset.n_classes > model.sizes[-1]:
        return f"the data has {dataset.n_classes} classes, the network {model.sizes[-1]} outputs"
    return None


def _check(predictor, reason: str | None) -> None:
    problem = _problem(predictor.dataset, reason, predictor.model)
    if problem is not None:
        raise NoDigits(f"no digits from the data: {problem}")


def _class(value, name: str, classes: int) -> int:
    if isinstance(value, str) and value.isdigit() and len(value) < 6:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < classes:
        raise BptrainError(f'"{name}" must be a class, an integer from 0 to {classes - 1}')
    return value


def digit(x: np.ndarray, split: str, index: int, label: int, probabilities: np.ndarray) -> dict:
    """One digit as the page takes it: where it is from, its label, how the network reads it, its pixels."""
    prediction = int(np.argmax(probabilities))
    return {"split": split, "index": int(index), "label": int(label), "prediction": prediction,
            "confidence": float(probabilities[prediction]), "p_label": float(probabilities[label]),
            "input": [round(float(v), 3) for v in x]}


def cell(predictor, reason: str | None, true=None, read=None, limit=None) -> dict:
    """The validation digits of class ``true`` that the network reads as ``read`` (the diagonal: those it
    reads right), most confident first: at most ``limit``, and how many there are in all."""
    _check(predictor, reason)
    classes = predictor.model.sizes[-1]
    true, read = _class(true, "true", classes), _class(read, "read", classes)
    if limit is None:
        limit = DEFAULT_DIGITS
    elif isinstance(limit, str) and limit.isdigit() and len(limit) < 6:
        limit = int(limit)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_DIGITS:
        raise BptrainError(f'"limit" must be an integer from 1 to {MAX_DIGITS}')
    x, y = predictor.dataset.split("validation")
    probabilities = predictor.probabilities_of("validation")
    predictions = probabilities.argmax(axis=1)
    chosen = np.flatnonzero((y == true) & (predictions == read))
    chosen = chosen[np.argsort(-probabilities[chosen, read], kind="stable")]  # most confident first
    return {"split": "validation", "true": true, "read": read, "count": int(len(chosen)),
            "digits": [digit(x[i], "validation", i, y[i], probabilities[i]) for i in chosen[:limit]]}


def random_digit(predictor, reason: str | None, split: str = "test", rng: np.random.Generator | None = None) -> dict:
    """A digit of ``split`` picked at random, as the network on show reads it."""
    _check(predictor, reason)
    rng = rng if rng is not None else np.random.default_rng()
    if split not in SPLITS:
        raise BptrainError(f'"split" must be one of {", ".join(SPLITS)}')
    x, y = predictor.dataset.split(split)
    index = int(rng.integers(len(y)))
    probabilities = predictor.probabilities_of(split, rows=[index])[0]
    return digit(x[index], split, index, y[index], probabilities)


def confusion(predictor, reason: str | None) -> dict:
    """The validation split's confusion matrix as the network on show reads it (rows: the true class)."""
    _check(predictor, reason)
    _, y = predictor.dataset.split("validation")
    predictions = predictor.probabilities_of("validation").argmax(axis=1)
    matrix = confusion_matrix(y, predictions, predictor.model.sizes[-1])
    return {"split": "validation", "confusion": matrix.tolist(), "accuracy": float(np.mean(predictions == y))}


#: The answers of GET /api/digits/KIND, each called with (the predictor, why there is no data, the query's fields).
ANSWERS = {"cell": cell, "random": random_digit, "confusion": confusion}
