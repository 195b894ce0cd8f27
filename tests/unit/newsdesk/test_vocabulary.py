"""One vocabulary: the positive rule in Python and SQL agree; tickers normalise once; enums are plain strings."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from finetune.vocabulary import TASKS, ModelStatus, Task
from monitor.vocabulary import ALERT_STATES, AlertState, normalise_ticker
from newsdesk.cli import cli
from newsdesk.interactions import InteractionKind, is_positive, positive_clause

ROWS = [("click", None), ("rating", 4.0), ("rating", 3.5), ("rating", None), ("impression", None),
        ("not_interested", None), ("rating", 5.0)]


def test_positive_rule_is_the_same_in_python_and_sql() -> None:
    engine = sa.create_engine("sqlite://")
    table = sa.Table("interactions", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("kind", sa.String), sa.Column("rating", sa.Float, nullable=True))
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": i, "kind": k, "rating": r} for i, (k, r) in enumerate(ROWS)])
        in_sql = set(conn.scalars(sa.select(table.c.id).where(positive_clause(table.c.kind, table.c.rating, 4.0))))
    in_python = {i for i, (k, r) in enumerate(ROWS) if is_positive(k, r, 4.0)}
    assert in_sql == in_python == {0, 1, 6}


@pytest.mark.parametrize(("raw", "expected"), [(" $aapl ", "AAPL"), ("msft", "MSFT"), ("$", ""), (None, ""),
                                               ("BRK.B", "BRK.B")])
def test_one_ticker_normaliser(raw: object, expected: str) -> None:
    assert normalise_ticker(raw) == expected


def test_enums_are_their_strings() -> None:
    assert Task.SENTIMENT == "sentiment" and json.dumps([ModelStatus.CURRENT]) == '["current"]'
    assert TASKS == ("sentiment", "recsys") and InteractionKind.NOT_INTERESTED == "not_interested"
    assert ALERT_STATES == ("firing", "acknowledged", "resolved", "silenced") and AlertState.FIRING in ALERT_STATES


def test_cli_choices_show_the_values(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "alerts", "list", "--help"])
    assert result.exit_code == 0, result.output
    assert "firing" in result.output and "FIRING" not in result.output
