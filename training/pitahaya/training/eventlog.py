"""Read and write event logs: one row per finished `View`, as CSV or JSON Lines.

The format is chosen by the file name: ``.csv`` or ``.jsonl`` (alias ``.ndjson``), each
optionally gzip-compressed (``.csv.gz``). CSV files start with a header naming at least the
columns of `VIEW_FIELDS`; extra columns (network type, item attributes) are ignored for now.

Reading is strict: the first malformed row raises `EventLogError` naming the file and line,
because a silently skipped row would bias the training set without anyone noticing.
Writing goes to a temporary file that replaces the target only when complete, and gzip
output has a zero mtime, so writing the same views twice gives the same bytes.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from pitahaya.client_runtime import VIEW_FIELDS, View
from pitahaya.training.errors import EventLogError

#: A row parser: yields (line number, raw mapping) for each record of a text stream.
RowReader = Callable[[str | Path, IO[str]], Iterator[tuple[int, dict[str, Any]]]]
#: A row writer: writes all views to a text stream.
RowWriter = Callable[[IO[str], Iterable[View]], None]


def _csv_rows(path: str | Path, stream: IO[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(stream)
    header = reader.fieldnames or []
    missing = [name for name in VIEW_FIELDS if name not in header]
    if missing:
        raise EventLogError(path, 1, f"header lacks column(s) {', '.join(missing)}; got {header}")
    for row in reader:
        if None in row or None in row.values():
            raise EventLogError(path, reader.line_num, f"expected {len(header)} fields")
        yield reader.line_num, row


def _jsonl_rows(path: str | Path, stream: IO[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for line_num, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise EventLogError(path, line_num, f"invalid JSON: {e.msg}") from e
        if not isinstance(row, dict):
            raise EventLogError(path, line_num, "expected a JSON object")
        yield line_num, row


def _write_csv(stream: IO[str], views: Iterable[View]) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(VIEW_FIELDS)
    # repr() of a float is its shortest round-trip form, so reading back gives equal views.
    writer.writerows(
        (v.user_id, v.video_id, repr(v.start_ts), repr(v.duration_s), repr(v.watch_s), v.size_bytes) for v in views
    )


def _write_jsonl(stream: IO[str], views: Iterable[View]) -> None:
    for view in views:
        stream.write(json.dumps(view.to_dict(), separators=(",", ":")))
        stream.write("\n")


_FORMATS: dict[str, tuple[RowReader, RowWriter]] = {
    ".csv": (_csv_rows, _write_csv),
    ".jsonl": (_jsonl_rows, _write_jsonl),
    ".ndjson": (_jsonl_rows, _write_jsonl),
}


def _format_of(path: Path) -> tuple[RowReader, RowWriter, bool]:
    """Pick the row codec and whether the file is gzipped, from the file name."""
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    if compressed:
        suffixes.pop()
    codec = _FORMATS.get(suffixes[-1]) if suffixes else None
    if codec is None:
        known = ", ".join(f"{s}[.gz]" for s in _FORMATS)
        raise ValueError(f"{path}: unknown event log format; expected one of {known}")
    return codec[0], codec[1], compressed


def read_events(path: str | Path) -> list[View]:
    """Read every view of an event log, in file order.

    Args:
        path: A ``.csv``, ``.jsonl`` or ``.ndjson`` file, optionally ending in ``.gz``.

    Returns:
        The views, in file order.

    Raises:
        EventLogError: the file cannot be read or decoded, lacks a column, or a row is malformed.
        ValueError: the file name has no known event log suffix.
    """
    path = Path(path)
    read_rows, _, compressed = _format_of(path)
    views: list[View] = []
    line_num: int | None = None
    try:
        opener = gzip.open if compressed else open
        with opener(path, "rt", encoding="utf-8", newline="") as stream:
            for line_num, row in read_rows(path, stream):
                try:
                    views.append(View.from_dict(row))
                except (KeyError, TypeError, ValueError) as e:
                    reason = f"missing field {e}" if isinstance(e, KeyError) else str(e)
                    raise EventLogError(path, line_num, f"malformed view: {reason}") from e
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        raise EventLogError(path, line_num, f"cannot read: {e}") from e
    return views


def write_events(path: str | Path, views: Iterable[View]) -> None:
    """Write views to an event log atomically, in the given order.

    Args:
        path: Target file; its suffix picks the format as in `read_events`.
        views: The views to write.

    Raises:
        ValueError: the file name has no known event log suffix.
        OSError: the file cannot be written.
    """
    path = Path(path)
    _, write_rows, compressed = _format_of(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw:
            binary: IO[bytes] = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if compressed else raw
            with io.TextIOWrapper(binary, encoding="utf-8", newline="") as stream:
                write_rows(stream, views)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
