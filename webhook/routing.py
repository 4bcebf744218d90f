"""The router the service's HTTP routes are declared on: FastAPI's, answering HEAD wherever it
answers GET.

RFC 9110 (§9.3.2) has a server answer HEAD like GET, with the same status and headers and no
body; uptime probes and link checkers use it. Starlette's own routes do; FastAPI's do only when
a route lists HEAD itself, and a route listing GET and HEAD puts both into the OpenAPI document
as two operations under one id. So each GET route here gets a twin for HEAD that runs the same
endpoint, kept out of the OpenAPI document (the server, not the endpoint, leaves out the body).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter


class GetHeadRouter(APIRouter):
    """An APIRouter whose GET routes answer HEAD as well."""

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().add_api_route(path, endpoint, **options)
        # FastAPI's own default: a route declared without methods is a GET route.
        methods = {method.upper() for method in options.get("methods") or ("GET",)}
        if "GET" in methods and "HEAD" not in methods:
            head = {**options, "methods": ["HEAD"], "include_in_schema": False}
            super().add_api_route(path, endpoint, **head)


__all__ = ["GetHeadRouter"]
