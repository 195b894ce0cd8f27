"""Item text for the encoders and its hash; the text rule itself is finetune's (`finetune.data.item_text`)."""

from __future__ import annotations

import hashlib

from finetune.data import item_text

__all__ = ["item_text", "text_hash"]


def text_hash(title: str, category: str, description: str) -> str:
    """sha256 hex of the encoder text: a vector is stale when its hash differs from the item's."""
    return hashlib.sha256(item_text(title, category, description).encode("utf-8")).hexdigest()
