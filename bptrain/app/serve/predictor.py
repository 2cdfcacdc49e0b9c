"""A network reading the page's digits: the preprocessing, the prediction, and explain's numbers.

The forward pass is the core's (:meth:`bptrain.core.network.MLP.forward`), which allocates its own
arrays, so request threads can run it side by side. The preprocessing is :mod:`bptrain.app.images`,
the same code as ``bptrain predict`` on image files.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ...core.committee import output_probabilities
from ...core.errors import BptrainError
from ...core.network import MLP
from ...data.model_io import class_names
from .. import explain as explaining
from .. import images
from .. import lesson as lessons
from ..inputs import pixels_at, pixels_input
from ..lesson_batch import split_companions, teaching_digit

#: /api/explain answers with every unit's numbers up to this many units (Σ n_l), summaries beyond:
#: about 200 bytes per unit, so the answer stays well under the server's largest body.
MAX_EXPLAINED_UNITS = 8192
#: Digits of the data set read in one forward pass (:meth:`Predictor.probabilities_of`).
READ_BATCH = 2000


class Predictor:
    """A model (with its metadata) and what the page asks of it."""

    def __init__(self, model: MLP, meta: dict | None = None, dataset=None):
        side = math.isqrt(model.sizes[0])
        if side * side != model.sizes[0]:
            raise BptrainError(f"the model's input has {model.sizes[0]} features, not a square image; "
                               "serve needs a model of images (e.g. 784 = 28 x 28)")
        self.model = model
        self.meta = meta or {}
        self.side = side
        self.dataset = dataset  # a bptrain Dataset whose digits it can be shown ("test_index"); None: no data
        self._read: dict = {}  # split -> its probabilities, computed once (:meth:`probabilities_of`)
        self._reading = threading.Lock()

    def describe(self) -> dict:
        """What the page shows about the model (GET /api/model)."""
        sizes = list(self.model.sizes)
        return {
            "sizes": sizes,
            "input_side": self.side,
            "hidden": sizes[1:-1],
            "classes": sizes[-1],
            "class_names": self.class_names(),
            "loss": self.model.loss,
            "activation": self.model.activation,
            "output": "softmax" if self.model.loss == "ce" else "sigmoid",  # the output layer is never relu/tanh
            "val_accuracy": self.meta.get("val_accuracy"),
            "max_steps": explaining.MAX_STEPS,  # the Backprop panel's steps, at most
        }

    def class_names(self) -> list[str]:
        """One name per output: the model's, else those of the data it is trained on, else the numbers."""
        n = self.model.sizes[-1]
        if "class_names" not in self.meta and self.dataset is not None and len(self.dataset.class_names) == n:
            return list(self.dataset.class_names)
        return class_names(self.meta, n)

    # --------------------------------------------------------------- inputs
    def input_from_drawing(self, gray: np.ndarray, ink: str = "auto") -> np.ndarray:
        """The model's input from a drawing (brightness 0..1, either polarity unless ``ink`` says); for a
        model of a folder of images, the drawing as it is at the images' size."""
        if self.meta.get("image_size"):
            return pixels_at(np.asarray(gray, np.float32), self.meta["image_size"]).reshape(-1)
        return images.preprocess(gray, side=self.side, ink=ink).reshape(-1)

    def input_from_image(self, data: bytes, ink: str = "auto") -> np.ndarray:
        """The model's input from an image file's bytes (PNG, JPEG, ...), as `bptrain predict` reads it."""
        if not data:
            raise BptrainError("the request body is empty; send an image file")
        if self.meta.get("image_size"):
            return pixels_input(data, self.meta["image_size"], name="the uploaded image").reshape(-1)
        return images.image_to_input(data, name="the uploaded image", side=self.side, ink=ink).reshape(-1)

    # ----------------------------------------------------------------- math
    def predict(self, x: np.ndarray) -> dict:
        """Prediction, probabilities, the input and every hidden layer's activations for one input."""
        batch = np.ascontiguousarray(x, dtype=self.model.dtype).reshape(1, -1)
        _, activations = self.model.forward(batch)
        scores = output_probabilities(self.model, activations[-1].astype(np.float64))[0]  # as `bptrain predict`
        activations = [a[0].astype(np.float64) for a in activations]
        return {
            "prediction": int(np.argmax(scores)),
            "probabilities": [float(p) for p in scores],
            "input": _rounded(activations[0], 3),
            "hidden": [_rounded(a, 4) for a in activations[1:-1]],
        }

    def probabilities_of(self, split: str, rows=None) -> np.ndarray:
        """The class probabilities of every digit of ``split`` of the data set (or of its ``rows`` only, not
        kept), as :meth:`predict` computes them; a whole split is computed once per network and kept."""
        if rows is None and split in self._read:
            return self._read[split]
        x = self.dataset.split(split).x
        with self._reading:
            if rows is None and split in self._read:
                return self._read[split]
            chosen = x if rows is None else x[rows]
            chunks = [np.zeros((0, self.model.sizes[-1]))]
            for start in range(0, len(chosen), READ_BATCH):  # in slices: a few MB of activations at a time
                batch = np.ascontiguousarray(chosen[start:start + READ_BATCH], dtype=self.model.dtype)
                _, activations = self.model.forward(batch)
                chunks.append(output_probabilities(self.model, activations[-1].astype(np.float64)))
            scores = np.concatenate(chunks)
            if rows is None:
                self._read[split] = scores
            return scores

    def explain(self, x: np.ndarray, options: dict, source: dict, true_labels=None) -> dict:
        """:func:`bptrain.app.explain.explain` of one input with the request's checked ``options``
        (:func:`.api.request_options`), on a fresh float64 copy of the model (which first takes the
        "steps" gradient steps): the same dict as `bptrain explain --json`."""
        batch = np.asarray(x, np.float64).reshape(1, -1)
        labels, rule = explaining.choose_labels(self.model, batch, true_labels, options["label"])
        lr, lr_source = explaining.model_lr(self.meta) if options["lr"] is None else (options["lr"], "given")
        arrays = "units" if sum(self.model.sizes) <= MAX_EXPLAINED_UNITS else "summaries"
        doc = explaining.explain(self.model, batch, labels, lr=lr, lr_source=lr_source, label_rule=rule,
                                 true_labels=true_labels, source=source, steps=options["steps"], arrays=arrays,
                                 unit=options["unit"])
        return {**doc, "class_names": self.class_names()}

    def lesson(self, x: np.ndarray, options: dict, source: dict, true_label: int | None = None) -> dict:
        """:func:`bptrain.app.lesson.lesson` of one input with a lesson request's checked ``options``
        (:func:`.api.lesson_options`): target (default: the true label of a data-set digit, else the
        network's answer), η, the weight to nudge and ε. Works on float64 copies: the model is not touched."""
        batch = np.asarray(x, np.float64).reshape(1, -1)
        true_labels = None if true_label is None else [true_label]
        labels, rule = explaining.choose_labels(self.model, batch, true_labels, options["label"])
        lr, lr_source = explaining.model_lr(self.meta) if options["lr"] is None else (options["lr"], "given")
        epsilon = lessons.EPSILON if options["epsilon"] is None else options["epsilon"]
        companions = None                     # a drawing or an image: the batch is it moved by a pixel
        if source.get("kind") == "dataset":   # a digit of the data: the three after it in its split
            x_split, y_split = self.dataset.split(source["split"])
            companions = split_companions(x_split, y_split, source["index"], source["split"])
        return lessons.lesson(self.model, batch, int(labels[0]), lr=lr, lr_source=lr_source, label_rule=rule,
                              true_label=true_label, source=source, weight=options["weight"], epsilon=epsilon,
                              companions=companions)

    def teaching_index(self, split: str) -> int:
        """The digit of ``split`` a lesson starts from when the request names none: the first the network
        on show reads wrong (:func:`bptrain.app.lesson_batch.teaching_digit`)."""
        _, y = self.dataset.split(split)
        return teaching_digit(self.probabilities_of(split), np.asarray(y, np.int64))[0]


def _rounded(values: np.ndarray, digits: int) -> list[float]:
    """Floats rounded for the wire: the page draws grey levels, it needs no 7 digits."""
    return [round(float(v), digits) for v in values]
