"""``bptrain sweep --scheduler``: the sweep's runs as tasks on a Dask cluster.

Dask's ``distributed`` is used, not grown: the same :class:`Client` reaches an embedded
``LocalCluster`` (``--scheduler local``), a ``dask scheduler`` with a ``dask worker`` per machine, or
the scheduler of ``dask-jobqueue`` / ``dask-kubernetes``. This module is the only one that imports it,
and only when ``--scheduler`` is given.

Each run is one task (``pure=False``): on a worker it runs the very ``bptrain train`` a local sweep
runs, as a child process with the worker's threads as its BLAS threads, in a scratch folder, and
returns the bytes of the model and history it wrote. The starting machine writes them atomically
under the names a local sweep uses, so the sweep's folder, its resumption, ``compare`` and ``plot``
do not know where a run trained. :class:`ClusterRun` stands in for the ``subprocess.Popen`` of a
local run (``poll``, ``wait``, ``send_signal``, ``returncode``; output lines on the sweep's queue),
so :class:`bptrain.app.sweep.runner.Sweep` drives both the same way.

Inputs (``--data``, ``--config``, ``--resume``) reach a worker as the path the sweep resolved, when
the worker reads that path with the same SHA-256; otherwise their bytes are scattered once and
cached on each worker that needs them, checked by SHA-256. A relative path is recreated under the
run's scratch folder, so ``train`` is given, and records, the very string a local run records.

Failures: a run whose ``train`` fails returns its exit status and error lines like a local one (no
retry: it would fail again); an exception in the task is retried (``TASK_RETRIES``); a worker that
dies takes its ``train`` with it (``PR_SET_PDEATHSIG``, else a watchdog thread in the child) and the
scheduler runs the task elsewhere, at most ``allowed-failures`` times (the scheduler's setting;
``LOCAL_ALLOWED_FAILURES`` for ``--scheduler local``). Progress: the task publishes "started" and
each epoch line as Dask events (``Worker.log_event``), which the sweep subscribes to.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from ... import __version__
from ...core.errors import BptrainError
from ...environment import EPOCH_THREAD_VARIABLE
from ...data.loader import resolve_data_path
from ...data.model_io import atomic_write
from ..paths import data_files
from .reach import silence_distributed, unanswered

#: Seconds to reach a scheduler before saying it cannot be reached.
CONNECT_TIMEOUT = 5
#: Retries of a task that raised (a worker's disk full, an input it could not place); not of a failed run.
TASK_RETRIES = 2
#: For ``--scheduler local``: how many of its workers may die under one run before the run is failed.
LOCAL_ALLOWED_FAILURES = 2
#: After a stop signal, seconds to wait for the running tasks to return their runs' best-so-far files.
STOP_GRACE = 60
#: How often a task looks whether it was asked to stop or was cancelled.
POLL_SECONDS = 0.5
PR_SET_PDEATHSIG = 1


class ClusterError(BptrainError):
    """The cluster cannot be used: no scheduler at the address, workers without bptrain, ..."""


# --------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Input:
    """One input file (or IDX folder) of every run: the string ``train`` is given, where it is here, its digest."""

    flag: str
    given: str
    path: str  # absolute, on the starting machine
    digest: str  # SHA-256 of the file, or of the folder's (name, SHA-256) list
    names: tuple = ()  # a folder's files, relative to it; () for a file

    @property
    def is_dir(self) -> bool:
        return bool(self.names)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder_digest(folder: Path, names) -> str:
    digest = hashlib.sha256()
    for name in names:
        digest.update(f"{name}\0{_file_sha256(folder / name)}\n".encode())
    return digest.hexdigest()


def describe_input(flag: str, given) -> Input:
    path = Path(given).absolute()
    if path.is_dir():
        names = tuple(sorted(p.name for p in data_files(path) if p.is_file()))
        return Input(flag, str(given), str(path), _folder_digest(path, names), names)
    return Input(flag, str(given), str(path), _file_sha256(path))


def input_bytes(item: Input) -> dict:
    """{relative name: bytes} of an input, what is shipped to workers that cannot read its path."""
    path = Path(item.path)
    if item.is_dir:
        return {name: (path / name).read_bytes() for name in item.names}
    return {path.name: path.read_bytes()}


def sweep_inputs(config: Path | None, fixed: dict) -> list[Input]:
    """The files every run reads: the config, the data (the default resolved here, as train would) and --resume."""
    inputs = [describe_input("--data", resolve_data_path(fixed.get("data")))]
    if config is not None:
        inputs.append(describe_input("--config", config))
    if fixed.get("resume") is not None:
        inputs.append(describe_input("--resume", fixed["resume"]))
    return inputs


_verified: dict = {}  # on a worker: (path, size, mtime) -> digest, so a shared path is hashed once per worker


def _digest_here(item: Input) -> str | None:
    """The digest of what this machine holds at the input's path, or None if it holds nothing readable there."""
    path = Path(item.path)
    try:
        if item.is_dir:
            stamp = tuple((name, (path / name).stat().st_size, (path / name).stat().st_mtime_ns) for name in item.names)
        else:
            info = path.stat()
            stamp = (info.st_size, info.st_mtime_ns)
        key = (item.path, stamp)
        if key not in _verified:
            _verified[key] = _folder_digest(path, item.names) if item.is_dir else _file_sha256(path)
        return _verified[key]
    except OSError:
        return None


def materialise(item: Input, shipped: dict | None, cache_root: Path) -> Path:
    """A path on this machine holding exactly the input: its own path if that has the right SHA-256, else the
    shipped bytes, written once into ``cache_root`` and checked."""
    if _digest_here(item) == item.digest:
        return Path(item.path)
    name = Path(item.path).name
    target = cache_root / item.digest / name
    cached = Input(item.flag, str(target), str(target), item.digest, item.names)
    if _digest_here(cached) == item.digest:
        return target
    if shipped is None:
        raise ClusterError(f"{item.flag} {item.given}: this worker cannot read {item.path} (or holds another file "
                           "there) and the sweep did not ship it")
    staging = Path(tempfile.mkdtemp(prefix=".ship-", dir=cache_root))
    try:
        if item.is_dir:
            (staging / name).mkdir()
            for relative, data in shipped.items():
                (staging / name / relative).write_bytes(data)
        else:
            (staging / name).write_bytes(shipped[name])
        check = Input(item.flag, str(staging / name), str(staging / name), item.digest, item.names)
        if _digest_here(check) != item.digest:
            raise ClusterError(f"{item.flag} {item.given}: the shipped copy does not have the sweep's SHA-256")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staging / name, target)
        except OSError:  # another run of this worker placed it first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _leading_ups(given: str) -> int:
    parts = Path(os.path.normpath(given)).parts
    return next((i for i, part in enumerate(parts) if part != ".."), len(parts))


def place_inputs(args: list, inputs: list[Input], sources: dict, scratch: Path) -> tuple[list, Path]:
    """(train's arguments for this worker, the folder to run it in).

    A relative input is linked at its relative path under the run folder, so ``train`` gets and
    records the same string as a local run; an absolute one is given as is when this worker holds
    it there, else as the cached copy's path. The outputs go to ``scratch/out``.
    """
    ups = max([_leading_ups(item.given) for item in inputs if not Path(item.given).is_absolute()], default=0)
    work = scratch.joinpath("run", *["w"] * ups)
    work.mkdir(parents=True)
    given = {}
    for item in inputs:
        source = sources[item.flag]
        if Path(item.given).is_absolute():
            given[item.flag] = str(source)
        else:
            link = Path(os.path.normpath(work / item.given))
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source, target_is_directory=source.is_dir())
            given[item.flag] = item.given
    out = scratch / "out"
    out.mkdir()
    placed, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg in ("--out", "--history"):
            placed += [arg, str(out / Path(args[i + 1]).name)]
            i += 2
        elif arg in given and i + 1 < len(args):
            placed += [arg, given.pop(arg)]
            i += 2
        else:
            placed.append(arg)
            i += 1
    for flag, value in given.items():  # the default data, which a local run finds by itself
        placed += [flag, value]
    return placed, work


# --------------------------------------------------------------------- on the worker
_one_run = threading.Lock()  # a worker trains one run at a time, with all its threads


def child_main() -> None:
    """``python -c 'from bptrain.app.sweep.cluster import child_main; child_main()' PARENT_PID train ...``:
    ``bptrain train`` that dies with the worker that started it, so a lost worker leaves no run behind."""
    parent = int(sys.argv[1])
    _die_with(parent)
    sys.argv = ["bptrain", *sys.argv[2:]]
    runpy.run_module("bptrain", run_name="__main__", alter_sys=True)  # as `python -m bptrain` runs


def _die_with(parent: int) -> None:
    try:
        import ctypes

        armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except Exception:  # not Linux, or no libc to be found: watch instead
        armed = False
    if os.getppid() != parent:  # the worker was gone before the signal was armed
        os._exit(1)
    if not armed:
        def watch():
            while os.getppid() == parent:
                time.sleep(1)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch, daemon=True, name="bptrain-parent-watch").start()


CHILD_CODE = "from bptrain.app.sweep.cluster import child_main; child_main()"


def worker_environment(nthreads: int, environ, blas_variables) -> dict:
    """The run's environment: the worker's threads as its BLAS threads (unless the worker's environment fixes
    them in one of ``blas_variables``), and no epoch thread beside them: they are the run's whole share."""
    env = {**environ, "PYTHONUNBUFFERED": "1"}
    if not any(environ.get(name, "").strip().isdigit() and int(environ[name]) > 0 for name in blas_variables):
        env.update({name: str(nthreads) for name in blas_variables[:3]})
    env.setdefault(EPOCH_THREAD_VARIABLE, "0")
    return env


def probe_worker(inputs: list[dict], dask_worker=None) -> dict:
    """What the sweep needs to know of a worker (``Client.run`` passes it): its bptrain, its threads, which
    inputs it reads at their path."""
    worker = dask_worker
    items = [Input(**item) for item in inputs]
    return {"version": __version__, "nthreads": worker.state.nthreads,
            "readable": {item.flag: _digest_here(item) == item.digest for item in items}}


def run_on_worker(spec: dict, shipped: dict) -> dict:
    """The task: one ``bptrain train`` on this worker; its exit status, error lines and files' bytes."""
    from distributed import Event, get_client, get_worker

    epoch_line = re.compile(spec["epoch_line"])
    worker = get_worker()
    if spec["version"] != __version__:
        raise ClusterError(f"worker {worker.address} has bptrain {__version__}, the sweep {spec['version']}")
    key = worker.get_current_task()
    stop = Event(spec["stop"], client=get_client())
    topic, name = spec["topic"], spec["name"]

    def unwanted() -> bool:
        task = worker.state.tasks.get(key)
        return task is None or task.state == "cancelled" or stop.is_set()

    def say(kind: str, **message) -> None:
        worker.log_event(topic, {"run": name, "kind": kind, **message})

    while not _one_run.acquire(timeout=POLL_SECONDS):
        if unwanted():
            return {"not_started": True}
    try:
        if unwanted():
            return {"not_started": True}
        root = Path(worker.local_directory) / "bptrain-sweep"
        root.mkdir(exist_ok=True)
        inputs = [Input(**item) for item in spec["inputs"]]
        sources = {item.flag: materialise(item, shipped.get(item.flag), root) for item in inputs}
        scratch = Path(tempfile.mkdtemp(prefix="run-", dir=root))
        try:
            args, work = place_inputs(spec["args"], inputs, sources, scratch)
            env = worker_environment(worker.state.nthreads, os.environ, spec["blas_variables"])
            process = subprocess.Popen([sys.executable, "-c", CHILD_CODE, str(os.getpid()), *args], cwd=work,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                       text=True, env=env, bufsize=1, errors="replace")
            say("started", worker=worker.address, pid=process.pid, threads=worker.state.nthreads)
            stderr: list = []

            def read_stdout():  # epoch lines, at most one a second but always the last (events pass the scheduler)
                sent = 0.0
                for line in process.stdout:
                    match = epoch_line.match(line)
                    if match and (time.monotonic() - sent >= 1 or match.group(1) == match.group(2)):
                        sent = time.monotonic()
                        say("out", line=line.rstrip("\n"))

            readers = [threading.Thread(target=read_stdout, daemon=True),
                       threading.Thread(target=lambda: stderr.extend(line.rstrip("\n") for line in process.stderr),
                                        daemon=True)]
            for reader in readers:
                reader.start()
            signalled = False
            while True:
                try:
                    process.wait(timeout=POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if not signalled and unwanted():
                        process.send_signal(signal.SIGINT)  # train saves its best so far and exits
                        signalled = True
            for reader in readers:
                reader.join()
            # what train wrote: the model and history, and whatever else it keeps beside them
            files = {path.name: path.read_bytes() for path in sorted((scratch / "out").iterdir()) if path.is_file()}
            return {"code": process.returncode, "stderr": stderr, "files": files, "worker": worker.address,
                    "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        _one_run.release()


# --------------------------------------------------------------------- on the starting machine
class Cluster:
    """The sweep's connection to a scheduler (or its own LocalCluster), and the runs it submitted."""

    def __init__(self, client, cluster, address: str, inputs: list[Input], shipped: dict, workers: dict,
                 common: dict):
        self.common = common  # what every task is given beside its run (see start)
        self.client = client
        self.cluster = cluster
        self.address = address
        self.inputs = inputs
        self.shipped = shipped  # {flag: future of the bytes}, for inputs some worker cannot read
        self.workers = workers  # {address: nthreads} when the sweep started
        self.topic = f"bptrain-sweep-{uuid.uuid4().hex}"
        self.runs: dict = {}  # run name -> ClusterRun
        client.subscribe_topic(self.topic, self._on_event)

    @classmethod
    def start(cls, address: str, inputs: list[Input], local: tuple[int, int], epoch_line: re.Pattern,
              blas_variables: tuple, say) -> "Cluster":
        """Connect (or, for ``local``, start a LocalCluster of ``local`` = (workers, threads each)), check the
        workers, ship the inputs they cannot read. ``epoch_line`` and ``blas_variables`` are the sweep's: the
        lines a task passes on, the variables that set a run's BLAS threads."""
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise ClusterError("--scheduler needs Dask's distributed: pip install 'bptrain[cluster]'") from None
        cluster = None
        if address == "local":
            workers, threads = local
            with dask.config.set({"distributed.scheduler.allowed-failures": LOCAL_ALLOWED_FAILURES}), \
                    warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Port .* is already in use")  # its status page, which is off
                cluster = LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                                       host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster)
            address = cluster.scheduler_address
        else:
            # the sweep says itself what became of each run; the client's own reports would be tracebacks
            silence_distributed()
            problem = unanswered(address, CONNECT_TIMEOUT)
            if problem:
                raise ClusterError(f"cannot reach the Dask scheduler at {address}: {problem}")
            try:
                client = Client(address, timeout=CONNECT_TIMEOUT)
            except MemoryError:  # something answered, and its first bytes read as an absurd message length
                raise ClusterError(f"{address} answered, but not as a Dask scheduler") from None
            except Exception as exc:  # OSError, TimeoutError, ValueError for a malformed address
                text = " ".join(str(exc).split()) or type(exc).__name__
                raise ClusterError(f"cannot reach the Dask scheduler at {address}: {text}") from None
        try:
            if not client.scheduler_info().get("workers"):
                say(f"no workers at {address} yet: waiting for one (Ctrl-C to give up)")
                client.wait_for_workers(1)
            try:
                probes = client.run(probe_worker, [asdict(item) for item in inputs])
            except Exception as exc:
                raise ClusterError(f"the workers at {address} cannot run bptrain ({type(exc).__name__}: {exc}); "
                                   "install bptrain with the same version on every worker") from None
            versions = {probe["version"] for probe in probes.values()}
            if versions != {__version__}:
                raise ClusterError(f"the workers at {address} have bptrain {', '.join(sorted(versions))}, this "
                                   f"machine {__version__}: the runs must be the same program")
            shipped = {}
            for item in inputs:
                if not all(probe["readable"][item.flag] for probe in probes.values()):
                    shipped[item.flag] = client.scatter(input_bytes(item), broadcast=True, hash=False)
            workers = {worker: probe["nthreads"] for worker, probe in probes.items()}
            common = {"epoch_line": epoch_line.pattern, "blas_variables": list(blas_variables)}
            return cls(client, cluster, address, inputs, shipped, workers, common)
        except BaseException:
            client.close()
            if cluster is not None:
                cluster.close()
            raise

    def description(self) -> str:
        threads = sorted(set(self.workers.values()))
        each = f"{threads[0]} thread{'s' if threads[0] > 1 else ''}" if len(threads) == 1 else \
            f"{threads[0]}-{threads[-1]} threads"
        shipped = f"; {', '.join(self.shipped)} shipped to the workers" if self.shipped else ""
        return (f"on the Dask cluster at {self.address}: {len(self.workers)} worker{'s' if len(self.workers) != 1 else ''}, "
                f"one run per worker at a time with its threads ({each}){shipped}")

    def info(self, parallel: int) -> dict:
        """For summary.json: the runs at once are the workers (one run each), unless --jobs asked for fewer."""
        threads = set(self.workers.values())
        return {"jobs": min(parallel, len(self.workers)), "scheduler": self.address, "workers": len(self.workers),
                "blas_threads_per_run": threads.pop() if len(threads) == 1 else None}

    def launch(self, job, events) -> "ClusterRun":
        """The seam of :class:`bptrain.app.sweep.runner.Sweep`: submit ``job`` and return its stand-in process."""
        spec = {**self.common, "name": job.name, "args": list(job.args), "inputs": [asdict(item) for item in self.inputs],
                "version": __version__, "topic": self.topic, "stop": f"{self.topic}-{uuid.uuid4().hex}-stop"}
        future = self.client.submit(run_on_worker, spec, dict(self.shipped), pure=False, retries=TASK_RETRIES,
                                    key=f"bptrain-train-{job.name}-{uuid.uuid4().hex[:8]}")
        run = ClusterRun(self, job, events, future, spec["stop"])
        self.runs[job.name] = run
        return run

    def _on_event(self, event) -> None:
        """A run's event (in the client's thread): put it on the sweep's queue as the local reader threads do."""
        _, message = event
        run = self.runs.get(message.get("run"))
        if run is None or run.returncode is not None:
            return
        if message["kind"] == "started":
            run.starts.append(message["worker"])
            again = "worker lost; running again" if len(run.starts) > 1 else "running"
            run.events.put((run.job, "status", f"{again} on {message['worker']} "
                                               f"({message['threads']} thread{'s' if message['threads'] > 1 else ''})"))
        elif message["kind"] == "out":
            run.events.put((run.job, "out", message["line"]))

    def close(self) -> None:
        silence_distributed()  # a scheduler gone mid-sweep is said once, by the sweep: not by every reconnect
        try:
            self.client.unsubscribe_topic(self.topic)
            self.client.close(timeout=10)
        finally:
            if self.cluster is not None:
                self.cluster.close(timeout=10)


class ClusterRun:
    """A run submitted to the cluster, seen by the sweep as its ``train`` process (see :class:`Cluster.launch`)."""

    start_text = "queued on the cluster"

    def __init__(self, cluster: Cluster, job, events, future, stop_name: str):
        self.cluster, self.job, self.events, self.future = cluster, job, events, future
        self.stop_name = stop_name
        self.starts: list = []  # the workers it started on, in order
        self.returncode: int | None = None
        self.not_started = False
        self.deadline: float | None = None
        job.open_streams = 2

    def poll(self) -> int | None:
        if self.returncode is None:
            self._collect()
        return self.returncode

    def wait(self) -> int:
        while self.poll() is None:
            time.sleep(0.1)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """Stop: a queued run is cancelled, a running one's ``train`` gets SIGINT and returns its best so far."""
        if self.deadline is not None:
            return
        self.deadline = time.monotonic() + STOP_GRACE
        from distributed import Event

        try:
            Event(self.stop_name, client=self.cluster.client).set()
        except Exception:  # the scheduler is gone: nothing runs there any more
            pass
        if not self.starts:
            self.future.cancel()

    def _collect(self) -> None:
        status = self.future.status
        if status in ("pending", "lost") and not (self.deadline is not None and time.monotonic() > self.deadline):
            return
        if status == "finished":
            try:
                result = self.future.result()
            except Exception as exc:  # the worker holding it died just now
                return self._end(1, [f"Error: its result was lost ({type(exc).__name__}: {exc})"])
            if result.get("not_started"):
                self.not_started = True
                return self._end(1, [])
            try:
                self._write(result)
            except (OSError, ClusterError) as exc:
                return self._end(1, [*result["stderr"], f"Error: {exc}"])
            return self._end(result["code"], result["stderr"])
        if status == "error":
            exc = self.future.exception()
            text = " ".join(str(exc).split())
            if type(exc).__name__ == "KilledWorker":
                deaths = len(self.starts)
                text = (f"the worker training it died, {deaths} time{'s' if deaths != 1 else ''} "
                        f"({', '.join(self.starts)}); the scheduler gave up on it (its allowed-failures)")
            return self._end(1, [f"Error: on the cluster: {text or type(exc).__name__}"])
        # cancelled (a stop signal, or the scheduler went away), or the grace after a stop ran out
        self.future.cancel()
        self.not_started = not self.starts
        if self.deadline is not None:
            return self._end(128 + signal.SIGINT, [])
        lost = self.cluster.client.status != "running"
        return self._end(1, [f"Error: lost the Dask scheduler at {self.cluster.address}" if lost else
                             "Error: cancelled on the cluster"])

    def _write(self, result: dict) -> None:
        """The run's files, as its ``train`` wrote them on the worker, into the sweep's folder (atomically),
        the history last: a history that says finished is what marks the run done."""
        folder = self.job.model.parent
        names = sorted(result["files"], key=lambda name: name == self.job.history.name)
        for name in names:
            if Path(name).name != name or not name.startswith(self.job.name + "."):
                raise ClusterError(f"{result['worker']} returned a file {name!r} that is not run {self.job.name}'s")
            data = result["files"][name]
            if hashlib.sha256(data).hexdigest() != result["sha256"][name]:
                raise ClusterError(f"{name} arrived from {result['worker']} with another SHA-256 than it left")
            atomic_write(folder / name, lambda handle: handle.write(data))

    def _end(self, code: int, stderr: list) -> None:
        for line in stderr:
            self.events.put((self.job, "err", line))
        self.events.put((self.job, "eof", "out"))
        self.events.put((self.job, "eof", "err"))
        self.returncode = code
        self.future.release()
