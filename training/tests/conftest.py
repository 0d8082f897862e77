"""Fixtures of the training tests: a real S3-compatible server (SeaweedFS) on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers import S3Endpoint, s3_endpoint_fixture


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """SeaweedFS with credentials enforced; skips locally (fails under CI) when not installed."""
    yield from s3_endpoint_fixture(tmp_path_factory)
