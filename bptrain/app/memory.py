"""How much memory a run needs, and whether this machine has it, before anything large is allocated.

Linux rarely raises ``MemoryError``: a large allocation succeeds, and touching
its pages later gets the process killed by the out-of-memory killer, after it
has pushed everything else on the machine into swap. So every command that
builds a network or its buffers first adds up what the run will hold at its
peak and compares it with what the machine can give (:func:`available_bytes`):

    needed = BASELINE_BYTES + (1 + MARGIN) · (sum of the arrays of the peak phase)

A run is looked at in phases, each the arrays alive together: loading the
data (the loader decodes each split through a second copy of its bytes),
building the network (the initial draw is float64, then copied into the
training dtype; resuming reads the whole model file first) and training.
Training holds the parameters, the optimizer's state, the per-batch
workspace, the shuffled copy of the training set, the evaluation chunk,
the gradient-norm measurement and the best-epoch snapshots. The peak phase
is the largest sum. Only memory that is written counts: NumPy's ``empty``
arrays that a run never touches (the fast engine's NumPy-fallback scratch,
the unused gradient buffers of a workspace) take no pages on Linux.

Two engines: ``"fast"`` (the workspaces, fused updates and buffers of today's
code) and ``"reference"`` (plain NumPy that forms Z_l, A_l, Δ_l and ∂C/∂W_l as
new arrays every step). :func:`check_fits` refuses a run that cannot fit in one
line (:class:`MemoryLimitError`) and returns a warning for one that would take
more than :data:`WARN_SHARE` of what is available. ``benchmarks/memory_estimate.py``
measures peak resident memory against the estimate.

Who calls what: ``train`` (also with ``--resume`` and a config file) :func:`training_estimate`,
``bench`` :func:`bench_estimate`, ``gradcheck`` :func:`gradcheck_estimate`, each through
:func:`check_fits`; a sweep checks :func:`sweep_estimate` (its parallel runs together); a server
answers a training request that cannot fit with :func:`refusal`'s line (a 400), estimating with
``in_process=True`` (its data and interpreter are already in what the machine reports as used) and
its ``kept_snapshots``.

Standard library and NumPy; the sizes it counts come from the modules that allocate them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import BptrainError, ModelFileError
from ..core.learning_speed import INITIAL_BATCH
from ..core.network import PREDICT_CHUNK
from ..core.epoch_steps import UPDATES_PER_EPOCH
from ..core.training import DISTORTION_SETTINGS
from ..data.distort import BLOCK
from ..data.epochs import CHUNK
from ..data.npyfile import check_npy_size
from ..engines import ENGINES, engine_class


#: Resident memory of a bptrain process before its arrays: the interpreter, NumPy, click, tqdm,
#: bptrain's modules and OpenBLAS's per-thread buffers (benchmarks/memory_estimate.py measures it).
BASELINE_BYTES = 80 * 10**6
#: The arrays counted are multiplied by 1 + MARGIN: the allocator's slack, small arrays left out.
MARGIN = 0.10
#: A run that fits but needs more than this share of the available memory goes on with a warning.
WARN_SHARE = 0.8

# Sizes the counted arrays depend on, from the modules that allocate them.
EVAL_CHUNK = PREDICT_CHUNK
GRADIENT_NORM_ROWS = INITIAL_BATCH
EPOCH_CHUNK = CHUNK
DISTORT_BLOCK = BLOCK
#: bench's GEMM peak measurement multiplies two n x n matrices (bench.gemm_peak_gflops).
GEMM_PEAK_SIDE = 2048


#: cgroup v1 reports "no limit" as a number near 2^63.
_NO_LIMIT = 1 << 60


class MemoryLimitError(BptrainError):
    """A run would need more memory than the machine has available."""


# ----------------------------------------------------------------------------- what is available
def available_bytes(root: str | os.PathLike = "/") -> int | None:
    """Bytes this process can still allocate without pushing the machine into swap, or None if unknown.

    On Linux the kernel's ``MemAvailable`` (/proc/meminfo), or what the process's
    control group still allows where that is lower: cgroup v2 ``memory.max`` less
    ``memory.current``, v1 ``memory.limit_in_bytes`` less ``memory.usage_in_bytes``,
    for the group and every group above it. The group's use counts its page
    cache, of which the inactive file pages (``memory.stat``) would be reclaimed
    first: they are counted as available, as ``MemAvailable`` counts them.
    Elsewhere ``os.sysconf`` (available, else total physical pages) or, on
    Windows, ``GlobalMemoryStatusEx``. ``root`` is for tests: a fake file system.
    """
    root = Path(root)
    found = [n for n in (_meminfo_available(root), _cgroup_available(root)) if n is not None]
    if found:
        return max(0, min(found))
    return _sysconf_available() if root == Path("/") else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _meminfo_available(root: Path) -> int | None:
    text = _read(root / "proc" / "meminfo")
    for line in (text or "").splitlines():
        name, _, value = line.partition(":")
        if name == "MemAvailable":
            parts = value.split()
            try:
                return int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
            except (IndexError, ValueError):
                return None
    return None


def _number(path: Path) -> int | None:
    """The integer a cgroup file holds, None for "max", a missing file or anything else."""
    text = _read(path)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _stat(path: Path, key: str) -> int:
    for line in (_read(path) or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _cgroup_dirs(mount: Path, relative: str) -> list[Path]:
    """The group's directory under ``mount`` and those above it up to the mount.

    Inside a container /proc/self/cgroup may name the group as the host sees it,
    a path that does not exist in the container's mount: then the mount itself
    is the group.
    """
    group = mount / relative.strip("/")
    if not group.is_dir():
        return [mount]
    dirs = [group]
    while dirs[-1] != mount and mount in dirs[-1].parents:
        dirs.append(dirs[-1].parent)
    return dirs


def _cgroup_available(root: Path) -> int | None:
    """The least room left under the memory limits of this process's control groups, or None if none."""
    text = _read(root / "proc" / "self" / "cgroup") or ""
    room = []
    for line in text.splitlines():
        _, controllers, relative = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # cgroup v2: "0::/path"
            for mount in (root / "sys" / "fs" / "cgroup", root / "sys" / "fs" / "cgroup" / "unified"):
                if (mount / "cgroup.controllers").is_file():
                    for d in _cgroup_dirs(mount, relative):
                        limit, used = _number(d / "memory.max"), _number(d / "memory.current")
                        if limit is not None and used is not None:
                            room.append(limit - used + _stat(d / "memory.stat", "inactive_file"))
                    break
        elif "memory" in controllers.split(","):  # cgroup v1: "4:memory:/path"
            mount = root / "sys" / "fs" / "cgroup" / "memory"
            for d in _cgroup_dirs(mount, relative):
                limit = _number(d / "memory.limit_in_bytes")
                hierarchical = _stat(d / "memory.stat", "hierarchical_memory_limit") or None
                limits = [n for n in (limit, hierarchical) if n is not None and n < _NO_LIMIT]
                used = _number(d / "memory.usage_in_bytes")
                if limits and used is not None:
                    room.append(min(limits) - used + _stat(d / "memory.stat", "total_inactive_file"))
    return min(room) if room else None


def _sysconf_available() -> int | None:
    if sys.platform == "win32":
        return _windows_available()
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
            if name in os.sysconf_names:
                pages = os.sysconf(name)
                if pages > 0 and page > 0:
                    return pages * page
    except (AttributeError, ValueError, OSError):
        pass
    return None


def _windows_available() -> int | None:  # pragma: no cover - Windows only
    try:
        import ctypes

        class MemoryStatus(ctypes.Structure):
            _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                        ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                        ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                        ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                        ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

        status = MemoryStatus()
        status.dwLength = ctypes.sizeof(MemoryStatus)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
            return int(status.ullAvailPhys)
    except Exception:
        pass
    return None


# ----------------------------------------------------------------------------- the data
@dataclass(frozen=True)
class DataShape:
    """The rows of each split and the width of the images; ``loaded_bytes`` of the data as loaded."""

    n_train: int
    n_validation: int
    n_test: int
    n_features: int
    loaded_bytes: int | None = None  # None: float32 images and int64 labels of all three splits

    @classmethod
    def of(cls, dataset) -> "DataShape":
        """The shape of a loaded data set (anything with ``train``, ``validation``, ``test`` splits of x, y)."""
        splits = (dataset.train, dataset.validation, dataset.test)
        # a set without a test part is its own test part: views of the same memory, counted once
        held = [s for i, s in enumerate(splits) if not any(np.may_share_memory(s.x, o.x) for o in splits[:i])]
        return cls(*(len(s.x) for s in splits), int(splits[0].x.shape[1]),
                   sum(int(s.x.nbytes) + int(s.y.nbytes) for s in held))

    @classmethod
    def mnist(cls, n_features: int = 784) -> "DataShape":
        """MNIST's 50,000 / 10,000 / 10,000 images of ``n_features`` pixels."""
        return cls(50_000, 10_000, 10_000, n_features)

    @property
    def bytes(self) -> int:
        if self.loaded_bytes is not None:
            return self.loaded_bytes
        return (self.n_train + self.n_validation + self.n_test) * (4 * self.n_features + 8)

    @property
    def largest_split_bytes(self) -> int:
        return max(self.n_train, self.n_validation, self.n_test) * self.n_features * 4


# ----------------------------------------------------------------------------- the estimate
@dataclass(frozen=True)
class Run:
    """Everything the estimate depends on (kept in the :class:`Estimate`, which re-estimates with
    another batch size or number of jobs to say what would fit)."""

    kind: str  # "train", "bench" or "gradcheck"
    sizes: tuple
    batch_size: int
    engine: str = "fast"
    itemsize: int = 4  # of the network's dtype
    optimizer: str = "sgd"  # "sgd" (with momentum), "plain" (SGD without) or "adam"
    augment: bool = False
    distorts: bool = False
    data: DataShape | None = None
    build: str = "draw"  # "draw": initial parameters in float64; "file": read from a model file; "none"
    file_itemsize: int = 4
    models: int = 1  # networks held at once, each with its optimizer and workspace (bench)
    evaluation: bool = True
    gradient_norms: bool = True
    best_snapshots: bool = True
    kept_snapshots: int = 0  # float32 copies of the parameters a server keeps
    in_process: bool = False  # the process and its data exist already (a server): count only what is new
    jobs: int = 1  # whole runs side by side (sweep)
    levers: tuple = ("units", "batch")  # what the user may change: "units", "batch", "jobs"


@dataclass(frozen=True)
class Part:
    name: str
    bytes: int


@dataclass(frozen=True)
class Estimate:
    """What a run needs at its peak: ``parts`` (bytes) of its largest phase, the baseline and the margin.

    ``total`` is the number to compare with the available memory; ``phases`` keeps every phase's parts.
    """

    run: Run
    phase: str
    parts: tuple
    phases: dict

    @property
    def arrays(self) -> int:
        return sum(p.bytes for p in self.parts)

    @property
    def baseline(self) -> int:
        return 0 if self.run.in_process else BASELINE_BYTES

    @property
    def margin(self) -> float:
        return MARGIN

    @property
    def per_job(self) -> int:
        return self.baseline + math.ceil(self.arrays * (1 + MARGIN))

    @property
    def total(self) -> int:
        return self.run.jobs * self.per_job

    @property
    def needs(self) -> str:
        """'X needs' or, for several parallel runs, 'X need'."""
        return f"{self.label} {'need' if self.run.jobs > 1 else 'needs'}"

    @property
    def label(self) -> str:
        """The run in words: '784-3000000-10 at batch 32'."""
        run = self.run
        network = "-".join(map(str, run.sizes)) + (" (float64)" if run.itemsize == 8 and run.kind == "train" else "")
        what = {"train": network, "bench": f"bench of {network}", "gradcheck": f"gradient check of {network}"}[run.kind]
        text = f"{what} at batch {run.batch_size}"
        return f"{run.jobs} parallel runs of {text}" if run.jobs > 1 else text

    def describe(self) -> str:
        """Several lines: the total, then each part of the peak phase (a --verbose breakdown)."""
        lines = [f"{self.needs} about {format_gb(self.total)} at its peak ({self.phase}"
                 + (f", per run {format_gb(self.per_job)}" if self.run.jobs > 1 else "") + "):"]
        lines += [f"  {part.name:<34} {format_gb(part.bytes):>10}" for part in self.parts if part.bytes]
        lines.append(f"  {f'margin {100 * MARGIN:.0f}%':<34} {format_gb(self.per_job - self.baseline - self.arrays):>10}")
        if self.baseline:
            lines.append(f"  {'interpreter, NumPy, BLAS':<34} {format_gb(self.baseline):>10}")
        return "\n".join(lines)


def format_gb(n: int) -> str:
    """Bytes as decimal gigabytes with one decimal ('28.3 GB'), or whole megabytes below 1 GB ('530 MB')."""
    return f"{n / 1e9:.1f} GB" if n >= 10**9 else f"{max(n, 0) / 1e6:.0f} MB"


def estimate(sizes, batch_size: int, *, engine: str = "fast", dtype="float32", optimizer: str = "sgd",
             momentum: float = 0.9, augment: int = 0, distorts: bool = False, data: DataShape | None = None,
             resumed_from: tuple | None = None, kept_snapshots: int = 0, in_process: bool = False,
             jobs: int = 1) -> Estimate:
    """What ``bptrain train`` needs for ``sizes`` at ``batch_size`` with these settings.

    ``data``: the data set's shape (MNIST's by default). ``resumed_from``: the
    (sizes, itemsize) of a model file being continued (:func:`model_file_layout`), whose sizes
    replace ``sizes``. ``kept_snapshots``: float32 copies of the parameters
    kept besides (a server's replay). ``in_process``: count only what the run adds
    to a process that already holds its data (a server).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    sizes = tuple(int(n) for n in (resumed_from[0] if resumed_from else sizes))
    run = Run("train", sizes, int(batch_size), engine, np.dtype(dtype).itemsize,
              optimizer if optimizer == "adam" else "sgd" if momentum else "plain",
              bool(augment), bool(distorts), data or DataShape.mnist(sizes[0]),
              "file" if resumed_from else "draw", resumed_from[1] if resumed_from else 4,
              kept_snapshots=kept_snapshots, in_process=in_process, jobs=jobs,
              levers=("batch",) if resumed_from else ("units", "batch"))
    return estimate_run(run)


#: Training settings that turn the distortions on (bptrain.core.training.TrainSettings).


def training_estimate(sizes, batch_size: int, *, resume=None, dtype="float32", augment: int = 0,
                      data: DataShape | None = None, **settings) -> Estimate:
    """:func:`estimate` for ``bptrain train`` from its options as they are.

    ``settings``: the training settings by name (``optimizer``, ``momentum``, the
    distortions, ``engine``; others are ignored). With ``resume``, the sizes come
    from that model file's header, read without its data.
    """
    layout = model_file_layout(resume) if resume is not None else None
    return estimate(sizes, batch_size, engine=settings.get("engine") or "fast", dtype=dtype,
                    optimizer=settings.get("optimizer") or "sgd", momentum=settings.get("momentum", 0.9),
                    augment=augment, distorts=any(settings.get(name) for name in DISTORTION_SETTINGS),
                    data=data, resumed_from=layout)


def bench_estimate(sizes, batch_sizes, *, dtype="float32", settings=(), n_samples: int = 50_000,
                   engine: str = "fast") -> Estimate:
    """What ``bptrain bench`` needs: a network per timed setting (each setting's, while the next batch
    size's are built), its largest batch size, the data and the GEMM peak measurement.

    ``settings``: bench's EpochSettings (anything with ``momentum`` and ``augment``).
    """
    sizes = tuple(int(n) for n in sizes)
    settings = list(settings) or [None]
    momentum = any(getattr(s, "momentum", 0) for s in settings)
    data = DataShape.mnist(sizes[0])
    run = Run("bench", sizes, max(batch_sizes), engine, np.dtype(dtype).itemsize, "sgd" if momentum else "plain",
              any(getattr(s, "augment", 0) for s in settings), False,
              dataclasses.replace(data, n_train=n_samples, loaded_bytes=data.bytes),
              models=len(settings) * (2 if len(set(batch_sizes)) > 1 else 1),
              evaluation=False, gradient_norms=False, best_snapshots=False)
    return estimate_run(run)


def gradcheck_estimate(sizes, batch_size: int, engine: str = "fast") -> Estimate:
    """What ``bptrain gradcheck`` needs: a float64 network, one batch, its gradients and their copies."""
    run = Run("gradcheck", tuple(int(n) for n in sizes), int(batch_size), engine, 8, "plain",
              evaluation=False, gradient_norms=False, best_snapshots=False)
    return estimate_run(run)


def sweep_estimate(single: Estimate, jobs: int) -> Estimate:
    """``jobs`` runs like ``single`` side by side: each is a process with its own data and buffers."""
    levers = single.run.levers + (("jobs",) if "jobs" not in single.run.levers else ())
    return estimate_run(dataclasses.replace(single.run, jobs=int(jobs), levers=levers))


def estimate_run(run: Run) -> Estimate:
    phases = _phases(run)
    phase = max(phases, key=lambda name: sum(p.bytes for p in phases[name]))
    return Estimate(run, phase, phases[phase], phases)


def _phases(run: Run) -> dict:
    """{phase: (Part, ...)} of the arrays alive together in each phase of ``run``."""
    d, sizes, engine, models = run.itemsize, run.sizes, run.engine, run.models
    n_classes, n_features = sizes[-1], sizes[0]
    params = sum(m * n + n for m, n in zip(sizes[:-1], sizes[1:]))
    largest_layer = max(m * n for m, n in zip(sizes[:-1], sizes[1:]))
    data = run.data
    n_train = data.n_train if data else run.batch_size
    batch = max(1, min(run.batch_size, n_train))
    converted = d != 4  # a float64 network converts the float32 images it reads
    data_parts = [Part("data set", data.bytes)] if data is not None and not run.in_process else []

    trainer = engine_class(engine)  # what the engine says it allocates

    def activations(rows: int, kept: int) -> int:
        return trainer.activations(sizes, rows, kept) * d

    phases = {}
    if data_parts and run.kind == "train":
        # the loader decodes each split through a second copy of its bytes (safe_pickle, idx)
        phases["loading the data"] = (*data_parts, Part("data decoding", data.largest_split_bytes))

    if run.build == "file":
        build = [Part("model file as read", params * run.file_itemsize), Part("parameters", params * d),
                 Part("finiteness check", largest_layer)]  # np.isfinite: one bool per weight of a layer
    else:
        build = [Part("float64 initial draw", params * 8), Part("parameters", models * params * d)]
    if run.build != "none":
        phases["building the network"] = (*data_parts, *build)

    if run.kind == "gradcheck":
        phases["checking gradients"] = (
            Part("parameters", params * d),
            Part("per-batch workspace", activations(batch, 3) + params * d + batch * n_features * d),
            Part("gradient copies", params * d))
        return phases

    # the loss of a group of steps is read from rows kept for it (the fast engine's run_epoch)
    group_rows = max(1, math.ceil(n_train / batch) // UPDATES_PER_EPOCH) * batch
    parts = [*data_parts, Part("parameters", models * params * d)]
    engine_parts = trainer.memory(sizes, batch, run.optimizer, d, group_rows)
    transient = []  # arrays made and dropped again: those of a step, of the evaluation, of the speed measure
    for name, size in engine_parts.items():
        (parts if trainer.KEEPS_WORKSPACES or name == "optimizer state" else transient).append(Part(name, models * size))
    # the shuffled (shifted, distorted) training set and its one-hot targets in one buffer, the images
    # converted first for a float64 network, a shift's gather scratch, the permutation and shift codes
    epoch = n_train * (n_features + n_classes) * d + (n_train * n_features * d if converted else 0)
    epoch += min(EPOCH_CHUNK, n_train) * n_features * d if run.augment else 0
    epoch += 2 * n_train * 8
    parts.append(Part("epoch buffers", epoch))
    if run.distorts:  # distort.Distorter: 60 bytes per pixel of a block, and the zero-framed block
        side = math.isqrt(n_features) + 2
        parts.append(Part("distortion buffers", DISTORT_BLOCK * (60 * n_features + 4 * side * side)))
    if run.evaluation and data is not None:
        rows = min(EVAL_CHUNK, data.n_validation)
        # kept in the network's workspaces: a chunk's activations, its softmax, one-hot targets, predictions
        transient.append(Part("evaluation chunk", activations(rows, 1 if engine == "fast" else 2)
                              + rows * (2 * n_classes + (n_features if converted else 0)) * d
                              + data.n_validation * 8))
    if run.gradient_norms:
        rows = min(GRADIENT_NORM_ROWS, n_train)
        # speed.SpeedRecorder's gradients, and batch_speed's forward and backward of `rows` images:
        # its workspace and gradients, and their copies
        transient.append(Part("gradient norms", params * d + activations(rows, 3) + 2 * params * d
                              + rows * (n_classes + (n_features if converted else 0)) * d))
    if trainer.KEEPS_WORKSPACES:  # the fast engine's workspaces live through the epoch: all of them at once
        parts += transient
    elif transient:  # the reference engine's arrays come and go: the largest of them at a time
        parts.append(max(transient, key=lambda part: part.bytes))
    if run.best_snapshots:  # the best epoch's parameters, and the next best's while it is copied
        parts.append(Part("best-epoch snapshots", 2 * params * d))
    if run.kept_snapshots:
        parts.append(Part("kept snapshots", run.kept_snapshots * params * 4))
    if run.kind == "bench":  # two float32 matrices and their product, drawn in float64
        parts.append(Part("GEMM peak measurement", GEMM_PEAK_SIDE ** 2 * (3 * d + 8)))
    phases["training"] = tuple(parts)
    return phases


# ----------------------------------------------------------------------------- model files
def model_file_layout(path) -> tuple[tuple, int] | None:
    """(sizes, itemsize) of a bptrain model file, from its .npy header alone; None if it is not one.

    The file is one record whose fields W1, b1, ... have the layers' shapes
    (bptrain.data.model_io): the header names them without reading any data. A file too short to hold
    what its header claims is refused here as truncated or corrupt (a lie about its size is not a
    memory problem).
    """
    header = check_npy_size(path, ModelFileError, "model file") if Path(path).is_file() else None
    if header is None or header.shape != () or header.dtype.names is None:
        return None
    dtype, sizes, layer = header.dtype, [], 1
    while f"W{layer}" in dtype.names:
        weight = dtype.fields[f"W{layer}"][0]
        if len(weight.shape) != 2 or (sizes and weight.shape[0] != sizes[-1]):
            return None
        sizes = sizes or [weight.shape[0]]
        sizes.append(weight.shape[1])
        itemsize = weight.base.itemsize
        layer += 1
    return (tuple(sizes), itemsize) if len(sizes) >= 2 else None


# ----------------------------------------------------------------------------- the verdict
def refusal(estimate: Estimate, available: int | None = None) -> str | None:
    """The one-line reason ``estimate`` cannot run here (a server's 400), or None if it fits or nothing is known."""
    available = available_bytes() if available is None else available
    if available is None or estimate.total <= available:
        return None
    return (f"{estimate.needs} about {format_gb(estimate.total)}; this machine has {format_gb(available)} "
            f"available: {_advice(estimate, available)}")


def check_fits(estimate: Estimate, available: int | None = None) -> str | None:
    """Raise :class:`MemoryLimitError` if ``estimate`` cannot fit in the available memory.

    Returns a one-line warning when it fits but takes more than :data:`WARN_SHARE`
    of it, else None; None too when the available memory cannot be known.
    """
    available = available_bytes() if available is None else available
    message = refusal(estimate, available)
    if message is not None:
        raise MemoryLimitError(message)
    if available is None or estimate.total <= WARN_SHARE * available:
        return None
    return (f"{estimate.needs} about {format_gb(estimate.total)}, {100 * estimate.total / available:.0f}% "
            f"of the {format_gb(available)} available on this machine; other programs may slow down or fail")


def _largest(run: Run, field: str, available: int) -> int:
    """The largest value below ``run.<field>`` at which the run fits (0 if even 1 does not): needs grow with it."""
    low, high = 0, getattr(run, field) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if estimate_run(dataclasses.replace(run, **{field: middle})).total <= available:
            low = middle
        else:
            high = middle - 1
    return low


def _advice(estimate: Estimate, available: int) -> str:
    run = estimate.run
    changes = ["fewer units"] if "units" in run.levers else []
    if "batch" in run.levers and run.batch_size > 1:
        batch = _largest(run, "batch_size", available)
        if batch:
            changes.append(f"a smaller --batch-size (at most {batch} fits)")
    if "jobs" in run.levers and run.jobs > 1:
        jobs = _largest(run, "jobs", available)
        if jobs:
            changes.append(f"fewer parallel jobs (at most {jobs} fit)")
    if not changes:
        return "it does not fit even at --batch-size 1; train a smaller network"
    text = ", ".join(changes[:-1]) + (" or " if len(changes) > 1 else "") + changes[-1]
    return "use " + text
