"""API tokens: create, list, revoke, and resolve a presented secret to its token.

Roles say what a token may do: ``publisher`` pushes packages, ``operator`` creates and moves
releases, ``client`` (devices) posts telemetry, ``admin`` may do everything including
managing tokens. The bootstrap token from ``PITAHAYA_REGISTRY_TOKEN`` acts as ``admin`` so a
fresh registry can be used (and can mint the first real tokens) without touching the DB.

A secret is shown once, at creation; only its sha256 is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pitahaya.registry.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from pitahaya.registry.clock import utcnow
from pitahaya.registry.models import ApiToken
from pitahaya.registry.services.audit import log_action

#: Prefix of every minted secret, so leaked tokens are easy to recognise (and to scan for).
SECRET_PREFIX = "pth_"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class Role(StrEnum):
    """What a token may do; `ADMIN` implies every other role."""

    PUBLISHER = "publisher"
    OPERATOR = "operator"
    CLIENT = "client"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name (the audit log's actor) and role."""

    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return self.role in (role, Role.ADMIN)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(*, session: Session, name: str, role: Role, actor: str) -> tuple[ApiToken, str]:
    """Mint a token.

    Returns:
        The committed row and the secret (the only time it is available).

    Raises:
        InvalidArgumentError: the name is not a short lowercase identifier.
        AlreadyExistsError: a token (live or revoked) already has this name.
    """
    if not _NAME_RE.match(name):
        raise InvalidArgumentError(f"token name must match {_NAME_RE.pattern}, got {name!r}")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, role=role.value, token_hash=hash_secret(secret), created_by=actor)
    session.add(row)
    try:
        session.flush()
    except IntegrityError as e:
        session.rollback()
        raise AlreadyExistsError(f"a token named {name!r} already exists; pick another name") from e
    log_action(session=session, actor=actor, action="create_token", detail={"name": name, "role": role.value})
    session.commit()
    return row, secret


def list_tokens(*, session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(*, session: Session, name: str, actor: str) -> ApiToken:
    """Revoke a token by name; it stops working on the next request. Revoking twice is a no-op.

    Raises:
        NotFoundError: no token has this name.
    """
    row = session.scalars(select(ApiToken).where(ApiToken.name == name)).first()
    if row is None:
        raise NotFoundError(f"no token named {name!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        log_action(session=session, actor=actor, action="revoke_token", detail={"name": name})
        session.commit()
    return row


def find_principal(*, session: Session, secret: str) -> Principal | None:
    """The live token holding ``secret``, or None (unknown or revoked)."""
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_hash == hash_secret(secret), ApiToken.revoked_at.is_(None))
    ).first()
    return None if row is None else Principal(name=row.name, role=Role(row.role))
