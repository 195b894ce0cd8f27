"""Cold-item dev protocol on MovieLens: warm and new-item figures side by side, over several cold-item draws.

Usage (from the repo root; --home is a NEWSDESK_HOME where benchmarks/recsys_movielens.py imported the catalog and
built the base-encoder index, so the base vectors are read from its database):
    nice -n 10 .venv/bin/python benchmarks/recsys_cold.py --home /tmp/newsdesk-bench-recsys --seeds 0,1,2
        [--train-tuned] [--blends 3:1:730,3:1:730:0.75] [--tuned-blends 3:0,2:1]

Per seed, 300 items with a description (and an interaction) are drawn and every train interaction of them removed
(recsys.offline.cold_item_split), as the hidden test does; their dev likes are new-item targets. Every dev user with
a like is ranked over all 9,125 items, train items excluded. Methods: most-popular, EASE (lambda=250), the served
ranking (recsys.rank on an in-memory snapshot: EASE + text map, MMR, popularity) with base-encoder vectors, and
with behaviour-tuned vectors: `--train-tuned` runs the default behaviour fine-tune on that seed's kept train rows
(so the cold items' interactions are never seen) and caches the model under --home/tuned-seedN.
Prints a table and writes benchmarks/results/recsys_cold.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsdesk import db
from newsdesk.settings import Settings
from recsys.rank import PositiveLog

DATA = ROOT.parent / "shared" / "data" / "recsys" / "movielens"
RESULTS = ROOT / "benchmarks" / "results"
K = 10
log = logging.getLogger("bench")


def load(home: Path, vectors_file: str | None = None):
    """Settings, catalog ids, base vectors (the home's stored ones, or a cache file: written on first use), items,
    train and dev rows."""
    from recsys.behaviour import read_ratings_file
    from recsys.embed import load_vectors

    settings = Settings.load(env={}, home=home, device="cpu")
    cache = Path(vectors_file) if vectors_file else None
    if cache is not None and cache.exists():
        stored = np.load(cache)
        item_ids, base = [str(i) for i in stored["ids"]], stored["vectors"]
    else:
        with db.session_scope(settings.database_url) as session:
            item_ids, base = load_vectors(session, "base")
        if not item_ids:
            item_ids, base = embed_catalog()
        if cache is not None:
            np.savez(cache, ids=np.asarray(item_ids), vectors=base)
    meta = {}
    with (DATA / "items.csv").open(newline="") as fh:
        for r in csv.DictReader(fh):
            meta[r["item_id"]] = r
    return settings, item_ids, base, meta, read_ratings_file(DATA / "interactions_train.csv"), \
        read_ratings_file(DATA / "interactions_dev.csv")


def embed_catalog() -> tuple[list[str], np.ndarray]:
    """The base encoder's vectors of items.csv, embedded here (as `newsdesk index build` would)."""
    from newsdesk.encoders import load_sentence_encoder
    from recsys.text import item_text

    with (DATA / "items.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    model = load_sentence_encoder(None, device="cpu", cache=False)
    texts = [item_text(r["title"], r["genres"], r["description"]) for r in rows]
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=True)
    return [r["item_id"] for r in rows], np.asarray(vectors, dtype=np.float32)


def scorer_metrics(score, split, item_ids):
    """Metrics of a full-catalog score(user) -> array, train items excluded."""
    from recsys.evaluate import evaluate_ranker

    pos = {i: n for n, i in enumerate(item_ids)}
    seen = defaultdict(set)
    for r in split.train:
        seen[r.user_id].add(r.item_id)
    relevant = defaultdict(set)
    for r in split.dev:
        if r.rating >= 4.0:
            relevant[r.user_id].add(r.item_id)
    known = {r.item_id for r in split.train}

    def rank(user, _events, k):
        s = np.asarray(score(user), dtype=np.float64).copy()
        s[[pos[i] for i in seen[user] if i in pos]] = -np.inf
        top = np.argpartition(-s, k)[:k]
        return [item_ids[t] for t in top[np.argsort(-s[top], kind="stable")]]

    return evaluate_ranker(rank, dict(relevant), {}, K, item_ids, known)


def baselines(split, item_ids, snap):
    """Most-popular, EASE and EASE with popularity as of the user's time; EASE's B is the one the served snapshot
    fitted on the same positives (lambda=250), so it is solved once per seed."""
    pos = {i: n for n, i in enumerate(item_ids)}
    liked = defaultdict(list)
    for r in split.train:
        if r.rating >= 4.0:
            liked[r.user_id].append(pos[r.item_id])
    counts = np.zeros(len(item_ids))
    for items in liked.values():
        counts[items] += 1
    b, active = snap.collab.ease, snap.collab.active
    col = np.full(len(item_ids), -1)
    col[active] = np.arange(len(active))

    def ease(u):
        out = counts / counts.max() * 1e-6
        if liked.get(u):
            out = out.copy()
            out[active] += b[col[liked[u]]].sum(axis=0)
        return out

    log_ = PositiveLog.build([pos[r.item_id] for r in split.train if r.rating >= 4.0],
                             [r.ts for r in split.train if r.rating >= 4.0])
    latest: dict[str, float] = defaultdict(float)
    for r in split.train:
        latest[r.user_id] = max(latest[r.user_id], r.ts)

    def ease_at_time(u):  # EASE scaled to max 1 plus 0.1 x popularity in the 730 days before the user's latest event
        out = ease(u)
        return out / max(out.max(), 1e-12) + 0.1 * log_.popularity(len(item_ids), latest[u], 730.0)

    return {"most-popular": scorer_metrics(lambda u: counts, split, item_ids),
            "EASE (lambda=250)": scorer_metrics(ease, split, item_ids),
            "EASE + popularity as of the user's time": scorer_metrics(ease_at_time, split, item_ids)}


def snapshot(split, item_ids, vectors, meta, label):
    from recsys.offline import memory_snapshot

    return memory_snapshot(item_ids, vectors, split.train, titles=[meta[i]["title"] for i in item_ids],
                           categories=[meta[i]["genres"] for i in item_ids], version=label)


def served(split, snap, blends, label):
    """The served ranking (recsys.rank on an in-memory snapshot) for each (gamma, new-item slots, popularity
    window in days, new-item min ratio, other RankParams fields) blend."""
    from recsys.offline import evaluate_served, with_new_item_weight
    from recsys.rank import RankParams

    out = {}
    for g, slots, window, ratio, extra in blends:
        t = time.perf_counter()
        name = f"{label}, gamma={g:g}, slots={slots}, " + (f"popularity {window:g} days before the user's time"
                                                           if window else "all-time popularity")
        name += f", new item >= {ratio:g} x best text score" if ratio else ""
        name += "".join(f", {k}={v:g}" for k, v in extra.items())
        out[name] = evaluate_served(with_new_item_weight(snap, g), split.train, split.dev,
                                    params=RankParams(new_item_slots=slots, popularity_window_days=window,
                                                      new_item_min_ratio=ratio, **extra))
        log.info("%s: %s (%.0fs)", name, out[name], time.perf_counter() - t)
    return out


def _blends(text: str) -> list[tuple[float, int, float, float, dict[str, float]]]:
    """"3:0,2:1:730:0.75:collab_cluster_weight=0.3" -> [(3.0, 0, 0.0, 0.0, {}), (2.0, 1, 730.0, 0.75,
    {"collab_cluster_weight": 0.3})] (gamma:new-item slots:popularity window in days:new-item min ratio, then any
    other RankParams field as name=value; slots, window and ratio default 0: no slot, all-time popularity, any new
    item with a positive text score may take the slot; fields not named keep RankParams' defaults)."""
    out = []
    for part in text.split(","):
        fields = part.split(":")
        g, slots, window, ratio = (fields[:4] + ["", "", ""])[:4]
        extra = {k: float(v) for k, v in (f.split("=", 1) for f in fields[4:])}
        out.append((float(g), int(slots or 0), float(window or 0), float(ratio or 0), extra))
    return out


def train_tuned(settings, split, item_ids, meta, base, seed, folder: Path):
    """The default behaviour fine-tune on this split's kept train rows (the cold items' interactions unseen)."""
    from finetune.args import BehaviourArgs
    from finetune.behaviour import encode_texts, train_to_targets
    from newsdesk.encoders import base_model_path
    from recsys.behaviour import Catalog, ServedBehaviour
    from recsys.collab import CollabArgs
    from recsys.text import item_text

    vec_file = folder / "vectors.npy"
    if vec_file.exists():
        return np.load(vec_file)
    args = BehaviourArgs(cold_items=0)
    source = ServedBehaviour.__new__(ServedBehaviour)  # the same target code, fed this split instead of the DB
    source.settings, source.args, source.collab_args, source.base_vectors = settings, args, CollabArgs(), base
    texts = [item_text(meta[i]["title"], meta[i]["genres"], meta[i]["description"]) for i in item_ids]
    source.catalog = Catalog(item_ids, texts, [meta[i]["title"] for i in item_ids],
                             [meta[i]["genres"] for i in item_ids], set())
    source.split = split
    data = source.training_data(args)
    result = train_to_targets(base_model_path(), data, args, out_dir=folder, device="cpu")
    t = time.perf_counter()
    vecs = encode_texts(folder, texts, device="cpu", max_length=args.max_length)
    np.save(vec_file, vecs)
    (folder / "train.json").write_text(json.dumps({"seed": seed, "train_seconds": result.seconds,
                                                   "steps": result.steps, "embed_seconds": round(
                                                       time.perf_counter() - t, 1), **result.details}))
    return vecs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default="/tmp/newsdesk-bench-recsys")
    parser.add_argument("--vectors", default=None, help="cache file of the base vectors (.npz): read when it "
                        "exists, else written from the home's vectors or a fresh embedding of items.csv")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n-cold", type=int, default=300)
    parser.add_argument("--blends", default="3:1:730,3:1:730:0.75", help="gamma:new-item-slots:popularity-window-days"
                        "[:new-item-min-ratio] for the served ranking (window 0: all-time popularity)")
    parser.add_argument("--tuned-blends", default=None, help="blends for the tuned vectors (default: --blends)")
    parser.add_argument("--train-tuned", action="store_true")
    parser.add_argument("--tuned-seeds", default=None, help="seeds that get a tuned encoder (default: all)")
    parser.add_argument("--out", default=str(RESULTS / "recsys_cold.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from recsys.offline import cold_item_split

    home = Path(args.home)
    settings, item_ids, base, meta, train, dev = load(home, args.vectors)
    described = {i for i, r in meta.items() if (r.get("description") or "").strip()}
    blends = _blends(args.blends)
    tuned_blends = _blends(args.tuned_blends or args.blends)
    result = {"command": "python " + " ".join(sys.argv), "load_average_start": list(os.getloadavg()), "seeds": []}
    for seed in [int(s) for s in args.seeds.split(",")]:
        split = cold_item_split(train, dev, described, n_items=args.n_cold, seed=seed)
        snap = snapshot(split, item_ids, base, meta, "served, base map")
        rows = {**baselines(split, item_ids, snap), **served(split, snap, blends, "served, base map")}
        if args.train_tuned and (args.tuned_seeds is None or str(seed) in args.tuned_seeds.split(",")):
            vecs = train_tuned(settings, split, item_ids, meta, base, seed, home / f"tuned-seed{seed}")
            rows.update(served(split, snapshot(split, item_ids, vecs, meta, "served, tuned encoder"), tuned_blends,
                               "served, tuned encoder"))
        result["seeds"].append({"split": split.summary(), "methods": rows})
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        result["load_average_end"] = list(os.getloadavg())
        out.with_suffix(".tmp").write_text(json.dumps(result, indent=2))
        os.replace(out.with_suffix(".tmp"), out)
    methods = list(result["seeds"][0]["methods"])
    seeds = len(result["seeds"])
    print(f"\n{'method':80s} {'Recall@10':>10s} {'NDCG@10':>9s} {'new-item hit':>13s}   (mean over {seeds}"
          f" seeds; per seed)")
    for m in methods:
        vals = [s["methods"][m] for s in result["seeds"] if m in s["methods"]]
        r = np.mean([v["recall@10"] for v in vals])
        n = np.mean([v["ndcg@10"] for v in vals])
        h = np.mean([v["new_item_hit_rate"] for v in vals])
        per_seed = " ".join(f"{v['recall@10']:.4f}/{v['new_item_hit_rate']:.4f}" for v in vals)
        print(f"{m:80s} {r:10.4f} {n:9.4f} {h:13.4f}   {per_seed}")


if __name__ == "__main__":
    main()
