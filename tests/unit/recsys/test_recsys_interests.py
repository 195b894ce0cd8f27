"""Declared interests: a ticker-only reader gets that ticker's items, the share fades with behaviour, reasons vary."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
from recsys_fixtures import FakeEncoder

from recsys.interests import interest_share, match_mask
from recsys.offline import Rating, memory_snapshot
from recsys.profile import Event, build_profile
from recsys.rank import RankParams
from recsys.recommender import with_interests

NOW = time.time()


def _catalog():
    """60 items: 6 about AAPL (tag or cashtag), 20 energy, 20 tech, 14 banking; trending energy."""
    rows = []
    for i in range(4):
        rows.append((f"a{i}", f"Apple supplier news {i}", "tech", "AAPL", f"chip phone supplier {i}"))
    rows += [("a4", "$AAPL beats estimates", "earnings", "", "chip earnings"),
             ("a5", "Why $aapl fell", "markets", "", "chip market")]
    rows += [(f"e{i}", f"Oil story {i}", "energy", "XOM" if i < 3 else "", f"oil crude {i}") for i in range(20)]
    rows += [(f"t{i}", f"Chip story {i}", "tech", "", f"chip fab {i}") for i in range(20)]
    rows += [(f"b{i}", f"Bank story {i}", "banking", "", f"bank rates {i}") for i in range(14)]
    return rows


def _snapshot(train):
    rows = _catalog()
    ids = [r[0] for r in rows]
    vecs = FakeEncoder().encode([f"{r[1]}. {r[2]}. {r[4]}" for r in rows])
    return memory_snapshot(ids, vecs, train, titles=[r[1] for r in rows], categories=[r[2] for r in rows],
                           tags=[r[3] for r in rows], published=[NOW - 86_400 * (n % 40) for n in range(len(rows))])


def _crowd() -> list[Rating]:
    """Other readers like energy items (so energy is what is popular)."""
    return [Rating(f"u{u}", f"e{(u + i) % 20}", 5.0, 1000.0 + i) for u in range(10) for i in range(8)]


def _share(recs, snap, interests) -> float:
    masks = [match_mask(snap, i) for i in interests]
    return sum(any(m[snap.position[r.item_id]] for m in masks) for r in recs) / len(recs)


def test_ticker_only_reader_gets_that_ticker_not_trending() -> None:
    snap = _snapshot(_crowd())
    profile = build_profile([], snap.position, snap.vectors, snap.collab)
    recs = with_interests(snap, profile, ["$AAPL"], 20, RankParams(), NOW)
    assert len(recs) == 20 and len({r.item_id for r in recs}) == 20
    about = {f"a{i}" for i in range(6)}
    assert about <= {r.item_id for r in recs}  # all six AAPL items (tag or cashtag) are in the first feed
    assert any("AAPL" in r.reason for r in recs)
    reasons = Counter(r.reason for r in recs)
    assert max(reasons.values()) <= 5  # no reason on more than a quarter of the cards
    assert not any(r.reason == "trending now" for r in recs[:6])


def test_topics_and_tickers_shape_the_first_feed_and_fade_with_behaviour() -> None:
    snap = _snapshot(_crowd())
    interests = ["banking", "$XOM"]
    first = with_interests(snap, build_profile([], snap.position, snap.vectors, snap.collab), interests, 20,
                           RankParams(), NOW)
    assert _share(first, snap, interests) >= 0.8
    assert max(Counter(r.reason for r in first).values()) <= 5
    assert any("banking" in r.reason for r in first) and any("XOM" in r.reason for r in first)
    some = [Event(f"t{i}", "click") for i in range(5)]  # behaviour: a tech reader
    mid = with_interests(snap, build_profile(some, snap.position, snap.vectors, snap.collab), interests, 20,
                         RankParams(), NOW)
    assert 0.2 <= _share(mid, snap, interests) < _share(first, snap, interests)
    lots = [Event(f"t{i % 20}", "click") for i in range(25)] + [Event(f"a{i}", "click") for i in range(4)]
    late = with_interests(snap, build_profile(lots, snap.position, snap.vectors, snap.collab), interests, 20,
                          RankParams(), NOW)
    assert not any("banking" in r.reason or "XOM" in r.reason for r in late)  # behaviour has taken over
    assert max(Counter(r.reason for r in late).values()) <= 5
    assert all("“" in r.reason for r in late)  # history reasons name the liked item


def test_interest_share_schedule() -> None:
    assert interest_share(0) == 1.0
    assert interest_share(5, 0.5, 20) == 0.375
    assert interest_share(20, 0.5, 20) == 0.0 and interest_share(50) == 0.0
    assert np.isclose(interest_share(10, 0.4, 20), 0.2)


def test_onboarding_lists_topics_and_every_ticker_apart(session, tmp_path) -> None:
    from recsys_fixtures import write_csv

    from recsys import service

    rows = [[f"x{n}", f"Story {n} about ${'AAPL' if n == 0 else 'ZION'}", "", "markets" if n % 2 else "energy",
             ",".join([f"T{n:03d}", "rates"]), "", "2026-11-01T00:00:00Z"] for n in range(120)]
    path = write_csv(tmp_path / "items.csv", ["item_id", "title", "description", "category", "tags", "url",
                                              "published_at"], rows)
    service.import_catalog(session, [path])
    interests = service.list_interests(session)
    assert interests.topics[:3] == ["rates", "energy", "markets"]  # most used first, no ticker among them
    assert len(interests.tickers) == 122 and {"AAPL", "ZION", "T000", "T119"} <= set(interests.tickers)
    assert interests.tickers == sorted(interests.tickers)


def test_a_ticker_with_one_item_still_gets_varied_reasons() -> None:
    rows = _catalog()
    rows = [r for r in rows if r[0] not in ("a1", "a2", "a3", "a4", "a5")]  # one AAPL item left
    ids = [r[0] for r in rows]
    vecs = FakeEncoder().encode([f"{r[1]}. {r[2]}. {r[4]}" for r in rows])
    snap = memory_snapshot(ids, vecs, _crowd(), titles=[r[1] for r in rows], categories=[r[2] for r in rows],
                           tags=[r[3] for r in rows])
    recs = with_interests(snap, build_profile([], snap.position, snap.vectors, snap.collab), ["$AAPL"], 20,
                          RankParams(), NOW)
    assert recs[0].item_id == "a0" and len(recs) == 20
    assert max(Counter(r.reason for r in recs).values()) <= 5
    assert all("AAPL" in r.reason for r in recs)  # every card names the interest it comes from
