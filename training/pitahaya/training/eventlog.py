"""Read and write event logs: CSV, TSV, JSON Lines or Parquet, local or on S3, validated row by row.

The format is chosen by the file name: ``.csv``, ``.tsv``, ``.jsonl`` (alias ``.ndjson``),
each optionally gzip-compressed (``.csv.gz``), or ``.parquet``. `load_events` reads every
file a spec names (see `resolve_sources`), maps its columns with an adapter (see
`adapters`), and validates every row. A bad row is never silently dropped and never crashes
the job: it is counted under one reason (`BAD_ROW_REASONS`, first matching reason wins) and
written to a quarantine file (JSON Lines: source, line, reason, detail, raw fields). With
``strict=True`` the first bad row raises `EventLogError` naming its file and line instead.

Line numbers are 1-based file lines for text formats (the CSV header is line 1; blank lines
are not counted) and 1-based row numbers for Parquet.

Writing goes to a temporary file that replaces the target only when complete, and gzip
output has a zero mtime, so writing the same views twice gives the same bytes.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pitahaya.client_runtime import VIEW_FIELDS, View
from pitahaya.client_runtime.files import atomic_output
from pitahaya.client_runtime.parity_set import write_views_csv
from pitahaya.training.adapters import Adapter, Converted, get_adapter
from pitahaya.training.errors import EventLogError
from pitahaya.training.sources import EventSource, resolve_sources
from pitahaya.training.table import ViewTable

#: A row whose watch time exceeds this many times its duration is not a real view.
MAX_WATCH_RATIO = 20.0

#: Why a row was rejected, in the order they are checked (a row gets the first that applies).
BAD_ROW_REASONS: dict[str, str] = {
    "malformed_row": "the record cannot be parsed (wrong field count, invalid JSON)",
    "missing_field": "a required field is empty or absent",
    "unparsable_time": "the start time is neither Unix seconds nor ISO-8601",
    "invalid_number": "duration, watch time or size is not a finite number",
    "negative_duration": "the video length is negative",
    "negative_watch": "the watch time is negative",
    "watch_too_long": f"watched more than {MAX_WATCH_RATIO:g} x the video length",
    "invalid_size": "the file size is negative",
    "duplicate": "same user, video and start time as an earlier row",
}
_CODES = {reason: code for code, reason in enumerate(BAD_ROW_REASONS, start=1)}


@dataclass(frozen=True)
class _RawFrame:
    """The records of one file as strings (None = missing), with their line numbers."""

    frame: pd.DataFrame
    lines: np.ndarray
    malformed: list[tuple[int, str, str]] = field(default_factory=list)  # (line, detail, text)


Reader = Callable[[str, bytes, Sequence[str]], _RawFrame]
Writer = Callable[[IO[bytes], ViewTable], None]


def _header_error(name: str, header: Sequence[str], columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in header]
    if missing:
        raise EventLogError(name, 1, f"header lacks column(s) {', '.join(missing)}; got {list(header)}")


def _delimited_reader(delimiter: str) -> Reader:
    def read(name: str, data: bytes, columns: Sequence[str]) -> _RawFrame:
        first_line = data.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")
        header = next(csv.reader([first_line], delimiter=delimiter), [])
        _header_error(name, header, columns)
        malformed: list[tuple[int, str, str]] = []

        def on_invalid(row: Any) -> str:
            detail = f"expected {row.expected_columns} fields, got {row.actual_columns}"
            malformed.append((int(row.number), detail, row.text))
            return "skip"

        try:
            table = pa_csv.read_csv(
                io.BytesIO(data),
                read_options=pa_csv.ReadOptions(use_threads=False),  # row numbers need one thread
                parse_options=pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
                convert_options=pa_csv.ConvertOptions(
                    column_types={c: pa.string() for c in header},
                    include_columns=list(columns),
                    strings_can_be_null=True,
                    null_values=[""],
                ),
            )
        except (pa.ArrowException, ValueError) as e:
            raise EventLogError(name, None, f"cannot read: {e}") from e
        n_records = table.num_rows + len(malformed)
        lines = np.setdiff1d(np.arange(2, n_records + 2), [m[0] for m in malformed])
        return _RawFrame(table.to_pandas(), lines, malformed)

    return read


def _read_jsonl(name: str, data: bytes, columns: Sequence[str]) -> _RawFrame:
    records: list[dict[str, str | None]] = []
    lines: list[int] = []
    malformed: list[tuple[int, str, str]] = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise EventLogError(name, None, f"cannot read: {e}") from e
    for line_num, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            malformed.append((line_num, f"invalid JSON: {e.msg}", line))
            continue
        if not isinstance(row, dict):
            malformed.append((line_num, "expected a JSON object", line))
            continue
        records.append({c: None if row.get(c) is None else str(row[c]) for c in columns})
        lines.append(line_num)
    frame = pd.DataFrame.from_records(records, columns=list(columns)) if records else _empty(columns)
    return _RawFrame(frame, np.array(lines, dtype=np.int64), malformed)


def _read_parquet(name: str, data: bytes, columns: Sequence[str]) -> _RawFrame:
    try:
        file = pq.ParquetFile(pa.BufferReader(data))
        _header_error(name, file.schema_arrow.names, columns)
        table = file.read(columns=list(columns))
        frame = pd.DataFrame({c: pc.cast(table[c], pa.string()).to_pandas() for c in columns})
    except pa.ArrowException as e:
        raise EventLogError(name, None, f"cannot read: {e}") from e
    return _RawFrame(frame, np.arange(1, len(frame) + 1, dtype=np.int64))


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})


def _write_delimited(delimiter: str) -> Writer:
    def write(raw: IO[bytes], table: ViewTable) -> None:
        with io.TextIOWrapper(raw, encoding="utf-8", newline="") as stream:
            rows = zip(*(getattr(table, f).tolist() for f in VIEW_FIELDS), strict=True)
            write_views_csv(stream, rows, delimiter=delimiter)  # the parity set's codec: one views CSV

    return write


def _write_jsonl(raw: IO[bytes], table: ViewTable) -> None:
    with io.TextIOWrapper(raw, encoding="utf-8", newline="") as stream:
        for row in zip(*(getattr(table, f).tolist() for f in VIEW_FIELDS), strict=True):
            stream.write(json.dumps(dict(zip(VIEW_FIELDS, row, strict=True)), separators=(",", ":")))
            stream.write("\n")


def _write_parquet(raw: IO[bytes], table: ViewTable) -> None:
    arrow = pa.table(
        {f: pa.array(getattr(table, f), type=pa.string() if f.endswith("_id") else None) for f in VIEW_FIELDS}
    )
    pq.write_table(arrow, raw)


@dataclass(frozen=True)
class _Format:
    read: Reader
    write: Writer
    compressible: bool = True


_FORMATS: dict[str, _Format] = {
    ".csv": _Format(_delimited_reader(","), _write_delimited(",")),
    ".tsv": _Format(_delimited_reader("\t"), _write_delimited("\t")),
    ".jsonl": _Format(_read_jsonl, _write_jsonl),
    ".ndjson": _Format(_read_jsonl, _write_jsonl),
    ".parquet": _Format(_read_parquet, _write_parquet, compressible=False),
}


def _format_of(name: str) -> tuple[_Format, bool]:
    """The format and whether the file is gzipped, from the file name."""
    suffixes = [s.lower() for s in Path(name).suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    if compressed:
        suffixes.pop()
    fmt = _FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None or (compressed and not fmt.compressible):
        known = ", ".join(f"{s}[.gz]" if f.compressible else s for s, f in _FORMATS.items())
        raise ValueError(f"{name}: unknown event log format; expected one of {known}")
    return fmt, compressed


@dataclass(frozen=True)
class LoadReport:
    """What `load_events` read and rejected.

    Attributes:
        sources: Every file read, in order.
        n_rows: Records read (good and bad).
        n_good: Rows kept.
        bad_rows: Rejected rows per reason (only reasons that occurred).
        quarantine_path: Where the rejected rows were written, or None if there were none
            or no path was given.
    """

    sources: tuple[str, ...]
    n_rows: int
    n_good: int
    bad_rows: dict[str, int]
    quarantine_path: str | None

    @property
    def n_bad(self) -> int:
        return self.n_rows - self.n_good


@dataclass
class _Checked:
    """One file after validation: parsed columns, a reason code per record (0 = good), raw fields."""

    source: str
    converted: Converted
    codes: np.ndarray
    lines: np.ndarray
    raw: pd.DataFrame
    malformed: list[tuple[int, str, str]]


def _check(source: str, raw: _RawFrame, adapter: Adapter) -> _Checked:
    """Give every record of one file its first failing reason (duplicates are found later)."""
    parsed = adapter.convert(raw.frame)
    n = len(raw.frame)
    codes = np.zeros(n, dtype=np.int8)
    with np.errstate(invalid="ignore"):
        checks = [
            ("missing_field", raw.frame.drop(columns=list(adapter.optional)).isna().any(axis=1).to_numpy()),
            ("unparsable_time", ~np.isfinite(parsed.start_ts)),
            (
                "invalid_number",
                ~(np.isfinite(parsed.duration_s) & np.isfinite(parsed.watch_s) & np.isfinite(parsed.size_bytes)),
            ),
            ("negative_duration", parsed.duration_s < 0),
            ("negative_watch", parsed.watch_s < 0),
            # (an unknown length, 0, bounds nothing)
            ("watch_too_long", (parsed.duration_s > 0) & (parsed.watch_s > MAX_WATCH_RATIO * parsed.duration_s)),
            ("invalid_size", parsed.size_bytes < 0),
        ]
    for reason, failed in reversed(checks):  # the earliest reason in the list wins
        codes[failed] = _CODES[reason]
    return _Checked(source, parsed, codes, raw.lines, raw.frame, raw.malformed)


def load_events(
    spec: str | Path,
    *,
    adapter: str = "standard",
    strict: bool = False,
    quarantine_path: str | Path | None = None,
    s3_client: Any = None,
    progress: Callable[[float], None] | None = None,
) -> tuple[ViewTable, LoadReport]:
    """Read, map and validate every row of the event logs ``spec`` names.

    Args:
        spec: A file, a glob or an ``s3://`` URI (see `resolve_sources`).
        adapter: Column mapping, ``standard`` or ``kuairand`` (see `adapters`).
        strict: Raise on the first bad row instead of quarantining it.
        quarantine_path: JSON Lines file receiving the bad rows (written only if there are any).
        s3_client: boto3 client for ``s3://`` specs; None builds one from the environment.
        progress: Called with the fraction of files read.

    Returns:
        The good rows in file order, and the report of what was read and rejected.

    Raises:
        EventLogError: a file cannot be read or lacks a column, or (``strict``) a row is bad.
        ValueError: unknown adapter or file format.
    """
    chosen = get_adapter(adapter)
    sources = resolve_sources(spec, s3_client=s3_client)
    checked = []
    for i, source in enumerate(sources):
        checked.append(_check(source.name, _read_source(source, chosen.columns), chosen))
        if progress is not None:
            progress((i + 1) / len(sources))
    _mark_duplicates(checked)
    bad = _bad_rows(checked)
    if strict and bad:
        first, line, reason, detail, _ = min(bad, key=lambda b: (b[0], b[1]))
        raise EventLogError(checked[first].source, line, f"{reason}: {detail}")
    counts: dict[str, int] = {}
    for *_, reason, _, _ in bad:
        counts[reason] = counts.get(reason, 0) + 1
    written = None
    if bad and quarantine_path is not None:
        _write_quarantine(Path(quarantine_path), checked, bad)
        written = str(quarantine_path)
    table = ViewTable.concat([_good_table(c) for c in checked])
    report = LoadReport(
        sources=tuple(c.source for c in checked),
        n_rows=sum(len(c.codes) + len(c.malformed) for c in checked),
        n_good=len(table),
        bad_rows=dict(sorted(counts.items(), key=lambda kv: list(BAD_ROW_REASONS).index(kv[0]))),
        quarantine_path=written,
    )
    return table, report


def _read_source(source: EventSource, columns: Sequence[str]) -> _RawFrame:
    fmt, compressed = _format_of(source.name)
    data = source.read_bytes()
    if compressed:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise EventLogError(source.name, None, f"cannot read: {e}") from e
    return fmt.read(source.name, data, columns)


def _mark_duplicates(checked: list[_Checked]) -> None:
    """Code as ``duplicate`` every otherwise-good row whose (user, video, start) came earlier."""
    good = [c.codes == 0 for c in checked]
    keys = pd.DataFrame(
        {
            "u": np.concatenate([c.converted.user_id[g] for c, g in zip(checked, good, strict=True)] or [[]]),
            "v": np.concatenate([c.converted.video_id[g] for c, g in zip(checked, good, strict=True)] or [[]]),
            "t": np.concatenate([c.converted.start_ts[g] for c, g in zip(checked, good, strict=True)] or [[]]),
        }
    )
    duplicated = keys.duplicated(keep="first").to_numpy()
    offset = 0
    for c, g in zip(checked, good, strict=True):
        rows = np.flatnonzero(g)
        c.codes[rows[duplicated[offset : offset + len(rows)]]] = _CODES["duplicate"]
        offset += len(rows)


#: A rejected record: (source index, line, reason, detail, raw fields).
_BadRow = tuple[int, int, str, str, dict[str, Any]]


def _bad_rows(checked: list[_Checked]) -> list[_BadRow]:
    """(source index, line, reason, detail, raw fields) of every rejected record."""
    reasons = list(BAD_ROW_REASONS)
    bad: list[_BadRow] = []
    for s, c in enumerate(checked):
        for line, detail, text in c.malformed:
            bad.append((s, line, "malformed_row", detail, {"text": text}))
        rows = np.flatnonzero(c.codes)
        for row, record in zip(rows.tolist(), c.raw.iloc[rows].to_dict("records"), strict=True):
            reason = reasons[c.codes[row] - 1]
            fields = {k: (None if pd.isna(v) else v) for k, v in record.items()}
            bad.append((s, int(c.lines[row]), reason, f"{BAD_ROW_REASONS[reason]}: {fields}", fields))
    return bad


def _write_quarantine(path: Path, checked: list[_Checked], bad: list[_BadRow]) -> None:
    def write(raw: IO[bytes]) -> None:
        for s, line, reason, detail, fields in sorted(bad, key=lambda b: (b[0], b[1])):
            record = {"source": checked[s].source, "line": line, "reason": reason, "detail": detail, "row": fields}
            raw.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")

    with atomic_output(path) as raw:
        write(raw)


def _good_table(c: _Checked) -> ViewTable:
    good = c.codes == 0
    p = c.converted
    return ViewTable(
        user_id=p.user_id[good].astype(object),
        video_id=p.video_id[good].astype(object),
        start_ts=p.start_ts[good],
        duration_s=p.duration_s[good],
        watch_s=p.watch_s[good],
        size_bytes=p.size_bytes[good].astype(np.int64),
    )


def read_events(path: str | Path) -> list[View]:
    """Read every view of an event log strictly, in file order.

    Args:
        path: A file, glob or ``s3://`` URI in any supported format, with standard columns.

    Returns:
        The views, in file order.

    Raises:
        EventLogError: a file cannot be read or decoded, lacks a column, or a row is bad.
        ValueError: the file name has no known event log suffix.
    """
    table, _ = load_events(path, strict=True)
    return table.views()


def write_events(path: str | Path, views: Iterable[View] | ViewTable) -> None:
    """Write views to an event log atomically, in the given order.

    Args:
        path: Target file; its suffix picks the format as in `load_events`.
        views: The views to write.

    Raises:
        ValueError: the file name has no known event log suffix.
        OSError: the file cannot be written.
    """
    path = Path(path)
    fmt, compressed = _format_of(path.name)
    table = views if isinstance(views, ViewTable) else ViewTable.from_views(list(views))

    def write(raw: IO[bytes]) -> None:
        if compressed:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
                fmt.write(_unclosable(zipped), table)
        else:
            fmt.write(_unclosable(raw), table)

    with atomic_output(path) as raw:
        write(raw)


def _unclosable(inner: IO[bytes] | gzip.GzipFile) -> IO[bytes]:
    """``inner`` for a writer, which may wrap it in a text layer and close that."""
    # A RawIOBase is a binary file; typeshed's IO[bytes] is a class of its own, not a protocol.
    return cast(IO[bytes], _Unclosable(inner))


class _Unclosable(io.RawIOBase):
    """Lets a writer wrap (and close) a text layer without closing the file beneath it."""

    def __init__(self, inner: IO[bytes] | gzip.GzipFile) -> None:
        self._inner = inner

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        return self._inner.write(b)
