"""finetune benchmark: sentiment methods side by side on PhraseBank dev (and tweets held out for two-source models).

Usage (from the repo root):
    .venv/bin/python benchmarks/finetune_sentiment.py [--methods frozen_lr,plain,ours,cls3,transfer]
        [--two-source ours --two-source-epochs 2] [--seeds 42,43] [--max-steps N]

Methods:
  frozen_lr  the base encoder, frozen (mean-pooled sentence vectors) + logistic regression (balanced classes)
  plain      the usual recipe (what AutoModelForSequenceClassification does): BERT's CLS pooler + linear head,
             4 epochs, no class weights, the best dev epoch kept (so its dev score is picked on dev)
  cls3       CLS pooler, 3 epochs, last weights (selection-free)
  ours       SentimentArgs() defaults: mean pooling + linear head, 3 epochs, last weights (selection-free)
  transfer   `ours` after a first stage of one epoch on the tweets (minus the held-out 10%): intermediate-task
             transfer, what `newsdesk finetune sentiment --pretrain TWEETS --train ...` does
The soup, weight-averaging, R-Drop and k-NN-memory variants measured earlier (docs/benchmarks.md) are no longer
in the product, so this script no longer runs them; their figures stay in docs/benchmarks.md. `--two-source M` also
trains method M on PhraseBank + tweets (minus a stratified 10% of the tweets,
held out) and reports both PhraseBank dev and tweets-held-out macro-F1. Training uses bfloat16 mixed precision
where the CPU computes it natively (`train_precision=auto`). Prints a table, writes
benchmarks/results/finetune_sentiment.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from finetune.args import SentimentArgs
from finetune.data import LABELS, LabelledText, read_labelled, split_dev
from finetune.evaluate import classification_report
from newsdesk.encoders import base_model_path, load_sentence_encoder

DATA = ROOT.parent / "shared" / "data" / "sentiment"
RESULTS = ROOT / "benchmarks" / "results"
PLAIN = {"pooling": "cls", "class_weights": "none", "early_stopping_patience": 0, "epochs": 4.0, "select_best": True}
METHODS: dict[str, dict[str, Any]] = {"plain": PLAIN, "cls3": {"pooling": "cls"}, "ours": {},
                                      "transfer": {"_pretrain": True}}


def frozen_lr(train: list[LabelledText], evals: dict[str, list[LabelledText]]) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    encoder = load_sentence_encoder(device="cpu")
    started = time.monotonic()
    x = encoder.encode([r.text for r in train], batch_size=64, normalize_embeddings=True, show_progress_bar=True)
    clf = LogisticRegression(max_iter=2000, C=10.0, class_weight="balanced").fit(x, [r.label for r in train])
    seconds = time.monotonic() - started
    scores = {}
    for name, rows in evals.items():
        pred = clf.predict(encoder.encode([r.text for r in rows], batch_size=64, normalize_embeddings=True))
        scores[name] = classification_report([r.label for r in rows], list(pred), LABELS)
    return {"train_seconds": round(seconds, 1), "scores": scores}


def fine_tune(train: list[LabelledText], dev: list[LabelledText], evals: dict[str, list[LabelledText]],
              overrides: dict[str, Any], keep: Path | None = None,
              pretrain: list[LabelledText] | None = None) -> dict[str, Any]:
    from finetune.pipeline import evaluate_sentiment_folder
    from finetune.train import train_sentiment

    args = SentimentArgs(**{k: v for k, v in overrides.items() if not k.startswith("_")})
    with tempfile.TemporaryDirectory(prefix="bench-sentiment-") as tmp:
        out = Path(tmp) / "model"
        result = train_sentiment(base_model_path(), train, dev, args, work_dir=Path(tmp) / "work", out_dir=out,
                                 device="auto", pretrain_rows=pretrain)
        scores = {name: evaluate_sentiment_folder(out, rows) for name, rows in evals.items()}
        if keep is not None:
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(out, keep)
    return {"train_seconds": result.train_seconds, "steps": result.steps, "device": result.device,
            "details": result.details, "args": args.to_dict(), "scores": scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="frozen_lr,plain,ours")
    parser.add_argument("--two-source", default="ours", help="methods also trained on PhraseBank + tweets ('' = none)")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--max-steps", type=int, default=-1, help="cap every fine-tune (smoke runs)")
    parser.add_argument("--two-source-epochs", type=float, default=2.0, help="epochs over PhraseBank + tweets")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (1 avoids oversubscription on a busy box)")
    parser.add_argument("--keep-models", default="", help="copy each trained model into this folder")
    parser.add_argument("--table", nargs="*", default=None, help="only print the table of these result files")
    parser.add_argument("--out", default=str(RESULTS / "finetune_sentiment.json"))
    opts = parser.parse_args()
    if opts.table is not None:
        print_table([run for f in opts.table for run in json.loads(Path(f).read_text())["runs"]])
        return
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)

    pb_train = read_labelled([DATA / "phrasebank_train.csv"])
    pb_dev = read_labelled([DATA / "phrasebank_dev.csv"])
    tweets_train, tweets_held = split_dev(read_labelled([DATA / "fintweets_train.csv"]), 0.1, seed=0)
    seeds = [int(s) for s in opts.seeds.split(",") if s]
    rows: list[dict[str, Any]] = []
    plan = [(m, "phrasebank") for m in opts.methods.split(",") if m]
    plan += [(m, "phrasebank+tweets") for m in opts.two_source.split(",") if m]
    for method, source in plan:
        train = pb_train + (tweets_train if source != "phrasebank" else [])
        evals = {"phrasebank_dev": pb_dev, **({"tweets_heldout": tweets_held} if source != "phrasebank" else {})}
        for seed in seeds if method != "frozen_lr" else seeds[:1]:
            print(f"== {method} on {source} (seed {seed})", file=sys.stderr, flush=True)
            if method == "frozen_lr":
                res = frozen_lr(train, evals)
            else:
                overrides = {**METHODS[method], "seed": seed}
                if source != "phrasebank":
                    overrides["epochs"] = opts.two_source_epochs
                if opts.max_steps > 0:
                    overrides["max_steps"] = opts.max_steps
                keep = Path(opts.keep_models) / f"{method}-{source}-{seed}" if opts.keep_models else None
                pretrain = tweets_train if overrides.get("_pretrain") else None
                res = fine_tune(train, pb_dev, evals, overrides, keep, pretrain)
            rows.append({"method": method, "source": source, "seed": seed, **res})
            write_results(opts.out, rows, len(tweets_held), len(pb_dev))  # after every run: partial runs count
            print_table(rows[-1:])
    print_table(rows)
    print(f"\nwrote {opts.out}")


def write_results(out: str, rows: list[dict[str, Any]], tweets_held: int, pb_dev: int) -> None:
    meta = {"machine": platform.platform(), "python": platform.python_version(), "argv": sys.argv,
            "tweets_heldout_rows": tweets_held, "phrasebank_dev_rows": pb_dev}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out).with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "runs": rows}, indent=2))
    tmp.replace(out)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'method':<10} {'trained on':<18} {'seed':>4} {'PB dev F1':>9} {'PB acc':>7} {'tweets F1':>9} "
          f"{'train s':>8}")
    for r in rows:
        tw = r["scores"].get("tweets_heldout", {}).get("macro_f1")
        print(f"{r['method']:<10} {r['source']:<18} {r['seed']:>4} {r['scores']['phrasebank_dev']['macro_f1']:>9.4f} "
              f"{r['scores']['phrasebank_dev']['accuracy']:>7.4f} {tw if tw is not None else '-':>9} "
              f"{r['train_seconds']:>8.0f}")


if __name__ == "__main__":
    main()
