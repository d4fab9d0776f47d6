"""audit entries name the organisation owning the changed record (it sees them in its audit log)

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_org_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_audit_log_owner_org_id"), ["owner_org_id"], unique=False)
        batch_op.create_foreign_key("fk_audit_log_owner_org_id_organisations", "organisations", ["owner_org_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_constraint("fk_audit_log_owner_org_id_organisations", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_audit_log_owner_org_id"))
        batch_op.drop_column("owner_org_id")
