"""orders may be cancelling: released stock is no longer claimed by a confirmed order

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WITH_CANCELLING = "status IN ('pending', 'confirmed', 'rejected', 'cancelling', 'cancelled')"
WITHOUT = "status IN ('pending', 'confirmed', 'rejected', 'cancelled')"


def upgrade() -> None:
    _replace_check(WITH_CANCELLING)


def downgrade() -> None:
    # A cancelling order was on its way to cancelled; its releases are idempotent.
    op.execute("UPDATE orders SET status = 'cancelled' WHERE status = 'cancelling'")
    _replace_check(WITHOUT)


def _replace_check(condition: str) -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint("ck_orders_status_known", type_="check")
        batch.create_check_constraint("ck_orders_status_known", condition)
