"""`RegistryClient`: what publishers (a CI job, the CLI) use to talk to a registry over HTTP.

    >>> client = RegistryClient("http://127.0.0.1:8000", token=os.environ["PITAHAYA_REGISTRY_TOKEN"])
    >>> client.push(archive_bytes)["sha256"]
    >>> client.push(archive_bytes, signers=[load_private_key(Path("publisher.pem"))])  # delegated scene
    >>> client.create_release("watch_time", "1.0.0", rollout_percent=10)
    >>> client.widen_release("watch_time", 50)          # operator token
    >>> client.pause_release("watch_time")               # devices keep the previous version
    >>> client.rollback_release("watch_time", "0.9.0")   # a new release at 100 %

Errors say what to do next (`pitahaya.publisher.errors`): `RegistryUnavailable` (no answer or
5xx: retry later), `RegistryRejected` (4xx: the request is wrong; ``status_code`` and the
server's ``message`` explain why) and `SigningRefusedError` (a signed push refused before
anything was sent). Pass ``transport`` (e.g. ``httpx.MockTransport``, or a WSGI/ASGI
transport) to talk to an in-process app in tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, UTC
from types import TracebackType
from typing import Any

import httpx
from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, TargetFile, Targets

from pitahaya.client_runtime import PackageFormatError, read_package, target_path
from pitahaya.publisher.errors import RegistryRejected, RegistryUnavailable, SigningRefusedError
from pitahaya.publisher.wire import DELEGATED_EXPIRY, PublisherSignatures, next_delegated_metadata

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
"""Seconds; pushes upload up to tens of MB, so the read/write timeout is generous."""


class RegistryClient:
    """A synchronous client for the registry's ``/api/v1`` and ``/tuf`` endpoints.

    Args:
        base_url: The registry's root URL, e.g. ``http://127.0.0.1:8000``.
        token: An API token (or the bootstrap ``PITAHAYA_REGISTRY_TOKEN``); writes need one
            whose role allows them (publisher: push, operator: releases, admin: tokens).
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

    def push(self, archive: bytes, signers: Sequence[Signer] = (), *, trust_current: bool = False) -> dict[str, Any]:
        """Publish a package archive.

        Args:
            signers: Publisher keys of the archive's scene, when the scene is delegated: they
                sign the scene role's next version (the current one plus this archive), after
                checking that the current version verifies under the delegation.
            trust_current: Sign on top of the current version even though it does not verify
                under the delegation: needed once after the admin re-delegated the scene to
                new keys (the old keys signed it). Check its targets out of band first.

        Returns:
            The published package: scene, version, sha256, size_bytes, target_path, created_at.

        Raises:
            RegistryRejected: invalid token (401), unsigned push to a delegated scene or bad
                signatures (403), version already published or another push signed first
                (409), archive too large (413) or invalid (422).
            SigningRefusedError: ``signers`` given and the archive is malformed, the registry's
                delegation does not trust these keys, or its current role version does not
                verify (nothing was sent).
            RegistryUnavailable: the registry could not be reached or failed.
        """
        headers = {"Content-Type": "application/octet-stream"}
        if signers:
            headers[PublisherSignatures.HEADER] = self._sign_push(archive, signers, trust_current).to_header()
        response = self._request("POST", "/api/v1/packages", content=archive, headers=headers)
        return dict(response.json())

    def get_delegation(self, scene: str) -> dict[str, Any]:
        """The scene's publisher delegation: role, threshold, paths, public keys, current metadata.

        Raises:
            RegistryRejected: the scene is not delegated (404).
        """
        return dict(self._request("GET", f"/api/v1/scenes/{scene}/delegation").json())

    def _sign_push(self, archive: bytes, signers: Sequence[Signer], trust_current: bool) -> PublisherSignatures:
        try:
            package = read_package(archive)
        except PackageFormatError as e:
            raise SigningRefusedError(f"not a valid package archive, nothing signed: {e}") from e
        scene = package.manifest.scene
        found = self.get_delegation(scene)
        name = found["role"]
        keys = {keyid: Key.from_dict(keyid, dict(key)) for keyid, key in found["keys"].items()}
        role = DelegatedRole(name, list(keys), found["threshold"], True, found["paths"])
        delegator = Targets(delegations=Delegations(keys=keys, roles={name: role}))
        for signer in signers:
            if signer.public_key.keyid not in keys:
                raise SigningRefusedError(
                    f"the registry does not delegate scene {scene} to key {signer.public_key.keyid}"
                )
        current = Metadata[Targets].from_dict(dict(found["metadata"])) if found["metadata"] else None
        if current is not None and not trust_current:
            try:
                delegator.verify_delegate(name, current.signed_bytes, current.signatures)
            except UnsignedMetadataError as e:
                raise SigningRefusedError(
                    f"the registry's current {name} metadata does not verify under the delegation; "
                    f"refusing to sign on top of it (after a re-delegation to new keys, check its targets and "
                    f"push with --trust-current-targets): {e}"
                ) from e
        target = TargetFile(
            length=package.size_bytes,
            hashes={"sha256": package.sha256},
            path=target_path(scene, package.manifest.version),
        )
        expires = datetime.now(UTC) + DELEGATED_EXPIRY
        return PublisherSignatures.sign(next_delegated_metadata(current, target, expires), signers)

    def create_release(
        self,
        scene: str,
        version: str,
        channel: str = "stable",
        rollout_percent: float = 100.0,
        kill_switch: bool = False,
        *,
        platforms: list[str] | None = None,
        app_version_min: str | None = None,
        app_version_max: str | None = None,
        paused: bool = False,
        gate: str | Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Release a published package version on a channel.

        Args:
            platforms, app_version_min, app_version_max: Targeting; devices outside it keep
                the version they ran. None means no restriction.
            paused: Publish the release halted.
            gate: A quality gate: a preset name (``standard``, ``fast``, ``cautious``) or a
                spec (``{"steps": [1, 10, 50, 100], "on_fail": "rollback", ...}``). The
                release then starts at the gate's first step and ``rollout_percent``,
                ``kill_switch`` and ``paused`` are not sent; the registry advances, pauses or
                rolls it back on the devices' telemetry (`rollout_status`).

        Returns:
            The release, including ``release_id`` and ``previous_version``.

        Raises:
            RegistryRejected: invalid token (401), wrong role (403), unknown package version
                (404), unverifiable package (409), invalid values (422).
            RegistryUnavailable: the registry could not be reached or failed.
        """
        body: dict[str, Any] = {"version": version, "channel": channel}
        if gate is None:
            body |= {"rollout_percent": rollout_percent, "kill_switch": kill_switch, "paused": paused}
        else:
            body["gate"] = {"preset": gate} if isinstance(gate, str) else dict(gate)
        targeting = {"platforms": platforms, "app_version_min": app_version_min, "app_version_max": app_version_max}
        if any(value is not None for value in targeting.values()):
            body["targeting"] = targeting
        return dict(self._request("POST", f"/api/v1/scenes/{scene}/releases", json=body).json())

    def widen_release(self, scene: str, rollout_percent: float, channel: str = "stable") -> dict[str, Any]:
        """Raise the live release's rollout percentage (a new release)."""
        return self._channel_operation(scene, channel, "widen", {"rollout_percent": rollout_percent})

    def pause_release(self, scene: str, channel: str = "stable") -> dict[str, Any]:
        """Halt the live rollout: every device returns to the previous version."""
        return self._channel_operation(scene, channel, "pause", None)

    def resume_release(self, scene: str, channel: str = "stable") -> dict[str, Any]:
        """Resume a paused rollout."""
        return self._channel_operation(scene, channel, "resume", None)

    def revert_release(self, scene: str, channel: str = "stable") -> dict[str, Any]:
        """Undo the live rollout: every device returns to what it ran before that release."""
        return self._channel_operation(scene, channel, "revert", None)

    def rollout_status(self, scene: str, channel: str = "stable") -> dict[str, Any]:
        """The channel's live release and its quality gate: state, step, latest evidence, history (operator)."""
        return dict(self._request("GET", f"/api/v1/scenes/{scene}/channels/{channel}/rollout").json())

    def rollback_release(self, scene: str, version: str, channel: str = "stable") -> dict[str, Any]:
        """Move every device on the channel to an older published version (a new release at 100 %)."""
        return self._channel_operation(scene, channel, "rollback", {"version": version})

    def set_kill_switch(self, scene: str, enabled: bool, channel: str = "stable") -> dict[str, Any]:
        """Send every device on the channel to the default policy, or undo that."""
        return self._channel_operation(scene, channel, "kill-switch", {"enabled": enabled})

    def create_token(self, name: str, role: str) -> dict[str, Any]:
        """Mint an API token (admin); the result's ``secret`` is shown only this once."""
        return dict(self._request("POST", "/api/v1/tokens", json={"name": name, "role": role}).json())

    def list_tokens(self) -> list[dict[str, Any]]:
        """API tokens without their secrets (admin)."""
        return list(self._request("GET", "/api/v1/tokens").json())

    def revoke_token(self, name: str) -> dict[str, Any]:
        """Revoke an API token by name (admin)."""
        return dict(self._request("DELETE", f"/api/v1/tokens/{name}").json())

    def list_audit_entries(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest audit-log entries first (operator)."""
        return list(self._request("GET", "/api/v1/audit", params={"limit": limit}).json())

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

    def _channel_operation(
        self, scene: str, channel: str, operation: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        url = f"/api/v1/scenes/{scene}/channels/{channel}/{operation}"
        return dict(self._request("POST", url, json=body).json())

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
