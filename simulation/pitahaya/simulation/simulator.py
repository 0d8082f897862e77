"""One simulation: sessions x networks x policies -> figures per trace class and overall, in MLflow.

Workflow::

    sessions = at_bitrate(generated_sessions(log, test_from=cut), 1_000_000)  # or kuairand_/dashlet_sessions
    networks = {c: generated_traces(c) for c in TRACE_CLASSES}      # or mmgc_traces(root, c)
    model = ModelPolicy(local_runtime_factory(archive, cache))      # or pull_package(...) first
    result = simulate(sessions, networks, model=model)
    print(result.table())                                           # the seed's table
    log_simulation(result, tracking_uri=...)                        # headline metrics, tables, plots

Every session plays once per trace class, on a trace and from a start offset drawn from ``seed``;
fixed, oracle and model policies replay the very same lanes (in one lockstep run), so their
differences are paired. The model's runtimes see each user's sessions in time order (see
`ModelPolicy`), whatever lane plays them.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from pitahaya.client_runtime import PolicyKnobs
from pitahaya.simulation.networks import Trace
from pitahaya.simulation.playback import (
    PlaybackConfig,
    PlaybackLog,
    PlayDecision,
    Policy,
    play,
)
from pitahaya.simulation.policies import FixedPolicy, ModelPolicy, OraclePolicy, PlannedOraclePolicy
from pitahaya.simulation.report import (
    SessionFigures,
    describe,
    frontier_plot,
    session_figures,
    versus,
    versus_plot,
)
from pitahaya.simulation.sessions import Session

#: Margins swept for the frontier plot (1.0 is the headline policy).
DEFAULT_MARGINS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0)


@dataclass(frozen=True)
class SimulationConfig:
    """What to replay and how.

    Attributes:
        playback: Player knobs (time step, start-up threshold, buffer-ahead).
        margins: Aggressiveness values swept for the frontier (model and oracle).
        seed: Seed of trace choice, start offsets and bootstrap.
        sessions_source: Label of where the sessions came from (logged).
        network_source: Label of where the traces came from (logged).
        bitrate_bps: Video bitrate the sessions were set to, if one (logged).
    """

    playback: PlaybackConfig = field(default_factory=PlaybackConfig)
    margins: tuple[float, ...] = DEFAULT_MARGINS
    seed: int = 0
    sessions_source: str = "generated"
    network_source: str = "generated"
    bitrate_bps: float | None = 1_000_000.0


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """Figures of one simulation.

    Attributes:
        config: What was run.
        summary: JSON-ready: ``policies`` (per class and overall, every metric with its CI),
            ``versus_fixed`` (the seed's table per policy and class), ``frontier``, ``runtime``
            (decisions, fallbacks, online MAE) and ``speed``.
        figures: Per policy, per-session figures (rows of all lanes of all classes).
        session_class: Trace class of each session row.
    """

    config: SimulationConfig
    summary: dict[str, Any]
    figures: dict[str, SessionFigures]
    session_class: np.ndarray

    def table(self) -> str:
        """The seed's table as text: change vs fixed 3 x 800 KB, overall then per class."""
        lines = [
            f"{'policy':<10} {'class':<8} {'preload bw':>18} {'total bw':>18} {'slow starts':>18} {'stall time':>18}"
        ]
        for policy, by_class in self.summary["versus_fixed"].items():
            for cls, row in by_class.items():
                cells = []
                for label in (
                    "preload bandwidth",
                    "total bandwidth",
                    "slow starts",
                    "stall time",
                ):
                    r = row[label]
                    cells.append(
                        "n/a"
                        if r["change"] is None
                        else f"{100 * r['change']:+.1f}% [{100 * r['ci_low']:+.0f},{100 * r['ci_high']:+.0f}]"
                    )
                lines.append(f"{policy:<10} {cls:<8} " + " ".join(f"{c:>18}" for c in cells))
        return "\n".join(lines)


_PER_VIDEO = tuple(f.name for f in fields(PlaybackLog) if f.name != "sim_time_s")


class _Combined:
    """Several policies over consecutive blocks of ``block`` lanes, so they share one lockstep run."""

    name = "combined"

    def __init__(self, policies: Sequence[Policy], block: int) -> None:
        self.policies, self.block = list(policies), block

    def begin(self, lanes: Sequence[Sequence[Session]]) -> None:
        for k, policy in enumerate(self.policies):
            policy.begin(lanes[k * self.block : (k + 1) * self.block])

    def decide(self, lane: int, session: int, index: int) -> PlayDecision:
        return self.policies[lane // self.block].decide(lane % self.block, session, index)

    def end(self, lane: int, session: int) -> None:
        self.policies[lane // self.block].end(lane % self.block, session)


def simulate(
    sessions: Sequence[Session],
    networks: Mapping[str, Sequence[Trace]],
    *,
    model: ModelPolicy | None = None,
    knobs: PolicyKnobs | None = None,
    config: SimulationConfig = SimulationConfig(),
) -> SimulationResult:
    """Replay ``sessions`` over every trace class with the fixed, oracle, oracle plan and (if given) model policies.

    Args:
        sessions: Held-out sessions (sizes as they should be played; see `at_bitrate`).
        networks: Trace class -> its traces.
        model: The model policy (its runtimes are run once; margins reuse the decisions).
        knobs: The planner's knobs for the "oracle plan" policy (true watch times through the
            device's planner): the model's package's, or by default the runtime's.
        config: Knobs.

    Raises:
        ValueError: no sessions or no traces.
    """
    if not sessions or not networks or any(not t for t in networks.values()):
        raise ValueError("need at least one session and one trace per class")
    rng = np.random.default_rng(config.seed)
    ordered = sorted(sessions, key=lambda s: (s.user_id, s.views[0].start_ts))
    base_traces: list[Trace] = []
    offsets: list[float] = []
    session_class_list: list[str] = []
    for cls, class_traces in networks.items():
        for n in range(len(ordered)):
            trace = class_traces[(n + int(rng.integers(len(class_traces)))) % len(class_traces)]
            base_traces.append(trace)
            offsets.append(float(rng.uniform(0, len(trace.bandwidth_bps) * trace.step_s)))
            session_class_list.append(cls)
    session_class = np.array(session_class_list)
    n_sessions = len(session_class)
    base_lanes = [[s] for _ in networks for s in ordered]

    policies: dict[str, tuple[str, float, Policy]] = {"fixed": ("fixed", 1.0, FixedPolicy())}
    for margin in config.margins:
        oracle = OraclePolicy(margin, startup_s=config.playback.startup_s)
        policies[oracle.name] = ("oracle", margin, oracle)
        planned = PlannedOraclePolicy(knobs, margin, startup_s=config.playback.startup_s)
        policies[planned.name] = ("oracle plan", margin, planned)
        if model is not None:
            policy = model.with_margin(margin)
            policies[policy.name] = ("model", margin, policy)
    if model is not None:
        started = time.perf_counter()
        model.predict(ordered)
        predict_s = time.perf_counter() - started

    # Every policy replays the same lanes; all of them advance in one lockstep run.
    names = list(policies)
    combined = _Combined([policies[n][2] for n in names], len(base_lanes))
    started = time.perf_counter()
    log = play(
        base_lanes * len(names),
        base_traces * len(names),
        combined,
        config.playback,
        offsets * len(names),
    )
    play_s = time.perf_counter() - started
    figures = {}
    for k, name in enumerate(names):
        rows = (log.session >= k * n_sessions) & (log.session < (k + 1) * n_sessions)
        part = PlaybackLog(**{f: getattr(log, f)[rows] for f in _PER_VIDEO}, sim_time_s=log.sim_time_s)
        part = replace(part, session=part.session - k * n_sessions)
        figures[name] = session_figures(part, n_sessions)
    played_views = len(log)

    classes = list(networks)
    by_class = {c: session_class == c for c in classes}
    groups = {"overall": np.ones(n_sessions, dtype=bool)} | by_class
    headline = [n for n, (kind, margin, _) in policies.items() if margin == 1.0]
    # One paired bootstrap per policy over all sessions, shared by its frontier row and its "overall" column.
    overall = {n: versus(figures[n], figures["fixed"], config.seed) for n in policies if n != "fixed"}
    summary: dict[str, Any] = {
        "config": _config_dict(config),
        "sessions": len(sessions),
        "lanes": len(base_lanes),
        "views": int(sum(len(s.views) for s in sessions)),
        "classes": classes,
        "policies": {n: {g: describe(figures[n].subset(m), config.seed) for g, m in groups.items()} for n in headline},
        "versus_fixed": {
            n: {"overall": overall[n]}
            | {c: versus(figures[n].subset(m), figures["fixed"].subset(m), config.seed) for c, m in by_class.items()}
            for n in headline
            if n != "fixed"
        },
        "frontier": [
            _frontier_row(kind, margin, overall[n]) for n, (kind, margin, _) in policies.items() if kind != "fixed"
        ],
        "speed": {
            "simulated_views": played_views,
            "seconds": play_s,
            "views_per_second": played_views / play_s,
        },
    }
    if model is not None:
        s = model.stats
        summary["runtime"] = {
            "decisions": s.decisions,
            "model_decisions": s.model_decisions,
            "fallback_reasons": dict(s.fallback_reasons),
            "online_mae_s": s.abs_error_sum_s / s.model_decisions if s.model_decisions else None,
            "mean_latency_us": 1e6 * s.latency_sum_s / s.decisions if s.decisions else None,
            "predict_seconds": predict_s,
        }
    return SimulationResult(config, summary, figures, session_class)


def _frontier_row(kind: str, margin: float, vs_fixed: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One point of the frontier: a policy at a margin, its total bytes saved and its changes vs fixed."""
    change = vs_fixed["total bandwidth"]["change"]
    return {
        "policy": kind,
        "margin": margin,
        "total_bytes_saved": None if change is None else -change,
        "slow_starts_change": vs_fixed["slow starts"]["change"],
        "stall_time_change": vs_fixed["stall time"]["change"],
    }


def _config_dict(config: SimulationConfig) -> dict[str, Any]:
    out = asdict(config)
    out["margins"] = list(config.margins)
    return out


def _flat(prefix: str, tree: Mapping[str, Any], out: dict[str, float]) -> dict[str, float]:
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            _flat(name, value, out)
        elif isinstance(value, int | float) and not isinstance(value, bool) and value == value:
            out[name.replace(" ", "_")] = float(value)
    return out


#: Seed-table figures logged as headline metrics, as (`TABLE` label, metric stem).
_HEADLINE: tuple[tuple[str, str], ...] = (
    ("preload bandwidth", "preload_bytes"),
    ("total bandwidth", "total_bytes"),
    ("stall time", "stall_time"),
    ("slow starts", "slow_starts"),
)


def headline_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The few figures a simulation run shows as MLflow metrics (all trace classes together).

    ``sessions`` and ``views``; for the model policy (the oracle when there is no model)
    ``<policy>_<figure>_change`` vs fixed 3 x 800 KB with its ``_ci_low`` / ``_ci_high`` (95%
    paired bootstrap) for preload bytes, total bytes, stall time and slow starts; the oracle's
    changes beside the model's as the ceiling, and the oracle plan's (``oracle_plan_*``: true watch
    times through the device's planner); and the model's online MAE. A change of -0.25 is
    25% less than fixed; undefined changes are left out. Everything else goes to the tables.
    """
    out: dict[str, float] = {
        "sessions": float(summary["sessions"]),
        "views": float(summary["views"]),
    }
    versus_fixed = summary["versus_fixed"]
    main = "model" if "model" in versus_fixed else "oracle"
    for policy in ("model", "oracle", "oracle plan"):
        if policy not in versus_fixed:
            continue
        overall = versus_fixed[policy]["overall"]
        prefix = policy.replace(" ", "_")
        for label, stem in _HEADLINE:
            row = overall[label]
            if row["change"] is None:
                continue
            out[f"{prefix}_{stem}_change"] = float(row["change"])
            if policy == main:
                out[f"{prefix}_{stem}_change_ci_low"] = float(row["ci_low"])
                out[f"{prefix}_{stem}_change_ci_high"] = float(row["ci_high"])
    mae = summary.get("runtime", {}).get("online_mae_s")
    if mae is not None:
        out["model_online_mae_s"] = float(mae)
    return out


def result_tables(summary: Mapping[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """The full result as column tables (name -> column -> values), for `MlflowClient.log_table`.

    ``versus_fixed``: one row per policy, trace class and figure of the seed's table (change,
    CI, both totals); ``policies``: one row per policy, class and per-session metric (total,
    mean and its CI); ``frontier``: one row per policy and margin.
    """
    versus_rows = [
        {"policy": policy, "trace_class": cls, "figure": label, **row}
        for policy, by_class in summary["versus_fixed"].items()
        for cls, table in by_class.items()
        for label, row in table.items()
    ]
    policy_rows = [
        {
            "policy": policy,
            "trace_class": cls,
            "metric": metric,
            **{k: row.get(k) for k in ("total", "mean", "ci_low", "ci_high", "per_view")},
        }
        for policy, by_class in summary["policies"].items()
        for cls, table in by_class.items()
        for metric, row in table.items()
    ]

    def columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
        names = list(dict.fromkeys(k for row in rows for k in row))
        return {name: [row.get(name) for row in rows] for name in names}

    return {
        "versus_fixed": columns(versus_rows),
        "policies": columns(policy_rows),
        "frontier": columns(list(summary["frontier"])),
    }


def log_simulation(
    result: SimulationResult,
    *,
    tracking_uri: str,
    experiment: str = "pitahaya-simulations",
    artifact_location: str | None = None,
) -> str:
    """Log one simulation as an MLflow run: headline metrics, the full result as tables, plots.

    Params (the config) and the `headline_metrics` go in one ``log_batch`` call (at step 0: a
    simulation is one point, not a series). The full result goes to table artifacts
    (`result_tables`: ``tables/versus_fixed.json``, ``tables/policies.json``,
    ``tables/frontier.json``, shown in the run's Artifacts tab), plus ``table.txt`` (the seed's
    table), ``summary.json`` (everything), ``versus_fixed.png`` (changes with CI whiskers) and
    ``frontier.png`` (bytes saved vs slow starts across margins).

    Args:
        result: The simulation.
        tracking_uri: MLflow tracking URI.
        experiment: Experiment of the run (created if missing).
        artifact_location: Artifact root of the experiment if it has to be created (as the
            training job's), so plots land next to the store rather than in the working directory.

    Returns:
        The run id.
    """
    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = (
        found.experiment_id if found else client.create_experiment(experiment, artifact_location=artifact_location)
    )
    run = client.create_run(
        experiment_id,
        run_name=f"simulate {result.config.sessions_source} over {result.config.network_source}",
    )
    run_id = run.info.run_id
    try:
        params: dict[str, object] = {
            **_flat("", {k: v for k, v in result.summary["config"].items() if k != "margins"}, {}),
            "sessions_source": result.config.sessions_source,
            "network_source": result.config.network_source,
            "margins": ",".join(f"{m:g}" for m in result.config.margins),
        }
        now_ms = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, now_ms, 0) for key, value in sorted(headline_metrics(result.summary).items())],
            params=[Param(key, str(value)) for key, value in sorted(params.items())],
        )
        for name, table in result_tables(result.summary).items():
            client.log_table(run_id, table, f"tables/{name}.json")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            points: dict[str, list[tuple[float, float, float]]] = {}
            for row in result.summary["frontier"]:
                if row["total_bytes_saved"] is not None and row["slow_starts_change"] is not None:
                    points.setdefault(row["policy"], []).append(
                        (
                            row["margin"],
                            row["total_bytes_saved"],
                            row["slow_starts_change"],
                        )
                    )
            frontier_plot(points, str(folder / "frontier.png"))
            versus_plot(
                {p: rows["overall"] for p, rows in result.summary["versus_fixed"].items()},
                str(folder / "versus_fixed.png"),
            )
            (folder / "table.txt").write_text(result.table() + "\n")
            (folder / "summary.json").write_text(json.dumps(result.summary, indent=2, sort_keys=True, default=str))
            client.log_artifacts(run_id, str(folder))
        client.set_terminated(run_id)
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    return run_id
