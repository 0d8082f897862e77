"""``pitahaya up | status | down``: the local stack (MLflow tracking server, registry,
optionally PostgreSQL and SeaweedFS) as background processes that outlive the command; see `pitahaya.cli._stack`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pitahaya.cli._common import console, default_data_dir, emit_json, fail, report
from pitahaya.cli._options import DataDir, JsonFlag
from pitahaya.cli._stack import (
    Service,
    StackError,
    StackOptions,
    forget,
    load,
    passes,
    start,
    state_path,
    stop_services,
)

app = typer.Typer()

Port = Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1; 0 picks a free one.")]


def _describe(services: list[Service]) -> dict[str, Any]:
    """Each service's state now, checked (pid alive, health answered), as ``status --json`` prints it."""
    described = {}
    for service in services:
        alive = service.alive()
        described[service.name] = {
            "pid": service.pid,
            "pids": [p.pid for p in service.processes],
            "alive": alive,
            "healthy": alive and passes(service.health),
            "url": service.url,
            "health": service.health,
            "log": str(service.log),
            "started_at": service.started_at,
        }
    return described


def _lines(described: dict[str, Any]) -> str:
    return "\n".join(
        f"{name:<9} {'healthy' if s['healthy'] else 'UNHEALTHY' if s['alive'] else 'DOWN':<9} {s['url']:<28} "
        f"pid {s['pid']}  log {s['log']}"
        for name, s in described.items()
    )


@app.command()
def up(
    registry_port: Port = 0,
    mlflow_port: Port = 0,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes of each server.")] = 1,
    with_postgres: Annotated[
        bool, typer.Option(help="Keep the registry's metadata in a local PostgreSQL cluster (needs initdb, postgres).")
    ] = False,
    with_s3: Annotated[
        bool, typer.Option(help="Keep the registry's blobs in a local SeaweedFS S3 server (needs weed).")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds each server may take to answer its health check.")
    ] = 120.0,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Start an MLflow tracking server and the registry in the background (127.0.0.1; logs in DATA_DIR/stack/)."""
    services = load(data_dir)
    if any(service.alive() for service in services):
        described = _describe(services)
        sick = [name for name, s in described.items() if not s["healthy"]]
        if sick:
            raise fail(f"a stack runs from {state_path(data_dir)} but {', '.join(sick)} is not healthy; "
                       "run `pitahaya down` first")  # fmt: skip
        report({"already_running": True, "services": described}, as_json, f"already running:\n{_lines(described)}")
        return
    forget(data_dir)  # a stale state file: its processes are all gone
    options = StackOptions(registry_port, mlflow_port, workers, with_postgres, with_s3, timeout)
    try:
        services = start(data_dir, options)
    except StackError as e:
        raise fail(str(e)) from None
    described = _describe(services)
    urls = {s.name: s.url for s in services}
    report(
        {"already_running": False, "services": described},
        as_json,
        f"started:\n{_lines(described)}\n"
        f"export MLFLOW_TRACKING_URI={urls['mlflow']} PITAHAYA_REGISTRY_URL={urls['registry']}",
    )


@app.command()
def status(data_dir: DataDir = default_data_dir(), as_json: JsonFlag = False) -> None:
    """Show each service `pitahaya up` started (alive, healthy, URL, log); exit 1 when one is not healthy."""
    described = _describe(load(data_dir))
    running = any(s["alive"] for s in described.values())
    healthy = all(s["healthy"] for s in described.values())
    if as_json:
        emit_json({"running": running, "healthy": healthy, "services": described})
    else:
        console.print(_lines(described) if described else f"nothing runs (no {state_path(data_dir)})")
    if not healthy:
        raise typer.Exit(1)


@app.command()
def down(
    timeout: Annotated[
        float, typer.Option(min=0, help="Seconds each process may take after SIGTERM, then SIGKILL.")
    ] = 15.0,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Stop everything `pitahaya up` started (SIGTERM, then SIGKILL); never a pid reused since."""
    services = load(data_dir)
    survivors = stop_services(services, timeout_s=timeout)
    if survivors:
        raise fail(f"still running after SIGKILL: pids {', '.join(str(p.pid) for p in survivors)}; "
                   f"kept {state_path(data_dir)}")  # fmt: skip
    forget(data_dir)
    names = [s.name for s in services]
    report({"stopped": names}, as_json, f"stopped {', '.join(names)}" if names else "nothing was running")
