"""A smaller student of a classifier version: fewer of its transformer layers, trained on the teacher's outputs.

The student keeps `StudentArgs.layers` of the teacher's layers (every other one from the bottom, as DistilBERT: 0, 2,
4 of MiniLM's six), its embeddings and its heads, and learns the teacher's soft labels (KL divergence at a
temperature, for every head on every text) plus the hard labels where a text has one, over the labelled training
text and a bounded sample of unlabelled text (e.g. StockNet tweets). The teacher's logits are computed once, before
training. Half the layers is about half the encoder work per text on every inference path.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from finetune.args import StudentArgs
from finetune.callbacks import LOG_EVERY_S
from finetune.progress import ProgressReport
from finetune.train import TrainResult
from newsdesk.device import native_bf16, resolve_device

log = logging.getLogger(__name__)

_LAYER_KEY = re.compile(r"^encoder\.layer\.(\d+)\.")


@dataclass(frozen=True)
class DistilData:
    """The student's training text: each text once, with its hard label per task where known (None: unlabelled
    for that task)."""

    texts: list[str]
    labels: dict[str, list[str | None]]


def kept_layers(total: int, keep: int) -> list[int]:
    """The teacher's layers a `keep`-layer student starts from: every (total/keep)-th from the bottom (0, 2, 4 of
    6), as DistilBERT took every other layer of BERT."""
    if not 1 <= keep <= total:
        raise ValueError(f"a student keeps 1..{total} layers, not {keep}")
    return [i * total // keep for i in range(keep)]


def student_from(teacher: Any, layers: Sequence[int]) -> Any:
    """A `ClassifierModel` whose body is the teacher's embeddings and the given layers (in order), and whose heads
    are copies of the teacher's."""
    from transformers import AutoModel

    from finetune.model import ClassifierModel

    config = copy.deepcopy(teacher.body.config)
    config.num_hidden_layers = len(layers)
    body = AutoModel.from_config(config)
    position = {old: new for new, old in enumerate(layers)}
    state = {}
    for key, value in teacher.body.state_dict().items():
        match = _LAYER_KEY.match(key)
        if match is None:
            state[key] = value.clone()
        elif int(match.group(1)) in position:
            state[f"encoder.layer.{position[int(match.group(1))]}.{key[match.end():]}"] = value.clone()
    body.load_state_dict(state, strict=True)
    student = ClassifierModel(body, teacher.tasks, pooling=teacher.pooling)
    student.heads.load_state_dict(teacher.heads.state_dict())
    return student


def _autocast(device: str, precision: str) -> Any:
    """bfloat16 autocast where the device computes it natively ("auto") or when asked; else none."""
    import contextlib

    if precision == "float32" or (precision == "auto" and not native_bf16(device)):
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=torch.bfloat16)


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths: shuffle, sort chunks of 50 batches by length, shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def teacher_logits(teacher: Any, tokenizer: Any, encoded: list[list[int]], *, device: str, precision: str,
                   batch_size: int = 128) -> torch.Tensor:
    """(len(encoded), all heads' labels) float32 logits of the teacher, in input order (length-sorted batches)."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out = torch.empty((len(encoded), teacher.num_labels), dtype=torch.float32)
    log.info("student: the teacher's logits for %d texts", len(encoded))
    teacher.eval()
    bar = tqdm(total=len(order), desc="teacher logits", unit="text", disable=None)
    with torch.inference_mode(), _autocast(device, precision):
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt")
            pooled = teacher.pool(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            out[torch.tensor(idx)] = teacher.head_logits(pooled).float().cpu()
            bar.update(len(idx))
    bar.close()
    return out


def distil_loss(student_logits: torch.Tensor, soft: torch.Tensor, hard: torch.Tensor, offsets: Mapping[str, int],
                sizes: Mapping[str, int], temperature: float, alpha: float) -> torch.Tensor:
    """Mean over the batch of alpha·T²·KL(teacher_T || student_T) summed over heads, plus (1 - alpha)·cross-entropy
    for each head whose label the row has (`hard` holds the label index per head, -1 for none)."""
    total = student_logits.new_zeros((), dtype=torch.float)
    n = student_logits.shape[0]
    for j, (task, off) in enumerate(offsets.items()):
        s = student_logits[:, off:off + sizes[task]].float()
        t = soft[:, off:off + sizes[task]]
        kl = F.kl_div(F.log_softmax(s / temperature, dim=-1), F.log_softmax(t / temperature, dim=-1),
                      log_target=True, reduction="sum") * temperature ** 2
        total = total + alpha * kl
        labelled = hard[:, j] >= 0
        if labelled.any():
            total = total + (1 - alpha) * F.cross_entropy(s[labelled], hard[labelled, j], reduction="sum")
    return total / n


def distil_classifier(teacher_folder: Path, data: DistilData, args: StudentArgs, *, out_dir: Path,
                      device: str = "auto") -> TrainResult:
    """Train a student of the classifier in `teacher_folder` on `data` and save it to `out_dir` (a classifier folder
    like any version's). Details: the kept layers, the row counts, the loss and the teacher-logit time."""
    from transformers import get_linear_schedule_with_warmup

    from finetune.model import load_classifier_model, save_classifier_model

    dev = resolve_device(args.device if args.device != "auto" else device)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    teacher, tokenizer, meta = load_classifier_model(teacher_folder, dev)
    max_length = args.max_length or int(meta.get("max_length", 64))
    total_layers = int(teacher.body.config.num_hidden_layers)
    layers = kept_layers(total_layers, args.layers)
    encoded = tokenizer(data.texts, truncation=True, max_length=max_length)["input_ids"]
    started = time.monotonic()
    soft = teacher_logits(teacher, tokenizer, encoded, device=dev, precision=args.train_precision)
    logit_seconds = time.monotonic() - started
    label_index = {task: {label: i for i, label in enumerate(labels)} for task, labels in teacher.tasks.items()}
    hard = torch.full((len(data.texts), len(teacher.tasks)), -1, dtype=torch.long)
    for j, task in enumerate(teacher.tasks):
        for i, label in enumerate(data.labels.get(task, [])):
            if label is not None:
                hard[i, j] = label_index[task][label]
    student = student_from(teacher, layers).to(dev)
    del teacher
    sizes = {task: len(labels) for task, labels in student.tasks.items()}

    lengths = [len(ids) for ids in encoded]
    steps_per_epoch = max(1, math.ceil(len(encoded) / args.batch_size))
    total_steps = args.max_steps if args.max_steps > 0 else max(1, math.ceil(steps_per_epoch * args.epochs))
    no_decay = ("bias", "LayerNorm.weight", "layer_norm")
    groups = [{"params": [p for n, p in student.named_parameters() if not any(k in n for k in no_decay)],
               "weight_decay": args.weight_decay},
              {"params": [p for n, p in student.named_parameters() if any(k in n for k in no_decay)],
               "weight_decay": 0.0}]
    optimiser = torch.optim.AdamW(groups, lr=args.learning_rate)
    schedule = get_linear_schedule_with_warmup(optimiser, int(args.warmup_ratio * total_steps), total_steps)
    log.info("student: layers %s of %d, %d texts (%d with a label), %d steps on %s (teacher logits %.0fs)",
             layers, total_layers, len(encoded), int((hard >= 0).any(dim=1).sum()), total_steps, dev, logit_seconds)
    bar = tqdm(total=total_steps, desc="student", unit="step", dynamic_ncols=True, disable=None)
    report = ProgressReport("student")
    report(0, total_steps, force=True)
    student.train()
    step, running, t0, logged = 0, None, time.monotonic(), time.monotonic()
    while step < total_steps:
        for idx in _batches(lengths, args.batch_size, rng):
            if step >= total_steps:
                break
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt")
            with _autocast(dev, args.train_precision):
                logits = student(batch["input_ids"].to(dev), batch["attention_mask"].to(dev))["logits"]
            loss = distil_loss(logits, soft[idx].to(dev), hard[idx].to(dev), student.offsets, sizes,
                               args.temperature, args.alpha)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad(set_to_none=True)
            step += 1
            value = float(loss.detach())
            running = value if running is None else 0.98 * running + 0.02 * value
            bar.update(1)
            bar.set_postfix({"loss": f"{running:.4f}"}, refresh=False)
            report(step, total_steps)
            now = time.monotonic()
            if bar.disable and now - logged >= LOG_EVERY_S:
                logged = now
                log.info("student: step %d/%d, loss %.4f, about %.0f s left", step, total_steps, running,
                         (total_steps - step) * (now - t0) / step)
    bar.close()
    report(step, total_steps, force=True)
    student.eval().to("cpu")
    save_classifier_model(student, tokenizer, out_dir, max_length=max_length)
    seconds = time.monotonic() - started
    details = {"layers": layers, "teacher_layers": total_layers, "texts": len(encoded),
               "labelled_texts": int((hard >= 0).any(dim=1).sum()), "steps": step,
               "train_loss": round(running or 0, 4),
               "teacher_logits_seconds": round(logit_seconds, 1), "device": dev,
               "parameters": sum(p.numel() for p in student.parameters())}
    return TrainResult(round(seconds, 1), step, dev, details)


# --- the product path: `newsdesk finetune student` ------------------------------------------------------------------

@dataclass(frozen=True)
class Teacher:
    """The version a student learns from: its name, folder, tasks and each task's registry record (data.json)."""

    version: str
    folder: Path
    tasks: tuple[str, ...]
    data: dict[str, dict[str, Any]]


def labelled_sources(teacher: Teacher, train_files: Sequence[str | Path]) -> dict[str, list[Path]]:
    """Task -> labelled files: `train_files` (a single-task teacher only), else the files the teacher's record
    names (training and pretraining files; a student's own record names its teacher's).

    Raises:
        InvalidInput: `train_files` for a joint teacher, or a recorded file that is gone (naming it).
    """
    from newsdesk.errors import InvalidInput

    if train_files:
        if len(teacher.tasks) > 1:
            raise InvalidInput(f"{teacher.version} is a joint model ({', '.join(teacher.tasks)}): its student "
                               "learns from the files its record names; leave out --train", {"field": "train_files"})
        return {teacher.tasks[0]: [Path(f) for f in train_files]}
    out: dict[str, list[Path]] = {}
    for task in teacher.tasks:
        record = teacher.data.get(task, {})
        files = [Path(f["path"]) for f in [*record.get("train", []), *record.get("pretrain", [])] if f.get("path")]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise InvalidInput(f"the {task} training file {missing[0]} that {teacher.version} was trained on is gone: "
                               "give the labelled files with --train", {"field": "train_files"})
        out[task] = files
    return out


def gather(teacher: Teacher, labelled: Mapping[str, Sequence[Any]], dev: Mapping[str, Sequence[Any]],
           unlabelled: Sequence[str], limit: int, seed: int) -> tuple[DistilData, dict[str, int]]:
    """The student's texts: every labelled row (task -> rows with .text/.label), then up to `limit` unlabelled texts
    (seeded sample), each text once; dev texts are left out of both (they judge the student). Also the counts."""
    held_out = {row.text for rows in dev.values() for row in rows}
    index: dict[str, int] = {}
    texts: list[str] = []
    labels: dict[str, list[str | None]] = {task: [] for task in teacher.tasks}

    def add(text: str) -> int:
        if text not in index:
            index[text] = len(texts)
            texts.append(text)
            for values in labels.values():
                values.append(None)
        return index[text]

    dropped = 0
    for task, rows in labelled.items():
        for row in rows:
            if row.text in held_out or not row.text.strip():
                dropped += 1
                continue
            labels[task][add(row.text)] = row.label
    n_labelled = len(texts)
    pool = sorted({t for t in unlabelled if t.strip() and t not in index and t not in held_out})
    random.Random(seed).shuffle(pool)
    for text in pool[:limit]:
        add(text)
    counts = {"labelled_texts": n_labelled, "unlabelled_texts": len(texts) - n_labelled,
              "unlabelled_pool": len(pool), "dropped_dev_or_empty": dropped}
    return DistilData(texts, labels), counts


def prepare_student(session_url: str, settings: Any, teacher: Teacher, args: StudentArgs, *, staged: Path,
                    train_files: Sequence[str | Path] = (), unlabelled_files: Sequence[str | Path] = (),
                    dev_file: str | Path | None = None) -> Any:
    """Distil `teacher` into a student in `staged` and evaluate student, teacher and each task's current version on
    the same dev rows (the teacher's stored check set, or `dev_file` for a single-task teacher): a
    `finetune.pipeline.Prepared` whose rule is `StudentRule` (one task) or a `JointRule` with the tolerance.

    Raises:
        InvalidInput: no labelled files, a bad row, no dev rows, or --dev for a joint teacher.
    """
    from finetune import registry
    from finetune.checkset import read_check_set, save_check_set
    from finetune.data import LabelledText, file_fingerprint, read_labelled, read_texts
    from finetune.gate import JointRule, StudentRule
    from finetune.model import read_tasks
    from finetune.pipeline import Prepared, champion_score, evaluate_folder
    from newsdesk.db import session_scope
    from newsdesk.errors import InvalidInput

    task_labels = {task: tuple(labels) for task, labels in read_tasks(teacher.folder).items()}
    sources = labelled_sources(teacher, train_files)
    labelled = {task: read_labelled(files, task_labels[task]) for task, files in sources.items()}
    if dev_file is not None:
        if len(teacher.tasks) > 1:
            raise InvalidInput("a joint teacher's student is judged on the teacher's stored check set: leave out "
                               "--dev", {"field": "dev_file"})
        dev = {teacher.tasks[0]: read_labelled([dev_file], task_labels[teacher.tasks[0]])}
        dev_info: dict[str, Any] = {teacher.tasks[0]: file_fingerprint(dev_file, task_labels[teacher.tasks[0]])}
    else:
        stored = read_check_set(teacher.folder)
        dev = {task: [LabelledText(text, label) for text, label in stored.get(task, [])] for task in teacher.tasks}
        dev_info = {task: {"check_set_of": teacher.version, "rows": len(rows)} for task, rows in dev.items()}
    empty = [task for task, rows in dev.items() if not rows]
    if empty:
        raise InvalidInput(f"{teacher.version} has no stored {empty[0]} check set to judge its student on: give a dev "
                           "file with --dev", {"field": "dev_file"})
    unlabelled = [text for f in unlabelled_files for text in read_texts(f)]
    data, counts = gather(teacher, labelled, dev, unlabelled, args.unlabelled_rows, args.seed)
    if counts["labelled_texts"] == 0:
        raise InvalidInput("the student needs labelled rows (--train FILE)", {"field": "train_files"})
    result = distil_classifier(teacher.folder, data, args, out_dir=staged, device=settings.device)
    save_check_set(staged, dev)
    tolerance = settings.finetune.inference_tolerance
    per_task: dict[str, dict[str, Any]] = {}
    for task, rows in dev.items():
        started = time.monotonic()
        report = evaluate_folder(staged, task, rows)
        student_s = time.monotonic() - started
        started = time.monotonic()
        teacher_report = evaluate_folder(teacher.folder, task, rows)
        teacher_s = time.monotonic() - started
        with session_scope(session_url) as session:
            current = registry.current_row(session, task)
            current_version = current.version if current is not None else ""
        if current_version == teacher.version:  # the same model on the same rows: the figure just measured
            champion_value, champion_version = teacher_report["macro_f1"], teacher.version
        else:
            champion_value, champion_version = champion_score(session_url, task, rows, settings)
        loss = round(teacher_report["macro_f1"] - report["macro_f1"], 4)
        per_task[task] = {"macro_f1": report["macro_f1"], "accuracy": report["accuracy"],
                          "weighted_f1": report["weighted_f1"], "dev": report,
                          "champion": {"version": champion_version or None, "macro_f1": champion_value},
                          "student": {"teacher": teacher.version, "teacher_macro_f1": teacher_report["macro_f1"],
                                      "loss_vs_teacher": loss, "layers": result.details["layers"],
                                      "teacher_layers": result.details["teacher_layers"], "tolerance": tolerance,
                                      # both on torch float32 in this process, one after the other: a rough ratio
                                      "dev_speedup_torch_float32": round(teacher_s / max(student_s, 1e-9), 2)}}
        log.info("student of %s, %s: macro-F1 %.4f vs teacher %.4f (loses %.4f)", teacher.version, task,
                 report["macro_f1"], teacher_report["macro_f1"], loss)
    records = {task: {"train": [file_fingerprint(f, task_labels[task]) for f in files],
                      "teacher": {"version": teacher.version, "path": str(teacher.folder)},
                      "unlabelled": [file_fingerprint(f, None) for f in unlabelled_files],
                      "dev": dev_info[task], **counts}
               for task, files in sources.items()}
    rows = counts["labelled_texts"] + counts["unlabelled_texts"]
    if len(teacher.tasks) == 1:
        task = teacher.tasks[0]
        champion = per_task[task]["champion"]
        # no current version: the teacher's figure is the bar
        bar = champion["macro_f1"] if champion["macro_f1"] is not None else per_task[task]["student"][
            "teacher_macro_f1"]
        metrics = {**per_task[task], "champion": {**champion, "macro_f1": bar}, **result.details}
        label = "current" if champion["macro_f1"] is not None else f"teacher {teacher.version}"
        return Prepared(staged, metrics, bar, champion["version"] or teacher.version, records[task], rows,
                        result.train_seconds, result.details,
                        rule=StudentRule(tolerance=tolerance, champion_label=label))
    return Prepared(staged, {"tasks": per_task, **result.details}, None, "", {"tasks": records}, rows,
                    result.train_seconds, result.details, per_task=per_task,
                    rule=JointRule(tuple(per_task), margin=tolerance))
