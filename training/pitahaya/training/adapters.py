"""Adapters map the columns of a particular event log onto the fields of `View`.

An adapter names the raw columns it needs and converts a frame of raw *strings* into numbers;
it never drops a row. A value it cannot parse becomes NaN, and `eventlog` turns that into a
quarantined row with a reason, so every adapter gets the same validation for free.

A video length or file size of 0 is *unknown* (`pitahaya.client_runtime.UNKNOWN`, None on a
`View`): such a row is a real view (its watch time, its place in the user's sittings) whose byte
rate nobody knows.

- ``standard``: the pitahaya log format (`VIEW_FIELDS`); ``start_ts`` is Unix seconds or an
  ISO-8601 time (naive times are UTC); an empty ``duration_s`` or ``size_bytes`` is unknown.
- ``kuairand``: KuaiRand's interaction logs (``user_id, video_id, time_ms, play_time_ms,
  duration_ms, ...``). Times are milliseconds. KuaiRand has no file sizes, so sizes are
  synthesized as ``duration_s * KUAIRAND_BITRATE_BPS / 8``; ``duration_ms == 0`` (an image
  post, or a length the log does not know: 18% of the rows) leaves both unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pitahaya.client_runtime import UNKNOWN, VIEW_FIELDS

#: Bitrate assumed for KuaiRand videos to synthesize file sizes: 1.5 Mbps, a typical 720p
#: short-video encode. It sets the bytes a preload plan moves, not what the model learns.
KUAIRAND_BITRATE_BPS = 1_500_000


@dataclass(frozen=True)
class Converted:
    """Parsed columns of a raw frame; float columns hold NaN where a value did not parse."""

    user_id: np.ndarray
    video_id: np.ndarray
    start_ts: np.ndarray
    duration_s: np.ndarray
    watch_s: np.ndarray
    size_bytes: np.ndarray


@dataclass(frozen=True)
class Adapter:
    """How to read one kind of event log.

    Attributes:
        name: What ``--adapter`` selects.
        columns: Raw columns every file must have.
        convert: Raw string frame -> parsed columns (same length, same order).
        optional: Columns whose empty value means "unknown" rather than a missing field.
    """

    name: str
    columns: tuple[str, ...]
    convert: Callable[[pd.DataFrame], Converted]
    optional: tuple[str, ...] = ()


def _numbers(column: pd.Series) -> np.ndarray:
    # A writable copy: callers fill in values (ISO times) in place.
    return np.array(pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))


def _length_or_size(column: pd.Series) -> np.ndarray:
    """A video length or file size: a number, 0 (unknown) for an empty field, NaN if unparsable."""
    values = _numbers(column)
    values[column.isna().to_numpy()] = UNKNOWN
    return values


def _ids(column: pd.Series) -> np.ndarray:
    return column.to_numpy(dtype=object, na_value=None)


def _unix_seconds(column: pd.Series) -> np.ndarray:
    """Unix seconds, or ISO-8601 text converted to them; NaN where neither parses."""
    seconds = _numbers(column)
    text = np.isnan(seconds) & column.notna().to_numpy()
    if text.any():
        parsed = pd.to_datetime(column[text], utc=True, errors="coerce", format="ISO8601")
        epoch = pd.Timestamp(0, tz="UTC")
        seconds[text] = ((parsed - epoch) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=np.nan)
    return seconds


#: The standard log's columns are `View`'s fields; how each one's text is parsed.
_STANDARD_PARSERS: dict[str, Callable[[pd.Series], np.ndarray]] = {
    "user_id": _ids,
    "video_id": _ids,
    "start_ts": _unix_seconds,
    "duration_s": _length_or_size,
    "watch_s": _numbers,
    "size_bytes": _length_or_size,
}


def _standard(raw: pd.DataFrame) -> Converted:
    return Converted(**{name: parse(raw[name]) for name, parse in _STANDARD_PARSERS.items()})


def _kuairand(raw: pd.DataFrame) -> Converted:
    duration_s = _numbers(raw["duration_ms"]) / 1000.0
    return Converted(
        user_id=_ids(raw["user_id"]),
        video_id=_ids(raw["video_id"]),
        start_ts=_numbers(raw["time_ms"]) / 1000.0,
        duration_s=duration_s,
        watch_s=_numbers(raw["play_time_ms"]) / 1000.0,
        size_bytes=np.round(duration_s * (KUAIRAND_BITRATE_BPS / 8.0)),
    )


#: Adapters by name.
ADAPTERS: dict[str, Adapter] = {
    "standard": Adapter("standard", VIEW_FIELDS, _standard, optional=("duration_s", "size_bytes")),
    "kuairand": Adapter("kuairand", ("user_id", "video_id", "time_ms", "play_time_ms", "duration_ms"), _kuairand),
}


def get_adapter(name: str) -> Adapter:
    """The adapter called ``name``.

    Raises:
        ValueError: no adapter has that name.
    """
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ValueError(f"unknown adapter {name!r}; expected one of {', '.join(sorted(ADAPTERS))}") from None
