"""Whether a scheduler's address answers, and quiet from ``distributed`` once the sweep speaks for it.

Neither needs ``distributed`` itself: :mod:`.cluster` is the module that imports it.
"""

from __future__ import annotations

import logging
import socket
import time


def silence_distributed() -> None:
    """Quiet every logger of ``distributed``: its configuration gives some (``distributed.client``) levels of
    their own, which a level on ``distributed`` alone does not override. The sweep says itself what became
    of each run (a scheduler gone mid-sweep, once), where the client would log a traceback per reconnect."""
    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name == "distributed" or name.startswith("distributed."):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def unanswered(address: str, timeout: float) -> str | None:
    """What is wrong with a ``tcp://`` address, found within ``timeout`` seconds, or None.

    A Dask scheduler speaks first (its handshake) once it accepts a connection, and ``Client`` waits
    without end on an address that accepts and never answers. A refused connection is left to ``Client``
    to say in its own words (None)."""
    scheme, _, rest = address.rpartition("://")
    if scheme not in ("", "tcp"):
        return None
    try:
        host, port = rest.rsplit(":", 1)
        host, port = host.strip("[]"), int(port)
    except ValueError:
        return None
    deadline = time.monotonic() + timeout  # one answer within timeout, however it fails
    try:
        probe = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        return f"Timed out trying to connect (no answer in {timeout:g} s)"
    except OSError:
        return None
    try:
        probe.settimeout(max(0.1, deadline - time.monotonic()))
        if not probe.recv(1, socket.MSG_PEEK):
            return "it closed the connection without an answer (is it a Dask scheduler?)"
    except TimeoutError:
        return f"it accepted the connection but did not answer in {timeout:g} s (is it a Dask scheduler?)"
    except OSError:
        return None
    finally:
        probe.close()
    return None
