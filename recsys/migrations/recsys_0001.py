"""recsys: items, interactions, item_vectors.

Revision ID: recsys_0001
Revises:
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "recsys_0001"
down_revision = None
branch_labels = ("recsys",)
depends_on = "core_0001"


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("category", sa.String(128), nullable=False, server_default=""),
        sa.Column("tags", sa.Text(), nullable=False, server_default=""),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("published_at", sa.DateTime(), nullable=True),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("text_hash", sa.String(64), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_items")),
    )
    op.create_table(
        "interactions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("rating", sa.Float(), nullable=True),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False, server_default=""),
        sa.Column("impression_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interactions")),
    )
    op.create_index(op.f("ix_interactions_user_id"), "interactions", ["user_id"])
    op.create_index(op.f("ix_interactions_item_id"), "interactions", ["item_id"])
    op.create_table(
        "item_vectors",
        sa.Column("item_id", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("text_hash", sa.String(64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_item_vectors")),
    )
    op.create_index(op.f("ix_item_vectors_model_version"), "item_vectors", ["model_version"])


def downgrade() -> None:
    op.drop_index(op.f("ix_item_vectors_model_version"), table_name="item_vectors")
    op.drop_table("item_vectors")
    op.drop_index(op.f("ix_interactions_item_id"), table_name="interactions")
    op.drop_index(op.f("ix_interactions_user_id"), table_name="interactions")
    op.drop_table("interactions")
    op.drop_table("items")
