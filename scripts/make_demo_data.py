"""Build the demo slices shipped in newsdesk/demo/ from the MIT-licensed sources in ../shared/data.

Sources (both MIT): Twitter financial news sentiment (fintweets_train.csv) and StockNet tweets (Xu & Cohen 2018).
Run once by a maintainer: `python scripts/make_demo_data.py [--data ../shared/data]`.
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = parser.parse_args()
    data = Path(args.data)
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
