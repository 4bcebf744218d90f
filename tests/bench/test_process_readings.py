"""The benchmark harness's readings of a process from /proc (bench.webhook)."""

from __future__ import annotations

import os

from bench.webhook import memory_mib, stat_cpu_seconds, status_memory_mib

STATUS = """Name:\tpython
VmPeak:\t  500000 kB
VmHWM:\t  153600 kB
VmRSS:\t  102400 kB
Threads:\t3
"""


def test_memory_is_read_from_vmrss_and_vmhwm_in_mib() -> None:
    assert status_memory_mib(STATUS) == {"rss": 100.0, "peak": 150.0}


def test_memory_of_a_live_process() -> None:
    reading = memory_mib(os.getpid())
    assert 0 < reading["rss"] <= reading["peak"]


def test_cpu_seconds_skip_a_command_name_with_spaces_and_parentheses() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    fields = ["S", *["0"] * 10, str(3 * ticks), str(ticks), *["0"] * 30]
    stat = "4242 (uvicorn (worker) 1) " + " ".join(fields)
    assert stat_cpu_seconds(stat) == 4.0
