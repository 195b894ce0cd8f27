"""The per-user result cache: reuse, and every way an entry must stop being served."""

from __future__ import annotations

import sqlalchemy as sa

from recsys import cache as cache_module
from recsys import service
from recsys.cache import ResultCache
from recsys.tables import Interaction


def ids(recs) -> list[str]:
    return [r.item_id for r in recs]


def counts(settings) -> tuple[int, int]:
    results = service.get_recommender(settings).results
    return results.hits, results.misses


def test_repeated_call_is_served_from_the_cache(built) -> None:
    settings, session = built
    first = service.recommend_for_user(session, settings, "oil0", k=3)
    hits, misses = counts(settings)
    again = service.recommend_for_user(session, settings, "oil0", k=3)
    assert ids(again) == ids(first) and [r.score for r in again] == [r.score for r in first]
    assert counts(settings) == (hits + 1, misses)
    again.clear()  # callers get their own list
    assert ids(service.recommend_for_user(session, settings, "oil0", k=3)) == ids(first)


def test_users_k_and_topics_never_share_an_entry(built) -> None:
    settings, session = built
    oil = service.recommend_for_user(session, settings, "oil0", k=3)
    chip = service.recommend_for_user(session, settings, "chip0", k=3)
    assert ids(oil) != ids(chip)
    assert ids(service.recommend_for_user(session, settings, "chip0", k=3)) == ids(chip)
    assert len(service.recommend_for_user(session, settings, "oil0", k=5)) == 5
    new_energy = service.recommend_for_user(session, settings, "newbie", k=3, topics=("energy",))
    new_tech = service.recommend_for_user(session, settings, "newbie", k=3, topics=("tech",))
    assert ids(new_energy) != ids(new_tech)


def test_not_interested_and_clicks_invalidate(built) -> None:
    settings, session = built
    first = service.recommend_for_user(session, settings, "oil0", k=3)
    top = first[0].item_id
    service.log_events(session, "oil0", [(top, "not_interested")])
    session.commit()
    _, misses = counts(settings)
    after = service.recommend_for_user(session, settings, "oil0", k=3)
    assert top not in ids(after)
    assert counts(settings)[1] == misses + 1
    clicked = after[0].item_id
    service.log_events(session, "oil0", [(clicked, "click")])
    session.commit()
    assert clicked not in ids(service.recommend_for_user(session, settings, "oil0", k=3))


def test_history_written_by_another_session_invalidates(built) -> None:
    """Another process (the worker, a second server) writes straight to the table: the stamp sees it."""
    settings, session = built
    first = service.recommend_for_user(session, settings, "chip0", k=3)
    session.execute(sa.insert(Interaction).values(user_id="chip0", item_id=first[0].item_id, kind="rating",
                                                  rating=1.0, ts=sa.func.current_timestamp(), source="other"))
    session.commit()
    assert first[0].item_id not in ids(service.recommend_for_user(session, settings, "chip0", k=3))


def test_impressions_keep_the_entry(built) -> None:
    settings, session = built
    first = service.recommend_for_user(session, settings, "oil1", k=4)
    service.log_events(session, "oil1", [(r.item_id, "impression") for r in first])
    session.commit()
    hits, misses = counts(settings)
    assert ids(service.recommend_for_user(session, settings, "oil1", k=4)) == ids(first)
    assert counts(settings) == (hits + 1, misses)


def test_index_rebuild_and_invalidate_drop_entries(built, fake_encoder) -> None:
    settings, session = built
    rec = service.get_recommender(settings)
    service.recommend_for_user(session, settings, "oil0", k=3)
    generation = rec.generation
    service.rebuild_index(session, settings, encoder=fake_encoder)
    assert len(rec.results) == 0
    _, misses = counts(settings)
    service.recommend_for_user(session, settings, "oil0", k=3)
    assert rec.generation > generation and counts(settings)[1] == misses + 1


def test_entries_expire_after_the_ttl(built, monkeypatch) -> None:
    settings, session = built
    service.recommend_for_user(session, settings, "oil2", k=3)
    ttl = service.get_recommender(settings).results.ttl_seconds
    real = cache_module.time.monotonic
    monkeypatch.setattr(cache_module.time, "monotonic", lambda: real() + ttl + 1)
    _, misses = counts(settings)
    service.recommend_for_user(session, settings, "oil2", k=3)
    assert counts(settings)[1] == misses + 1


def test_cache_unit_behaviour() -> None:
    off = ResultCache(0)
    value, stamp = off.lookup(("u", 1, ()), 0, 5, lambda: (1, 5))
    off.put(("u", 1, ()), stamp, ["x"])
    assert value is None and len(off) == 0
    small = ResultCache(60, max_entries=2)
    history = {"u": (1, 5), "v": (1, 6), "w": (1, 7)}
    for n, user in enumerate("uvw"):
        _, stamp = small.lookup((user, 1, ()), 0, 5 + n, lambda u=user: history[u])
        small.put((user, 1, ()), stamp, [user])
    assert len(small) == 2 and small.lookup(("u", 1, ()), 0, 5, lambda: history["u"])[0] is None
    assert small.lookup(("w", 1, ()), 0, 7, lambda: history["w"])[0] == ["w"]
    assert small.lookup(("w", 1, ()), 1, 7, lambda: history["w"])[0] is None  # new generation
    _, stamp = small.lookup(("v", 1, ()), 0, 6, lambda: history["v"])
    small.put(("v", 1, ()), stamp, ["v"])
    assert small.lookup(("v", 1, ()), 0, 9, lambda: (1, 6))[0] == ["v"]  # only impressions were added
    assert small.lookup(("v", 1, ()), 0, 10, lambda: (2, 10))[0] is None  # a click/rating was added
    small.invalidate("w")
    assert small.lookup(("w", 1, ()), 0, 7, lambda: history["w"])[0] is None
