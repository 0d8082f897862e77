"""Run a fleet against a real registry: the workflow behind ``pitahaya fleet simulate``.

1. **Packages** (`pitahaya.fleet.packages`): one small model trained once, packaged as the
   stable ``1.0.0``; candidates ``1.1.0``, ``1.2.0``, ... (``bad-canary``: a misbehaving one).
2. **Registry**: a child ``pitahaya serve`` on 127.0.0.1 with its own data folder, gates
   evaluated every second, rate limits raised (every simulated device shares one address and
   one client token), MLflow forwarding off. Tokens are made for the devices (client), the
   publisher and the operator; the packages are pushed (the registry's pre-flight loads each
   one) and ``1.0.0`` is released to 100 %.
3. **Fleet** (`pitahaya.fleet.pool`, `pitahaya.fleet.worker`): ``processes`` worker processes,
   each driving its share of the devices from one scheduler loop on the compressed clock. Once
   every device runs ``1.0.0`` and has had a telemetry interval to report it, the candidate is
   released: at 100 % (``good``) or behind a quality gate (``bad-canary``, or ``--gate``, or
   ``--rollouts K``).
4. **Watch**: the run follows the devices' versions and ``rollout_status`` until the release is
   adopted everywhere (or the gate completed), or the gate paused or rolled it back and every
   device left the version, or ``rollout_timeout_s`` passed. With ``rollouts`` K > 1 the next
   candidate is released after each one, to count the gate's false alarms.
5. **Stop**: the workers send their last telemetry and their notes; the registry stops. Every
   child is stopped on errors and Ctrl-C too. The report (`pitahaya.fleet.summary`) is built
   from what the workers noted and the registry's ``/metrics``.

The run's settings are `pitahaya.fleet.config.FleetConfig`.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pitahaya.fleet import packages as pkgs
from pitahaya.fleet import registry_metrics
from pitahaya.fleet._clock import CompressedClock
from pitahaya.fleet.config import SCENE, FleetConfig, FleetError
from pitahaya.fleet.pool import WorkerPool
from pitahaya.fleet.summary import RolloutRecord, summarize

#: Registry settings of a fleet run (see the module docstring).
REGISTRY_SETTINGS = {
    "PITAHAYA_GATE_INTERVAL_SECONDS": "1",
    "PITAHAYA_RATE_LIMIT_PER_TOKEN": "100000000/minute",
    "PITAHAYA_RATE_LIMIT_PER_IP": "100000000/minute",
    "PITAHAYA_MLFLOW_FORWARDING": "false",
    "PITAHAYA_LOG_LEVEL": "WARNING",
}

Progress = Callable[[str, float], None]


def simulate_fleet(config: FleetConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the fleet and return the report (see `pitahaya.fleet` for its keys).

    Raises:
        FleetError: a worker failed, the registry refused a step, or the fleet never got ready.
        pitahaya.publisher.PublisherError: the registry refused a push or release.
    """
    from pitahaya.cli._common import DEFAULT_SCENE
    from pitahaya.cli._server import registry_process
    from pitahaya.client_runtime import Scene
    from pitahaya.publisher import RegistryClient

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
        with operator, WorkerPool.started(config, url, client_token, trusted_root, ids, feeds, work, clock) as fleet:
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

    return summarize(
        config,
        ids=ids,
        gate=gate,
        rollouts=rollouts,
        results=results,
        registry=registry_metrics.delta(before, after),
        real={"total": time.monotonic() - started, "build": built_s, "fleet": fleet_real_s},
        effective_compression=effective,
    )


def _wait_for_stable(fleet: WorkerPool, config: FleetConfig, progress: Progress) -> None:
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
    fleet: WorkerPool,
    operator: Any,
    clock: CompressedClock,
    config: FleetConfig,
    version: str,
    bad: bool,
    gate: dict[str, Any] | None,
) -> RolloutRecord:
    """Release ``version`` and watch it until it is settled (see the module docstring)."""
    kwargs: dict[str, Any] = {} if gate is None else {"gate": gate}
    with fleet.paused() as loop_times:
        rollout = RolloutRecord(version, loop_times, time.monotonic(), time.time(), bad)
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
