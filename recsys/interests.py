"""Declared interests: the topics and tickers a reader picks at onboarding shape the first feed and keep a share of
it until behaviour takes over; reasons vary across the feed and name the interest or the liked item.

An interest is a topic ("energy": an item's category or a tag) or a ticker ("$AAPL": a tag, or the cashtag in the
title/description; bare words never match, as in monitor's enricher). `interest_share(positives)` is the share of
the feed kept for them: `share` with no history, falling linearly to 0 at `takeover` positive events.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from recsys.rank import RankParams, Scored, Snapshot, _minmax, freshness, mmr

TICKER_RE = re.compile(r"^[A-Z][A-Z0-9.]{0,5}$")
_CASHTAG = re.compile(r"\$([A-Za-z][A-Za-z0-9.]{0,5})\b")


def split_values(text: str | None) -> list[str]:
    return [v.strip() for v in re.split(r"[,|]", text or "") if v.strip()]


def is_ticker(name: str) -> bool:
    return name.startswith("$") or bool(TICKER_RE.match(name))


def interest_share(positives: int, share: float = 0.5, takeover: int = 20) -> float:
    """Share of the feed kept for declared interests after `positives` positive events (1.0 with none)."""
    if positives <= 0:
        return 1.0
    return max(0.0, share * (1.0 - positives / max(takeover, 1)))


def _item_keys(snap: Snapshot) -> list[set[str]]:
    """Per item: lower-cased categories, tags and cashtags ("$aapl") it can match (cached on the snapshot)."""
    cached = getattr(snap, "_interest_keys", None)
    if cached is not None:
        return cached
    keys = []
    for title, category, tags in zip(snap.titles, snap.categories, snap.tags):
        k = {v.lower() for v in split_values(category)} | ({category.strip().lower()} if category else set())
        for tag in split_values(tags):
            k.add(tag.lower())
            if TICKER_RE.match(tag.upper()) and tag.upper() == tag:
                k.add("$" + tag.lower())
        k.update("$" + m.lower() for m in _CASHTAG.findall(title or ""))
        keys.append(k)
    snap._interest_keys = keys  # type: ignore[attr-defined]
    return keys


def match_mask(snap: Snapshot, interest: str) -> np.ndarray:
    """Items about `interest` (topic: category or tag; ticker "$X"/"X": its tag or cashtag)."""
    name = interest.strip().lower()
    keys = _item_keys(snap)
    wanted = {name}
    if name.startswith("$"):
        wanted.add(name[1:])
    return np.fromiter((bool(k & wanted) for k in keys), dtype=bool, count=len(keys))


def label(interest: str) -> str:
    return interest.strip().lstrip("$").upper() if is_ticker(interest.strip()) else interest.strip()


class Reasons:
    """Picks a reason per card so that no reason is shared by more than `cap` cards (a quarter of the feed)."""

    def __init__(self, k: int) -> None:
        self.cap = max(1, k // 4)
        self.counts: Counter[str] = Counter()

    def pick(self, options: Sequence[str]) -> str:
        for option in options:
            if self.counts[option] < self.cap:
                self.counts[option] += 1
                return option
        self.counts[options[-1]] += 1
        return options[-1]


def interest_items(snap: Snapshot, interests: Sequence[str], seen: set[str], n: int, params: RankParams, now: float,
                   reasons: Reasons, exclude: set[int] | None = None) -> list[Scored]:
    """Up to `n` items for the declared interests, round-robin over them: first the items about the interest
    (freshness + popularity + trending, diversified), then items close to those by text; each with a reason
    naming the interest (and, for a neighbour, the item it resembles)."""
    if n <= 0 or not interests:
        return []
    taken = set(exclude or ())
    allowed = np.fromiter((i not in seen for i in snap.item_ids), dtype=bool, count=len(snap.item_ids))
    fresh = freshness(snap.published, now, params.freshness_half_life_days)
    queues: list[list[tuple[int, list[str]]]] = []
    nears: list[list[tuple[int, list[str]]]] = []
    for interest in interests:
        name = label(interest)
        mask = match_mask(snap, interest) & allowed
        about = np.flatnonzero(mask)
        queue: list[tuple[int, list[str]]] = []
        near_queue: list[tuple[int, list[str]]] = []
        if len(about):
            score = snap.popularity[about] + snap.trending[about] + params.freshness_weight * 5 * fresh[about]
            best = np.argsort(-score, kind="stable")[:params.candidates]
            about, score = about[best], score[best]
            vecs = snap.vectors[about]
            order = mmr(_minmax(score), vecs @ vecs.T, min(n, len(about)), params.mmr_lambda)
            for p in about[order]:
                first = _about_reason(snap, int(p), name, fresh)
                queue.append((int(p), [first, *_variants(snap, int(p), name)]))
            centre = snap.vectors[about[order]].mean(axis=0, keepdims=True)
            anchors = about[order]
        else:  # nothing in the catalog is about it: it adds nothing
            centre, anchors = None, np.zeros(0, dtype=np.int64)
        if centre is not None:
            _, found = snap.index.search(centre.astype(np.float32), n + len(seen) + len(about) + len(taken))
            for item_id in found[0]:
                p = snap.position.get(item_id)
                if p is None or not allowed[p] or mask[p]:
                    continue
                near = anchors[np.argsort(-(snap.vectors[anchors] @ snap.vectors[p]), kind="stable")[:4]]
                category = (split_values(snap.categories[p]) or ["news"])[0]
                near_queue.append((p, [f"close to \u201c{snap.titles[a][:60]}\u201d ({name})" for a in near]
                                   + [f"related to {name}", f"{category} near {name}",
                                      f"read alongside {name} stories",
                                      f"related to {name}: \u201c{snap.titles[p][:50]}\u201d"]))
        queues.append(queue)
        nears.append(near_queue)
    out: list[Scored] = []
    for phase in (queues, nears):  # items about an interest first (round-robin), then their neighbours
        _round_robin(snap, phase, n, taken, out, reasons, fresh)
    return out


def _round_robin(snap: Snapshot, queues: list[list[tuple[int, list[str]]]], n: int, taken: set[int],
                 out: list[Scored], reasons: Reasons, fresh: np.ndarray) -> None:
    while len(out) < n and any(queues):
        for queue in queues:
            while queue:
                p, options = queue.pop(0)
                if p in taken:
                    continue
                taken.add(p)
                out.append(Scored(snap.item_ids[p], round(float(snap.popularity[p] + fresh[p]), 6),
                                  reasons.pick(options)))
                break
            if len(out) >= n:
                break


def _about_reason(snap: Snapshot, p: int, name: str, fresh: np.ndarray) -> str:
    if fresh[p] > 0.8:
        return f"new on {name}"
    if snap.popularity[p] > 0.5 or snap.trending[p] > 0:
        return f"popular on {name}"
    return f"matches your interest in {name}"


def _variants(snap: Snapshot, p: int, name: str) -> list[str]:
    """Other true reasons for an item about an interest, used once the first choice is on a quarter of the cards."""
    category = (split_values(snap.categories[p]) or [""])[0]
    out = [f"matches your interest in {name}", f"because you follow {name}"]
    if category and category.lower() != name.lower():
        out.append(f"{name} \u00b7 {category}")
    out.append(f"about {name}: \u201c{snap.titles[p][:60]}\u201d")
    return out


def vary_history_reasons(snap: Snapshot, scored: list[Scored], k: int) -> list[Scored]:
    """Rewrite "because you liked X" reasons so that none is on more than a quarter of the cards: the same liked
    item is named in other words ("more like X", "readers who liked X also liked this"), then the next most similar
    history item is used."""
    reasons = Reasons(k)
    out = []
    for s in scored:
        if s.reason_item_id is None or s.reason_item_id not in snap.position:
            out.append(Scored(s.item_id, s.score, reasons.pick([s.reason]), s.reason_item_id))
            continue
        title = snap.titles[snap.position[s.reason_item_id]]
        options = [s.reason, f"more like \u201c{title}\u201d", f"readers of \u201c{title}\u201d also chose this",
                   f"close to \u201c{title}\u201d, which you liked"]
        out.append(Scored(s.item_id, s.score, reasons.pick(options), s.reason_item_id))
    return out


def general_reasons(snap: Snapshot, s: Scored) -> list[str]:
    """Reasons for an item picked without history or interests (trending/popular/new), most specific last."""
    category = (split_values(snap.categories[snap.position[s.item_id]]) or ["the catalog"])[0]
    word = s.reason.split(" ")[0] if s.reason.split(" ")[0] in ("trending", "popular") else "new"
    return [s.reason, f"{word} in {category}", f"{'popular' if word != 'popular' else 'new'} in {category}",
            f"picked for new readers: {category}"]


def blend(personal: list[Scored], declared: list[Scored], k: int) -> list[Scored]:
    """Interleave the declared-interest items evenly into the personal list (k items, no repeats)."""
    if not declared:
        return personal[:k]
    n_declared = min(len(declared), k)
    out: list[Scored] = []
    ids: set[str] = set()
    p_iter, d_iter = iter(personal), iter(declared)
    step = k / n_declared
    slots = {int(i * step + step / 2) for i in range(n_declared)}
    for pos in range(k):
        source = (d_iter, p_iter) if pos in slots else (p_iter, d_iter)
        for it in source:
            item = next((s for s in it if s.item_id not in ids), None)
            if item is not None:
                out.append(item)
                ids.add(item.item_id)
                break
    return out
