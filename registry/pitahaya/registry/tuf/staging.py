"""Two-phase publication: signed metadata waits in ``<tuf_dir>/staging/`` for its rows' commit.

A publication is staged (its files written where nothing serves them, then a journal naming
them and the targets they add), the service commits its database rows, then
`StagedPublication.apply` renames the files into ``metadata/`` in chain order, so devices never
see a target without a row. The journal survives a crash: on start the registry finds the
publication again (`Staging.pending`) and applies or discards it against the database.
"""

from __future__ import annotations

import contextlib
import json
import os
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
    """Signed metadata written to ``staging/``, not yet served.

    Exactly one publication is staged at a time (under the publish lock).

    Attributes:
        files: Served file names, in the order `apply` moves them (``timestamp.json`` last).
        targets: ``{target path: sha256}`` the publication adds or changes.
    """

    staging: Staging
    files: tuple[str, ...]
    targets: Mapping[str, str]

    def apply(self) -> None:
        """Make the publication visible: rename each staged file into ``metadata/``, in order,
        then drop the journal. Idempotent (a file already moved is skipped), so it can finish an
        apply that a crash interrupted. Renames need no new disk space."""
        for name in self.files:
            with contextlib.suppress(FileNotFoundError):  # moved by an apply a crash interrupted
                os.replace(self.staging.folder / name, self.staging.metadata_dir / name)
        fsync_dir(self.staging.metadata_dir)
        self.staging.journal.unlink()
        fsync_dir(self.staging.folder)

    def discard(self) -> None:
        """Remove the staged files and the journal; the served metadata never changed."""
        self.staging.clear()


class Staging:
    """The staging folder beside ``metadata_dir`` and its journal."""

    def __init__(self, folder: Path, metadata_dir: Path) -> None:
        self.folder = folder
        self.metadata_dir = metadata_dir
        self.journal = folder / "publication.json"

    def check_clear(self) -> None:
        """Raise if a publication is pending: publishing over it would fork the version chain.

        Raises:
            PublicationPendingError: start the registry (it completes or discards the pending
                publication against the database), then retry.
        """
        if self.journal.exists():
            raise PublicationPendingError(
                f"a signed publication is pending in {self.folder}: start the registry (it completes "
                "or discards it against the database), then retry"
            )

    def stage(self, changes: Mapping[str, Metadata[Any]], added: Mapping[str, TargetFile]) -> StagedPublication:
        """Write signed versions by role name (chain order) and then the journal that makes them
        a staged publication; on failure remove what was written and re-raise.

        Raises:
            OSError: the files could not be written, e.g. a full disk (nothing was changed).
        """
        self.check_clear()
        names = [served_name(md, role) for role, md in changes.items()]
        targets = {path: target.hashes["sha256"] for path, target in added.items()}
        try:
            for name, md in zip(names, changes.values(), strict=True):
                write_atomic(self.folder / name, md.to_bytes(), mode=PUBLIC_FILE_MODE)
            write_atomic(self.journal, json.dumps({"files": names, "targets": targets}).encode(), mode=PUBLIC_FILE_MODE)
        except BaseException:
            self.clear()
            raise
        return StagedPublication(self, tuple(names), targets)

    def pending(self) -> StagedPublication | None:
        """The publication a crash or a failed apply left staged, if any."""
        try:
            journal = json.loads(self.journal.read_bytes())
        except FileNotFoundError:
            return None
        return StagedPublication(self, tuple(journal["files"]), dict(journal["targets"]))

    def clear(self) -> None:
        """Journal first: once it is gone, leftover staged files are inert."""
        self.journal.unlink(missing_ok=True)
        for leftover in self.folder.glob("*") if self.folder.exists() else ():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)
