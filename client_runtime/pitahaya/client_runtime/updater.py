"""Verified updates: fetch a scene's signed release and the package it names, through TUF.

Every check builds a fresh `tuf.ngclient.Updater` (one refresh per instance, as ngclient
requires) over the device's metadata cache, so root rotation, rollback and freeze
protection, and expiry all come from python-tuf. Packages land in a content-addressed
cache: downloaded to a temp file, fsynced, then renamed, so a crash mid-download never
leaves a file that looks complete.

Cache layout under ``cache_dir``::

    tuf/                  trusted TUF metadata (managed by ngclient)
    packages/<sha256>     verified package archives
    packages/.download-*  a download in progress; removed when an updater starts, so a
                          process killed mid-download leaves nothing that looks complete

A scene whose packages the registry delegates to publisher keys (role ``publisher-<scene>``)
resolves through that role: ngclient verifies it against the publisher keys the top-level
``targets`` names, and finds it first because that delegation is terminating and listed
before the registry's online role. A package entry any other role signed under a delegated
path (the top-level ``targets`` itself, or the online role) is refused
(`UpdateVerificationError`): only the publisher's keys may sign there.

Expired metadata (a registry that stopped re-signing, or a freeze attack) raises
`MetadataExpiredError`: no new package is installed, while the runtime keeps answering with
the package it verified earlier.

python-tuf's errors map by what the device should do next (`tuf.api.exceptions`):

    ExpiredMetadataError (a RepositoryError)  -> MetadataExpiredError     keep the cached package
    RepositoryError (bad signature, version,  -> UpdateVerificationError  never use it
      length or hash, ...)
    DownloadLengthMismatchError               -> UpdateVerificationError  a file longer than its
                                                                          signed length: tampering
    DownloadError (HTTP status, slow or       -> UpdateDownloadError      retry later
      broken connection)

A body longer than its signed length is a DownloadError subclass to python-tuf, which stops
reading it at that length, but no network fault makes a file grow: it is reported as the
verification failure it is.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tuf.api.exceptions import DownloadError, DownloadLengthMismatchError, ExpiredMetadataError, RepositoryError
from tuf.api.metadata import Metadata, Targets
from tuf.ngclient import FetcherInterface, Updater

from pitahaya.client_runtime.errors import (
    MetadataExpiredError,
    ReleaseError,
    UpdateDownloadError,
    UpdateError,
    UpdateVerificationError,
)
from pitahaya.client_runtime.package import target_path
from pitahaya.client_runtime.releases import Release, release_target_path

_PARTIAL_PREFIX = ".download-"


@dataclass(frozen=True)
class UpdateCheck:
    """What the signed release says this device should run.

    Attributes:
        release: The verified release document.
        version: Package version for this device, or None for the default policy.
        archive_path: Verified archive in the cache, when ``version`` is set.
        sha256: sha256 of the archive, when ``version`` is set.
    """

    release: Release
    version: str | None
    archive_path: Path | None = None
    sha256: str | None = None


class PackageUpdater:
    """Checks a registry for the package a device should run.

    Args:
        registry_url: Base URL of the registry (``http://host:port``).
        scene: Scene name.
        device_id: Stable device identifier; places the device in its rollout bucket.
        cache_dir: Writable folder for trusted metadata and packages.
        trusted_root: The registry's root metadata shipped with the app, needed until the cache
            has one: its bytes, or the path of the file (read on first start).
        channel: Release channel to follow.
        fetcher: TUF fetcher seam (default: ngclient's urllib3 fetcher).
        platform: This device's platform (``android``, ``ios``, ...), for release targeting.
        app_version: The host app's ``MAJOR.MINOR.PATCH``, for release targeting.
    """

    def __init__(
        self,
        registry_url: str,
        scene: str,
        device_id: str,
        cache_dir: str | Path,
        *,
        trusted_root: bytes | str | os.PathLike[str] | None = None,
        channel: str = "stable",
        fetcher: FetcherInterface | None = None,
        platform: str | None = None,
        app_version: str | None = None,
    ) -> None:
        self.registry_url = registry_url.rstrip("/")
        self.scene = scene
        self.device_id = device_id
        self.channel = channel
        self.cache_dir = Path(cache_dir)
        self.metadata_dir = self.cache_dir / "tuf"
        self.packages_dir = self.cache_dir / "packages"
        self.platform = platform
        self.app_version = app_version
        self._trusted_root = trusted_root
        self._fetcher = fetcher
        self.discard_partial_downloads()

    def discard_partial_downloads(self) -> None:
        """Remove downloads a killed process left behind (they were never renamed into place)."""
        try:
            for partial in self.packages_dir.glob(f"{_PARTIAL_PREFIX}*"):
                partial.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only or missing cache is reported by the first check

    def version_for(self, release: Release) -> str | None:
        """The version ``release`` assigns to this device (rollout bucket and targeting)."""
        return release.version_for(self.device_id, platform=self.platform, app_version=self.app_version)

    def cached_archive(self, sha256: str) -> Path:
        """Where the archive with this sha256 is (or would be) cached."""
        return self.packages_dir / sha256

    def _updater(self) -> Updater:
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        local_root = self.metadata_dir / "root.json"
        bootstrap = None if local_root.exists() else self._bootstrap_root()
        try:
            return Updater(
                metadata_dir=str(self.metadata_dir),
                metadata_base_url=f"{self.registry_url}/tuf/metadata/",
                target_base_url=f"{self.registry_url}/tuf/targets/",
                fetcher=self._fetcher,
                bootstrap=bootstrap,
            )
        except RepositoryError as e:
            raise UpdateVerificationError(f"trusted root metadata is invalid: {e}") from e

    def _bootstrap_root(self) -> bytes:
        """The shipped root's bytes: given as bytes, or read from the path given."""
        root = self._trusted_root
        if root is None:
            raise UpdateVerificationError("no trusted root metadata: pass trusted_root on first start")
        if isinstance(root, bytes):
            return root
        if isinstance(root, str) and root.lstrip().startswith("{"):
            raise UpdateVerificationError("trusted_root is JSON text: pass its bytes (text.encode()) or a file path")
        try:
            return Path(root).read_bytes()
        except OSError as e:
            raise UpdateVerificationError(f"cannot read the trusted root file {os.fspath(root)!r}: {e}") from e

    def _refuse_entry_outside_its_delegation(self, path: str) -> None:
        """Raise if a role other than the one ``path`` is delegated to lists it.

        The first delegation of the top-level ``targets`` whose paths cover ``path`` owns it
        (ngclient's search order). Any other role listing it (the top-level ``targets`` itself,
        or the registry's online role under a scene delegated to publisher keys) means a
        registry key signed what only the publisher keys may: refuse rather than trust the
        search order alone. Reads the metadata ngclient verified and cached in this refresh.
        """
        top = Metadata[Targets].from_file(str(self.metadata_dir / f"{Targets.type}.json")).signed
        roles = list(top.delegations.roles.values()) if top.delegations and top.delegations.roles else []
        owner = next((role for role in roles if role.is_delegated_path(path)), None)
        if owner is None:
            return  # no delegation covers it: the top-level targets signs it (a repository of the old layout)
        intruders = [Targets.type] if path in top.targets else []
        for role in roles:
            cached = self.metadata_dir / f"{role.name}.json"
            if role is not owner and role.is_delegated_path(path) and cached.exists():
                if path in Metadata[Targets].from_file(str(cached)).signed.targets:
                    intruders.append(role.name)
        if intruders:
            raise UpdateVerificationError(
                f"{path} is delegated to {owner.name} but also signed by {', '.join(intruders)}: refusing it"
            )

    def check(self) -> UpdateCheck:
        """Refresh signed metadata and make sure this device's package is cached and verified.

        Returns:
            The verified release and, unless the device should run the default policy,
            the cached archive of its package version.

        Raises:
            UpdateDownloadError: the registry could not be reached (retry later).
            MetadataExpiredError: the signed metadata expired (keep the cached package).
            UpdateVerificationError: metadata or a file failed verification (never use it).
            ReleaseError: the release document is malformed.
            UpdateError: the cache could not be written.
        """
        try:
            updater = self._updater()
            updater.refresh()
            release_info = updater.get_targetinfo(release_target_path(self.scene, self.channel))
            if release_info is None:
                raise ReleaseError(f"no release of {self.scene} on channel {self.channel}")
            with tempfile.TemporaryDirectory(dir=self.cache_dir) as tmp:
                release_file = updater.download_target(release_info, filepath=os.path.join(tmp, "release.json"))
                release = Release.from_json(Path(release_file).read_bytes())
            if release.scene != self.scene or release.channel != self.channel:
                raise ReleaseError(f"release document is for {release.scene}/{release.channel}")
            version = self.version_for(release)
            if version is None:
                return UpdateCheck(release=release, version=None)
            package_info = updater.get_targetinfo(target_path(self.scene, version))
            if package_info is None:
                raise ReleaseError(f"release names {self.scene} {version}, which the registry does not sign")
            self._refuse_entry_outside_its_delegation(package_info.path)
            sha256 = package_info.hashes.get("sha256")
            if sha256 is None:
                raise UpdateVerificationError(f"target {package_info.path} has no sha256")
            cached = self.cached_archive(sha256)
            if updater.find_cached_target(package_info, filepath=str(cached)) is None:
                self.packages_dir.mkdir(parents=True, exist_ok=True)
                fd, tmp_path = tempfile.mkstemp(dir=self.packages_dir, prefix=_PARTIAL_PREFIX)
                os.close(fd)
                try:
                    updater.download_target(package_info, filepath=tmp_path)
                    with open(tmp_path, "rb") as f:
                        os.fsync(f.fileno())
                    os.replace(tmp_path, cached)
                finally:
                    Path(tmp_path).unlink(missing_ok=True)
            return UpdateCheck(release=release, version=version, archive_path=cached, sha256=sha256)
        except DownloadLengthMismatchError as e:
            raise UpdateVerificationError(f"a file is longer than its signed length: {e}") from e
        except DownloadError as e:
            raise UpdateDownloadError(f"registry {self.registry_url} unreachable or failing: {e}") from e
        except ExpiredMetadataError as e:
            raise MetadataExpiredError(f"registry metadata expired, not installing updates: {e}") from e
        except RepositoryError as e:
            raise UpdateVerificationError(f"{type(e).__name__}: {e}") from e
        except OSError as e:
            raise UpdateError(f"cache {self.cache_dir} not writable: {e}") from e
