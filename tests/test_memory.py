"""The memory check: what a run needs, what the machine has, and the one-line refusal before any allocation.

Available memory is faked (``memory.available_bytes`` monkeypatched, or a fake /proc and /sys in
tmp_path); no test allocates anything large, even if the check it tests were broken: the two
that run a real refusal in a subprocess cap its address space first.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bptrain.app import memory
from bptrain.app.memory import DataShape, MemoryLimitError, Part
from bptrain.core.network import MLP
from bptrain.data.loader import load_dataset
from bptrain.data.model_io import save_model

from conftest import assert_clean_error, invoke

GB = 10**9


# ====================================================================== what the machine has
def fake_root(tmp_path: Path, files: dict) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


MEMINFO = "MemTotal:       24684096 kB\nMemFree:        1000000 kB\nMemAvailable:   21386718 kB\n"


def test_meminfo_alone(tmp_path):
    root = fake_root(tmp_path, {"proc/meminfo": MEMINFO, "proc/self/cgroup": "0::/\n"})
    assert memory.available_bytes(root) == 21386718 * 1024


def test_cgroup_v2_limit_of_a_parent_group_is_lower(tmp_path):
    """The leaf has no limit, its parent does: what is left there counts, inactive file pages as free."""
    root = fake_root(tmp_path, {
        "proc/meminfo": MEMINFO,
        "proc/self/cgroup": "0::/user.slice/session.scope\n",
        "sys/fs/cgroup/cgroup.controllers": "cpu memory\n",
        "sys/fs/cgroup/user.slice/session.scope/memory.max": "max\n",
        "sys/fs/cgroup/user.slice/session.scope/memory.current": "100000000\n",
        "sys/fs/cgroup/user.slice/memory.max": "2000000000\n",
        "sys/fs/cgroup/user.slice/memory.current": "1500000000\n",
        "sys/fs/cgroup/user.slice/memory.stat": "anon 1000000\ninactive_file 100000000\nactive_file 5\n",
    })
    assert memory.available_bytes(root) == 2_000_000_000 - 1_500_000_000 + 100_000_000


def test_cgroup_v2_container_at_the_mount_root(tmp_path):
    root = fake_root(tmp_path, {
        "proc/meminfo": MEMINFO,
        "proc/self/cgroup": "0::/\n",
        "sys/fs/cgroup/cgroup.controllers": "memory\n",
        "sys/fs/cgroup/memory.max": "4000000000\n",
        "sys/fs/cgroup/memory.current": "3000000000\n",
    })
    assert memory.available_bytes(root) == 1_000_000_000


def test_cgroup_v2_without_a_limit_leaves_meminfo(tmp_path):
    root = fake_root(tmp_path, {
        "proc/meminfo": MEMINFO,
        "proc/self/cgroup": "0::/\n",
        "sys/fs/cgroup/cgroup.controllers": "memory\n",
        "sys/fs/cgroup/memory.max": "max\n",
        "sys/fs/cgroup/memory.current": "3000000000\n",
    })
    assert memory.available_bytes(root) == 21386718 * 1024


def test_cgroup_v1_as_a_container_sees_it(tmp_path):
    """/proc/self/cgroup names the host's path, which the container's mount does not have: the mount is the group."""
    root = fake_root(tmp_path, {
        "proc/meminfo": MEMINFO,
        "proc/self/cgroup": "9:pids:/docker/abc\n4:memory:/docker/abc\n0::/\n",
        "sys/fs/cgroup/memory/memory.limit_in_bytes": "1000000000\n",
        "sys/fs/cgroup/memory/memory.usage_in_bytes": "400000000\n",
        "sys/fs/cgroup/memory/memory.stat": "cache 5\nhierarchical_memory_limit 9223372036854771712\n"
                                            "total_inactive_file 100000000\n",
    })
    assert memory.available_bytes(root) == 1_000_000_000 - 400_000_000 + 100_000_000


def test_cgroup_v1_unlimited_and_hierarchical_limits(tmp_path):
    files = {
        "proc/meminfo": MEMINFO,
        "proc/self/cgroup": "4:memory:/jobs/one\n",
        "sys/fs/cgroup/memory/jobs/one/memory.limit_in_bytes": "9223372036854771712\n",
        "sys/fs/cgroup/memory/jobs/one/memory.usage_in_bytes": "300000000\n",
        "sys/fs/cgroup/memory/jobs/one/memory.stat": "hierarchical_memory_limit 9223372036854771712\n",
    }
    assert memory.available_bytes(fake_root(tmp_path, files)) == 21386718 * 1024
    # a limit set on the parent shows in the child's hierarchical_memory_limit
    files["sys/fs/cgroup/memory/jobs/one/memory.stat"] = "hierarchical_memory_limit 800000000\n"
    assert memory.available_bytes(fake_root(tmp_path, files)) == 500_000_000


def test_nothing_known_is_none(tmp_path):
    assert memory.available_bytes(tmp_path) is None
    fake_root(tmp_path, {"proc/meminfo": "MemTotal: 5 kB\n", "proc/self/cgroup": "garbage\n"})
    assert memory.available_bytes(tmp_path) is None


def test_this_machine_says_something_plausible():
    available = memory.available_bytes()
    assert available is None or 0 <= available < 1 << 50


# ====================================================================== the estimate
def test_784_3000000_10_needs_far_more_than_this_machine_has():
    """784-3000000-10: building it alone (float64 draw, then float32) is ~28.6 GB; training needs much more."""
    estimate = memory.estimate((784, 3_000_000, 10), 32)
    params = 784 * 3_000_000 + 3_000_000 + 3_000_000 * 10 + 10
    build = sum(p.bytes for p in estimate.phases["building the network"])
    assert build == params * 12 + DataShape.mnist().bytes
    assert estimate.phase == "training" and estimate.total > 200 * GB
    parts = {p.name: p.bytes for p in estimate.parts}
    assert parts["parameters"] == parts["optimizer state"] == params * 4  # momentum: one velocity
    assert parts["evaluation chunk"] > 8192 * 3_000_000 * 4  # the evaluation workspace is the largest part


def test_the_refusal_is_one_line_naming_need_availability_and_change():
    estimate = memory.estimate((784, 3_000_000, 10), 32)
    with pytest.raises(MemoryLimitError) as caught:
        memory.check_fits(estimate, available=21_900_000_000)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("784-3000000-10 at batch 32 needs about ")
    assert f"needs about {estimate.total / 1e9:.1f} GB; this machine has 21.9 GB available: use fewer units" in message


def test_a_smaller_batch_size_is_named_when_it_would_fit():
    run = memory.estimate((784, 20_000, 10), 50_000)  # the workspace of 50,000 rows is most of it
    available = memory.estimate((784, 20_000, 10), 2_000).total + 1
    message = memory.refusal(run, available)
    assert "use fewer units or a smaller --batch-size (at most " in message
    most = int(message.split("at most ")[1].split()[0])
    assert memory.estimate((784, 20_000, 10), most).total <= available < memory.estimate(
        (784, 20_000, 10), most + 1).total
    assert most >= 2_000


def test_warns_above_80_percent_and_is_silent_below():
    estimate = memory.estimate((784, 128, 64, 10), 32)
    assert memory.check_fits(estimate, available=2 * estimate.total) is None
    warning = memory.check_fits(estimate, available=int(estimate.total / 0.9))
    assert warning is not None and "\n" not in warning
    assert "784-128-64-10 at batch 32 needs about" in warning and "90%" in warning
    with pytest.raises(MemoryLimitError):
        memory.check_fits(estimate, available=estimate.total - 1)


def test_unknown_available_memory_says_nothing(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    assert memory.check_fits(memory.estimate((784, 3_000_000, 10), 32)) is None
    assert memory.refusal(memory.estimate((784, 3_000_000, 10), 32)) is None


def test_parts_follow_the_settings():
    def parts(**settings):
        return {p.name: p.bytes for p in memory.estimate((784, 100, 10), 32, **settings).phases["training"]}

    params = 784 * 100 + 100 + 100 * 10 + 10
    assert parts(momentum=0)["optimizer state"] == 0
    assert parts(optimizer="adam")["optimizer state"] == 4 * params * 4  # m, v, gradient and step buffers
    assert parts(engine="reference", optimizer="adam")["optimizer state"] == 2 * params * 4  # m and v
    assert "distortion buffers" in parts(distorts=True) and "distortion buffers" not in parts()
    float64 = parts(dtype="float64")
    assert float64["parameters"] == params * 8
    assert float64["epoch buffers"] > 2 * parts()["epoch buffers"]  # float64 buffers and a converted copy
    assert parts(augment=1)["epoch buffers"] == parts()["epoch buffers"] + 4096 * 784 * 4
    # the reference engine forms its gradients and temporaries every step: more than the fast workspace
    # the reference engine's arrays come and go: its largest moment counts, here a step's or the evaluation's
    reference = parts(engine="reference")
    assert max(reference.get("per-step arrays", 0), reference.get("evaluation chunk", 0)) > 0
    assert "per-batch workspace" in parts() and "per-batch workspace" not in reference
    with pytest.raises(ValueError, match="engine"):
        memory.estimate((784, 100, 10), 32, engine="gpu")


def test_the_batch_is_clamped_to_the_training_set():
    data = DataShape(600, 150, 150, 20)
    assert memory.estimate((20, 8, 3), 10**9, data=data).total == memory.estimate((20, 8, 3), 600, data=data).total


def test_data_shape_of_a_loaded_data_set(synthetic_data, blobs):
    shape = DataShape.of(load_dataset(synthetic_data))
    assert (shape.n_train, shape.n_validation, shape.n_test, shape.n_features) == (600, 150, 150, 20)
    assert shape.bytes == sum(x.nbytes + y.nbytes for x, y in blobs)
    assert DataShape.mnist().bytes == 70_000 * (784 * 4 + 8)


def test_sweep_counts_its_parallel_runs_together():
    single = memory.estimate((784, 2000, 10), 32)
    four = memory.sweep_estimate(single, 4)
    assert four.total == 4 * single.total and four.label.startswith("4 parallel runs of 784-2000-10")
    message = memory.refusal(four, available=2 * single.total + 1)
    assert message.endswith("or fewer parallel jobs (at most 2 fit)")


def test_server_helper_counts_only_what_a_run_adds(synthetic_data):
    """A server already holds its data and interpreter: they are in what the machine reports as used."""
    data = DataShape.of(load_dataset(synthetic_data))
    served = memory.estimate((20, 50, 3), 32, data=data, in_process=True, kept_snapshots=100)
    alone = memory.estimate((20, 50, 3), 32, data=data)
    names = [p.name for p in served.parts]
    assert "data set" not in names and served.baseline == 0
    assert dict((p.name, p.bytes) for p in served.parts)["kept snapshots"] == 100 * (20 * 50 + 50 + 50 * 3 + 3) * 4
    assert memory.refusal(served, available=served.total) is None
    assert "needs about" in memory.refusal(served, available=served.total - 1)
    assert alone.total > served.total - 100 * 1353 * 4


def test_gradcheck_and_bench_estimates():
    check = memory.gradcheck_estimate((784, 4000, 10), 64)
    assert check.run.itemsize == 8 and check.label == "gradient check of 784-4000-10 at batch 64"
    bench = memory.bench_estimate((784, 1000, 10), (10, 1000), settings=[object(), object()])
    assert bench.run.batch_size == 1000 and bench.run.models == 4  # a setting's network per batch size, two alive
    assert "GEMM peak measurement" in [p.name for p in bench.parts]


def test_describe_lists_the_parts():
    text = memory.estimate((784, 3_000_000, 10), 32).describe()
    assert "evaluation chunk" in text and "margin 10%" in text and text.splitlines()[0].endswith("(training):")
    assert memory.format_gb(28_312_345_678) == "28.3 GB" and memory.format_gb(530_000_000) == "530 MB"


# ====================================================================== model files
def test_model_file_layout_from_the_header(tmp_path):
    path = save_model(MLP((20, 8, 5, 3), seed=0), tmp_path / "m.npy")
    assert memory.model_file_layout(path) == ((20, 8, 5, 3), 4)
    path64 = save_model(MLP((20, 8, 3), dtype=np.float64), tmp_path / "m64.npy")
    assert memory.model_file_layout(path64) == ((20, 8, 3), 8)
    (tmp_path / "plain.npy").write_bytes(b"")
    np.save(tmp_path / "array.npy", np.zeros(3))
    for other in ("plain.npy", "array.npy", "missing.npy"):
        assert memory.model_file_layout(tmp_path / other) is None


# ====================================================================== the commands
@pytest.fixture
def tiny_memory(monkeypatch):
    """The machine has 10 MB available: every run is refused (the baseline alone is more)."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 10 * 10**6)


def assert_refused(result, network_label: str) -> str:
    line = assert_clean_error(result, exit_code=1)
    assert f"Error: {network_label} needs about " in line and "; this machine has 10 MB available: " in line, line
    return line


def test_train_is_refused_in_one_line_and_writes_nothing(runner, tmp_path, synthetic_data, tiny_memory):
    out = tmp_path / "m.npy"
    result = invoke(runner, "train", "--data", synthetic_data, "--out", out, "--sizes", "20,50000,3")
    assert_refused(result, "20-50000-3 at batch 32")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic.pkl.gz"]  # no model, no history


def test_a_config_file_is_checked_the_same_way(runner, tmp_path, synthetic_data, tiny_memory):
    config = tmp_path / "wide.toml"
    config.write_text(f'sizes = [20, 50000, 3]\nbatch_size = 600\ndata = "{synthetic_data}"\nout = "{tmp_path}/c.npy"\n')
    result = invoke(runner, "train", "--config", config)
    assert_refused(result, "20-50000-3 at batch 600")
    assert not (tmp_path / "c.npy").exists() and not (tmp_path / "c.history.json").exists()


def test_resume_is_checked_with_the_files_sizes(runner, tmp_path, synthetic_data, monkeypatch):
    first = tmp_path / "first.npy"
    save_model(MLP((20, 30, 3), seed=0), first)
    before = first.read_bytes()
    seen = []
    check_fits = memory.check_fits

    def spy(estimate, available=None):
        seen.append(estimate)
        return check_fits(estimate, available)

    monkeypatch.setattr(memory, "check_fits", spy)
    monkeypatch.setattr(memory, "available_bytes", lambda: 10 * 10**6)
    result = invoke(runner, "train", "--data", synthetic_data, "--resume", first, "--out", first)
    line = assert_refused(result, "20-30-3 at batch 32")
    assert seen[0].run.sizes == (20, 30, 3) and seen[0].run.build == "file"
    assert "fewer units" not in line  # a resumed network keeps its units
    assert first.read_bytes() == before and not (tmp_path / "first.history.json").exists()


def test_gradcheck_and_bench_are_refused(runner, tmp_path, tiny_memory):
    assert_refused(invoke(runner, "gradcheck", "--sizes", "784,30,10"), "gradient check of 784-30-10 at batch 8")
    result = invoke(runner, "bench", "--sizes", "784,16,10", "--data", tmp_path / "none", "--batch-size", "64")
    assert "no data at" in result.stderr  # a data error still comes first
    result = invoke(runner, "bench", "--sizes", "784,16,10", "--batch-size", "64", "--samples", "100")
    assert_refused(result, "bench of 784-16-10 at batch 64")


def test_a_run_that_fits_tightly_warns_and_trains(runner, tmp_path, synthetic_data, monkeypatch):
    seen = []
    check_fits = memory.check_fits
    monkeypatch.setattr(memory, "check_fits", lambda e, available=None: seen.append(e) or check_fits(e, available))
    args = ["train", "--data", synthetic_data, "--sizes", "20,8,3", "--epochs", "1", "-q"]
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    quiet = invoke(runner, *args, "--out", tmp_path / "a.npy")
    assert quiet.exit_code == 0 and quiet.stderr == ""  # nothing known: nothing said
    monkeypatch.setattr(memory, "available_bytes", lambda: int(seen[0].total / 0.85))
    result = invoke(runner, *args, "--out", tmp_path / "b.npy")
    assert result.exit_code == 0 and (tmp_path / "b.npy").exists()
    warnings = result.stderr.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: 20-8-3 at batch 32 needs about ")
    assert "85% of the" in warnings[0]


def _at_most_8_gb_of_address_space():
    """Were the check broken, the child's large allocations fail (MemoryError) instead of filling the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (8 * GB, 8 * GB))


def _refused_in_a_subprocess(args, tmp_path, limit_seconds=30.0):
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "bptrain", *map(str, args), "--out", tmp_path / "big.npy"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            preexec_fn=_at_most_8_gb_of_address_space)
    seconds = time.perf_counter() - started
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "needs about" in lines[0], result.stderr
    assert not (tmp_path / "big.npy").exists() and not (tmp_path / "big.history.json").exists()
    assert seconds < limit_seconds
    return lines[0]


def _skip_if_it_would_fit(estimate):
    available = memory.available_bytes()
    if available is None or estimate.total <= available:
        pytest.skip("this machine could hold the run: refusing it cannot be tested here without allocating")


def test_an_absurd_network_is_refused_in_seconds(tmp_path, synthetic_data):
    """The real check, in a real process, on this machine's real available memory (nothing faked)."""
    data = DataShape.of(load_dataset(synthetic_data))
    _skip_if_it_would_fit(memory.estimate((20, 300_000_000, 3), 32, data=data))
    line = _refused_in_a_subprocess(["train", "--data", synthetic_data, "--sizes", "20,300000000,3"], tmp_path)
    assert "20-300000000-3 at batch 32" in line


def test_784_3000000_10_on_mnist_is_refused_in_seconds(tmp_path, real_mnist_path):
    """`bptrain train --sizes 784,3000000,10` on the real MNIST: a few zeros too many."""
    _skip_if_it_would_fit(memory.estimate((784, 3_000_000, 10), 32))
    line = _refused_in_a_subprocess(["train", "--data", real_mnist_path, "--sizes", "784,3000000,10"], tmp_path)
    assert "784-3000000-10 at batch 32 needs about" in line and line.endswith("use fewer units")


def test_part_is_plain_data():
    assert Part("x", 3).bytes == 3
