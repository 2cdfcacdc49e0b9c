"""How a run is named: the digest of its plan (its checkpoints and files carry it) and of the parameters it
starts from (which runs of a sweep or the page started alike: ``bptrain compare`` reads it back)."""

from __future__ import annotations

import hashlib
import json

import numpy as np


def run_id(record: dict) -> str:
    """A run's name: the digest of its plan and starting point, so that the same command trains the same
    bytes (two runs with one id would train alike, step for step)."""
    plan = {key: value for key, value in record.items() if key not in ("run_id", "out", "history", "cwd")}
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def parameters_sha256(weights, biases) -> str:
    """SHA-256 of a network's parameters: layer by layer, each array's dtype, shape and bytes.

    Two runs with the same digest started from byte-identical weights and biases.
    """
    digest = hashlib.sha256()
    for w, b in zip(weights, biases):
        for array in (w, b):
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype.str}{array.shape}".encode("ascii"))
            digest.update(array.tobytes())
    return digest.hexdigest()
