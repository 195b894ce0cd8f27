"""Commands: `finetune sentiment|topic|multitask|student|recsys`, `models list|show|promote|rollback`, `classify`,
`eval sentiment|topic`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from finetune.vocabulary import PROMOTE_MODES, TASKS, Task
from newsdesk.cli_context import pass_settings
from newsdesk.errors import InvalidInput
from newsdesk.settings import Settings

if TYPE_CHECKING:
    from finetune.pipeline import TrainOutcome

PROMOTE = click.Choice(PROMOTE_MODES)
LABEL_TASK = click.Choice([Task.SENTIMENT.value, Task.TOPIC.value])


def _parse_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`--arg key=value` pairs -> dict, values parsed as JSON where possible (numbers, booleans)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise InvalidInput(f"--arg needs key=value, got {pair!r}", {"field": "arg"})
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _print_outcome(outcome: TrainOutcome) -> None:
    """Prints the run's result; a candidate the gate refused then exits 5 with the reason (GateRejected)."""
    if outcome.per_task:
        value = " ".join(f"{task}_{outcome.primary_metric}={v:.4f}" if v is not None else f"{task}=n/a"
                         for task, v in outcome.per_task.items())
    else:
        value = f"{outcome.primary_metric}=" + (f"{outcome.primary_value:.4f}" if outcome.primary_value is not None
                                                else "n/a")
    click.echo(f"run {outcome.run_id}: {outcome.task} {outcome.version} {value} "
               f"in {outcome.train_seconds:.0f}s -> {outcome.reason}")
    click.echo(f"saved to {outcome.path}")
    if outcome.gate is not None:
        outcome.gate.raise_if_refused()  # exit 5: the version stays registered as a candidate


def _classifier_args(extra: tuple[str, ...], **given: Any) -> dict[str, Any]:
    args = _parse_args(extra)
    args.update({key: value for key, value in given.items() if value is not None})
    return args


@click.group("finetune")
def finetune_group() -> None:
    """Fine-tune the sentiment/topic classifiers (or one joint model) or the behaviour encoder, evaluate, register
    and gate."""


@finetune_group.command("sentiment")
@click.option("--train", "train_files", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="CSV (text,label) or JSONL training file; repeat for several sources.")
@click.option("--pretrain", "pretrain_files", multiple=True, type=click.Path(dir_okay=False),
              help="Labelled file from a related source, learned first (e.g. tweets before PhraseBank); repeatable.")
@click.option("--dev", "dev_file", type=click.Path(dir_okay=False), default=None,
              help="Dev file for early stopping and the promotion gate (default: a 10% split of --train).")
@click.option("--promote", type=PROMOTE, default="auto", show_default=True,
              help="auto: only if it beats the current model by the configured margin.")
@click.option("--resume", is_flag=True, help="Continue the newest interrupted run from its last checkpoint.")
@click.option("--epochs", type=float, default=None, help="Maximum epochs (early stopping may end sooner).")
@click.option("--max-steps", type=int, default=None, help="Stop after this many optimiser steps.")
@click.option("--seed", type=int, default=None)
@click.option("--preset", type=click.Choice(["demo"]), default=None, help="demo: a short run for the demo data.")
@click.option("--arg", "extra", multiple=True, help="Any SentimentArgs field as key=value (repeatable).")
@pass_settings
def sentiment_command(settings: Settings, train_files: tuple[str, ...], pretrain_files: tuple[str, ...],
                      dev_file: str | None, promote: str, resume: bool, epochs: float | None,
                      max_steps: int | None, seed: int | None,
                      preset: str | None, extra: tuple[str, ...]) -> None:
    """Fine-tune the 3-class sentiment classifier and register it as a new version."""
    from finetune.service import retrain

    args = _classifier_args(extra, epochs=epochs, max_steps=max_steps, seed=seed, preset=preset)
    _print_outcome(retrain(settings, "sentiment", train_files=train_files, dev_file=dev_file, promote=promote,
                           args=args, trigger="cli", resume=resume, pretrain_files=pretrain_files))


@finetune_group.command("topic")
@click.option("--train", "train_files", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="CSV (text,label) or JSONL training file; the label set is taken from it; repeatable.")
@click.option("--dev", "dev_file", type=click.Path(dir_okay=False), default=None,
              help="Dev file for the promotion gate (default: a 10% split of --train, near-duplicates grouped).")
@click.option("--promote", type=PROMOTE, default="auto", show_default=True,
              help="auto: only if it beats the current topic model by the configured margin.")
@click.option("--resume", is_flag=True, help="Continue the newest interrupted run from its last checkpoint.")
@click.option("--epochs", type=float, default=None)
@click.option("--max-steps", type=int, default=None, help="Stop after this many optimiser steps.")
@click.option("--seed", type=int, default=None)
@click.option("--arg", "extra", multiple=True, help="Any ClassifierArgs field as key=value (repeatable).")
@pass_settings
def topic_command(settings: Settings, train_files: tuple[str, ...], dev_file: str | None, promote: str,
                  resume: bool, epochs: float | None, max_steps: int | None, seed: int | None,
                  extra: tuple[str, ...]) -> None:
    """Fine-tune a topic classifier (labels from the training data) and register it as a new version."""
    from finetune.service import retrain

    args = _classifier_args(extra, epochs=epochs, max_steps=max_steps, seed=seed)
    _print_outcome(retrain(settings, "topic", train_files=train_files, dev_file=dev_file, promote=promote,
                           args=args, trigger="cli", resume=resume))


@finetune_group.command("multitask")
@click.option("--sentiment-train", "sentiment_files", multiple=True, required=True,
              type=click.Path(dir_okay=False), help="Sentiment training file (text,label); repeatable.")
@click.option("--topic-train", "topic_files", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Topic training file (text,label); repeatable.")
@click.option("--sentiment-dev", type=click.Path(dir_okay=False), default=None,
              help="Sentiment dev file (default: a grouped 10% split of the sentiment training rows).")
@click.option("--topic-dev", type=click.Path(dir_okay=False), default=None,
              help="Topic dev file (default: a grouped 10% split of the topic training rows).")
@click.option("--pretrain", "pretrain_files", multiple=True, type=click.Path(dir_okay=False),
              help="Sentiment rows from a related source, learned first; repeatable.")
@click.option("--promote", type=PROMOTE, default="auto", show_default=True,
              help="auto: for both tasks, only if it loses on neither against the current models.")
@click.option("--resume", is_flag=True, help="Continue the newest interrupted joint run from its last checkpoint.")
@click.option("--epochs", type=float, default=None)
@click.option("--max-steps", type=int, default=None, help="Stop after this many optimiser steps.")
@click.option("--seed", type=int, default=None)
@click.option("--preset", type=click.Choice(["demo"]), default=None, help="demo: a short run for the demo data.")
@click.option("--arg", "extra", multiple=True, help="Any ClassifierArgs field as key=value (repeatable).")
@pass_settings
def multitask_command(settings: Settings, sentiment_files: tuple[str, ...], topic_files: tuple[str, ...],
                      sentiment_dev: str | None, topic_dev: str | None, pretrain_files: tuple[str, ...],
                      promote: str, resume: bool, epochs: float | None, max_steps: int | None, seed: int | None,
                      preset: str | None, extra: tuple[str, ...]) -> None:
    """Fine-tune one joint model (shared encoder, a sentiment and a topic head) and register it for both tasks."""
    from finetune.service import retrain

    args = _classifier_args(extra, epochs=epochs, max_steps=max_steps, seed=seed, preset=preset)
    _print_outcome(retrain(settings, "multitask", train_files=sentiment_files, dev_file=sentiment_dev,
                           topic_train_files=topic_files, topic_dev_file=topic_dev, promote=promote, args=args,
                           trigger="cli", resume=resume, pretrain_files=pretrain_files))


@finetune_group.command("student")
@click.option("--task", type=LABEL_TASK, default="sentiment", show_default=True,
              help="Whose served version to distil (a joint teacher gives a joint student).")
@click.option("--teacher", default=None, help="Version to distil (default: the current one of --task).")
@click.option("--layers", type=click.IntRange(1, 24), default=None,
              help="Transformer layers the student keeps (default 3 of MiniLM's 6: layers 0, 2, 4).")
@click.option("--train", "train_files", multiple=True, type=click.Path(dir_okay=False),
              help="Labelled CSV/JSONL for the hard labels (default: the files the teacher was trained on).")
@click.option("--unlabelled", "unlabelled_files", multiple=True, type=click.Path(dir_okay=False),
              help="Unlabelled texts (CSV with a text column, JSONL with {\"text\": ...}, .gz too) learned from the "
                   "teacher's outputs alone; a seeded sample of at most --arg unlabelled_rows (10000).")
@click.option("--dev", "dev_file", type=click.Path(dir_okay=False), default=None,
              help="Dev file for the gate (default: the check set stored with the teacher).")
@click.option("--promote", type=PROMOTE, default="auto", show_default=True,
              help="auto: only if it loses at most finetune.inference_tolerance macro-F1 against the current model.")
@click.option("--epochs", type=float, default=None)
@click.option("--max-steps", type=int, default=None, help="Stop after this many optimiser steps.")
@click.option("--seed", type=int, default=None)
@click.option("--arg", "extra", multiple=True, help="Any StudentArgs field as key=value (repeatable).")
@pass_settings
def student_command(settings: Settings, task: str, teacher: str | None, layers: int | None,
                    train_files: tuple[str, ...], unlabelled_files: tuple[str, ...], dev_file: str | None,
                    promote: str, epochs: float | None, max_steps: int | None, seed: int | None,
                    extra: tuple[str, ...]) -> None:
    """Distil the served classifier into a smaller, faster student and register it as a new version (gated)."""
    from finetune.service import distil

    args = _classifier_args(extra, layers=layers, epochs=epochs, max_steps=max_steps, seed=seed)
    _print_outcome(distil(settings, task, teacher=teacher, train_files=train_files,
                          unlabelled_files=unlabelled_files, dev_file=dev_file, promote=promote, args=args))


# `newsdesk finetune recsys` is recsys's (recsys/cli.py: its targets and served evaluation live there); the root
# CLI adds it to this group.


@click.group("models")
def models_group() -> None:
    """List, inspect, promote and roll back model versions."""


@models_group.command("list")
@click.option("--task", type=click.Choice(TASKS), default=None)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_settings
def list_command(settings: Settings, task: str | None, as_json: bool) -> None:
    """Registered versions, newest first (* marks the one in service)."""
    from finetune.service import list_versions
    from newsdesk.db import session_scope

    with session_scope(settings.database_url) as session:
        versions = list_versions(session, task)
    if not versions and not as_json:
        click.echo("no model versions yet")
    for v in versions:
        if as_json:
            click.echo(json.dumps(_version_dict(v), default=str))
        else:
            value = f"{v.primary_value:.4f}" if v.primary_value is not None else "n/a"
            click.echo(f"{'*' if v.is_current else ' '} {v.task:<9} {v.version:<22} {v.status:<11} "
                       f"{v.primary_metric}={value}  {v.created_at:%Y-%m-%d %H:%M}")


def _version_dict(v: Any) -> dict[str, Any]:
    out = asdict(v)
    out["path"] = str(v.path)
    return out


@models_group.command("show")
@click.argument("task", type=click.Choice(TASKS))
@click.argument("version", required=False)
@pass_settings
def show_command(settings: Settings, task: str, version: str | None) -> None:
    """Everything recorded about VERSION (default: the current one) as JSON."""
    from finetune.service import current_version, get_version
    from newsdesk.db import session_scope
    from newsdesk.errors import NotFound

    with session_scope(settings.database_url) as session:
        info = get_version(session, task, version) if version else current_version(session, task)
    if info is None:
        raise NotFound(f"no current {task} model")
    click.echo(json.dumps(_version_dict(info), indent=2, default=str))


@models_group.command("promote")
@click.argument("task", type=click.Choice(TASKS))
@click.argument("version")
@pass_settings
def promote_command(settings: Settings, task: str, version: str) -> None:
    """Serve VERSION now (serving processes pick it up within seconds)."""
    from finetune.service import promote
    from newsdesk.db import session_scope

    with session_scope(settings.database_url) as session:
        info = promote(session, settings, task, version, actor="cli")
    click.echo(f"{task} {info.version} is now current")


@models_group.command("rollback")
@click.argument("task", type=click.Choice(TASKS))
@pass_settings
def rollback_command(settings: Settings, task: str) -> None:
    """Serve the previously promoted version of TASK again."""
    from finetune.service import rollback
    from newsdesk.db import session_scope

    with session_scope(settings.database_url) as session:
        info = rollback(session, settings, task, actor="cli")
    click.echo(f"{task} rolled back to {info.version}")


@click.command("classify")
@click.argument("source", type=click.Path(allow_dash=True))
@click.option("--model", "version", default=None, help="Version to use (default: the current one).")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True)
@click.option("--task", type=LABEL_TASK, default="sentiment", show_default=True, help="Which labels to predict.")
@pass_settings
def classify_command(settings: Settings, source: str, version: str | None, batch_size: int, task: str) -> None:
    """Classify SOURCE (CSV with a text column, JSONL with {"text": ...}, or - for stdin): one JSON line per text."""
    from finetune.data import read_texts
    from finetune.service import classify_texts

    texts = read_texts(source, stdin=sys.stdin)
    for pred in classify_texts(settings, texts, version=version, batch_size=batch_size, task=task):
        click.echo(json.dumps({"label": pred.label, "scores": pred.scores}))


def _eval_command(task: str) -> click.Command:
    @click.command(task)
    @click.option("--data", "data_file", required=True, type=click.Path(dir_okay=False), help="Labelled CSV/JSONL.")
    @click.option("--model", "version", default=None, help="Version to evaluate (default: the current one).")
    @click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
    @pass_settings
    def command(settings: Settings, data_file: str, version: str | None, as_json: bool) -> None:
        from finetune.service import evaluate_version

        _print_report(evaluate_version(settings, task, data_file, version=version), as_json)

    command.help = (f"Accuracy, macro-F1, weighted F1, per-class precision/recall/F1 and the confusion matrix of a "
                    f"{task} version.")
    return command


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"model {report['version']} on {report['data']} ({report['n']} rows)")
    click.echo(f"accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  "
               f"weighted F1 {report['weighted_f1']:.4f}")
    width = max(10, *(len(label) for label in report["per_class"]))
    click.echo(f"{'label':<{width}} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}")
    for label, c in report["per_class"].items():
        click.echo(f"{label:<{width}} {c['precision']:>9.4f} {c['recall']:>7.4f} {c['f1']:>7.4f} {c['support']:>8}")
    labels = report["confusion"]["labels"]
    click.echo("confusion (rows = gold, columns = predicted): " + ", ".join(labels))
    for label, row in zip(labels, report["confusion"]["matrix"], strict=True):
        click.echo(f"  {label:<{width}} " + " ".join(f"{n:>6}" for n in row))


eval_sentiment_command = _eval_command("sentiment")
eval_topic_command = _eval_command("topic")
