"""What the benchmarks read from ``/proc``: a process's CPU time and RSS, each core's busy
time, which CPUs a process's threads may run on; and pinning work to cores."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE / 1e6


def machine_busy(cpu: str = "cpu") -> tuple[float, float]:
    """(busy, total) jiffies since boot of all cores (``cpu``) or one (``cpu0``), ``/proc/stat``."""
    v = _jiffies(cpu)
    return sum(v[:8]) - (v[3] + v[4]), sum(v[:8])


def machine_steal(cpu: str = "cpu") -> tuple[float, float]:
    """(steal, total) jiffies since boot: time the hypervisor gave this VM's cores to others.

    On a shared host steal makes the same work cost more CPU time (caches and cores shared
    with the neighbours), so a window with steal is not comparable with a quiet one.
    """
    v = _jiffies(cpu)
    return v[7], sum(v[:8])


def _jiffies(cpu: str) -> list[int]:
    for line in Path("/proc/stat").read_text().splitlines():
        name, *rest = line.split()
        if name == cpu:
            return [int(x) for x in rest]
    raise ValueError(f"no {cpu!r} line in /proc/stat")


def thread_cpus(pid: int) -> list[str]:
    """The distinct CPU lists the threads of ``pid`` may run on (``Cpus_allowed_list``)."""
    out = set()
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # the thread ended meanwhile
            continue
        out |= {ln.split()[1] for ln in text.splitlines() if ln.startswith("Cpus_allowed_list")}
    return sorted(out)


def repin_children(cores: set[int], skip: int) -> None:
    """Pin every thread of this process and its descendants but ``skip``'s tree to ``cores``.

    Chromium resets the affinity of some of its threads; run before each window.
    """
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    tree, grew = {os.getpid()}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in tree and p != skip} - tree
        tree |= new
        grew = bool(new)
    for pid in tree:
        for task in Path(f"/proc/{pid}/task").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task.name), cores)


@contextlib.contextmanager
def pinned(cores: set[int] | None):
    """Run the block (and every process or thread it starts) on ``cores``; None: unchanged.

    Affinity is per thread and inherited by the children a thread starts, so a server started
    inside the block, its threads, and Playwright's driver and Chromium all stay on ``cores``.
    """
    if cores is None:
        yield
        return
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)
