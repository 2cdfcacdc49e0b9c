"""``BPClassifier``: bptrain's network and training as a scikit-learn estimator (needs the sklearn extra).

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from bptrain.sklearn import BPClassifier
    clf = make_pipeline(StandardScaler(), BPClassifier(random_state=0)).fit(X, y)

It trains with :func:`bptrain.train`, so the same settings and seed give the same weights as
``bptrain train``. The validation split and early stopping map as follows:

- ``early_stopping=False`` (the default, as in scikit-learn's MLPClassifier): every row trains and the
  network of the last epoch is kept.
- ``early_stopping=True``: the LAST ``ceil(validation_fraction * n)`` rows, in the order given, are held
  out, the way bptrain's loader holds out MNIST's last 10,000 training images; the network of the best
  validation epoch is kept (as ``bptrain train`` always does), and training stops after
  ``n_iter_no_change`` epochs without a better validation accuracy (``--early-stopping N``; 0: never
  stops early, ``bptrain train``'s default). Shuffle rows that are sorted by class first.

So ``bptrain train --data mnist.pkl.gz --seed 0`` is
``BPClassifier(early_stopping=True, validation_fraction=1/6, n_iter_no_change=0, augment=1, random_state=0)``
fitted on MNIST's 60,000 training images in their order (``bptrain train``'s command line shifts
images by one pixel by default; the estimator, made for any features, does not).
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .app import memory
from .core.committee import class_probabilities
from .core.network import ACTIVATIONS, AUTO_INIT, DTYPES, INITS, LOSSES, MLP
from .core.optimizers import OPTIMIZERS
from .core.schedules import SCHEDULES
from .core.training import Callbacks, TrainSettings
from .data.loader import Dataset, Split
from .data.shifts import is_square_image
from .engines import ENGINES, train

#: scikit-learn checks this estimator does not pass, with the reason (handed to ``expected_failed_checks``).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


class _LastEpoch(Callbacks):
    """Keeps a copy of the parameters at the end of the last epoch: without a held-out set, the loop's
    "best validation epoch" means nothing, and the last epoch's network is the fitted one."""

    def __init__(self, model, last_epoch: int):
        self.model, self.last_epoch, self.parameters = model, last_epoch, None

    def epoch_ended(self, record, improved):
        if record.epoch == self.last_epoch:
            self.parameters = [w.copy() for w in self.model.weights], [b.copy() for b in self.model.biases]


class BPClassifier(ClassifierMixin, BaseEstimator):
    """A multilayer perceptron trained by bptrain's backpropagation, with scikit-learn's API.

    The parameters are ``bptrain train``'s options of the same name (``hidden_layer_sizes`` are the
    hidden widths of ``--sizes``, ``random_state`` is ``--seed``); ``lr=None`` is the optimizer's default
    (0.1 for sgd, 0.001 for adam). See the module's docstring for ``early_stopping``. Attributes after
    ``fit``: ``classes_``, ``n_features_in_``, ``model_`` (the :class:`bptrain.MLP`), ``coefs_`` and
    ``intercepts_`` (its weights and biases), ``n_iter_`` (epochs run), ``history_`` (bptrain's epoch
    records) and, with early stopping, ``best_epoch_`` and ``best_validation_score_``.
    """

    def __init__(self, hidden_layer_sizes=(128, 64), activation="sigmoid", loss="ce", *, optimizer="sgd", lr=None,
                 momentum=0.9, nesterov=False, weight_decay=1e-4, schedule="cosine", epochs=20, batch_size=32,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, augment=0, init=AUTO_INIT,
                 dtype="float32", engine="fast", random_state=None, verbose=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.epochs = epochs
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.augment = augment
        self.init = init
        self.dtype = dtype
        self.engine = engine
        self.random_state = random_state
        self.verbose = verbose

    # ---------------------------------------------------------------- fit
    def fit(self, X, y):
        """Train a new network on ``X`` (numbers, one row per sample) and the labels ``y`` (any kind)."""
        self._check_parameters()
        X, y = validate_data(self, X, y, dtype=(np.float32, np.float64))
        check_classification_targets(y)
        classes, labels = np.unique(y, return_inverse=True)
        labels = labels.astype(np.int64).reshape(-1)
        if self.augment and not is_square_image(X.shape[1]):
            raise ValueError(f"augment shifts square images; {X.shape[1]} features are not square")
        dtype = DTYPES[self.dtype]
        X = np.asarray(X, dtype=dtype)
        n_val = math.ceil(self.validation_fraction * len(X)) if self.early_stopping else 0
        if self.early_stopping and not 0 < n_val < len(X):
            raise ValueError(f"early stopping holds out validation_fraction={self.validation_fraction} of the "
                             f"samples, which leaves none to train on or none to validate with "
                             f"(n_samples = {len(X)})")
        n_train = len(X) - n_val
        # without early stopping the loop still validates: one row, cheap; the last epoch is kept instead
        validation = Split(X[n_train:], labels[n_train:]) if n_val else Split(X[:1], labels[:1])
        data = Dataset(Split(X[:n_train], labels[:n_train]), validation, validation)  # no test split is used
        sizes = (X.shape[1], *(int(n) for n in self.hidden_layer_sizes), len(classes))
        seed = self._seed()
        warning = memory.check_fits(memory.training_estimate(  # refuses, before any allocation, what cannot fit
            sizes, min(int(self.batch_size), n_train), dtype=self.dtype, augment=int(self.augment),
            data=memory.DataShape.of(data), engine=self.engine, optimizer=self.optimizer, momentum=self.momentum))
        if warning:
            warnings.warn(warning, stacklevel=2)
        model = MLP(sizes, self.loss, dtype=dtype, init=self.init, seed=seed, activation=self.activation)
        settings = TrainSettings(
            lr=self.lr, epochs=int(self.epochs), batch_size=int(self.batch_size), seed=seed,
            momentum=self.momentum, nesterov=bool(self.nesterov), weight_decay=self.weight_decay,
            schedule=self.schedule, early_stopping=int(self.n_iter_no_change) if self.early_stopping else 0,
            augment=int(self.augment), optimizer=self.optimizer)
        last = _LastEpoch(model, settings.epochs)
        result = train(model, data, settings, engine=self.engine,
                       progress=bool(self.verbose), callbacks=[] if n_val else [last])
        if result.interrupted:  # the loop keeps what it has on Ctrl-C; a fit that did not finish is no fit
            raise KeyboardInterrupt
        if not n_val:
            for param, kept in zip(model.weights + model.biases, last.parameters[0] + last.parameters[1]):
                param[...] = kept
        self.classes_, self.model_ = classes, model  # set together, only when a fit succeeded
        self.coefs_, self.intercepts_ = model.weights, model.biases
        self.n_iter_ = len(result.history)
        self.history_ = result.history
        if n_val:
            self.best_epoch_, self.best_validation_score_ = result.best_epoch, result.best_val_accuracy
        return self

    def _check_parameters(self) -> None:
        """scikit-learn checks parameters in fit, not in the constructor: ValueError, one line each."""
        choices = {"activation": ACTIVATIONS, "loss": LOSSES, "optimizer": OPTIMIZERS, "schedule": SCHEDULES,
                   "init": (AUTO_INIT,) + INITS, "dtype": tuple(DTYPES), "engine": ENGINES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral):
            raise ValueError("hidden_layer_sizes must be a sequence of widths, like (128, 64) or (30,)")
        if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in sizes):
            raise ValueError(f"hidden_layer_sizes must hold positive integers; got {sizes!r}")
        for name, low in (("epochs", 1), ("batch_size", 1), ("n_iter_no_change", 0)):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
        if not (isinstance(self.augment, numbers.Integral) and 0 <= self.augment <= 4):
            raise ValueError(f"augment must be an integer 0..4; got {self.augment!r}")
        if self.lr is not None and not (isinstance(self.lr, numbers.Real) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number above 0 (or None); got {self.lr!r}")
        if not (isinstance(self.momentum, numbers.Real) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum!r}")
        if not (isinstance(self.weight_decay, numbers.Real) and math.isfinite(self.weight_decay)
                and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0; got {self.weight_decay!r}")
        if self.early_stopping and not (isinstance(self.validation_fraction, numbers.Real)
                                        and 0 < self.validation_fraction < 1):
            raise ValueError(f"validation_fraction must be in (0, 1); got {self.validation_fraction!r}")
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise ValueError("nesterov needs momentum above 0")

    def _seed(self) -> int:
        """``random_state`` as bptrain's seed: an int is the seed itself (``--seed``); None or a
        RandomState draws one."""
        if isinstance(self.random_state, numbers.Integral) and not isinstance(self.random_state, bool):
            if self.random_state < 0:
                raise ValueError(f"random_state must be 0 or more; got {self.random_state}")
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    # ------------------------------------------------------------ predict
    def predict_proba(self, X) -> np.ndarray:
        """P(class | x) for every row, columns in the order of ``classes_`` (for "mse" the sigmoid outputs
        normalised to sum to 1, as ``bptrain predict`` reports them)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float32, np.float64))
        return class_probabilities(self.model_, X)

    def predict(self, X) -> np.ndarray:
        """The most likely class of every row."""
        probabilities = self.predict_proba(X)  # checks first that the estimator is fitted
        return self.classes_[np.argmax(probabilities, axis=1)]
