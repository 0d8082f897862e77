"""Build the registry's FastAPI application.

Workflow of `create_app`: make the data folders, connect the database and apply pending
migrations, create the TUF keys and metadata on first start (all under the publish lock,
so several workers starting at once do it once), then mount the routers. While serving, a
background task re-signs TUF roles close to expiry, so devices keep seeing fresh
metadata even when nothing is published. Nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from pitahaya.registry.api.deps import RegistryContext
from pitahaya.registry.api.errors import install_error_handlers
from pitahaya.registry.api.routes import health, packages, releases, tuf
from pitahaya.registry.blobs import LocalBlobStore
from pitahaya.registry.db import create_engine_for, session_factory, upgrade_to_head
from pitahaya.registry.settings import Settings
from pitahaya.registry.tuf_repo import TufRepository

logger = logging.getLogger(__name__)


def _operation_id(route: APIRoute) -> str:
    """OpenAPI operation ids are the route function names (push_package, ...): stable for generated clients."""
    return route.name


def create_app(settings: Settings) -> FastAPI:
    """Create a ready-to-serve registry app for ``settings``.

    Raises:
        OSError: a data folder cannot be created or written.
        sqlalchemy.exc.SQLAlchemyError: the database cannot be reached or migrated.
    """
    context = _open_registry(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        refresher = asyncio.create_task(_refresh_tuf_forever(context))
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            context.engine.dispose()

    app = FastAPI(
        title="pitahaya registry",
        summary="Stores algorithm packages and delivers them to devices as signed TUF targets.",
        version="0.1.0",
        generate_unique_id_function=_operation_id,
        lifespan=lifespan,
    )
    app.state.registry = context
    install_error_handlers(app)
    for router in (packages.router, releases.router, tuf.router, health.router):
        app.include_router(router)
    return app


def _open_registry(settings: Settings) -> RegistryContext:
    engine = create_engine_for(settings.resolved_database_url)
    tuf_repo = TufRepository(settings.resolved_tuf_dir)
    with tuf_repo.publish_lock:
        upgrade_to_head(engine)
        tuf_repo.initialize()
        tuf_repo.refresh()
    return RegistryContext(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        blobs=LocalBlobStore(settings.resolved_blob_dir),
        tuf=tuf_repo,
    )


async def _refresh_tuf_forever(context: RegistryContext) -> None:
    """Re-sign expiring TUF roles periodically; a failure is logged and retried next round."""
    while True:
        await asyncio.sleep(context.settings.tuf_refresh_interval_seconds)
        try:
            refreshed = await run_in_threadpool(context.tuf.refresh)
        except Exception:  # the server must keep serving; the next round retries
            logger.exception("re-signing TUF metadata failed")
        else:
            if refreshed:
                logger.info("re-signed TUF roles %s", ", ".join(refreshed))
