"""Popularity as of a user's time: the positives' log, the window, and the served ranking that uses it."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
from recsys_fixtures import ITEMS, FakeEncoder

from recsys.offline import Rating, memory_snapshot
from recsys.profile import Event, build_profile
from recsys.rank import PositiveLog, RankParams, popularity_at, rank_for_profile

DAY = 86_400.0


def test_window_counts_only_the_positives_before_the_time() -> None:
    log = PositiveLog.build([2, 0, 0, 1, 0], [50 * DAY, 10 * DAY, 11 * DAY, 12 * DAY, 400 * DAY])
    assert log.ts.tolist() == sorted(log.ts.tolist())
    pop = log.popularity(4, until=60 * DAY, window_days=30)  # days 30..60: only item 2
    assert pop.tolist() == [0.0, 0.0, 1.0, 0.0]
    pop = log.popularity(4, until=60 * DAY, window_days=365)  # item 0 twice, items 1 and 2 once; day 400 is later
    assert pop[0] == 1.0 and 0 < pop[1] == pop[2] < 1.0 and pop[3] == 0.0
    assert log.popularity(4, until=0.0, window_days=30).tolist() == [0.0] * 4  # nothing before: all zero


def _eras() -> tuple[list[Rating], float, float]:
    """Ten readers in 2001 like e0-e3 and e4, ten in 2011 like e0-e3 and e5: the same co-likes, other times."""
    old = datetime(2001, 6, 1, tzinfo=timezone.utc).timestamp()
    new = datetime(2011, 6, 1, tzinfo=timezone.utc).timestamp()
    train = []
    for u in range(10):
        for n, item in enumerate(("e0", "e1", "e2", "e3", "e4")):
            train.append(Rating(f"old{u}", item, 5.0, old + n * DAY))
        for n, item in enumerate(("e0", "e1", "e2", "e3", "e5")):
            train.append(Rating(f"new{u}", item, 5.0, new + n * DAY))
    return train, old, new


def test_served_ranking_prefers_what_was_liked_around_the_users_time() -> None:
    train, old, new = _eras()
    ids = [i for i, *_ in ITEMS]
    texts = [f"{t}. {c}. {d}" for _, t, c, d in ITEMS]
    snap = memory_snapshot(ids, FakeEncoder().encode(texts), train, titles=[t for _, t, *_ in ITEMS])
    assert snap.positives is not None and len(snap.positives.items) == 100
    params = RankParams(new_item_slots=0)

    def top(when: float, p: RankParams) -> list[str]:
        at = datetime.fromtimestamp(when, tz=timezone.utc).replace(tzinfo=None)
        events = [Event("e0", "rating", 5.0, at), Event("e1", "rating", 4.5, at)]
        profile = build_profile(events, snap.position, snap.vectors, snap.collab, positive_rating=4.0,
                                half_life=p.history_half_life)
        assert profile.latest == when
        ranked = [s.item_id for s in rank_for_profile(snap, profile, 6, p, now=when)]
        return [i for i in ranked if i in ("e4", "e5")]

    assert top(new + 30 * DAY, params)[0] == "e5"  # a 2011 reader: the item liked in 2011 first
    assert top(old + 30 * DAY, params)[0] == "e4"  # a 2001 reader: the item liked in 2001 first
    # all-time popularity (window 0) cannot tell them apart: both readers get the same order
    flat = replace(params, popularity_window_days=0)
    assert top(new + 30 * DAY, flat) == top(old + 30 * DAY, flat)


def test_without_a_time_or_a_log_the_all_time_popularity_serves() -> None:
    train, _, new = _eras()
    ids = [i for i, *_ in ITEMS]
    snap = memory_snapshot(ids, np.eye(len(ids), 16, dtype=np.float32) + 0.01, train)
    params = RankParams()
    assert popularity_at(snap, None, params) is snap.popularity
    assert popularity_at(replace(snap, positives=None), new, params) is snap.popularity
    assert popularity_at(snap, new, replace(params, popularity_window_days=0)) is snap.popularity
    assert not np.array_equal(popularity_at(snap, new, params), snap.popularity)
