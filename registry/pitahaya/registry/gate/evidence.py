"""Judge a rollout: the new version's on-device figures against its baseline's.

Input: each arm's telemetry totals since the rollout began (`ArmTotals`, from the registry's
per-minute counters): decisions, fallbacks by reason, the latency histogram, joined outcomes
with the sum and sum of squares of their absolute error, and distinct devices. Output: a
`Judgement` with one `Check` per figure and a verdict:

- ``worse``: some figure is worse than the baseline's by more than its margin, and the
  gap is above zero with confidence (always-valid intervals, `sequential`): stop the rollout.
- ``pass``: every figure is within its margin and the samples are large enough: advance.
  The online error, which differs a lot from user to user, passes on "no evidence of worse".
- ``hold``: not enough data yet, or a rate above its margin without confidence: wait.

The chance of ``worse`` for a release that is in truth no worse stays below ``alpha`` however
often the gate looks, and however long the rollout runs (split over the checks, Bonferroni).

Decisions of one device are not independent (a slow phone is slow every time, a user's
errors are alike), so rates and the error are compared device by device: each is a ratio
over devices (fallbacks / decisions, error / outcomes) whose variance comes from how the
devices differ (the cluster-robust variance of a ratio estimator), floored by the binomial
noise within a device, and its interval counts devices, not decisions. Latency is
judged on the devices' mean latency for "worse" and on the p99 of the histogram for "pass". With no baseline version (the devices ran
the default policy) the rates are compared with zero and latency and error are not compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from pitahaya.registry.gate import sequential
from pitahaya.registry.gate.spec import GateSpec
from pitahaya.registry.services.telemetry import latency_quantile_us

Verdict = Literal["worse", "hold", "pass"]
#: Fewest devices in an arm before its interval is trusted (the interval is asymptotic).
MIN_DEVICES = 3
#: Sample size (in devices) where the intervals are tightest.
TIGHTEST_AT_DEVICES = 50.0
#: The checks sharing ``alpha``.
CHECKS = ("fallback_rate", "timeout_rate", "latency_p99", "mae")


@dataclass(frozen=True)
class DeviceTally:
    """One device's totals in an arm since the rollout began."""

    inferences: float
    fallbacks: float
    timeouts: float
    outcomes: float
    abs_error_sum_s: float
    abs_error_sq_sum_s2: float
    latency_sum_us: float = 0.0
    latency_sq_sum_us2: float = 0.0


@dataclass
class ArmTotals:
    """Telemetry totals of one arm (one or more package versions) since the rollout began.

    The scalar totals and the latency histogram come from the per-minute counters; the
    per-device tallies from the device rows (they add up to the same decisions).
    """

    inferences: float = 0.0
    successes: float = 0.0
    fallbacks: dict[str, float] = field(default_factory=dict)
    latency_us: dict[str, float] = field(default_factory=dict)
    outcomes: float = 0.0
    abs_error_sum_s: float = 0.0
    abs_error_sq_sum_s2: float = 0.0
    tallies: list[DeviceTally] = field(default_factory=list)

    @property
    def devices(self) -> int:
        return len(self.tallies)

    @classmethod
    def from_counters(cls, counters: dict[str, dict[str, float]], tallies: list[DeviceTally]) -> ArmTotals:
        """From ``{metric: {key: value}}`` as the telemetry tables hold them."""

        def scalar(name: str) -> float:
            return float(counters.get(name, {}).get("", 0.0))

        return cls(
            inferences=scalar("inferences"),
            successes=scalar("successes"),
            fallbacks=dict(counters.get("fallbacks", {})),
            latency_us=dict(counters.get("latency_us", {})),
            outcomes=scalar("outcomes"),
            abs_error_sum_s=scalar("abs_error_sum_s"),
            abs_error_sq_sum_s2=scalar("abs_error_sq_sum_s2"),
            tallies=tallies,
        )


@dataclass(frozen=True)
class Check:
    """One figure compared: both arms' values, the gap's always-valid interval, the limit, the verdict."""

    name: str
    verdict: Verdict
    new: float | None
    baseline: float | None
    gap_low: float | None
    gap_high: float | None
    limit: float | None
    note: str = ""


@dataclass(frozen=True)
class Judgement:
    """The verdict on a rollout and the evidence behind it (stored and audited as JSON)."""

    verdict: Verdict
    checks: tuple[Check, ...]
    new_inferences: float
    step_inferences: float
    new_devices: int
    baseline_inferences: float
    baseline_devices: int

    @property
    def reasons(self) -> list[str]:
        return [f"{check.name}: {check.note}" for check in self.checks if check.verdict == self.verdict]

    def to_json(self) -> dict[str, Any]:
        """JSON-safe (non-finite numbers become None)."""
        return _finite(asdict(self) | {"reasons": self.reasons})


def judge(new: ArmTotals, baseline: ArmTotals | None, spec: GateSpec, *, step_inferences: float) -> Judgement:
    """Compare ``new`` with ``baseline`` (None: the other devices run no package).

    Args:
        step_inferences: The new version's decisions since its current step began.
    """
    alpha = spec.alpha / len(CHECKS)
    checks = (
        _rate_check("fallback_rate", new, baseline, lambda d: d.fallbacks, spec.margins.fallback_rate, spec, alpha),
        _rate_check("timeout_rate", new, baseline, lambda d: d.timeouts, spec.margins.timeout_rate, spec, alpha),
        _latency_check(new, baseline, spec, alpha),
        _mae_check(new, baseline, spec, alpha),
    )
    if any(check.verdict == "worse" for check in checks):
        verdict: Verdict = "worse"
    elif all(check.verdict == "pass" for check in checks) and step_inferences >= spec.min_inferences:
        verdict = "pass"
    else:
        verdict = "hold"
    return Judgement(
        verdict=verdict,
        checks=checks,
        new_inferences=new.inferences,
        step_inferences=step_inferences,
        new_devices=new.devices,
        baseline_inferences=baseline.inferences if baseline else 0.0,
        baseline_devices=baseline.devices if baseline else 0,
    )


def _interval(mean: float, sd: float, n: float, alpha: float) -> tuple[float, float]:
    """Two-sided always-valid interval of a mean over ``n`` independent samples at level ``alpha``."""
    r = sequential.radius(n, sd, alpha / 2.0, TIGHTEST_AT_DEVICES)
    return mean - r, mean + r


def _rate_check(
    name: str,
    new: ArmTotals,
    baseline: ArmTotals | None,
    count: Callable[[DeviceTally], float],
    margin: float,
    spec: GateSpec,
    alpha: float,
) -> Check:
    """A failure rate no more than ``margin`` above the baseline's (above zero without one)."""
    if new.inferences <= 0 or new.devices < MIN_DEVICES:
        return Check(name, "hold", None, None, None, None, margin, "waiting for devices on the new version")
    new_rate, low, high = _ratio_interval(new, count, lambda d: d.inferences, alpha, binomial=True)
    base_rate = 0.0
    if baseline is not None:
        if baseline.inferences <= 0 or baseline.devices < MIN_DEVICES:
            return Check(name, "hold", new_rate, None, None, None, margin, "waiting for baseline devices")
        base_rate, b_low, b_high = _ratio_interval(baseline, count, lambda d: d.inferences, alpha, binomial=True)
        low, high = low - b_high, high - b_low
    gap = new_rate - base_rate
    return _verdict(name, new_rate, base_rate, gap, low, high, margin, _enough(new, baseline, spec, "inferences"))


def _ratio_interval(
    arm: ArmTotals,
    numerator: Callable[[DeviceTally], float],
    denominator: Callable[[DeviceTally], float],
    alpha: float,
    *,
    binomial: bool = False,
    within_sd: float = 0.0,
) -> tuple[float, float, float]:
    """A ratio over the arm's devices and its always-valid interval at level ``alpha`` (half each way of a gap).

    The variance is the cluster-robust one of a ratio estimator, ``sum((y_i - R x_i)^2) /
    ((k - 1) mean(x)^2)`` over ``k`` devices, floored by the noise a single device's own
    sample carries: binomial for a rate, ``within_sd`` per observation for a mean.
    """
    xs = [denominator(d) for d in arm.tallies]
    ys = [numerator(d) for d in arm.tallies]
    k, total_x = len(xs), sum(xs)
    ratio = sum(ys) / total_x
    mean_x = total_x / k
    spread = math.sqrt(sum((y - ratio * x) ** 2 for x, y in zip(xs, ys, strict=True)) / (k - 1)) / mean_x
    if binomial:
        within_sd = sequential.rate_sd(sum(ys), total_x)
    sd = max(spread, within_sd / math.sqrt(mean_x))
    r = sequential.radius(k, sd, alpha / 2.0, TIGHTEST_AT_DEVICES)
    return ratio, ratio - r, ratio + r


def _latency_check(new: ArmTotals, baseline: ArmTotals | None, spec: GateSpec, alpha: float) -> Check:
    """p99 decision latency within ``ratio`` x the baseline's.

    Worse: the new version's mean latency is above ``ratio`` x the baseline's with confidence
    (device by device, so a few slow phones do not decide it); a scale-up of every decision
    moves the p99 as much. Pass: the p99 itself (from the histograms) is within the limit over
    the minimum sample. A tail-only regression therefore holds the rollout rather than advancing it.
    """
    name, ratio = "latency_p99", spec.margins.latency_p99_ratio
    new_p99 = latency_quantile_us(new.latency_us, 0.99)
    if baseline is None:
        return Check(name, "pass", new_p99, None, None, None, None, "no baseline version to compare with")
    base_p99 = latency_quantile_us(baseline.latency_us, 0.99)
    timed = [
        ArmTotals(tallies=[d for d in arm.tallies if d.inferences > 0 and d.latency_sum_us > 0])
        for arm in (new, baseline)
    ]
    if new_p99 is None or base_p99 is None or min(arm.devices for arm in timed) < MIN_DEVICES:
        return Check(name, "hold", new_p99, base_p99, None, None, None, "waiting for latency data")
    means = [
        _ratio_interval(arm, lambda d: d.latency_sum_us, lambda d: d.inferences, alpha, within_sd=_latency_sd(arm))
        for arm in timed
    ]
    (new_mean, low, high), (base_mean, b_low, b_high) = means
    limit = ratio * base_p99
    note = (
        f"p99 {new_p99:.0f} µs vs limit {limit:.0f} µs ({ratio:g} x {base_p99:.0f}); "
        f"mean {new_mean:.0f} vs {base_mean:.0f} µs"
    )
    if low - ratio * b_high > 0.0:
        return Check(name, "worse", new_p99, base_p99, low - ratio * b_high, high - ratio * b_low, limit, note)
    if new_p99 <= limit and _enough(new, baseline, spec, "inferences"):
        return Check(name, "pass", new_p99, base_p99, low - ratio * b_high, high - ratio * b_low, limit, note)
    return Check(name, "hold", new_p99, base_p99, low - ratio * b_high, high - ratio * b_low, limit, note)


def _latency_sd(arm: ArmTotals) -> float:
    n = sum(d.inferences for d in arm.tallies)
    mean = sum(d.latency_sum_us for d in arm.tallies) / n
    return math.sqrt(max(sum(d.latency_sq_sum_us2 for d in arm.tallies) / n - mean * mean, 0.0))


def _mae_check(new: ArmTotals, baseline: ArmTotals | None, spec: GateSpec, alpha: float) -> Check:
    name = "mae"
    if baseline is None:
        return Check(name, "pass", _mae(new), None, None, None, None, "no baseline version to compare with")
    if new.outcomes <= 0 or baseline.outcomes <= 0 or min(new.devices, baseline.devices) < MIN_DEVICES:
        return Check(name, "hold", _mae(new), _mae(baseline), None, None, None, "waiting for joined outcomes")
    new_mae, low, high = _error_interval(new, alpha)
    base_mae, b_low, b_high = _error_interval(baseline, alpha)
    margin = spec.margins.mae_relative * base_mae
    check = _verdict(
        name,
        new_mae,
        base_mae,
        new_mae - base_mae,
        low - b_high,
        high - b_low,
        margin,
        _enough(new, baseline, spec, "outcomes"),
    )
    if check.verdict == "hold" and _enough(new, baseline, spec, "outcomes"):
        # The error differs from user to user, so a few devices' mean may sit above the margin
        # by who they are; waiting at the same step shows the same users. No evidence of worse
        # is a pass: the next step brings the devices that can tell.
        return replace(check, verdict="pass", note=check.note + "; above the margin without evidence")
    return check


def _verdict(
    name: str, new: float, base: float, gap: float, low: float, high: float, margin: float, enough: bool
) -> Check:
    note = f"{new:.4g} vs {base:.4g} (gap {gap:+.4g}, interval [{low:+.4g}, {high:+.4g}], margin {margin:.4g})"
    if low > 0.0 and gap > margin:
        return Check(name, "worse", new, base, low, high, margin, note)
    if gap <= margin and enough:
        return Check(name, "pass", new, base, low, high, margin, note)
    return Check(name, "hold", new, base, low, high, margin, note)


def _enough(
    new: ArmTotals, baseline: ArmTotals | None, spec: GateSpec, what: Literal["inferences", "outcomes"]
) -> bool:
    need = spec.min_inferences if what == "inferences" else spec.min_outcomes
    arms = (new,) if baseline is None else (new, baseline)
    return all(getattr(arm, what) >= need for arm in arms)


def _mae(arm: ArmTotals | None) -> float | None:
    if arm is None or arm.outcomes <= 0:
        return None
    return arm.abs_error_sum_s / arm.outcomes


def _error_interval(arm: ArmTotals, alpha: float) -> tuple[float, float, float]:
    """The arm's online MAE over its devices and its interval.

    The noise within a device is the error's standard deviation; without a sum of squares
    (older devices) the mean itself stands in (that of an exponential error: wide, cautious).
    """
    mean = arm.abs_error_sum_s / arm.outcomes
    within = mean
    if arm.abs_error_sq_sum_s2 > 0.0:
        within = math.sqrt(max(arm.abs_error_sq_sum_s2 / arm.outcomes - mean * mean, 0.0))
    devices = ArmTotals(tallies=[d for d in arm.tallies if d.outcomes > 0])
    if devices.devices < 2:
        return mean, -math.inf, math.inf
    return _ratio_interval(devices, lambda d: d.abs_error_sum_s, lambda d: d.outcomes, alpha, within_sd=within)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
