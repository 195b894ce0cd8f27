"""The interactions data contract (recsys owns the table, finetune reads it): kinds, and what a positive is.

A positive ("a like") is a click, or a rating at or above the configured threshold (`settings.recsys.
positive_rating`, 4.0 by default). `is_positive` is the rule for one row, `positive_clause` the same rule as SQL.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import sqlalchemy as sa


class InteractionKind(StrEnum):
    """The `interactions.kind` column."""

    RATING = "rating"  # imported, with a rating
    CLICK = "click"  # opened the item (or an imported row without a rating)
    IMPRESSION = "impression"  # shown in a feed
    NOT_INTERESTED = "not_interested"  # "not interested" on the feed


INTERACTION_KINDS: tuple[str, ...] = tuple(k.value for k in InteractionKind)
LIVE_KINDS: tuple[str, ...] = (InteractionKind.IMPRESSION.value, InteractionKind.CLICK.value,
                               InteractionKind.NOT_INTERESTED.value)  # what a reader's feed logs
FEEDBACK_KINDS: tuple[str, ...] = (InteractionKind.CLICK.value, InteractionKind.NOT_INTERESTED.value)  # on a click


def is_positive(kind: str, rating: float | None, positive_rating: float) -> bool:
    """True for a like: a click, or a rating >= `positive_rating`."""
    return kind == InteractionKind.CLICK or (kind == InteractionKind.RATING and rating is not None
                                             and rating >= positive_rating)


def positive_clause(kind: Any, rating: Any, positive_rating: Any) -> sa.ColumnElement[bool]:
    """`is_positive` as a SQL condition on the given columns (ORM attributes or `sa.column`s); `positive_rating`
    may be a value or a bind parameter."""
    return sa.or_(kind == InteractionKind.CLICK.value,
                  sa.and_(kind == InteractionKind.RATING.value, rating >= positive_rating))
