"""Processes known by pid *and* start time, so a recycled pid is never signalled.

``pitahaya down`` may run days after ``pitahaya up``; by then a pid in the state file can
belong to an unrelated process. A `ProcessRecord` keeps the start time the kernel gave the
process (``/proc/<pid>/stat``, clock ticks since boot) and every check compares it, so only
the very process that was recorded counts as running or is signalled. Linux only (``/proc``).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessRecord:
    """One process: its pid and its start time in clock ticks since boot."""

    pid: int
    started: int


@dataclass(frozen=True)
class _Stat:
    state: str
    pgid: int
    started: int


def _stat(pid: int) -> _Stat | None:
    """The fields of ``/proc/<pid>/stat`` read here, or None when the pid does not exist."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return _Stat(state=fields[0], pgid=int(fields[2]), started=int(fields[19]))


def record(pid: int) -> ProcessRecord | None:
    """The running process ``pid`` as a record, or None if it is gone."""
    stat = _stat(pid)
    return None if stat is None or stat.state == "Z" else ProcessRecord(pid, stat.started)


def is_running(process: ProcessRecord) -> bool:
    """Whether the recorded process still runs: same pid, same start time, not a zombie
    (an exited child nobody reaped yet still has a pid, but does nothing)."""
    return record(process.pid) == process


def group(pgid: int) -> list[ProcessRecord]:
    """The running processes of process group ``pgid`` (a detached server and its workers)."""
    members = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat.pgid == pgid and stat.state != "Z":
                members.append(ProcessRecord(int(entry.name), stat.started))
    return members


def stop(processes: Iterable[ProcessRecord], *, timeout_s: float) -> list[ProcessRecord]:
    """SIGTERM the processes still running, SIGKILL those left after ``timeout_s``; return any
    still running after that (a process stuck in the kernel), which the caller reports."""
    left = [process for process in processes if is_running(process)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for process in left:
            if is_running(process):  # checked again right before signalling: the pid may be new
                try:
                    os.kill(process.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout_s
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = [process for process in left if is_running(process)]
        if not left:
            break
    return left
