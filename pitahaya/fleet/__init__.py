"""pitahaya fleet simulator: many real client runtimes against a real registry, on a compressed clock.

``pitahaya fleet simulate --devices N --scenario good|bad-canary`` (or `simulate_fleet`) trains
and packages one small model, starts a registry, runs N `pitahaya.client_runtime.Runtime`
instances in a few worker processes (TUF, HTTP and telemetry all real), releases a candidate
and measures how the fleet takes it (see `pitahaya.fleet.run` for the workflow)::

    from pitahaya.fleet import FleetConfig, simulate_fleet

    report = simulate_fleet(FleetConfig(devices=200, scenario="bad-canary", compression=50))
    report["paused"], report["exposure_max"], report["canary_percent"]

Times are simulated seconds (real seconds x ``compression``) unless a key says ``real``. The
report's headline keys: ``adoption_p50_s``, ``adoption_p90_s``, ``adoption_p99_s`` (from the
release until 50/90/99 % of the fleet ran it; None when fewer did), ``longest_poll_delay_s``
(interval x (1 + jitter)), ``requests`` (device-side count, rate per real second, p50/p99 ms),
``registry`` (the same from the registry's ``/metrics``), ``telemetry`` (batches sent and
failed, events delivered and dropped), ``paused`` and ``paused_at_s`` (the gate stopped the
release, and when), ``exposure_max`` (the peak share of the fleet that ran the candidate, a
fraction in [0, 1]), ``canary_percent`` (the gate's first step, in percent) and
``canary_share`` (the share of these devices whose rollout bucket that step reaches), and,
with ``rollouts`` > 1, ``false_alarms`` and ``false_alarm_rate`` of the gate on good releases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pitahaya.fleet.config import SCENARIOS, FleetConfig, FleetError, default_gate

if TYPE_CHECKING:  # its type, re-exported; at run time it loads on first use (below)
    from pitahaya.fleet.run import simulate_fleet as simulate_fleet

__all__ = ["FleetConfig", "FleetError", "SCENARIOS", "default_gate", "simulate_fleet"]


def __getattr__(name: str) -> Any:
    # The workflow is loaded on first use (PEP 562): the worker processes, which import this
    # package, never load what only the parent runs.
    if name != "simulate_fleet":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from pitahaya.fleet.run import simulate_fleet as simulate_fleet

    globals()[name] = simulate_fleet
    return simulate_fleet


def __dir__() -> list[str]:
    return __all__
