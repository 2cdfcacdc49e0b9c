"""Classification metrics and their plain-text tables."""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts[i, j] = how many samples of true class i were predicted as j."""
    counts = np.bincount(labels * n_classes + predictions, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class (NaN for a class with no samples)."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / np.maximum(totals, 1), np.nan)


TRUE_PRED = "true\\pred"
#: A class name in a confusion matrix's column header is cut to this many characters.
COLUMN_NAME = 10


def format_confusion(confusion: np.ndarray, names=None) -> str:
    """The confusion matrix as an aligned table: rows true class, columns predicted (``names``: the classes'
    names, else their numbers; a long name is cut in the column headers)."""
    n = len(confusion)
    names = [str(k) for k in range(n)] if names is None else [str(name) for name in names]
    heads = [name[:COLUMN_NAME] for name in names]
    width = max(5, len(str(confusion.max())) + 1, max(map(len, heads)) + 1)
    left = max(9, max(map(len, names)))
    header = TRUE_PRED.ljust(left) + "".join(f"{head:>{width}}" for head in heads)
    rows = [f"{names[i]:>{left}}" + "".join(f"{confusion[i, j]:>{width}}" for j in range(n)) for i in range(n)]
    return "\n".join([header, *rows])


def format_per_class(accuracy: np.ndarray, confusion: np.ndarray, names=None) -> str:
    names = [str(k) for k in range(len(accuracy))] if names is None else [str(name) for name in names]
    left = max(5, max(map(len, names)))
    lines = [f"{'class':>{left}}  accuracy  samples"]
    for name, acc, total in zip(names, accuracy, confusion.sum(axis=1)):
        shown = "     -" if np.isnan(acc) else f"{100 * acc:6.2f}%"
        lines.append(f"{name:>{left}}  {shown:>8}  {total:>7}")
    return "\n".join(lines)
