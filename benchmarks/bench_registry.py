"""Registry throughput under a bounded loopback load, against a bare FastAPI hello-world.

Starts, side by side on 127.0.0.1 with 2 uvicorn workers each (``uvicorn[standard]``:
uvloop + httptools):

1. a bare FastAPI app answering ``GET /`` with ``{"hello": "world"}`` (the baseline);
2. the registry (SQLite + local blobs, access log off), with one small package pushed and
   released.

and drives each with ``wrk`` (Debian package ``wrk``) for a fixed duration at a fixed number
of connections: the registry's conditional ``GET /tuf/metadata/timestamp.json`` with a
matching ``If-None-Match`` (304, what every polling device sends), and ``GET`` of the package
archive by its consistent-snapshot name (200). It prints requests/s and latency percentiles
of each and their ratio to the baseline, over interleaved rounds (baseline, 304, 200, baseline,
...) so load from neighbours falls on both alike. Every run stops by itself (``wrk -d``);
nothing asserts timings.

    .venv/bin/python benchmarks/bench_registry.py [--duration 10] [--connections 64] [--threads 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from pitahaya.cli._server import child_server, free_port
from pitahaya.client_runtime import Manifest, TensorSpec, build_archive
from pitahaya.client_runtime.package import FEATURES_FILE, MODEL_FILE, SELFTEST_FILE, file_entry
from pitahaya.registry import RegistryClient


def hello_app() -> FastAPI:
    """The baseline: the smallest useful FastAPI app (uvicorn factory)."""
    app = FastAPI()

    @app.get("/")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    statuses_ok: bool


@contextmanager
def _uvicorn(factory: str, env: dict[str, str], app_dir: Path, log: Path, ready_path: str) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1", "--port", str(port),
        "--workers", "2", "--no-access-log", "--log-level", "warning", "--app-dir", str(app_dir),
        "--loop", "uvloop", "--http", "httptools",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with child_server(command, ready_url=url + ready_path, log_path=log, env=env):
        time.sleep(1.0)  # both workers up
        yield url


def _wrk(url: str, *, duration_s: int, connections: int, threads: int, header: str | None = None) -> WrkResult:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "5s"]
    if header:
        command += ["-H", header]
    output = subprocess.run(command + [url], capture_output=True, text=True, timeout=duration_s + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    return WrkResult(
        requests_per_s=rps,
        p50_ms=_latency_ms(output, "50%"),
        p99_ms=_latency_ms(output, "99%"),
        statuses_ok="Non-2xx or 3xx responses" not in output,
    )


def _latency_ms(output: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _archive() -> bytes:
    payload = {
        MODEL_FILE: os.urandom(100_000),  # about the size of the demo's model
        FEATURES_FILE: b"class Extractor:\n    pass\n",
        SELFTEST_FILE: json.dumps({"cases": []}).encode(),
    }
    manifest = Manifest(
        scene="watch_time", version="1.0.0", feature_names=("a",),
        input=TensorSpec("input", "float32", (None, 1)), output=TensorSpec("output", "float32", (None, 1)),
        files={name: file_entry(data) for name, data in payload.items()},
    )  # fmt: skip
    return build_archive(manifest, payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per endpoint")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all endpoints")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    load = {"duration_s": args.duration, "connections": args.connections, "threads": args.threads}
    here = Path(__file__).resolve().parent
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        work = Path(tmp)
        env = {
            "PITAHAYA_DATA_DIR": str(work / "data"),
            "PITAHAYA_REGISTRY_TOKEN": token,
            "PITAHAYA_LOG_LEVEL": "WARNING",
        }
        with (
            _uvicorn("bench_registry:hello_app", {}, here, work / "hello.log", "/") as hello_url,
            _uvicorn("pitahaya.registry.server:app_from_environment", env, here, work / "registry.log", "/healthz") as url,
        ):
            client = RegistryClient(url, token=token)
            pushed = client.push(_archive())
            client.create_release("watch_time", "1.0.0")
            etag = httpx.get(f"{url}/tuf/metadata/timestamp.json").headers["ETag"]
            assert httpx.get(f"{url}/tuf/metadata/timestamp.json", headers={"If-None-Match": etag}).status_code == 304
            package_url = f"{url}/tuf/targets/packages/watch_time/{pushed['sha256']}.watch_time-1.0.0.tar.xz"
            endpoints = [
                ("FastAPI hello-world (baseline)", hello_url + "/", None),
                (
                    "timestamp.json, If-None-Match -> 304",
                    f"{url}/tuf/metadata/timestamp.json",
                    f"If-None-Match: {etag}",
                ),
                (f"package archive {pushed['size_bytes'] / 1024:.0f} KiB -> 200", package_url, None),
            ]
            # Rounds interleave baseline and registry, so a noisy neighbour hits both alike.
            rounds = [[_wrk(u, header=h, **load) for _, u, h in endpoints] for _ in range(args.rounds)]
    print(
        f"load: wrk {args.threads} threads, {args.connections} connections, {args.duration} s per endpoint, "
        f"{args.rounds} interleaved rounds; servers: uvicorn 2 workers each (uvloop, httptools); "
        f"{os.cpu_count()} CPUs shared with wrk; median round by req/s shown, ratio = median of per-round ratios"
    )
    print(f"{'endpoint':<44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs hello':>9}")
    for index, (name, _, _) in enumerate(endpoints):
        results = sorted((r[index] for r in rounds), key=lambda w: w.requests_per_s)
        median = results[len(results) // 2]
        ratio = statistics.median(r[index].requests_per_s / r[0].requests_per_s for r in rounds)
        flag = "" if all(w.statuses_ok for w in results) else "  (some non-2xx/3xx!)"
        print(
            f"{name:<44} {median.requests_per_s:>9,.0f} {median.p50_ms:>8.2f} {median.p99_ms:>8.2f} "
            f"{ratio:>8.2f}x{flag}"
        )


if __name__ == "__main__":
    main()
