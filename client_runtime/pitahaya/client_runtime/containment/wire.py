"""What crosses the boundary between the host and a worker process, and how.

Two paths:

- **Control frames** (start-up and load): ``u32 length + JSON`` over a pipe, optionally
  followed by raw blobs whose sizes the JSON lists. The host reads what a worker sends with
  a size cap and a deadline, and only ever parses it as JSON: never pickle, which would let a
  package run code in the host.
- **The call channel** (every step after loading): one request and one response at a time in
  a shared-memory page, with a sequence number each, and a doorbell per direction (an
  eventfd on Linux, else a pipe) to wake the other side. The host writes a request, then its
  sequence number, then rings; the worker writes the response, then its sequence number,
  then rings. On x86 the host spins briefly on the response number before it sleeps on the
  doorbell (a worker that answers in tens of microseconds then costs no second wake-up), and
  a worker that just answered spins a millisecond for the next request before it sleeps.
  (On weakly ordered CPUs both always wait for the doorbell, whose system call orders
  memory.) The worker is untrusted: the host re-checks every count it reads back and never
  lets a value from the page index outside the page.

Layout of the page (little endian)::

    0    u64  request seq          40   u32  response status (0 ok, 1 error)
    8    u64  response seq         44   u32  response rows
    16   u32  flags (1 reset, 2 features)   48   u32  response error length
    20   u32  views                52   u32  response features width
    24   u32  candidates           56   u32  response outputs per row
    28   u32  string bytes
    32   f64  now
    64   request:  views (start_ts, duration_s, watch_s, size_bytes, item stats: f64 x 8),
                   candidates (duration_s, size_bytes, item stats: f64 x 6),
                   string lengths (u32: user_id, video_id per view, video_id per candidate),
                   string bytes (UTF-8)
                   (item stats: the four `ItemStats` figures, all 0 for ``item=None``;
                   an unknown duration or size: 0, `pitahaya.client_runtime.events.UNKNOWN`)
    64 + REQUEST_BYTES   response: predictions (f32 x rows x outputs), features (f32 x rows x width), error text
"""

from __future__ import annotations

import functools
import json
import mmap
import os
import platform
import select
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pitahaya.client_runtime.events import UNKNOWN, Candidate, View
from pitahaya.client_runtime.item_stats import ItemStats

HEADER_BYTES = 64
REQUEST_BYTES = 512 * 1024
RESPONSE_BYTES = 512 * 1024
PAGE_BYTES = HEADER_BYTES + REQUEST_BYTES + RESPONSE_BYTES
#: Largest control frame the host accepts from a worker.
MAX_REPLY_BYTES = 1024 * 1024
#: Most candidates one call may carry (the response must fit its half of the page).
MAX_CANDIDATES = 1024
#: Error text a worker may return with a failed step.
MAX_ERROR_BYTES = 2048

FLAG_RESET = 1
FLAG_FEATURES = 2
STATUS_OK = 0
STATUS_ERROR = 1

_SEQ = struct.Struct("<Q")
_REQUEST = struct.Struct("<IIIId")
_RESPONSE = struct.Struct("<IIIII")
#: f64 numbers of a view and of a candidate in a request (see the layout above).
_VIEW_NUMBERS, _CANDIDATE_NUMBERS = 8, 6
_VIEW_BYTES = _VIEW_NUMBERS * 8 + 2 * 4  # its numbers and two string lengths, before the strings
_NO_ITEM = (0.0, 0.0, 0.0, 0.0)
_LENGTH = struct.Struct("<I")
_REQUEST_AT, _RESPONSE_AT = 16, 40
_DATA_AT = HEADER_BYTES + REQUEST_BYTES

#: Spinning on a sequence number is safe only where stores become visible in order (x86 is TSO);
#: elsewhere both sides always sleep on the doorbell, whose system calls order memory.
_IN_ORDER = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
#: How long the host spins on the response before it sleeps: covers a typical step.
SPIN_S = 200e-6 if _IN_ORDER else 0.0
#: How long a worker spins for the next request after answering, before it sleeps: calls in
#: a burst (a feed load, a benchmark) then skip the wake-up; an idle worker costs nothing.
WORKER_SPIN_S = 1e-3 if _IN_ORDER else 0.0


class ChannelClosed(Exception):
    """The other side of a pipe is gone (the worker exited or was killed)."""


# ----------------------------------------------------------------------------- control frames
def send_frame(fd: int, header: dict[str, Any], blobs: Sequence[bytes] = ()) -> None:
    """Write one frame: the JSON header (listing the blob sizes), then the blobs."""
    body = json.dumps({**header, "blobs": [len(b) for b in blobs]}).encode()
    _write_all(fd, _LENGTH.pack(len(body)) + body)
    for blob in blobs:
        _write_all(fd, blob)


def read_frame(
    fd: int, *, deadline: float | None = None, max_bytes: int = MAX_REPLY_BYTES
) -> tuple[dict[str, Any], list[bytes]]:
    """Read one frame; ``deadline`` is a `time.monotonic` instant (None: wait as long as it takes).

    Raises:
        TimeoutError: the deadline passed first.
        ChannelClosed: the writer closed the pipe (or died).
        ValueError: the frame is larger than ``max_bytes`` or not a JSON object.
    """
    (length,) = _LENGTH.unpack(_read_exact(fd, _LENGTH.size, deadline))
    if length > max_bytes:
        raise ValueError(f"frame of {length} bytes exceeds {max_bytes}")
    header = json.loads(_read_exact(fd, length, deadline))
    if not isinstance(header, dict):
        raise ValueError("frame is not a JSON object")
    sizes = header.get("blobs") or []
    if not isinstance(sizes, list) or sum(int(n) for n in sizes) > max_bytes:
        raise ValueError("frame blobs exceed the size cap")
    return header, [_read_exact(fd, int(n), deadline) for n in sizes]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BrokenPipeError as e:
            raise ChannelClosed("the worker closed its pipe") from e
        view = view[written:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError("no answer from the worker before the deadline")
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise ChannelClosed("the worker closed its pipe")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# ----------------------------------------------------------------------------- doorbells
class Doorbell:
    """A wake-up from one process to another: an eventfd on Linux, else a non-blocking pipe.

    Rings are coalesced: a sleeper woken by several rings re-checks the page once, and a ring
    left over from a call answered while spinning only costs one spurious check later.
    """

    def __init__(self) -> None:
        if hasattr(os, "eventfd"):
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self.read_fd = self.write_fd = fd
        else:
            self.read_fd, self.write_fd = os.pipe()
            for fd in (self.read_fd, self.write_fd):
                os.set_blocking(fd, False)

    @property
    def fds(self) -> tuple[int, ...]:
        return tuple(sorted({self.read_fd, self.write_fd}))

    @staticmethod
    def ring(fd: int) -> None:
        try:
            os.write(fd, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except BlockingIOError:
            pass  # the other side has wake-ups pending already

    @staticmethod
    def drain(fd: int) -> None:
        try:
            os.read(fd, 4096)
        except BlockingIOError:
            pass

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


# ----------------------------------------------------------------------------- the call channel
def open_page() -> tuple[int, mmap.mmap]:
    """A zeroed shared page: an anonymous memfd where the OS has one, else an unlinked temp file."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("pitahaya-call-channel", os.MFD_CLOEXEC)
    else:  # pragma: no cover - non-Linux hosts
        import tempfile

        fd, path = tempfile.mkstemp(prefix="pitahaya-channel-")
        os.unlink(path)
    os.ftruncate(fd, PAGE_BYTES)
    return fd, mmap.mmap(fd, PAGE_BYTES)


@dataclass(frozen=True, slots=True)
class Step:
    """One call into a package: fold ``views`` into its feature state (a fresh one if ``reset``),
    then predict ``candidates`` at ``now``; ``want_features`` returns the feature matrix too."""

    reset: bool
    views: Sequence[View]
    candidates: Sequence[Candidate]
    now: float
    want_features: bool = False


class RequestTooLarge(ValueError):
    """The candidates of one call do not fit in the channel (caller's fault, not the package's)."""


def fitting_views(views: Sequence[View], limit: int = REQUEST_BYTES // 2) -> int:
    """How many of ``views`` (from the first) fit in one request, leaving room for candidates."""
    used = 0
    for count, view in enumerate(views):
        used += _VIEW_BYTES + len(view.user_id.encode()) + len(view.video_id.encode())
        if used > limit:
            return max(count, 1)
    return len(views)


@functools.lru_cache(maxsize=256)
def _layout(n_views: int, n_candidates: int) -> struct.Struct:
    """A request's numbers and string lengths, as one struct (one pack, one unpack)."""
    return struct.Struct(
        f"<{_VIEW_NUMBERS * n_views + _CANDIDATE_NUMBERS * n_candidates}d{2 * n_views + n_candidates}I"
    )


def write_request(page: mmap.mmap, seq: int, step: Step) -> None:
    """Host side: write a request, then publish its sequence number (the worker reads it after the ring)."""
    views, candidates = step.views, step.candidates
    if len(candidates) > MAX_CANDIDATES:
        raise RequestTooLarge(f"{len(candidates)} candidates in one call, more than {MAX_CANDIDATES}")
    numbers: list[float] = []
    strings: list[bytes] = []
    for v in views:
        numbers += (v.start_ts, v.duration_s or UNKNOWN, v.watch_s, v.size_bytes or UNKNOWN)
        numbers += _NO_ITEM if v.item is None else v.item.as_tuple()
        strings += (v.user_id.encode(), v.video_id.encode())
    for c in candidates:
        numbers += (c.duration_s or UNKNOWN, c.size_bytes or UNKNOWN)
        numbers += _NO_ITEM if c.item is None else c.item.as_tuple()
        strings.append(c.video_id.encode())
    layout = _layout(len(views), len(candidates))
    text = b"".join(strings)
    if layout.size + len(text) > REQUEST_BYTES:
        raise RequestTooLarge(f"{len(candidates)} candidates and {len(views)} views do not fit in one call")
    layout.pack_into(page, HEADER_BYTES, *numbers, *map(len, strings))
    at = HEADER_BYTES + layout.size
    page[at : at + len(text)] = text
    flags = (FLAG_RESET if step.reset else 0) | (FLAG_FEATURES if step.want_features else 0)
    _REQUEST.pack_into(page, _REQUEST_AT, flags, len(views), len(candidates), len(text), step.now)
    _SEQ.pack_into(page, 0, seq)


def read_request(page: mmap.mmap, last_seq: int) -> tuple[int, Step] | None:
    """Worker side: the pending request and its sequence number, or None if none is newer than ``last_seq``."""
    (seq,) = _SEQ.unpack_from(page, 0)
    if seq == last_seq:
        return None
    flags, n_views, n_candidates, n_text, now = _REQUEST.unpack_from(page, _REQUEST_AT)
    layout = _layout(n_views, n_candidates)
    values = layout.unpack_from(page, HEADER_BYTES)
    at = HEADER_BYTES + layout.size
    text = page[at : at + n_text]
    strings, start = [], 0
    base = _VIEW_NUMBERS * n_views
    for length in values[base + _CANDIDATE_NUMBERS * n_candidates :]:
        strings.append(text[start : start + length].decode())
        start += length
    views = []
    for i in range(n_views):
        at = _VIEW_NUMBERS * i
        item = ItemStats.from_row(values[at + 4 : at + 8])
        views.append(
            View(
                strings[2 * i],
                strings[2 * i + 1],
                values[at],
                values[at + 1] or None,
                values[at + 2],
                _size(values[at + 3]),
                item,
            )
        )
    candidates = []
    for i in range(n_candidates):
        at = base + _CANDIDATE_NUMBERS * i
        item = ItemStats.from_row(values[at + 2 : at + 6])
        candidates.append(Candidate(strings[2 * n_views + i], values[at] or None, _size(values[at + 1]), item))
    return seq, Step(bool(flags & FLAG_RESET), views, candidates, now, bool(flags & FLAG_FEATURES))


def _size(value: float) -> int | None:
    return int(value) or None  # 0: unknown


def write_response(page: mmap.mmap, seq: int, rows: int, predictions: np.ndarray, features: np.ndarray | None) -> None:
    """Worker side: write a successful answer for ``rows`` candidates, then its sequence number.

    ``predictions`` holds the model's outputs row after row (any number per row).
    """
    values = int(predictions.size)
    outputs = values // rows if rows else 0
    at = _DATA_AT
    page[at : at + 4 * values] = predictions.astype(np.float32, copy=False).tobytes()
    width = 0
    if features is not None and rows:
        width = int(features.shape[1])
        at += 4 * values
        page[at : at + 4 * rows * width] = np.ascontiguousarray(features, dtype=np.float32).tobytes()
    _RESPONSE.pack_into(page, _RESPONSE_AT, STATUS_OK, rows, 0, width, outputs)
    _SEQ.pack_into(page, 8, seq)


def write_error(page: mmap.mmap, seq: int, message: str) -> None:
    """Worker side: write a failed step's error text (truncated), then the sequence number."""
    data = message.encode("utf-8", "replace")[:MAX_ERROR_BYTES]
    page[_DATA_AT : _DATA_AT + len(data)] = data
    _RESPONSE.pack_into(page, _RESPONSE_AT, STATUS_ERROR, 0, len(data), 0, 0)
    _SEQ.pack_into(page, 8, seq)


def request_seq(page: mmap.mmap) -> int:
    return _SEQ.unpack_from(page, 0)[0]


def response_seq(page: mmap.mmap) -> int:
    return _SEQ.unpack_from(page, 8)[0]


class StepFailed(Exception):
    """The package raised during a step (its message is the worker's, truncated)."""


def read_response(page: mmap.mmap, rows: int, outputs: int, width: int) -> tuple[tuple[float, ...], np.ndarray | None]:
    """Host side: the answer to a request of ``rows`` candidates, checked against what was asked.

    Args:
        outputs: Model outputs per row the package declares (its manifest's).
        width: Expected feature width when features were asked for, else 0.

    Returns:
        The ``rows`` x ``outputs`` predictions row after row, and the features when asked for.

    Raises:
        StepFailed: the package raised, or the worker's answer does not match the request.
    """
    status, got_rows, error_length, got_width, got_outputs = _RESPONSE.unpack_from(page, _RESPONSE_AT)
    if status == STATUS_ERROR:
        length = min(error_length, MAX_ERROR_BYTES)
        raise StepFailed(page[_DATA_AT : _DATA_AT + length].decode("utf-8", "replace"))
    if status != STATUS_OK or got_rows != rows or (rows and got_outputs != outputs) or (width and got_width != width):
        raise StepFailed(
            f"the worker answered {got_rows} x {got_outputs} outputs x {got_width} features "
            f"for a request of {rows} x {outputs} x {width}"
        )
    values = rows * outputs
    predictions = struct.unpack_from(f"<{values}f", page, _DATA_AT)
    if not width:
        return predictions, None
    at = _DATA_AT + 4 * values
    features = np.frombuffer(page[at : at + 4 * rows * width], dtype=np.float32).reshape(rows, width)
    return predictions, features
