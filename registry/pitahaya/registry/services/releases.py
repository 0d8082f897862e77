"""Releases: which package version a channel's devices run, and the operations that move it.

A release is append-only: every operation (create, widen, pause, resume, rollback, kill
switch) inserts a new row and re-publishes the channel's signed release document, TUF target
``releases/<scene>/<channel>.json``, in one transaction with its audit entry: the signed
metadata becomes visible if and only if that transaction commits (`services.publication`). The
document is `Release.to_json()` of the client runtime, so devices parse exactly what the
registry wrote, and each change reaches a device on its next refresh.

Devices the rollout does not reach (outside its percent or targeting, or all of them while
it is paused) keep what they ran before it: `create_release` carries the live release's
rollout and the rollouts still underneath it into the new document's ``earlier`` list, over
``previous_version`` (the version everyone else runs), reduced by
`pitahaya.client_runtime.releases.layered`. So a new release never sends a device to the
default policy; only the kill switch does. Operations that adjust a rollout (widen, pause,
resume, kill switch) keep what is underneath; `revert_rollout` drops the live rollout and puts
the one underneath back on top (what a quality gate does on "roll back"); `rollback_release`
moves every device to one older version.

A release only ever names a package whose stored archive exists and still verifies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pitahaya.client_runtime import Release
from pitahaya.client_runtime.package import parse_version
from pitahaya.client_runtime.releases import Rollout, Targeting, layered
from pitahaya.registry.errors import InvalidArgumentError, NotFoundError, UnverifiablePackageError
from pitahaya.registry.models import ReleaseOperation, ReleaseRow
from pitahaya.registry.services.audit import log_action
from pitahaya.registry.services.packages import get_package
from pitahaya.registry.services.publication import PublicationStore, commit_and_publish, publishing


def create_release(
    *,
    store: PublicationStore,
    scene: str,
    version: str,
    channel: str,
    rollout_percent: float,
    kill_switch: bool,
    actor: str,
    targeting: Targeting | None = None,
    paused: bool = False,
    before_commit: Callable[[ReleaseRow], object] | None = None,
) -> ReleaseRow:
    """Point a channel at a published package and publish the signed release document.

    Args:
        store: Where the release is written (database session, blobs, TUF repository).
        scene: Scene name.
        version: Published package version devices inside the rollout take.
        channel: Channel name (``stable``, ``canary``, ...).
        rollout_percent: Share of the channel's targeted devices (0-100) that take ``version``.
        kill_switch: Send every device on the channel to the built-in default policy.
        actor: Who releases (recorded in the document and the audit log).
        targeting: Platforms and app-version range the rollout may reach (None: everyone).
        paused: Publish the release halted (devices keep what they ran).
        before_commit: Called with the flushed row before the commit, to add rows that must
            commit with it (a rollout gate).

    Returns:
        The committed release row; its ``id`` is the document's ``release_id``.

    Raises:
        NotFoundError: ``version`` of ``scene`` is not published.
        UnverifiablePackageError: the package's stored archive is missing or corrupt.
    """
    with publishing(session=store.session, tuf=store.tuf):
        earlier, floor = _underneath(latest_release(session=store.session, scene=scene, channel=channel))
        return _publish(
            store,
            operation="create",
            actor=actor,
            scene=scene,
            channel=channel,
            version=version,
            rollout_percent=rollout_percent,
            previous_version=floor,
            earlier=earlier,
            kill_switch=kill_switch,
            targeting=targeting or Targeting(),
            paused=paused,
            before_commit=before_commit,
        )


def widen_release(
    *, store: PublicationStore, scene: str, channel: str, rollout_percent: float, actor: str
) -> ReleaseRow:
    """Raise the live release's rollout percent (same version, same targeting).

    Raises:
        NotFoundError: the channel has no release.
        InvalidArgumentError: ``rollout_percent`` is not above the current one (create a release to narrow).
    """
    with _live_release(store, scene, channel) as live:
        if rollout_percent <= live.rollout_percent:
            raise InvalidArgumentError(
                f"widen needs a rollout above the current {live.rollout_percent:g}%, got {rollout_percent:g}%"
            )
        return _republish(store, live, "widen", actor, rollout_percent=rollout_percent)


def set_paused(*, store: PublicationStore, scene: str, channel: str, paused: bool, actor: str) -> ReleaseRow:
    """Pause (every device keeps ``previous_version``) or resume the live release.

    Raises:
        NotFoundError: the channel has no release.
    """
    with _live_release(store, scene, channel) as live:
        return _republish(store, live, "pause" if paused else "resume", actor, paused=paused)


def set_kill_switch(*, store: PublicationStore, scene: str, channel: str, enabled: bool, actor: str) -> ReleaseRow:
    """Send every device on the channel to the default policy (``enabled``), or undo that.

    Raises:
        NotFoundError: the channel has no release.
    """
    with _live_release(store, scene, channel) as live:
        return _republish(store, live, "kill" if enabled else "unkill", actor, kill_switch=enabled)


def rollback_release(*, store: PublicationStore, scene: str, channel: str, version: str, actor: str) -> ReleaseRow:
    """Move every device on the channel to an older published package: a new release at 100 %.

    Raises:
        NotFoundError: the channel has no release, or ``version`` is not published.
        InvalidArgumentError: ``version`` is not older than the live release's version.
        UnverifiablePackageError: the package's stored archive is missing or corrupt.
    """
    with _live_release(store, scene, channel) as live:
        if parse_version(version) >= parse_version(live.package_version):
            raise InvalidArgumentError(
                f"rollback needs a version older than the live {live.package_version}, got {version}"
            )
        return _publish(
            store,
            operation="rollback",
            actor=actor,
            scene=scene,
            channel=channel,
            version=version,
            rollout_percent=100.0,
            previous_version=None,
            earlier=(),
            kill_switch=False,
            targeting=Targeting(),
            paused=False,
        )


def revert_rollout(*, store: PublicationStore, scene: str, channel: str, actor: str) -> ReleaseRow:
    """Undo the live rollout: every device runs what it ran before that release.

    The rollout underneath becomes the live one (same percent and targeting), or, with none,
    ``previous_version`` at 100 %. With nothing underneath at all the release is paused
    instead (its devices return to the default policy they had).

    Raises:
        NotFoundError: the channel has no release.
    """
    with _live_release(store, scene, channel) as live:
        earlier = rollouts_of(live)
        if earlier:
            top, rest = earlier[0], earlier[1:]
        elif live.previous_version is not None:
            top, rest = Rollout(live.previous_version, 100.0), ()
        else:
            return _republish(store, live, "revert", actor, paused=True)
        return _publish(
            store,
            operation="revert",
            actor=actor,
            scene=scene,
            channel=channel,
            version=top.package_version,
            rollout_percent=top.rollout_percent,
            previous_version=live.previous_version,
            earlier=rest,
            kill_switch=live.kill_switch,
            targeting=top.targeting,
            paused=False,
        )


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


def announcement(*, session: Session, row: ReleaseRow) -> dict[str, Any]:
    """What the ops view records of a published release (`TelemetryForwarder.mark_release` arguments)."""
    fully = row.rollout_percent >= 100.0 and not row.paused and not row.kill_switch and targeting_of(row).is_everyone
    return {
        "scene": row.scene,
        "channel": row.channel,
        "release_id": row.id,
        "package_version": row.package_version,
        "rollout_percent": row.rollout_percent,
        "fully_rolled_out": fully,
        "manifest": get_package(session=session, scene=row.scene, version=row.package_version).manifest,
    }


def targeting_of(row: ReleaseRow) -> Targeting:
    platforms = tuple(row.platforms) if row.platforms is not None else None
    return Targeting(platforms=platforms, app_version_min=row.app_version_min, app_version_max=row.app_version_max)


def rollouts_of(row: ReleaseRow) -> tuple[Rollout, ...]:
    """The rollouts underneath a release, newest first."""
    return tuple(Rollout.from_dict(raw) for raw in row.earlier or ())


def versions_underneath(row: ReleaseRow) -> list[str]:
    """Versions the devices a release's rollout does not reach run (its baseline), newest first."""
    versions = [rollout.package_version for rollout in rollouts_of(row)]
    if row.previous_version is not None:
        versions.append(row.previous_version)
    return list(dict.fromkeys(versions))


def _underneath(live: ReleaseRow | None) -> tuple[tuple[Rollout, ...], str | None]:
    """What a new release keeps underneath: the live rollout (unless paused) over what was under it.

    A kill switch on the live release is an emergency stop of that release, not a state to
    inherit: a new release starts from the rollouts beneath it.
    """
    if live is None:
        return (), None
    own = [] if live.paused else [Rollout(live.package_version, live.rollout_percent, targeting_of(live))]
    return layered([*own, *rollouts_of(live)], live.previous_version)


@contextmanager
def _live_release(store: PublicationStore, scene: str, channel: str) -> Iterator[ReleaseRow]:
    """Under the publish lock, the channel's live release, which an operation adjusts.

    Raises:
        NotFoundError: the channel has no release.
    """
    with publishing(session=store.session, tuf=store.tuf):
        live = latest_release(session=store.session, scene=scene, channel=channel)
        if live is None:
            raise NotFoundError(f"scene {scene} has no release on channel {channel}")
        yield live


def _republish(
    store: PublicationStore,
    live: ReleaseRow,
    operation: ReleaseOperation,
    actor: str,
    *,
    rollout_percent: float | None = None,
    paused: bool | None = None,
    kill_switch: bool | None = None,
) -> ReleaseRow:
    """A new release equal to ``live`` except for what is given (None keeps ``live``'s)."""
    return _publish(
        store,
        operation=operation,
        actor=actor,
        scene=live.scene,
        channel=live.channel,
        version=live.package_version,
        rollout_percent=live.rollout_percent if rollout_percent is None else rollout_percent,
        previous_version=live.previous_version,
        earlier=rollouts_of(live),
        kill_switch=live.kill_switch if kill_switch is None else kill_switch,
        targeting=targeting_of(live),
        paused=live.paused if paused is None else paused,
    )


def _publish(
    store: PublicationStore,
    *,
    operation: ReleaseOperation,
    actor: str,
    scene: str,
    channel: str,
    version: str,
    rollout_percent: float,
    previous_version: str | None,
    earlier: tuple[Rollout, ...],
    kill_switch: bool,
    targeting: Targeting,
    paused: bool,
    before_commit: Callable[[ReleaseRow], object] | None = None,
) -> ReleaseRow:
    """Insert the row, store and sign the document, audit, commit and publish (the caller holds
    `publishing`).

    Raises:
        StorageUnavailableError: the disk or database failed, e.g. full (nothing was published).
    """
    session = store.session
    versions = (version, previous_version, *(rollout.package_version for rollout in earlier))
    for named in {name for name in versions if name is not None}:
        package = get_package(session=session, scene=scene, version=named)
        if not store.blobs.verify(package.sha256):
            raise UnverifiablePackageError(
                f"package {scene} {named} is published but its stored archive is missing or corrupt; "
                "release another version"
            )
    # What the row and the signed document both hold; the document adds the row's id and time.
    common: dict[str, Any] = {
        "scene": scene,
        "channel": channel,
        "package_version": version,
        "rollout_percent": rollout_percent,
        "previous_version": previous_version,
        "kill_switch": kill_switch,
        "paused": paused,
        "created_by": actor,
    }
    row = ReleaseRow(
        **common,
        platforms=list(targeting.platforms) if targeting.platforms is not None else None,
        app_version_min=targeting.app_version_min,
        app_version_max=targeting.app_version_max,
        earlier=[asdict(rollout) for rollout in earlier],
        operation=operation,
    )
    session.add(row)
    session.flush()  # assigns row.id, which the document embeds as release_id
    document = Release(
        **common, release_id=row.id, created_at=row.created_at.isoformat(), targeting=targeting, earlier=earlier
    ).to_json()
    row.sha256 = store.blobs.put(document)
    if before_commit is not None:
        before_commit(row)
    log_action(
        session=session,
        actor=actor,
        action=f"{operation}_release",
        detail={
            "release_id": row.id,
            "scene": scene,
            "channel": channel,
            "package_version": version,
            "rollout_percent": rollout_percent,
            "previous_version": previous_version,
            "earlier": row.earlier,
            "kill_switch": kill_switch,
            "paused": paused,
            "targeting": {
                "platforms": row.platforms,
                "app_version_min": row.app_version_min,
                "app_version_max": row.app_version_max,
            },
            "sha256": row.sha256,
        },
    )
    commit_and_publish(session=session, stage=lambda: store.tuf.stage_targets({row.target_path: document}))
    return row
