"""Resolving a consistent-snapshot target name to the blob that holds its bytes.

Only (target path, sha256) pairs the registry itself published resolve: a package archive
by its row, a release document by any release ever made on that channel (devices holding
older signed metadata may still ask for an older document).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from pitahaya.registry.errors import NotFoundError
from pitahaya.registry.models import PackageRow, ReleaseRow


def get_target_sha256(*, session: Session, target_path: str, sha256: str) -> str:
    """Return ``sha256`` if the registry published it as ``target_path``.

    Raises:
        NotFoundError: no such target with that hash.
    """
    package = select(PackageRow.id).where(PackageRow.target_path == target_path, PackageRow.sha256 == sha256)
    if session.scalars(package).first() is not None:
        return sha256
    for release in session.scalars(select(ReleaseRow).where(ReleaseRow.sha256 == sha256)):
        if release.target_path == target_path:
            return sha256
    raise NotFoundError(f"no target {target_path!r} with sha256 {sha256}")
