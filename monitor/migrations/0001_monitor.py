"""monitor: messages, message_tickers, dead_letters, watchlist, alert_rules, alerts, alert_evidence, silences,
notifications.

Revision ID: monitor_0001
Revises:
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "monitor_0001"
down_revision = None
branch_labels = ("monitor",)
depends_on = "core_0001"


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("source_id", sa.String(128), nullable=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("ts", sa.DateTime, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("lang", sa.String(8), nullable=False),
        sa.Column("flag", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("label", sa.String(16), nullable=True),
        sa.Column("scores", sa.JSON, nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("classified_at", sa.DateTime, nullable=True),
        sa.Column("tickers", sa.String(512), nullable=False),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.UniqueConstraint("key", name="uq_messages_key"),
    )
    op.create_index("ix_messages_ts", "messages", ["ts"])
    op.create_index("ix_messages_status", "messages", ["status"])

    op.create_table(
        "message_tickers",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("message_id", sa.Integer, nullable=False),
        sa.Column("ticker", sa.String(16), nullable=False),
        sa.Column("ts", sa.DateTime, nullable=False),
        sa.Column("label", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_message_tickers"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE",
                                name="fk_message_tickers_message_id_messages"),
        sa.UniqueConstraint("message_id", "ticker", name="uq_message_tickers_message_ticker"),
    )
    op.create_index("ix_message_tickers_ticker_ts", "message_tickers", ["ticker", "ts"])
    op.create_index("ix_message_tickers_message_id", "message_tickers", ["message_id"])

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("stream_id", sa.String(64), nullable=True),
        sa.Column("deliveries", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("replayed_at", sa.DateTime, nullable=True),
        sa.Column("message_id", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
    )
    op.create_index("ix_dead_letters_status", "dead_letters", ["status"])
    op.create_index("ix_dead_letters_created_at", "dead_letters", ["created_at"])

    op.create_table(
        "watchlist",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("ticker", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("aliases", sa.JSON, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_watchlist"),
        sa.UniqueConstraint("ticker", name="uq_watchlist_ticker"),
    )

    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("tickers", sa.JSON, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("repeat_interval_s", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
        sa.UniqueConstraint("name", name="uq_alert_rules_name"),
    )

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("active_fingerprint", sa.String(64), nullable=True),
        sa.Column("rule_id", sa.Integer, nullable=False),
        sa.Column("rule_name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("ticker", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("values", sa.JSON, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("last_eval_at", sa.DateTime, nullable=False),
        sa.Column("resolved_at", sa.DateTime, nullable=True),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime, nullable=True),
        sa.Column("ack_note", sa.Text, nullable=False),
        sa.Column("silence_id", sa.Integer, nullable=True),
        sa.Column("last_notified_at", sa.DateTime, nullable=True),
        sa.Column("notify_count", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("active_fingerprint", name="uq_alerts_active_fingerprint"),
    )
    for column in ("fingerprint", "rule_id", "ticker", "state", "updated_at"):
        op.create_index(f"ix_alerts_{column}", "alerts", [column])

    op.create_table(
        "alert_evidence",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("alert_id", sa.Integer, nullable=False),
        sa.Column("message_id", sa.Integer, nullable=False),
        sa.Column("added_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_evidence"),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], ondelete="CASCADE",
                                name="fk_alert_evidence_alert_id_alerts"),
        sa.UniqueConstraint("alert_id", "message_id", name="uq_alert_evidence_alert_message"),
    )
    op.create_index("ix_alert_evidence_alert_id", "alert_evidence", ["alert_id"])

    op.create_table(
        "silences",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("matchers", sa.JSON, nullable=False),
        sa.Column("starts_at", sa.DateTime, nullable=False),
        sa.Column("ends_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expired_at", sa.DateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_silences"),
    )

    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("alert_id", sa.Integer, nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.JSON, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
    )
    op.create_index("ix_notifications_alert_id", "notifications", ["alert_id"])
    op.create_index("ix_notifications_status", "notifications", ["status"])


def downgrade() -> None:
    for table in ("notifications", "silences", "alert_evidence", "alerts", "alert_rules", "watchlist",
                  "dead_letters", "message_tickers", "messages"):
        op.drop_table(table)
