"""released reservations stay as rows, so a reservation arriving after its release is refused

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

HELD_COMPLETE = "released_at IS NOT NULL OR (quantity > 0 AND unit_price IS NOT NULL)"


def upgrade() -> None:
    with op.batch_alter_table("reservations") as batch:
        batch.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
        batch.alter_column("unit_price", existing_type=sa.Numeric(10, 2), nullable=True)
        batch.drop_constraint("ck_reservations_quantity_positive", type_="check")
        batch.create_check_constraint("ck_reservations_held_reservation_complete", HELD_COMPLETE)


def downgrade() -> None:
    # Before 0002 a release deleted the row; released rows and tombstones have no other meaning.
    op.execute("DELETE FROM reservations WHERE released_at IS NOT NULL")
    with op.batch_alter_table("reservations") as batch:
        batch.drop_constraint("ck_reservations_held_reservation_complete", type_="check")
        batch.create_check_constraint("ck_reservations_quantity_positive", "quantity > 0")
        batch.alter_column("unit_price", existing_type=sa.Numeric(10, 2), nullable=False)
        batch.drop_column("released_at")
