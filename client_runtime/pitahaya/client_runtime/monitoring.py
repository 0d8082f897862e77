"""What a runtime reports to: the host's hooks, the built-in telemetry reporter, or both.

`telemetry_reporter` turns ``Runtime(telemetry=...)`` into a `TelemetryReporter` (or none);
`runtime_hooks` puts it beside the host's own hooks (`CompositeHooks`), so the runtime calls
one `Hooks` object and never cares how many listen.
"""

from __future__ import annotations

import logging

from pitahaya.client_runtime.hooks import CompositeHooks, Hooks
from pitahaya.client_runtime.telemetry import TelemetryConfig, TelemetryReporter

logger = logging.getLogger("pitahaya.client_runtime")

#: What ``Runtime(telemetry=...)`` accepts; see `pitahaya.client_runtime.Runtime`.
Telemetry = TelemetryConfig | TelemetryReporter | bool | None
#: The missing-token warning is logged once per process, not once per runtime.
_warned_no_token = False


def telemetry_reporter(
    registry_url: str | None, telemetry: Telemetry, *, scene: str, device_id: str
) -> TelemetryReporter | None:
    """The reporter ``telemetry`` asks for, or None when reporting is off or cannot work.

    A `TelemetryReporter` is used as is; True means the default `TelemetryConfig`; a config
    with no token (the registry refuses telemetry without a client token) or no registry URL
    builds none, the former with one warning per process.
    """
    global _warned_no_token
    if isinstance(telemetry, TelemetryReporter):
        return telemetry
    if not telemetry or registry_url is None:
        return None
    if telemetry is True:
        telemetry = TelemetryConfig()
    if telemetry.token is None:
        if not _warned_no_token:
            _warned_no_token = True
            logger.warning(
                "telemetry is on by default but has no client token, so nothing is reported: "
                "pass telemetry=TelemetryConfig(token=...) (role client), or telemetry=False"
            )
        return None
    return TelemetryReporter.from_config(registry_url, telemetry, scene=scene, device_id=device_id)


def runtime_hooks(hooks: Hooks | None, reporter: TelemetryReporter | None) -> Hooks:
    """The one `Hooks` object a runtime calls: the host's, the reporter, both, or the no-op default."""
    if reporter is None:
        return hooks or Hooks()
    if hooks is None:
        return reporter
    return CompositeHooks(hooks, reporter)
