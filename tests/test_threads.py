"""How training shares the cores: one BLAS thread for small steps, and the epoch thread when a core is free."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from bptrain.fast import blas, same_bits as piecewise
from bptrain import environment
from bptrain.data.epochs import EpochImages
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


@pytest.mark.parametrize("limit_macs,batch_size,several", [(10**9, 4, False), (1, 4, True), (1, 1, False)])
def test_momentum_keeps_the_form_of_the_quiet_thread_count_whatever_the_bound(monkeypatch, limit_macs, batch_size,
                                                                             several):
    """The form (s = μv for one thread, v for several) rounds differently: it follows the sizes, not the bound."""
    monkeypatch.setattr(cores, "usable_cores", lambda: 2)
    monkeypatch.setattr(blas, "threads", lambda: 2)
    monkeypatch.setattr(cores, "ONE_THREAD_BELOW", {"gemm": 0, "gemm+axpy": limit_macs, "ufuncs": limit_macs})
    x = np.random.default_rng(0).random((8, 4))
    y = np.eye(2)[np.arange(8) % 2]
    for bound in ("1", "2"):
        monkeypatch.setenv(environment.MOST_THREADS_VARIABLE, bound)
        engine = run_fast_epoch(MLP((4, 3, 2), "ce", dtype=np.float64), x, y, batch_size, momentum=0.9)[0]
        assert engine.optimizer.split is several  # v itself for several threads, s = μv for one
        assert engine.threads.most == (int(bound) if several else 1)
        assert engine.threads.policy.adapts is False or (several and bound == "2")


def test_the_bound_on_the_steps_threads_obeys_openblas_the_cores_and_bptrain_blas_threads(monkeypatch):
    monkeypatch.delenv(environment.MOST_THREADS_VARIABLE, raising=False)
    monkeypatch.setattr(cores, "usable_cores", lambda: 4)
    monkeypatch.setattr(blas, "threads", lambda: 2)  # OPENBLAS_NUM_THREADS=2, as OpenBLAS reads it
    assert cores.most_threads() == 2
    monkeypatch.setattr(blas, "threads", lambda: 8)
    assert cores.most_threads() == 4
    for value, expected in (("1", 1), ("3", 3), ("9", 4), ("0", 4), ("many", 4)):
        monkeypatch.setenv(environment.MOST_THREADS_VARIABLE, value)
        assert cores.most_threads() == expected


def test_sweep_bounds_its_runs_with_the_variable_the_policy_reads(monkeypatch):
    from bptrain.app.sweep.cores import plan_cores

    _, threads, variables = plan_cores(4, 4, 4, {})  # four runs at a time on four cores: one thread each
    assert threads == 1
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cores, "usable_cores", lambda: 4)
    monkeypatch.setattr(blas, "threads", lambda: 4)
    assert cores.most_threads() == 1


@pytest.mark.parametrize("usable,blas_threads,batch_size,expected", [
    (2, 2, 10, True),     # the steps take one core, the other prepares the next epoch
    (2, 2, 128, True),    # the steps adapt between one and two threads: on one, a core is free
    (1, 1, 10, False),    # one core: the thread could only slow the steps
    (4, 2, 128, True),    # OpenBLAS limited to 2 of 4 cores
])  # with momentum (gemm+axpy)
def test_the_epoch_thread_runs_when_a_core_is_free(monkeypatch, usable, blas_threads, batch_size, expected):
    monkeypatch.delenv(environment.EPOCH_THREAD_VARIABLE, raising=False)
    monkeypatch.setattr(cores, "usable_cores", lambda: usable)
    monkeypatch.setattr(blas, "threads", lambda: blas_threads)
    assert cores.epoch_thread(DEFAULT, batch_size, "gemm+axpy") is expected


@pytest.mark.parametrize("value,expected", [("1", True), ("yes", True), ("0", False)])
def test_the_environment_forces_the_epoch_thread(monkeypatch, value, expected):
    monkeypatch.setenv(environment.EPOCH_THREAD_VARIABLE, value)
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
    monkeypatch.delenv(environment.EPOCH_THREAD_VARIABLE, raising=False)
    monkeypatch.setattr(cores, "usable_cores", lambda: 2)
    monkeypatch.setattr(blas, "threads", lambda: 2)
    assert cores.describe(DEFAULT, 10, "gemm+axpy") == "1+1"  # one BLAS thread and the epoch thread
    assert cores.describe(DEFAULT, 32, "gemm+axpy") == "1-2+1"  # one or two, whichever is faster, and the epoch thread
    assert cores.describe(DEFAULT, 16, "ufuncs") == "1+1"
    assert cores.describe(DEFAULT, 10, "gemm") == "1-2+1"
    monkeypatch.setenv(environment.MOST_THREADS_VARIABLE, "1")
    assert cores.describe(DEFAULT, 32, "gemm+axpy") == "1+1"  # bound to one thread: the other core is free


@pytest.mark.parametrize("usable,blas_threads,expected", [(2, 2, 1), (4, 4, 3), (8, 2, 2), (1, 1, None)])
def test_distortions_get_a_core_of_their_own(monkeypatch, usable, blas_threads, expected):
    """Distorting an epoch costs as much as training it: the steps leave a core to the epoch thread."""
    monkeypatch.delenv(environment.EPOCH_THREAD_VARIABLE, raising=False)
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
    monkeypatch.delenv(environment.EPOCH_THREAD_VARIABLE, raising=False)
    monkeypatch.setattr(cores, "usable_cores", lambda: 2)
    monkeypatch.setattr(blas, "threads", lambda: 2)
    big, small = (784, 1000, 500, 10), (784, 800, 10)
    assert cores.weights(big) > cores.CORE_FOR_DISTORTIONS_UP_TO >= cores.weights(small)
    assert cores.step_threads(big, 64, "gemm+axpy", distorts=True) is None
    assert cores.epoch_thread(big, 64, "gemm+axpy", distorts=True) is True  # for when the steps drop to one
    assert cores.step_threads(small, 64, "gemm+axpy", distorts=True) == 1
    assert cores.epoch_thread(small, 64, "gemm+axpy", distorts=True) is True


# ---------------------------------------------------------------- the policy, on made-up times
class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run_groups(policy, clock, seconds_per_row, groups, rows=480, batch=32):
    """Drive ``policy`` as FastEngine.run_epoch does, with times from ``seconds_per_row(count)``;
    returns the count of each group (its count after any probe) and the seconds lost probing."""
    counts, lost = [], 0.0
    for _ in range(groups):
        left = rows
        if policy.probe_due():
            other, spent, probed = policy.other, 0.0, 0
            while probed < rows:  # step by step, stopping once clearly slower
                spent += seconds_per_row(other) * batch
                probed += batch
                if policy.clear(spent, probed):
                    break
            lost += spent - seconds_per_row(policy.current) * probed
            clock.now += spent
            policy.probed(spent / probed, probed)
            left -= probed
        if 2 * left >= rows:
            clock.now += seconds_per_row(policy.current) * left
            policy.record(left, seconds_per_row(policy.current) * left)
        counts.append(policy.current)
    return counts, lost


QUIET = {1: 20e-6, 2: 14e-6}.get
BUSY = {1: 22e-6, 2: 60e-6}.get  # another process on the cores: two threads wait for each other


def test_the_steps_start_on_one_thread_and_probe_only_once_they_have_a_baseline():
    clock = FakeClock()
    policy = cores.ThreadPolicy(2, clock=clock)
    assert (policy.current, policy.other, policy.baseline()) == (1, 2, None)
    assert not policy.probe_due()  # nothing to compare a probe with yet
    counts, _ = run_groups(policy, clock, QUIET, 5)
    assert counts[:cores.ThreadPolicy.FIRST_WAIT] == [1, 1] and counts[-1] == 2


def test_on_a_quiet_machine_the_policy_keeps_two_threads_and_probes_ever_more_rarely():
    clock = FakeClock()
    policy = cores.ThreadPolicy(2, clock=clock)
    counts, lost = run_groups(policy, clock, QUIET, 400)
    assert set(counts[5:]) == {2}
    assert lost <= 0.01 * clock.now  # waits of 2, 4, ..., 64 groups and the budget: a fraction of a percent


def test_when_load_arrives_the_policy_moves_to_one_thread_within_a_few_groups_and_back_when_it_leaves():
    clock = FakeClock()
    policy = cores.ThreadPolicy(2, clock=clock)
    run_groups(policy, clock, QUIET, 100)
    assert policy.current == 2
    counts, _ = run_groups(policy, clock, BUSY, 10)
    assert counts[-1] == 1 and counts.index(1) <= 2  # the slow group starts a probe at once
    assert set(run_groups(policy, clock, BUSY, 300)[0]) == {1}
    counts, _ = run_groups(policy, clock, QUIET, 300)  # quiet again
    assert counts[-1] == 2


def test_while_other_processes_hold_the_cores_no_probe_runs_and_once_they_leave_probes_resume():
    """The load the system reports stands in for a probe of two threads: skipped as if lost, no time spent."""
    clock, load = FakeClock(), [1.0]
    policy = cores.ThreadPolicy(2, clock=clock, others=lambda: load[0], cores=2)
    counts, lost = run_groups(policy, clock, BUSY, 300)
    assert set(counts) == {1} and lost == 0.0 and policy.skipped >= 5
    waits = policy._interval
    assert waits == cores.ThreadPolicy.LONGEST_WAIT  # skips back off like lost probes
    load[0] = 0.2  # a browser drawing: the second core is still mostly free
    counts, _ = run_groups(policy, clock, QUIET, 2 * waits + 10)
    assert counts[-1] == 2


@pytest.mark.parametrize("most, busy, probes", [(2, None, True), (2, 0.0, True), (2, 0.4, True), (2, 0.6, False),
                                               (2, 1.0, False), (4, 1.0, True), (4, 1.4, True), (4, 1.6, False)])
def test_a_probe_needs_half_the_cores_it_would_add_free(most, busy, probes):
    """Two cores: no probe beside more than half a core of other work; four: beside more than one and a half."""
    clock = FakeClock()
    policy = cores.ThreadPolicy(most, clock=clock, others=lambda: busy, cores=most)
    run_groups(policy, clock, {1: 20e-6, 2: 20e-6}.get, 1)  # a baseline, no probe yet
    policy._wait = 0
    assert policy.probe_due() is probes


def test_a_probe_of_one_thread_is_never_skipped_for_load():
    """On two threads under new load, one thread is what to try: the load only makes it likelier to win."""
    clock = FakeClock()
    policy = cores.ThreadPolicy(2, clock=clock, others=lambda: 2.0, cores=2)
    policy.current, policy.other = 2, 1
    run_groups(policy, clock, QUIET, 1)
    policy._wait = 0
    assert policy.probe_due()


@pytest.mark.parametrize("one_thread, expected", [(0.95, 2), (0.85, 1)])
def test_one_thread_takes_over_only_when_it_beats_several_by_the_margin(one_thread, expected):
    """Within 10% a group (a quiet machine's close call) several threads stay; clearly faster, one takes over."""
    clock = FakeClock()
    policy = cores.ThreadPolicy(2, clock=clock)
    counts, _ = run_groups(policy, clock, {1: one_thread * 14e-6, 2: 14e-6}.get, 300)
    assert counts[-1] == expected and set(counts[-100:]) == {expected}


def test_a_busy_machine_from_the_start_never_leaves_one_thread_and_probes_within_the_budget():
    clock = FakeClock()
    policy = cores.ThreadPolicy(2, clock=clock)
    counts, lost = run_groups(policy, clock, BUSY, 2000)
    assert set(counts) == {1}
    assert 0 < lost <= 1.1 * cores.ThreadPolicy.BUDGET * clock.now


def test_probes_of_a_much_slower_count_stop_after_a_step_and_cost_at_most_the_budget():
    """Two threads 100 times slower (once seen): a probe stops at its first step, the next waits."""
    clock = FakeClock()
    policy = cores.ThreadPolicy(2, clock=clock)
    cost = {1: 20e-6, 2: 2000e-6}.get
    counts, lost = run_groups(policy, clock, cost, 2000)
    assert set(counts) == {1}
    step_lost = (cost(2) - cost(1)) * 32
    assert step_lost < lost <= 1.1 * cores.ThreadPolicy.BUDGET * clock.now + step_lost


def test_the_baseline_is_the_mean_of_the_last_groups_and_two_groups_far_from_it_start_it_over():
    policy = cores.ThreadPolicy(2, clock=FakeClock())
    for seconds in (10e-3, 11e-3, 12e-3, 9e-3, 10e-3):
        policy.record(500, seconds)
    level = (11e-3 + 12e-3 + 9e-3 + 10e-3) / 4 / 500
    assert policy.baseline() == pytest.approx(level)
    for _ in range(5):
        policy.probe_due()  # groups pass: the wait before the next probe runs out
    policy.record(500, 40e-3)  # another process started, or one group was preempted: set aside
    assert policy.baseline() == pytest.approx(level)
    policy.record(500, 42e-3)  # a second: it started; the two are the new baseline, and a probe next
    assert policy.baseline() == pytest.approx((40e-3 + 42e-3) / 2 / 500) and policy.probe_due()


def test_a_group_set_aside_is_forgotten_when_the_next_is_in_line_or_on_the_other_side():
    policy = cores.ThreadPolicy(2, clock=FakeClock())
    for _ in range(4):
        policy.record(500, 10e-3)
    policy.record(500, 40e-3)
    policy.record(500, 10e-3)  # back in line: the slow one was a preempted group
    policy.record(500, 40e-3)
    policy.record(500, 2e-3)   # out of line the other way: no change the two agree on
    assert policy.baseline() == pytest.approx(10e-3 / 500)


def test_a_probe_is_clear_at_twice_the_baseline():
    policy = cores.ThreadPolicy(2, clock=FakeClock())
    policy.record(100, 1e-3)
    assert not policy.clear(1.9e-3, 100) and policy.clear(2.1e-3, 100)


def test_a_single_slow_group_is_set_aside_without_a_probe_or_a_move():
    clock = FakeClock()
    policy = cores.ThreadPolicy(2, clock=clock)
    run_groups(policy, clock, QUIET, 100)
    policy.record(480, 480 * 80e-6)  # one preempted group
    probes = 0
    for _ in range(5):
        probes += policy.probe_due()
        policy.record(480, 480 * 14e-6)
    assert probes == 0 and policy.current == 2
    assert policy.baseline() == pytest.approx(14e-6)


@pytest.mark.parametrize("policy", [cores.ThreadPolicy(1), cores.FixedThreads(2)])
def test_one_thread_or_a_fixed_count_never_probes(policy):
    for _ in range(100):
        assert not policy.probe_due()
        policy.record(500, 0.01)
    assert not policy.adapts


# ---------------------------------------------------------------- the numbers do not depend on the count
class Alternating(cores.ThreadPolicy):
    """Probes every group and switches every time: the most changes of count an epoch can see."""

    def __init__(self):
        super().__init__(2)

    def probe_due(self):
        return True

    def probed(self, other_per_row, rows):
        self.current, self.other = self.other, self.current


def trained_bytes(policy, sizes=DEFAULT, batch_size=32, **settings):
    """The parameters after two epochs of random data with ``policy`` choosing the threads (None: the engine's).

    Three full batches a group (probes need two; ten groups an epoch) and a partial last batch."""
    from bptrain.core import epoch_steps as training
    from bptrain.core.epoch_steps import EpochSteps
    from bptrain.fast.engine import FastEngine

    assert training.UPDATES_PER_EPOCH == 10, "use the ten_groups fixture"
    rows = 30 * batch_size + 10
    rng = np.random.default_rng(5)
    x = rng.random((rows, sizes[0]), dtype=np.float32)
    y = np.eye(sizes[-1], dtype=np.float32)[rng.integers(0, sizes[-1], rows)]
    model = MLP(sizes, "ce", seed=1, activation=settings.pop("activation", "sigmoid"))
    engine = FastEngine(model, TrainSettings(batch_size=batch_size, **settings), batch_size)
    if policy is not None:
        engine.threads.policy, engine.threads.bits_checked = policy, True
    for epoch in (1, 2):
        engine.run_epoch(x, y, EpochSteps(model, epoch, rows, batch_size, 0.1))
    return b"".join(p.tobytes() for p in model.weights + model.biases), engine


@pytest.fixture
def ten_groups(monkeypatch):
    from bptrain.core import epoch_steps as training

    monkeypatch.setattr(training, "UPDATES_PER_EPOCH", 10)


needs_thread_control = pytest.mark.skipif(not blas.can_set_threads(), reason="no bundled OpenBLAS to set threads of")


@needs_thread_control
@pytest.mark.parametrize("sizes,batch_size,settings", [
    (DEFAULT, 32, dict(momentum=0.9, weight_decay=1e-4)),                     # train's defaults
    (DEFAULT, 128, dict(momentum=0.9, weight_decay=1e-4, nesterov=True)),
    (DEFAULT, 32, dict(optimizer="adam")),
    ((784, 1000, 500, 10), 64, dict(momentum=0.9, weight_decay=5e-5, activation="relu")),  # ciresan-1000-500
])
def test_an_epoch_gives_the_same_bytes_on_one_thread_two_threads_and_switching(monkeypatch, ten_groups, sizes,
                                                                                batch_size, settings):
    monkeypatch.setattr(cores, "most_threads", lambda: 2)
    one, engine = trained_bytes(cores.FixedThreads(1), sizes, batch_size, **settings)
    assert engine.threads.policy.adapts is False
    two, _ = trained_bytes(cores.FixedThreads(2), sizes, batch_size, **settings)
    switching, _ = trained_bytes(Alternating(), sizes, batch_size, **settings)
    assert one == two == switching


class CountingProbes(Alternating):
    def __init__(self):
        super().__init__()
        self.probes = 0

    def probed(self, other_per_row, rows):
        self.probes += 1
        super().probed(other_per_row, rows)


@needs_thread_control
def test_the_steps_stay_on_one_thread_until_the_epoch_thread_has_the_first_epoch(monkeypatch, ten_groups):
    """Steps on two threads shut the epoch thread's gate and would wait for the first epoch alone, page
    faults and all; so no probe runs before it is ready, and from then on they do."""
    from bptrain.core.epoch_steps import EpochSteps
    from bptrain.fast.engine import FastEngine
    from bptrain.fast.epoch_thread import BackgroundEpochImages

    monkeypatch.setattr(cores, "most_threads", lambda: 2)
    monkeypatch.setenv(environment.EPOCH_THREAD_VARIABLE, "1")
    rows = 30 * 32 + 10
    rng = np.random.default_rng(5)
    x, labels = rng.random((rows, DEFAULT[0]), dtype=np.float32), rng.integers(0, 10, rows)
    model = MLP(DEFAULT, "ce", seed=1)
    engine = FastEngine(model, TrainSettings(batch_size=32), 32)
    engine.threads.policy, engine.threads.bits_checked = CountingProbes(), True
    ready = BackgroundEpochImages.first_epoch_prepared
    monkeypatch.setattr(BackgroundEpochImages, "first_epoch_prepared", lambda images: False)
    with engine.prepare_ahead(EpochImages(x, labels, 10, np.float32, np.random.default_rng(0), 2)) as images:
        assert images.background
        engine.run_epoch(*images.next(), EpochSteps(model, 1, rows, 32, 0.1))
        assert engine.threads.policy.probes == 0 and engine.threads.policy.current == 1
        monkeypatch.setattr(BackgroundEpochImages, "first_epoch_prepared", ready)
        engine.run_epoch(*images.next(), EpochSteps(model, 2, rows, 32, 0.1))
        assert engine.threads.policy.probes == 10


@needs_thread_control
def test_the_first_probe_lets_the_count_move_only_where_the_bits_agree(monkeypatch, ten_groups):
    """What the pieces are for: without them OpenBLAS sums a 784-long inner dimension differently on one
    and two threads, the first probe sees it, and the run stays on one thread: a one-thread run's bytes."""
    monkeypatch.setattr(cores, "most_threads", lambda: 2)
    monkeypatch.setattr(cores.ThreadPolicy, "FIRST_WAIT", 0)
    _, engine = trained_bytes(None, momentum=0.9)
    assert type(engine.threads.policy) is cores.ThreadPolicy and engine.threads.bits_checked
    monkeypatch.setattr(piecewise, "PIECE_MOST", {np.dtype(np.float32): 10**6, np.dtype(np.float64): 10**6})
    kept, engine = trained_bytes(None, momentum=0.9)
    assert isinstance(engine.threads.policy, cores.FixedThreads) and engine.threads.policy.current == 1 and engine.threads.bits_checked
    assert kept == trained_bytes(cores.FixedThreads(1), momentum=0.9)[0]
    assert kept != trained_bytes(cores.FixedThreads(2), momentum=0.9)[0]  # the check saw a real difference


def test_a_run_forced_onto_one_thread_saves_the_same_model_file(tmp_path):
    """`bptrain train` as a user runs it and with OPENBLAS_NUM_THREADS=1: byte-identical models."""
    from conftest import make_blobs, write_py2_pickle

    data = write_py2_pickle(tmp_path / "blobs.pkl.gz", make_blobs(n_train=6500, n_features=784, n_classes=10))
    models = []
    for name, extra in (("free", {}), ("one", {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})):
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                                 environment.MOST_THREADS_VARIABLE)}
        out = tmp_path / f"{name}.npy"
        result = subprocess.run([sys.executable, "-m", "bptrain", "train", "--data", str(data), "--epochs", "2",
                                 "--out", str(out), "-q"], capture_output=True, text=True, env={**env, **extra},
                                timeout=300)
        assert result.returncode == 0, result.stderr
        models.append(out.read_bytes())
    assert models[0] == models[1]


@pytest.mark.parametrize("usable,expected", [(2, False), (4, True)])
def test_momentums_form_with_distortions_follows_the_cores_not_the_bounds(monkeypatch, usable, expected):
    """Small distorted networks leave a core to the epoch thread: several threads only from 3 cores up."""
    monkeypatch.setattr(cores, "usable_cores", lambda: usable)
    for openblas, bound in ((usable, ""), (1, ""), (usable, "1")):
        monkeypatch.setattr(blas, "threads", lambda: openblas)
        monkeypatch.setenv(environment.MOST_THREADS_VARIABLE, bound)
        assert cores.several_threads(DEFAULT, 128, "gemm+axpy", distorts=True) is expected
        assert cores.several_threads(DEFAULT, 128, "gemm+axpy") is True
        assert cores.several_threads(DEFAULT, 10, "gemm+axpy", distorts=True) is False


# ---------------------------------------------------------------- OpenBLAS's idle threads
def python_says(code: str, **env_changes) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS",
                                                            "OMP_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", code], env={**env, **env_changes}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_bptrain_changes_no_variable_and_loads_no_blas():
    """A library user's process is theirs: ``import bptrain`` (and asking for the cores) sets nothing and
    loads neither NumPy nor the fast engine's BLAS self-test."""
    code = ("import os, sys, bptrain, bptrain.environment; bptrain.environment.usable_cores(); "
            "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), 'numpy' in sys.modules, 'bptrain.fast.blas' in sys.modules)")
    assert python_says(code) == "None False False"
    code = "import os, sys, bptrain; bptrain.MLP; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), 'bptrain.fast.blas' in sys.modules)"
    assert python_says(code) == "None False"


def test_the_command_line_shortens_openblas_idle_spin_unless_the_user_chose():
    code = "import os, bptrain.app.cli; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    assert python_says(code) == "20"
    assert python_says(code, OPENBLAS_THREAD_TIMEOUT="25") == "25"


SPIN = """{first}
import time
import numpy as np
from bptrain.fast import blas
blas.set_threads(2)
a = np.ones((600, 600), np.float32)
for _ in range(20):
    a @ a  # both OpenBLAS threads work
began = time.process_time()
time.sleep(0.3)
print(time.process_time() - began)  # CPU the process used while its main thread slept: the idle worker's
"""


@pytest.mark.skipif(not blas.can_set_threads() or blas.threads() < 2 or cores.usable_cores() < 2,
                    reason="needs the bundled OpenBLAS with two threads on two cores")
def test_after_a_product_the_idle_openblas_thread_sleeps_instead_of_spinning():
    """What the variable does: NumPy loaded after the command line set it, the worker idles under a millisecond;
    loaded before it (OpenBLAS's own 2^28 cycles), it spins for tens of milliseconds of CPU."""
    short = float(python_says(SPIN.format(first="import bptrain.app.cli")))
    assert short < 0.02
    spinning = float(python_says(SPIN.format(first="import numpy"), OPENBLAS_THREAD_TIMEOUT="28"))
    assert spinning > short
