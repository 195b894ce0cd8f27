"""Served-ranking variants side by side on the cold-item dev protocol (seeds of the cold-item draw).

Usage (from the repo root; --vectors: the base vectors cache that benchmarks/recsys_cold.py writes):
    nice -n 2 .venv/bin/python benchmarks/recsys_cold_sweep.py --vectors /tmp/rec_cache/base_vectors.npz \
        --seeds 0,1,2 --configs '{"default": {}, "floor 0.75": {"new_item_min_ratio": 0.75}}'

Each config is a set of RankParams fields, plus two of the collaborative map's (stored with each fit):
"text_weight" (alpha, the text-map term of items with positives) and "gamma" (that of items without). Per seed, the
snapshot (EASE + ridge text map on the kept train rows) is built once and every config is evaluated with
recsys.offline.evaluate_served, the product ranking code. Prints a table (mean and per seed) and writes JSON
(default benchmarks/results/recsys_cold_sweep.json; --append adds to an existing file).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.behaviour import read_ratings_file
from recsys.offline import cold_item_split, evaluate_served, memory_snapshot
from recsys.rank import RankParams

DATA = ROOT.parent / "shared" / "data" / "recsys" / "movielens"
log = logging.getLogger("bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", required=True, help="base vectors cache (.npz with ids, vectors)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--configs", required=True, help="JSON: name -> RankParams fields (+ text_weight, gamma)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "recsys_cold_sweep.json"))
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with (DATA / "items.csv").open(newline="") as fh:
        meta = {r["item_id"]: r for r in csv.DictReader(fh)}
    train, dev = read_ratings_file(DATA / "interactions_train.csv"), read_ratings_file(DATA / "interactions_dev.csv")
    described = {i for i, r in meta.items() if r["description"].strip()}
    stored = np.load(args.vectors)
    ids, vectors = [str(i) for i in stored["ids"]], stored["vectors"]
    configs = json.loads(args.configs)
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if args.append and out_path.exists() else {"runs": []}
    result["runs"].append({"command": "python " + " ".join(sys.argv), "load_average_start": list(os.getloadavg())})
    rows = result.setdefault("methods", {})
    for seed in [int(s) for s in args.seeds.split(",")]:
        split = cold_item_split(train, dev, described, n_items=300, seed=seed)
        snap = memory_snapshot(ids, vectors, split.train, titles=[meta[i]["title"] for i in ids],
                               categories=[meta[i]["genres"] for i in ids])
        for name, fields in configs.items():
            fields = dict(fields)
            alpha, gamma = fields.pop("text_weight", None), fields.pop("gamma", None)
            variant = snap
            if alpha is not None:
                variant = replace(variant, collab=replace(variant.collab, text_weight=alpha))
            if gamma is not None:
                variant = replace(variant, collab=replace(variant.collab, new_item_weight=gamma))
            t = time.perf_counter()
            rows.setdefault(name, {})[str(seed)] = evaluate_served(variant, split.train, split.dev,
                                                                   params=RankParams(**fields))
            log.info("seed %d, %s: %s (%.0fs)", seed, name, rows[name][str(seed)], time.perf_counter() - t)
        result["runs"][-1]["load_average_end"] = list(os.getloadavg())
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=1))
    print(f"\n{'config':60s} {'Recall@10':>10s} {'new-item hit':>13s}   per seed: recall/hit")
    for name, per in rows.items():
        vals = list(per.values())
        print(f"{name:60s} {np.mean([v['recall@10'] for v in vals]):10.4f} "
              f"{np.mean([v['new_item_hit_rate'] for v in vals]):13.4f}   "
              + " ".join(f"s{s}: {v['recall@10']:.4f}/{v['new_item_hit_rate']:.4f}" for s, v in per.items()))


if __name__ == "__main__":
    main()
