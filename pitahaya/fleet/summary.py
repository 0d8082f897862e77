"""The report of a fleet run: one JSON-ready dict from what the workers, the registry and the run saw.

`summarize` joins each device's version changes (from its worker) with each rollout the run
watched (`RolloutRecord`) into the figures of `pitahaya.fleet.report`, adds the requests,
telemetry, decisions, refreshes, memory and scheduler figures of the workers and the
registry's ``/metrics`` delta, and rounds the floats. The keys are listed in `pitahaya.fleet`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pitahaya.fleet import packages as pkgs
from pitahaya.fleet.config import SCENE, FleetConfig
from pitahaya.fleet.report import adoption_offsets, exposure, quantile, rounded, time_to_share


@dataclass
class RolloutRecord:
    """One candidate's rollout as the run watched it (loop times are simulated, ``real`` ones wall-clock)."""

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


def summarize(
    config: FleetConfig,
    *,
    ids: list[str],
    gate: dict[str, Any] | None,
    rollouts: list[RolloutRecord],
    results: list[dict[str, Any]],
    registry: dict[str, Any],
    real: dict[str, float],
    effective_compression: float,
) -> dict[str, Any]:
    """The run's report (keys: see `pitahaya.fleet`); ``ids`` in device order, ``real`` in wall-clock seconds."""
    by_device = {device: changes for result in results for device, changes in result["devices"]}
    worker_of = {device: result["index"] for result in results for device, _ in result["devices"]}
    transitions = [by_device[d] for d in ids]
    rows: list[dict[str, Any]] = []
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


def bucket_share(device_ids: list[str], percent: float) -> float:
    """Share of these devices whose rollout bucket a release at ``percent`` reaches."""
    from pitahaya.client_runtime import rollout_bucket
    from pitahaya.client_runtime.releases import BUCKETS

    limit = percent * BUCKETS / 100.0
    return sum(rollout_bucket(d, SCENE) < limit for d in device_ids) / len(device_ids)
