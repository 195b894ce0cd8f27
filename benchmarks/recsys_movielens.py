"""recsys benchmark: MovieLens dev quality side by side, serving latency, FAISS at 100k/1M synthetic vectors.

Usage (from the repo root):
    nice -n 10 .venv/bin/python benchmarks/recsys_movielens.py [--home /tmp/newsdesk-bench-recsys]
        [--tuned PATH_OR_VERSION] [--faiss-sizes 100000,1000000] [--skip-faiss]

Quality: items and train interactions are imported into a throwaway NEWSDESK_HOME (kept between runs so the base
embeddings are computed once), the index is built, and every method ranks all items for each dev user with a
positive (rating >= 4), excluding the user's train items. Prints tables and writes benchmarks/results/recsys_movielens.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsdesk import db
from newsdesk.settings import Settings

DATA = ROOT.parent / "shared" / "data" / "recsys" / "movielens"
RESULTS = ROOT / "benchmarks" / "results"
K = 10
log = logging.getLogger("bench")


def read_ratings(path: Path) -> list[tuple[str, str, float]]:
    with path.open(newline="") as fh:
        return [(r["user_id"], r["item_id"], float(r["rating"])) for r in csv.DictReader(fh)]


def prepare(home: Path) -> tuple[Settings, dict]:
    """Import MovieLens items + train interactions and build the index (re-uses an existing home)."""
    from recsys import service

    settings = Settings.load(env={}, home=home, device="cpu")
    settings.ensure_dirs()
    db.upgrade(settings.database_url)
    timings = {}
    with db.session_scope(settings.database_url) as session:
        t = time.perf_counter()
        service.import_catalog(session, [DATA / "items.csv"])
        timings["import_items_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        service.import_interactions(session, [DATA / "interactions_train.csv"])
        timings["import_interactions_s"] = round(time.perf_counter() - t, 2)
    with db.session_scope(settings.database_url) as session:
        status = service.rebuild_index(session, settings)
    timings["index_build_s"] = status.seconds
    timings["index"] = status.to_dict()
    return settings, timings


def evaluate_scores(score_fn, users: list[str], seen: dict[str, set[str]], relevant: dict[str, set[str]],
                    item_ids: list[str], known: set[str]) -> dict:
    """Metrics for a full-catalog scorer `score_fn(user) -> scores aligned with item_ids`."""
    from recsys.evaluate import evaluate_ranker

    pos = {i: n for n, i in enumerate(item_ids)}

    def rank(user: str, _events, k: int) -> list[str]:
        scores = np.asarray(score_fn(user), dtype=np.float64).copy()
        scores[[pos[i] for i in seen.get(user, ()) if i in pos]] = -np.inf
        top = np.argpartition(-scores, k)[:k]
        return [item_ids[t] for t in top[np.argsort(-scores[top], kind="stable")]]

    return evaluate_ranker(rank, {u: relevant[u] for u in users}, {}, K, item_ids, known)


def quality(settings: Settings, tuned: str | None) -> tuple[list[dict], dict]:
    from recsys.collab import ease_weights
    from recsys.embed import load_vectors
    from recsys.evaluate import evaluate_ranker, histories
    from recsys.recommender import get_recommender

    train = read_ratings(DATA / "interactions_train.csv")
    dev = read_ratings(DATA / "interactions_dev.csv")
    with db.session_scope(settings.database_url) as session:
        item_ids, base = load_vectors(session, "base")
        history = histories(session)
    pos = {i: n for n, i in enumerate(item_ids)}
    seen, liked = defaultdict(set), defaultdict(list)
    for u, i, r in train:
        seen[u].add(i)
        if r >= 4.0:
            liked[u].append(i)
    relevant = defaultdict(set)
    for u, i, r in dev:
        if r >= 4.0:
            relevant[u].add(i)
    users = sorted(relevant)
    known = {i for _, i, _ in train}
    counts = np.zeros(len(item_ids))
    for u, items in liked.items():
        for i in items:
            counts[pos[i]] += 1
    rows = []

    def add(name: str, metrics: dict, note: str = "") -> None:
        rows.append({"method": name, **metrics, "note": note})
        log.info("%-34s %s", name, metrics)

    add("most-popular", evaluate_scores(lambda u: counts, users, seen, relevant, item_ids, known))

    def mean_profile(vectors: np.ndarray):
        def score(u: str) -> np.ndarray:
            if not liked.get(u):
                return counts / counts.max() * 1e-3  # no liked item: popularity order
            return vectors @ vectors[[pos[i] for i in liked[u]]].mean(axis=0)
        return score

    add("base encoder (mean profile)", evaluate_scores(mean_profile(base), users, seen, relevant, item_ids, known))
    tuned_row = tuned_vectors(tuned, settings, item_ids)
    if tuned_row is not None:
        add("behaviour-tuned encoder (mean profile)",
            evaluate_scores(mean_profile(tuned_row[1]), users, seen, relevant, item_ids, known), tuned_row[0])
    else:
        rows.append({"method": "behaviour-tuned encoder (mean profile)", "note": "no tuned recsys version available"})
    liked_pairs = np.array([(int(u), pos[i]) for u, items in liked.items() for i in items])
    active = np.unique(liked_pairs[:, 1])
    col = {a: n for n, a in enumerate(active)}
    b = ease_weights(np.column_stack([liked_pairs[:, 0], [col[p] for p in liked_pairs[:, 1]]]), len(active), 250.0)

    def ease(u: str) -> np.ndarray:
        out = np.zeros(len(item_ids))
        hist = [col[pos[i]] for i in liked.get(u, [])]
        if hist:
            out[active] = b[hist].sum(axis=0)
        return out + counts / counts.max() * 1e-6  # ties (users without likes) broken by popularity

    add("EASE (lambda=250, positives)", evaluate_scores(ease, users, seen, relevant, item_ids, known))
    recommender = get_recommender(settings)
    ours = {}
    from recsys.rank import RankParams
    served = recommender.params
    variants = [("ours: served (map + MMR + popularity)", served),
                ("ours: served + 1 new-item slot", RankParams(**{**served.__dict__, "new_item_slots": 1})),
                ("ours: map only (no MMR/popularity/slot)",
                 RankParams(**{**served.__dict__, "mmr_lambda": 1.0, "popularity_weight": 0.0,
                               "cluster_weight": 0.0, "new_item_slots": 0}))]
    for name, params in variants:
        recommender.params = params

        def rank(_u, events, k):
            return [s.item_id for s in recommender.recommend_events(events, k)]

        ours[name] = evaluate_ranker(rank, {u: relevant[u] for u in users}, history, K, item_ids, known)
        add(name, ours[name])
    recommender.params = variants[0][1]
    return rows, {"users": len(users), "items": len(item_ids), "new_items_in_dev": len({i for u in users
                                                                                     for i in relevant[u]} - known)}


def tuned_vectors(tuned: str | None, settings: Settings, item_ids: list[str]):
    """(label, vectors) of the behaviour-tuned encoder: a folder path or the current recsys version, else None."""
    from finetune.service import encoder_path
    from recsys.embed import embed_stale, load_vectors

    folder = None
    if tuned and Path(tuned).is_dir():
        folder, label = Path(tuned), f"folder {tuned}"
    else:
        with db.session_scope(settings.database_url) as session:
            version, path = encoder_path(session, settings, "recsys")
        if version:
            folder, label = path, f"version {version}"
    if folder is None:
        return None
    from newsdesk.encoders import load_sentence_encoder

    encoder = load_sentence_encoder(folder, device="cpu")
    tag = "bench-tuned"
    with db.session_scope(settings.database_url) as session:
        # vectors for the tuned encoder go to a separate scratch database so the served base vectors stay
        ids, vecs = load_vectors(session, tag)
    if len(ids) != len(item_ids):
        scratch = settings.replace(database_url=f"sqlite:///{settings.home / 'tuned.db'}")
        db.upgrade(scratch.database_url)
        with db.session_scope(scratch.database_url) as session:
            from recsys import service
            service.import_catalog(session, [DATA / "items.csv"])
            embed_stale(session, scratch, encoder=encoder, model_version=tag)
            ids, vecs = load_vectors(session, tag)
    assert ids == item_ids
    return label, vecs


def serving_latency(settings: Settings, calls: int = 600) -> dict:
    """p50/p99 of one `recommend_for_user` call (history query + ranking + item rows) on the MovieLens catalog."""
    from recsys import service

    users = [str(u) for u in range(1, 672)]
    out = {}
    with db.session_scope(settings.database_url) as session:
        for u in users[:20]:
            service.recommend_for_user(session, settings, u, K)
        times, cpu = [], []
        for n in range(calls):
            t, c = time.perf_counter(), time.process_time()
            service.recommend_for_user(session, settings, users[n % len(users)], K)
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
        cold = []
        for n in range(100):
            t = time.perf_counter()
            service.recommend_for_user(session, settings, f"nobody-{n}", K)
            cold.append((time.perf_counter() - t) * 1000)
    out["recommend_ms"] = {"p50": round(float(np.percentile(times, 50)), 2),
                           "p99": round(float(np.percentile(times, 99)), 2), "calls": calls}
    # CPU time of the calling process: what one call costs regardless of how busy the machine is
    out["recommend_cpu_ms"] = {"p50": round(float(np.percentile(cpu, 50)), 2),
                               "p99": round(float(np.percentile(cpu, 99)), 2)}
    out["load_average"] = list(os.getloadavg())
    out["cold_start_ms"] = {"p50": round(float(np.percentile(cold, 50)), 2),
                            "p99": round(float(np.percentile(cold, 99)), 2), "calls": len(cold)}
    return out


def synthetic(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors (2,000 centres + noise), closer to real embeddings than uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        out[lo:hi] = centres[rng.integers(0, 2000, hi - lo)] + rng.normal(scale=0.6, size=(hi - lo, dim))
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def _paired_latency(fn_a, fn_b, queries: np.ndarray) -> tuple[dict, dict]:
    """Per-query latency of two search functions, interleaved query by query so both see the same machine load."""
    times: tuple[list[float], list[float]] = ([], [])
    for q in queries:
        for fn, out in ((fn_a, times[0]), (fn_b, times[1])):
            t = time.perf_counter()
            fn(q[None, :])
            out.append((time.perf_counter() - t) * 1000)
    return tuple({"p50_ms": round(float(np.percentile(t, 50)), 3), "p99_ms": round(float(np.percentile(t, 99)), 3)}
                 for t in times)


def faiss_bench(n: int, dim: int = 384, nq: int = 200, hnsw: bool = True) -> dict:
    """Flat vs HNSW through ItemIndex, and raw FAISS on the same index for the wrapper's overhead."""
    import faiss

    from recsys.index import ItemIndex
    from recsys.recommender import single_threaded

    data = synthetic(n + nq, dim)
    base, queries = data[:n], data[n:]
    ids = [f"x{i}" for i in range(n)]
    out = {"n": n, "dim": dim, "queries": nq}
    truth = None
    for kind in ("flat", "hnsw") if hnsw else ("flat",):
        t = time.perf_counter()
        index = ItemIndex(dim, kind)
        for lo in range(0, n, 100_000):
            index.add(ids[lo:lo + 100_000], base[lo:lo + 100_000])
        build = time.perf_counter() - t
        raw = index._cpu  # the IndexIDMap2 the wrapper searches
        _, labels = raw.search(queries, K)
        if truth is None:
            truth = labels
        recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(labels, truth)]))
        with single_threaded():  # as served: one query per call, no thread spin-up (see recsys.recommender)
            wrapper, plain = _paired_latency(lambda q, ix=index: ix.search(q, K), lambda q, r=raw: r.search(q, K),
                                             queries)
        batch_start = time.perf_counter()
        raw.search(queries, K)  # all queries in one call, FAISS's own threads
        batch_ms = (time.perf_counter() - batch_start) * 1000 / len(queries)
        out[kind] = {"build_s": round(build, 2), "recall@10_vs_flat": round(recall, 4), "wrapper": wrapper,
                     "raw_faiss": plain, "overhead_p50_ms": round(wrapper["p50_ms"] - plain["p50_ms"], 3),
                     "batched_ms_per_query": round(batch_ms, 3)}
        log.info("faiss n=%d %s: %s", n, kind, out[kind])
        del index, raw
    out["faiss_threads"] = faiss.omp_get_max_threads()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default="/tmp/newsdesk-bench-recsys")
    parser.add_argument("--tuned", default=None, help="behaviour-tuned encoder folder (default: current version)")
    parser.add_argument("--faiss-sizes", default="100000,1000000")
    parser.add_argument("--skip-faiss", action="store_true")
    parser.add_argument("--hnsw-max", type=int, default=1_000_000, help="skip HNSW builds above this many vectors")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--faiss-only", action="store_true", help="only the synthetic FAISS section")
    parser.add_argument("--out", default=str(RESULTS / "recsys_movielens.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result: dict = {"machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
                    "command": "python " + " ".join(sys.argv)}
    if not args.faiss_only:
        settings, timings = prepare(Path(args.home))
        result["pipeline"] = timings
        if not args.skip_quality:
            result["quality"], result["dev"] = quality(settings, args.tuned)
        result["serving"] = serving_latency(settings)
    if not args.skip_faiss:
        result["faiss"] = [faiss_bench(int(n), hnsw=int(n) <= args.hnsw_max) for n in args.faiss_sizes.split(",") if n]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out)
    print_tables(result)


def print_tables(result: dict) -> None:
    if "quality" in result:
        print(f"\nMovieLens dev ({result['dev']['users']} users, {result['dev']['items']} items), K={K}")
        print(f"{'method':42s} {'Recall@10':>9s} {'NDCG@10':>8s} {'MRR@10':>7s} {'cover':>6s} {'new-item hit':>12s}")
        for r in result["quality"]:
            if "users" not in r:
                print(f"{r['method']:42s} ({r['note']})")
                continue
            print(f"{r['method']:42s} {r['recall@10']:9.4f} {r['ndcg@10']:8.4f} {r['mrr@10']:7.4f} "
                  f"{r['coverage']:6.3f} {r['new_item_hit_rate']:12.4f}")
    s = result.get("serving")
    if s:
        print(f"\nrecommend_for_user on {result['pipeline']['index']['items']} items: p50 {s['recommend_ms']['p50']} ms, "
              f"p99 {s['recommend_ms']['p99']} ms (CPU time p50 {s['recommend_cpu_ms']['p50']} ms, p99 "
              f"{s['recommend_cpu_ms']['p99']} ms; load average {s['load_average'][0]:.1f}); cold start p50 "
              f"{s['cold_start_ms']['p50']} ms, p99 {s['cold_start_ms']['p99']} ms")
    for f in result.get("faiss", []):
        for kind in [k for k in ("flat", "hnsw") if k in f]:
            r = f[kind]
            print(f"FAISS n={f['n']:>9,d} {kind:5s}: build {r['build_s']:8.1f}s  recall@10 {r['recall@10_vs_flat']:.3f}  "
                  f"wrapper p50 {r['wrapper']['p50_ms']:.3f} ms p99 {r['wrapper']['p99_ms']:.3f} ms  "
                  f"raw p50 {r['raw_faiss']['p50_ms']:.3f} ms  overhead {r['overhead_p50_ms']:.3f} ms  "
                  f"batched {r['batched_ms_per_query']:.3f} ms/query")


if __name__ == "__main__":
    main()
