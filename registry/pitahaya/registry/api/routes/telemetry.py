"""``POST /api/v1/telemetry``: devices report per-minute monitoring counters (contract 2)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from pitahaya.registry.api.deps import ClientDep, ContextDep, SessionDep
from pitahaya.registry.api.responses import JSON_WRITE
from pitahaya.registry.schemas import TelemetryReport
from pitahaya.registry.services.telemetry import record_report

router = APIRouter(prefix="/api/v1", tags=["telemetry"])


@router.post(
    "/telemetry",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses={202: {"description": "Aggregated."}, **JSON_WRITE},
)
def post_telemetry(report: TelemetryReport, context: ContextDep, session: SessionDep, _device: ClientDep) -> Response:
    """Add a device's report to the per-minute aggregates (forwarded to MLflow and /metrics)."""
    context.forwarder.mark(record_report(session=session, report=report))
    return Response(status_code=status.HTTP_202_ACCEPTED)
