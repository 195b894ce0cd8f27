"""The two retraining pipelines: data -> train -> evaluate challenger and champion -> publish -> register -> gate."""

from __future__ import annotations

import json
import logging
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from finetune import gate, registry
from finetune.args import BehaviourArgs, ClassifierArgs
from finetune.behaviour import BehaviourSource, ServedRule, train_to_targets
from finetune.checkset import save_check_set
from finetune.data import (
    LABELS,
    LabelledText,
    Positive,
    TaskData,
    consecutive_pairs,
    file_fingerprint,
    label_set,
    load_item_texts,
    load_positives,
    read_interactions_file,
    read_labelled,
    split_dev,
)
from finetune.evaluate import PRIMARY, classification_report, evaluate_encoder_ranking
from finetune.gate import GateDecision
from finetune.vocabulary import ModelEventKind
from newsdesk.db import session_scope, utcnow
from newsdesk.encoders import base_model_path
from newsdesk.errors import InvalidInput
from newsdesk.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOutcome:
    run_id: int
    task: str
    version: str
    metrics: dict[str, Any]
    primary_metric: str
    primary_value: float | None
    promoted: bool
    reason: str
    train_seconds: float = 0.0
    path: Path | None = None
    gate: GateDecision | None = None  # the structured decision behind `promoted` and `reason`
    per_task: dict[str, float | None] = field(default_factory=dict)  # a joint version: task -> primary metric


@dataclass
class Prepared:
    """A trained, evaluated model in its staging folder, ready to publish."""

    staged: Path
    metrics: dict[str, Any]
    champion_value: float | None
    champion_label: str
    data: dict[str, Any]
    data_rows: int
    train_seconds: float
    details: dict[str, Any]
    rule: Any = None  # the task's own gate rule (None: the primary metric's margin rule)
    per_task: dict[str, dict[str, Any]] = field(default_factory=dict)  # a joint model: each task's metrics


@dataclass(frozen=True)
class TaskFiles:
    """A classifier task's labelled files: training files and an optional dev file (else a split of them)."""

    train: tuple[str | Path, ...]
    dev: str | Path | None = None


def evaluate_folder(folder: Path, task: str, rows: Sequence[LabelledText], device: str = "cpu") -> dict[str, Any]:
    """Classification report of the `task` head of the model in `folder` on labelled rows (a gold label the model
    does not know counts as an error)."""
    from finetune.classifier import TextClassifier

    clf = TextClassifier(folder, device=device)
    labels = clf.labels_of(task)
    preds = clf.predict([r.text for r in rows], task=task)
    known = list(labels) + sorted({r.label for r in rows} - set(labels))
    return classification_report([r.label for r in rows], [p.label for p in preds], known)


def evaluate_sentiment_folder(folder: Path, rows: Sequence[Any], device: str = "cpu") -> dict[str, Any]:
    """Classification report of the sentiment model in `folder` on labelled rows."""
    return evaluate_folder(folder, "sentiment", rows, device)


def read_task_data(settings: Settings, task: str, files: TaskFiles, args: ClassifierArgs
                   ) -> tuple[TaskData, dict[str, Any]]:
    """(rows and labels, data record) of one classifier task: sentiment's three labels, or (topic) the label set of
    the training files; dev from the dev file (the configured one if none is given) or a grouped split.

    Raises:
        InvalidInput: no training files, a bad row (naming file and line), a dev label the training data lacks,
            fewer than two labels.
    """
    if not files.train:
        raise InvalidInput(f"no {task} training files given (--train FILE)", {"field": "train_files"})
    rows = read_labelled(files.train, LABELS if task == "sentiment" else None)
    labels = LABELS if task == "sentiment" else label_set(rows)
    configured = {"sentiment": settings.finetune.sentiment_dev_path, "topic": settings.finetune.topic_dev_path}
    dev_path = files.dev or configured.get(task) or None
    if dev_path:
        train_rows, dev_rows = rows, read_labelled([dev_path], labels)
        dev_info: dict[str, Any] = file_fingerprint(dev_path, labels)
    else:
        train_rows, dev_rows = split_dev(rows, args.dev_fraction, args.seed)
        dev_info = {"split_from_train": args.dev_fraction, "grouped": "link-stripped text", "rows": len(dev_rows),
                    "seed": args.seed}
    if len({r.label for r in train_rows}) < 2:
        raise InvalidInput(f"{task} training data needs at least two different labels", {"field": "train_files"})
    data = {"train": [file_fingerprint(f, labels) for f in files.train], "dev": dev_info, "labels": list(labels),
            "train_rows": len(train_rows), "dev_rows": len(dev_rows)}
    return TaskData(train_rows, dev_rows, labels), data


def champion_score(session_url: str, task: str, dev_rows: Sequence[LabelledText],
                   settings: Settings | None = None) -> tuple[float | None, str]:
    """(primary metric, version) of the current `task` version on the very same dev rows; (None, "") if none."""
    with session_scope(session_url) as session:
        current = registry.current_row(session, task)
        current_info = (current.version, _folder(settings, current)) if current is not None else None
    if current_info is None:
        return None, ""
    return evaluate_folder(current_info[1], task, dev_rows)[PRIMARY[task][0]], current_info[0]


def _folder(settings: Settings | None, row: Any) -> Path:
    """A version's folder on this machine (fetched from the model store when there is one)."""
    return registry.model_folder(settings, row) if settings is not None else Path(row.path)


def prepare_classifier(session_url: str, settings: Settings, files: dict[str, TaskFiles], args: ClassifierArgs, *,
                       work_dir: Path, staged: Path, resume: bool, pretrain_files: Sequence[str | Path] = ()
                       ) -> Prepared:
    """Read each task's data, fine-tune one model with a head per task (after a first stage on `pretrain_files`,
    sentiment rows, if any), evaluate the challenger and each task's current model on the same dev rows."""
    from finetune.train import train_classifier

    data, records = {}, {}
    for task, task_files in files.items():
        data[task], records[task] = read_task_data(settings, task, task_files, args)
    pretrain_rows = read_labelled(pretrain_files) if pretrain_files else []
    if pretrain_files and len({r.label for r in pretrain_rows}) < 2:
        raise InvalidInput("pretraining data needs at least two different labels", {"field": "pretrain_files"})
    if pretrain_files and "sentiment" not in files:
        raise InvalidInput("pretraining files are sentiment rows: train a sentiment or joint model with them",
                           {"field": "pretrain_files"})
    if pretrain_files:
        records["sentiment"]["pretrain"] = [file_fingerprint(f) for f in pretrain_files]
        records["sentiment"]["pretrain_rows"] = len(pretrain_rows)
    result = train_classifier(base_model_path(settings.base_model_path), data, args, work_dir=work_dir,
                              out_dir=staged, device=settings.device, resume=resume,
                              pretrain={"sentiment": pretrain_rows} if pretrain_rows else None)
    save_check_set(staged, {task: task_data.dev for task, task_data in data.items()})  # for the serving paths' check
    per_task: dict[str, dict[str, Any]] = {}
    for task, task_data in data.items():
        report = evaluate_folder(staged, task, task_data.dev)
        champion_value, champion_label = champion_score(session_url, task, task_data.dev, settings)
        per_task[task] = {"macro_f1": report["macro_f1"], "accuracy": report["accuracy"],
                          "weighted_f1": report["weighted_f1"], "dev": report,
                          "champion": {"version": champion_label or None, "macro_f1": champion_value}}
    rows = sum(len(d.train) + (0 if records[t]["dev"].get("split_from_train") is None else len(d.dev))
               for t, d in data.items())
    if len(files) == 1:
        task = next(iter(files))
        return Prepared(staged, {**per_task[task], **result.details}, per_task[task]["champion"]["macro_f1"],
                        per_task[task]["champion"]["version"] or "", records[task], rows, result.train_seconds,
                        result.details)
    metrics = {"tasks": per_task, **result.details}
    return Prepared(staged, metrics, None, "", {"tasks": records}, rows, result.train_seconds, result.details,
                    per_task=per_task)


def _holdout_last(positives: list[Positive], fraction: float = 0.1, min_likes: int = 5
                  ) -> tuple[list[Positive], list[Positive]]:
    """(train, dev): each user's newest `fraction` of likes (users with >= `min_likes`) held out."""
    by_user: dict[str, list[Positive]] = defaultdict(list)
    for p in positives:
        by_user[p.user_id].append(p)
    train, dev = [], []
    for likes in by_user.values():
        n_dev = max(1, int(len(likes) * fraction)) if len(likes) >= min_likes else 0
        train.extend(likes[:len(likes) - n_dev])
        dev.extend(likes[len(likes) - n_dev:])
    return train, dev


def ranking_of(folder: Path | None, item_texts: dict[str, str], train_likes: dict[str, list[str]],
               dev_likes: dict[str, set[str]], k: int, device: str, max_length: int) -> dict[str, float]:
    """Recall/NDCG@k of the SentenceTransformer in `folder` (None: the base encoder), texts cut to `max_length`."""
    from newsdesk.encoders import load_sentence_encoder

    model = load_sentence_encoder(folder, device=device, cache=False)
    model.max_seq_length = max_length  # the same cut for challenger and champion

    def encode(texts: list[str], batch_size: int) -> Any:
        return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=True)

    return evaluate_encoder_ranking(encode, item_texts, train_likes, dev_likes, k=k)


def prepare_recsys(session_url: str, settings: Settings, dev_file: str | Path | None, args: BehaviourArgs, *,
                   work_dir: Path, staged: Path, resume: bool, behaviour: BehaviourSource | None = None) -> Prepared:
    """Fine-tune the recsys encoder and evaluate it against the current (or base) encoder.

    objective "collab" (default): targets and the served-ranking evaluation come from `behaviour` (recsys's
    `ServedBehaviour`, wired by the composition root); "pairs": contrastive pairs from the interactions table.

    Raises:
        InvalidInput: "collab" without a behaviour source, or not enough data.
    """
    from finetune.train import train_behaviour

    if args.objective == "collab":
        if behaviour is None:
            raise InvalidInput("the collab objective needs recsys's targets: run it with `newsdesk finetune recsys` "
                               "(or --arg objective=pairs)", {"field": "objective"})
        return _prepare_collab(session_url, settings, args, staged=staged, behaviour=behaviour)

    with session_scope(session_url) as session:
        item_texts = load_item_texts(session)
        positives = load_positives(session, args.positive_rating)
        current = registry.current_row(session, "recsys")
        champion = (current.version, _folder(settings, current)) if current is not None else None
    if not item_texts:
        raise InvalidInput("the catalog is empty: import items first (newsdesk catalog import)")
    dev_path = dev_file or settings.finetune.recsys_dev_path or None
    if dev_path:
        train_pos, dev_pos = positives, read_interactions_file(dev_path, args.positive_rating)
        dev_info: dict[str, Any] = file_fingerprint(dev_path)
    else:
        train_pos, dev_pos = _holdout_last(positives)
        dev_info = {"holdout": "newest 10% of each user's likes", "rows": len(dev_pos)}
    pairs = [(item_texts[a], item_texts[b]) for a, b in consecutive_pairs(
        [p for p in train_pos if p.item_id in item_texts], args.max_gap, args.max_pairs, args.seed)]
    if len(pairs) < 2:
        raise InvalidInput(f"not enough liked pairs to train on ({len(pairs)}): import interactions first")
    result = train_behaviour(base_model_path(settings.base_model_path), pairs, args, work_dir=work_dir,
                             out_dir=staged, device=settings.device, resume=resume)
    train_likes: dict[str, list[str]] = defaultdict(list)
    for p in train_pos:
        train_likes[p.user_id].append(p.item_id)
    dev_likes: dict[str, set[str]] = defaultdict(set)
    for p in dev_pos:
        dev_likes[p.user_id].add(p.item_id)
    ours = ranking_of(staged, item_texts, train_likes, dev_likes, args.k, settings.device, args.max_length)
    theirs = ranking_of(champion[1] if champion else None, item_texts, train_likes, dev_likes, args.k,
                        settings.device, args.max_length)
    metric = PRIMARY["recsys"][0]
    data = {"items": len(item_texts), "positives": len(positives), "train_likes": len(train_pos),
            "dev": dev_info, "pairs": len(pairs), "positive_rating": args.positive_rating}
    metrics = {**ours, "champion": {"version": champion[0] if champion else "base", **theirs}, **result.details}
    return Prepared(staged, metrics, theirs[metric], champion[0] if champion else "base", data, len(positives),
                    result.train_seconds, result.details)


def _prepare_collab(session_url: str, settings: Settings, args: BehaviourArgs, *, staged: Path,
                    behaviour: BehaviourSource) -> Prepared:
    """Train text -> collaborative targets, then score challenger and champion on the served ranking (dev)."""
    with session_scope(session_url) as session:
        current = registry.current_row(session, "recsys")
        champion = (current.version, _folder(settings, current)) if current is not None else None
    data = behaviour.training_data(args)
    result = train_to_targets(base_model_path(settings.base_model_path), data, args, out_dir=staged,
                              device=settings.device)
    ours = behaviour.evaluate(staged, "challenger", args)
    theirs = behaviour.evaluate(champion[1] if champion else None, champion[0] if champion else "base", args)
    behaviour.keep_vectors(staged, "challenger")  # the catalog vectors ship with the version (index build reuses)
    label = champion[0] if champion else "base"
    details = {**result.details, "steps": result.steps, "device": result.device}
    metrics = {**ours, "champion": {"version": label, **theirs}, **details}
    info = {**behaviour.data_info(), "objective": "collab", "target_items": len(data.texts)}
    return Prepared(staged, metrics, theirs.get(f"recall@{args.k}"), label, info, len(data.texts), result.seconds,
                    details, rule=ServedRule(k=args.k, champion_label="current" if champion else "base encoder"))


def finish(session: Session, settings: Settings, task: str, version: str, run_id: int, prepared: Prepared,
           args: dict[str, Any], promote: str, actor: str) -> TrainOutcome:
    """Publish the staged folder, register the version and promote it if the gate allows."""
    champion = None
    if prepared.rule is not None:  # the task's own rule judges the champion's full figures (recsys: served)
        champion = prepared.metrics.get("champion")
    elif prepared.champion_value is not None:  # the champion's figures on the very same evaluation data
        champion = {**prepared.metrics.get("champion", {}), PRIMARY[task][0]: prepared.champion_value}
    # No recsys version in service: the challenger must at least beat the base encoder.
    label = "base encoder" if task == "recsys" and prepared.champion_label == "base" else "current"
    rule = prepared.rule or gate.default_rule(task, settings.finetune, label)
    decision = gate.decide(task, promote, prepared.metrics, champion, rule)
    ok, reason, metric, value = decision.promote, decision.reason, decision.metric, decision.candidate
    if prepared.rule is not None:  # stored with the version, so the console shows the figures and the reason
        prepared.metrics["gate"] = {"rule": type(prepared.rule).__name__, **decision.to_dict()}
    timing = {"train_seconds": prepared.train_seconds, "finished_at": utcnow().isoformat()}
    # The decision is kept with the version (metrics["gate"]): the console shows its figures, not just a reason.
    metrics = {**prepared.metrics, "gate": json.loads(json.dumps(decision.to_dict(), default=str))}
    path = registry.publish(prepared.staged, settings, task, version,
                            {"metrics.json": metrics, "args.json": args, "data.json": prepared.data,
                             "timing.json": timing})
    registry.register(session, task=task, version=version, path=path, metrics=metrics, args=args,
                      data=prepared.data, train_seconds=prepared.train_seconds, run_id=run_id)
    if ok:
        registry.set_current(session, task, version, actor=actor, detail={"reason": reason})
    else:
        registry.add_event(session, task, version, ModelEventKind.KEPT, actor, reason=reason)
    log.info("%s %s: %s", task, version, reason)
    return TrainOutcome(run_id, task, version, prepared.metrics, metric, value, ok, reason,
                        prepared.train_seconds, path, decision)


def finish_joint(session: Session, settings: Settings, version: str, run_id: int, prepared: Prepared,
                 args: dict[str, Any], promote: str, actor: str) -> TrainOutcome:
    """Publish a joint model once, register it as `version` of each of its tasks and promote it for all of them
    or for none (it must lose on no task against that task's current version; `prepared.rule`, a `JointRule`, may
    allow a margin)."""
    candidate = {task: m for task, m in prepared.per_task.items()}
    champion = {task: ({"macro_f1": m["champion"]["macro_f1"]} if m["champion"]["macro_f1"] is not None else None)
                for task, m in prepared.per_task.items()}
    decision = gate.decide(registry.JOINT, promote, candidate, champion,
                           prepared.rule or gate.JointRule(tuple(candidate)))
    ok, reason = decision.promote, decision.reason
    timing = {"train_seconds": prepared.train_seconds, "finished_at": utcnow().isoformat()}
    path = registry.publish(prepared.staged, settings, registry.JOINT, version,
                            {"metrics.json": prepared.metrics, "args.json": args, "data.json": prepared.data,
                             "timing.json": timing})
    tasks = list(prepared.per_task)
    for task, task_metrics in prepared.per_task.items():
        data = {**prepared.data["tasks"][task], "joint": {"tasks": tasks, "data": prepared.data["tasks"]}}
        registry.register(session, task=task, version=version, path=path,
                          metrics={**task_metrics, "joint": tasks}, args=args, data=data,
                          train_seconds=prepared.train_seconds, run_id=run_id)
    for task in tasks:
        if ok:
            registry.set_current(session, task, version, actor=actor, detail={"reason": reason, "joint": tasks})
        else:
            registry.add_event(session, task, version, "kept", actor, reason=reason)
    log.info("%s %s: %s", registry.JOINT, version, reason)
    return TrainOutcome(run_id, registry.JOINT, version, prepared.metrics, decision.metric, None, ok, reason,
                        prepared.train_seconds, path, decision,
                        per_task={t: m.get(decision.metric) for t, m in candidate.items()})


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
