"""CPU inference benchmark (#19): plain sentence-transformers against our classifier and catalog-encoder paths.

Usage (from the repo root):
    nice -n 5 .venv/bin/python benchmarks/inference_cpu.py [--model VERSION_FOLDER] [--student STUDENT_FOLDER]
        [--tweets 3000] [--items 2000] [--rounds 2] [--int8 best|all] [--work DIR]
        [--out benchmarks/results/inference_cpu.json]

--model: a classifier version folder (NEWSDESK_HOME/models/sentiment/<version>); without it a "probe" is built once
in --work: the base MiniLM, frozen, with a logistic-regression sentiment head fitted on PhraseBank train (a real
classifier of this encoder, with no fine-tuning: say so beside its figures).
Classifier: the first --tweets StockNet tweets through `TextClassifier.predict` (tokenise, length-sorted batches of
64, encoder + heads, softmax) on every path: throughput (best of --rounds, paths interleaved), label agreement with
torch float32 on the tweets and macro-F1 on PhraseBank dev; beside it plain sentence-transformers `encode` of the same
tweets with the base model, and the choice `finetune.serving` makes at load. Catalog: the first --items MovieLens
item texts through the catalog encoder's paths against plain `encode`, with the share of float32's 10 nearest
neighbours kept.
--student: a student version folder (`newsdesk finetune student`) measured beside its teacher (--model): torch
float32 / bfloat16 and ONNX float32, with the choice serving makes for it. --int8 best: only the int8 recipe that
serving's check found most accurate on this model (all: the four).
"peak": the share of this CPU's nominal float32 peak (cores x float32 FLOP per cycle x clock: Zen 4 runs AVX-512
on 256-bit units, 2 FMA pipes = 32 FLOP/cycle; Zen 5 and Intel AVX-512 with 2 FMA units 64; AVX2 32; the clock is
/proc/cpuinfo's "cpu MHz") reached in encoder FLOPs (24·d² per token per layer for the projections and the FFN,
plus 4·n·d per token per layer for attention, actual tokens, no padding, the model's own layer count). A 2048^3
float32 GEMM on all cores is measured too, as the share of that peak the box gave this process.
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


def nominal_peak() -> tuple[float, str]:
    """(GFLOP/s, how): cores x float32 FLOP per cycle x clock, from /proc/cpuinfo."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""

    def field(name: str) -> str:
        return next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith(name)), "")

    flags, family = set(field("flags").split()), field("cpu family")
    vendor, mhz = field("vendor_id"), float(field("cpu MHz") or 0)
    if "avx512f" in flags:
        per_cycle, unit = (32, "AVX-512 on 256-bit units (Zen 4), 2 FMA pipes") if (
            vendor == "AuthenticAMD" and family == "25") else (64, "AVX-512, 2 FMA units")
    elif "avx2" in flags:
        per_cycle, unit = 32, "AVX2, 2 FMA units"
    else:
        per_cycle, unit = 8, "SSE"
    cores = len(os.sched_getaffinity(0))
    peak = cores * per_cycle * mhz / 1000
    return peak, f"{cores} cores x {per_cycle} FLOP/cycle ({unit}) x {mhz / 1000:.2f} GHz = {peak:.0f} GFLOP/s"


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


def int8_names(selection: Any, mode: str) -> list[str]:
    """The int8 paths to measure: all four, or the one serving's check found most accurate on this model."""
    from finetune.inference import _accuracy

    names = [f"onnx-{c.name}" for c in INT8_CONFIGS]
    checks = [c for c in (selection.checks if selection else []) if c.path in names and c.quality]
    if mode == "all" or not checks:
        return names if mode == "all" else ["onnx-int8-pc"]
    if selection.chosen in names:  # serving picked an int8 recipe: that one
        return [selection.chosen]
    return [max(checks, key=_accuracy).path]


def classifier_paths(clf: TextClassifier, cache: Path, int8: list[str], onnx_int8: bool = True) -> dict[str, Any]:
    names = ["torch-float32"] + (["torch-bfloat16"] if native_bf16("cpu") else [])
    if not runtime_missing():
        names += ["onnx-float32"] + (int8 if onnx_int8 else [])
    return {name: classifier_engine(clf, cache, name) for name in names}


def bench_classifier(args: argparse.Namespace, tweets: list[str], peak: float) -> dict[str, Any]:
    folder = Path(args.model) if args.model else build_probe(Path(args.work) / "models" / "sentiment" / "probe",
                                                             args.probe_rows)
    clf = TextClassifier(folder, version=folder.name)
    home = Path(args.work) / "home"
    # what serving would choose here (cached after once); --no-selection: the table's own figures decide (below)
    selection = None if args.no_selection else select_classifier_path(clf, home, "auto")
    int8 = int8_names(selection, args.int8)
    # (row name, classifier, engine): the model's paths, then the student's
    entries = [(name, clf, engine) for name, engine in classifier_paths(clf, cache_dir(home, folder), int8).items()]
    student_selection = None
    if args.student:
        student = TextClassifier(Path(args.student), version=Path(args.student).name)
        student_selection = None if args.no_selection else select_classifier_path(student, home, "auto")
        entries += [(f"student {name}", student, engine) for name, engine in
                    classifier_paths(student, cache_dir(home, Path(args.student)), [], onnx_int8=False).items()]
    dev = read_labelled([PB_DEV])
    plain = load_sentence_encoder(base_model_path(), device="cpu")
    best: dict[str, float] = {}
    labels: dict[str, list[str]] = {}
    per_cpu: dict[str, float] = {}  # texts per CPU-second of this process: what a loaded box cannot hide
    for _ in range(args.rounds):  # interleaved, best of rounds: the other processes' load hits every path alike
        start, cpu = time.perf_counter(), time.process_time()
        plain.encode(tweets, batch_size=64, show_progress_bar=False)
        best["sentence-transformers encode"] = max(best.get("sentence-transformers encode", 0.0),
                                                   len(tweets) / (time.perf_counter() - start))
        per_cpu["sentence-transformers encode"] = max(per_cpu.get("sentence-transformers encode", 0.0),
                                                      len(tweets) / max(time.process_time() - cpu, 1e-9))
        for name, model, engine in entries:
            model.use(engine)
            start, cpu = time.perf_counter(), time.process_time()
            preds = model.predict(tweets, batch_size=64)
            best[name] = max(best.get(name, 0.0), len(tweets) / (time.perf_counter() - start))
            per_cpu[name] = max(per_cpu.get(name, 0.0), len(tweets) / max(time.process_time() - cpu, 1e-9))
            labels[name] = [p.label for p in preds]
    plain_flops = encoder_flops(plain.tokenizer, tweets, int(plain.max_seq_length))
    rows = [{"path": "sentence-transformers encode", "texts_per_s": round(best.pop("sentence-transformers encode"),
                                                                          1), "note": "base model, embeddings only",
             "flops_per_text": plain_flops / len(tweets)}]
    checked = {c.path: c.quality.get("sentiment", {}) for c in (selection.checks if selection else [])}
    for name, model, engine in entries:
        if not args.model and "macro_f1" in checked.get(name, {}):  # the probe's check set is PhraseBank dev
            f1 = checked[name]["macro_f1"]
        else:
            model.use(engine)
            f1 = classification_report([r.label for r in dev],
                                       [p.label for p in model.predict([r.text for r in dev])], LABELS)["macro_f1"]
        layers = int(model.model.body.config.num_hidden_layers)
        rows.append({"path": name, "texts_per_s": round(best[name], 1), "macro_f1": f1, "layers": layers,
                     "flops_per_text": encoder_flops(model.tokenizer, tweets, model.max_length, layers) / len(tweets),
                     "agreement": round(float(np.mean([a == b for a, b in zip(labels[name],
                                                                             labels["torch-float32"])])), 4)})
    base, base_cpu = rows[0]["texts_per_s"], per_cpu["sentence-transformers encode"]
    for row in rows:
        row["x_plain"] = round(row["texts_per_s"] / base, 2)
        row["peak"] = round(row["flops_per_text"] * row["texts_per_s"] / 1e9 / peak, 3)
        row["texts_per_cpu_s"] = round(per_cpu[row["path"]], 1)
        row["x_plain_cpu"] = round(per_cpu[row["path"]] / base_cpu, 2)
    reference = {name: next(r["macro_f1"] for r in rows if r["path"] == name)
                 for name in ("torch-float32", "student torch-float32") if any(r["path"] == name for r in rows)}

    def table_choice(prefix: str) -> str:
        """The fastest path within the serving tolerance of its own torch float32 on PhraseBank dev (the check
        serving runs at load, from this table's interleaved speeds)."""
        own = [r for r in rows[1:] if r["path"].startswith("student ") == (prefix == "student ")]
        ok = [r for r in own if reference[f"{prefix}torch-float32"] - r["macro_f1"] <= args.tolerance + 1e-9]
        return max(ok, key=lambda r: r["texts_per_s"])["path"] if ok else f"{prefix}torch-float32"

    return {"model": str(folder), "probe": not args.model, "tweets": len(tweets), "rows": rows,
            "table_choice": table_choice(""),
            "student_table_choice": table_choice("student ") if args.student else None,
            "chosen": selection.chosen if selection else "torch", "dev_rows": len(dev),
            "checks": [c.__dict__ for c in selection.checks] if selection else [],
            "student": args.student or None,
            "student_chosen": student_selection.chosen if student_selection else None,
            "student_checks": [c.__dict__ for c in student_selection.checks] if student_selection else []}


def catalog_student(base: Any, texts: list[str], layers: list[int], steps: int, folder: Path) -> Path:
    """A `len(layers)`-layer student of the base encoder (its embeddings and those layers), trained for `steps`
    batches of 32 to reproduce the base encoder's normalised vectors of `texts` (cosine loss), saved to `folder`
    (reused when there)."""
    import copy

    from sentence_transformers import SentenceTransformer

    if (folder / "modules.json").is_file():
        return folder
    teacher_vectors = torch.from_numpy(base.encode(texts, batch_size=64, normalize_embeddings=True))
    student = copy.deepcopy(base)
    body = student[0].auto_model
    body.encoder.layer = torch.nn.ModuleList([body.encoder.layer[i] for i in layers])
    body.config.num_hidden_layers = len(layers)
    optimiser = torch.optim.AdamW(student.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    student.train()
    for step in range(steps):
        idx = rng.choice(len(texts), size=min(32, len(texts)), replace=False)
        features = student.tokenize([texts[i] for i in idx])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=native_bf16("cpu")):
            out = student(features)["sentence_embedding"].float()
        loss = (1 - torch.nn.functional.cosine_similarity(out, teacher_vectors[idx])).mean()
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        if step % 20 == 0:
            print(f"catalog student step {step}/{steps}: loss {float(loss.detach()):.4f}", flush=True)
    student.eval()
    student.save(str(folder))
    SentenceTransformer(str(folder), device="cpu")  # loads back
    return folder


def bench_catalog(args: argparse.Namespace, items: list[str], peak: float, int8: list[str]) -> dict[str, Any]:
    folder = base_model_path()
    model = load_sentence_encoder(folder, device="cpu")
    cache = cache_dir(Path(args.work) / "home", folder)
    names = ["torch-float32"] + (["torch-bfloat16"] if native_bf16("cpu") else [])
    if not runtime_missing():
        names += ["onnx-float32"] + int8
    engines = {name: encoder_engine(model, folder, cache, name) for name in names}
    layers = {name: 6 for name in names}
    if args.catalog_student_steps > 0:  # a 3-layer student of the base encoder on items outside the measured ones
        train = read_items(args.items + args.catalog_student_texts)[args.items:]
        s_folder = catalog_student(model, train, [0, 2, 4], args.catalog_student_steps,
                                   Path(args.work) / "catalog-student")
        student = load_sentence_encoder(s_folder, device="cpu", cache=False)
        s_cache = cache_dir(Path(args.work) / "home", s_folder)
        for name in ["torch-float32", "torch-bfloat16", "onnx-float32"]:
            if name in names:
                engines[f"student {name}"] = encoder_engine(student, s_folder, s_cache, name)
                layers[f"student {name}"] = 3
    best: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    per_cpu: dict[str, float] = {}
    for _ in range(args.rounds):
        start, cpu = time.perf_counter(), time.process_time()
        model.encode(items, batch_size=64, show_progress_bar=False, normalize_embeddings=True)
        best["sentence-transformers encode"] = max(best.get("sentence-transformers encode", 0.0),
                                                   len(items) / (time.perf_counter() - start))
        per_cpu["sentence-transformers encode"] = max(per_cpu.get("sentence-transformers encode", 0.0),
                                                      len(items) / max(time.process_time() - cpu, 1e-9))
        for name, engine in engines.items():
            start, cpu = time.perf_counter(), time.process_time()
            vectors[name] = engine.encode(items, batch_size=64, normalize_embeddings=True)
            best[name] = max(best.get(name, 0.0), len(items) / (time.perf_counter() - start))
            per_cpu[name] = max(per_cpu.get(name, 0.0), len(items) / max(time.process_time() - cpu, 1e-9))
    base = best["sentence-transformers encode"]
    rows = [{"path": "sentence-transformers encode", "texts_per_s": round(base, 1), "layers": 6}]
    for name in engines:
        _, _, figures = neighbour_quality(vectors["torch-float32"], vectors[name])
        rows.append({"path": name, "texts_per_s": round(best[name], 1), "layers": layers[name], **figures})
    for row in rows:
        flops = encoder_flops(model.tokenizer, items, int(model.max_seq_length), row["layers"])
        row["texts_per_cpu_s"] = round(per_cpu[row["path"]], 1)
        row["x_plain_cpu"] = round(per_cpu[row["path"]] / per_cpu["sentence-transformers encode"], 2)
        row["x_plain"] = round(row["texts_per_s"] / base, 2)
        row["peak"] = round(flops / len(items) * row["texts_per_s"] / 1e9 / peak, 3)
    return {"encoder": str(folder), "items": len(items), "rows": rows,
            "catalog_student_steps": args.catalog_student_steps}


def print_table(title: str, rows: list[dict[str, Any]], quality: list[str]) -> None:
    """One line per path; "peak" is the share of the nominal float32 peak."""
    print(f"\n{title}")
    widths = [28, 10, 8, 7] + [14] * len(quality)
    head = ["path", "texts/s", "x plain", "peak", *quality]
    print(" | ".join(f"{h:>{w}}" for h, w in zip(head, widths)))
    for r in rows:
        cells = [r["path"], r["texts_per_s"], r["x_plain"], f"{r['peak']:.1%}", *(r.get(q, "") for q in quality)]
        print(" | ".join(f"{c!s:>{w}}" for c, w in zip(cells, widths)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="", help="classifier version folder (default: the PhraseBank probe)")
    p.add_argument("--student", default="", help="a student version folder of --model (newsdesk finetune student)")
    p.add_argument("--tweets", type=int, default=3000)
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--int8", choices=["best", "all"], default="best",
                   help="best: the int8 recipe serving's check found most accurate on --model; all: the four")
    p.add_argument("--catalog-student-steps", type=int, default=0,
                   help="> 0: also a 3-layer student of the catalog encoder, trained this many steps of 32 items")
    p.add_argument("--catalog-student-texts", type=int, default=4000,
                   help="items after the measured ones that the catalog student trains on")
    p.add_argument("--no-selection", action="store_true",
                   help="skip serving's own check at load (its exports of every int8 recipe); the table's figures "
                        "say what it would choose")
    p.add_argument("--tolerance", type=float, default=0.005, help="macro-F1 a path may lose (the serving default)")
    p.add_argument("--probe-rows", type=int, default=0, help="PhraseBank train rows for the probe's head (0: all)")
    p.add_argument("--work", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "newsdesk-inference-bench"))
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    load_before = os.getloadavg()
    gemm = gemm_peak()
    peak, peak_how = nominal_peak()
    started = time.perf_counter()
    classify = bench_classifier(args, read_tweets(args.tweets), peak)
    int8 = [r["path"] for r in classify["rows"] if r["path"].startswith("onnx-int8")]
    catalog = bench_catalog(args, read_items(args.items), peak, int8)
    result = {"command": " ".join(["benchmarks/inference_cpu.py", *sys.argv[1:]]), "machine": machine_signature(),
              "python": platform.python_version(), "gemm_gflops": round(gemm, 1), "peak_gflops": round(peak, 1),
              "peak": peak_how, "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in os.getloadavg()], "seconds": round(time.perf_counter() - started),
              "classifier": classify, "catalog": catalog}
    print(f"CPU {result['machine']['cpu']} ({', '.join(result['machine']['isa'])}), "
          f"{result['machine']['cores']} cores; float32 peak {peak_how}; 2048^3 GEMM here {gemm:.1f} GFLOP/s "
          f"({gemm / peak:.0%} of it); load {load_before[0]:.2f} -> {result['load_after'][0]:.2f}")
    chosen = classify["chosen"] if not args.no_selection else f"(table) {classify['table_choice']}"
    student = (f"; student {Path(classify['student']).name}: "
               f"{classify['student_chosen'] or '(table) ' + str(classify['student_table_choice'])}"
               if classify["student"] else "")
    print_table(f"classify {classify['tweets']} StockNet tweets; macro-F1 on PhraseBank dev ({classify['dev_rows']})"
                f"{' (probe model)' if classify['probe'] else ''}; serving chose {chosen}{student}",
                classify["rows"], ["texts_per_cpu_s", "x_plain_cpu", "macro_f1", "agreement"])
    print_table(f"catalog embedding, {catalog['items']} MovieLens items", catalog["rows"],
                ["texts_per_cpu_s", "x_plain_cpu", "neighbours_kept", "mean_cosine"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
