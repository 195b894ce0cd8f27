"""A deterministic fake sentiment + topic classifier (keyword rules) and payload builders for monitor's tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from newsdesk.errors import Unavailable

NEGATIVE = ("plunge", "crash", "lawsuit", "fraud", "miss", "bankruptcy", "falls", "bad", "downgrade")
POSITIVE = ("soar", "beat", "record", "upgrade", "rally", "great")
# Topic keywords, checked in order; the labels look like the real model's (which monitor never hard-codes).
TOPICS = {"Legal | Regulation": ("lawsuit", "regulator", "court", "fraud", "probe"),
          "Earnings": ("quarterly", "earnings", "guidance", "eps")}
OTHER_TOPIC = "General News | Opinion"


@dataclass(frozen=True)
class FakePrediction:
    label: str
    scores: dict[str, float]


class FakeClassifier:
    """Labels by keyword: a negative word -> negative, a positive word -> positive, else neutral; with
    `topics=True` also a topic (the first TOPICS entry with a keyword in the text, else OTHER_TOPIC)."""

    def __init__(self, version: str = "fake-1", fail_on: str | None = None, unavailable: bool = False,
                 topics: bool = True) -> None:
        self.version = version
        self.fail_on = fail_on
        self.unavailable = unavailable
        self.tasks: tuple[str, ...] = ("sentiment", "topic") if topics else ("sentiment",)
        self.calls = 0
        self.texts = 0

    def predict_tasks(self, texts: Sequence[str], batch_size: int = 64) -> list[dict[str, FakePrediction]]:
        """One pass (one call counted) for every task, like the served multi-task model."""
        sentiment = self.predict(texts, batch_size)
        if "topic" not in self.tasks:
            return [{"sentiment": p} for p in sentiment]
        return [{"sentiment": p, "topic": topic_of(t)} for p, t in zip(sentiment, texts, strict=True)]

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[FakePrediction]:
        if self.unavailable:
            raise Unavailable("no model")
        self.calls += 1
        self.texts += len(texts)
        out = []
        for text in texts:
            low = text.lower()
            if self.fail_on and self.fail_on in low:
                raise RuntimeError(f"cannot classify {text[:20]!r}")
            label = ("negative" if any(w in low for w in NEGATIVE) else
                     "positive" if any(w in low for w in POSITIVE) else "neutral")
            scores = {k: 0.1 for k in ("negative", "neutral", "positive")}
            scores[label] = 0.8
            out.append(FakePrediction(label, scores))
        return out


def topic_of(text: str) -> FakePrediction:
    low = text.lower()
    label = next((t for t, words in TOPICS.items() if any(w in low for w in words)), OTHER_TOPIC)
    names = [*TOPICS, OTHER_TOPIC]
    scores = {t: (0.7 if t == label else 0.3 / (len(names) - 1)) for t in names}
    return FakePrediction(label, scores)


T0 = datetime(2015, 6, 1, 9, 0, 0)


def burst_payloads(ticker: str = "XYZ", neutral: int = 10, negative: int = 8, start: datetime = T0,
                   step_s: int = 60, id_prefix: str = "m") -> list[dict]:
    """`neutral` neutral then `negative` negative messages with cashtag $ticker, one every `step_s` seconds."""
    out = []
    for i in range(neutral + negative):
        word = "reports quarterly numbers today" if i < neutral else "shares plunge after the guidance"
        out.append({"id": f"{id_prefix}{ticker}{i}", "text": f"${ticker} {word} #{i}",
                    "ts": (start + timedelta(seconds=step_s * i)).isoformat() + "Z"})
    return out
