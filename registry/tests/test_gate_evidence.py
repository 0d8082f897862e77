"""The gate's statistics: false alarms stay rare while data arrives every minute, bad versions stop early.

A synthetic fleet stands in for devices (the registry-level and fleet tests send real
telemetry): each device has its own fallback and timeout propensity, speed and user, so
decisions of one device are alike, as on real phones. Every simulated minute both arms'
totals grow and the gate judges them, advancing through its steps on ``pass`` exactly as the
registry does: a fixed-n test would be checked ~40 times per rollout here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from pitahaya.client_runtime.telemetry import LATENCY_US_BOUNDS
from pitahaya.registry.gate import sequential
from pitahaya.registry.gate.evidence import ArmTotals, DeviceTally, judge
from pitahaya.registry.gate.spec import PRESETS, GateSpec, Margins
from pitahaya.registry.services.telemetry import DEVICE_TALLIES

SPEC = GateSpec(steps=[5.0, 25.0, 100.0], min_inferences=300, min_outcomes=100, min_step_seconds=0.0)
KEYS = [str(bound) for bound in LATENCY_US_BOUNDS] + ["+Inf"]


@dataclass
class Fleet:
    """Per-device traits, drawn once per rollout."""

    fallback: np.ndarray
    timeout: np.ndarray
    speed_us: np.ndarray
    error_s: np.ndarray


def _fleet(rng: np.random.Generator, devices: int) -> Fleet:
    return Fleet(
        fallback=rng.beta(0.5, 150.0, devices),
        timeout=rng.beta(0.3, 400.0, devices),
        speed_us=150.0 * rng.lognormal(0.0, 0.35, devices),
        error_s=rng.lognormal(np.log(12.0), 0.6, devices),
    )


class Arm:
    """One arm's running totals: per device (numpy) and the latency histogram."""

    FIELDS = DEVICE_TALLIES

    def __init__(self, devices: int) -> None:
        self.per_device = {name: np.zeros(devices) for name in self.FIELDS}
        self.latency = np.zeros(len(KEYS))

    def totals(self) -> ArmTotals:
        seen = np.flatnonzero(self.per_device["inferences"])
        tallies = [DeviceTally(*(float(self.per_device[name][i]) for name in self.FIELDS)) for i in seen]
        sums = {name: float(values.sum()) for name, values in self.per_device.items()}
        return ArmTotals(
            inferences=sums["inferences"],
            successes=sums["inferences"] - sums["fallbacks"],
            fallbacks={"timeout": sums["timeouts"]},
            latency_us={key: float(count) for key, count in zip(KEYS, self.latency, strict=True)},
            outcomes=sums["outcomes"],
            abs_error_sum_s=sums["abs_error_sum_s"],
            abs_error_sq_sum_s2=sums["abs_error_sq_sum_s2"],
            tallies=tallies,
        )


def _minute(rng: np.random.Generator, fleet: Fleet, members: np.ndarray, arm: Arm, *, bad: str = "") -> None:
    """One minute of decisions from ``members`` added to ``arm`` (``bad`` degrades the version)."""
    calls = rng.poisson(8, members.size)
    fallback = np.clip(fleet.fallback[members] + (0.5 if bad == "fallback" else 0.0), 0, 1)
    timeout = np.clip(fleet.timeout[members] + (0.3 if bad == "timeout" else 0.0), 0, 1)
    timeouts = rng.binomial(calls, timeout)
    fallbacks = np.minimum(calls, timeouts + rng.binomial(calls, fallback))
    outcomes = rng.binomial(calls, 0.7)
    scale = fleet.error_s[members] * (3.0 if bad == "mae" else 1.0)
    errors = [rng.exponential(s, n) for s, n in zip(scale, outcomes, strict=True)]
    for name, values in (
        ("inferences", calls),
        ("fallbacks", fallbacks),
        ("timeouts", timeouts),
        ("outcomes", outcomes),
        ("abs_error_sum_s", [e.sum() for e in errors]),
        ("abs_error_sq_sum_s2", [(e**2).sum() for e in errors]),
    ):
        arm.per_device[name][members] += values
    speed = fleet.speed_us[members] * (3.0 if bad == "latency" else 1.0)
    latency = [s * rng.lognormal(0.0, 0.3, n) for s, n in zip(speed, calls, strict=True)]
    arm.per_device["latency_sum_us"][members] += [t.sum() for t in latency]
    arm.per_device["latency_sq_sum_us2"][members] += [(t**2).sum() for t in latency]
    arm.latency += np.bincount(np.searchsorted(LATENCY_US_BOUNDS, np.concatenate(latency)), minlength=len(KEYS))


def _rollout(seed: int, *, bad: str = "", devices: int = 200, minutes: int = 40) -> tuple[str, float]:
    """Run one gated rollout; returns how it ended and the largest share of devices that ran the new version."""
    rng = np.random.default_rng(seed)
    fleet = _fleet(rng, devices)
    order = rng.permutation(devices)  # rollout buckets
    new, base = Arm(devices), Arm(devices)
    step, step_start, exposure = 0, 0.0, 0.0
    for _ in range(minutes):
        cut = round(SPEC.steps[step] / 100.0 * devices)
        exposure = max(exposure, cut / devices)
        _minute(rng, fleet, order[:cut], new, bad=bad)
        if cut < devices:
            _minute(rng, fleet, order[cut:], base)
        totals = new.totals()
        verdict = judge(totals, base.totals(), SPEC, step_inferences=totals.inferences - step_start).verdict
        if verdict == "worse":
            return "stopped", exposure
        if verdict == "pass":
            if step + 1 == len(SPEC.steps):
                return "complete", exposure
            step, step_start = step + 1, totals.inferences
    return "running", exposure


def test_good_releases_are_rarely_stopped_although_the_gate_looks_every_minute() -> None:
    endings = [_rollout(seed)[0] for seed in range(200)]
    false_alarms = endings.count("stopped") / len(endings)
    assert false_alarms <= 0.05, endings
    assert endings.count("complete") >= 0.9 * len(endings)  # and they do not stall either


@pytest.mark.parametrize("bad", ["fallback", "timeout"])
def test_a_failing_version_is_stopped_at_its_first_step(bad: str) -> None:
    outcomes = [_rollout(seed, bad=bad) for seed in range(20)]
    assert all(ending == "stopped" for ending, _ in outcomes), outcomes
    assert all(exposure <= SPEC.steps[0] / 100 for _, exposure in outcomes)


def test_a_slower_version_never_leaves_its_first_step() -> None:
    # Phones differ in speed, so ten canary devices cannot always prove a 3x slowdown against
    # the limit of 1.5x: the gate then holds the rollout at its first step (its p99 is over the
    # limit, so it never passes) instead of stopping it.
    outcomes = [_rollout(seed, bad="latency") for seed in range(20)]
    assert all(ending in ("stopped", "running") for ending, _ in outcomes), outcomes
    assert all(exposure <= SPEC.steps[0] / 100 for _, exposure in outcomes)
    assert sum(ending == "stopped" for ending, _ in outcomes) >= 10


def test_a_worse_model_is_stopped_before_it_reaches_everyone() -> None:
    # The error differs a lot from user to user, so a handful of canary devices cannot tell;
    # the gate holds the rollout until enough devices prove it worse, never advancing on a guess.
    outcomes = [_rollout(seed, bad="mae", devices=400) for seed in range(20)]
    assert all(ending == "stopped" for ending, _ in outcomes), outcomes
    assert max(exposure for _, exposure in outcomes) < 1.0


def _uniform(devices: int, *, inferences: float, fallbacks: float, timeouts: float = 0.0) -> ArmTotals:
    """An arm whose devices are all alike: ~100 µs decisions, 10 s mean error."""
    per = inferences / devices
    tally = DeviceTally(
        inferences=per,
        fallbacks=fallbacks / devices,
        timeouts=timeouts / devices,
        outcomes=500 / devices,
        abs_error_sum_s=5000 / devices,
        abs_error_sq_sum_s2=150000 / devices,
        latency_sum_us=100.0 * per,
        latency_sq_sum_us2=11000.0 * per,
    )
    return ArmTotals(
        inferences=inferences,
        successes=inferences - fallbacks,
        fallbacks={"timeout": timeouts},
        latency_us={"100": inferences},
        outcomes=500,
        abs_error_sum_s=5000.0,
        abs_error_sq_sum_s2=150000.0,
        tallies=[tally] * devices,
    )


def test_without_a_baseline_version_rates_are_held_to_their_margins_alone() -> None:
    quiet = _uniform(40, inferences=5000, fallbacks=5, timeouts=2)
    noisy = _uniform(40, inferences=5000, fallbacks=4000, timeouts=10)
    assert judge(quiet, None, SPEC, step_inferences=5000).verdict == "pass"
    assert judge(noisy, None, SPEC, step_inferences=5000).verdict == "worse"


def test_each_step_needs_its_own_sample_and_evidence_is_json_safe() -> None:
    arm = _uniform(40, inferences=5000, fallbacks=0)
    assert judge(arm, arm, SPEC, step_inferences=100).verdict == "hold"
    judgement = judge(arm, arm, SPEC, step_inferences=5000)
    assert judgement.verdict == "pass"
    evidence = judgement.to_json()
    assert {check["name"] for check in evidence["checks"]} == {"fallback_rate", "timeout_rate", "latency_p99", "mae"}
    empty = judge(ArmTotals(), None, SPEC, step_inferences=0).to_json()
    assert empty["verdict"] == "hold"
    json.dumps(empty, allow_nan=False)  # raises on inf or NaN


def test_the_interval_narrows_with_devices_and_presets_resolve_under_explicit_fields() -> None:
    widths = [sequential.radius(n, 0.5, 0.01, 50) for n in (3, 10, 100, 1000)]
    assert widths == sorted(widths, reverse=True) and widths[-1] < 0.1
    spec = GateSpec.model_validate({"preset": "cautious", "margins": {"mae_relative": 0.3}, "on_fail": "pause"})
    assert spec.steps == PRESETS["cautious"]["steps"] and spec.alpha == 0.01 and spec.on_fail == "pause"
    assert spec.margins == Margins(fallback_rate=0.01, timeout_rate=0.005, latency_p99_ratio=1.25, mae_relative=0.3)
    with pytest.raises(ValueError, match="increase"):
        GateSpec(steps=[10.0, 5.0])
