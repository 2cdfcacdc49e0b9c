"""`bptrain sweep --scheduler`: the runs as tasks on a real Dask cluster (a LocalCluster of two worker
processes on 127.0.0.1), real `bptrain sweep` and `bptrain train` processes, small synthetic data.

The files a cluster sweep writes equal a local sweep's byte for byte (models) and but for the epochs'
wall-clock seconds (histories, which differ between any two runs); a worker killed mid-run takes its
`train` with it and the run is trained again elsewhere; Ctrl-C keeps what finished; a second sweep trains
nothing; a scheduler that is not there is one line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from conftest import require_test_extra

distributed = require_test_extra("distributed")

import dask  # noqa: E402
import psutil  # noqa: E402 (a dependency of distributed)

from bptrain.app.sweep import cluster as sweep_cluster  # noqa: E402
from bptrain.app.sweep.cluster import ClusterError, Input, describe_input, materialise, place_inputs  # noqa: E402
from bptrain.data.model_io import load_model  # noqa: E402
from conftest import ended_at_exit, make_blobs, write_py2_pickle  # noqa: E402

TINY = ("--sizes", "20,16,3", "--batch-size", "8")


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes with one thread each, as `--scheduler local` starts on two cores."""
    with dask.config.set({"distributed.scheduler.allowed-failures": sweep_cluster.LOCAL_ALLOWED_FAILURES}):
        local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                         dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(local)
    yield local, client
    client.close()
    local.close()


@pytest.fixture
def data(tmp_path) -> Path:
    return write_py2_pickle(tmp_path / "syn.pkl.gz", make_blobs())


def sweep(cwd: Path, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bptrain", "sweep", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def statuses(folder: Path) -> dict:
    return {run["name"]: run["status"] for run in json.loads((folder / "summary.json").read_text())["runs"]}


def without_seconds(document):
    if isinstance(document, dict):
        return {key: without_seconds(value) for key, value in document.items() if key != "seconds"}
    if isinstance(document, list):
        return [without_seconds(value) for value in document]
    return document


def train_children(pids) -> list:
    """The `bptrain train` processes the given workers started."""
    found = []
    for pid in pids:
        try:
            found += [child for child in psutil.Process(pid).children() if "child_main" in " ".join(child.cmdline())]
        except psutil.NoSuchProcess:
            pass
    return found


def gone(process: psutil.Process, within: float = 15) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


# ====================================================================== the same files as a local sweep
def test_a_cluster_sweep_writes_a_local_sweeps_files_and_a_second_run_trains_nothing(cluster, tmp_path, data):
    local, _ = cluster
    grid = ("--lr", "0.1,0.5", "--loss", "ce,mse", "--epochs", "3", "--data", data.name, *TINY)
    here = sweep(tmp_path, *grid, "--out-dir", "local", "--jobs", "2")
    assert here.returncode == 0, here.stderr
    there = sweep(tmp_path, *grid, "--out-dir", "cluster", "--scheduler", local.scheduler_address)
    assert there.returncode == 0, there.stderr
    assert "Traceback" not in there.stderr and "on the Dask cluster at" in there.stderr
    assert there.stderr.count(": running on tcp://127.0.0.1:") == 4 and "4 runs trained" in there.stdout
    names = sorted(p.name for p in (tmp_path / "local").iterdir() if p.name != "summary.json")
    assert len(names) == 8 and names == sorted(p.name for p in (tmp_path / "cluster").iterdir()
                                                if p.name != "summary.json")
    for name in names:
        a, b = (tmp_path / "local" / name).read_bytes(), (tmp_path / "cluster" / name).read_bytes()
        if name.endswith(".npy"):
            assert a == b, name
        else:  # the same but for each epoch's wall-clock seconds, and `data` the very string given
            assert without_seconds(json.loads(a)) == without_seconds(json.loads(b)), name
            assert json.loads(b)["data"] == "syn.pkl.gz"
    assert set(statuses(tmp_path / "cluster").values()) == {"finished"}
    summary = json.loads((tmp_path / "cluster" / "summary.json").read_text())
    assert summary["scheduler"] == local.scheduler_address and summary["workers"] == summary["jobs"] == 2
    assert not [p for p in (tmp_path / "cluster").iterdir() if p.name.endswith(".tmp")]

    before = {p.name: p.stat().st_ino for p in (tmp_path / "cluster").iterdir()}
    again = sweep(tmp_path, *grid, "--out-dir", "cluster", "--scheduler", local.scheduler_address)
    assert again.returncode == 0, again.stderr
    assert "0 runs trained" in again.stdout and "4 finished before (skipped)" in again.stderr
    assert "queued" not in again.stderr
    assert {p.name: p.stat().st_ino for p in (tmp_path / "cluster").iterdir() if p.name != "summary.json"} == \
        {name: ino for name, ino in before.items() if name != "summary.json"}


def test_a_failing_run_is_reported_with_trains_words_and_the_other_finishes_on_a_local_cluster(tmp_path, data):
    """--scheduler local: the sweep's own LocalCluster, started and closed by it."""
    result = sweep(tmp_path, "--sizes", "20,16,3", "--sizes", "784,10", "--epochs", "1", "--data", data,
                   "--out-dir", "runs", "--scheduler", "local")
    assert result.returncode == 1, result.stderr
    assert statuses(tmp_path / "runs") == {"sizes=20-16-3": "finished", "sizes=784-10": "failed"}
    failed = json.loads((tmp_path / "runs" / "summary.json").read_text())["runs"][1]
    assert "has input width 784 but the images" in failed["message"]
    assert "Traceback" not in result.stderr
    assert re.search(r"on the Dask cluster at tcp://127\.0\.0\.1:\d+: 2 workers", result.stderr)


# ====================================================================== failures of the cluster
def test_a_worker_killed_mid_run_takes_its_train_along_and_the_run_is_trained_elsewhere(cluster, tmp_path, data):
    local, client = cluster
    pids = client.run(os.getpid)  # {worker address: pid}
    proc = subprocess.Popen([sys.executable, "-m", "bptrain", "sweep", "--lr", "0.1,0.5", "--epochs", "500",
                             "--data", str(data), *TINY, "--out-dir", "runs", "--scheduler", local.scheduler_address],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    watchdog = threading.Timer(120, proc.kill)  # never hang the suite
    watchdog.start()
    with ended_at_exit(proc, watchdog):
        seen, where, victim = [], {}, None
        for line in proc.stderr:
            seen.append(line)
            name, _, text = line.strip().partition(": ")
            if text.startswith("running on "):
                where[name] = text.split()[2]
            if text.startswith("epoch") and where.get(name) in pids:
                victim = name
                break
        assert victim, "".join(seen)
        worker_pid = pids[where[victim]]
        (child,) = train_children([worker_pid])
        os.kill(worker_pid, signal.SIGKILL)
        assert gone(child), "the killed worker's train was orphaned"
        stdout, stderr = proc.communicate(timeout=110)
    stderr = "".join(seen) + stderr
    assert proc.returncode == 0, stderr
    assert statuses(tmp_path / "runs") == {"lr=0.1": "finished", "lr=0.5": "finished"}
    assert f"{victim}: worker lost; running again on tcp://" in stderr
    # bounded: it started at most once more than the scheduler's allowed failures allow
    assert 2 <= stderr.count(f"{victim}: ") and stderr.count(f"{victim}: worker lost") <= \
        sweep_cluster.LOCAL_ALLOWED_FAILURES
    _, meta = load_model(tmp_path / "runs" / f"{victim}.npy")
    assert meta["epochs_run"] == 500
    client.wait_for_workers(2, timeout=30)  # the nanny restarted it, for the tests that follow


def test_ctrl_c_keeps_the_finished_runs_stops_the_running_and_cancels_the_queued(cluster, tmp_path, data):
    """Three short runs and three long ones on two workers: once two long ones run, at least one waits (the
    order the scheduler picks them in is its own): Ctrl-C then."""
    local, client = cluster
    proc = subprocess.Popen([sys.executable, "-m", "bptrain", "sweep", "--epochs", "2,100000", "--lr", "0.1,0.5,1",
                             "--data", str(data), *TINY, "--out-dir", "runs", "--scheduler", local.scheduler_address],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    watchdog = threading.Timer(90, proc.kill)
    watchdog.start()
    with ended_at_exit(proc, watchdog):
        seen, finished, long_running = [], set(), set()
        for line in proc.stderr:
            seen.append(line)
            name, _, text = line.strip().partition(": ")
            if name.endswith("_epochs=2") and text.startswith("finished"):  # lr=0.1_epochs=2
                finished.add(name)
            if name.endswith("_epochs=100000") and text.startswith("epoch"):
                long_running.add(name)
            if len(long_running) == 2:
                break
        assert len(long_running) == 2, "".join(seen)
        children = train_children(client.run(os.getpid).values())
        assert len(children) == 2
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=80)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    finished = {line.partition(": ")[0] for line in seen + stderr.splitlines()
                if line.partition(": ")[2].startswith("finished")}  # a line may come just after the signal
    runs = statuses(tmp_path / "runs")
    finished &= set(runs)
    assert {name for name, status in runs.items() if status == "finished"} == finished
    assert {name for name, status in runs.items() if status == "stopped"} == long_running
    queued = [name for name, status in runs.items() if status == "not started"]
    assert len(queued) == 6 - len(finished) - 2 >= 1
    for name in long_running:
        _, meta = load_model(tmp_path / "runs" / f"{name}.npy")
        assert meta["best_epoch"] >= 1  # its best so far came back
    assert not [name for name in queued if (tmp_path / "runs" / f"{name}.npy").exists()]
    assert all(gone(child) for child in children)
    assert f"{len(finished) + 2} runs trained" in stdout and "the same command trains what is missing" in stderr


def test_a_scheduler_that_is_not_there_is_one_line(tmp_path, data):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free, and nothing listens once closed
    result = sweep(tmp_path, "--lr", "0.1,0.5", "--data", data, *TINY, "--out-dir", "runs",
                   "--scheduler", f"tcp://127.0.0.1:{port}", timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"Error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}")
    assert not list((tmp_path / "runs").glob("*.npy"))


# ====================================================================== inputs on a worker
def can_hide_folders() -> bool:
    """Whether this machine lets an unprivileged process mount over a folder in a namespace of its own."""
    if not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs none /mnt"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not can_hide_folders(), reason="needs `unshare --map-root-user --mount` (user namespaces) to "
                                                   "give a worker a machine's view without the sweep's folder")
def test_inputs_a_worker_cannot_read_are_shipped_to_it_and_the_files_are_the_same(tmp_path, data):
    """A worker that does not see the sweep's folder (its own mount namespace, as another machine would be)
    gets the data and the config shipped, checked by SHA-256; the models equal a local sweep's."""
    (tmp_path / "c.toml").write_text("epochs = 2\nbatch_size = 16\n")
    grid = ("--config", "c.toml", "--data", data.name, "--sizes", "20,16,3", "--lr", "0.1,0.5")
    with dask.config.set({"distributed.scheduler.allowed-failures": sweep_cluster.LOCAL_ALLOWED_FAILURES}), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Port .* is already in use")  # the status page of the module's cluster
        scheduler_only = distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None,
                                                  silence_logs=logging.ERROR)
    client = distributed.Client(scheduler_only)
    hidden = f"mount -t tmpfs none {shlex.quote(str(tmp_path))} && exec \"$@\""
    worker = subprocess.Popen(["unshare", "--map-root-user", "--mount", "sh", "-c", hidden, "sh", sys.executable,
                               "-m", "dask", "worker", scheduler_only.scheduler_address, "--nthreads", "1",
                               "--host", "127.0.0.1", "--no-dashboard", "--no-nanny",
                               "--local-directory", str(tmp_path.with_name(tmp_path.name + "-worker"))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client.wait_for_workers(1, timeout=60)
        there = sweep(tmp_path, *grid, "--out-dir", "cluster", "--scheduler", scheduler_only.scheduler_address)
        assert there.returncode == 0, there.stderr
        assert "--data, --config shipped to the workers" in there.stderr
        here = sweep(tmp_path, *grid, "--out-dir", "local", "--jobs", "2")
        assert here.returncode == 0, here.stderr
        for name in ("lr=0.1.npy", "lr=0.5.npy"):
            assert (tmp_path / "cluster" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
        assert json.loads((tmp_path / "cluster" / "lr=0.1.history.json").read_text())["data"] == data.name
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        client.close()
        scheduler_only.close()


def test_an_input_a_worker_cannot_read_is_placed_from_the_shipped_bytes_and_checked(tmp_path, data):
    item = describe_input("--data", data)
    assert item.digest == hashlib.sha256(data.read_bytes()).hexdigest()
    elsewhere = Input(item.flag, "data/syn.pkl.gz", str(tmp_path / "not-on-this-worker" / "syn.pkl.gz"), item.digest)
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(ClusterError, match="cannot read"):
        materialise(elsewhere, None, cache)
    with pytest.raises(ClusterError, match="SHA-256"):
        materialise(elsewhere, {"syn.pkl.gz": b"not the data"}, cache)
    placed = materialise(elsewhere, {"syn.pkl.gz": data.read_bytes()}, cache)
    assert placed.read_bytes() == data.read_bytes() and placed.is_relative_to(cache)
    assert materialise(elsewhere, None, cache) == placed  # shipped once: cached for the next run
    assert materialise(item, None, cache) == data  # a path this worker reads with the same bytes: used as is

    # a relative path (even one going up) is recreated under the run's folder: train is given the same string
    relative = Input("--data", "../shared/syn.pkl.gz", item.path, item.digest)
    args, work = place_inputs(["train", "--lr", "0.1", "--data", relative.given, "--out", "runs/a.npy",
                               "--history", "runs/a.history.json"], [relative], {"--data": placed},
                              tmp_path / "scratch")
    assert args[:5] == ["train", "--lr", "0.1", "--data", "../shared/syn.pkl.gz"]
    assert (work / relative.given).read_bytes() == data.read_bytes()
    assert (work / relative.given).resolve().is_relative_to(cache)
    assert Path(os.path.normpath(work / relative.given)).is_relative_to(tmp_path / "scratch")
    assert args[6] == str(tmp_path / "scratch" / "out" / "a.npy")


# ====================================================================== a run dies with its worker
PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(__import__("os").getpid())])
child.wait()
"""
QUIET_CHILD = """
import sys, time
{before}
from bptrain.app.sweep.cluster import _die_with
_die_with(int(sys.argv[1]))
print("armed", flush=True)
time.sleep(120)  # a long epoch that prints nothing: only the parent's death can end it early
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
@pytest.mark.parametrize("before", ["", "import ctypes; del ctypes.CDLL  # no prctl: the watchdog thread"],
                         ids=["prctl", "watchdog"])
def test_the_child_dies_with_the_process_that_started_it(before):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, QUIET_CHILD.format(before=before)],
                              stdout=subprocess.PIPE, text=True)
    children = []
    try:
        assert parent.stdout.readline().strip() == "armed"
        children = psutil.Process(parent.pid).children()
        parent.kill()
        parent.wait()
        assert len(children) == 1 and gone(children[0]), "the child outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        for child in children:
            if child.is_running():
                child.kill()
