"""Event logs read from a real S3-compatible server (SeaweedFS on 127.0.0.1, credentials enforced)."""

from __future__ import annotations

import uuid

import pytest
from pitahaya.training import EventLogError, GeneratorConfig, generate_views, load_events, write_events

VIEWS = generate_views(GeneratorConfig(n_views=600, n_users=8, n_videos=80, seed=9))


@pytest.fixture
def bucket(s3_server, tmp_path, monkeypatch):
    """A fresh bucket holding the log split in a gzipped CSV and a Parquet file; AWS env set for it."""
    name = f"logs-{uuid.uuid4().hex[:8]}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    write_events(tmp_path / "part-0.csv.gz", VIEWS[:300])
    write_events(tmp_path / "part-1.parquet", VIEWS[300:])
    for part in ("part-0.csv.gz", "part-1.parquet"):
        client.upload_file(str(tmp_path / part), name, f"views/2023-11-14/{part}")
    client.put_object(Bucket=name, Key="views/README.txt", Body=b"not a log")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("PITAHAYA_S3_ENDPOINT_URL", s3_server.endpoint_url)
    return name


def test_one_object_and_a_glob_of_objects(bucket):
    table, report = load_events(f"s3://{bucket}/views/2023-11-14/part-0.csv.gz")
    assert table.views() == VIEWS[:300] and report.sources == (f"s3://{bucket}/views/2023-11-14/part-0.csv.gz",)
    table, report = load_events(f"s3://{bucket}/views/*/part-*")
    assert table.views() == VIEWS
    assert [s.rsplit("/", 1)[1] for s in report.sources] == ["part-0.csv.gz", "part-1.parquet"]


def test_bad_rows_from_s3_are_quarantined_with_their_uri(s3_server, bucket, tmp_path):
    body = "user_id,video_id,start_ts,duration_s,watch_s,size_bytes\nu1,v1,1.0,20.0,3.0,5000\nu1,v2,2.0,-1,3.0,5000\n"
    s3_server.client().put_object(Bucket=bucket, Key="bad.csv", Body=body.encode())
    table, report = load_events(f"s3://{bucket}/bad.csv", quarantine_path=tmp_path / "q.jsonl")
    assert len(table) == 1 and report.bad_rows == {"negative_duration": 1}
    assert f"s3://{bucket}/bad.csv" in (tmp_path / "q.jsonl").read_text()
    with pytest.raises(EventLogError, match=rf"s3://{bucket}/bad.csv:3: negative_duration"):
        load_events(f"s3://{bucket}/bad.csv", strict=True)


def test_storage_errors_are_event_log_errors(bucket, monkeypatch):
    with pytest.raises(EventLogError, match="cannot read.*NoSuchKey"):
        load_events(f"s3://{bucket}/views/missing.csv")
    with pytest.raises(EventLogError, match="no object matches"):
        load_events(f"s3://{bucket}/views/*.jsonl")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(EventLogError, match="cannot"):
        load_events(f"s3://{bucket}/views/*/part-*")
