"""Declared interests on the demo news catalog: share of a new reader's first 20 items that match what they picked.

Usage (from the repo root): nice -n 10 .venv/bin/python benchmarks/recsys_interests.py
Embeds newsdesk/demo/headlines.csv (945 items) with the base encoder, then for a few onboarding choices (a
ticker-only reader, a topic-only reader, mixed ones) prints the share of the first 20 items about a declared
interest, the number of items the catalog has about them, and the largest share of cards with one reason.
Writes benchmarks/results/recsys_interests.json.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

READERS = [["$AAPL"], ["$TSLA"], ["energy"], ["crypto"], ["earnings", "$MSFT"], ["tech", "$UBER", "$SPY"]]


def main() -> None:
    from finetune.behaviour import encode_texts
    from recsys.interests import match_mask
    from recsys.offline import memory_snapshot
    from recsys.profile import build_profile
    from recsys.rank import RankParams
    from recsys.recommender import with_interests
    from recsys.text import item_text

    with (ROOT / "newsdesk" / "demo" / "headlines.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    t = time.perf_counter()
    vecs = encode_texts(None, [item_text(r["title"], r["category"], r["description"]) for r in rows])
    embed_s = time.perf_counter() - t
    published = [datetime.fromisoformat(r["published_at"].replace("Z", "+00:00")).timestamp() for r in rows]
    snap = memory_snapshot([r["item_id"] for r in rows], vecs, [], titles=[r["title"] for r in rows],
                           categories=[r["category"] for r in rows], tags=[r["tags"] for r in rows],
                           published=published)
    now = max(published)
    out = []
    print(f"{'interests':28s} {'about them':>10s} {'share of first 20':>18s} {'max reason share':>17s}")
    for interests in READERS:
        profile = build_profile([], snap.position, snap.vectors, snap.collab)
        recs = with_interests(snap, profile, interests, 20, RankParams(), now)
        masks = [match_mask(snap, i) for i in interests]
        about = int(sum(m.sum() for m in masks))
        share = sum(any(m[snap.position[r.item_id]] for m in masks) for r in recs) / len(recs)
        top = Counter(r.reason for r in recs).most_common(1)[0]
        out.append({"interests": interests, "items_about": about, "share_first_20": round(share, 3),
                    "max_reason_share": top[1] / len(recs), "top_reason": top[0],
                    "reasons": [r.reason for r in recs]})
        print(f"{', '.join(interests):28s} {about:10d} {share:18.2f} {top[1] / len(recs):17.2f}")
    result = {"command": "python " + " ".join(sys.argv), "embed_seconds": round(embed_s, 1),
              "load_average": list(os.getloadavg()), "readers": out}
    path = ROOT / "benchmarks" / "results" / "recsys_interests.json"
    path.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
