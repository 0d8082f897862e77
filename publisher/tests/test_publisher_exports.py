"""The publisher client's errors share one root, and importing it loads nothing of the server."""

from __future__ import annotations

import subprocess
import sys

import pitahaya.publisher as publisher

#: What a server, its database or its metrics would bring in; a publisher's CI has none of it.
SERVER_MODULES = ("fastapi", "starlette", "sqlalchemy", "uvicorn", "prometheus_client", "psycopg", "mlflow")


def test_every_error_derives_from_the_one_root() -> None:
    errors = [
        getattr(publisher, name) for name in publisher.__all__ if name.endswith(("Error", "Rejected", "Unavailable"))
    ]
    assert len(errors) == 6 and all(issubclass(error, publisher.PublisherError) for error in errors)


def test_importing_the_publisher_loads_no_server_module() -> None:
    """In a fresh interpreter: this workspace has the server installed, so only what the import pulls counts."""
    code = (
        "import sys, pitahaya.publisher\n"
        "from pitahaya.publisher import RegistryClient, load_private_key\n"
        f"print(sorted(name for name in {SERVER_MODULES!r} if name in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
