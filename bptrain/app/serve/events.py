"""The event stream of the page (Server-Sent Events): the events every client must hear, and each client's
stream of what it has not heard yet, at most twice a second, with the first layer's weights now and then."""

from __future__ import annotations

import json
import time
from collections import deque

from .api import json_safe
from .errors import Unavailable

#: Each client of the event stream hears at most this often (seconds): a little over twice a second ...
EVENT_INTERVAL = 0.45
#: ... and gets the first layer's weights at most this often (with the same batch of events, when they changed).
TILES_INTERVAL = 0.4
#: A comment line this often keeps a silent stream open through proxies and tells a dead client apart.
HEARTBEAT_SECONDS = 15.0
#: Event streams open at once, at most (each holds a thread of the server).
MAX_STREAMS = 32
#: Events kept for clients that are behind; one further behind gets the whole state again.
LOG_LENGTH = 1000


def sse(event: dict) -> bytes:
    """One Server-Sent Event: a ``data:`` line of JSON and a blank line."""
    return b"data: " + json.dumps(json_safe(event), separators=(",", ":")).encode("utf-8") + b"\n\n"


class EventLog:
    """The session's events, and the streams of its clients (``session``: its lock, its run and its state)."""

    def __init__(self, session):
        self.session = session
        self._events: deque = deque(maxlen=LOG_LENGTH)
        self._seq = 0
        self._streams = 0

    def log(self, event: dict) -> None:
        """Append an event every client must hear (call with the lock held)."""
        self._seq += 1
        self._events.append((self._seq, event))
        self.session.lock.notify_all()

    def open_stream(self) -> None:
        with self.session.lock:
            if self.session.closing:
                raise Unavailable("the server is stopping")
            if self._streams >= MAX_STREAMS:
                raise Unavailable(f"{MAX_STREAMS} event streams are open already; close a tab")
            self._streams += 1

    def close_stream(self) -> None:
        with self.session.lock:
            self._streams -= 1

    def stream(self):
        """One client's Server-Sent Events (bytes to write), from its own state: call :meth:`open_stream` first.

        The first event is the whole state; then each is what changed, at most every EVENT_INTERVAL
        seconds, and a heartbeat comment when nothing did for HEARTBEAT_SECONDS. Ends when the server closes.
        """
        client = {"seq": 0, "run": None, "points": 0, "progress": -1, "tiles": -1, "tiles_at": 0.0}
        with self.session.lock:
            first = self._welcome(client)
        yield sse(first)
        while True:
            deadline = time.monotonic() + HEARTBEAT_SECONDS
            with self.session.lock:
                while not self.session.closing:
                    news = self._news(client)
                    if news or (wait := deadline - time.monotonic()) <= 0:
                        break
                    self.session.lock.wait(min(wait, TILES_INTERVAL))
                if self.session.closing:
                    return
            sent_at = time.monotonic()
            if news:
                yield b"".join(sse(self._finished(event)) for event in news)
            else:
                yield b": heartbeat\n\n"
            time.sleep(max(0.0, sent_at + EVENT_INTERVAL - time.monotonic()))

    def _welcome(self, client: dict) -> dict:
        run = self.session.run
        client.update(seq=self._seq, run=run.id if run else None, points=0, progress=-1, tiles=-1)
        state = self.session.state_locked()
        if run is not None:
            client.update(points=len(run.loss_points), progress=run.progress_version)
        return {"type": "state", "state": state}

    def _news(self, client: dict) -> list:
        """What ``client`` has not heard yet (with the lock held)."""
        run = self.session.run
        if self._events and self._events[0][0] > client["seq"] + 1:
            return [self._welcome(client)]  # too far behind: everything again
        news = [event for seq, event in self._events if seq > client["seq"]]
        if (run.id if run else None) != client["run"]:  # a new run: from its start on, in order
            starts = [i for i, event in enumerate(news) if event["type"] == "state"
                      and event["state"]["run"] == run.id]
            if not starts:
                return [self._welcome(client)]
            news = news[starts[-1]:]
            client.update(run=run.id, points=0, progress=-1, tiles=-1)
        client["seq"] = self._seq
        if run is None:
            return news
        if run.progress_version != client["progress"]:
            event = run.progress_event()
            event["loss"] = run.loss_points[client["points"]:]
            client.update(progress=run.progress_version, points=len(run.loss_points))
            news.append(event)
        now = time.monotonic()
        if run.live_version != client["tiles"] and now - client["tiles_at"] >= TILES_INTERVAL:
            client.update(tiles=run.live_version, tiles_at=now)
            news.append({"type": "weights", "run": run.id, "epoch": run.epoch, "batch": run.batch,
                         "batches": run.batches, "status": run.status, "tiles": run})  # filled in outside the lock
        return news

    def _finished(self, event: dict) -> dict:
        """An event ready to send: the parts computed outside the lock (tiles, confusion matrices) added."""
        if event["type"] == "weights":
            return {**event, "tiles": event["tiles"].tiles()[1]}
        if event["type"] == "epoch":
            with self.session.lock:
                run = self.session.run
                snapshot = next((s for s in run.snapshots if s.epoch == event["record"]["epoch"]), None) \
                    if run is not None and run.id == event["run"] else None
            if snapshot is not None:
                return {**event, "confusion": run.confusion(snapshot)}
            return {**event, "confusion": None}
        return event
