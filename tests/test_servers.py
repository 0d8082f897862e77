"""The test servers themselves work (and enforce credentials), so scale-path tests can trust them."""

from __future__ import annotations

import pytest
import sqlalchemy

from servers import S3Endpoint


def test_seaweedfs_stores_objects_and_enforces_credentials(s3_endpoint: S3Endpoint) -> None:
    s3 = s3_endpoint.client()
    s3.create_bucket(Bucket="pitahaya-servers-test")
    s3.put_object(Bucket="pitahaya-servers-test", Key="a/b.txt", Body=b"hello")
    assert s3.get_object(Bucket="pitahaya-servers-test", Key="a/b.txt")["Body"].read() == b"hello"
    intruder = S3Endpoint(s3_endpoint.endpoint_url, "someone", "else").client()
    with pytest.raises(Exception, match="(?i)denied|signature|invalid|forbidden"):
        intruder.list_objects_v2(Bucket="pitahaya-servers-test")


def test_postgresql_accepts_connections(postgres_url: str) -> None:
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("select 40 + 2")).scalar() == 42
    engine.dispose()
