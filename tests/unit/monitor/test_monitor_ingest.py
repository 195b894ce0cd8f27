"""Validation, idempotency, language flags, ticker extraction, dead letters and their replay."""

from __future__ import annotations

import json

import pytest
from monitor_fakes import FakeClassifier, burst_payloads
from sqlalchemy import func, select

from monitor import ingest, service
from monitor.enrich import Enricher, ensure_default_watchlist
from monitor.language import detect_language
from monitor.tables import DeadLetter, Message, MessageTicker
from newsdesk.errors import Conflict, InvalidInput, PayloadTooLarge


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("body,reason", [
    (b'{"text": "x"', "malformed JSON"),
    (b"\xff\xfe{}", "not valid UTF-8"),
    (b"42", "JSON object or an array"),
    (b"[]", "empty array"),
])
def test_parse_body_rejects_bad_bodies(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        ingest.parse_body(body, 1000)


def test_parse_body_size_limit_is_413() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        ingest.parse_body(b"[" + b'{"text":"x"},' * 100 + b'{"text":"x"}]', 500)
    assert info.value.http_status == 413
    assert ingest.parse_body(b'{"text": "x"}', 500) == [{"text": "x"}]


@pytest.mark.parametrize("item,reason", [
    ({"id": 1}, "missing field 'text'"),
    ({"text": 5}, "'text' must be a string"),
    ({"text": "x" * 10_001}, "over the 10000 limit"),
    ({"text": "x", "ts": "yesterday"}, "'ts' is not"),
    ({"text": "x", "ts": "2999-01-01T00:00:00"}, "in the future"),
    ({"text": "x", "ts": True}, "boolean"),
    ({"text": "x", "ticker": 7}, "'ticker' must be"),
    ({"text": "x", "ticker": "not a ticker"}, "not a ticker symbol"),
    ({"text": "x", "id": {"a": 1}}, "'id' must be"),
    ({"text": "x", "source": "bad source!"}, "'source'"),
    ("not json", "malformed JSON"),
    (b"\xff\xfe", "not valid UTF-8"),
    ([1, 2], "must be a JSON object"),
])
def test_invalid_items_get_a_reason(item, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        ingest.validate_payload(item, "test")


def test_idempotency_key_uses_id_then_content_hash() -> None:
    a = ingest.validate_payload({"id": 42, "text": "hello"}, "test")
    b = ingest.validate_payload({"tweet_id": "42", "text": "other text"}, "test")
    assert a.key == b.key == "id:test:42"
    c = ingest.validate_payload({"text": "hello", "ts": "2015-01-01T00:00:00Z"}, "test")
    d = ingest.validate_payload({"text": "hello", "ts": "2015-01-01T00:00:00Z"}, "other")
    e = ingest.validate_payload({"text": "hello", "ts": "2015-01-02T00:00:00Z"}, "test")
    assert c.key.startswith("sha:") and c.key == d.key and c.key != e.key


@pytest.mark.parametrize("text,expected", [
    ("$AAPL shares plunge after the iPhone sales miss", ("en", None)),
    ("http://t.co/abc $AAPL $GOOG 123.45", ("", "empty")),
    ("   ", ("", "empty")),
    ("Las acciones de la empresa suben por las ventas del trimestre", ("xx", "non_english")),
    ("Die Aktie ist nicht mehr so stark und das ist ein Problem", ("xx", "non_english")),
    ("苹果公司股价大跌 $AAPL", ("xx", "non_english")),
    ("$FB new high", ("en", None)),
])
def test_language_and_noise(text: str, expected: tuple) -> None:
    assert detect_language(text) == expected


def test_ticker_extraction_edge_cases() -> None:
    enricher = Enricher({"AAPL": ["Apple"], "T": ["AT&T"], "D": ["Dominion Resources"], "BAC": ["Bank of America"],
                         "MSFT": ["Microsoft"]})
    assert enricher.extract("$aapl and $GOOG up; $37.00 target, US$5") == ["AAPL", "GOOG"]
    assert enricher.extract("T is a letter and D too; DIS BAC") == []
    assert enricher.extract("AT&T beats, $T up, Dominion Resources falls") == ["D", "T"]
    assert enricher.extract("Bank of America and apple pie") == ["AAPL", "BAC"]
    assert enricher.extract("MSFT and #AAPL trend; XMSFT no") == ["AAPL", "MSFT"]
    assert enricher.extract("$CANBK.IN listed", hints=["IBM"]) == ["CANBK.IN", "IBM"]
    assert enricher.extract("pineapple, Applebee's") == []


def test_valid_invalid_and_flagged_messages(session) -> None:
    clf = FakeClassifier()
    payloads = [{"id": "1", "text": "$XYZ shares plunge", "ts": "2015-06-01T10:00:00Z"},
                {"id": "2", "text": 17},
                '{"id": "3", "text": ',
                {"id": "4", "text": "Las acciones de la empresa suben por las ventas", "ticker": "XYZ"},
                {"id": "5", "text": "https://t.co/x $XYZ"}]
    result = service.ingest_messages(session, clf, payloads, "test")
    assert (result.stored, result.classified, result.skipped, result.dead_lettered) == (3, 1, 2, 2)
    assert [r["index"] for r in result.rejected] == [1, 2]
    rows = {m.source_id: m for m in session.scalars(select(Message))}
    assert rows["1"].label == "negative" and rows["1"].model_version == "fake-1" and rows["1"].scores["negative"] > 0.5
    assert rows["4"].flag == "non_english" and rows["4"].label is None and rows["4"].status == "skipped"
    assert rows["5"].flag == "empty"
    assert clf.texts == 1  # flagged messages never reach the model
    letters = session.scalars(select(DeadLetter).order_by(DeadLetter.id)).all()
    assert [d.stage for d in letters] == ["validate", "validate"] and "'text' must be a string" in letters[0].reason


def test_second_replay_stores_nothing_and_links_new_tickers(session) -> None:
    clf = FakeClassifier()
    first = service.ingest_messages(session, clf, burst_payloads() + [{"id": "t1", "text": "merger", "ticker": "AAA"}],
                                    "test")
    assert first.stored == 19
    again = service.ingest_messages(session, clf, burst_payloads() + [{"id": "t1", "text": "merger", "ticker": "BBB"}],
                                    "test")
    assert (again.stored, again.duplicates, again.alerts_fired) == (0, 19, [])
    assert _count(session, Message) == 19
    tickers = session.scalars(select(MessageTicker.ticker).join(Message, Message.id == MessageTicker.message_id)
                              .where(Message.source_id == "t1").order_by(MessageTicker.ticker)).all()
    assert tickers == ["AAA", "BBB"]
    third = service.ingest_messages(session, clf, [{"id": "t1", "text": "merger", "ticker": "BBB"}], "test")
    assert third.duplicates == 1 and _count(session, MessageTicker) == 20


def test_duplicates_within_one_batch(session) -> None:
    item = {"text": "same text, no id", "ts": "2015-06-01T10:00:00Z"}
    result = service.ingest_messages(session, None, [item, dict(item), json.dumps(item)], "test")
    assert (result.stored, result.duplicates) == (1, 2)


def test_no_model_stores_pending_then_the_job_classifies(session) -> None:
    service.ensure_default_rules(session)
    result = service.ingest_messages(session, FakeClassifier(unavailable=True), burst_payloads(), "test")
    assert (result.stored, result.pending, result.alerts_fired) == (18, 18, [])
    assert service.classify_pending(session, FakeClassifier(version="v2")) == 18
    assert service.classify_pending(session, FakeClassifier()) == 0
    assert set(session.scalars(select(Message.model_version))) == {"v2"}
    assert set(session.scalars(select(MessageTicker.label))) == {"neutral", "negative"}
    alerts, total = service.list_alerts(session, state="firing")
    assert total == 1 and alerts[0].kind == "negative_burst"


def test_classifier_failure_dead_letters_only_the_culprit(session) -> None:
    clf = FakeClassifier(fail_on="poison")
    payloads = [{"id": "a", "text": "$XYZ fine day"}, {"id": "b", "text": "$XYZ poison pill"}]
    result = service.ingest_messages(session, clf, payloads, "test")
    assert (result.stored, result.dead_lettered) == (1, 1)
    letter = session.scalars(select(DeadLetter)).one()
    assert letter.stage == "classify" and "RuntimeError" in letter.reason
    # after the model is fixed, the dead letter replays into a stored message, once
    info = service.replay_dead_letter(session, FakeClassifier(), letter.id)
    assert info.status == "replayed" and info.message_id is not None
    assert session.get(Message, info.message_id).label == "neutral"
    with pytest.raises(Conflict):
        service.replay_dead_letter(session, FakeClassifier(), letter.id)


def test_invalid_dead_letter_stays_open_on_replay(session) -> None:
    service.ingest_messages(session, None, ['{"text": broken'], "test")
    letters, total = service.list_dead_letters(session)
    assert total == 1 and letters[0].payload == '{"text": broken'
    with pytest.raises(InvalidInput, match="still invalid"):
        service.replay_dead_letter(session, None, letters[0].id)
    assert service.list_dead_letters(session, status="open")[1] == 1


def test_watchlist_aliases_tag_messages(session) -> None:
    ensure_default_watchlist(session)
    service.ingest_messages(session, None, [{"id": "w", "text": "AT&T and Dominion Resources; T and D"}], "test")
    assert session.scalar(select(Message.tickers)) == "D,T"
    assert [m.id for m in service.latest_messages(session, ticker="T")] == [session.scalar(select(Message.id))]


def test_identical_texts_are_classified_once_per_batch(session) -> None:
    clf = FakeClassifier()
    payloads = [{"id": str(i), "text": "RT @x: $XYZ shares plunge"} for i in range(5)]
    result = service.ingest_messages(session, clf, payloads, "test")
    assert result.classified == 5 and clf.texts == 1
    assert set(session.scalars(select(Message.label))) == {"negative"}


def test_cashtag_spam_is_stored_but_not_counted(session) -> None:
    spam = {"id": "s", "text": "$AAA $BBB $CCC $DDD $EEE $FFF $GGG top movers crash"}
    result = service.ingest_messages(session, FakeClassifier(), [spam], "test")
    assert (result.stored, result.skipped, result.classified) == (1, 1, 0)
    row = session.scalars(select(Message)).one()
    assert row.flag == "many_tickers" and row.tickers.startswith("AAA,BBB")
    assert _count(session, MessageTicker) == 0
