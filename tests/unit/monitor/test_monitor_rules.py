"""Rules as pure functions, and through the database with known answers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from monitor_fakes import T0, burst_payloads
from sqlalchemy import func, select

from monitor import rules, service
from monitor.tables import Alert, AlertEvidence, Message
from newsdesk.errors import InvalidInput


def _stats(labels: list[str | None], baseline: list[int] | None = None, texts: list[str] | None = None):
    msgs = [rules.WindowMessage(i, (texts or [""] * len(labels))[i], lab, T0 + timedelta(seconds=i))
            for i, lab in enumerate(labels)]
    return rules.WindowStats("XYZ", T0, T0 + timedelta(hours=1), msgs, baseline or [])


def test_negative_burst_needs_count_share_and_z() -> None:
    params = rules.validate_params("negative_burst", {})
    assert rules.negative_burst(params, _stats(["negative"] * 4)).met
    assert not rules.negative_burst(params, _stats(["negative"] * 3)).met  # under min_negative
    assert not rules.negative_burst(params, _stats(["negative"] * 4 + ["neutral"] * 7)).met  # share 0.36
    # a ticker that always has ~4 negatives per window: 5 is not a burst
    assert not rules.negative_burst(params, _stats(["negative"] * 5, baseline=[4, 3, 5, 4] * 10)).met
    result = rules.negative_burst(params, _stats(["negative"] * 9, baseline=[4, 3, 5, 4] * 10))
    assert result.met and result.values["z"] >= 2.5 and len(result.evidence_ids) == 9


def test_unclassified_messages_do_not_count_toward_the_share() -> None:
    params = rules.validate_params("negative_burst", {})
    assert rules.negative_burst(params, _stats(["negative"] * 4 + [None] * 20)).met


def test_volume_spike_against_baseline() -> None:
    params = rules.validate_params("volume_spike", {"min_count": 5})
    assert rules.volume_spike(params, _stats(["neutral"] * 12, baseline=[1, 2, 1, 0] * 20)).met
    assert not rules.volume_spike(params, _stats(["neutral"] * 12, baseline=[10, 12, 11, 13] * 20)).met
    assert not rules.volume_spike(params, _stats(["neutral"] * 4, baseline=[0] * 40)).met
    assert not rules.volume_spike(params, _stats(["neutral"] * 40, baseline=[0] * 40)).met  # no history


def test_keyword_with_sentiment_filter() -> None:
    params = rules.validate_params("keyword", {"phrases": ["SEC investigation", "bankruptcy"]})
    texts = ["XYZ faces an SEC  investigation", "bankruptcyish rumours", "no bankruptcy, great quarter"]
    result = rules.keyword(params, _stats(["negative", "negative", "positive"], texts=texts))
    assert result.met and result.evidence_ids == [0] and result.values["phrases"] == ["sec  investigation"]
    anyp = rules.validate_params("keyword", {"phrases": ["bankruptcy"], "sentiment": "any"})
    assert rules.keyword(anyp, _stats(["negative", "negative", "positive"], texts=texts)).evidence_ids == [2]


@pytest.mark.parametrize("kind,params", [("nope", {}), ("keyword", {}), ("keyword", {"phrases": "x"}),
                                         ("negative_burst", {"min_share": 2}), ("negative_burst", {"foo": 1}),
                                         ("volume_spike", {"min_count": "ten"}), ("keyword",
                                         {"phrases": ["x"], "sentiment": "angry"})])
def test_invalid_params_are_rejected(kind: str, params: dict) -> None:
    with pytest.raises(InvalidInput):
        rules.validate_params(kind, params)


def test_eight_negative_after_ten_neutral_fire_exactly_one_alert(session, fake_classifier) -> None:
    service.ensure_default_rules(session)
    for payload in burst_payloads():  # one message per call: evaluated incrementally as live
        service.ingest_messages(session, fake_classifier, [payload], "test")
    alerts = session.scalars(select(Alert)).all()
    assert [(a.kind, a.ticker, a.state) for a in alerts] == [("negative_burst", "XYZ", "firing")]
    assert alerts[0].values["negative"] >= 4
    evidence = session.scalars(select(Message.text).join(AlertEvidence, AlertEvidence.message_id == Message.id)
                               ).all()
    assert len(evidence) == 8 and all("plunge" in t for t in evidence)
    detail = service.get_alert(session, alerts[0].id)
    assert len(detail.evidence) == 8 and detail.evidence[0].label == "negative"


def test_burst_resolves_when_the_window_moves_on(session, fake_classifier) -> None:
    service.ensure_default_rules(session)
    service.ingest_messages(session, fake_classifier, burst_payloads(), "test")
    assert session.scalar(select(Alert.state)) == "firing"
    later = {"id": "later", "text": "$XYZ quiet day", "ts": (T0 + timedelta(days=1)).isoformat()}
    service.ingest_messages(session, fake_classifier, [later], "test")
    alert = session.scalars(select(Alert)).one()
    assert alert.state == "resolved" and alert.active_fingerprint is None
    assert alert.resolved_at == T0 + timedelta(days=1)
    # a new burst is a new episode with the same fingerprint
    service.ingest_messages(session, fake_classifier,
                            burst_payloads(start=T0 + timedelta(days=2), id_prefix="b"), "test")
    rows = session.scalars(select(Alert).where(Alert.kind == "negative_burst").order_by(Alert.id)).all()
    assert len(rows) == 2 and rows[0].fingerprint == rows[1].fingerprint and rows[1].state == "firing"


def test_keyword_rule_through_the_database(session, fake_classifier) -> None:
    service.create_rule(session, "fraud", "keyword", {"phrases": ["SEC investigation"]}, tickers=["ABC"])
    payloads = [{"id": "k1", "text": "$ABC under SEC investigation, shares plunge", "ts": T0.isoformat()},
                {"id": "k2", "text": "$XYZ under SEC investigation, shares plunge", "ts": T0.isoformat()},
                {"id": "k3", "text": "$ABC SEC investigation closed, record quarter", "ts": T0.isoformat()}]
    service.ingest_messages(session, fake_classifier, payloads, "test")
    alerts = session.scalars(select(Alert)).all()
    assert [(a.ticker, a.kind) for a in alerts] == [("ABC", "keyword")]
    assert session.scalar(select(func.count(AlertEvidence.id))) == 1


def test_retweets_of_one_text_are_one_negative() -> None:
    params = rules.validate_params("negative_burst", {})
    same = ["RT @desk: $XYZ plunges http://t.co/a"] * 3 + ["$XYZ plunges  http://t.co/b"]
    assert not rules.negative_burst(params, _stats(["negative"] * 4, texts=same)).met
    varied = same[:2] + ["$XYZ guidance cut", "$XYZ CEO quits"]
    result = rules.negative_burst(params, _stats(["negative"] * 4, texts=varied))
    assert not result.met and result.values["distinct_negative"] == 3
    four = varied + ["$XYZ downgraded"]
    result = rules.negative_burst(params, _stats(["negative"] * 5, texts=four))
    assert result.met and result.values["distinct_negative"] == 4
