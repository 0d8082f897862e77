"""The registry's OpenAPI document is a valid OpenAPI 3 document (schemathesis then exercises it)."""

from __future__ import annotations

import secrets
from pathlib import Path

from openapi_spec_validator import validate

from pitahaya.registry import Settings, create_app


def test_openapi_document_validates(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, registry_token=secrets.token_urlsafe(24)))
    spec = app.openapi()
    validate(spec)
    operation_ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(operation_ids) == len(set(operation_ids))  # stable, unique ids for generated clients
    assert {"push_package", "create_release", "get_tuf_target"} <= set(operation_ids)
