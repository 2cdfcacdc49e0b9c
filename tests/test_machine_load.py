"""What other processes use of the cores, from /proc/stat less this process's own CPU time."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bptrain.fast.threads import OtherProcesses

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def write_stat(path, busy_ticks, idle_ticks=1000):
    """A /proc/stat with two cores, each busy ``busy_ticks[i]`` ticks (split over user, system and steal)."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    for core, busy in enumerate(busy_ticks):
        user, system, steal = busy // 2, busy // 4, busy - busy // 2 - busy // 4
        lines.append(f"cpu{core} {user} 0 {system} {idle_ticks} 7 0 0 {steal} {user} 0")
    lines.append("intr 1 2 3")
    path.write_text("\n".join(lines) + "\n")


def test_other_processes_busy_time_is_the_cores_busy_time_less_this_processes(tmp_path):
    stat, clock, own = tmp_path / "stat", [0.0], [0.0]
    write_stat(stat, [0, 0])
    load = OtherProcesses(str(stat), process_seconds=lambda: own[0], clock=lambda: clock[0], cores={0, 1})
    clock[0] = 0.05
    assert load.busy() is None  # too short a window to say
    clock[0], own[0] = 1.0, 0.5
    write_stat(stat, [TICK, TICK // 2])  # 1.5 core-seconds busy in 1 s, half a second of them ours
    assert load.busy() == pytest.approx(1.0)
    clock[0] = 1.01
    assert load.busy() == pytest.approx(1.0)  # too short a window: the last one's answer
    clock[0], own[0] = 2.0, 2.0
    write_stat(stat, [2 * TICK, TICK])  # all of the next second's busy time (1.5 core-seconds) is ours
    assert load.busy() == pytest.approx(0.0)


def test_only_the_cores_this_process_may_use_count(tmp_path):
    stat, clock = tmp_path / "stat", [0.0]
    write_stat(stat, [0, 0])
    load = OtherProcesses(str(stat), process_seconds=lambda: 0.0, clock=lambda: clock[0], cores={1})
    clock[0] = 1.0
    write_stat(stat, [TICK, 0])  # core 0 busy: not one of ours
    assert load.busy() == pytest.approx(0.0)


@pytest.mark.parametrize("content", [None, "cpu0 not numbers\n", "intr 1 2\n"])
def test_a_system_that_does_not_say_gives_no_answer(tmp_path, content):
    stat = tmp_path / "stat"
    if content is not None:
        stat.write_text(content)
    clock = [0.0]
    load = OtherProcesses(str(stat), process_seconds=lambda: 0.0, clock=lambda: clock[0])
    clock[0] = 1.0
    assert load.busy() is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="no /proc/stat: the system does not report core load")
def test_a_spinning_process_is_seen():
    load = OtherProcesses()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        seen = load.busy()
    finally:
        spinner.kill()
        spinner.wait()
    assert seen is not None and seen > 0.5  # most of a core, however busy the machine is otherwise
