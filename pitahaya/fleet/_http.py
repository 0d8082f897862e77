"""Device-side HTTP timing: every request a simulated device makes, timed to its last byte.

The devices of one worker process share one `TimedFetcher` (TUF metadata and targets, the
ngclient fetcher seam) and one `TimedPool` (telemetry, the reporter's pool seam), so their
connections are kept alive across devices; each request still goes over real HTTP to the
registry. Timings land in one `RequestLog` per process.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterator
from typing import Any

import urllib3
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import Urllib3Fetcher


class RequestLog:
    """Durations (seconds) of finished requests by kind, and how many failed (no answer, or a 5xx)."""

    def __init__(self) -> None:
        self.durations: dict[str, array[float]] = {"tuf": array("d"), "telemetry": array("d")}
        self.failed: dict[str, int] = {"tuf": 0, "telemetry": 0}

    def add(self, kind: str, seconds: float, failed: bool = False) -> None:
        self.durations[kind].append(seconds)
        if failed:
            self.failed[kind] += 1


class TimedFetcher(Urllib3Fetcher):
    """ngclient's urllib3 fetcher, timing each download until its last chunk (or its failure)."""

    def __init__(self, log: RequestLog) -> None:
        super().__init__()
        self._log = log

    def _fetch(self, url: str) -> Iterator[bytes]:
        started = time.perf_counter()
        try:
            chunks = super()._fetch(url)
        except DownloadHTTPError as e:  # e.g. the 404 that ends ngclient's search for a newer root
            self._log.add("tuf", time.perf_counter() - started, failed=e.status_code >= 500)
            raise
        except Exception:
            self._log.add("tuf", time.perf_counter() - started, failed=True)
            raise
        return self._timed(chunks, started)

    def _timed(self, chunks: Iterator[bytes], started: float) -> Iterator[bytes]:
        failed = True
        try:
            yield from chunks
            failed = False
        finally:
            self._log.add("tuf", time.perf_counter() - started, failed=failed)


class TimedPool(urllib3.PoolManager):
    """A urllib3 pool timing each request (the telemetry reporter reads its body in full)."""

    def __init__(self, log: RequestLog, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._log = log

    def urlopen(self, method: str, url: str, *args: Any, **kw: Any) -> urllib3.BaseHTTPResponse:
        started = time.perf_counter()
        try:
            response = super().urlopen(method, url, *args, **kw)
        except Exception:
            self._log.add("telemetry", time.perf_counter() - started, failed=True)
            raise
        self._log.add("telemetry", time.perf_counter() - started, failed=response.status >= 500)
        return response
