"""The database URL as the chassis reads it: light enough for `<service> migrate`, which needs it
before (and often instead of) the database layer of chassis.db."""

from __future__ import annotations

from sqlalchemy.engine import make_url


def normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg2, the driver the chassis ships with
    (SQLAlchemy 2.1 would otherwise pick psycopg 3)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)
