"""The publisher client (`pitahaya.publisher.RegistryClient`) against the registry on a real socket, and its error translation."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from pitahaya.publisher import RegistryClient, RegistryRejected, RegistryUnavailable


def test_push_release_and_list_over_http(live_url: str, token: str, make_archive: Callable[..., bytes]) -> None:
    with RegistryClient(live_url, token=token) as client:
        package = client.push(make_archive())
        release = client.create_release("watch_time", "1.0.0", channel="canary", rollout_percent=5)

        assert client.list_packages() == [package] == client.list_packages(scene="watch_time")
        assert client.list_releases("watch_time", channel="canary") == [release]
        assert client.root_metadata().startswith(b'{"signatures"')
        with pytest.raises(RegistryRejected) as rejected:
            client.push(make_archive())
        assert rejected.value.status_code == 409 and "already published" in rejected.value.message
        with pytest.raises(RegistryRejected) as invalid:
            client.create_release("watch_time", "1.0.0", rollout_percent=150)
        assert invalid.value.status_code == 422 and "rollout_percent" in invalid.value.message


def test_without_token_writes_are_rejected(live_url: str, make_archive: Callable[..., bytes]) -> None:
    with RegistryClient(live_url) as client, pytest.raises(RegistryRejected) as rejected:
        client.push(make_archive())
    assert rejected.value.status_code == 401


def test_unreachable_and_failing_registries_are_unavailable() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/packages":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(503, json={"detail": "database is down"})

    with RegistryClient("http://registry.invalid", transport=httpx.MockTransport(fail)) as client:
        with pytest.raises(RegistryUnavailable, match="unreachable"):
            client.list_packages()
        with pytest.raises(RegistryUnavailable, match="database is down") as failed:
            client.list_releases("watch_time")
    assert failed.value.status_code == 503
