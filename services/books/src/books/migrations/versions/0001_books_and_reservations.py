"""books and stock reservations

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "books",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("isbn", sa.String(13), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("price", sa.Numeric(10, 2), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("stock >= 0", name="ck_books_stock_not_negative"),
        sa.CheckConstraint("price >= 0", name="ck_books_price_not_negative"),
        sa.PrimaryKeyConstraint("id", name="pk_books"),
        sa.UniqueConstraint("isbn", name="uq_books_isbn"),
    )
    op.create_index("ix_books_author", "books", ["author"])
    op.create_table(
        "reservations",
        sa.Column("book_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(10, 2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_reservations_quantity_positive"),
        sa.ForeignKeyConstraint(
            ["book_id"],
            ["books.id"],
            name="fk_reservations_book_id_books",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("book_id", "order_id", name="pk_reservations"),
    )


def downgrade() -> None:
    op.drop_table("reservations")
    op.drop_index("ix_books_author", table_name="books")
    op.drop_table("books")
