"""Event logs round-trip through every format, and malformed rows are reported by line."""

from __future__ import annotations

import gzip

import pytest
from pitahaya.client_runtime import VIEW_FIELDS, View
from pitahaya.training import EventLogError, GeneratorConfig, generate_views, read_events, write_events

VIEWS = generate_views(GeneratorConfig(n_views=300, n_users=5, n_videos=50, seed=3))
HEADER = ",".join(VIEW_FIELDS)


@pytest.mark.parametrize("name", ["log.csv", "log.csv.gz", "log.jsonl", "log.jsonl.gz", "log.ndjson"])
def test_round_trip(tmp_path, name):
    path = tmp_path / name
    write_events(path, VIEWS)
    assert read_events(path) == VIEWS
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp file left behind


def test_gzip_output_is_reproducible(tmp_path):
    write_events(tmp_path / "a.csv.gz", VIEWS)
    write_events(tmp_path / "b.csv.gz", VIEWS)
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "b.csv.gz").read_bytes()


def test_extra_csv_columns_are_ignored(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(f"{HEADER},network\nu1,v1,100.5,20.0,3.25,5000,wifi\n")
    assert read_events(path) == [View("u1", "v1", 100.5, 20.0, 3.25, 5000)]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("u1,v2,101.0,20.0,oops,5000", "invalid_number"),
        ("u1,v2,101.0,20.0,-1.0,5000", "negative_watch"),
        ("u1,v2,101.0,20.0", "expected 6 fields"),
    ],
)
def test_malformed_csv_row_names_file_and_line(tmp_path, row, reason):
    path = tmp_path / "log.csv"
    path.write_text(f"{HEADER}\nu1,v1,100.0,20.0,3.0,5000\n{row}\n")
    with pytest.raises(EventLogError, match=reason) as info:
        read_events(path)
    assert info.value.line == 3
    assert f"{path}:3" in str(info.value)


def test_missing_column_is_reported_on_the_header(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,video_id,start_ts\nu1,v1,1.0\n")
    with pytest.raises(EventLogError, match="duration_s") as info:
        read_events(path)
    assert info.value.line == 1


def test_malformed_jsonl_lines(tmp_path):
    path = tmp_path / "log.jsonl.gz"
    good = '{"user_id":"u","video_id":"v","start_ts":1,"duration_s":2,"watch_s":1,"size_bytes":9}'
    with gzip.open(path, "wt") as f:
        f.write(f"{good}\n\n{{broken\n")
    with pytest.raises(EventLogError, match="invalid JSON") as info:
        read_events(path)
    assert info.value.line == 3
    path.write_bytes(gzip.compress(f'{good}\n{{"user_id":"u"}}\n'.encode()))
    with pytest.raises(EventLogError, match="missing_field") as info:
        read_events(path)
    assert info.value.line == 2


def test_unreadable_file_is_an_event_log_error(tmp_path):
    path = tmp_path / "log.csv.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(EventLogError, match="cannot read"):
        read_events(path)


def test_unknown_suffix_is_a_caller_error(tmp_path):
    with pytest.raises(ValueError, match="unknown event log format"):
        write_events(tmp_path / "log.txt", VIEWS)
