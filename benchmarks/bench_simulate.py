"""Benchmark the preload simulator: simulated views per second, fixed and oracle policies.

Held-out generated sessions at 1.0 Mbps play one lane per session per trace class over
generated traces (the `pitahaya simulate` defaults), through `play` with one policy at a
time, at the default time step and at half of it. The baseline the ratio is taken to is the
same fixed-policy playback run *one lane at a time* (no lockstep batching) on the first
``--serial-lanes`` lanes: what the lockstep NumPy design buys. Times are wall-clock here.

Run: ``.venv/bin/python benchmarks/bench_simulate.py [--json]``
"""

from __future__ import annotations

import argparse
import json
import time

from pitahaya.cli.commands.simulate import default_generated_sessions
from pitahaya.simulation import (
    TRACE_CLASSES,
    FixedPolicy,
    OraclePolicy,
    PlaybackConfig,
    at_bitrate,
    generated_traces,
    play,
)


def views_per_second(lanes, traces, offsets, policy, config: PlaybackConfig) -> tuple[float, int, float]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    log = play(lanes, traces, policy, config, offsets)
    seconds = time.perf_counter() - started
    return len(log) / seconds, len(log), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serial-lanes", type=int, default=20, help="Lanes of the one-at-a-time baseline.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    sessions = at_bitrate(default_generated_sessions(), 1_000_000)
    lanes, traces, offsets = [], [], []
    for cls in TRACE_CLASSES:
        class_traces = generated_traces(cls)
        for n, session in enumerate(sessions):
            lanes.append([session])
            traces.append(class_traces[n % len(class_traces)])
            offsets.append(float(37 * n % 600))
    out: dict[str, float] = {"lanes": len(lanes), "views": sum(len(s.views) for lane in lanes for s in lane)}
    for dt in (0.05, 0.025):
        config = PlaybackConfig(dt_s=dt)
        for name, policy in (("fixed", FixedPolicy()), ("oracle", OraclePolicy())):
            rate, _, seconds = views_per_second(lanes, traces, offsets, policy, config)
            out[f"{name}_dt{dt}_views_per_s"] = rate
            out[f"{name}_dt{dt}_seconds"] = seconds
    k = min(args.serial_lanes, len(lanes))
    played, started = 0, time.perf_counter()
    for r in range(k):
        played += len(play([lanes[r]], [traces[r]], FixedPolicy(), PlaybackConfig(), [offsets[r]]))
    out["fixed_dt0.05_one_lane_at_a_time_views_per_s"] = played / (time.perf_counter() - started)
    out["lockstep_speedup_vs_one_lane_at_a_time"] = (
        out["fixed_dt0.05_views_per_s"] / out["fixed_dt0.05_one_lane_at_a_time_views_per_s"]
    )
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for key, value in out.items():
        print(f"{key:<48} {value:>12,.2f}")


if __name__ == "__main__":
    main()
