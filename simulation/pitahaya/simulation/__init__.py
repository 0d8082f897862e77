"""Preload replay simulator: do predicted watch times save bytes without costing starts or stalls?

Replays held-out viewing sessions through a playback model (start-up threshold, buffer-ahead,
in-order preload queue on spare bandwidth, stall accounting) over bandwidth traces, with three
policies: the fixed 3 x 800 KB default, the model running in the real client runtime, and an
oracle that knows every watch time. See `simulate` for the workflow.
"""

from pitahaya.simulation.errors import (
    NetworkSourceError,
    SessionSourceError,
    SimulationError,
)
from pitahaya.simulation.networks import (
    TRACE_CLASSES,
    Trace,
    generated_traces,
    mmgc_traces,
)
from pitahaya.simulation.playback import (
    PlaybackConfig,
    PlaybackLog,
    PlayDecision,
    Policy,
    play,
)
from pitahaya.simulation.policies import (
    FixedPolicy,
    HostStep,
    ModelPolicy,
    OraclePolicy,
    PlannedOraclePolicy,
    host_steps,
    local_runtime_factory,
    pull_package,
)
from pitahaya.simulation.sessions import (
    Session,
    at_bitrate,
    dashlet_sessions,
    generated_sessions,
    kuairand_sessions,
)
from pitahaya.simulation.simulator import (
    SimulationConfig,
    SimulationResult,
    log_simulation,
    simulate,
)

__all__ = [
    "FixedPolicy",
    "HostStep",
    "ModelPolicy",
    "NetworkSourceError",
    "OraclePolicy",
    "PlannedOraclePolicy",
    "PlayDecision",
    "PlaybackConfig",
    "PlaybackLog",
    "Policy",
    "Session",
    "SessionSourceError",
    "SimulationConfig",
    "SimulationError",
    "SimulationResult",
    "TRACE_CLASSES",
    "Trace",
    "at_bitrate",
    "dashlet_sessions",
    "generated_sessions",
    "generated_traces",
    "host_steps",
    "kuairand_sessions",
    "local_runtime_factory",
    "log_simulation",
    "mmgc_traces",
    "play",
    "pull_package",
    "simulate",
]
