"""One function per task, top to bottom: data -> model -> library trainer -> saved model folder."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from finetune.args import BehaviourArgs, ClassifierArgs
from finetune.callbacks import ProgressBar
from finetune.data import LABELS, LabelledText, TaskData
from newsdesk.device import native_bf16, resolve_device

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training function hands back to the service (which evaluates, registers and gates)."""

    train_seconds: float
    steps: int
    device: str
    details: dict[str, Any] = field(default_factory=dict)


def _precision(device: str, precision: str = "auto") -> dict[str, bool]:
    """Trainer flags: bfloat16 mixed precision where the device computes it natively ("auto"; CUDA without bf16
    gets fp16), or full float32."""
    flags: dict[str, bool] = {"use_cpu": True} if device != "cuda" else {}
    if precision == "float32":
        return flags
    if precision == "bfloat16" or native_bf16(device):
        return {**flags, "bf16": True}
    return {**flags, "fp16": True} if device == "cuda" else flags


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest `checkpoint-N` folder of a Trainer output folder, if any."""
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return checkpoints[-1] if checkpoints else None


def train_classifier(base_path: Path, data: dict[str, TaskData], args: ClassifierArgs, *, work_dir: Path,
                     out_dir: Path, device: str = "auto", resume: bool = False,
                     pretrain: dict[str, list[LabelledText]] | None = None) -> TrainResult:
    """Fine-tune the encoder end to end with one linear head per task in `data` and save it to `out_dir`.

    One task (sentiment, topic) gives a single-task model; several give a joint model whose heads share the encoder,
    trained on the union of the tasks' rows, shuffled together (each row's loss under its own head). With
    `pretrain` (task -> labelled rows from a related source, e.g. financial tweets before PhraseBank news), the
    model first learns them for `args.pretrain_epochs` (intermediate-task transfer) and the main fine-tune starts
    from those weights, heads included. The first stage's weights are kept in `work_dir`, so a resumed run does
    not repeat a finished first stage; `resume` continues the main stage from its newest checkpoint.
    """
    from transformers import AutoTokenizer

    from finetune.model import save_classifier_model

    dev = resolve_device(args.device if args.device != "auto" else device)
    tokenizer = AutoTokenizer.from_pretrained(str(base_path), local_files_only=True)
    tasks = {task: d.labels for task, d in data.items()}
    offsets = _offsets(tasks)

    def encode(rows_by_task: dict[str, list[LabelledText]]) -> list[dict[str, Any]]:
        out = []
        for task, rows in rows_by_task.items():
            enc = tokenizer([r.text for r in rows], truncation=True, max_length=args.max_length)
            ids = {label: offsets[task] + i for i, label in enumerate(tasks[task])}
            out += [{"input_ids": i, "attention_mask": m, "labels": ids[r.label]}
                    for i, m, r in zip(enc["input_ids"], enc["attention_mask"], rows, strict=True)]
        return out

    train_ds = encode({task: d.train for task, d in data.items()})
    dev_ds = encode({task: d.dev for task, d in data.items()})
    weights = {task: w for task, d in data.items() if (w := _class_weights(d.train, d.labels, args.class_weights))}

    started = time.monotonic()
    init: dict[str, torch.Tensor] | None = None
    pretrain_details: dict[str, Any] = {}
    if pretrain:  # stage 1: intermediate task, kept whole in its folder so a resumed run does not repeat it
        stage = dataclasses.replace(args, epochs=args.pretrain_epochs, select_best=False, early_stopping_patience=0)
        init, info, reused = _fit_stage(base_path, tokenizer, tasks, encode(pretrain), dev_ds, stage, weights,
                                        folder=work_dir / "pretrain", device=dev, resume=resume, desc="pretrain")
        pretrain_details = {"rows": sum(len(r) for r in pretrain.values()), "epochs": args.pretrain_epochs,
                            "steps": info["steps"], "train_loss": info.get("train_loss"),
                            "dev_history": info.get("dev_history"), **({"resumed": True} if reused else {})}
    desc = "+".join(tasks)
    model, details, steps = _fit_classifier(base_path, tokenizer, tasks, train_ds, dev_ds, args, weights,
                                            work_dir=work_dir, device=dev, resume=resume, desc=desc, init=init)
    seconds = time.monotonic() - started
    details["rows"] = {task: len(d.train) for task, d in data.items()}
    if pretrain_details:
        details["pretrain"] = pretrain_details
        steps += int(pretrain_details.get("steps", 0))
    model.to("cpu")
    save_classifier_model(model, tokenizer, out_dir, max_length=args.max_length)
    return TrainResult(round(seconds, 1), steps, dev, details)


def train_sentiment(base_path: Path, train_rows: list[LabelledText], dev_rows: list[LabelledText],
                    args: ClassifierArgs, *, work_dir: Path, out_dir: Path, device: str = "auto",
                    resume: bool = False, pretrain_rows: list[LabelledText] | None = None) -> TrainResult:
    """The 3-class sentiment classifier: `train_classifier` with the sentiment task alone."""
    return train_classifier(base_path, {"sentiment": TaskData(train_rows, dev_rows, LABELS)}, args,
                            work_dir=work_dir, out_dir=out_dir, device=device, resume=resume,
                            pretrain={"sentiment": pretrain_rows} if pretrain_rows else None)


def _offsets(tasks: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Task -> index of its first label in the concatenated label space (the model's head order)."""
    out, start = {}, 0
    for task, labels in tasks.items():
        out[task] = start
        start += len(labels)
    return out


def _class_weights(rows: list[LabelledText], labels: tuple[str, ...], mode: str) -> list[float] | None:
    """Loss weights per label: "balanced" = inverse frequency, mean 1 over the rows; "none" = None."""
    if mode != "balanced":
        return None
    counts = Counter(r.label for r in rows)
    return [len(rows) / (len(labels) * max(counts[label], 1)) for label in labels]


def _new_model(base_path: Path, tasks: dict[str, tuple[str, ...]], args: ClassifierArgs,
               class_weights: dict[str, list[float]], init: dict[str, torch.Tensor] | None = None) -> Any:
    """A fresh classifier on the base encoder, or with every weight (body and heads) from `init`."""
    from transformers import AutoModel

    from finetune.model import ClassifierModel

    model = ClassifierModel(AutoModel.from_pretrained(str(base_path), local_files_only=True), tasks,
                            pooling=args.pooling, class_weights=class_weights, label_smoothing=args.label_smoothing)
    if init is not None:
        model.load_state_dict(init)
    return model


def _fit_stage(base_path: Path, tokenizer: Any, tasks: dict[str, tuple[str, ...]], train_ds: list[dict[str, Any]],
               dev_ds: list[dict[str, Any]], args: ClassifierArgs, class_weights: dict[str, list[float]], *,
               folder: Path, device: str, resume: bool, desc: str
               ) -> tuple[dict[str, torch.Tensor], dict[str, Any], bool]:
    """One whole training run (a first stage) kept in `folder`: (weights, details, reused).

    The Trainer's checkpoints live in `folder/trainer` while it runs; the finished weights and details are written
    whole, then renamed, and the checkpoints dropped. With `resume` a finished run is loaded instead of trained.
    """
    from safetensors.torch import load_file, save_file

    saved, info_file = folder / "weights.safetensors", folder / "details.json"
    if resume and saved.is_file() and info_file.is_file():
        log.info("%s: reusing the finished run in %s", desc, folder)
        return load_file(str(saved)), json.loads(info_file.read_text()), True
    model, info, steps = _fit_classifier(base_path, tokenizer, tasks, train_ds, dev_ds, args, class_weights,
                                         work_dir=folder / "trainer", device=device, resume=resume, desc=desc)
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    info["steps"] = steps
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "details.tmp").write_text(json.dumps(info))  # each file whole, then renamed: a crash leaves no
    os.replace(folder / "details.tmp", info_file)          # half-written run to resume from (weights come last)
    save_file(state, str(folder / "weights.tmp"))
    os.replace(folder / "weights.tmp", saved)
    shutil.rmtree(folder / "trainer", ignore_errors=True)
    return state, info, False


def _dev_metrics(tasks: dict[str, tuple[str, ...]]) -> Any:
    """The Trainer's `compute_metrics`: each task's macro-F1 and accuracy on its dev rows, and their means."""
    from finetune.evaluate import classification_report

    offsets = _offsets(tasks)

    def metrics(pred: Any) -> dict[str, float]:
        logits, labels = pred
        out: dict[str, float] = {}
        for task, labels_of in tasks.items():
            off, n = offsets[task], len(labels_of)
            rows = (labels >= off) & (labels < off + n)
            if not rows.any():
                continue
            gold = [labels_of[i - off] for i in labels[rows]]
            guess = [labels_of[i] for i in logits[rows, off:off + n].argmax(-1)]
            report = classification_report(gold, guess, labels_of)
            out[f"{task}_macro_f1"], out[f"{task}_accuracy"] = report["macro_f1"], report["accuracy"]
        scored = [t for t in tasks if f"{t}_macro_f1" in out]
        out["macro_f1"] = round(sum(out[f"{t}_macro_f1"] for t in scored) / max(len(scored), 1), 4)
        out["accuracy"] = round(sum(out[f"{t}_accuracy"] for t in scored) / max(len(scored), 1), 4)
        return out

    return metrics


def _fit_classifier(base_path: Path, tokenizer: Any, tasks: dict[str, tuple[str, ...]],
                    train_ds: list[dict[str, Any]], dev_ds: list[dict[str, Any]], args: ClassifierArgs,
                    class_weights: dict[str, list[float]], *,
                    work_dir: Path, device: str, resume: bool, desc: str,
                    init: dict[str, torch.Tensor] | None = None) -> tuple[Any, dict[str, Any], int]:
    """One Trainer run: (fine-tuned model, details, optimiser steps), starting from `init` weights if given.

    Early stopping (and `select_best`) watch the mean over tasks of dev macro-F1.
    """
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    set_seed(args.seed)
    model = _new_model(base_path, tasks, args, class_weights, init)
    steps_per_epoch = max(1, math.ceil(len(train_ds) / args.batch_size))
    total_steps = args.max_steps if args.max_steps > 0 else math.ceil(steps_per_epoch * args.epochs)
    eval_every = max(1, min(total_steps, steps_per_epoch // args.evals_per_epoch))

    callbacks: list[Any] = [ProgressBar(args.batch_size, desc=desc)]
    if args.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
    training_args = TrainingArguments(
        output_dir=str(work_dir), max_steps=total_steps, learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=128,
        warmup_steps=args.warmup_ratio, weight_decay=args.weight_decay, lr_scheduler_type="linear",
        eval_strategy="steps", eval_steps=eval_every, save_strategy="steps", save_steps=eval_every,
        save_total_limit=2, metric_for_best_model="macro_f1", greater_is_better=True,
        load_best_model_at_end=args.select_best, logging_steps=max(1, min(25, eval_every)),
        report_to=[], seed=args.seed, disable_tqdm=True, train_sampling_strategy="group_by_length",
        save_only_model=False, dataloader_num_workers=0, **_precision(device, args.train_precision))
    trainer = Trainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=dev_ds,
                      data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=_dev_metrics(tasks), callbacks=callbacks)
    for quiet in (PrinterCallback, ProgressCallback):  # our ProgressBar replaces the per-log prints
        trainer.remove_callback(quiet)

    checkpoint = latest_checkpoint(work_dir) if resume else None
    log.info("%s fine-tune: %d train / %d dev rows, %d steps on %s (seed %d)%s", desc, len(train_ds), len(dev_ds),
             total_steps, device, args.seed, f", resuming from {checkpoint.name}" if checkpoint else "")
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    history = [{"step": h["step"], **{k[5:]: v for k, v in h.items() if k.endswith("macro_f1")}}
               for h in trainer.state.log_history if "eval_macro_f1" in h]
    details: dict[str, Any] = {"train_loss": round(float(output.training_loss), 4), "device": device,
                               "resumed_from": checkpoint.name if checkpoint else None, "dev_history": history}
    return trainer.model, details, int(trainer.state.global_step)


def train_behaviour(base_path: Path, pairs: list[tuple[str, str]], args: BehaviourArgs, *, work_dir: Path,
                    out_dir: Path, device: str = "auto", resume: bool = False) -> TrainResult:
    """Contrastive fine-tune on (liked item text, next liked item text) pairs with in-batch negatives.

    Saves a SentenceTransformer folder to `out_dir`.
    """
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    dev = resolve_device(args.device if args.device != "auto" else device)
    set_seed(args.seed)
    model = SentenceTransformer(str(base_path), device=dev, local_files_only=True)
    model.max_seq_length = args.max_length
    dataset = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [b for _, b in pairs]})
    if args.loss == "cached_mnrl":
        loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=args.mini_batch_size)
    else:
        loss = MultipleNegativesRankingLoss(model)
    steps_per_epoch = max(1, len(pairs) // args.batch_size)
    total_steps = args.max_steps if args.max_steps > 0 else max(1, math.ceil(steps_per_epoch * args.epochs))
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(work_dir), max_steps=total_steps, learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size, warmup_steps=args.warmup_ratio,
        batch_sampler="no_duplicates", save_strategy="steps", save_steps=max(1, min(total_steps, 100)),
        save_total_limit=1, logging_steps=max(1, min(25, total_steps)), report_to=[], seed=args.seed,
        disable_tqdm=True, dataloader_drop_last=len(pairs) >= args.batch_size * 2, **_precision(dev))
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=dataset, loss=loss,
                                         callbacks=[ProgressBar(args.batch_size, desc="recsys")])
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    checkpoint = latest_checkpoint(work_dir) if resume else None
    log.info("behaviour fine-tune: %d pairs, %d steps on %s", len(pairs), total_steps, dev)
    started = time.monotonic()
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.monotonic() - started
    model.save(str(out_dir))
    return TrainResult(round(seconds, 1), int(trainer.state.global_step), dev,
                       {"train_loss": round(float(output.training_loss), 4), "pairs": len(pairs),
                        "resumed_from": checkpoint.name if checkpoint else None})
