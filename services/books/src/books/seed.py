"""A small demo catalogue; seeding twice adds nothing (books are keyed by ISBN)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.orm import Session

from books import persistence

CATALOGUE = [
    ("9780441172719", "Dune", "Frank Herbert", "9.99", 25),
    ("9780547928227", "The Hobbit", "J. R. R. Tolkien", "12.50", 40),
    ("9780451524935", "Nineteen Eighty-Four", "George Orwell", "8.99", 30),
    ("9780060850524", "Brave New World", "Aldous Huxley", "10.49", 20),
    ("9780316769488", "The Catcher in the Rye", "J. D. Salinger", "9.49", 15),
    ("9780061120084", "To Kill a Mockingbird", "Harper Lee", "11.99", 35),
    ("9780141439518", "Pride and Prejudice", "Jane Austen", "7.99", 50),
    ("9780743273565", "The Great Gatsby", "F. Scott Fitzgerald", "10.99", 22),
    ("9780553293357", "Foundation", "Isaac Asimov", "8.49", 18),
    ("9780441569595", "Neuromancer", "William Gibson", "9.29", 12),
    ("9780307277671", "The Road", "Cormac McCarthy", "13.00", 8),
    ("9780345391803", "The Hitchhiker's Guide to the Galaxy", "Douglas Adams", "7.50", 42),
]


def seed_catalog(session: Session) -> int:
    known = persistence.isbns(session)
    added = 0
    for isbn, title, author, price, stock in CATALOGUE:
        if isbn in known:
            continue
        persistence.insert_book(
            session,
            values={
                "isbn": isbn,
                "title": title,
                "author": author,
                "price": Decimal(price),
                "stock": stock,
            },
        )
        added += 1
    return added
