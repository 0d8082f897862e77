"""Publishing and looking up package archives.

Push workflow: validate the archive with the same `read_package` a device uses → refuse a
duplicate (scene, version) or a push its scene's delegation does not accept, before any of its
code runs → load it as a device would (`services.preflight`, outside the lock: it takes
seconds) → then, under the repository's publish lock, so concurrent pushes serialize: check
duplicate and delegation again (another push may have landed) → store the blob (complete and verified) → insert the row and audit entry
→ stage the signed TUF target ``packages/<scene>/<scene>-<version>.tar.xz`` → commit →
make the metadata visible (`services.publication`: both or neither). A failure before the
commit rolls the row back and discards the staged metadata; at worst an unreferenced blob
remains.

A scene delegated to publisher keys (`TufRepository.delegate`) takes only signed pushes: the
publisher's signatures over the scene role's next version are verified before anything is
stored, and that version (not the online ``targets`` key) then signs the archive.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pitahaya.client_runtime import Manifest, Package, PackageFormatError, read_package
from pitahaya.client_runtime.package import target_path
from tuf.api.metadata import Metadata, TargetFile, Targets

from pitahaya.registry.errors import (
    AlreadyExistsError,
    InvalidPackageError,
    NotFoundError,
    PublisherSignatureError,
    UploadTooLargeError,
)
from pitahaya.registry.models import PackageRow
from pitahaya.registry.services.audit import log_action
from pitahaya.registry.services.preflight import Preflight, preflight_package
from pitahaya.registry.services.publication import PublicationStore, commit_and_publish, publishing
from pitahaya.publisher.wire import PublisherSignatures
from pitahaya.registry.tuf import TufRepository, publisher_role


def push_package(
    *,
    store: PublicationStore,
    archive: bytes,
    actor: str,
    preflight: Preflight,
    max_manifest_bytes: int,
    signatures: PublisherSignatures | None = None,
) -> PackageRow:
    """Validate, store and sign a package archive.

    Args:
        store: Where the package is written (database session, blobs, TUF repository).
        archive: The ``.tar.xz`` bytes as built by the packager.
        actor: Who pushes (recorded in the row and the audit log).
        preflight: Loads the package as a device would before anything is stored or signed.
        max_manifest_bytes: Largest manifest stored, as JSON (``Settings.max_manifest_bytes``).
        signatures: The publisher's signatures, required for (and only for) a delegated scene.

    Returns:
        The committed package row.

    Raises:
        InvalidPackageError: the archive is malformed, a file does not match its manifest, or
            the manifest holds NaN or an infinity.
        UploadTooLargeError: the manifest is larger than ``max_manifest_bytes`` (nothing was changed).
        PreflightError: a device would reject the package (nothing was stored; the refusal is audited).
        BusyError: every pre-flight slot stayed busy; retry later (nothing was changed).
        AlreadyExistsError: this scene/version is already published (nothing was changed).
        PublisherSignatureError: the scene is delegated and the push is unsigned or its
            signatures do not verify (nothing was changed).
        StaleDelegationError: the signatures are for an outdated role version (nothing was changed).
        InvalidArgumentError: signatures for a scene that is not delegated (nothing was changed).
        StorageUnavailableError: the disk or database failed, e.g. full (nothing was published).
    """
    session, blobs, tuf = store.session, store.blobs, store.tuf
    try:
        package = read_package(archive)
    except PackageFormatError as e:
        raise InvalidPackageError(str(e)) from e
    manifest = _storable_manifest(package.manifest, max_manifest_bytes)
    scene, version = package.manifest.scene, package.manifest.version
    path = target_path(scene, version)
    # Cheap refusals first: a duplicate or an unsigned push never gets to run code in the sandbox.
    _authorize(session=session, tuf=tuf, package=package, path=path, signatures=signatures)
    checked = preflight_package(session=session, preflight=preflight, package=package, actor=actor)
    with publishing(session=session, tuf=tuf):
        delegated = _authorize(session=session, tuf=tuf, package=package, path=path, signatures=signatures)
        sha256 = blobs.put(archive)
        row = PackageRow(
            scene=scene,
            version=version,
            sha256=sha256,
            size_bytes=package.size_bytes,
            target_path=path,
            manifest=manifest,
            created_by=actor,
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError as e:  # another registry process won the race
            session.rollback()
            raise _already_published(scene, version) from e
        detail = {
            "scene": scene,
            "version": version,
            "sha256": sha256,
            "size_bytes": row.size_bytes,
            "preflight": checked,
        }
        if delegated is not None:  # who vouched for it, besides the token
            detail["publisher_keyids"] = sorted(delegated.signatures)
        log_action(session=session, actor=actor, action="push_package", detail=detail)
        if delegated is not None:
            commit_and_publish(session=session, stage=lambda: tuf.publishers.stage(scene, delegated))
        else:
            commit_and_publish(session=session, stage=lambda: tuf.stage_targets({path: (row.size_bytes, sha256)}))
    return row


def _authorize(
    *, session: Session, tuf: TufRepository, package: Package, path: str, signatures: PublisherSignatures | None
) -> Metadata[Targets] | None:
    """Refuse a duplicate, or a push its scene's delegation does not accept; the verified role version if delegated.

    Checked before the pre-flight and again under the publish lock (another push may have landed).
    """
    scene, version = package.manifest.scene, package.manifest.version
    if _find_package(session=session, scene=scene, version=version) is not None:
        raise _already_published(scene, version)
    if signatures is not None:
        target = TargetFile(length=package.size_bytes, hashes={"sha256": package.sha256}, path=path)
        return tuf.publishers.verify(scene, target, signatures)
    if tuf.publishers.of(scene) is not None:
        raise PublisherSignatureError(
            f"scene {scene} is delegated to {publisher_role(scene)}: sign the push with the publisher key "
            "(pitahaya push --signing-key KEY.pem)"
        )
    return None


def list_packages(*, session: Session, scene: str | None = None) -> list[PackageRow]:
    """Published packages, optionally of one scene, by scene then publication order."""
    query = select(PackageRow).order_by(PackageRow.scene, PackageRow.id)
    if scene is not None:
        query = query.where(PackageRow.scene == scene)
    return list(session.scalars(query))


def get_package(*, session: Session, scene: str, version: str) -> PackageRow:
    """One published package.

    Raises:
        NotFoundError: no package with that scene and version.
    """
    row = _find_package(session=session, scene=scene, version=version)
    if row is None:
        raise NotFoundError(f"package {scene} {version} is not published")
    return row


def _storable_manifest(manifest: Manifest, max_bytes: int) -> dict[str, Any]:
    """The manifest as the row stores it, once it fits ``max_bytes`` and strict JSON.

    Python's parser accepts NaN and Infinity (and reads 1e309 as infinity), but PostgreSQL's
    JSON type refuses them, and they mean nothing in a manifest.

    Raises:
        InvalidPackageError: a non-finite number.
        UploadTooLargeError: larger than ``max_bytes`` as JSON.
    """
    stored = manifest.to_dict()
    try:
        size = len(json.dumps(stored, allow_nan=False).encode())
    except ValueError as e:
        raise InvalidPackageError(f"manifest.json holds NaN or an infinity, which JSON does not allow: {e}") from e
    if size > max_bytes:
        raise UploadTooLargeError(
            f"the package's manifest is {size} bytes as JSON, over the registry's limit of {max_bytes} "
            "(PITAHAYA_MAX_MANIFEST_BYTES)"
        )
    return stored


def _find_package(*, session: Session, scene: str, version: str) -> PackageRow | None:
    return session.scalars(select(PackageRow).where(PackageRow.scene == scene, PackageRow.version == version)).first()


def _already_published(scene: str, version: str) -> AlreadyExistsError:
    return AlreadyExistsError(
        f"package {scene} {version} is already published; packages are immutable, bump the version"
    )
