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


def format_confusion(confusion: np.ndarray) -> str:
    """The confusion matrix as an aligned table: rows true class, columns predicted."""
    n = len(confusion)
    width = max(5, len(str(confusion.max())) + 1)
    header = "true\\pred" + "".join(f"{j:>{width}}" for j in range(n))
    rows = [f"{i:>9}" + "".join(f"{confusion[i, j]:>{width}}" for j in range(n)) for i in range(n)]
    return "\n".join([header, *rows])


def format_per_class(accuracy: np.ndarray, confusion: np.ndarray) -> str:
    lines = ["class  accuracy  samples"]
    for k, (acc, total) in enumerate(zip(accuracy, confusion.sum(axis=1))):
        shown = "     -" if np.isnan(acc) else f"{100 * acc:6.2f}%"
        lines.append(f"{k:>5}  {shown:>8}  {total:>7}")
    return "\n".join(lines)
