"""Collaborative model past the dense EASE: fit time, peak memory and Recall@10 at 10k, 50k and 200k items.

Usage (from the repo root):
    nice -n 5 .venv/bin/python benchmarks/recsys_scale.py [--sizes 10000,50000,200000] [--eval-users 2000]
        [--factors 128] [--dense-limit 10000]

Synthetic catalogs with a known structure (no public news log of 200k items ships here): items belong to topics
(sizes and item popularity Zipf-distributed), each user follows one to three topics and likes ~25 items, 80% from
their topics and 20% from the whole catalog by popularity; text vectors (384-d) are the topic's direction plus
noise, so the text map has something to learn. Two positives of each of `--eval-users` users are held out;
Recall@10 ranks the whole catalog with the user's train items excluded, by the collaborative score x_u·B alone
(the model under test; the served ranking adds the text map, MMR and freshness on top).

Methods: `recsys.collab.fit_collab_map` as served (dense EASE up to the dense limit, implicit ALS folded in above
it) and, at every size, both forced: dense EASE where its three n x n float64 matrices fit in memory (else "n/a",
with what it would need) and the factorised model. Each fit runs in a forked child process: peak memory is the
child's high-water mark of resident memory during the fit, above its resident memory before it.
Prints a table and writes benchmarks/results/recsys_scale.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
K = 10
DIM = 384
log = logging.getLogger("bench")


def synthetic(n_items: int, seed: int = 0) -> dict:
    """Positives (user, item) pairs, text vectors and a held-out split with a known topic structure (vectorised:
    every like is drawn at once by inverse-CDF sampling)."""
    rng = np.random.default_rng(seed)
    n_users = max(5_000, n_items // 2)
    n_topics = max(20, n_items // 500)
    topic_p = rng.zipf(1.3, n_topics).astype(float) + 5
    topic_p = np.minimum(topic_p, np.quantile(topic_p, 0.95))  # no topic holds most of the catalog
    topic_p /= topic_p.sum()
    topic_of = np.sort(rng.choice(n_topics, size=n_items, p=topic_p))  # items grouped by topic
    popularity = (1.0 / np.arange(1, n_items + 1) ** 0.8)[rng.permutation(n_items)]
    directions = rng.normal(size=(n_topics, DIM))
    vectors = directions[topic_of] + rng.normal(scale=1.5, size=(n_items, DIM))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    # within-topic CDF shifted by the topic number: searchsorted(cdf, t + u) draws an item of topic t
    cdf = np.empty(n_items)
    for t, (lo, hi) in enumerate(zip(np.searchsorted(topic_of, np.arange(n_topics)),
                                     np.searchsorted(topic_of, np.arange(n_topics), side="right"))):
        if hi > lo:
            cdf[lo:hi] = t + np.cumsum(popularity[lo:hi]) / popularity[lo:hi].sum()
    global_cdf = np.cumsum(popularity) / popularity.sum()
    n_likes = rng.poisson(20, n_users) + 5
    user_topics = rng.choice(n_topics, size=(n_users, 3), p=topic_p)
    n_topics_of = rng.integers(1, 4, n_users)
    user = np.repeat(np.arange(n_users), n_likes)
    own = rng.random(len(user)) < 0.8
    pick = user_topics[user, (rng.random(len(user)) * n_topics_of[user]).astype(int)]
    items = np.where(own, np.searchsorted(cdf, pick + rng.random(len(user)) * 0.999999),
                     np.searchsorted(global_cdf, rng.random(len(user))))
    items = np.minimum(items, n_items - 1)
    keys = np.unique(user.astype(np.int64) * n_items + items)
    pairs = np.column_stack([keys // n_items, keys % n_items])
    return {"pairs": pairs, "vectors": vectors, "n_users": n_users, "n_topics": n_topics, "n_items": n_items}


def split(pairs: np.ndarray, eval_users: int, seed: int = 1) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """(train pairs, user -> held-out items): two positives of `eval_users` users with at least five."""
    rng = np.random.default_rng(seed)
    order = np.argsort(pairs[:, 0], kind="stable")
    pairs = pairs[order]
    starts = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0]])
    ends = np.r_[starts[1:], len(pairs)]
    eligible = [i for i in range(len(starts)) if ends[i] - starts[i] >= 5]
    chosen = rng.choice(eligible, size=min(eval_users, len(eligible)), replace=False)
    drop = np.zeros(len(pairs), dtype=bool)
    test = {}
    for i in chosen:
        rows = rng.choice(np.arange(starts[i], ends[i]), size=2, replace=False)
        drop[rows] = True
        test[int(pairs[starts[i], 0])] = pairs[rows, 1]
    return pairs[~drop], test


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def recall_at_k(cmap, train: np.ndarray, test: dict[int, np.ndarray], item_ids: list[str]) -> tuple[float, float]:
    """(mean Recall@10 over the held-out users, ms per user of one served-style score) scoring every item the map
    covers by x_u·B; users are scored in blocks (one matrix product each), and 50 users one at a time through
    `weighted_rows`, as a request does."""
    from recsys.collab import Factored, weighted_rows

    column = np.full(len(item_ids), -1, dtype=np.int64)
    column[[int(i.removeprefix("i")) for i in cmap.item_ids]] = np.arange(len(cmap.item_ids))
    ids = np.asarray([int(i.removeprefix("i")) for i in cmap.item_ids])
    users = np.asarray(sorted(test))
    mask = np.isin(train[:, 0], users) & (column[train[:, 1]] >= 0)
    sub = train[mask]
    history = {int(u): column[sub[sub[:, 0] == u, 1]] for u in users}
    hits, per_user = [], []
    for start in range(0, len(users), 100):
        block = users[start:start + 100]
        if isinstance(cmap.ease, Factored):
            left = np.stack([cmap.ease.left[history[int(u)]].sum(axis=0) for u in block]) @ cmap.ease.core
            scores = left @ cmap.ease.right.T
        else:
            scores = np.stack([cmap.ease[history[int(u)]].sum(axis=0) for u in block])
        for row, u in enumerate(block):
            s = np.asarray(scores[row], dtype=np.float64)
            s[history[int(u)]] = -np.inf
            top = ids[np.argpartition(-s, K)[:K]]
            held = test[int(u)]
            hits.append(len(set(top.tolist()) & set(held.tolist())) / min(K, len(held)))
    for u in users[:50]:
        rows = history[int(u)]
        t0 = time.perf_counter()
        s = weighted_rows(cmap.ease, rows, np.ones(len(rows)))
        np.argpartition(-s, K)[:K]
        per_user.append(time.perf_counter() - t0)
    return float(np.mean(hits)), float(np.median(per_user) * 1000)


def _fit_child(conn, data: dict, train: np.ndarray, test: dict, method: str, args_kw: dict) -> None:
    from recsys.collab import CollabArgs, fit_collab_map

    item_ids = [f"i{i}" for i in range(data["n_items"])]
    str_pairs = [(f"u{u}", f"i{i}") for u, i in train]
    before = _rss_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    start = time.perf_counter()
    cmap = fit_collab_map(str_pairs, item_ids, data["vectors"], CollabArgs(**args_kw))
    fit_s = time.perf_counter() - start
    peak = _rss_kb("VmHWM")
    recall, per_user_ms = recall_at_k(cmap, train, test, item_ids)
    conn.send({"method": method, "model": cmap.stats["model"], "items": cmap.stats["items"], "fit_s": round(fit_s, 1),
               "peak_mb": round((peak - before) / 1024), "recall@10": round(recall, 4),
               "score_ms_per_user": round(per_user_ms, 2)})
    conn.close()


def run_fit(data: dict, train: np.ndarray, test: dict, method: str, args_kw: dict) -> dict:
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_fit_child, args=(child, data, train, test, method, args_kw))
    proc.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError:
        result = {"method": method, "error": f"child exited {proc.exitcode}"}
    proc.join()
    return result


def available_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,50000,200000")
    parser.add_argument("--eval-users", type=int, default=2000)
    parser.add_argument("--factors", type=int, default=None, help="ALS factors (default: CollabArgs')")
    parser.add_argument("--dense-limit", type=int, default=None, help="served switch (default: CollabArgs')")
    parser.add_argument("--skip-dense", action="store_true", help="fit only the factorised model")
    parser.add_argument("--out", default=str(RESULTS / "recsys_scale.json"))
    opts = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from recsys.collab import CollabArgs

    base_kw = {} if opts.factors is None else {"als_factors": opts.factors}
    limit = opts.dense_limit if opts.dense_limit is not None else CollabArgs().max_items
    results = []
    for n in (int(s) for s in opts.sizes.split(",")):
        start = time.perf_counter()
        data = synthetic(n)
        train, test = split(data["pairs"], opts.eval_users)
        info = {"items": n, "users": data["n_users"], "topics": data["n_topics"], "train_positives": len(train),
                "items_with_positives": int(len(np.unique(train[:, 1]))), "eval_users": len(test),
                "generate_s": round(time.perf_counter() - start, 1)}
        log.info("catalog %s", info)
        dense_need_mb = 3 * 8 * info["items_with_positives"] ** 2 // 2**20
        rows = []
        if opts.skip_dense:
            rows.append({"method": "dense EASE", "error": "skipped (--skip-dense)"})
        elif dense_need_mb < 0.6 * available_mb():
            rows.append(run_fit(data, train, test, "dense EASE", {**base_kw, "max_items": 10**9}))
        else:
            rows.append({"method": "dense EASE", "error": f"needs ~{dense_need_mb / 1024:.0f} GB "
                                                          f"({available_mb() / 1024:.0f} GB available)"})
        rows.append(run_fit(data, train, test, "ALS (factorised)", {**base_kw, "max_items": 0}))
        served = "ease" if info["items_with_positives"] <= limit else "als"
        for row in rows:
            row["served"] = row.get("model") == served
        results.append({**info, "methods": rows})
    header = f"{'items':>8} {'method':<18} {'served':>6} {'fit s':>7} {'peak MB':>8} {'Recall@10':>9} {'ms/user':>8}"
    print(header)
    print("-" * len(header))
    for res in results:
        for row in res["methods"]:
            if "error" in row:
                print(f"{res['items']:>8} {row['method']:<18} {'':>6} {'n/a':>7} {'':>8} {'':>9} {'':>8}  "
                      f"{row['error']}")
            else:
                print(f"{res['items']:>8} {row['method']:<18} {'yes' if row['served'] else '':>6} "
                      f"{row['fit_s']:>7.1f} {row['peak_mb']:>8} {row['recall@10']:>9.4f} "
                      f"{row['score_ms_per_user']:>8.2f}")
    out = {"command": " ".join(sys.argv), "load_average": os.getloadavg(), "cpus": os.cpu_count(),
           "results": results}
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
