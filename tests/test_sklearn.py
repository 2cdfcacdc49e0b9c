"""bptrain.sklearn.BPClassifier: scikit-learn's own estimator checks, pipelines and grid search, and the same
weights as `bptrain train` for the same settings and seed."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from bptrain.app.memory import MemoryLimitError
from bptrain.core.committee import class_probabilities
from bptrain.core.training import Callbacks
from bptrain.data.loader import load_dataset
from bptrain.data.model_io import load_model
from bptrain.sklearn import EXPECTED_FAILED_CHECKS, BPClassifier

from conftest import invoke, make_blobs, write_py2_pickle

#: The defaults, and two other corners: relu/mse/float64 on the reference engine with early stopping;
#: tanh with Adam on small batches.
CHECKED = [
    BPClassifier(),
    BPClassifier((20, 10), "relu", "mse", early_stopping=True, engine="reference", dtype="float64"),
    BPClassifier((30,), "tanh", optimizer="adam", lr=0.01, batch_size=8),
]


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS)
def test_scikit_learns_estimator_checks(estimator, check):
    check(estimator)


def test_the_declared_failures_are_few_and_give_their_reasons():
    assert len(EXPECTED_FAILED_CHECKS) <= 3
    assert all(name.startswith("check_") and reason.strip() for name, reason in EXPECTED_FAILED_CHECKS.items())


def blob_rows(n=300, n_features=12, n_classes=3, seed=0):
    (x, y), _, _ = make_blobs(n_train=n, n_validation=3, n_test=3, n_features=n_features, n_classes=n_classes,
                              seed=seed)
    return x, y


def test_any_labels_strings_too_come_back_as_given():
    x, y = blob_rows()
    names = np.array(["emu", "cat", "dog"])[y]
    clf = BPClassifier((16,), random_state=0).fit(x, names)
    assert list(clf.classes_) == ["cat", "dog", "emu"] and clf.n_features_in_ == 12
    assert set(clf.predict(x)) <= {"cat", "dog", "emu"}
    assert clf.score(x, names) > 0.95
    proba = clf.predict_proba(x)
    assert proba.shape == (300, 3) and np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(x))


def test_the_probabilities_are_bptrains_own_for_both_losses():
    x, y = blob_rows()
    for loss in ("ce", "mse"):
        clf = BPClassifier((8,), loss=loss, epochs=3, random_state=1).fit(x, y)
        np.testing.assert_array_equal(clf.predict_proba(x), class_probabilities(clf.model_, x))
        assert clf.coefs_[0].shape == (12, 8) and clf.intercepts_[-1].shape == (3,)


def test_the_same_random_state_gives_the_same_network_and_another_one_another():
    x, y = blob_rows()
    a, b = (BPClassifier((8,), epochs=2, random_state=5).fit(x, y) for _ in range(2))
    c = BPClassifier((8,), epochs=2, random_state=6).fit(x, y)
    assert all(np.array_equal(p, q) for p, q in zip(a.coefs_, b.coefs_))
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])
    BPClassifier((8,), epochs=1, random_state=np.random.RandomState(0)).fit(x, y)  # a RandomState works too


def test_without_early_stopping_the_last_epoch_is_kept_with_it_the_best():
    x, y = blob_rows()
    last = BPClassifier((8,), epochs=4, random_state=0).fit(x, y)
    assert last.n_iter_ == 4 and not hasattr(last, "best_epoch_")
    best = BPClassifier((8,), epochs=6, early_stopping=True, validation_fraction=0.2, n_iter_no_change=1,
                        random_state=0).fit(x, y)
    assert 1 <= best.best_epoch_ <= best.n_iter_ <= 6
    accuracies = [record.val_accuracy for record in best.history_]
    assert best.best_validation_score_ == max(accuracies)
    assert np.mean(best.predict(x[240:]) == y[240:]) == best.best_validation_score_  # the held-out rows are the last


@pytest.mark.parametrize("params, phrase", [
    ({"hidden_layer_sizes": 10}, "sequence of widths"),
    ({"hidden_layer_sizes": (10, 0)}, "positive integers"),
    ({"activation": "softplus"}, "activation must be one of"),
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"lr": float("nan")}, "lr must be"),
    ({"momentum": 1.0}, "momentum"),
    ({"augment": 1}, "not square"),  # 12 features
    ({"early_stopping": True, "validation_fraction": 1.0}, "validation_fraction"),
    ({"random_state": -1}, "random_state"),
    ({"engine": "gpu"}, "engine must be one of"),
])
def test_bad_parameters_are_a_value_error_at_fit(params, phrase):
    x, y = blob_rows(n=30)
    clf = BPClassifier(**params)  # the constructor only stores them
    with pytest.raises(ValueError, match=phrase):
        clf.fit(x, y)


def test_in_a_pipeline_with_a_scaler_inside_a_grid_search():
    x, y = blob_rows(n=240, seed=3)
    x = x * 50 + 7  # far from 0-1: the scaler's job
    pipe = make_pipeline(StandardScaler(), BPClassifier((16,), epochs=5, random_state=0))
    search = GridSearchCV(pipe, {"bpclassifier__lr": [0.01, 0.1], "bpclassifier__activation": ["sigmoid", "relu"]},
                          cv=2)
    search.fit(x, y)
    assert search.best_score_ > 0.9
    assert search.best_estimator_.score(x, y) > 0.9
    assert cross_val_score(clone(pipe), x, y, cv=3).min() > 0.9


# ------------------------------------------------------------------ the same weights as `bptrain train`
def assert_same_as_bptrain_train(runner, tmp_path, data_file, x, y, n_val, patience, augment, hidden=(16,)):
    out = tmp_path / "cli.npy"
    result = invoke(runner, "train", "--data", data_file, "--sizes", ",".join(map(str, (x.shape[1], *hidden, 10))),
                    "--epochs", 3, "--seed", 3, "--early-stopping", patience, "--augment", augment, "--out", out, "-q")
    assert result.exit_code == 0, result.output + result.stderr
    cli, meta = load_model(out)
    clf = BPClassifier(hidden, epochs=3, random_state=3, early_stopping=True, validation_fraction=n_val / len(x),
                       n_iter_no_change=patience, augment=augment).fit(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(cli.weights + cli.biases, clf.coefs_ + clf.intercepts_))
    assert clf.best_epoch_ == meta["best_epoch"] and clf.n_iter_ == meta["epochs_run"]


@pytest.mark.parametrize("patience", [0, 1])
def test_fit_gives_the_weights_of_bptrain_train_on_synthetic_data(runner, tmp_path, patience):
    splits = make_blobs(n_train=400, n_validation=100, n_test=20, n_classes=10, spread=0.2)
    data_file = write_py2_pickle(tmp_path / "blobs.pkl.gz", splits)
    (xt, yt), (xv, yv), _ = splits
    assert_same_as_bptrain_train(runner, tmp_path, data_file, np.concatenate([xt, xv]), np.concatenate([yt, yv]),
                                 n_val=100, patience=patience, augment=0)


@pytest.fixture(scope="module")
def mnist(real_mnist_path):
    return load_dataset(real_mnist_path)


@pytest.mark.parametrize("patience", [0, 1])
def test_fit_on_mnists_training_images_gives_the_weights_of_bptrain_train(runner, tmp_path, mnist, patience):
    # the first 1,000 of MNIST's training images, the last 200 held out: as bptrain's loader holds out the last
    # 10,000 of the 60,000 (and `bptrain train` shifts the images by a pixel, as augment=1 does here)
    x, y = mnist.train.x[:1000], mnist.train.y[:1000]
    data_file = write_py2_pickle(tmp_path / "slice.pkl.gz", ((x[:800], y[:800]), (x[800:], y[800:]),
                                                             (mnist.test.x[:50], mnist.test.y[:50])))
    assert_same_as_bptrain_train(runner, tmp_path, data_file, x, y, n_val=200, patience=patience, augment=1)


def test_the_defaults_score_over_80_percent_on_2000_scaled_mnist_digits(mnist):
    x, y = mnist.train.x[:2000], mnist.train.y[:2000]
    search = GridSearchCV(make_pipeline(StandardScaler(), BPClassifier(random_state=0)),
                          {"bpclassifier__hidden_layer_sizes": [(128, 64), (64,)]}, cv=2)
    search.fit(x, y)
    assert search.best_score_ >= 0.8
    assert search.score(mnist.test.x[:2000], mnist.test.y[:2000]) >= 0.8


def test_a_network_too_big_for_the_memory_is_refused_before_it_is_made():
    x, y = blob_rows(n=30)
    with pytest.raises(MemoryLimitError, match="memory|GB"):
        BPClassifier((10**7, 10**6)).fit(x, y)


def test_ctrl_c_during_fit_raises_and_keeps_the_previous_fit(monkeypatch):
    import bptrain.sklearn as module

    x, y = blob_rows()
    clf = BPClassifier((8,), epochs=2, random_state=0).fit(x, y)
    before = [w.copy() for w in clf.coefs_]
    real_train = module.train

    class CtrlC(Callbacks):
        def epoch_ended(self, record, improved):
            raise KeyboardInterrupt

    def interrupted(model, data, settings, **kwargs):
        return real_train(model, data, settings, **{**kwargs, "callbacks": [*kwargs.get("callbacks", ()), CtrlC()]})

    monkeypatch.setattr(module, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(x, np.where(y == 0, "a", "b"))
    assert list(clf.classes_) == [0, 1, 2] and all(np.array_equal(a, b) for a, b in zip(before, clf.coefs_))


def test_bptrain_and_its_command_line_do_not_load_scikit_learn():
    code = "import sys, bptrain, bptrain.app.commands; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]
