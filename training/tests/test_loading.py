"""load_events: every format and source kind, bad rows counted by reason and quarantined, --strict."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from pitahaya.client_runtime import VIEW_FIELDS, View
from pitahaya.training import (
    BAD_ROW_REASONS,
    EventLogError,
    GeneratorConfig,
    ViewTable,
    generate_views,
    load_events,
    write_events,
)
from pitahaya.training.adapters import KUAIRAND_BITRATE_BPS

VIEWS = generate_views(GeneratorConfig(n_views=400, n_users=6, n_videos=60, seed=4))
HEADER = ",".join(VIEW_FIELDS)
GOOD = "u1,v1,1700000000.0,20.0,3.5,5000"
#: One bad row per reason (after the good row above), with the reason it must get.
BAD_ROWS = [
    ("u1,v2,1700000001.0,20.0", "malformed_row"),
    ("u1,,1700000002.0,20.0,3.0,5000", "missing_field"),
    ("u1,v3,yesterday,20.0,3.0,5000", "unparsable_time"),
    ("u1,v4,1700000003.0,20.0,lots,5000", "invalid_number"),
    ("u1,v6,1700000005.0,-20.0,3.0,5000", "negative_duration"),
    ("u1,v7,1700000006.0,20.0,-3.0,5000", "negative_watch"),
    ("u1,v8,1700000007.0,2.0,40.5,5000", "watch_too_long"),
    ("u1,v9,1700000008.0,20.0,3.0,-1", "invalid_size"),
    (GOOD, "duplicate"),
]


@pytest.mark.parametrize("name", ["log.csv", "log.csv.gz", "log.tsv", "log.jsonl", "log.ndjson.gz", "log.parquet"])
def test_every_format_round_trips(tmp_path, name):
    write_events(tmp_path / name, VIEWS)
    table, report = load_events(tmp_path / name)
    assert table.views() == VIEWS
    assert report.n_rows == report.n_good == len(VIEWS) and report.bad_rows == {}


def test_globs_read_every_matching_file_in_name_order(tmp_path):
    write_events(tmp_path / "b.parquet", VIEWS[200:])
    write_events(tmp_path / "a.csv.gz", VIEWS[:200])
    table, report = load_events(str(tmp_path / "*"))
    assert table.views() == VIEWS
    assert report.sources == (str(tmp_path / "a.csv.gz"), str(tmp_path / "b.parquet"))
    with pytest.raises(EventLogError, match="no file matches"):
        load_events(str(tmp_path / "*.jsonl"))


def test_iso_times_are_accepted(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(f"{HEADER}\nu1,v1,2023-11-14T00:00:01Z,20.0,3.0,5000\nu1,v2,2023-11-14 00:00:02,20.0,3.0,5000\n")
    table, _ = load_events(path)
    assert table.start_ts.tolist() == [1_699_920_001.0, 1_699_920_002.0]


def test_each_bad_row_is_counted_by_reason_and_quarantined(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("\n".join([HEADER, GOOD, *(row for row, _ in BAD_ROWS)]) + "\n")
    quarantine = tmp_path / "out" / "bad.jsonl"
    table, report = load_events(path, quarantine_path=quarantine)
    assert table.views() == [View("u1", "v1", 1_700_000_000.0, 20.0, 3.5, 5000)]
    assert report.bad_rows == {reason: 1 for _, reason in BAD_ROWS}
    assert list(report.bad_rows) == list(BAD_ROW_REASONS)  # reported in check order
    assert report.n_rows == len(BAD_ROWS) + 1 and report.n_bad == len(BAD_ROWS)
    records = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in records] == [(i + 3, reason) for i, (_, reason) in enumerate(BAD_ROWS)]
    assert all(r["source"] == str(path) for r in records)
    assert records[1]["row"]["video_id"] is None and records[3]["row"]["watch_s"] == "lots"
    assert records[0]["row"] == {"text": BAD_ROWS[0][0]}


def test_nothing_is_written_when_every_row_is_good(tmp_path):
    write_events(tmp_path / "log.csv", VIEWS)
    _, report = load_events(tmp_path / "log.csv", quarantine_path=tmp_path / "bad.jsonl")
    assert report.quarantine_path is None and not (tmp_path / "bad.jsonl").exists()


@pytest.mark.parametrize(("row", "reason"), BAD_ROWS)
def test_strict_names_file_line_and_reason(tmp_path, row, reason):
    path = tmp_path / "log.csv"
    path.write_text(f"{HEADER}\n{GOOD}\n{row}\n")
    with pytest.raises(EventLogError, match=reason) as info:
        load_events(path, strict=True)
    assert info.value.line == 3 and str(info.value).startswith(f"{path}:3: {reason}")


def test_jsonl_bad_lines_keep_their_line_numbers(tmp_path):
    path = tmp_path / "log.jsonl.gz"
    good = '{"user_id":"u","video_id":"v","start_ts":1,"duration_s":2,"watch_s":1,"size_bytes":9}'
    path.write_bytes(gzip.compress(f'{good}\n\n{{broken\n{{"user_id":"u"}}\n[1]\n'.encode()))
    _, report = load_events(path, quarantine_path=tmp_path / "q.jsonl")
    assert report.bad_rows == {"malformed_row": 2, "missing_field": 1}
    lines = [json.loads(r)["line"] for r in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert lines == [3, 4, 5]


def test_duplicates_are_found_across_files(tmp_path):
    write_events(tmp_path / "a.csv", VIEWS[:300])
    write_events(tmp_path / "b.csv", VIEWS[250:])
    table, report = load_events(str(tmp_path / "*.csv"))
    assert table.views() == VIEWS and report.bad_rows == {"duplicate": 50}


def test_kuairand_adapter_maps_columns_and_keeps_zero_durations_as_unknown(tmp_path):
    path = tmp_path / "kuairand.tsv"
    path.write_text(
        "user_id\tvideo_id\ttime_ms\tis_click\tplay_time_ms\tduration_ms\tlabel\n"
        "111\t3892024\t1649581149287\t1\t46186\t45916\t1\n"
        "111\t2629583\t1649664552983\t1\t14549\t0\t1\n"
    )
    table, report = load_events(path, adapter="kuairand", strict=True)
    assert report.bad_rows == {}
    assert table.views() == [
        View("111", "3892024", 1_649_581_149.287, 45.916, 46.186, round(45.916 * KUAIRAND_BITRATE_BPS / 8)),
        View("111", "2629583", 1_649_664_552.983, None, 14.549, None),  # an image post: length and size unknown
    ]


@pytest.mark.parametrize("name", ["log.csv", "log.jsonl", "log.parquet"])
def test_unknown_lengths_and_sizes_round_trip(tmp_path, name):
    """A view of unknown length or size is written (empty field, or 0) and read back as None, not quarantined."""
    views = [
        *VIEWS[:5],
        View("u9", "post", 1_700_000_000.0, None, 4.0, None),
        View("u9", "v", 1_700_000_009.0, 12.0, 4.0, None),
    ]
    write_events(tmp_path / name, views)
    table, report = load_events(tmp_path / name, strict=True)
    assert table.views() == views and report.bad_rows == {}


def test_an_empty_length_is_unknown_but_an_empty_watch_time_is_missing(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(f"{HEADER}\nu1,v1,1700000000.0,,3.5,\nu1,v2,1700000010.0,20.0,,5000\n")
    table, report = load_events(path)
    assert table.views() == [View("u1", "v1", 1_700_000_000.0, None, 3.5, None)]
    assert report.bad_rows == {"missing_field": 1}


def test_a_file_without_a_required_column_is_rejected_whole(tmp_path):
    path = tmp_path / "log.parquet"
    write_events(path, VIEWS)
    with pytest.raises(EventLogError, match="time_ms") as info:
        load_events(path, adapter="kuairand")
    assert info.value.line == 1


def test_unknown_adapter_and_format_are_caller_errors(tmp_path):
    write_events(tmp_path / "log.csv", VIEWS)
    with pytest.raises(ValueError, match="unknown adapter"):
        load_events(tmp_path / "log.csv", adapter="nope")
    (tmp_path / "log.xml").write_text("<views/>")
    with pytest.raises(ValueError, match="unknown event log format"):
        load_events(tmp_path / "log.xml")


def test_view_table_round_trips_views():
    table = ViewTable.from_views(VIEWS)
    assert table.views() == VIEWS and len(table) == len(VIEWS)
    assert table.take(np.array([3, 1])).views() == [VIEWS[3], VIEWS[1]]
