"""The contenders books is measured against, serving the SAME handler code without the chassis.

Every baseline calls ``books.handlers.<operation>`` inside ``chassis.db.Database.session_scope``
(the very function books binds to ``GET /books/{book_id}``, on an engine built from the same
``DATABASE_URL`` with the same options) but with no tracing, metrics, access log, health
endpoints or body limit. Only the web stack around the handler differs:

    create_connexion_flask_app   a default ``connexion.FlaskApp`` with books' openapi.yaml
                                 (connexion's default middleware stack, Flask behind a2wsgi),
                                 served as ASGI by uvicorn: connexion 3's default serving path
    create_flask_app             bare Flask with one route, served as WSGI (uvicorn or granian)

Factories, so that each server builds the app in its own process:
``uvicorn --factory baselines:create_flask_app`` (``--app-dir bench``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from books import handlers
from books.settings import SERVICE_DIR
from chassis.config import DatabaseSection
from chassis.db import Database


def _database() -> Database:
    return Database(DatabaseSection(url=SecretStr(os.environ["DATABASE_URL"])))


def _in_session(database: Database, function: Callable[..., Any]) -> Callable[..., Any]:
    """The handler inside a session scope, as the chassis runs it (commit or roll back)."""

    @functools.wraps(function)
    def handler(*args: Any, **kwargs: Any) -> Any:
        with database.session_scope():
            return function(*args, **kwargs)

    return handler


def _json(function: Callable[..., Any]) -> Callable[..., Any]:
    """Names the content type: connexion refuses to guess when an operation declares two
    (application/json and application/problem+json), as books' operations do."""

    @functools.wraps(function)
    def handler(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        body, status, *rest = result if isinstance(result, tuple) else (result, 200)
        headers = rest[0] if rest else {}
        return body, status, {**headers, "Content-Type": "application/json"}

    return handler


def create_connexion_flask_app() -> Any:
    import connexion
    from connexion.resolver import Resolver

    database = _database()

    def resolve(operation_id: str) -> Callable[..., Any]:
        return _json(_in_session(database, getattr(handlers, operation_id)))

    app = connexion.FlaskApp(__name__, specification_dir=SERVICE_DIR)
    app.add_api("openapi.yaml", resolver=Resolver(function_resolver=resolve))
    return app


def create_flask_app() -> Any:
    import flask

    database = _database()
    get_book = _in_session(database, handlers.get_book)
    app = flask.Flask(__name__)

    @app.get("/books/<int:book_id>")
    def book(book_id: int) -> Any:
        return get_book(book_id)

    return app
