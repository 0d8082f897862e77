"""Statuses routes declare in the OpenAPI document beyond their success, shared so each route
lists every status it can answer (schemathesis checks the document against the server).

A JSON body is refused before route code runs: 400 when it is not JSON (or nests deeper than
the parser goes), 413 over ``PITAHAYA_MAX_JSON_BODY_BYTES`` (`api.body_limit`), 422 when a
value is invalid. Errors carry ``{"detail": ...}``; 422 from validation lists the problems.
"""

from __future__ import annotations

from typing import Any

Responses = dict[int | str, dict[str, Any]]

JSON_BODY: Responses = {
    400: {"description": "The body is not JSON, or nests deeper than the parser allows."},
    413: {"description": "The body exceeds PITAHAYA_MAX_JSON_BODY_BYTES."},
    422: {"description": "A value in the body or the path is invalid."},
}

#: Every JSON-body write: authentication, role, rate limit, and the body's own statuses.
JSON_WRITE: Responses = {401: {}, 403: {}, 429: {}, **JSON_BODY}
