"""Running a sweep's jobs: the processes (or a cluster's tasks), their output lines, and one line per run.

Each run is a real ``bptrain train`` process, so a run is saved, stopped by a signal, checked for
divergence and kept from replacing files that are not bptrain's exactly as ``train`` does it. Ctrl-C
and SIGTERM are passed on to every run, each of which keeps its best model so far.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ...core.errors import BptrainError
from ..compare import Run, read_run
from ..stopping import STOP_SIGNALS, StopSignals, exit_status, signal_name
from .grid import Job


# --------------------------------------------------------------------- running
EPOCH_LINE = re.compile(r"^epoch\s+(\d+)/(\d+)\s+train loss\s+(\S+)\s+val loss\s+(\S+)\s+val acc\s+([\d.]+)%")


STOP_STATUSES = {exit_status(s) for s in STOP_SIGNALS}


class Display:
    """One line per run: redrawn in place on a terminal, printed as events otherwise, nothing with -q."""

    def __init__(self, jobs: list[Job], mode: str, stream=None):
        self.jobs = jobs
        self.mode = mode  # "live", "lines" or "quiet"
        self.stream = stream or sys.stderr
        self.drawn = 0
        self.last_draw = 0.0
        self.width = max(len(job.name) for job in jobs) if jobs else 0
        self.notes_seen = set()
        self.printed = {}  # run name -> when its last line was printed (lines mode)

    def say(self, text: str) -> None:
        if self.mode == "quiet":
            return
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()
        self.draw(force=True)

    def event(self, job: Job, text: str, every: float = 0.0) -> None:
        """Something happened to a run; ``every``: in lines mode, at most one such line per that many seconds."""
        if self.mode == "lines":
            now = time.monotonic()
            if every and now - self.printed.get(job.name, -every) < every:
                return
            self.printed[job.name] = now
            self.stream.write(f"{job.name}: {text}\n")
            self.stream.flush()
        elif self.mode == "live":
            self.draw(force=True)

    def note(self, job: Job, text: str) -> None:
        """A note of a run's (one per distinct text: every run of a sweep says the same ones)."""
        if text not in self.notes_seen:
            self.notes_seen.add(text)
            self.say(f"{job.name}: {text}")

    def line(self, job: Job) -> str:
        if job.state == "waiting":
            status = "waiting"
        elif job.state == "running":
            elapsed = time.monotonic() - job.started
            if job.epochs:
                done = round(12 * job.epoch / job.epochs)
                status = f"{elapsed:4.0f}s [{'#' * done}{'.' * (12 - done)}] {job.epoch}/{job.epochs}  {job.last}"
            else:
                status = f"{elapsed:4.0f}s starting"
        else:
            status = done_text(job)
        return f"{job.name:<{self.width}}  {status}"

    def draw(self, force: bool = False) -> None:
        if self.mode != "live" or (not force and time.monotonic() - self.last_draw < 0.25):
            return
        self.last_draw = time.monotonic()
        size = shutil.get_terminal_size()
        shown = self.jobs
        if len(shown) > size.lines - 2:
            shown = [job for job in self.jobs if job.state == "running"]
            counts = {state: sum(job.state == state for job in self.jobs) for state in ("done", "waiting")}
            extra = [f"{counts['done']} done, {counts['waiting']} waiting"]
        else:
            extra = []
        lines = [self.line(job)[:size.columns - 1] for job in shown] + extra
        out = [f"\x1b[{self.drawn}A\r"] if self.drawn else []
        out += ["\x1b[2K" + line + "\n" for line in lines]
        if len(lines) < self.drawn:
            out.append("\x1b[J")
        self.drawn = len(lines)
        self.stream.write("".join(out))
        self.stream.flush()

    def _clear(self) -> None:
        if self.mode == "live" and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}A\r\x1b[J")
            self.drawn = 0

    def close(self) -> None:
        self.draw(force=True)
        self.drawn = 0


def done_text(job: Job) -> str:
    run = job.result
    if run is None:
        return "not started"
    seconds = f", {run.seconds:.1f} s" if run.seconds is not None else ""
    if run.status == "finished":
        before = " (finished before; skipped)" if run.skipped else ""
        return f"finished: best {100 * run.best_val_accuracy:.2f}% at epoch {run.best_epoch}{seconds}{before}" \
            if run.best_val_accuracy is not None else f"finished{before}"
    if run.status == "stopped":
        if run.best_epoch:
            return f"stopped: best so far ({100 * run.best_val_accuracy:.2f}% at epoch {run.best_epoch}) saved"
        return "stopped: " + ("saved mid-epoch" if run.model else "nothing saved")
    return f"{run.status}: {run.message}" if run.message else run.status


def _signature(path: Path):
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def _read_lines(stream, events: queue.Queue, job: Job, kind: str) -> None:
    for line in stream:
        events.put((job, kind, line.rstrip("\n")))
    events.put((job, "eof", kind))


class Sweep:
    """Runs the jobs, ``jobs`` at a time, and passes a stop signal on to the running ones.

    ``launch(job, events)`` starts a run elsewhere than in a local process (``--scheduler``): it returns
    what stands for the run's ``train`` process (``poll``, ``wait``, ``send_signal``, ``returncode``),
    puts the run's output lines on ``events`` as ``(job, "out"|"err"|"status", line)`` and one
    ``(job, "eof", ...)`` per stream it counted in ``job.open_streams``, and has written the run's files
    into place by the time ``poll`` returns its exit status.
    """

    def __init__(self, jobs: list[Job], parallel: int, variables: dict, display: Display, on_done, launch=None):
        self.jobs = jobs
        self.parallel = parallel
        self.env = {**os.environ, **variables, "PYTHONUNBUFFERED": "1"}
        self.display = display
        self.on_done = on_done
        self.events: queue.Queue = queue.Queue()
        self.signum: int | None = None
        self.launch = launch or self.start_process

    def run(self) -> int | None:
        """Run every waiting job; return the stop signal's number if one came, else None."""
        waiting = [job for job in self.jobs if job.state == "waiting"]
        running: list[Job] = []
        with StopSignals() as stop:
            stop.defer()  # a signal is recorded here and passed on below, never raised mid-bookkeeping
            while waiting or running:
                while waiting and len(running) < self.parallel and stop.signum is None:
                    job = waiting.pop(0)
                    self.start(job)
                    running.append(job)
                self.read_events(timeout=0.2)
                if stop.signum is not None and self.signum is None:
                    self.stop_running(running, stop.signum, "run(s); each saves its best model so far")
                    for job in waiting:
                        job.state = "done"
                        job.result = Run(job.name, status="not started", settings=dict(job.values))
                        self.on_done(job)
                    waiting.clear()
                self.reap(running)
                self.display.draw()
        return self.signum

    def stop_running(self, running: list[Job], signum: int, what: str) -> None:
        """Pass a stop signal on to the running jobs, once, and say so."""
        self.signum = signum
        self.display.say(f"{self.stopped_by()}: stopping the {len(running)} running {what}")
        for job in running:
            if job.process.poll() is None:
                job.process.send_signal(signum)

    def reap(self, running: list[Job]) -> None:
        """Finish the jobs whose process has ended and whose output has all been read."""
        for job in list(running):
            if job.process.poll() is not None and job.open_streams == 0:
                running.remove(job)
                self.finish(job)

    def stopped_by(self) -> str:
        return "interrupted" if self.signum == signal.SIGINT else f"terminated by {signal_name(self.signum)}"

    def start(self, job: Job) -> None:
        job.state, job.started, job.started_at = "running", time.monotonic(), time.time()
        job.before = {path: _signature(path) for path in (job.model, job.history)}
        job.process = self.launch(job, self.events)
        self.display.event(job, getattr(job.process, "start_text", "started"))

    def command(self, job: Job) -> list[str]:
        """The local process that runs ``job``: ``bptrain train`` with the run's arguments."""
        return [sys.executable, "-m", "bptrain", *job.args]

    def start_process(self, job: Job, events: queue.Queue) -> subprocess.Popen:
        process = subprocess.Popen(self.command(job), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, text=True, env=self.env, bufsize=1, errors="replace")
        job.open_streams = 2
        for stream, kind in ((process.stdout, "out"), (process.stderr, "err")):
            threading.Thread(target=_read_lines, args=(stream, events, job, kind), daemon=True).start()
        return process

    def read_events(self, timeout: float) -> None:
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self.handle(*item)
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return

    def handle(self, job: Job, kind: str, line: str) -> None:
        if kind == "eof":
            job.open_streams -= 1
            return
        if kind == "status":  # where a run elsewhere is (a cluster's worker)
            self.display.event(job, line)
            return
        if kind == "err":
            job.stderr.append(line)
            if line.startswith("note:"):
                self.display.note(job, line)
            return
        match = EPOCH_LINE.match(line)
        if match:
            job.epoch, job.epochs = int(match.group(1)), int(match.group(2))
            job.last = f"val acc {match.group(5)}%  train loss {match.group(3)}"
            last = job.epoch == job.epochs
            self.display.event(job, f"epoch {job.epoch}/{job.epochs}  {job.last}", every=0 if last else 2.0)

    def finish(self, job: Job) -> None:
        """What became of a run: read from its files and exit status (train's own words for errors)."""
        job.process.wait()
        job.ended, job.ended_at = time.monotonic(), time.time()
        job.state = "done"
        code = job.process.returncode
        errors = [line.removeprefix("Error: ") for line in job.stderr if line.startswith("Error:")]
        # files this process wrote (train replaces them atomically: a new inode), not a former attempt's
        files = all(_signature(path) not in (None, job.before[path]) for path in (job.model, job.history))
        try:
            run = read_run(job.name, job.model, job.history) if files else None
        except BptrainError as exc:
            run, errors = None, errors + [str(exc)]
        if run is None:
            run = Run(job.name, settings=dict(job.values), seconds=round(job.ended - job.started, 3))
        if getattr(job.process, "not_started", False):
            run.status, run.seconds, job.started = "not started", None, None  # queued elsewhere, cancelled
        elif files and (code == 0 or code in STOP_STATUSES):
            pass  # the history says: finished (a signal may have come during its save), or stopped, best so far saved
        elif code == 1 and any("training diverged" in line for line in errors):
            message = next(line for line in errors if "training diverged" in line)
            run.status, run.message = "diverged", message.removesuffix(f"; {job.model} was not written")
        elif code in STOP_STATUSES or code < 0 or self.signum is not None:
            run.status = "stopped"
            if code < 0:
                run.message = f"killed by {signal_name(-code)}"
        else:
            run.status = "failed"
            run.message = errors[-1] if errors else (job.stderr[-1] if job.stderr else f"exit status {code}")
        job.result = run
        self.display.event(job, done_text(job))
        self.on_done(job)
