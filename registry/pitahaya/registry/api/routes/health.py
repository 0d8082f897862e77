"""``/healthz``: liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from pitahaya.registry.api.deps import ContextDep, SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def get_health(context: ContextDep, session: SessionDep) -> dict[str, str]:
    """Report ok once the database answers and the TUF timestamp is readable."""
    session.execute(text("SELECT 1"))
    context.tuf.metadata_bytes("timestamp.json")
    return {"status": "ok"}
