"""What one fleet run does (`FleetConfig`, checked when built), and the error a run raises.

Kept apart from the workflow (`pitahaya.fleet.run`) so that the command line, the report and
the tests can read a run's settings without importing the machinery that runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

#: A good candidate, or a misbehaving one behind a quality gate.
Scenario = Literal["good", "bad-canary"]
#: How the bad canary misbehaves (`pitahaya.fleet.packages.bad_feature_source`).
BadMode = Literal["far-off", "fallback"]
SCENARIOS: tuple[Scenario, ...] = get_args(Scenario)
BAD_MODES: tuple[BadMode, ...] = get_args(BadMode)
SCENE = "watch_time"


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
        bad_mode: How the bad canary misbehaves (`BadMode`): ``far-off``
            predictions (default) or ``fallback`` on a share of its calls.
        registry_workers: Worker processes of the registry.
        rollout_timeout_real_s: Longest real time one rollout is watched.
        data_dir: Project data folder; the run works in ``<data_dir>/fleet``.
        scene_path: The scene to train and package.
        package: A built package of the scene to release as the stable version (re-versioned
            ``1.0.0``) instead of training one.
    """

    devices: int = 100
    scenario: Scenario = "good"
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
    bad_mode: BadMode = "far-off"
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
        if self.bad_mode not in BAD_MODES:
            raise ValueError(f"bad mode must be one of {', '.join(BAD_MODES)}")

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
