"""``pitahaya simulate``: replay held-out sessions over bandwidth traces, fixed vs oracle vs model."""

from __future__ import annotations

import os
import tempfile
from contextlib import nullcontext
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from pitahaya.cli._common import (
    REPO_ROOT,
    artifact_root,
    console,
    default_data_dir,
    emit_json,
    fail,
    stdout_kept_for_json,
    tracking_uri,
)
from pitahaya.cli._options import DataDir, JsonFlag

if TYPE_CHECKING:
    from pitahaya.client_runtime import PolicyKnobs
    from pitahaya.simulation import ModelPolicy, Session, Trace

app = typer.Typer()


class SessionSource(StrEnum):
    generated = "generated"
    kuairand = "kuairand"
    dashlet = "dashlet"


class NetworkSource(StrEnum):
    generated = "generated"
    mmgc = "mmgc"


def default_datasets() -> Path:
    """``$PITAHAYA_DATASETS`` or the ``shared/data`` folder next to the checkout."""
    return Path(os.environ.get("PITAHAYA_DATASETS", REPO_ROOT.parent / "shared" / "data"))


def default_generated_sessions() -> list[Session]:
    """``--sessions generated``: the held-out sessions of a generated 20,000-view log of 200 users (seed 7).

    The simulator takes the log from its caller (it does not depend on the training library);
    the period it replays is the one the training job's time split would hold out of that log.
    """
    from pitahaya.simulation import generated_sessions
    from pitahaya.training import GeneratorConfig, generate_views, held_out_from

    views = generate_views(GeneratorConfig(n_views=20_000, n_users=200, seed=7))
    return generated_sessions(views, test_from=held_out_from(views))


def _sessions(source: SessionSource, datasets: Path, bitrate_bps: float, max_sessions: int | None) -> list[Session]:
    from pitahaya.simulation import at_bitrate, dashlet_sessions, kuairand_sessions

    if source is SessionSource.kuairand:
        found = kuairand_sessions(datasets / "kuairand-27k-likehate-subset", bitrate_bps=bitrate_bps)
    elif source is SessionSource.dashlet:
        count = max_sessions or 200
        found = dashlet_sessions(datasets / "dashlet-swipe-curves", sessions=count, bitrate_bps=bitrate_bps)
    else:
        found = default_generated_sessions()
    return at_bitrate(found[:max_sessions], bitrate_bps)


def _networks(source: NetworkSource, datasets: Path) -> dict[str, list[Trace]]:
    from pitahaya.simulation import TRACE_CLASSES, generated_traces, mmgc_traces

    if source is NetworkSource.mmgc:
        return {c: mmgc_traces(datasets / "mmgc-network-traces", c) for c in TRACE_CLASSES}
    return {c: generated_traces(c) for c in TRACE_CLASSES}


def _model(
    package: Path | None, registry: str | None, trusted_root: Path | None, cache: Path
) -> tuple[ModelPolicy | None, PolicyKnobs | None]:
    """The model policy on a local archive, or on the one a registry releases (pulled through TUF), and its planner knobs."""
    from pitahaya.client_runtime import PolicyKnobs, read_package
    from pitahaya.simulation import ModelPolicy, local_runtime_factory, pull_package

    if package is not None and registry is not None:
        raise ValueError("give --package or --registry, not both")
    if registry is not None:
        if trusted_root is None:
            raise ValueError("--registry needs --trusted-root (the registry's TUF root.json)")
        package = pull_package(registry, trusted_root.read_bytes(), cache / "pulled")
    if package is None:
        return None, None
    if not package.is_file():
        raise FileNotFoundError(f"no package archive at {package}")
    manifest = read_package(package.read_bytes()).manifest
    knobs = PolicyKnobs.from_policy(manifest.policy, manifest.quantiles)
    return ModelPolicy(local_runtime_factory(package, cache / "devices")), knobs


def change_with_ci(row: dict[str, Any]) -> str:
    """One ``versus_fixed`` row as a table cell: the change in percent and its 95 % CI (also the demo's)."""
    if row["change"] is None:
        return "n/a"
    return f"{100 * row['change']:+.1f}% [{100 * row['ci_low']:+.0f}, {100 * row['ci_high']:+.0f}]"


def _table(summary: dict[str, Any]) -> Table:
    """The seed's table: change vs fixed 3 x 800 KB with 95% CIs, per policy, overall then per class."""
    labels = ("preload bandwidth", "total bandwidth", "slow starts", "stall time")
    table = Table(title="vs fixed 3 x 800 KB (95% CI over sessions)")
    for column in ("policy", "class", *labels):
        table.add_column(column, justify="left" if column in ("policy", "class") else "right")
    for policy, by_class in summary["versus_fixed"].items():
        for cls, row in by_class.items():
            table.add_row(policy, cls, *(change_with_ci(row[label]) for label in labels))
    return table


@app.command()
def simulate(
    sessions: Annotated[
        SessionSource, typer.Option(help="Held-out generated logs, KuaiRand views or Dashlet swipe curves.")
    ] = SessionSource.generated,
    network: Annotated[
        NetworkSource, typer.Option(help="Generated bandwidth traces or the MMGC ones (all four classes).")
    ] = NetworkSource.generated,
    bitrate_bps: Annotated[float, typer.Option(help="Video bitrate every file is encoded at.")] = 1_000_000.0,
    package: Annotated[
        Path | None, typer.Option(help="A built package archive for the model policy (omitted: no model).")
    ] = None,
    registry: Annotated[
        str | None, typer.Option(help="Pull the released package from this registry instead of --package.")
    ] = None,
    trusted_root: Annotated[
        Path | None, typer.Option(help="The registry's TUF root.json, needed with --registry.")
    ] = None,
    margin: Annotated[
        list[float] | None,
        typer.Option(help="Aggressiveness (x predicted watch time), repeatable for the frontier; 1.0 always runs."),
    ] = None,
    max_sessions: Annotated[int | None, typer.Option(min=1, help="Replay at most this many sessions.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of trace choice, start offsets and bootstrap.")] = 0,
    datasets: Annotated[
        Path, typer.Option(help="Folder of the real data sets. Env: PITAHAYA_DATASETS.")
    ] = default_datasets(),
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Replay held-out sessions through a playback model: bytes saved against slow starts and stalls.

    Fixed 3 x 800 KB, an oracle that knows every watch time and (with --package or --registry) the
    model running in the real client runtime replay the same sessions on the same traces. The run
    and its frontier plot are logged to MLflow.
    """
    from pitahaya.client_runtime import UpdateError
    from pitahaya.simulation import SimulationConfig, SimulationError, log_simulation
    from pitahaya.simulation import simulate as run_simulation

    margins = tuple(sorted({1.0, *(margin or ())}))
    config = SimulationConfig(
        margins=margins,
        seed=seed,
        sessions_source=sessions.value,
        network_source=network.value,
        bitrate_bps=bitrate_bps,
    )
    try:
        if not bitrate_bps > 0 or any(not m > 0 for m in margins):
            raise ValueError("--bitrate-bps and every --margin must be positive")
        with stdout_kept_for_json(as_json), tempfile.TemporaryDirectory(prefix="pitahaya-simulate-") as cache:
            model, knobs = _model(package, registry, trusted_root, Path(cache))
            with console.status("simulating", spinner="dots") if not as_json else nullcontext():
                replayed = _sessions(sessions, datasets, bitrate_bps, max_sessions)
                result = run_simulation(replayed, _networks(network, datasets), model=model, knobs=knobs, config=config)
            run_id = log_simulation(
                result, tracking_uri=tracking_uri(data_dir), artifact_location=artifact_root(data_dir)
            )
    except (SimulationError, UpdateError, LookupError, OSError, ValueError) as e:
        raise fail(str(e)) from None
    if as_json:
        emit_json(result.summary | {"run_id": run_id})
        return
    console.print(_table(result.summary))
    speed = result.summary["speed"]
    console.print(
        f"{result.summary['sessions']:,} sessions x {len(result.summary['classes'])} trace classes, "
        f"{speed['views_per_second']:,.0f} simulated views/s; MLflow run [bold]{run_id}[/]"
    )
