"""The simulator's public API is pinned: it grows only on purpose."""

from pitahaya.training import simulation


def test_public_api_is_pinned_and_sorted() -> None:
    assert simulation.__all__ == sorted(simulation.__all__)
    assert set(simulation.__all__) == {
        "FixedPolicy", "HostStep", "ModelPolicy", "NetworkSourceError", "OraclePolicy", "PlayDecision", "PlaybackConfig",
        "PlaybackLog", "Policy", "Session", "SessionSourceError", "SimulationConfig", "SimulationError",
        "SimulationResult", "TRACE_CLASSES", "Trace", "at_bitrate", "dashlet_sessions", "generated_sessions",
        "generated_traces", "held_out_from", "host_steps", "kuairand_sessions", "local_runtime_factory", "log_simulation",
        "mmgc_traces", "play", "pull_package", "simulate",
    }  # fmt: skip
