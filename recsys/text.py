"""Item text for the encoders and its hash: the rule is finetune's (`finetune.data.item_text`), shared by both."""

from __future__ import annotations

import hashlib


def item_text(title: str, category: str, description: str) -> str:
    """`title. category. description` with empty parts left out (delegates to finetune's rule when it exists)."""
    try:
        from finetune.data import item_text as shared_rule
    except ImportError:  # finetune not installed in this tree yet: the same documented rule
        parts = [p.strip() for p in (title or "", category or "", description or "") if p and p.strip()]
        return ". ".join(parts)
    return shared_rule(title, category, description)


def text_hash(title: str, category: str, description: str) -> str:
    """sha256 hex of the encoder text: a vector is stale when its hash differs from the item's."""
    return hashlib.sha256(item_text(title, category, description).encode("utf-8")).hexdigest()
