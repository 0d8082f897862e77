"""Bandwidth traces: generated ones (the default, no data needed) or the MMGC 2022 challenge's.

A `Trace` is a bandwidth sample every ``step_s`` seconds, looped when a lane outlasts it.
Traces come in the MMGC challenge's four classes, so results read per class either way:
``high`` (mean 3.58 Mbps), ``medium`` (1.61), ``low`` (1.20) and ``mixed`` (1.0-3.6 per trace).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pitahaya.simulation.errors import NetworkSourceError

#: Trace classes of the MMGC challenge, in its order.
TRACE_CLASSES: tuple[str, ...] = ("high", "medium", "low", "mixed")

_MEAN_MBPS = {"high": 3.58, "medium": 1.61, "low": 1.20}
_FLOOR_MBPS, _PEAK_MBPS = 0.2, 14.4


@dataclass(frozen=True, eq=False)
class Trace:
    """One bandwidth trace.

    Attributes:
        name: Where it came from (``mmgc/low/3``, ``generated/high/0``).
        trace_class: One of `TRACE_CLASSES`.
        bandwidth_bps: Bits per second, one sample per ``step_s``.
        step_s: Sample spacing.
    """

    name: str
    trace_class: str
    bandwidth_bps: np.ndarray
    step_s: float = 0.5

    @property
    def mean_mbps(self) -> float:
        return float(np.mean(self.bandwidth_bps)) / 1e6


def _check_class(trace_class: str) -> None:
    if trace_class not in TRACE_CLASSES:
        raise NetworkSourceError(f"unknown trace class {trace_class!r}; expected one of {', '.join(TRACE_CLASSES)}")


def generated_traces(trace_class: str, count: int = 20, *, seed: int = 0, samples: int = 5880) -> list[Trace]:
    """Seeded traces shaped like the MMGC ones: log-normal AR(1) bandwidth at 0.5 s steps.

    Each trace fluctuates around its class mean (per trace in 1.0-3.6 Mbps for ``mixed``) with
    second-scale dips and bursts, clipped to the challenge's 0.2 Mbps floor and 14.4 Mbps peak.

    Raises:
        NetworkSourceError: unknown class.
    """
    _check_class(trace_class)
    rng = np.random.default_rng([seed, TRACE_CLASSES.index(trace_class)])
    traces = []
    for k in range(count):
        mean = _MEAN_MBPS.get(trace_class) or float(rng.uniform(1.0, 3.6))
        noise = rng.normal(0.0, 0.25, samples)
        log_bw = np.empty(samples)
        log_bw[0] = noise[0] / np.sqrt(1 - 0.9**2)
        for i in range(1, samples):
            log_bw[i] = 0.9 * log_bw[i - 1] + noise[i]
        mbps = np.exp(log_bw)
        mbps = np.clip(mbps * mean / mbps.mean(), _FLOOR_MBPS, _PEAK_MBPS)
        traces.append(Trace(f"generated/{trace_class}/{k}", trace_class, mbps * 1e6))
    return traces


def mmgc_traces(root: str | Path, trace_class: str) -> list[Trace]:
    """The MMGC challenge traces of one class (``<root>/<class>/<n>``: ``<time_s> <Mbps>`` lines).

    Raises:
        NetworkSourceError: unknown class, missing folder, or a malformed file.
    """
    _check_class(trace_class)
    folder = Path(root) / trace_class
    if not folder.is_dir():
        raise NetworkSourceError(f"no MMGC traces at {folder}")
    files = sorted(
        (p for p in folder.iterdir() if p.is_file()),
        key=lambda p: (len(p.name), p.name),
    )
    traces = []
    for path in files:
        try:
            data = np.loadtxt(path, ndmin=2)
        except (OSError, ValueError) as e:
            raise NetworkSourceError(f"{path}: not '<time_s> <Mbps>' lines: {e}") from e
        if (
            data.shape[1] != 2
            or len(data) < 2
            or not np.all(np.isfinite(data))
            or np.any(data[:, 1] < 0)
            or not np.any(data[:, 1] > 0)
        ):
            raise NetworkSourceError(f"{path}: expected two finite columns and non-negative, not all-zero bandwidth")
        step = float(np.median(np.diff(data[:, 0])))
        if step <= 0:
            raise NetworkSourceError(f"{path}: times must increase")
        traces.append(Trace(f"mmgc/{trace_class}/{path.name}", trace_class, data[:, 1] * 1e6, step))
    if not traces:
        raise NetworkSourceError(f"no trace files in {folder}")
    return traces
