"""The audit trail: one row per accepted write, committed with the write itself."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from pitahaya.registry.models import AuditEntry


def log_action(*, session: Session, actor: str, action: str, detail: dict[str, Any]) -> None:
    """Add an audit row to the session; it commits (or rolls back) with the caller's change."""
    session.add(AuditEntry(actor=actor, action=action, detail=detail))
