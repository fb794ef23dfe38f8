"""``seed_catalog`` loads the demo catalogue once, however often it runs."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from books import persistence
from books.seed import CATALOGUE, seed_catalog

pytestmark = pytest.mark.every_database


def seed(engine):
    with Session(engine) as session, session.begin():
        return seed_catalog(session)


def count(engine):
    with Session(engine) as session:
        return persistence.count_books(session)


def test_seeding_twice_adds_the_catalogue_once(engine):
    assert seed(engine) == len(CATALOGUE)
    assert count(engine) == len(CATALOGUE)

    assert seed(engine) == 0
    assert count(engine) == len(CATALOGUE)
    with Session(engine) as session:
        assert persistence.isbns(session) == {isbn for isbn, *_ in CATALOGUE}


def test_seeding_keeps_books_that_are_already_there(engine):
    isbn, _, _, _, _ = CATALOGUE[0]
    with Session(engine) as session, session.begin():
        persistence.insert_book(
            session,
            values={
                "isbn": isbn,
                "title": "Edited",
                "author": "Someone",
                "price": Decimal("1.00"),
                "stock": 1,
            },
        )

    assert seed(engine) == len(CATALOGUE) - 1
    assert count(engine) == len(CATALOGUE)
    with engine.connect() as connection:
        kept = connection.execute(
            select(persistence.books.c.title).where(persistence.books.c.isbn == isbn)
        )
        assert kept.scalars().all() == ["Edited"]
