"""Feed a real registry with device telemetry through the client runtime's own `TelemetryReporter`.

`feed_fleet` plays a few devices per package version over the last complete minutes: each
device's reporter gets inferences (successes, ``timeout`` and ``model_error`` fallbacks),
joined outcomes, views and errors stamped inside those minutes (its ``wall_clock`` seam), then
POSTs them in one batch, exactly as a device does after being offline a while. One device per
version has a queue a few events too small, so ``dropped_events`` is reported too.

Import by name (``from fleet_feed import feed_fleet``): the root ``tests`` folder is on the
pytest ``pythonpath``.
"""

from __future__ import annotations

import time

import httpx
import numpy as np

from pitahaya.client_runtime import View
from pitahaya.client_runtime.hooks import InferenceEvent
from pitahaya.client_runtime.telemetry import TelemetryReporter


def client_token(url: str, admin_token: str, name: str = "fleet") -> str:
    """A new ``client`` token of the registry at ``url``."""
    response = httpx.post(
        f"{url}/api/v1/tokens",
        json={"name": name, "role": "client"},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    response.raise_for_status()
    return str(response.json()["secret"])


def feed_fleet(
    url: str,
    token: str,
    *,
    scene: str = "watch_time",
    versions: tuple[str, ...] = ("1.0.0",),
    devices: int = 3,
    minutes: int = 3,
    decisions_per_minute: int = 20,
    seed: int = 0,
) -> int:
    """Send ``devices`` devices' telemetry per version for the ``minutes`` complete minutes before now.

    Later versions in ``versions`` are made slower and a little less reliable, so charts differ.

    Returns:
        The number of batches the registry accepted.
    """
    rng = np.random.default_rng(seed)
    this_minute = int(time.time() // 60) * 60
    accepted = 0
    prediction_id = 0
    for v, version in enumerate(versions):
        for d in range(devices):
            clock = [0.0]
            reporter = TelemetryReporter(
                url,
                token,
                scene=scene,
                device_id=f"device-{version}-{d}",
                max_queue=minutes * 3 * decisions_per_minute - 3 if d == 0 else 100_000,  # d0 drops a few
                wall_clock=lambda clock=clock: clock[0],
                timeout_s=120.0,  # the shared test machine can be slow; a device's default is 10 s
            )
            for m in range(minutes, 0, -1):
                clock[0] = this_minute - 60 * m + 5 + d
                for _ in range(decisions_per_minute):
                    prediction_id += 1
                    draw = rng.uniform()
                    reason = "ok" if draw > 0.05 * (1 + v) else ("timeout" if draw < 0.02 else "model_error")
                    latency_s = float(rng.lognormal(np.log(300e-6 * (1 + v)), 0.4))
                    reporter.on_inference(
                        InferenceEvent(prediction_id, scene, version, 5, latency_s, reason == "ok", reason)
                    )
                    predicted = float(rng.uniform(2, 20))
                    reporter.on_outcome(prediction_id, predicted, predicted + float(rng.normal(0, 3 + v)))
                    reporter.on_view(View(f"user-{d}", f"video-{prediction_id}", clock[0], 30.0, predicted, 3_000_000))
                if m == 1:
                    reporter.on_error("predict", RuntimeError("a test error"))
            accepted += any(reporter.flush() for _ in range(3))  # a failed batch is kept and retried
    return accepted
