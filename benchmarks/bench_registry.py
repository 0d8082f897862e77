"""Registry throughput under a bounded loopback load, against a bare FastAPI hello-world.

Starts, side by side on 127.0.0.1 with 2 uvicorn workers each (``uvicorn[standard]``:
uvloop + httptools):

1. a bare FastAPI app (the baselines): ``GET /`` answering ``{"hello": "world"}``, and
   ``POST /api/v1/telemetry`` parsing the JSON body into a dict and answering 202;
2. the registry (local blobs; SQLite by default, or PostgreSQL: ``--postgres`` starts a
   throw-away cluster with fsync on, ``--database-url`` points at an empty database; access log
   off, rate limits raised out of the way, MLflow forwarding and the push's pre-flight off), with
   one small package pushed and released.

and drives each with ``wrk`` (Debian package ``wrk``) for a fixed duration at a fixed number
of connections: the registry's conditional ``GET /tuf/metadata/timestamp.json`` with a
matching ``If-None-Match`` (304, what every polling device sends), ``GET`` of the package
archive by its consistent-snapshot name (200), and ``POST /api/v1/telemetry`` (202) of a
realistic one-window device report (a wrk Lua script; every request a different device id, so
the per-device upserts do not all hit one row) with a client-role token. It prints requests/s,
latency percentiles and error counts (non-2xx/3xx answers and socket errors) of each, and the
ratio to its baseline (GET endpoints to the GET hello-world, telemetry to the POST one), over
interleaved rounds (baseline, 304, 200, baseline, telemetry, ...) so load from neighbours falls
on both alike; then checks the reports the registry aggregated in its database against wrk's count.
Every run stops by itself (``wrk -d``); nothing asserts timings.

    .venv/bin/python benchmarks/bench_registry.py [--duration 10] [--connections 64] [--threads 2] [--rounds 3]
        [--endpoints 304,200,telemetry] [--postgres | --database-url URL] [--tuf-storage files|database]
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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy
from fastapi import FastAPI, Response

from pitahaya.cli._server import child_server, free_port
from pitahaya.client_runtime import Manifest, TensorSpec, build_archive
from pitahaya.client_runtime.package import FEATURES_FILE, MODEL_FILE, SELFTEST_FILE, file_entry
from pitahaya.client_runtime.telemetry import LATENCY_US_BOUNDS, TELEMETRY_PATH
from pitahaya.publisher import RegistryClient


def hello_app() -> FastAPI:
    """The baseline: the smallest useful FastAPI app (uvicorn factory)."""
    app = FastAPI()

    @app.get("/")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.post(TELEMETRY_PATH, status_code=202)
    def ingest(report: dict[str, Any]) -> Response:
        """The POST baseline: FastAPI parses the same JSON body into a dict, nothing more."""
        return Response(status_code=202)

    return app


@dataclass(frozen=True)
class WrkResult:
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx_3xx: int
    socket_errors: int

    @property
    def errors(self) -> int:
        return self.non_2xx_3xx + self.socket_errors


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    header: str | None = None
    script: Path | None = None
    baseline: str | None = None  # name of the endpoint it is compared with; None = a baseline
    telemetry: bool = False  # POSTs telemetry reports (a fresh wrk script per run)


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


def _wrk(endpoint: Endpoint, *, duration_s: int, connections: int, threads: int) -> WrkResult:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "5s"]
    if endpoint.header:
        command += ["-H", endpoint.header]
    if endpoint.script:
        command += ["-s", str(endpoint.script)]
    output = subprocess.run(
        command + [endpoint.url], capture_output=True, text=True, timeout=duration_s + 60, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    # wrk counts answers with a status >= 400 as "Non-2xx or 3xx responses"; sockets apart.
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkResult(
        requests=int(re.search(r"(\d+) requests in", output).group(1)),  # type: ignore[union-attr]
        requests_per_s=rps,
        p50_ms=_latency_ms(output, "50%"),
        p99_ms=_latency_ms(output, "99%"),
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(map(int, sockets.groups())) if sockets else 0,
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


#: One minute of a busy device, as the runtime reports it: ~1 inference/s, a few fallbacks,
#: latencies of 1-5 ms (timeouts near 50 ms), the outcomes that came back with their errors.
FALLBACKS = {"timeout": 2, "inference_error": 1}
LATENCY_SHAPE_US = {964: 2, 1157: 5, 1389: 8, 1668: 10, 2003: 9, 2404: 8, 2886: 6, 3465: 4, 4160: 3, 4994: 2, 53723: 3}


def telemetry_report(device_id: str, minute: datetime, package_version: str) -> dict[str, Any]:
    """A device's report of one minute (one window), shaped like `TelemetryReporter`'s."""
    counts = [0] * (len(LATENCY_US_BOUNDS) + 1)
    for bound, count in LATENCY_SHAPE_US.items():
        counts[LATENCY_US_BOUNDS.index(bound)] = count
    inferences = sum(counts)
    window = {
        "minute": minute.strftime("%Y-%m-%dT%H:%M:00Z"),
        "package_version": package_version,
        "inferences": inferences,
        "successes": inferences - sum(FALLBACKS.values()),
        "fallbacks": dict(FALLBACKS),
        "errors": {},
        "latency_us_bounds": list(LATENCY_US_BOUNDS),
        "latency_us_counts": counts,
        "views": inferences,
        "outcomes": 41,
        "abs_error_sum_s": 131.7,
        "abs_error_sq_sum_s2": 622.4,
    }
    return {
        "device_id": device_id,
        "scene": "watch_time",
        "sent_at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "windows": [window],
        "dropped_events": 0,
    }


def counter_upserts(report: dict[str, Any]) -> int:
    """Rows of ``telemetry_counters`` one report upserts (`record_report` skips zero increments)."""
    total = 0
    for window in report["windows"]:
        scalars = ("inferences", "successes", "views", "outcomes", "abs_error_sum_s", "abs_error_sq_sum_s2")
        total += 1 + sum(1 for name in scalars if window[name])  # + "reports"
        total += sum(1 for v in window["fallbacks"].values() if v) + sum(1 for v in window["errors"].values() if v)
        total += sum(1 for c in window["latency_us_counts"] if c)
    return total


_DEVICE_MARK = "@DEVICE@"


def telemetry_script(path: Path, *, token: str, tag: str, minute: datetime, package_version: str) -> Path:
    """A wrk Lua script POSTing `telemetry_report` bodies, each with its own device id
    (``bench-<tag>-<thread>-<counter>``: unique over threads, and over runs by ``tag``)."""
    body = json.dumps(telemetry_report(_DEVICE_MARK, minute, package_version))
    prefix, suffix = body.split(_DEVICE_MARK)
    assert "]====]" not in body
    path.write_text(
        f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
local prefix = [====[{prefix}bench-{tag}-]====]
local suffix = [====[{suffix}]====]
local threads = 0
local sent = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_index", threads)
end

function request()
  sent = sent + 1
  return wrk.format(nil, nil, nil, prefix .. thread_index .. "-" .. sent .. suffix)
end
"""
    )
    return path


def _telemetry_rows(database_url: str) -> tuple[int, int]:
    """(reports aggregated, device rows) in the registry's database."""
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as db:
            reports = db.execute(
                sqlalchemy.text("SELECT COALESCE(SUM(value), 0) FROM telemetry_counters WHERE metric = 'reports'")
            ).scalar_one()
            devices = db.execute(sqlalchemy.text("SELECT COUNT(*) FROM telemetry_devices")).scalar_one()
            return int(reports), int(devices)
    finally:
        engine.dispose()


@contextmanager
def _throwaway_postgres() -> Iterator[str]:
    """A throw-away PostgreSQL cluster (the tests' helper, ``tests/servers.py``), fsync on:
    commits are as durable as the SQLite registry's (WAL, ``synchronous=FULL``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the helper is not a package
    from servers import postgresql

    with postgresql(database="bench", fsync=True) as url:
        yield url


ENDPOINTS = ("304", "200", "telemetry")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per endpoint")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all endpoints")
    parser.add_argument(
        "--endpoints",
        default=",".join(ENDPOINTS),
        help=f"comma-separated subset of {','.join(ENDPOINTS)}; their baselines are added",
    )
    database = parser.add_mutually_exclusive_group()
    database.add_argument(
        "--postgres", action="store_true", help="the registry on a throw-away PostgreSQL cluster (fsync on)"
    )
    database.add_argument("--database-url", help="the registry on this (empty) database instead of SQLite")
    parser.add_argument(
        "--tuf-storage",
        choices=["files", "database"],
        default="files",
        help="where the registry keeps its signed TUF metadata (database: what stateless replicas use)",
    )
    args = parser.parse_args()
    chosen = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    if not chosen or set(chosen) - set(ENDPOINTS):
        parser.error(f"--endpoints takes a comma-separated subset of {','.join(ENDPOINTS)}")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    load = {"duration_s": args.duration, "connections": args.connections, "threads": args.threads}
    here = Path(__file__).resolve().parent
    token = secrets.token_urlsafe(24)
    telemetry_requests = 0
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp, ExitStack() as databases:
        work = Path(tmp)
        database_url = args.database_url or f"sqlite:///{work / 'data' / 'registry' / 'registry.db'}"
        if args.postgres:
            database_url = databases.enter_context(_throwaway_postgres())
        env = {
            "PITAHAYA_DATABASE_URL": database_url,
            "PITAHAYA_DATA_DIR": str(work / "data"),
            "PITAHAYA_TUF_STORAGE": args.tuf_storage,
            "PITAHAYA_REGISTRY_TOKEN": token,
            "PITAHAYA_LOG_LEVEL": "WARNING",
            # Out of the way: the defaults (1200/min per token, 2400/min per address, per worker)
            # would answer most of the load 429. A per-second window keeps the limiter's moving
            # window as short as the defaults' at their limit.
            "PITAHAYA_RATE_LIMIT_PER_TOKEN": "1000000/second",
            "PITAHAYA_RATE_LIMIT_PER_IP": "1000000/second",
            # Measure ingestion alone: no MLflow store written behind the requests' back.
            "PITAHAYA_MLFLOW_FORWARDING": "false",
            # The archive's model is random bytes, only ever served, never loaded: skip the push's
            # pre-flight load (it would refuse it), which is not what this measures.
            "PITAHAYA_PREFLIGHT_ENABLED": "false",
        }
        if args.tuf_storage == "database":  # a serving registry never creates a shared repository
            migrate = [sys.executable, "-m", "pitahaya.cli.app", "registry", "migrate"]
            subprocess.run(migrate, env={**os.environ, **env}, check=True, capture_output=True)
        with (
            _uvicorn("bench_registry:hello_app", {}, here, work / "hello.log", "/") as hello_url,
            _uvicorn(
                "pitahaya.registry.server:app_from_environment", env, here, work / "registry.log", "/healthz"
            ) as url,
        ):
            client = RegistryClient(url, token=token)
            pushed = client.push(_archive())
            client.create_release("watch_time", "1.0.0")
            etag = httpx.get(f"{url}/tuf/metadata/timestamp.json").headers["ETag"]
            assert httpx.get(f"{url}/tuf/metadata/timestamp.json", headers={"If-None-Match": etag}).status_code == 304
            package_url = f"{url}/tuf/targets/packages/watch_time/{pushed['sha256']}.watch_time-1.0.0.tar.xz"
            device_token = client.create_token("bench-devices", "client")["secret"]
            probe = telemetry_report("bench-probe", datetime.now(tz=UTC), "1.0.0")
            for target in (url, hello_url):
                answer = httpx.post(
                    target + TELEMETRY_PATH, json=probe, headers={"Authorization": f"Bearer {device_token}"}
                )
                assert answer.status_code == 202, (target, answer.status_code, answer.text)
            hello_get = Endpoint("FastAPI hello-world GET (baseline)", hello_url + "/")
            hello_post = Endpoint("FastAPI POST JSON -> dict (baseline)", hello_url + TELEMETRY_PATH, telemetry=True)
            endpoints: list[Endpoint] = []
            if "304" in chosen or "200" in chosen:
                endpoints.append(hello_get)
            if "304" in chosen:
                endpoints.append(
                    Endpoint(
                        "timestamp.json, If-None-Match -> 304",
                        f"{url}/tuf/metadata/timestamp.json",
                        header=f"If-None-Match: {etag}",
                        baseline=hello_get.name,
                    )
                )
            if "200" in chosen:
                endpoints.append(
                    Endpoint(
                        f"package archive {pushed['size_bytes'] / 1024:.0f} KiB -> 200",
                        package_url,
                        baseline=hello_get.name,
                    )
                )
            if "telemetry" in chosen:
                endpoints += [
                    hello_post,
                    Endpoint(
                        "telemetry report, 1 window -> 202",
                        url + TELEMETRY_PATH,
                        baseline=hello_post.name,
                        telemetry=True,
                    ),
                ]
            # Rounds interleave baseline and registry, so a noisy neighbour hits both alike.
            rounds: list[dict[str, WrkResult]] = []
            for index in range(args.rounds):
                results = {}
                for number, endpoint in enumerate(endpoints):
                    if endpoint.telemetry:
                        # A fresh minute and fresh device ids for each run: every report a new device row.
                        tag = f"r{index}e{number}"
                        script = telemetry_script(
                            work / f"telemetry-{tag}.lua",
                            token=device_token,
                            tag=tag,
                            minute=datetime.now(tz=UTC),
                            package_version="1.0.0",
                        )
                        endpoint = replace(endpoint, script=script)
                    results[endpoint.name] = _wrk(endpoint, **load)
                    if endpoint.telemetry and endpoint.baseline:
                        telemetry_requests += results[endpoint.name].requests
                rounds.append(results)
        # After the registry stopped: what it aggregated, against what wrk saw answered.
        aggregated = _telemetry_rows(database_url) if "telemetry" in chosen else None
    backend = sqlalchemy.make_url(database_url).get_backend_name()
    print(
        f"load: wrk {args.threads} threads, {args.connections} connections, {args.duration} s per endpoint, "
        f"{args.rounds} interleaved rounds; servers: uvicorn 2 workers each (uvloop, httptools), registry on "
        f"{backend}; "
        f"{os.cpu_count()} CPUs shared with wrk; median round by req/s shown, ratio = median of per-round ratios "
        f"to the endpoint's baseline; errors = non-2xx/3xx answers + socket errors, summed over rounds"
    )
    print(f"{'endpoint':<44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs base':>8} {'errors':>7}")
    failed = []
    for endpoint in endpoints:
        results = sorted((r[endpoint.name] for r in rounds), key=lambda w: w.requests_per_s)
        median = results[len(results) // 2]
        if endpoint.baseline:
            ratio = statistics.median(
                r[endpoint.name].requests_per_s / r[endpoint.baseline].requests_per_s for r in rounds
            )
            versus = f"{ratio:>7.2f}x"
        else:
            versus = f"{'-':>8}"
        errors = sum(w.errors for w in results)
        if errors:
            failed.append(
                f"{endpoint.name}: {sum(w.non_2xx_3xx for w in results)} non-2xx/3xx answers, "
                f"{sum(w.socket_errors for w in results)} socket errors"
            )
        print(
            f"{endpoint.name:<44} {median.requests_per_s:>9,.0f} {median.p50_ms:>8.2f} {median.p99_ms:>8.2f} "
            f"{versus} {errors:>7}"
        )
    if aggregated is not None:
        reports, devices = aggregated
        per_report = counter_upserts(telemetry_report("x", datetime.now(tz=UTC), "1.0.0"))
        print(
            f"telemetry: 1 window per report, {per_report} counter upserts + 1 device-row upsert + 1 commit each; "
            f"{backend} holds {reports:,} reports and {devices:,} device rows "
            f"(wrk counted {telemetry_requests:,} answered, + 1 probe; requests in flight at wrk's stop add a few)"
        )
        if reports < telemetry_requests + 1:
            failed.append(
                f"telemetry: {backend} holds {reports} reports, fewer than the {telemetry_requests + 1} answered"
            )
    if failed:
        print("RUN WITH ERRORS: " + "; ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
