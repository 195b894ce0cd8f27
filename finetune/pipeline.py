"""The two retraining pipelines: data -> train -> evaluate challenger and champion -> publish -> register -> gate."""

from __future__ import annotations

import json
import logging
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from finetune import gate, registry
from finetune.args import BehaviourArgs, SentimentArgs
from finetune.behaviour import BehaviourSource, ServedRule, train_to_targets
from finetune.data import (
    Positive,
    consecutive_pairs,
    file_fingerprint,
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


def evaluate_sentiment_folder(folder: Path, rows: Sequence[Any], device: str = "cpu") -> dict[str, Any]:
    """Classification report of the sentiment model in `folder` on labelled rows."""
    from finetune.classifier import SentimentClassifier

    clf = SentimentClassifier(folder, device=device)
    preds = clf.predict([r.text for r in rows])
    return classification_report([r.label for r in rows], [p.label for p in preds], clf.labels)


def prepare_sentiment(session_url: str, settings: Settings, train_files: Sequence[str | Path],
                      dev_file: str | Path | None, args: SentimentArgs, *, work_dir: Path, staged: Path,
                      resume: bool, pretrain_files: Sequence[str | Path] = ()) -> Prepared:
    """Read data, fine-tune (after a first stage on `pretrain_files`, if any), evaluate the challenger and the
    current model on the same dev rows."""
    from finetune.train import train_sentiment

    if not train_files:
        raise InvalidInput("no training files given (--train FILE)", {"field": "train_files"})
    rows = read_labelled(train_files)
    pretrain_rows = read_labelled(pretrain_files) if pretrain_files else []
    if pretrain_files and len({r.label for r in pretrain_rows}) < 2:
        raise InvalidInput("pretraining data needs at least two different labels", {"field": "pretrain_files"})
    dev_path = dev_file or settings.finetune.sentiment_dev_path or None
    if dev_path:
        train_rows, dev_rows = rows, read_labelled([dev_path])
        dev_info: dict[str, Any] = file_fingerprint(dev_path)
    else:
        train_rows, dev_rows = split_dev(rows, args.dev_fraction, args.seed)
        dev_info = {"split_from_train": args.dev_fraction, "rows": len(dev_rows), "seed": args.seed}
    if len({r.label for r in train_rows}) < 2:
        raise InvalidInput("training data needs at least two different labels", {"field": "train_files"})
    result = train_sentiment(base_model_path(settings.base_model_path), train_rows, dev_rows, args,
                             work_dir=work_dir, out_dir=staged, device=settings.device, resume=resume,
                             pretrain_rows=pretrain_rows or None)
    report = evaluate_sentiment_folder(staged, dev_rows)
    champion_value, champion_label = None, ""
    with session_scope(session_url) as session:
        current = registry.current_row(session, "sentiment")
        current_info = (current.version, Path(current.path)) if current is not None else None
    if current_info is not None:  # the champion is scored on the very same dev rows
        champion_value = evaluate_sentiment_folder(current_info[1], dev_rows)["macro_f1"]
        champion_label = current_info[0]
    data = {"train": [file_fingerprint(f) for f in train_files], "dev": dev_info,
            "train_rows": len(train_rows), "dev_rows": len(dev_rows)}
    if pretrain_files:
        data["pretrain"] = [file_fingerprint(f) for f in pretrain_files]
        data["pretrain_rows"] = len(pretrain_rows)
    metrics = {"macro_f1": report["macro_f1"], "accuracy": report["accuracy"], "dev": report,
               "champion": {"version": champion_label or None, "macro_f1": champion_value}, **result.details}
    return Prepared(staged, metrics, champion_value, champion_label, data, len(rows), result.train_seconds,
                    result.details)


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
        champion = (current.version, Path(current.path)) if current is not None else None
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
        champion = (current.version, Path(current.path)) if current is not None else None
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


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
