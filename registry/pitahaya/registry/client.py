"""`RegistryClient`: what publishers (the CLI, CI jobs) use to talk to a registry.

    >>> client = RegistryClient("http://127.0.0.1:8000", token=os.environ["PITAHAYA_REGISTRY_TOKEN"])
    >>> client.push(archive_bytes)["sha256"]
    >>> client.create_release("watch_time", "1.0.0", rollout_percent=10)

Errors say what to do next: `RegistryUnavailable` (no answer or 5xx: retry later) and
`RegistryRejected` (4xx: the request is wrong; ``status_code`` and the server's ``message``
explain why). Pass ``transport`` (e.g. ``httpx.MockTransport``, or a WSGI/ASGI transport)
to talk to an in-process app in tests.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from pitahaya.registry.errors import RegistryRejected, RegistryUnavailable

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
"""Seconds; pushes upload up to tens of MB, so the read/write timeout is generous."""


class RegistryClient:
    """A synchronous client for the registry's ``/api/v1`` and ``/tuf`` endpoints.

    Args:
        base_url: The registry's root URL, e.g. ``http://127.0.0.1:8000``.
        token: The registry token; needed for `push` and `create_release` only.
        transport: An httpx transport to use instead of the network.
        timeout: Request timeouts.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, transport=transport, timeout=timeout)

    def push(self, archive: bytes) -> dict[str, Any]:
        """Publish a package archive.

        Returns:
            The published package: scene, version, sha256, size_bytes, target_path, created_at.

        Raises:
            RegistryRejected: invalid token (401), version already published (409), archive
                too large (413) or invalid (422).
            RegistryUnavailable: the registry could not be reached or failed.
        """
        response = self._request(
            "POST", "/api/v1/packages", content=archive, headers={"Content-Type": "application/octet-stream"}
        )
        return dict(response.json())

    def create_release(
        self,
        scene: str,
        version: str,
        channel: str = "stable",
        rollout_percent: float = 100.0,
        kill_switch: bool = False,
    ) -> dict[str, Any]:
        """Release a published package version on a channel.

        Returns:
            The release, including ``release_id`` and ``previous_version``.

        Raises:
            RegistryRejected: invalid token (401), unknown package version (404), invalid values (422).
            RegistryUnavailable: the registry could not be reached or failed.
        """
        body = {"version": version, "channel": channel, "rollout_percent": rollout_percent, "kill_switch": kill_switch}
        return dict(self._request("POST", f"/api/v1/scenes/{scene}/releases", json=body).json())

    def list_packages(self, scene: str | None = None) -> list[dict[str, Any]]:
        """Published packages, optionally of one scene."""
        params = {"scene": scene} if scene is not None else {}
        return list(self._request("GET", "/api/v1/packages", params=params).json())

    def list_releases(self, scene: str, channel: str | None = None) -> list[dict[str, Any]]:
        """A scene's releases, newest first, optionally on one channel."""
        params = {"channel": channel} if channel is not None else {}
        return list(self._request("GET", f"/api/v1/scenes/{scene}/releases", params=params).json())

    def root_metadata(self) -> bytes:
        """The newest signed TUF root, to bootstrap a device's trust (verify it out of band)."""
        return self._request("GET", "/tuf/metadata/root.json").content

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request, translating httpx failures and error statuses at this one boundary."""
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as e:
            raise RegistryUnavailable(f"registry at {self._http.base_url} is unreachable: {e}") from e
        if response.status_code >= 500:
            raise RegistryUnavailable(
                f"registry failed with {response.status_code}: {_server_message(response)}", response.status_code
            )
        if response.status_code >= 400:
            raise RegistryRejected(response.status_code, _server_message(response))
        return response


def _server_message(response: httpx.Response) -> str:
    """The server's ``detail``, flattening FastAPI's list of validation errors into one line."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text or response.reason_phrase
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg')}" for item in detail)
    return str(detail) if detail is not None else response.reason_phrase
