"""CPU inference benchmark (#19): plain sentence-transformers against our classifier and catalog-encoder paths.

Usage (from the repo root):
    nice -n 5 .venv/bin/python benchmarks/inference_cpu.py [--model VERSION_FOLDER] [--tweets 3000] [--items 2000]
        [--rounds 2] [--work DIR] [--out benchmarks/results/inference_cpu.json]

--model: a classifier version folder (NEWSDESK_HOME/models/sentiment/<version>); without it a "probe" is built once
in --work: the base MiniLM, frozen, with a logistic-regression sentiment head fitted on PhraseBank train (a real
classifier of this encoder, with no fine-tuning: say so beside its figures).
Classifier: the first --tweets StockNet tweets through `TextClassifier.predict` (tokenise, length-sorted batches of
64, encoder + heads, softmax) on every path: throughput (best of --rounds, paths interleaved), label agreement with
torch float32 on the tweets and macro-F1 on PhraseBank dev; beside it plain sentence-transformers `encode` of the same
tweets with the base model, and the choice `finetune.serving` makes at load. Catalog: the first --items MovieLens
item texts through the catalog encoder's paths against plain `encode`, with the share of float32's 10 nearest
neighbours kept. "peak": the share of this CPU's float32 peak (a 2048^3 float32 GEMM measured here, all cores)
reached in encoder FLOPs (24·d² per token per layer for the projections and the FFN, plus 4·n·d per token per
layer for attention, actual tokens, no padding).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch

from finetune.checkset import save_check_set
from finetune.classifier import TextClassifier
from finetune.data import LABELS, read_labelled
from finetune.evaluate import classification_report
from finetune.export import INT8_CONFIGS, runtime_missing
from finetune.inference import cache_dir, machine_signature, neighbour_quality
from finetune.serving import classifier_engine, encoder_engine, select_classifier_path
from newsdesk.device import native_bf16
from newsdesk.encoders import base_model_path, load_sentence_encoder
from recsys.text import item_text

DATA = ROOT.parent / "shared" / "data"
STREAM = DATA / "stream" / "stocknet_tweets_stream.jsonl.gz"
PB_TRAIN, PB_DEV = DATA / "sentiment" / "phrasebank_train.csv", DATA / "sentiment" / "phrasebank_dev.csv"
ITEMS = DATA / "recsys" / "movielens" / "items.csv"
RESULTS = ROOT / "benchmarks" / "results" / "inference_cpu.json"


def read_tweets(n: int) -> list[str]:
    texts = []
    with gzip.open(STREAM, "rt", encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) >= n:
                break
    return texts


def read_items(n: int) -> list[str]:
    with ITEMS.open(encoding="utf-8", newline="") as f:
        rows = [r for _, r in zip(range(n), csv.DictReader(f))]
    return [item_text(r["title"], r.get("genres") or "", r.get("description") or "") for r in rows]


def gemm_peak(seconds: float = 3.0) -> float:
    """GFLOP/s of a 2048^3 float32 matmul on all cores (best of repeated calls for `seconds`)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def encoder_flops(tokenizer: Any, texts: list[str], max_length: int, layers: int = 6, d: int = 384) -> float:
    """Useful encoder FLOPs for `texts` (no padding): projections + FFN 24·d² and attention 4·n·d per token/layer."""
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    return float(sum(layers * (24 * d * d * n + 4 * n * n * d) for n in lengths))


def build_probe(folder: Path, rows: int) -> Path:
    """The base encoder, frozen, with a logistic-regression sentiment head on the mean-pooled vectors of the first
    `rows` PhraseBank train rows (all with 0); PhraseBank dev is its check set."""
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    from finetune.model import ClassifierModel, pooled_vectors, save_classifier_model

    if (folder / "classifier.json").is_file():
        return folder
    base = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    model = ClassifierModel(AutoModel.from_pretrained(str(base), local_files_only=True), {"sentiment": LABELS}).eval()
    train = read_labelled([PB_TRAIN])
    train = train[:rows] if rows else train
    x = pooled_vectors(model, tokenizer, [r.text for r in train], 64).numpy()
    lr = LogisticRegression(max_iter=2000, C=10.0).fit(x, [LABELS.index(r.label) for r in train])
    with torch.no_grad():
        model.heads["sentiment"].weight.copy_(torch.tensor(lr.coef_, dtype=torch.float32))
        model.heads["sentiment"].bias.copy_(torch.tensor(lr.intercept_, dtype=torch.float32))
    save_classifier_model(model, tokenizer, folder, max_length=64)
    save_check_set(folder, {"sentiment": read_labelled([PB_DEV])})
    return folder


def classifier_paths(clf: TextClassifier, cache: Path) -> dict[str, Any]:
    names = ["torch-float32"] + (["torch-bfloat16"] if native_bf16("cpu") else [])
    if not runtime_missing():
        names += ["onnx-float32"] + [f"onnx-{c.name}" for c in INT8_CONFIGS]
    return {name: classifier_engine(clf, cache, name) for name in names}


def bench_classifier(args: argparse.Namespace, tweets: list[str], peak: float) -> dict[str, Any]:
    folder = Path(args.model) if args.model else build_probe(Path(args.work) / "models" / "sentiment" / "probe",
                                                             args.probe_rows)
    clf = TextClassifier(folder, version=folder.name)
    home = Path(args.work) / "home"
    selection = select_classifier_path(clf, home, "auto")  # what serving would choose here (cached after once)
    engines = classifier_paths(clf, cache_dir(home, folder))
    dev = read_labelled([PB_DEV])
    flops = encoder_flops(clf.tokenizer, tweets, clf.max_length)
    plain = load_sentence_encoder(base_model_path(), device="cpu")
    best: dict[str, float] = {}
    labels: dict[str, list[str]] = {}
    for _ in range(args.rounds):  # interleaved, best of rounds: the other processes' load hits every path alike
        start = time.perf_counter()
        plain.encode(tweets, batch_size=64, show_progress_bar=False)
        best["sentence-transformers encode"] = max(best.get("sentence-transformers encode", 0.0),
                                                   len(tweets) / (time.perf_counter() - start))
        for name, engine in engines.items():
            clf.use(engine)
            start = time.perf_counter()
            preds = clf.predict(tweets, batch_size=64)
            best[name] = max(best.get(name, 0.0), len(tweets) / (time.perf_counter() - start))
            labels[name] = [p.label for p in preds]
    rows = [{"path": "sentence-transformers encode", "texts_per_s": round(best.pop("sentence-transformers encode"),
                                                                          1), "note": "base model, embeddings only"}]
    checked = {c.path: c.quality.get("sentiment", {}) for c in (selection.checks if selection else [])}
    for name, engine in engines.items():
        if not args.model and "macro_f1" in checked.get(name, {}):  # the probe's check set is PhraseBank dev
            f1 = checked[name]["macro_f1"]
        else:
            clf.use(engine)
            f1 = classification_report([r.label for r in dev], [p.label for p in clf.predict([r.text for r in dev])],
                                       LABELS)["macro_f1"]
        rows.append({"path": name, "texts_per_s": round(best[name], 1), "macro_f1": f1,
                     "agreement": round(float(np.mean([a == b for a, b in zip(labels[name],
                                                                             labels["torch-float32"])])), 4)})
    base = rows[0]["texts_per_s"]
    for row in rows:
        row["x_plain"] = round(row["texts_per_s"] / base, 2)
        row["peak"] = round(flops / len(tweets) * row["texts_per_s"] / 1e9 / peak, 3)
    return {"model": str(folder), "probe": not args.model, "tweets": len(tweets), "rows": rows,
            "chosen": selection.chosen if selection else "torch", "dev_rows": len(dev),
            "checks": [c.__dict__ for c in selection.checks] if selection else []}


def bench_catalog(args: argparse.Namespace, items: list[str], peak: float) -> dict[str, Any]:
    folder = base_model_path()
    model = load_sentence_encoder(folder, device="cpu")
    cache = cache_dir(Path(args.work) / "home", folder)
    names = ["torch-float32"] + (["torch-bfloat16"] if native_bf16("cpu") else [])
    if not runtime_missing():
        names += ["onnx-float32"] + [f"onnx-{c.name}" for c in INT8_CONFIGS]
    engines = {name: encoder_engine(model, folder, cache, name) for name in names}
    flops = encoder_flops(model.tokenizer, items, int(model.max_seq_length))
    best: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        start = time.perf_counter()
        model.encode(items, batch_size=64, show_progress_bar=False, normalize_embeddings=True)
        best["sentence-transformers encode"] = max(best.get("sentence-transformers encode", 0.0),
                                                   len(items) / (time.perf_counter() - start))
        for name, engine in engines.items():
            start = time.perf_counter()
            vectors[name] = engine.encode(items, batch_size=64, normalize_embeddings=True)
            best[name] = max(best.get(name, 0.0), len(items) / (time.perf_counter() - start))
    base = best["sentence-transformers encode"]
    rows = [{"path": "sentence-transformers encode", "texts_per_s": round(base, 1)}]
    for name in names:
        _, _, figures = neighbour_quality(vectors["torch-float32"], vectors[name])
        rows.append({"path": name, "texts_per_s": round(best[name], 1), **figures})
    for row in rows:
        row["x_plain"] = round(row["texts_per_s"] / base, 2)
        row["peak"] = round(flops / len(items) * row["texts_per_s"] / 1e9 / peak, 3)
    return {"encoder": str(folder), "items": len(items), "rows": rows}


def print_table(title: str, rows: list[dict[str, Any]], quality: list[str]) -> None:
    print(f"\n{title}")
    head = ["path", "texts/s", "x plain", "peak", *quality]
    print(" | ".join(f"{h:>14}" for h in head))
    for r in rows:
        cells = [r["path"], r["texts_per_s"], r["x_plain"], f"{r['peak']:.1%}", *(r.get(q, "") for q in quality)]
        print(" | ".join(f"{c!s:>14}" for c in cells))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="", help="classifier version folder (default: the PhraseBank probe)")
    p.add_argument("--tweets", type=int, default=3000)
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--probe-rows", type=int, default=0, help="PhraseBank train rows for the probe's head (0: all)")
    p.add_argument("--work", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "newsdesk-inference-bench"))
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    load_before = os.getloadavg()
    peak = gemm_peak()
    started = time.perf_counter()
    classify = bench_classifier(args, read_tweets(args.tweets), peak)
    catalog = bench_catalog(args, read_items(args.items), peak)
    result = {"command": " ".join(["benchmarks/inference_cpu.py", *sys.argv[1:]]), "machine": machine_signature(),
              "python": platform.python_version(), "gemm_peak_gflops": round(peak, 1),
              "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in os.getloadavg()], "seconds": round(time.perf_counter() - started),
              "classifier": classify, "catalog": catalog}
    print(f"CPU {result['machine']['cpu']} ({', '.join(result['machine']['isa'])}), "
          f"{result['machine']['cores']} cores; float32 GEMM {peak:.1f} GFLOP/s; load {load_before[0]:.2f} -> "
          f"{result['load_after'][0]:.2f}")
    print_table(f"classify {classify['tweets']} StockNet tweets; macro-F1 on PhraseBank dev ({classify['dev_rows']})"
                f"{' (probe model)' if classify['probe'] else ''}; serving chose {classify['chosen']}",
                classify["rows"], ["macro_f1", "agreement"])
    print_table(f"catalog embedding, {catalog['items']} MovieLens items", catalog["rows"],
                ["neighbours_kept", "mean_cosine"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
