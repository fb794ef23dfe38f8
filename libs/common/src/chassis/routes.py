"""Route templates for telemetry: every request is labelled by its template, never its raw path.

Built from the OpenAPI document (plus the chassis' own endpoints) so that requests connexion
answers itself (400, 404, 405) are labelled exactly like the ones that reach a handler.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse

from chassis.metrics import UNMATCHED_ROUTE

_PARAMETER = re.compile(r"\{[^}/]+\}")
_HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


class RouteTable:
    def __init__(self, templates: Iterable[str]) -> None:
        unique = sorted(set(templates), key=_specificity)
        self._static = {t: t for t in unique if "{" not in t}
        self._dynamic = [(re.compile(_to_pattern(t)), t) for t in unique if "{" in t]

    def match(self, path: str) -> str:
        """The template that ``path`` belongs to, or ``NOT_FOUND``."""
        route = self._static.get(path)
        if route is not None:
            return route
        for pattern, template in self._dynamic:
            if pattern.fullmatch(path):
                return template
        return UNMATCHED_ROUTE


def spec_templates(spec: dict[str, Any]) -> list[str]:
    """Every path of an OpenAPI 3 document, prefixed with its server's base path."""
    base = base_path(spec)
    return [base + path for path in spec.get("paths", {})]


def spec_methods(spec: dict[str, Any]) -> dict[str, str]:
    """For every path of an OpenAPI 3 document (as in :func:`spec_templates`), the methods its
    operations take, as an Allow header value; HEAD wherever GET is, as it is served."""
    base = base_path(spec)
    allowed = {}
    for path, item in spec.get("paths", {}).items():
        methods = {key.upper() for key in item if key.upper() in _HTTP_METHODS}
        if "GET" in methods:
            methods.add("HEAD")
        allowed[base + path] = ", ".join(sorted(methods))
    return allowed


def base_path(spec: dict[str, Any]) -> str:
    """Where connexion mounts the API (and its /openapi.json and /ui): the first server's path."""
    servers = spec.get("servers") or [{"url": "/"}]
    return str(urlparse(servers[0].get("url", "/")).path.rstrip("/"))


def normalise_method(method: str) -> str:
    """Unknown methods collapse to ``_OTHER`` (OpenTelemetry semconv), bounding label values."""
    return method if method in _HTTP_METHODS else "_OTHER"


def _to_pattern(template: str) -> str:
    pieces = _PARAMETER.split(template)
    return "[^/]+".join(re.escape(piece) for piece in pieces)


def _specificity(template: str) -> tuple[int, int, str]:
    # Literal segments first, so /books/search beats /books/{book_id}.
    segments = template.strip("/").split("/")
    dynamic = sum(1 for segment in segments if "{" in segment)
    return (dynamic, -len(segments), template)
