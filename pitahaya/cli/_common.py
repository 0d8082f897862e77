"""Shared CLI plumbing: where data lives, JSON output, Rich progress, error exits."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

#: Folder of the scene that ships with the repo, for commands run from a checkout.
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCENE = REPO_ROOT / "scenes" / "watch_time"

console = Console(stderr=True)


def quiet_library_logs() -> None:
    """Keep MLflow's and Alembic's INFO chatter (store creation, migrations) out of a command's output.

    MLflow's own warning that it cannot find pip's version is dropped too: pitahaya pins every
    model's requirements itself, and a uv-made environment has no pip to find.
    """
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is first imported
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)


def default_data_dir() -> Path:
    """``$PITAHAYA_DATA_DIR`` or ``.pitahaya`` in the working directory."""
    return Path(os.environ.get("PITAHAYA_DATA_DIR", ".pitahaya"))


def tracking_uri(data_dir: Path) -> str:
    """``$MLFLOW_TRACKING_URI`` or a SQLite store under the data dir."""
    return os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_store(data_dir)


def local_tracking_store(data_dir: Path) -> str:
    """The data dir's SQLite MLflow store: what commands use without a tracking server, and
    what ``pitahaya up``'s server serves, so runs logged either way end up in one place."""
    return f"sqlite:///{data_dir.resolve() / 'mlflow.db'}"


def artifact_root(data_dir: Path) -> str:
    return (data_dir.resolve() / "mlartifacts").as_uri()


def emit_json(payload: dict[str, Any]) -> None:
    """Print a result as JSON on stdout (human output goes to stderr)."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def report(payload: dict[str, Any], as_json: bool, text: str) -> None:
    """A command's result: ``payload`` as JSON on stdout with ``--json``, else ``text`` for people."""
    if as_json:
        emit_json(payload)
    else:
        console.print(text)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error (no traceback) and return the exit to raise.

    Not wrapped to the terminal's width: a path or command in the message stays whole, to copy.
    """
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def stdout_kept_for_json(as_json: bool) -> Iterator[None]:
    """With ``--json``, send whatever the work writes to stdout to stderr instead, so that stdout
    holds only the JSON printed after it.

    Python's ``print`` is not the only writer: LightGBM's C++ logs with ``printf`` and Dask's
    worker processes inherit the descriptor, so descriptor 1 itself points at stderr while the
    work runs (C's buffered output is flushed before it is put back).
    """
    if not as_json:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with redirect_stdout(sys.stderr):
            yield
    finally:
        _flush_c_stdio()
        os.dup2(saved, 1)
        os.close(saved)


def _flush_c_stdio() -> None:
    """``fflush(NULL)``: C libraries' buffered stdout goes where descriptor 1 points now."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C runtime to reach this way (Windows): nothing buffered by us
        pass


@contextmanager
def stage_progress(as_json: bool) -> Iterator[Callable[[str, float], None]]:
    """The progress of a command's work, fed by ``progress(stage, fraction)`` callbacks.

    For people, a Rich display with one bar per stage; not on a terminal (a log file, CI), where a
    live display would only be drawn once, at the end, a plain line when each stage starts and
    when it is done. With ``--json``, nothing, and stdout kept for the JSON
    (`stdout_kept_for_json`).
    """
    if as_json:
        with stdout_kept_for_json(True):
            yield lambda stage, fraction: None
        return
    if not console.is_terminal:
        with _stage_lines() as update:
            yield update
        return
    with Progress(
        TextColumn("[bold]{task.description:<28}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, fraction: float) -> None:
            if stage not in tasks:
                for other in tasks.values():  # a new stage means earlier ones are done
                    progress.update(other, completed=100)
                tasks[stage] = progress.add_task(stage, total=100)
            progress.update(tasks[stage], completed=max(0.0, min(fraction, 1.0)) * 100)

        yield update
        for task in tasks.values():
            progress.update(task, completed=100)


@contextmanager
def _stage_lines() -> Iterator[Callable[[str, float], None]]:
    """``progress(stage, fraction)`` as one line per stage started and one per stage done."""
    current: list[tuple[str, float]] = []  # the stage under way and when it started

    def finish() -> None:
        if current:
            stage, started = current.pop()
            console.print(f"{stage}: done in {time.monotonic() - started:.1f} s", highlight=False)

    def update(stage: str, fraction: float) -> None:
        if current and current[0][0] == stage:
            return
        finish()  # a new stage means the one before is done
        current.append((stage, time.monotonic()))
        console.print(f"{stage}: started", highlight=False)

    yield update
    finish()
