"""``/api/v1/audit``: the append-only log of who changed what, when."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from pitahaya.registry.api.deps import OperatorDep, SessionDep
from pitahaya.registry.models import AuditEntry
from pitahaya.registry.schemas import AuditEntryPublic

router = APIRouter(prefix="/api/v1", tags=["audit"])


@router.get("/audit", response_model=list[AuditEntryPublic], responses={401: {}, 403: {}})
def list_audit_entries(
    session: SessionDep, _actor: OperatorDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[AuditEntryPublic]:
    """The newest audit entries first."""
    rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit))
    return [AuditEntryPublic.model_validate(row) for row in rows]
