"""What the page keeps of a run: float32 copies of the parameters, the kept epochs for replay, the weight tiles."""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass

import numpy as np

from ...core.network import MLP
from ...core.training import EpochRecord
from ...data.model_io import model_record

#: Replay snapshots: at most this many, and at most this many bytes together (float32 copies).
MAX_SNAPSHOTS = 64
SNAPSHOT_BYTES = 256 * 1024 * 1024
#: First-layer units drawn as tiles, at most.
MAX_TILES = 256

def float32_copy(arrays) -> list[np.ndarray]:
    return [np.array(a, np.float32) for a in arrays]


def weight_tiles(w1: np.ndarray, max_tiles: int = MAX_TILES) -> dict | None:
    """The first layer's weights as 28x28 tiles for the page, or None when the inputs are not square images.

    Each unit's incoming weights (a column of W1) become one tile, scaled to its own largest |w| (as
    ``bptrain plot`` draws them), quantised to a byte: 128 is 0, 255 is +max, 1 is −max. The bytes of
    all tiles, unit after unit, row by row, go as one base64 string.
    """
    n_inputs, n_units = w1.shape
    side = math.isqrt(n_inputs)
    if side * side != n_inputs or n_units == 0:
        return None
    count = min(n_units, max_tiles)
    tiles = np.asarray(w1[:, :count], np.float32).T
    limits = np.abs(tiles).max(axis=1, keepdims=True)
    scaled = tiles / np.where(limits > 0, limits, 1)
    quantised = np.rint(128 + 127 * scaled).clip(1, 255).astype(np.uint8)
    return {"side": side, "count": count, "units": int(n_units),
            "tiles": base64.b64encode(quantised.tobytes()).decode("ascii")}


def thin_evenly(snapshots: list, keep: int) -> None:
    """Drop snapshots until ``keep`` are left, in place: the first and the last stay, and each drop takes
    the one whose neighbours are closest together, so the kept epochs stay about evenly spread."""
    while len(snapshots) > max(keep, 1):
        if len(snapshots) <= 2:
            del snapshots[0]
            continue
        gaps = [(snapshots[i + 1].epoch - snapshots[i - 1].epoch, i) for i in range(1, len(snapshots) - 1)]
        del snapshots[min(gaps)[1]]


def model_file_bytes(model: MLP, metadata: dict) -> bytes:
    """The bytes ``save_model`` writes, for a download."""
    buffer = io.BytesIO()
    np.save(buffer, model_record(model, metadata), allow_pickle=False)
    return buffer.getvalue()


@dataclass
class Snapshot:
    """The parameters at one point of the run (the end of ``epoch``; the start is the end of epoch − 1)."""

    epoch: int
    weights: list
    biases: list
    record: EpochRecord | None = None
    confusion: list | None = None  # of the validation split: the loop's at the end of an epoch, else when asked for
    tiles: dict | None = None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.weights + self.biases)

    def describe(self) -> dict:
        record = self.record
        return {"epoch": self.epoch,
                "val_accuracy": record.val_accuracy if record else None,
                "val_loss": record.val_loss if record else None}


