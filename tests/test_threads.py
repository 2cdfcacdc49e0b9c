"""How training shares the cores: one BLAS thread for small steps, and the epoch thread when a core is free."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from bptrain.fast import blas
from bptrain.fast import threads as cores
from bptrain.core.network import MLP
from bptrain.fast.optimizers import SGD, Adam
from bptrain import TrainSettings, train

from conftest import run_fast_epoch
from test_epochs import epoch_thread_alive, square_dataset

DEFAULT = (784, 128, 64, 10)


@pytest.mark.parametrize("sizes,batch_size,threads", [
    (DEFAULT, 1, 1), (DEFAULT, 10, 1), (DEFAULT, 16, 1),          # 0.1, 1.1, 1.75 M multiply-adds per step
    (DEFAULT, 32, None), (DEFAULT, 128, None),                    # 3.5 and 14 M: OpenBLAS splits them
    ((784, 30, 10), 64, 1), ((784, 30, 10), 128, None),           # 1.5 and 3.0 M
    ((784, 800, 10), 1, 1), ((784, 800, 10), 10, None),           # one row: matrix-vector products; 6.4 M
])
def test_small_adam_steps_get_one_blas_thread(sizes, batch_size, threads):
    assert cores.step_threads(sizes, batch_size, "ufuncs") == threads


@pytest.mark.parametrize("batch_size,plain,momentum", [(1, 1, 1), (10, None, 1), (32, None, None), (128, None, None)])
def test_sgd_keeps_openblas_threads_for_all_but_the_smallest_steps(batch_size, plain, momentum):
    """Plain SGD is one gemm; momentum is gemm and axpy (split alike) from 2 M multiply-adds a step."""
    assert cores.step_threads(DEFAULT, batch_size, "gemm") == plain
    assert cores.step_threads(DEFAULT, batch_size, "gemm+axpy") == momentum


def test_step_size_counts_every_layer():
    assert cores.step_macs(DEFAULT, 32) == 32 * (784 * 128 + 128 * 64 + 64 * 10)


def test_each_optimizer_names_its_kind_of_update():
    model = MLP((4, 3, 2), "ce")
    assert SGD(model.weights, model.biases).update_kind == "gemm"
    assert SGD(model.weights, model.biases, weight_decay=1e-4).update_kind == "gemm"  # decay is gemm's β
    assert SGD(model.weights, model.biases, momentum=0.9).update_kind == "gemm+axpy"
    assert Adam(model.weights, model.biases).update_kind == "ufuncs"
    assert set(cores.ONE_THREAD_BELOW) == {"gemm", "gemm+axpy", "ufuncs"}


@pytest.mark.parametrize("limit_macs,batch_size,expected", [(10**9, 4, 1), (1, 4, None), (1, 1, 1)])
def test_run_epoch_trains_with_the_chosen_threads_and_momentum_in_their_form(monkeypatch, limit_macs, batch_size,
                                                                             expected):
    limits = []

    @contextlib.contextmanager
    def record(value):
        limits.append(value)
        yield

    monkeypatch.setattr(blas, "threads_at_most", record)
    monkeypatch.setattr(blas, "threads", lambda: expected or 2)  # what OpenBLAS would then use
    monkeypatch.setattr(cores, "ONE_THREAD_BELOW", {"gemm": 0, "gemm+axpy": limit_macs, "ufuncs": limit_macs})
    model = MLP((4, 3, 2), "ce", dtype=np.float64)
    x = np.random.default_rng(0).random((8, 4))
    y = np.eye(2)[np.arange(8) % 2]
    momentum = run_fast_epoch(model, x, y, batch_size, momentum=0.9)[0].optimizer
    assert momentum.split == (expected is None)  # v itself on several threads, s = μv on one
    run_fast_epoch(model, x, y, batch_size)
    assert limits == [expected, 1 if batch_size == 1 else None]  # plain SGD: one thread only for one-row batches


@pytest.mark.parametrize("usable,blas_threads,batch_size,expected", [
    (2, 2, 10, True),     # the steps take one core, the other prepares the next epoch
    (2, 2, 128, False),   # OpenBLAS splits the steps over both cores: nothing free
    (1, 1, 10, False),    # one core: the thread could only slow the steps
    (4, 2, 128, True),    # OpenBLAS limited to 2 of 4 cores
])  # with momentum (gemm+axpy)
def test_the_epoch_thread_runs_when_a_core_is_free(monkeypatch, usable, blas_threads, batch_size, expected):
    monkeypatch.delenv(cores.EPOCH_THREAD_VARIABLE, raising=False)
    monkeypatch.setattr(cores, "usable_cores", lambda: usable)
    monkeypatch.setattr(blas, "threads", lambda: blas_threads)
    assert cores.epoch_thread(DEFAULT, batch_size, "gemm+axpy") is expected


@pytest.mark.parametrize("value,expected", [("1", True), ("yes", True), ("0", False)])
def test_the_environment_forces_the_epoch_thread(monkeypatch, value, expected):
    monkeypatch.setenv(cores.EPOCH_THREAD_VARIABLE, value)
    for usable in (1, 8):
        monkeypatch.setattr(cores, "usable_cores", lambda: usable)
        assert cores.epoch_thread(DEFAULT, 10) is expected
        assert cores.epoch_thread(DEFAULT, 1000) is expected


def test_usable_cores_is_at_least_one():
    assert cores.usable_cores() >= 1


@pytest.mark.parametrize("free_core", [True, False])
def test_train_prepares_epochs_in_a_thread_exactly_when_a_core_is_free(monkeypatch, free_core):
    monkeypatch.setattr(cores, "epoch_thread", lambda sizes, batch_size, update_kind, distorts: free_core)
    seen = []
    model = MLP((49, 8, 3), "ce", seed=0)
    train(model, square_dataset(), TrainSettings(epochs=3, batch_size=16, augment=1), progress=False,
          on_epoch=lambda record, improved: seen.append(epoch_thread_alive()))
    # after epoch 1 it cannot have finished: epoch 3 goes into rows epoch 2 has not used yet
    assert seen[0] == free_core
    if not free_core:
        assert seen == [False, False, False]
    assert not epoch_thread_alive()


def test_describe_says_threads_and_preparation(monkeypatch):
    monkeypatch.delenv(cores.EPOCH_THREAD_VARIABLE, raising=False)
    monkeypatch.setattr(cores, "usable_cores", lambda: 2)
    monkeypatch.setattr(blas, "threads", lambda: 2)
    assert cores.describe(DEFAULT, 10, "gemm+axpy") == "1+1"  # one BLAS thread and the epoch thread
    assert cores.describe(DEFAULT, 32, "gemm+axpy") == "2"
    assert cores.describe(DEFAULT, 16, "ufuncs") == "1+1"
    assert cores.describe(DEFAULT, 10, "gemm") == "2"


@pytest.mark.parametrize("usable,blas_threads,expected", [(2, 2, 1), (4, 4, 3), (8, 2, 2), (1, 1, None)])
def test_distortions_get_a_core_of_their_own(monkeypatch, usable, blas_threads, expected):
    """Distorting an epoch costs as much as training it: the steps leave a core to the epoch thread."""
    monkeypatch.delenv(cores.EPOCH_THREAD_VARIABLE, raising=False)
    monkeypatch.setattr(cores, "usable_cores", lambda: usable)
    monkeypatch.setattr(blas, "threads", lambda: blas_threads)
    assert cores.step_threads(DEFAULT, 128, "gemm+axpy", distorts=False) is None
    assert cores.step_threads(DEFAULT, 128, "gemm+axpy", distorts=True) == expected
    assert cores.epoch_thread(DEFAULT, 128, "gemm+axpy", distorts=True) is (usable > 1)
    assert cores.step_threads(DEFAULT, 10, "gemm+axpy", distorts=True) == 1  # small steps: one thread anyway


@pytest.mark.parametrize("elastic_alpha", [0.0, 5.0])
def test_train_and_run_epoch_tell_cores_whether_epochs_are_distorted(monkeypatch, elastic_alpha):
    asked = []
    step_threads = cores.step_threads

    def record_step_threads(sizes, batch_size, update_kind="ufuncs", distorts=False):
        asked.append(("steps", distorts))
        return step_threads(sizes, batch_size, update_kind, distorts)

    monkeypatch.setattr(cores, "step_threads", record_step_threads)
    model = MLP((49, 8, 3), "ce", seed=0)
    train(model, square_dataset(), TrainSettings(epochs=2, batch_size=16, elastic_alpha=elastic_alpha),
          progress=False)
    distorted = elastic_alpha > 0
    assert ("steps", distorted) in asked and ("steps", not distorted) not in asked


def test_large_networks_keep_every_blas_thread_with_distortions(monkeypatch):
    """Above CORE_FOR_DISTORTIONS_UP_TO weights the products outweigh the distortions: no core is left."""
    monkeypatch.delenv(cores.EPOCH_THREAD_VARIABLE, raising=False)
    monkeypatch.setattr(cores, "usable_cores", lambda: 2)
    monkeypatch.setattr(blas, "threads", lambda: 2)
    big, small = (784, 1000, 500, 10), (784, 800, 10)
    assert cores.weights(big) > cores.CORE_FOR_DISTORTIONS_UP_TO >= cores.weights(small)
    assert cores.step_threads(big, 64, "gemm+axpy", distorts=True) is None
    assert cores.epoch_thread(big, 64, "gemm+axpy", distorts=True) is False
    assert cores.step_threads(small, 64, "gemm+axpy", distorts=True) == 1
    assert cores.epoch_thread(small, 64, "gemm+axpy", distorts=True) is True
