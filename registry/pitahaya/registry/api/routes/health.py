"""Health, readiness and metrics for load balancers, orchestrators and Prometheus.

``/healthz`` says the process serves; ``/readyz`` checks what a request needs (database,
blob store, TUF signing keys and metadata) and answers 503 naming what failed;
``/metrics`` is the Prometheus text format.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from pitahaya.registry.api.deps import ContextDep, RegistryContext, SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def get_health(context: ContextDep, session: SessionDep) -> dict[str, str]:
    """Report ok once the database answers and the TUF timestamp is readable."""
    session.execute(text("SELECT 1"))
    context.tuf.metadata_bytes("timestamp.json")
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency failed; the body names it."}})
def get_readiness(context: ContextDep, response: Response) -> dict[str, str]:
    """Check the database, the blob store and the TUF keys; 503 unless all pass."""
    checks = readiness_checks(context)
    if any(result != "ok" for result in checks.values()):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return checks


def readiness_checks(context: RegistryContext) -> dict[str, str]:
    """``{"database": "ok" | error, "blobs": ..., "tuf": ...}``."""
    checks: dict[str, str] = {}
    for name, probe in (("database", _database), ("blobs", _blobs), ("tuf", _tuf)):
        try:
            probe(context)
            checks[name] = "ok"
        except Exception as e:  # readiness reports any failure by name instead of raising
            checks[name] = f"{type(e).__name__}: {e}"
    return checks


def _database(context: RegistryContext) -> None:
    with context.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _blobs(context: RegistryContext) -> None:
    context.blobs.check()


def _tuf(context: RegistryContext) -> None:
    context.tuf.check_ready()


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def get_metrics(request: Request) -> Response:
    """Prometheus metrics: the registry's requests and the fleet's telemetry totals."""
    data = await run_in_threadpool(generate_latest, request.app.state.metrics_registry)
    return Response(content=data, media_type=CONTENT_TYPE_LATEST)
