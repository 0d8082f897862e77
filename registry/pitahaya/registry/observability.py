"""Request ids, JSON logs, Prometheus metrics and the per-address rate limit, as one ASGI middleware.

`ObservabilityMiddleware` wraps the app: it takes the caller's ``X-Request-ID`` (or makes
one), makes it visible to every log line of the request through a context variable, returns
it in the response, counts ``/api/`` requests against the per-address limit, and records
the request in Prometheus (by route template, so ``/tuf/targets/...`` stays one series).
It is a plain ASGI middleware (not ``BaseHTTPMiddleware``) so static file serving stays fast.

`configure_logging` installs `JsonFormatter` on the root logger; uvicorn's own loggers
propagate to it. `/metrics` serves the app's `prometheus_client.CollectorRegistry`, which
also holds a collector that reads device telemetry totals from SQL at scrape time, so every
worker reports the same fleet numbers, and the UV gauge ``pitahaya_device_uv``: distinct
devices per scene and package version over the last complete minute, 5 minutes and hour
(``window`` label ``1m``, ``5m``, ``1h``; the current minute is still filling and left out).
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from pitahaya.registry.api.errors import error_response
from pitahaya.registry.clock import Clock, utcnow
from pitahaya.registry.errors import RateLimitedError
from pitahaya.registry.ratelimit import RequestLimiter
from pitahaya.registry.schemas import LATENCY_US_BOUNDS
from pitahaya.registry.services.gates import live_rollouts
from pitahaya.registry.services.telemetry import (
    SCALAR_METRICS,
    counter_totals,
    latency_buckets,
    latency_key,
    recent_unique_devices,
)

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("pitahaya_request_id", default=None)
access_logger = logging.getLogger("pitahaya.registry.access")

_SAFE_REQUEST_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and ``extra`` fields."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        entry.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)

    converter = staticmethod(time.gmtime)


def configure_logging(*, json_lines: bool, level: int = logging.INFO) -> None:
    """Route the registry's and uvicorn's logs to stderr, as JSON lines or plain text."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the middleware logs each request with its id


class RequestMetrics:
    """The registry's own HTTP metrics, in a registry of its own (one per app)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "pitahaya_registry_requests",
            "HTTP requests handled, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "pitahaya_registry_request_duration_seconds",
            "Time to handle a request, by method and route template.",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
        )


class TelemetryCollector(Collector):
    """Device telemetry from SQL: all-time counters, a latency histogram and the recent UV gauge.

    Args:
        sessions: Session factory of the registry's database.
        clock: The current time (timezone-aware), for the UV windows.
    """

    def __init__(self, sessions: sessionmaker[Session], clock: Clock = utcnow) -> None:
        self._sessions = sessions
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        with self._sessions() as session:
            totals = counter_totals(session=session)
            recent = recent_unique_devices(session=session, now=self._clock())
        labels = ["scene", "package_version"]
        scalars = {
            m: CounterMetricFamily(f"pitahaya_device_{m}", f"Device-reported {m}, all time.", labels=labels)
            for m in (*SCALAR_METRICS, "reports", "dropped_events")
        }
        fallbacks = CounterMetricFamily(
            "pitahaya_device_fallbacks", "Inferences that fell back, by reason.", labels=[*labels, "reason"]
        )
        errors = CounterMetricFamily("pitahaya_device_errors", "Device errors, by where.", labels=[*labels, "where"])
        latency: dict[tuple[str, str], dict[str, float]] = {}
        for scene, version, metric, key, value in totals:
            label_values = [scene, version or "default-policy"]
            if metric in scalars:
                scalars[metric].add_metric(label_values, value)
            elif metric == "fallbacks":
                fallbacks.add_metric([*label_values, key], value)
            elif metric == "errors":
                errors.add_metric([*label_values, key], value)
            elif metric == "latency_us":
                latency.setdefault((label_values[0], label_values[1]), {})[key] = value
        histogram = HistogramMetricFamily(
            "pitahaya_device_inference_latency_us", "Device inference latency (µs), all time.", labels=labels
        )
        for pair, counts in sorted(latency.items()):
            # Every bound of the current layout, plus the legacy layout's keys where old runtimes reported.
            every = {latency_key(index): 0.0 for index in range(len(LATENCY_US_BOUNDS) + 1)} | counts
            cumulative, buckets = 0.0, []
            for bucket in latency_buckets(every):
                cumulative += bucket.count
                buckets.append((bucket.key, cumulative))
            histogram.add_metric(list(pair), buckets, sum_value=None)
        uv = GaugeMetricFamily(
            "pitahaya_device_uv",
            "Distinct devices that reported, over the last complete minute, 5 minutes or hour (window).",
            labels=[*labels, "window"],
        )
        for scene, version, window, devices in recent:
            uv.add_metric([scene, version or "default-policy", window], devices)
        yield from scalars.values()
        yield from (fallbacks, errors, histogram, uv)


class RolloutCollector(Collector):
    """Where each channel's rollout stands, from SQL: its percent, and its quality gate's state and step.

    ``pitahaya_rollout_percent`` is the share of devices the live release reaches (0 while it
    is paused or killed); ``pitahaya_rollout_gate_state`` is 1 for the newest gate's state.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterable[Metric]:
        with self._sessions() as session:
            rollouts = live_rollouts(session=session)
        labels = ["scene", "channel"]
        percent = GaugeMetricFamily(
            "pitahaya_rollout_percent",
            "Share of devices the live release reaches.",
            labels=[*labels, "package_version"],
        )
        state = GaugeMetricFamily(
            "pitahaya_rollout_gate_state",
            "1 for the state of the channel's newest quality gate.",
            labels=[*labels, "state"],
        )
        step = GaugeMetricFamily("pitahaya_rollout_gate_step", "Index of the gate's current step.", labels=labels)
        for live, gate in rollouts:
            reaching = 0.0 if live.paused or live.kill_switch else live.rollout_percent
            percent.add_metric([live.scene, live.channel, live.package_version], reaching)
            if gate is not None:
                state.add_metric([live.scene, live.channel, gate.state], 1.0)
                step.add_metric([live.scene, live.channel], float(gate.step))
        yield from (percent, state, step)


ASGIApp = Callable[..., Any]


class ObservabilityMiddleware:
    """Request id, per-address rate limit for ``/api/``, metrics and one access log line per request."""

    def __init__(self, app: ASGIApp, *, metrics: RequestMetrics, limiter: RequestLimiter) -> None:
        self.app = app
        self.metrics = metrics
        self.limiter = limiter

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            if scope["path"].startswith("/api/") and scope.get("client"):
                try:
                    self.limiter.hit_ip(scope["client"][0])
                except RateLimitedError as e:
                    await error_response(e)(scope, receive, send_with_id)
                    return
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.duration.labels(method, route).observe(elapsed)
            access_logger.info(
                "%s %s %d",
                method,
                scope["path"],
                status,
                extra={
                    "method": method,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)


def _request_id(scope: dict[str, Any]) -> str:
    """The caller's ``X-Request-ID`` when it is short and plain, else a fresh one."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if 0 < len(candidate) <= 64 and set(candidate) <= _SAFE_REQUEST_ID_CHARS:
                return candidate
    return uuid.uuid4().hex
