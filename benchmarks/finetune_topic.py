"""finetune benchmark: today's two-source sentiment model, a single-task topic model and the joint model, side by side.

Usage (from the repo root):
    .venv/bin/python benchmarks/finetune_topic.py [--methods sentiment,topic,multitask] [--seeds 42]
        [--epochs N] [--max-steps N] [--arg KEY=JSON] [--strip-links] [--out benchmarks/results/finetune_topic.jsonl]
    .venv/bin/python benchmarks/finetune_topic.py --table benchmarks/results/finetune_topic.jsonl
    .venv/bin/python benchmarks/finetune_topic.py --speed JOINT_FOLDER --speed-baseline SENTIMENT_FOLDER

Methods (each the product's recipe, its args class's defaults unless --epochs/--arg is given):
  sentiment  today's default two-source model: `newsdesk finetune sentiment --train phrasebank_train.csv
             --train fintweets_train.csv` (PhraseBank train + the tweets minus the tweets dev split)
  topic      a single-task topic model: `newsdesk finetune topic --train fintweets_topic_train.csv` (minus its dev)
  multitask  one joint model, a sentiment head and a topic head on one encoder, trained on all three sets:
             `newsdesk finetune multitask --sentiment-train ... --topic-train ...`
Dev splits, fixed for every run: PhraseBank dev (its own file); 10% of the tweets and 10% of the topic tweets, split
with the product's `split_dev` (stratified by label, whole groups of link-stripped normalised text, seed 0), so that
templates differing only in a t.co link never straddle train and dev. Scores: PhraseBank dev macro-F1, tweets dev
weighted F1 and macro-F1, topic dev accuracy and macro-F1. Each finished run is appended as one JSON line to --out
(a crash or a stop keeps the runs before it); the table is printed at the end.

`--speed` measures bare classification throughput (texts/s) of a joint model's `predict_tasks` (both heads, one
encoder pass) against a sentiment-only model's `predict` on the same texts, alternating rounds in one process.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from finetune.args import build_args
from finetune.data import LABELS, LabelledText, TaskData, label_set, read_labelled, split_dev
from finetune.pipeline import evaluate_folder
from newsdesk.encoders import base_model_path

DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("sentiment", "topic", "multitask")
LINK = re.compile(r"https?://\S+|www\.\S+")


def strip_links(text: str) -> str:
    """--strip-links: each link replaced by the word "http", HTML entities unescaped (measured: no better; the
    product keeps the texts as they are)."""
    return " ".join(LINK.sub(" http ", html.unescape(text)).split())


def load_splits(normalise: bool = False) -> dict[str, tuple[list[LabelledText], list[LabelledText]]]:
    """name -> (train, dev): phrasebank, tweets (sentiment) and topic, with the fixed dev splits; `normalise` passes
    every text (train and dev, after the split) through `strip_links`."""
    pb = read_labelled([DATA / "sentiment" / "phrasebank_train.csv"])
    pb_dev = read_labelled([DATA / "sentiment" / "phrasebank_dev.csv"])
    tweets = split_dev(read_labelled([DATA / "sentiment" / "fintweets_train.csv"]), 0.1, seed=0)
    topic = split_dev(read_labelled([DATA / "topic" / "fintweets_topic_train.csv"], None), 0.1, seed=0)
    splits = {"phrasebank": (pb, pb_dev), "tweets": tweets, "topic": topic}
    if normalise:
        splits = {name: tuple([LabelledText(strip_links(r.text), r.label) for r in part] for part in pair)
                  for name, pair in splits.items()}
    return splits


def run(method: str, seed: int, splits: dict[str, Any], overrides: dict[str, Any],
        keep: Path | None) -> dict[str, Any]:
    from finetune.train import train_classifier

    (pb, pb_dev), (tw, tw_dev), (tp, tp_dev) = splits["phrasebank"], splits["tweets"], splits["topic"]
    data: dict[str, TaskData] = {}
    cut = overrides.pop("_trainer_dev", 0) or None  # the Trainer's own dev evaluations only report: keep them cheap
    if method in ("sentiment", "multitask"):
        data["sentiment"] = TaskData(pb + tw, (pb_dev[:cut] + tw_dev[:cut]) if cut else pb_dev + tw_dev, LABELS)
    if method in ("topic", "multitask"):
        data["topic"] = TaskData(tp, tp_dev[:cut] if cut else tp_dev, label_set(tp))
    args = build_args(method, {"seed": seed, **overrides})  # the product's args class of the method
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-topic-") as tmp:
        out = Path(tmp) / "model"
        result = train_classifier(base_model_path(), data, args, work_dir=Path(tmp) / "work", out_dir=out,
                                  device="auto")
        scores: dict[str, Any] = {}
        if "sentiment" in data:
            scores["phrasebank_dev"] = evaluate_folder(out, "sentiment", pb_dev)
            scores["tweets_dev"] = evaluate_folder(out, "sentiment", tw_dev)
        if "topic" in data:
            scores["topic_dev"] = evaluate_folder(out, "topic", tp_dev)
        if keep is not None:
            target = keep / f"{method}-{seed}"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(out, target)
    return {"method": method, "seed": seed, "args": args.to_dict(), "train_seconds": result.train_seconds,
            "steps": result.steps, "device": result.device, "rows": result.details.get("rows"),
            "dev_history": result.details.get("dev_history"), "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()], "cpu": platform.processor() or platform.machine(),
            "scores": scores}


def print_table(runs: list[dict[str, Any]]) -> None:
    header = (f"{'method':<17} {'seed':>4} {'lr':>7} {'epochs':>6} {'PB dev mF1':>10} {'tw dev wF1':>10} "
              f"{'tw dev mF1':>10} {'topic acc':>9} {'topic mF1':>9} {'train s':>8} {'load':>5}")
    print(header)
    print("-" * len(header))

    def cell(run_: dict[str, Any], split: str, metric: str) -> str:
        value = run_["scores"].get(split, {}).get(metric)
        return f"{value:.4f}" if value is not None else "-"

    for r in runs:
        name = r["method"] + (" strip_links" if r.get("strip_links") else "")
        print(f"{name:<17} {r['seed']:>4} {r['args']['learning_rate']:>7.0e} {r['args']['epochs']:>6g} "
              f"{cell(r, 'phrasebank_dev', 'macro_f1'):>10} "
              f"{cell(r, 'tweets_dev', 'weighted_f1'):>10} {cell(r, 'tweets_dev', 'macro_f1'):>10} "
              f"{cell(r, 'topic_dev', 'accuracy'):>9} {cell(r, 'topic_dev', 'macro_f1'):>9} "
              f"{r['train_seconds']:>8.0f} {r['load_before'][0]:>5.1f}")


def speed(joint: Path, baseline: Path, n: int, rounds: int) -> dict[str, Any]:
    """texts/s of the joint model's predict_tasks (both heads) and the sentiment-only model's predict."""
    import gzip

    from finetune.classifier import TextClassifier

    with gzip.open(DATA / "stream" / "stocknet_tweets_stream.jsonl.gz", "rt", encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for _, line in zip(range(n), handle, strict=False)]
    models = {"joint predict_tasks": TextClassifier(joint, precision="auto"),
              "sentiment-only predict": TextClassifier(baseline, precision="auto")}
    calls = {"joint predict_tasks": lambda m: m.predict_tasks(texts),
             "sentiment-only predict": lambda m: m.predict(texts)}
    for name, model in models.items():  # warm-up
        calls[name](model)
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):  # alternate, so a change in the machine's load hits both alike
        for name, model in models.items():
            started = time.perf_counter()
            calls[name](model)
            seconds[name].append(time.perf_counter() - started)
    out = {name: round(n / (sum(s) / len(s)), 1) for name, s in seconds.items()}
    out["ratio"] = round(out["joint predict_tasks"] / out["sentiment-only predict"], 3)
    out.update({"texts": n, "rounds": rounds, "precision": models["joint predict_tasks"].precision,
                "load": [round(x, 2) for x in os.getloadavg()]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--epochs", type=float, default=0, help="override the recipe's epochs (0 = default)")
    parser.add_argument("--max-steps", type=int, default=-1, help="cap every fine-tune (smoke or budgeted runs)")
    parser.add_argument("--method-steps", default="", help="per-method step caps, e.g. multitask=450,sentiment=200")
    parser.add_argument("--arg", action="append", default=[], help="any ClassifierArgs field as key=json")
    parser.add_argument("--trainer-dev", type=int, default=0,
                        help="rows per dev set for the Trainer's in-run evaluations (0 = all; scores use all)")
    parser.add_argument("--strip-links", action="store_true",
                        help="pass every text through strip_links (train and dev, after the split)")
    parser.add_argument("--keep-models", default="", help="copy each trained model into this folder")
    parser.add_argument("--table", nargs="*", default=None, help="only print the table of these JSONL files")
    parser.add_argument("--speed", default="", help="joint model folder: measure classify throughput")
    parser.add_argument("--speed-baseline", default="", help="sentiment-only model folder for --speed")
    parser.add_argument("--speed-texts", type=int, default=2000)
    parser.add_argument("--speed-rounds", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "finetune_topic.jsonl"))
    opts = parser.parse_args()
    if opts.table is not None:
        print_table([json.loads(line) for f in opts.table for line in Path(f).read_text().splitlines() if line])
        return
    if opts.speed:
        result = speed(Path(opts.speed), Path(opts.speed_baseline), opts.speed_texts, opts.speed_rounds)
        print(json.dumps(result, indent=2))
        (RESULTS / "finetune_topic_speed.json").write_text(json.dumps(result, indent=2) + "\n")
        return
    overrides: dict[str, Any] = {}
    if opts.epochs:
        overrides["epochs"] = opts.epochs
    if opts.max_steps > 0:
        overrides["max_steps"] = opts.max_steps
    for pair in opts.arg:
        key, value = pair.split("=", 1)
        overrides[key] = json.loads(value)
    splits = load_splits(opts.strip_links)
    keep = Path(opts.keep_models) if opts.keep_models else None
    runs = []
    for method in [m for m in opts.methods.split(",") if m]:
        for seed in [int(s) for s in opts.seeds.split(",") if s]:
            print(f"== {method} (seed {seed})", file=sys.stderr, flush=True)
            steps = dict(pair.split("=") for pair in opts.method_steps.split(",") if pair)
            if method in steps:
                overrides["max_steps"] = int(steps[method])
            result = run(method, seed, splits, {**overrides, "_trainer_dev": opts.trainer_dev}, keep)
            result["strip_links"] = opts.strip_links
            runs.append(result)
            with open(opts.out, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(result) + "\n")
    print_table(runs)


if __name__ == "__main__":
    main()
