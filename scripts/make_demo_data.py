"""Build the demo slices shipped in newsdesk/demo/ from the MIT-licensed sources in ../shared/data.

Sources (all MIT): Twitter financial news sentiment (fintweets_train.csv), Twitter financial news topic
(fintweets_topic_train.csv) and StockNet tweets (Xu & Cohen 2018).
Run once by a maintainer: `python scripts/make_demo_data.py [--data ../shared/data] [--only topic]`.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import re
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "newsdesk" / "demo"
CASHTAG = re.compile(r"\$([A-Z]{1,5})\b")
TOPICS = {
    "earnings": ["earnings", "eps", "revenue", "quarter", "q1", "q2", "q3", "q4", "profit", "guidance", "beats",
                 "misses"],
    "analysts": ["upgrade", "downgrade", "price target", "rating", "analyst", "overweight", "underweight",
                 "outperform"],
    "economy": ["fed", "inflation", "gdp", "jobs", "unemployment", "rates", "treasury", "economy", "ecb", "recession"],
    "energy": ["oil", "gas", "opec", "energy", "crude", "solar"],
    "tech": ["apple", "google", "microsoft", "amazon", "tesla", "nvidia", "chip", "software", "ai ", "tech",
             "facebook"],
    "crypto": ["bitcoin", "crypto", "ethereum", "blockchain"],
    "deals": ["acquire", "acquisition", "merger", "deal", "buyout", "ipo", "stake"],
}


def topic_of(text: str) -> str:
    low = text.lower()
    for topic, words in TOPICS.items():
        if any(w in low for w in words):
            return topic
    return "markets"


def clean_title(text: str) -> str:
    return re.sub(r"\s*https?://\S+", "", text).strip()


def topic_slice(data: Path, train_rows: int = 400, dev_rows: int = 200, seed: int = 7) -> None:
    """topic_train.csv / topic_dev.csv: a stratified sample of the topic train split (every topic present in both),
    dev and train disjoint by link-stripped text (template tweets differing only in a t.co link stay together)."""
    with open(data / "topic" / "fintweets_topic_train.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = random.Random(seed)
    rng.shuffle(rows)
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    share = (train_rows + dev_rows) / len(rows)
    train, dev, seen = [], [], set()
    for _, group in sorted(by_label.items()):
        want = max(6, round(len(group) * share))  # at least a few rows of the rarest topics
        n_dev = max(2, round(want * dev_rows / (train_rows + dev_rows)))
        picked = 0
        for r in group:
            key = re.sub(r"https?://\S+", "", r["text"]).strip().lower()
            if key in seen:
                continue
            seen.add(key)
            (dev if picked < n_dev else train).append(r)
            picked += 1
            if picked >= want:
                break
    for name, part in (("topic_train.csv", train), ("topic_dev.csv", dev)):
        with open(OUT / name, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["text", "label"])
            for r in part:
                w.writerow([r["text"], r["label"]])
    print(f"topic train {len(train)}, dev {len(dev)}, {len(by_label)} topics")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--only", choices=["topic"], default=None, help="rebuild only the topic slice")
    args = parser.parse_args()
    data = Path(args.data)
    OUT.mkdir(parents=True, exist_ok=True)
    topic_slice(data)
    if args.only == "topic":
        return
    rng = random.Random(7)

    with open(data / "sentiment" / "fintweets_train.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if len(clean_title(r["text"])) >= 25]
    rng.shuffle(rows)
    catalog, train, dev = rows[:900], rows[900:3400], rows[3400:3900]

    OUT.mkdir(parents=True, exist_ok=True)
    start = datetime(2026, 11, 1)
    with open(OUT / "headlines.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["item_id", "title", "description", "category", "tags", "url", "published_at"])
        for i, r in enumerate(catalog):
            title = clean_title(r["text"])
            tags = ",".join(sorted(set(CASHTAG.findall(title))))
            published = start + timedelta(minutes=rng.randint(0, 26 * 24 * 60))
            url = (re.findall(r"https?://\S+", r["text"]) or [""])[0]
            w.writerow([f"h{i:04d}", title, "", topic_of(title), tags, url, published.isoformat() + "Z"])
    for name, part in (("sentiment_train.csv", train), ("sentiment_dev.csv", dev)):
        with open(OUT / name, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["text", "label"])
            for r in part:
                w.writerow([r["text"], r["label"]])

    # Stream slice: the busiest tickers over a few weeks, as-is (StockNet format).
    with gzip.open(data / "stream" / "stocknet_tweets_stream.jsonl.gz", "rt") as fh:
        tweets = [json.loads(line) for line in fh]
    window = [t for t in tweets if "2015-07-01" <= t["ts"] < "2015-08-15"]
    top = [t for t, _ in Counter(t["ticker"] for t in window).most_common(12)]
    picked = [t for t in window if t["ticker"] in top][:4000]
    with gzip.open(OUT / "stream.jsonl.gz", "wt") as fh:
        for t in picked:
            fh.write(json.dumps(t) + "\n")
    print(f"catalog {len(catalog)}, train {len(train)}, dev {len(dev)}, stream {len(picked)} ({', '.join(top)})")
    print(Counter(topic_of(clean_title(r['text'])) for r in catalog))


if __name__ == "__main__":
    main()
