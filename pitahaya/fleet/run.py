"""Run a fleet against a real registry: the workflow behind ``pitahaya fleet simulate``.

1. **Packages** (`pitahaya.fleet.packages`): one small model trained once, packaged as the
   stable ``1.0.0``; candidates ``1.1.0``, ``1.2.0``, ... (``bad-canary``: a misbehaving one).
2. **Registry**: a child ``pitahaya serve`` on 127.0.0.1 with its own data folder, gates
   evaluated every second, rate limits raised (every simulated device shares one address and
   one client token), MLflow forwarding off. Tokens are made for the devices (client), the
   publisher and the operator; the packages are pushed (the registry's pre-flight loads each
   one) and ``1.0.0`` is released to 100 %.
3. **Fleet** (`pitahaya.fleet.worker`): ``processes`` worker processes, each driving its share
   of the devices from one scheduler loop on the compressed clock. Once every device runs
   ``1.0.0`` and has had a telemetry interval to report it, the candidate is released: at 100 %
   (``good``) or behind a quality gate (``bad-canary``, or ``--gate``, or ``--rollouts K``).
4. **Watch**: the run follows the devices' versions and ``rollout_status`` until the release is
   adopted everywhere (or the gate completed), or the gate paused or rolled it back and every
   device left the version, or ``rollout_timeout_s`` passed. With ``rollouts`` K > 1 the next
   candidate is released after each one, to count the gate's false alarms.
5. **Stop**: the workers send their last telemetry and their notes; the registry stops. Every
   child is stopped on errors and Ctrl-C too.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from pitahaya.fleet import packages as pkgs
from pitahaya.fleet import registry_metrics
from pitahaya.fleet._clock import CompressedClock
from pitahaya.fleet.report import adoption_offsets, exposure, quantile, rounded, time_to_share

SCENARIOS = ("good", "bad-canary")
SCENE = "watch_time"
#: Registry settings of a fleet run (see the module docstring).
REGISTRY_SETTINGS = {
    "PITAHAYA_GATE_INTERVAL_SECONDS": "1",
    "PITAHAYA_RATE_LIMIT_PER_TOKEN": "100000000/minute",
    "PITAHAYA_RATE_LIMIT_PER_IP": "100000000/minute",
    "PITAHAYA_MLFLOW_FORWARDING": "false",
    "PITAHAYA_LOG_LEVEL": "WARNING",
}

Progress = Callable[[str, float], None]


class FleetError(RuntimeError):
    """The fleet could not run (a worker failed, the registry refused a step, a phase timed out)."""


@dataclass(frozen=True)
class FleetConfig:
    """One fleet run. Times are simulated seconds unless the name says real.

    Attributes:
        devices: Simulated devices, each a real `Runtime` with its own cache and reporter.
        scenario: ``good`` or ``bad-canary``.
        processes: Worker processes sharing the devices.
        poll_interval_s: Time between a device's update checks (``refresh_interval_s``).
        jitter: ``refresh_jitter``: each delay scaled by a factor in [1 - jitter, 1 + jitter].
        compression: Simulated seconds per real second.
        flush_interval_s: Time between a device's telemetry batches.
        idle_gap_s: Mean pause of a user between sittings (0: views back to back).
        seed: Seed of the model, the users, start times and jitter.
        rollouts: Candidates released one after the other (``good`` only).
        gate: Gate spec (dict), a preset name, or None for the scenario's default: none for a
            single ``good`` release (100 % at once), else `default_gate`.
        canary_percent: First step of the default gate.
        bad_mode: How the bad canary misbehaves (`pitahaya.fleet.packages.BAD_MODES`): ``far-off``
            predictions (default) or ``fallback`` on a share of its calls.
        registry_workers: Worker processes of the registry.
        rollout_timeout_real_s: Longest real time one rollout is watched.
        data_dir: Project data folder; the run works in ``<data_dir>/fleet``.
        scene_path: The scene to train and package.
        package: A built package of the scene to release as the stable version (re-versioned
            ``1.0.0``) instead of training one.
    """

    devices: int = 100
    scenario: str = "good"
    processes: int = 2
    poll_interval_s: float = 600.0
    jitter: float = 0.1
    compression: float = 20.0
    flush_interval_s: float = 300.0
    idle_gap_s: float = 600.0
    seed: int = 0
    rollouts: int = 1
    gate: dict[str, Any] | str | None = None
    canary_percent: float = 5.0
    bad_mode: str = "far-off"
    registry_workers: int = 1
    rollout_timeout_real_s: float = 300.0
    data_dir: Path = Path(".pitahaya")
    scene_path: Path | None = None
    package: Path | None = None

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, got {self.scenario!r}")
        if self.devices < 1 or self.processes < 1 or self.rollouts < 1:
            raise ValueError("devices, processes and rollouts must be at least 1")
        if self.scenario == "bad-canary" and self.rollouts != 1:
            raise ValueError("--rollouts is for the good scenario (false alarms of the gate)")
        if not (self.poll_interval_s > 0 and self.compression > 0 and self.flush_interval_s > 0):
            raise ValueError("poll interval, compression and flush interval must be positive")
        if not 0 <= self.jitter < 1 or self.idle_gap_s < 0:
            raise ValueError("jitter must be in [0, 1) and the idle gap >= 0")
        if not 0 < self.canary_percent <= 100:
            raise ValueError("canary percent must be in (0, 100]")
        if self.bad_mode not in pkgs.BAD_MODES:
            raise ValueError(f"bad mode must be one of {', '.join(pkgs.BAD_MODES)}")

    @property
    def longest_poll_delay_s(self) -> float:
        """The longest time between two checks of a device: interval x (1 + jitter)."""
        return self.poll_interval_s * (1.0 + self.jitter)

    def gate_spec(self) -> dict[str, Any] | None:
        """The gate sent with each candidate's release (None: released at 100 % at once)."""
        if isinstance(self.gate, str):
            return {"preset": self.gate}
        if self.gate is not None:
            return dict(self.gate)
        if self.scenario == "good" and self.rollouts == 1:
            return None
        return default_gate(self.canary_percent)


def default_gate(canary_percent: float) -> dict[str, Any]:
    """The ``fast`` preset starting at ``canary_percent``; no minimum time per step (the clock is compressed)."""
    later = [step for step in (25.0, 100.0) if step > canary_percent]
    return {"preset": "fast", "steps": [canary_percent, *later], "min_step_seconds": 0, "on_fail": "pause"}


def bucket_share(device_ids: list[str], percent: float) -> float:
    """Share of these devices whose rollout bucket a release at ``percent`` reaches."""
    from pitahaya.client_runtime import rollout_bucket
    from pitahaya.client_runtime.releases import BUCKETS

    limit = percent * BUCKETS / 100.0
    return sum(rollout_bucket(d, SCENE) < limit for d in device_ids) / len(device_ids)


@dataclass
class _Rollout:
    version: str
    released_at_by_worker: dict[int, float]  # on each worker's loop (behind the clock when it lags)
    real_started: float
    released_wall: float
    bad: bool
    outcome: str = "timeout"
    gate: dict[str, Any] | None = None
    paused_at: float | None = None  # the loops' time when the run saw the gate stop the rollout
    paused_after_real_s: float | None = None  # from the release to the gate's audited pause or rollback
    lag_at_release_real_s: float = 0.0
    real_s: float = 0.0

    @property
    def released_at(self) -> float:
        """The release on the loops' time (the most behind loop's)."""
        return min(self.released_at_by_worker.values())


def simulate_fleet(config: FleetConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the fleet and return the report (see `pitahaya.fleet` for its keys).

    Raises:
        FleetError: a worker failed, the registry refused a step, or the fleet never got ready.
        pitahaya.registry.RegistryClientError: the registry refused a push or release.
    """
    from pitahaya.cli._common import DEFAULT_SCENE
    from pitahaya.cli._server import registry_process
    from pitahaya.client_runtime import Scene
    from pitahaya.registry import RegistryClient

    from pitahaya.fleet.feeds import device_feeds, device_id

    report_progress: Progress = progress or (lambda stage, fraction: None)
    started = time.monotonic()
    work = config.data_dir / "fleet"
    for stale in ("registry", "devices"):
        shutil.rmtree(work / stale, ignore_errors=True)
    scene_path = config.scene_path or DEFAULT_SCENE
    scene = Scene.load(scene_path)

    if config.package is not None:
        stable = pkgs.with_version(config.package.read_bytes(), pkgs.STABLE_VERSION)
    else:
        stable = pkgs.stable_package(work, scene_path, seed=config.seed, progress=report_progress)
    candidates: list[tuple[str, bytes, bool]] = []
    for k in range(1, config.rollouts + 1):
        version = pkgs.candidate_version(k)
        if config.scenario == "bad-canary":
            source = pkgs.bad_feature_source(scene.feature_source, config.bad_mode)
            candidates.append((version, pkgs.with_version(stable, version, feature_source=source), True))
        else:
            candidates.append((version, pkgs.with_version(stable, version), False))
    report_progress("users' views", 0.0)
    feeds = device_feeds(config.devices, seed=config.seed)
    ids = [device_id(i) for i in range(config.devices)]
    report_progress("users' views", 1.0)
    built_s = time.monotonic() - started

    admin = secrets.token_urlsafe(24)
    gate = config.gate_spec()
    with (
        registry_process(work / "registry", admin, env=REGISTRY_SETTINGS, workers=config.registry_workers) as url,
        RegistryClient(url, token=admin) as admin_client,
    ):
        report_progress("registry: push + release", 0.0)
        client_token = admin_client.create_token("fleet-devices", "client")["secret"]
        publisher = RegistryClient(url, token=admin_client.create_token("fleet-publisher", "publisher")["secret"])
        operator = RegistryClient(url, token=admin_client.create_token("fleet-operator", "operator")["secret"])
        with publisher:
            for archive in (stable, *(archive for _, archive, _ in candidates)):
                publisher.push(archive)
        operator.create_release(SCENE, pkgs.STABLE_VERSION, rollout_percent=100.0)
        trusted_root = operator.root_metadata()
        report_progress("registry: push + release", 1.0)

        clock = CompressedClock.started(config.compression)
        before = registry_metrics.scrape(url)
        with operator, _Fleet.started(config, url, client_token, trusted_root, ids, feeds, work, clock) as fleet:
            fleet_started = time.monotonic()
            _wait_for_stable(fleet, config, report_progress)
            # Every device reports the stable version at least once before the release.
            fleet.run_until(fleet.loop_time() + config.flush_interval_s, timeout_s=config.rollout_timeout_real_s)
            rollouts = []
            for index, (version, _, bad) in enumerate(candidates):
                report_progress(f"rollout {version}", 0.0)
                rollouts.append(_roll_out(fleet, operator, clock, config, version, bad, gate))
                report_progress(f"rollout {version}", 1.0 if index + 1 < len(candidates) else 0.99)
            effective = fleet.loop_time() / max(time.monotonic() - clock.start_monotonic, 1e-9)
            results = fleet.stop()
            fleet_real_s = time.monotonic() - fleet_started
        after = registry_metrics.scrape(url)
        report_progress(f"rollout {candidates[-1][0]}", 1.0)

    return _report(
        config,
        ids=ids,
        gate=gate,
        rollouts=rollouts,
        results=results,
        registry=registry_metrics.delta(before, after),
        real={"total": time.monotonic() - started, "build": built_s, "fleet": fleet_real_s},
        effective_compression=effective,
    )


def _wait_for_stable(fleet: _Fleet, config: FleetConfig, progress: Progress) -> None:
    """Run until every device runs the stable version (first checks: within one poll interval)."""
    deadline = time.monotonic() + max(config.rollout_timeout_real_s, 60.0)
    progress("devices install 1.0.0", 0.0)
    while True:
        fleet.run_for(0.5)
        on = fleet.versions().get(pkgs.STABLE_VERSION, 0)
        progress("devices install 1.0.0", on / config.devices)
        if on == config.devices:
            return
        if time.monotonic() > deadline:
            raise FleetError(f"only {on} of {config.devices} devices installed {pkgs.STABLE_VERSION} in time")


def _roll_out(
    fleet: _Fleet,
    operator: Any,
    clock: CompressedClock,
    config: FleetConfig,
    version: str,
    bad: bool,
    gate: dict[str, Any] | None,
) -> _Rollout:
    """Release ``version`` and watch it until it is settled (see the module docstring)."""
    kwargs: dict[str, Any] = {} if gate is None else {"gate": gate}
    with fleet.paused() as loop_times:
        rollout = _Rollout(version, loop_times, time.monotonic(), time.time(), bad)
        rollout.lag_at_release_real_s = clock.real_seconds(clock.now() - rollout.released_at)
        operator.create_release(SCENE, version, rollout_percent=100.0, **kwargs)
    deadline = rollout.real_started + config.rollout_timeout_real_s
    status: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        fleet.run_for(0.5)
        on = fleet.versions().get(version, 0)
        if gate is not None:
            status = operator.rollout_status(SCENE)
            state = (status.get("gate") or {}).get("state")
            if state in ("paused", "rolled_back") and rollout.paused_at is None:
                rollout.paused_at = fleet.loop_time()
                rollout.paused_after_real_s = _gate_stopped_at(status, rollout.released_wall)
            if state in ("paused", "rolled_back") and on == 0:
                rollout.outcome = state
                break
            if state == "complete" and on == config.devices:
                rollout.outcome = "complete"
                break
            if state not in (None, "observing", "paused", "rolled_back", "complete"):
                rollout.outcome = str(state)  # superseded or otherwise taken out of the gate's hands
                break
        elif on == config.devices:
            rollout.outcome = "adopted"
            break
    rollout.gate = (status or {}).get("gate")
    rollout.real_s = time.monotonic() - rollout.real_started
    return rollout


def _gate_stopped_at(status: dict[str, Any], released_wall: float) -> float:
    """Real seconds from the release to the gate's pause or rollback (its audited history), else to now."""
    for entry in reversed((status.get("gate") or {}).get("history") or []):
        if entry.get("action") in ("pause", "rollback") and entry.get("at"):
            try:
                at = datetime.fromisoformat(str(entry["at"]).replace("Z", "+00:00")).timestamp()
            except ValueError:
                break
            return at - released_wall
    return time.time() - released_wall


class _Fleet:
    """The worker processes: started, followed through their status messages, stopped."""

    def __init__(self, processes: list[Any], conns: list[Connection]) -> None:
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
    ) -> Iterator[_Fleet]:
        from pitahaya.fleet.worker import WorkerSpec, run_worker

        context = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
        if context.get_start_method() == "forkserver":
            context.set_forkserver_preload(["pitahaya.fleet.worker"])
        processes, conns = [], []
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
                ready = wait(self._conns, timeout=max(deadline - time.monotonic(), 0.0))
                if not ready:
                    raise FleetError(f"workers did not pause within {timeout_s:.0f}s")
                for conn in ready:
                    message = conn.recv() if _readable(conn) else ("error", "a worker process died")
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
            for conn in wait(self._conns, timeout=left):
                self._take(conn, conn.recv() if _readable(conn) else ("error", "a worker process died"))

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
            ready = wait(pending, timeout=max(deadline - time.monotonic(), 0.0))
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
            for conn in wait(open_conns, timeout=0.2):
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


def _readable(conn: Connection) -> bool:
    try:
        return conn.poll()
    except (EOFError, OSError):
        return False


def _report(
    config: FleetConfig,
    *,
    ids: list[str],
    gate: dict[str, Any] | None,
    rollouts: list[_Rollout],
    results: list[dict[str, Any]],
    registry: dict[str, Any],
    real: dict[str, float],
    effective_compression: float,
) -> dict[str, Any]:
    by_device = {device: changes for result in results for device, changes in result["devices"]}
    worker_of = {device: result["index"] for result in results for device, _ in result["devices"]}
    transitions = [by_device[d] for d in ids]
    rows = []
    for rollout in rollouts:
        released = [rollout.released_at_by_worker[worker_of[d]] for d in ids]
        offsets, clamped = adoption_offsets(transitions, rollout.version, released)
        peak, ran = exposure(transitions, rollout.version)
        state = (rollout.gate or {}).get("state")
        rows.append(
            {
                "version": rollout.version,
                "bad": rollout.bad,
                "outcome": rollout.outcome,
                "gate_state": state,
                "paused": state in ("paused", "rolled_back"),
                "paused_at_s": None if rollout.paused_at is None else rollout.paused_at - rollout.released_at,
                "paused_after_real_s": rollout.paused_after_real_s,
                "adoption_p50_s": time_to_share(offsets, 0.50),
                "adoption_p90_s": time_to_share(offsets, 0.90),
                "adoption_p99_s": time_to_share(offsets, 0.99),
                "adopted_share": sum(o is not None for o in offsets) / len(offsets),
                "adoption_clamped": clamped,
                "exposure_max": peak,
                "exposed_share": ran,
                "real_s": rollout.real_s,
                "gate_history": [
                    {k: entry.get(k) for k in ("at", "action", "from_percent", "to_percent")}
                    for entry in (rollout.gate or {}).get("history") or []
                ],
                "gate_evidence": (rollout.gate or {}).get("evidence"),
            }
        )
    first = rows[0]
    canary_percent = None if gate is None else _first_step(gate)
    durations = {kind: [s for r in results for s in r["requests"][kind]] for kind in ("tuf", "telemetry")}
    every = durations["tuf"] + durations["telemetry"]
    fleet_s = max(real["fleet"], 1e-9)
    installs = [s for r in results for s in r["refresh_real_s"].get("installed", [])]
    memory = [r["memory_kib"] for r in results]
    per_device_kib = sum(m["peak"] - m["before_devices"] for m in memory) / config.devices
    decisions: Counter[str] = Counter()
    fallbacks: Counter[str] = Counter()
    for r in results:
        for (version, reason), n in r["decisions"]:
            decisions[version or "default-policy"] += n
            if reason != "ok":
                fallbacks[reason] += n
    paused_false = sum(row["paused"] for row in rows if not row["bad"])
    summary = {
        "scenario": config.scenario,
        "devices": config.devices,
        "processes": min(config.processes, config.devices),
        "compression": config.compression,
        "poll_interval_s": config.poll_interval_s,
        "jitter": config.jitter,
        "longest_poll_delay_s": config.longest_poll_delay_s,
        "flush_interval_s": config.flush_interval_s,
        "idle_gap_s": config.idle_gap_s,
        "seed": config.seed,
        "stable_version": pkgs.STABLE_VERSION,
        "release_version": first["version"],
        "gate": gate,
        "adoption_p50_s": first["adoption_p50_s"],
        "adoption_p90_s": first["adoption_p90_s"],
        "adoption_p99_s": first["adoption_p99_s"],
        "adopted_share": first["adopted_share"],
        "paused": first["paused"],
        "paused_at_s": first["paused_at_s"],
        "paused_after_real_s": first["paused_after_real_s"],
        "exposure_max": first["exposure_max"],
        "exposed_share": first["exposed_share"],
        "canary_percent": canary_percent,
        "canary_share": None if canary_percent is None else bucket_share(ids, canary_percent),
        "rollouts": rows,
        "false_alarms": paused_false if config.scenario == "good" and gate is not None else None,
        "false_alarm_rate": paused_false / len(rows) if config.scenario == "good" and gate is not None else None,
        "requests": {
            "count": len(every),
            "rate_per_s": len(every) / fleet_s,
            "rate_per_simulated_s": len(every) / (fleet_s * config.compression),
            "p50_ms": _ms(quantile(every, 0.5)),
            "p99_ms": _ms(quantile(every, 0.99)),
            "tuf": {"count": len(durations["tuf"]), "p99_ms": _ms(quantile(durations["tuf"], 0.99))},
            "telemetry": {"count": len(durations["telemetry"]), "p99_ms": _ms(quantile(durations["telemetry"], 0.99))},
            "failed": sum(sum(r["requests_failed"].values()) for r in results),
        },
        "registry": registry,
        "telemetry": {
            "batches_sent": sum(r["telemetry"]["sent_batches"] for r in results),
            "batches_failed": sum(r["telemetry"]["failed_batches"] for r in results),
            "events_delivered": int(
                sum(registry["telemetry"].get(m, 0.0) for m in ("inferences", "views", "outcomes"))
            ),
            "events_dropped": int(registry["telemetry"].get("dropped_events", 0.0))
            + sum(r["telemetry"]["dropped_unreported"] for r in results),
        },
        "decisions": {"by_version": dict(decisions), "fallbacks": dict(fallbacks)},
        "refresh": {
            "checks": sum(sum(r["refreshes"].values()) for r in results),
            "outcomes": dict(sum((Counter(r["refreshes"]) for r in results), Counter())),
            "install_p50_ms": _ms(quantile(installs, 0.5)),
            "install_p99_ms": _ms(quantile(installs, 0.99)),
            "longest_real_s": max((t for r in results for ts in r["refresh_real_s"].values() for t in ts), default=0.0),
        },
        "memory": {
            "peak_mib_per_process": [m["peak"] / 1024 for m in memory],
            "peak_mib_total": sum(m["peak"] for m in memory) / 1024,
            "kib_per_device": per_device_kib,
        },
        "scheduler": {
            "effective_compression": effective_compression,
            "max_lag_real_s": max(r["max_lag_s"] for r in results),
            "lag_at_release_real_s": max(r.lag_at_release_real_s for r in rollouts),
        },
        "real_s": real,
        "load_average": list(os.getloadavg()),
    }
    return rounded(json.loads(json.dumps(summary, default=str)))


def _first_step(gate: dict[str, Any]) -> float | None:
    steps = gate.get("steps")
    if steps:
        return float(steps[0])
    try:
        from pitahaya.registry.gate.spec import GateSpec

        return float(GateSpec.model_validate(gate).steps[0])
    except Exception:  # an older registry: the first step is unknown here
        return None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000.0 * seconds
