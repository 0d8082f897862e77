"""Build the registry's FastAPI application.

Workflow of `create_app`: make the data folders, connect the database and apply pending
migrations, create the TUF keys and metadata on first start (all under the publish lock,
so several workers starting at once do it once), open the blob store (local folder or S3),
then mount the routers behind the observability middleware (request ids, per-address rate
limit, Prometheus metrics, access log). While serving, background tasks re-sign TUF roles
close to expiry, so devices keep seeing fresh metadata even when nothing is published, and
forward device telemetry to MLflow, and evaluate the quality gates of gated rollouts.
Nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from pitahaya.registry.api.body_limit import BodySizeLimit
from pitahaya.registry.api.deps import RegistryContext
from pitahaya.registry.api.errors import install_error_handlers
from pitahaya.registry.api.fast_paths import TufMetadataFastPath
from pitahaya.registry.api.methods import install_method_not_allowed
from pitahaya.registry.api.routes import audit, health, packages, releases, telemetry, tokens, tuf
from pitahaya.registry.blobs import open_blob_store
from pitahaya.registry.db import session_factory, upgrade_to_head
from pitahaya.registry.observability import (
    ObservabilityMiddleware,
    RequestMetrics,
    RolloutCollector,
    TelemetryCollector,
)
from pitahaya.registry.ratelimit import RequestLimiter
from pitahaya.registry.services.gates import evaluate_gates
from pitahaya.registry.services.releases import announcement
from pitahaya.registry.services.preflight import Preflight
from pitahaya.registry.services.publication import refresh_signatures
from pitahaya.registry.settings import Settings
from pitahaya.registry.storage import open_database
from pitahaya.registry.telemetry_export import TelemetryForwarder
from pitahaya.registry.tuf import TufRepository

logger = logging.getLogger(__name__)


def _operation_id(route: APIRoute) -> str:
    """OpenAPI operation ids are the route function names (push_package, ...): stable for generated clients."""
    return route.name


def create_app(settings: Settings) -> FastAPI:
    """Create a ready-to-serve registry app for ``settings``.

    Raises:
        OSError: a data folder cannot be created or written.
        sqlalchemy.exc.SQLAlchemyError: the database cannot be reached or migrated.
        StorageUnavailableError: the S3 bucket cannot be reached or created.
    """
    context = _open_registry(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(_refresh_tuf_forever(context)),
            asyncio.create_task(_forward_telemetry_forever(context)),
            asyncio.create_task(_evaluate_gates_forever(context)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await run_in_threadpool(context.forwarder.flush, context.sessions)
            context.engine.dispose()

    app = FastAPI(
        title="pitahaya registry",
        summary="Stores algorithm packages and delivers them to devices as signed TUF targets.",
        version="0.1.0",
        generate_unique_id_function=_operation_id,
        lifespan=lifespan,
    )
    app.state.registry = context
    metrics_registry = CollectorRegistry()
    metrics_registry.register(TelemetryCollector(context.sessions))
    metrics_registry.register(RolloutCollector(context.sessions))
    app.state.metrics_registry = metrics_registry
    install_error_handlers(app)
    install_method_not_allowed(app)
    for router in (packages.router, releases.router, tokens.router, telemetry.router, audit.router, tuf.router):
        app.include_router(router)
    app.include_router(health.router)
    app.add_middleware(BodySizeLimit, limit=settings.max_json_body_bytes, streamed=packages.STREAMED_BODY_ROUTES)
    metadata_route = next(r for r in tuf.router.routes if getattr(r, "path", None) == "/tuf/metadata/{name}")
    app.add_middleware(TufMetadataFastPath, tuf=context.tuf, route=metadata_route)
    # Added last, so outermost: the fast path's answers get request ids, metrics and logs too.
    app.add_middleware(ObservabilityMiddleware, metrics=RequestMetrics(metrics_registry), limiter=context.limiter)
    return app


def _open_registry(settings: Settings) -> RegistryContext:
    engine, tuf_repo = open_database(settings)
    sessions = session_factory(engine)
    with tuf_repo.publish_lock:
        upgrade_to_head(engine)
        tuf_repo.initialize(create=settings.tuf_storage == "files")  # replicas of a shared store: see `migrate`
        _refresh_signatures(sessions, tuf_repo)  # completes or discards a publication a crash left staged
    if offline := tuf_repo.keys.offline_keys_here():
        logger.warning(
            "offline TUF keys %s are on the registry host; the server never uses them: move them off it",
            ", ".join(map(str, offline)),
        )
    return RegistryContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        blobs=open_blob_store(settings),
        tuf=tuf_repo,
        limiter=RequestLimiter(
            settings.rate_limit_per_token, settings.rate_limit_per_ip, settings.rate_limit_storage_uri
        ),
        forwarder=TelemetryForwarder(settings.resolved_mlflow_tracking_uri),
        preflight=Preflight.from_settings(settings),
    )


async def _refresh_tuf_forever(context: RegistryContext) -> None:
    """Re-sign expiring TUF roles periodically; a failure is logged and retried next round."""
    while True:
        await asyncio.sleep(context.settings.tuf_refresh_interval_seconds)
        try:
            refreshed = await run_in_threadpool(_refresh_signatures, context.sessions, context.tuf)
        except Exception:  # the server must keep serving; the next round retries
            logger.exception("re-signing TUF metadata failed")
        else:
            if refreshed:
                logger.info("re-signed TUF roles %s", ", ".join(refreshed))


def _refresh_signatures(sessions: sessionmaker[Session], tuf: TufRepository) -> list[str]:
    with sessions() as session:
        return refresh_signatures(session=session, tuf=tuf)


async def _evaluate_gates_forever(context: RegistryContext) -> None:
    """Evaluate the quality gates of gated rollouts periodically (steps are taken under the publish lock)."""
    while True:
        await asyncio.sleep(context.settings.gate_interval_seconds)
        try:
            await run_in_threadpool(
                evaluate_gates,
                sessions=context.sessions,
                blobs=context.blobs,
                tuf=context.tuf,
                on_release=lambda session, row: context.forwarder.mark_release(
                    **announcement(session=session, row=row)
                ),
            )
        except Exception:  # the server must keep serving; the next round retries
            logger.exception("evaluating rollout gates failed")


async def _forward_telemetry_forever(context: RegistryContext) -> None:
    """Forward marked telemetry minutes to MLflow periodically (a no-op when MLflow is off)."""
    if not context.forwarder.enabled:
        return
    while True:
        await asyncio.sleep(context.settings.telemetry_forward_interval_seconds)
        await run_in_threadpool(context.forwarder.flush, context.sessions)
