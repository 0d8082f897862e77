"""Two-phase publication: signed metadata waits, unserved, for its rows' commit.

A publication is staged (its versions written where nothing serves them, then a journal naming
them and the targets they add), the service commits its database rows, then
`StagedPublication.apply` serves the versions, so devices never see a target without a row.
The journal survives a crash: on start the registry finds the publication again
(`Staging.pending`) and applies or discards it against the database.

Where the staged versions wait is a subclass: `FileStaging` (``<tuf_dir>/staging/``, renamed
into ``metadata/`` in chain order) or `pitahaya.registry.tuf.sql_store.SqlStaging` (unpublished
rows, published in one transaction).
"""

from __future__ import annotations

import contextlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, TargetFile

from pitahaya.client_runtime.files import fsync_dir, write_atomic
from pitahaya.registry._files import PUBLIC_FILE_MODE
from pitahaya.registry.errors import PublicationPendingError
from pitahaya.registry.tuf.roles import served_name


@dataclass(frozen=True)
class StagedPublication:
    """Signed metadata staged, not yet served.

    Exactly one publication is staged at a time (under the publish lock).

    Attributes:
        files: Served file names, in the order `apply` serves them (``timestamp.json`` last).
        targets: ``{target path: sha256}`` the publication adds or changes.
    """

    staging: Staging
    files: tuple[str, ...]
    targets: Mapping[str, str]

    def apply(self) -> None:
        """Make the publication visible and drop its journal. Idempotent, so it can finish an
        apply that a crash interrupted; needs no new disk space."""
        self.staging.apply(self.files)

    def discard(self) -> None:
        """Remove the staged versions and the journal; the served metadata never changed."""
        self.staging.clear()


class Staging(ABC):
    """Where a publication waits for its commit, and its journal."""

    @abstractmethod
    def pending(self) -> StagedPublication | None:
        """The publication a crash or a failed apply left staged, if any."""

    @abstractmethod
    def _stage(self, changes: Mapping[str, Metadata[Any]], names: list[str], targets: dict[str, str]) -> None:
        """Write the versions unserved, then the journal; on failure leave nothing staged."""

    @abstractmethod
    def apply(self, files: tuple[str, ...]) -> None:
        """Serve the staged versions (see `StagedPublication.apply`)."""

    @abstractmethod
    def clear(self) -> None:
        """Journal first: once it is gone, leftover staged versions are inert."""

    def check_clear(self) -> None:
        """Raise if a publication is pending: publishing over it would fork the version chain.

        Raises:
            PublicationPendingError: start the registry (it completes or discards the pending
                publication against the database), then retry.
        """
        if self.pending() is not None:
            raise PublicationPendingError(
                f"a signed publication is pending in {self}: start the registry (it completes "
                "or discards it against the database), then retry"
            )

    def stage(self, changes: Mapping[str, Metadata[Any]], added: Mapping[str, TargetFile]) -> StagedPublication:
        """Stage signed versions by role name (chain order) and then the journal that makes them
        a staged publication.

        Raises:
            PublicationPendingError: a publication is already staged.
            OSError: the versions could not be written, e.g. a full disk (nothing was changed).
        """
        self.check_clear()
        names = [served_name(md, role) for role, md in changes.items()]
        targets = {path: target.hashes["sha256"] for path, target in added.items()}
        self._stage(changes, names, targets)
        return StagedPublication(self, tuple(names), targets)


class FileStaging(Staging):
    """The staging folder beside ``metadata_dir`` and its journal (``publication.json``)."""

    def __init__(self, folder: Path, metadata_dir: Path) -> None:
        self.folder = folder
        self.metadata_dir = metadata_dir
        self.journal = folder / "publication.json"

    def __str__(self) -> str:
        return str(self.folder)

    def pending(self) -> StagedPublication | None:
        try:
            journal = json.loads(self.journal.read_bytes())
        except FileNotFoundError:
            return None
        return StagedPublication(self, tuple(journal["files"]), dict(journal["targets"]))

    def _stage(self, changes: Mapping[str, Metadata[Any]], names: list[str], targets: dict[str, str]) -> None:
        try:
            for name, md in zip(names, changes.values(), strict=True):
                write_atomic(self.folder / name, md.to_bytes(), mode=PUBLIC_FILE_MODE)
            write_atomic(self.journal, json.dumps({"files": names, "targets": targets}).encode(), mode=PUBLIC_FILE_MODE)
        except BaseException:
            self.clear()
            raise

    def apply(self, files: tuple[str, ...]) -> None:
        """Rename each staged file into ``metadata/``, in order, then drop the journal (a file
        already moved by an apply a crash interrupted is skipped)."""
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.folder / name, self.metadata_dir / name)
        fsync_dir(self.metadata_dir)
        self.journal.unlink()
        fsync_dir(self.folder)

    def clear(self) -> None:
        self.journal.unlink(missing_ok=True)
        for leftover in self.folder.glob("*") if self.folder.exists() else ():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)
