"""Creating and listing releases: which package version a channel's devices run.

A release is append-only: moving a channel (a wider rollout, a rollback, the kill switch)
inserts a new row and re-publishes the channel's signed release document, TUF target
``releases/<scene>/<channel>.json``. The document is `Release.to_json()` of the client
runtime, so devices parse exactly what the registry wrote.

``previous_version`` is what the channel's devices outside the rollout keep running: the
version the channel was fully on before this release, i.e. the previous release's package
version if that release reached 100 %, else that release's own ``previous_version``.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from pitahaya.client_runtime import Release
from pitahaya.registry.blobs import BlobStore
from pitahaya.registry.models import ReleaseRow
from pitahaya.registry.services.audit import log_action
from pitahaya.registry.services.packages import get_package
from pitahaya.registry.tuf_repo import TufRepository


def create_release(
    *,
    session: Session,
    blobs: BlobStore,
    tuf: TufRepository,
    scene: str,
    version: str,
    channel: str,
    rollout_percent: float,
    kill_switch: bool,
    actor: str,
) -> ReleaseRow:
    """Point a channel at a published package and publish the signed release document.

    Args:
        scene: Scene name.
        version: Published package version devices inside the rollout take.
        channel: Channel name (``stable``, ``canary``, ...).
        rollout_percent: Share of the channel's devices (0-100) that take ``version``.
        kill_switch: Send every device on the channel to the built-in default policy.
        actor: Who releases (recorded in the document and the audit log).

    Returns:
        The committed release row; its ``id`` is the document's ``release_id``.

    Raises:
        NotFoundError: ``version`` of ``scene`` is not published.
    """
    with tuf.publish_lock:
        get_package(session=session, scene=scene, version=version)
        latest = latest_release(session=session, scene=scene, channel=channel)
        row = ReleaseRow(
            scene=scene,
            channel=channel,
            package_version=version,
            rollout_percent=rollout_percent,
            previous_version=_fully_rolled_out_version(latest),
            kill_switch=kill_switch,
            created_by=actor,
        )
        session.add(row)
        session.flush()  # assigns row.id, which the document embeds as release_id
        document = Release(
            scene=scene,
            channel=channel,
            release_id=row.id,
            package_version=version,
            rollout_percent=rollout_percent,
            previous_version=row.previous_version,
            kill_switch=kill_switch,
            created_at=row.created_at.isoformat(),
            created_by=actor,
        ).to_json()
        row.sha256 = blobs.put(document)
        log_action(
            session=session,
            actor=actor,
            action="create_release",
            detail={
                "release_id": row.id,
                "scene": scene,
                "channel": channel,
                "package_version": version,
                "rollout_percent": rollout_percent,
                "previous_version": row.previous_version,
                "kill_switch": kill_switch,
                "sha256": row.sha256,
            },
        )
        tuf.add_targets({row.target_path: document})
        session.commit()
    return row


def list_releases(*, session: Session, scene: str, channel: str | None = None) -> list[ReleaseRow]:
    """Releases of a scene, optionally on one channel, newest first."""
    query = select(ReleaseRow).where(ReleaseRow.scene == scene).order_by(ReleaseRow.id.desc())
    if channel is not None:
        query = query.where(ReleaseRow.channel == channel)
    return list(session.scalars(query))


def latest_release(*, session: Session, scene: str, channel: str) -> ReleaseRow | None:
    """The live release of a channel (the newest row), or None if it never had one."""
    query = (
        select(ReleaseRow)
        .where(ReleaseRow.scene == scene, ReleaseRow.channel == channel)
        .order_by(ReleaseRow.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def _fully_rolled_out_version(latest: ReleaseRow | None) -> str | None:
    if latest is None:
        return None
    return latest.package_version if latest.rollout_percent >= 100.0 else latest.previous_version
