"""An update seam with no registry: run a package file the host already has."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pitahaya.client_runtime.package import read_package
from pitahaya.client_runtime.releases import Release
from pitahaya.client_runtime.updater import UpdateCheck


class LocalArchiveUpdater:
    """Answers every check with one package archive, as a release on a ``local`` channel.

    For hosts that ship or sideload a package, the simulator, and tests. There is no TUF here:
    pass only an archive you built or one that came through `PackageUpdater` (the runtime still
    checks its sha256, every file against the manifest, loads it contained and runs its
    self-test).

    Raises:
        PackageFormatError: the archive is not a package (when constructed).
    """

    def __init__(self, archive: str | Path, scene: str | None = None) -> None:
        self.archive = Path(archive)
        data = self.archive.read_bytes()
        #: The package's manifest (what it is, before the runtime loads it).
        self.manifest = read_package(data).manifest
        self.version = self.manifest.version
        self.sha256 = hashlib.sha256(data).hexdigest()
        #: The release's scene: ``scene``, or by default the one the package's manifest names.
        self.scene = scene or self.manifest.scene

    def cached_archive(self, sha256: str) -> Path:
        return self.archive

    def check(self) -> UpdateCheck:
        release = Release(self.scene, "local", 0, self.version)
        return UpdateCheck(release=release, version=self.version, archive_path=self.archive, sha256=self.sha256)
