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


def test_the_document_states_patterns_and_body_statuses_and_405_lists_every_method(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    app = create_app(Settings(data_dir=tmp_path, registry_token=secrets.token_urlsafe(24)))
    paths = app.openapi()["paths"]
    get_package = paths["/api/v1/scenes/{scene}/packages/{version}"]["get"]
    patterns = {p["name"]: p["schema"].get("pattern") for p in get_package["parameters"]}
    assert patterns["scene"] and patterns["version"]
    for path, method in (("/api/v1/scenes/{scene}/releases", "post"), ("/api/v1/tokens", "post")):
        assert {"400", "413", "422"} <= set(paths[path][method]["responses"])
    with TestClient(app) as client:
        answer = client.options("/api/v1/tokens")
    assert answer.status_code == 405 and answer.headers["allow"] == "GET, POST"
