"""A student distilled from a real 2-step teacher (the base encoder): CLI, registry record, gate, joint teachers."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from store_support import DEV, TRAIN

from finetune import service
from finetune.classifier import TextClassifier
from finetune.distil import distil_loss, kept_layers, student_from
from finetune.gate import StudentRule, decide
from finetune.model import load_classifier_model
from newsdesk.cli import cli
from newsdesk.db import session_scope
from newsdesk.settings import Settings
from tests.integration.finetune.test_finetune_topic import SENTIMENT_DEV, SENTIMENT_TRAIN, TOPIC_DEV, TOPIC_TRAIN

pytestmark = pytest.mark.slow

TINY = {"max_steps": 2, "batch_size": 4, "max_length": 32}
TWEETS = ["$AAPL breaking out, going long", "$TSLA puts printing today", "Earnings call at 4pm for $MSFT",
          "$GOOG flat into the close", "Short $NFLX, guidance looks weak", "$AMZN record highs again",
          "$AAPL breaking out, going long",  # the stream repeats a tweet per ticker: learned once
          "Quarterly profit doubled on strong sales"]  # a dev text: never trained on


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {"train": tmp_path / "train.csv", "dev": tmp_path / "dev.csv", "tweets": tmp_path / "tweets.jsonl.gz"}
    out["train"].write_text(TRAIN)
    out["dev"].write_text(DEV)
    with gzip.open(out["tweets"], "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t, "ticker": "X"}) + "\n" for t in TWEETS)
    return out


def test_student_starts_from_every_other_layer_and_the_loss_is_the_teachers() -> None:
    from transformers import AutoModel

    from finetune.model import ClassifierModel
    from newsdesk.encoders import base_model_path

    assert kept_layers(6, 3) == [0, 2, 4] and kept_layers(6, 6) == list(range(6)) and kept_layers(6, 1) == [0]
    teacher = ClassifierModel(AutoModel.from_pretrained(str(base_model_path()), local_files_only=True),
                              {"sentiment": ("negative", "neutral", "positive")}).eval()
    student = student_from(teacher, [0, 2, 4])
    assert student.body.config.num_hidden_layers == 3 and len(student.body.encoder.layer) == 3
    kept, source = student.body.encoder.layer[1], teacher.body.encoder.layer[2]
    assert torch.equal(kept.output.dense.weight, source.output.dense.weight)
    assert torch.equal(student.heads["sentiment"].weight, teacher.heads["sentiment"].weight)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())

    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
    offsets, sizes = {"sentiment": 0}, {"sentiment": 3}
    unlabelled = torch.full((2, 1), -1)
    assert float(distil_loss(logits, logits, unlabelled, offsets, sizes, 2.0, 1.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distil_loss(logits, -logits, unlabelled, offsets, sizes, 2.0, 1.0)) > 0.1
    hard = torch.tensor([[0], [-1]])  # the hard label counts only where the row has one
    ce = torch.nn.functional.cross_entropy(logits[:1], torch.tensor([0]), reduction="sum") / 2
    assert float(distil_loss(logits, logits, hard, offsets, sizes, 2.0, 0.5)) == pytest.approx(0.5 * float(ce))


def test_student_rule_promotes_only_within_the_tolerance() -> None:
    rule = StudentRule(tolerance=0.005)
    assert decide("sentiment", "auto", {"macro_f1": 0.828}, {"macro_f1": 0.830}, rule).promote
    refused = decide("sentiment", "auto", {"macro_f1": 0.82}, {"macro_f1": 0.830}, rule)
    assert not refused.promote and refused.refused and "loses 0.0100 > 0.005" in refused.reason
    assert decide("sentiment", "force", {"macro_f1": 0.5}, {"macro_f1": 0.830}, rule).promote
    assert not decide("sentiment", "never", {"macro_f1": 0.9}, {"macro_f1": 0.830}, rule).promote


def test_distil_the_served_sentiment_model_from_the_cli(settings: Settings, db_url: str,
                                                        files: dict[str, Path]) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["finetune", "student"], obj=settings)
    assert result.exit_code == 4 and "no sentiment model is in service to distil" in result.output
    teacher = service.retrain(settings, "sentiment", train_files=[files["train"]], dev_file=files["dev"], args=TINY)
    assert teacher.promoted

    result = runner.invoke(cli, ["finetune", "student", "--unlabelled", str(files["tweets"]), "--max-steps", "3",
                                 "--arg", "batch_size=4", "--promote", "never"], obj=settings)
    assert result.exit_code == 0, result.output
    assert "kept: promotion disabled" in result.output
    with session_scope(settings.database_url) as s:
        current = service.current_version(s, "sentiment")
        student = service.list_versions(s, "sentiment")[0]
        run = service.list_training_runs(s, "sentiment")[0]
    assert current.version == teacher.version and student.status == "candidate" and student.version != teacher.version
    info = student.metrics["student"]
    assert info["teacher"] == teacher.version and info["layers"] == [0, 2, 4] and info["teacher_layers"] == 6
    assert info["loss_vs_teacher"] == pytest.approx(info["teacher_macro_f1"] - student.metrics["macro_f1"], abs=1e-4)
    assert student.metrics["champion"]["version"] == teacher.version and student.metrics["dev"]["n"] == 6
    assert student.data["teacher"]["version"] == teacher.version and student.data["train"][0]["rows"] == 12
    # 12 labelled rows; 6 distinct tweets, the dev text among them left out
    assert student.data["labelled_texts"] == 12 and student.data["unlabelled_texts"] == 6
    assert student.data["unlabelled"][0]["rows"] == len(TWEETS)  # lines of the gzipped file, not of its bytes
    assert student.args["student_of"] == teacher.version and student.args["max_steps"] == 3
    assert run.version == student.version and run.progress["step"] == run.progress["total"] == 3

    clf = TextClassifier(student.path, precision="float32")  # a classifier folder like any version's
    assert clf.model.body.config.num_hidden_layers == 3 and len(clf.predict(["Sales rose 12%"])) == 1
    assert (student.path / "check_set.jsonl").is_file()  # its serving paths are checked on the same rows
    _, _, meta = load_classifier_model(Path(teacher.path))
    assert clf.max_length == meta["max_length"] == 32

    # a student of the student learns from the files its record names (its teacher's)
    with session_scope(settings.database_url) as s:
        service.promote(s, settings, "sentiment", student.version)
    again = service.distil(settings, "sentiment", args={"max_steps": 1, "batch_size": 4, "layers": 2},
                           promote="force")
    assert again.promoted and again.metrics["student"]["layers"] == [0, 1]
    assert again.metrics["student"]["teacher"] == student.version

    result = runner.invoke(cli, ["finetune", "student", "--arg", "alpha=2"], obj=settings)
    assert result.exit_code == 3 and "alpha" in result.output
    result = runner.invoke(cli, ["finetune", "student", "--teacher", "v-none"], obj=settings)
    assert result.exit_code == 4


def test_joint_teacher_gives_a_joint_student(settings: Settings, db_url: str, tmp_path: Path) -> None:
    paths = {}
    for name, text in (("st", SENTIMENT_TRAIN), ("sd", SENTIMENT_DEV), ("tt", TOPIC_TRAIN), ("td", TOPIC_DEV)):
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text(text)
    teacher = service.retrain(settings, "multitask", train_files=[paths["st"]], dev_file=paths["sd"],
                              topic_train_files=[paths["tt"]], topic_dev_file=paths["td"], args=TINY)
    assert teacher.promoted
    with pytest.raises(Exception, match="joint model"):
        service.distil(settings, "topic", train_files=[paths["st"]])
    outcome = service.distil(settings, "topic", args={"max_steps": 2, "batch_size": 4}, promote="never")
    assert not outcome.promoted and set(outcome.per_task) == {"sentiment", "topic"}
    with session_scope(settings.database_url) as s:
        sentiment = service.get_version(s, "sentiment", outcome.version)
        topic = service.get_version(s, "topic", outcome.version)
    assert sentiment.path == topic.path and topic.metrics["student"]["teacher"] == teacher.version
    assert topic.metrics["dev"]["n"] == 6 and sentiment.metrics["dev"]["n"] == 3
    clf = TextClassifier(topic.path, precision="float32")
    assert clf.tasks == ("sentiment", "topic") and clf.model.body.config.num_hidden_layers == 3
