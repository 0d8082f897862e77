"""Run the registry with uvicorn.

``serve(settings)`` builds the app in this process when ``workers == 1``. With more workers,
uvicorn starts processes that import `app_from_environment` (an app factory), so the
settings travel to them as ``PITAHAYA_*`` environment variables; the app is never built at
import time either way.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from pitahaya.registry.app import create_app
from pitahaya.registry.observability import configure_logging
from pitahaya.registry.settings import ENV_PREFIX, Settings, load_settings

FACTORY = "pitahaya.registry.server:app_from_environment"


def app_from_environment() -> FastAPI:
    """App factory for uvicorn workers: `create_app` with settings from the environment.

    Raises:
        ConfigurationError: a required ``PITAHAYA_*`` variable is missing or invalid.
    """
    settings = load_settings()
    configure_logging(json_lines=settings.log_json, level=logging.getLevelName(settings.log_level))
    return create_app(settings)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve the registry until interrupted.

    Args:
        settings: Registry settings.
        host: Interface to bind; the default only accepts local connections.
        port: TCP port.
        workers: Worker processes; they share the data dir and serialize publishes on a file lock.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    configure_logging(json_lines=settings.log_json, level=logging.getLevelName(settings.log_level))
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "proxy_headers": True,
        "log_config": None,
        "access_log": False,
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    os.environ.update(settings_environment(settings))
    uvicorn.run(FACTORY, factory=True, workers=workers, **options)


def settings_environment(settings: Settings) -> dict[str, str]:
    """The ``PITAHAYA_*`` variables that make `load_settings` reproduce ``settings``."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    return env
