"""``pitahaya fleet simulate``: a fleet of real client runtimes against a real registry."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pitahaya.cli._common import default_data_dir, emit_json, fail, stage_progress
from pitahaya.cli._options import DataDir, JsonFlag
from pitahaya.fleet.config import BadMode, Scenario

app = typer.Typer()
fleet_app = typer.Typer(help="Simulate a fleet of devices against a real registry.", no_args_is_help=True)
app.add_typer(fleet_app, name="fleet")


def _gate(value: str | None) -> dict[str, Any] | str | None:
    """``--gate``: a preset name, inline JSON, or a JSON file."""
    if value is None:
        return None
    if value.lstrip().startswith("{"):
        return dict(json.loads(value))
    path = Path(value)
    if path.is_file():
        return dict(json.loads(path.read_text()))
    return value


@fleet_app.command()
def simulate(
    devices: Annotated[int, typer.Option(min=1, help="Simulated devices (real runtimes, inline isolation).")] = 100,
    scenario: Annotated[
        Scenario, typer.Option(help="good: a good candidate; bad-canary: a misbehaving one behind a quality gate.")
    ] = "good",
    processes: Annotated[
        int, typer.Option(min=1, help="Worker processes hosting the devices (default: one per core).")
    ] = os.cpu_count() or 2,
    poll_interval: Annotated[float, typer.Option(help="Simulated seconds between a device's update checks.")] = 600.0,
    jitter: Annotated[float, typer.Option(help="Each poll delay is scaled by a factor in [1-j, 1+j].")] = 0.1,
    compression: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 20.0,
    flush_interval: Annotated[
        float, typer.Option(help="Simulated seconds between a device's telemetry batches.")
    ] = 300.0,
    idle_gap: Annotated[
        float, typer.Option(help="Mean simulated pause between a user's sittings (0: back to back).")
    ] = 600.0,
    gate: Annotated[
        str | None,
        typer.Option(
            help="Gate of each candidate's release: a preset, inline JSON or a JSON file "
            "(default: none for good, the fast preset from --canary-percent otherwise)."
        ),
    ] = None,
    canary_percent: Annotated[float, typer.Option(help="First step of the default gate, in percent.")] = 5.0,
    rollouts: Annotated[
        int, typer.Option(min=1, help="Good candidates released one after the other (counts the gate's false alarms).")
    ] = 1,
    bad_mode: Annotated[
        BadMode,
        typer.Option(help="How the bad canary misbehaves: far-off (predictions) or fallback (a share of calls fail)."),
    ] = "far-off",
    registry_workers: Annotated[int, typer.Option(min=1, help="Worker processes of the registry.")] = 1,
    rollout_timeout: Annotated[float, typer.Option(help="Longest real seconds one rollout is watched.")] = 300.0,
    seed: Annotated[int, typer.Option(help="Seed of the model, users, start times and jitter.")] = 0,
    package: Annotated[
        Path | None,
        typer.Option(help="Release this built package as the stable version instead of training one.", dir_okay=False),
    ] = None,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Run N real client runtimes against a registry this command starts, release a candidate, measure the rollout.

    Devices poll on a compressed clock (simulated = real x --compression); the real cost of each
    update check (HTTP, TUF, package load) is added to its simulated time. Reports adoption
    times, the registry's request rate and latency, telemetry, and for bad-canary whether the
    gate paused the release and how much of the fleet ran it.
    """
    from pitahaya.fleet import FleetConfig, FleetError, simulate_fleet
    from pitahaya.publisher import PublisherError

    try:
        config = FleetConfig(
            devices=devices,
            scenario=scenario,
            processes=processes,
            poll_interval_s=poll_interval,
            jitter=jitter,
            compression=compression,
            flush_interval_s=flush_interval,
            idle_gap_s=idle_gap,
            seed=seed,
            rollouts=rollouts,
            gate=_gate(gate),
            canary_percent=canary_percent,
            bad_mode=bad_mode,
            registry_workers=registry_workers,
            rollout_timeout_real_s=rollout_timeout,
            data_dir=data_dir,
            package=package,
        )
        with stage_progress(as_json) as progress:
            summary = simulate_fleet(config, progress=progress)
    except (ValueError, OSError, FleetError, PublisherError, RuntimeError) as e:
        raise fail(str(e)) from None
    if as_json:
        emit_json(summary)
    else:
        Console().print(_table(summary))  # the table is the result: stdout


def _seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:,.1f} s"


def _table(s: dict[str, Any]) -> Table:
    table = Table(title=f"pitahaya fleet simulate: {s['scenario']}, {s['devices']:,} devices")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_column("note")
    table.add_row(
        "clock",
        f"x{s['compression']:g}",
        f"poll every {s['poll_interval_s']:g} s ± {100 * s['jitter']:g} %, telemetry every {s['flush_interval_s']:g} s "
        f"(simulated); the loops reached x{s['scheduler']['effective_compression']:.1f}",
    )
    table.add_row(
        "release",
        f"{s['stable_version']} -> {s['release_version']}",
        json.dumps(s["gate"]) if s["gate"] else "100 % at once",
    )
    for share in ("50", "90", "99"):
        table.add_row(f"adoption p{share}", _seconds(s[f"adoption_p{share}_s"]), "simulated, from the release")
    table.add_row("longest poll delay", _seconds(s["longest_poll_delay_s"]), "interval x (1 + jitter)")
    if s["canary_percent"] is not None:
        table.add_row(
            "canary (first step)",
            f"{s['canary_percent']:g} %",
            f"{100 * s['canary_share']:.1f} % of these devices' buckets",
        )
        stopped = "yes" if s["paused"] else "no"
        table.add_row(
            "gate paused",
            stopped,
            ""
            if s["paused_at_s"] is None
            else f"{s['paused_at_s']:,.1f} s after the release ({s['paused_after_real_s']:,.1f} s real)",
        )
        table.add_row(
            "exposure max", f"{100 * s['exposure_max']:.1f} %", f"{100 * s['exposed_share']:.1f} % ran it at all"
        )
    if s["false_alarm_rate"] is not None:
        table.add_row(
            "false alarms", f"{s['false_alarms']} / {len(s['rollouts'])}", f"rate {100 * s['false_alarm_rate']:.1f} %"
        )
    req, reg = s["requests"], s["registry"]
    table.add_row(
        "requests (devices)",
        f"{req['rate_per_s']:,.1f} /s",
        f"{req['count']:,} in all, {req['failed']} failed (real time)",
    )
    table.add_row(
        "request latency (devices)",
        f"p99 {req['p99_ms']:,.1f} ms" if req["p99_ms"] is not None else "n/a",
        f"p50 {req['p50_ms'] or 0:,.1f} ms",
    )
    if reg["handling_p99_ms"] is not None:
        table.add_row("registry handling", f"p99 {reg['handling_p99_ms']:,.1f} ms", "from /metrics buckets (coarse)")
    tel = s["telemetry"]
    table.add_row("telemetry batches", f"{tel['batches_sent']:,}", f"{tel['batches_failed']:,} failed")
    table.add_row("telemetry events", f"{tel['events_delivered']:,}", f"{tel['events_dropped']:,} dropped")
    mem = s["memory"]
    table.add_row(
        "memory",
        f"{mem['peak_mib_total']:,.0f} MiB",
        f"{mem['kib_per_device']:,.0f} KiB per device, {s['processes']} processes",
    )
    real = s["real_s"]
    table.add_row(
        "real time",
        f"{real['total']:,.0f} s",
        f"fleet {real['fleet']:,.0f} s, scheduler max lag {s['scheduler']['max_lag_real_s']:.2f} s",
    )
    return table
