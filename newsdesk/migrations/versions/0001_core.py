"""core: the root of every package branch (no tables of its own).

Revision ID: core_0001
Revises:
Create Date: 2026-11-27
"""
from __future__ import annotations

revision = "core_0001"
down_revision = None
branch_labels = ("core",)
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
