"""Predicted topics for catalog items without a category, from the topic model in service.

A feed can only say "Earnings" or offer "Legal | Regulation" at onboarding for items that carry a category; a news
catalog often has none. Each item without one gets the label of the current topic version (the same model the
stream uses, `newsdesk finetune topic` or a joint version) over its title and description, stored beside the item
with its score, the version and the text hash it was labelled from, so a changed text or a new topic version
relabels it at the next pass. Items with a category keep theirs; nothing happens while no topic model is served.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from finetune import service as finetune_service
from newsdesk.settings import Settings
from recsys.tables import Item

log = logging.getLogger(__name__)

BATCH = 256


@dataclass
class TopicLabelling:
    """What one pass did: the topic version used ("" when none is served) and how many items it labelled."""

    version: str
    labelled: int
    cleared: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stale_filter(version: str) -> Any:
    """Items without a category whose topic is missing, from another version or from an older text."""
    return sa.and_(Item.category == "", sa.or_(Item.topic_version.is_(None), Item.topic_version != version,
                                               Item.topic_hash != Item.text_hash))


def labels_behind(session: Session) -> str | None:
    """The served topic version when some uncategorised item does not carry its label yet; None when every one does
    or no topic model is served.

    Cheap (the current-version row and one EXISTS), for the index refresh job to relabel an unchanged catalog after
    a new topic version is promoted. (A changed text or category changes the item's text hash: the job's sync pass
    relabels those.)
    """
    current = finetune_service.current_version(session, "topic")
    if current is None:
        return None
    return current.version if session.scalar(sa.select(sa.exists().where(stale_filter(current.version)))) else None


def label_item_topics(session: Session, settings: Settings, *, classifier: Any = None,
                      batch_size: int = BATCH) -> TopicLabelling:
    """Label every stale uncategorised item with the current topic version; commits after each batch.

    `classifier`: a loaded topic classifier (`predict(texts, task="topic")` and `version`); default: the current
    topic version's, loaded here. An item that has gained a category since loses its predicted topic.
    """
    cleared = session.execute(sa.update(Item).where(Item.category != "", Item.topic.is_not(None))
                              .values(topic=None, topic_score=None, topic_version=None, topic_hash=None)).rowcount
    session.commit()
    if classifier is None:
        current = finetune_service.current_version(session, "topic")
        if current is None:
            return TopicLabelling("", 0, cleared or 0)
        classifier = finetune_service.load_classifier(session, settings, task="topic")
    version = classifier.version
    stale = session.scalars(sa.select(Item.item_id).where(stale_filter(version)).order_by(Item.item_id)).all()
    labelled = 0
    for start in range(0, len(stale), batch_size):  # ids first, so each item is labelled at most once a pass
        rows = session.execute(sa.select(Item.item_id, Item.title, Item.description, Item.text_hash)
                               .where(Item.item_id.in_(stale[start:start + batch_size]))).all()
        predictions = classifier.predict([f"{r.title}. {r.description}".strip(" .") or r.title for r in rows],
                                         task="topic")
        for row, pred in zip(rows, predictions, strict=True):
            session.execute(sa.update(Item).where(Item.item_id == row.item_id, Item.text_hash == row.text_hash)
                            .values(topic=pred.label, topic_score=round(float(pred.scores[pred.label]), 4),
                                    topic_version=version, topic_hash=row.text_hash))
        session.commit()
        labelled += len(rows)
    if labelled:
        log.info("labelled %d uncategorised items with topic version %s", labelled, version)
    return TopicLabelling(version, labelled, cleared or 0)
