"""The registry's side of a fleet run, read from its Prometheus ``/metrics``.

`scrape` reads the request counter and duration histogram the registry keeps per route
(`pitahaya.registry.observability.RequestMetrics`) and the device telemetry totals; `delta`
turns two scrapes into what happened between them: requests by route, the p50 and p99 handling
time (interpolated inside the histogram's buckets, so a coarse estimate) and the telemetry
delivered. With several registry workers each scrape reads one worker's request metrics; the
devices' own timings (`pitahaya.fleet._http`) cover every request.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

_REQUESTS = "pitahaya_registry_requests"
_DURATION = "pitahaya_registry_request_duration_seconds"
_TELEMETRY = ("inferences", "views", "outcomes", "reports", "dropped_events")


@dataclass
class Scrape:
    """Totals read from one ``/metrics`` answer."""

    requests: dict[str, float] = field(default_factory=dict)  # route -> requests
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound (s) -> cumulative count, all routes
    telemetry: dict[str, float] = field(default_factory=dict)  # metric -> total over scenes and versions


def scrape(url: str, *, timeout_s: float = 10.0) -> Scrape:
    """Read ``{url}/metrics``.

    Raises:
        httpx.HTTPError: the registry did not answer.
    """
    response = httpx.get(f"{url.rstrip('/')}/metrics", timeout=timeout_s)
    response.raise_for_status()
    found = Scrape()
    buckets: dict[float, float] = defaultdict(float)
    telemetry: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == f"{_REQUESTS}_total":
                route = sample.labels.get("route", "")
                found.requests[route] = found.requests.get(route, 0.0) + sample.value
            elif sample.name == f"{_DURATION}_bucket":
                buckets[float(sample.labels["le"])] += sample.value
            elif family.name.startswith("pitahaya_device_") and sample.name.endswith("_total"):
                metric = family.name.removeprefix("pitahaya_device_")
                if metric in _TELEMETRY:
                    telemetry[metric] += sample.value
    found.buckets = dict(buckets)
    found.telemetry = dict(telemetry)
    return found


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile of a cumulative histogram, linear inside its bucket (Prometheus' rule)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # in the overflow bucket: its lower bound is all we know
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def delta(before: Scrape, after: Scrape) -> dict[str, Any]:
    """What the registry handled between two scrapes."""
    routes = {
        route: after.requests.get(route, 0.0) - before.requests.get(route, 0.0)
        for route in after.requests
        if after.requests.get(route, 0.0) > before.requests.get(route, 0.0)
    }
    buckets = {bound: count - before.buckets.get(bound, 0.0) for bound, count in after.buckets.items()}
    p50, p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
    return {
        "requests": int(sum(routes.values())),
        "requests_by_route": {route: int(n) for route, n in sorted(routes.items(), key=lambda kv: -kv[1])},
        "handling_p50_ms": None if p50 is None else 1000 * p50,
        "handling_p99_ms": None if p99 is None else 1000 * p99,
        "telemetry": {m: after.telemetry.get(m, 0.0) - before.telemetry.get(m, 0.0) for m in _TELEMETRY},
    }
