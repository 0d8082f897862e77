"""The worker processes of a fleet run: started, followed through their messages, paused, stopped.

`WorkerPool.started` spawns ``processes`` workers (`pitahaya.fleet.worker.run_worker`), each
with its share of the devices, and always stops them on exit (ask, drain, terminate, kill).
Each worker sends ``("status", index, versions, lag, loop_time)`` now and then,
``("paused", index, loop_time)`` when held, and ``("done", results)`` or ``("error", text)``
at the end; a worker that dies or reports an error raises `FleetError` in the parent.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pitahaya.fleet._clock import CompressedClock
from pitahaya.fleet.config import SCENE, FleetConfig, FleetError

if TYPE_CHECKING:  # ForkServerContext is not defined on Windows
    from multiprocessing.context import ForkServerContext, SpawnContext


class WorkerPool:
    """The worker processes: started, followed through their status messages, stopped."""

    def __init__(self, processes: list[BaseProcess], conns: list[Connection]) -> None:
        self._processes = processes
        self._conns = conns
        self._versions: dict[int, dict[str | None, int]] = {}
        self._lags: dict[int, float] = {}
        self._loop_times: dict[int, float] = {}

    @classmethod
    @contextmanager
    def started(
        cls,
        config: FleetConfig,
        url: str,
        token: str,
        trusted_root: bytes,
        ids: list[str],
        feeds: list[Any],
        work: Path,
        clock: CompressedClock,
    ) -> Iterator[WorkerPool]:
        from pitahaya.fleet.worker import WorkerSpec, run_worker

        if os.name == "posix":
            context: ForkServerContext | SpawnContext = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["pitahaya.fleet.worker"])
        else:
            context = multiprocessing.get_context("spawn")
        processes: list[BaseProcess] = []
        conns: list[Connection] = []
        fleet = cls(processes, conns)
        try:
            count = min(config.processes, config.devices)
            for index in range(count):
                share = range(index, config.devices, count)
                spec = WorkerSpec(
                    index=index,
                    registry_url=url,
                    token=token,
                    trusted_root=trusted_root,
                    scene=SCENE,
                    cache_root=work / "devices",
                    device_ids=tuple(ids[i] for i in share),
                    feeds=tuple(tuple(feeds[i]) for i in share),
                    clock=clock,
                    poll_interval_s=config.poll_interval_s,
                    jitter=config.jitter,
                    flush_interval_s=config.flush_interval_s,
                    idle_gap_s=config.idle_gap_s,
                    seed=config.seed,
                )
                parent_end, child_end = context.Pipe()
                process = context.Process(target=run_worker, args=(spec, child_end), name=f"pitahaya-fleet-{index}")
                process.start()
                child_end.close()
                processes.append(process)
                conns.append(parent_end)
            yield fleet
        finally:
            fleet._terminate()

    @contextmanager
    def paused(self, timeout_s: float = 60.0) -> Iterator[dict[int, float]]:
        """Hold every worker's loop; yields each loop's simulated time (see `pitahaya.fleet.worker`)."""
        for conn in self._conns:
            conn.send(("pause",))
        times: dict[int, float] = {}
        deadline = time.monotonic() + timeout_s
        try:
            while len(times) < len(self._conns):
                ready = _ready(self._conns, max(deadline - time.monotonic(), 0.0))
                if not ready:
                    raise FleetError(f"workers did not pause within {timeout_s:.0f}s")
                for conn in ready:
                    message = _receive(conn)
                    if message[0] == "paused":
                        times[message[1]] = message[2]
                    else:
                        self._take(conn, message)
            yield times
        finally:
            for conn in self._conns:
                conn.send(("resume",))

    def run_for(self, real_s: float) -> None:
        """Take the workers' messages for ``real_s`` seconds (a failed worker raises `FleetError`)."""
        deadline = time.monotonic() + real_s
        while (left := deadline - time.monotonic()) > 0:
            for conn in _ready(self._conns, left):
                self._take(conn, _receive(conn))

    def _take(self, conn: Connection, message: tuple[Any, ...]) -> dict[str, Any] | None:
        kind = message[0]
        if kind == "status":
            _, index, versions, lag, loop_time = message
            self._versions[index] = versions
            self._lags[index] = lag
            self._loop_times[index] = loop_time
            return None
        if kind == "done":
            return dict(message[1])
        raise FleetError(str(message[1]))

    def loop_time(self) -> float:
        """Simulated time every worker's loop has reached (the most behind one's), as last said."""
        if len(self._loop_times) < len(self._conns):
            return 0.0
        return min(self._loop_times.values())

    def run_until(self, simulated: float, timeout_s: float) -> None:
        """Take messages until every worker's loop reached ``simulated`` (or ``timeout_s`` real passed)."""
        deadline = time.monotonic() + timeout_s
        while self.loop_time() < simulated and time.monotonic() < deadline:
            self.run_for(0.2)

    @property
    def lag_s(self) -> float:
        """How late (real seconds) the most behind worker ran its events lately."""
        return max(self._lags.values(), default=0.0)

    def versions(self) -> Counter[str | None]:
        """Devices per version they run, as the workers last said."""
        total: Counter[str | None] = Counter()
        for versions in self._versions.values():
            total.update(versions)
        return total

    def stop(self, timeout_s: float = 120.0) -> list[dict[str, Any]]:
        """Ask every worker to stop; their results (each sends its last telemetry first)."""
        for conn in self._conns:
            conn.send(("stop",))
        results: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        pending = list(self._conns)
        while pending:
            ready = _ready(pending, max(deadline - time.monotonic(), 0.0))
            if not ready:
                raise FleetError(f"{len(pending)} worker(s) did not stop within {timeout_s:.0f}s")
            for conn in ready:
                if not _readable(conn):
                    raise FleetError("a worker process died while stopping")
                result = self._take(conn, conn.recv())
                if result is not None:
                    results[result["index"]] = result
                    pending.remove(conn)
        for process in self._processes:
            process.join(10)
        return [results[i] for i in sorted(results)]

    def _terminate(self, grace_s: float = 15.0) -> None:
        """Stop whatever still runs: ask, read what the workers send meanwhile, then terminate and kill."""
        for conn in self._conns:
            try:
                conn.send(("stop",))
            except OSError:
                pass
        deadline = time.monotonic() + grace_s
        open_conns = list(self._conns)
        while open_conns and any(p.is_alive() for p in self._processes) and time.monotonic() < deadline:
            for conn in _ready(open_conns, 0.2):
                try:
                    conn.recv()  # drained so that no worker blocks on a full pipe
                except (EOFError, OSError):
                    open_conns.remove(conn)
        for process in self._processes:
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                process.terminate()
                process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
        for conn in self._conns:
            conn.close()


def _ready(conns: list[Connection], timeout: float) -> list[Connection]:
    """The pipes of ``conns`` with a message or an end to read (`wait` returns some of what it is given)."""
    return cast("list[Connection]", wait(conns, timeout=timeout))


def _receive(conn: Connection) -> tuple[Any, ...]:
    """The worker's next message; a closed pipe reads as the worker's death."""
    message: tuple[Any, ...] = conn.recv() if _readable(conn) else ("error", "a worker process died")
    return message


def _readable(conn: Connection) -> bool:
    try:
        return conn.poll()
    except (EOFError, OSError):
        return False
