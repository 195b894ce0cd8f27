"""Real 2-step fine-tunes of topic and joint (sentiment + topic) models: CLI, classify/eval shapes, per-task gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from finetune import service
from finetune.classifier import ClassifierHandle
from newsdesk.cli import cli
from newsdesk.db import session_scope
from newsdesk.settings import Settings

pytestmark = pytest.mark.slow

TOPIC_TRAIN = """text,label
"Apple beats on EPS, revenue above estimates https://t.co/a1",Earnings
Microsoft to report quarterly results after the bell https://t.co/a2,Earnings
Tesla earnings call scheduled for Wednesday https://t.co/a3,Earnings
Netflix Q3 EPS $3.10 vs. $2.13 estimate https://t.co/a4,Earnings
SEC sues crypto exchange over unregistered securities https://t.co/b1,Legal | Regulation
EU regulators open antitrust probe into Google ads https://t.co/b2,Legal | Regulation
Judge blocks the merger on competition grounds https://t.co/b3,Legal | Regulation
New rules for bank capital proposed by the Fed board https://t.co/b4,Legal | Regulation
Microsoft agrees to buy Activision for $69 billion https://t.co/c1,M&A | Investments
Private equity firm takes a stake in the retailer https://t.co/c2,M&A | Investments
Pfizer to acquire biotech Seagen in $43 billion deal https://t.co/c3,M&A | Investments
Broadcom in talks to buy VMware https://t.co/c4,M&A | Investments
"""

TOPIC_DEV = """text,label
Amazon reports record quarterly revenue,Earnings
Meta earnings preview: what to expect,Earnings
Court fines the bank over money laundering,Legal | Regulation
Regulators tighten rules on short selling,Legal | Regulation
Oracle to acquire Cerner for $28 billion,M&A | Investments
Investor group buys a 10% stake in the airline,M&A | Investments
"""

SENTIMENT_TRAIN = """text,label
Operating profit rose to EUR 13.1 mn from EUR 8.7 mn,positive
Net sales increased by 18% year on year,positive
Shares jumped after the upbeat earnings report,positive
The company's offices are located in Helsinki,neutral
The annual general meeting will be held on 20 March,neutral
The firm has 120 employees in Finland,neutral
Sales fell sharply due to weak demand,negative
The company announced layoffs of 300 workers,negative
Shares plunged after the profit warning,negative
"""

SENTIMENT_DEV = """text,label
Quarterly profit doubled on strong sales,positive
The meeting takes place in Espoo,neutral
Net loss deepened in the third quarter,negative
"""

TINY = ["--max-steps", "2", "--arg", "batch_size=4", "--arg", "max_length=32"]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, text in (("topic_train", TOPIC_TRAIN), ("topic_dev", TOPIC_DEV), ("sentiment_train", SENTIMENT_TRAIN),
                       ("sentiment_dev", SENTIMENT_DEV)):
        out[name] = tmp_path / f"{name}.csv"
        out[name].write_text(text)
    return out


def test_topic_train_classify_eval_from_the_cli(settings: Settings, db_url: str, files: dict[str, Path]) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["finetune", "topic", "--train", str(files["topic_train"]), "--dev",
                                 str(files["topic_dev"]), *TINY], obj=settings)
    assert result.exit_code == 0, result.output
    assert "topic v" in result.output and "promoted: first topic model" in result.output
    with session_scope(settings.database_url) as s:
        version = service.current_version(s, "topic")
        assert service.current_version(s, "sentiment") is None
    labels = {"Earnings", "Legal | Regulation", "M&A | Investments"}  # from the data, stored with the version
    assert set(version.data["labels"]) == labels and version.metrics["dev"]["n"] == 6
    classifier = json.loads((version.path / "classifier.json").read_text())
    assert set(classifier["tasks"]) == {"topic"} and set(classifier["tasks"]["topic"]) == labels

    texts = ["Google to buy a cybersecurity startup", "Nvidia beats on revenue", "FTC sues Amazon", "x"]
    stdin = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    result = runner.invoke(cli, ["classify", "--task", "topic", "-"], input=stdin, obj=settings)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 4 and all(set(line) == {"label", "scores"} for line in lines)
    assert all(set(line["scores"]) == labels and line["label"] in labels for line in lines)
    assert all(abs(sum(line["scores"].values()) - 1) < 1e-4 for line in lines)
    expected = service.classify_texts(settings, texts, task="topic")
    assert [line["label"] for line in lines] == [p.label for p in expected]  # input order
    result = runner.invoke(cli, ["classify", "-"], input=stdin, obj=settings)  # sentiment is still the default
    assert result.exit_code == 4 and "no sentiment model" in result.output

    result = runner.invoke(cli, ["eval", "topic", "--data", str(files["topic_dev"]), "--json"], obj=settings)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 6 and report["task"] == "topic" and set(report["per_class"]) == labels
    assert sum(map(sum, report["confusion"]["matrix"])) == 6 and 0 <= report["weighted_f1"] <= 1
    result = runner.invoke(cli, ["eval", "topic", "--data", str(files["topic_dev"])], obj=settings)
    assert result.exit_code == 0 and "Legal | Regulation" in result.output and "macro-F1" in result.output
    unknown = files["topic_dev"].with_name("unknown.csv")
    unknown.write_text("text,label\nGold hits a record,Gold | Metals | Materials\n")
    result = runner.invoke(cli, ["eval", "topic", "--data", str(unknown)], obj=settings)
    assert result.exit_code == 3 and f"{unknown}:2: unknown label 'Gold | Metals | Materials'" in result.output


@pytest.mark.parametrize("content, message", [
    ("text,label\nfine,Earnings\nmoon,Crypto\n", "{path}:3: unknown label 'Crypto'"),
    ("text,label\nfine,Earnings\nempty label here,\n", "{path}:3: empty label"),
])
def test_bad_topic_labels_exit_3_naming_file_and_line(settings: Settings, db_url: str, files: dict[str, Path],
                                                       tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    runner = CliRunner()
    # a dev (or eval) file with a label the training data lacks, or an empty label anywhere
    result = runner.invoke(cli, ["finetune", "topic", "--train", str(files["topic_train"]), "--dev", str(bad),
                                 *TINY], obj=settings)
    assert result.exit_code == 3 and message.format(path=bad) in result.output
    assert "Traceback" not in result.output
    if "empty" in message:
        result = runner.invoke(cli, ["finetune", "topic", "--train", str(bad), *TINY], obj=settings)
        assert result.exit_code == 3 and message.format(path=bad) in result.output


def test_joint_model_serves_both_tasks_from_one_pass_and_is_gated_per_task(
        settings: Settings, db_url: str, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["finetune", "multitask", "--sentiment-train", str(files["sentiment_train"]),
                                 "--sentiment-dev", str(files["sentiment_dev"]), "--topic-train",
                                 str(files["topic_train"]), "--topic-dev", str(files["topic_dev"]), *TINY],
                           obj=settings)
    assert result.exit_code == 0, result.output
    assert "promoted for sentiment and topic" in result.output
    with session_scope(settings.database_url) as s:
        sentiment, topic = service.current_version(s, "sentiment"), service.current_version(s, "topic")
    assert sentiment.version == topic.version and sentiment.path == topic.path  # one model, both tasks
    assert sentiment.metrics["dev"]["n"] == 3 and topic.metrics["dev"]["n"] == 6

    served = ClassifierHandle(settings, refresh_s=0).get()
    assert served.tasks == ("sentiment", "topic") and served.passes == 1
    texts = ["Shares plunged after the SEC sued the firm", "Profit rose on record sales", "Meeting in Oulu"]
    calls = []
    model = served.parts["sentiment"].model
    original = model.pool
    monkeypatch.setattr(model, "pool", lambda *a, **k: calls.append(1) or original(*a, **k))
    both = served.predict_tasks(texts, batch_size=64)
    assert len(calls) == 1  # one encoder pass for both heads
    assert [set(row) for row in both] == [{"sentiment", "topic"}] * 3
    assert set(both[0]["topic"].scores) == {"Earnings", "Legal | Regulation", "M&A | Investments"}
    assert [row["sentiment"] for row in both] == served.predict(texts)  # sentiment output unchanged

    # per-task gate: a challenger that loses on topic only is refused for both tasks, with the reason
    scores = iter([0.99, 0.0])  # the challenger's sentiment and topic macro-F1 on dev

    def rigged(folder, task, rows, device="cpu"):
        report = real_evaluate(folder, task, rows, device)
        if ".staging-" in str(folder):
            report["macro_f1"] = next(scores)
        return report

    from finetune import pipeline
    real_evaluate = pipeline.evaluate_folder
    monkeypatch.setattr(pipeline, "evaluate_folder", rigged)
    outcome = service.retrain(settings, "multitask", train_files=[files["sentiment_train"]],
                              dev_file=files["sentiment_dev"], topic_train_files=[files["topic_train"]],
                              topic_dev_file=files["topic_dev"], args={"max_steps": 2, "batch_size": 4,
                                                                       "max_length": 32, "seed": 3})
    assert not outcome.promoted and "loses on topic (" in outcome.reason  # not on sentiment
    with session_scope(settings.database_url) as s:
        assert service.current_version(s, "sentiment").version == sentiment.version
        assert service.current_version(s, "topic").version == topic.version
        kept = service.get_version(s, "topic", outcome.version)
    assert kept.status == "candidate"


def test_uncategorised_catalog_items_get_the_served_topic(settings: Settings, db_url: str,
                                                          files: dict[str, Path], tmp_path: Path) -> None:
    from recsys import service as recsys_service
    from recsys.tables import Item

    runner = CliRunner()
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("item_id,title,description,category\n"
                       "n1,Oracle to acquire Cerner for $28 billion,,\n"
                       "n2,Court fines the bank over money laundering,,\n"
                       "n3,Amazon reports record quarterly revenue,,\n"
                       "m1,Heat,A heist thriller,Crime\n")
    assert runner.invoke(cli, ["catalog", "import", str(catalog)], obj=settings).exit_code == 0
    result = runner.invoke(cli, ["index", "build"], obj=settings)  # no topic model yet: nothing labelled
    assert result.exit_code == 0 and "predicted topic" not in result.output, result.output
    result = runner.invoke(cli, ["finetune", "topic", "--train", str(files["topic_train"]), *TINY], obj=settings)
    assert result.exit_code == 0, result.output
    labels = {"Earnings", "Legal | Regulation", "M&A | Investments"}

    result = runner.invoke(cli, ["index", "build", "--sync", "--json"], obj=settings)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["topics_labelled"] == 3  # the item with a category keeps it, unlabelled
    with session_scope(settings.database_url) as s:
        items = {i.item_id: i for i in s.query(Item)}
        version = service.current_version(s, "topic").version
        assert {items[i].topic for i in ("n1", "n2", "n3")} <= labels
        assert all(items[i].topic_version == version and 0 < items[i].topic_score <= 1 for i in ("n1", "n2", "n3"))
        assert items["m1"].topic is None and items["m1"].shown_category == "Crime"
        offered = recsys_service.list_interests(s).topics
        assert "Crime" in offered and {items[i].topic for i in ("n1", "n2", "n3")} <= set(offered)
    assert json.loads(runner.invoke(cli, ["index", "build", "--sync", "--json"],
                                    obj=settings).stdout)["topics_labelled"] == 0  # nothing stale: no relabel

    catalog.write_text("item_id,title,description,category\n"  # n3's text changes: relabelled; n1 gets a category
                       "n1,Oracle to acquire Cerner for $28 billion,,Deals\n"
                       "n3,SEC sues crypto exchange over unregistered securities,,\n")
    assert runner.invoke(cli, ["catalog", "import", str(catalog)], obj=settings).exit_code == 0
    assert json.loads(runner.invoke(cli, ["index", "build", "--sync", "--json"],
                                    obj=settings).stdout)["topics_labelled"] == 1
    with session_scope(settings.database_url) as s:
        items = {i.item_id: i for i in s.query(Item)}
        assert items["n1"].topic is None and items["n1"].shown_category == "Deals"
        assert items["n3"].topic in labels and items["n3"].topic_hash == items["n3"].text_hash
        feed = recsys_service.recommend_for_user(s, settings, "nobody", k=4)
        assert {r.item_id: r.category for r in feed}.get("n2") == items["n2"].topic

    # a second topic version promoted over the unchanged catalog: the scheduled index refresh relabels the items
    from recsys import jobs as recsys_jobs

    assert recsys_jobs.refresh_index(settings) == "idle"  # the labels are the served version's: nothing to do
    result = runner.invoke(cli, ["finetune", "topic", "--train", str(files["topic_train"]), *TINY, "--seed", "5",
                                 "--promote", "force"], obj=settings)
    assert result.exit_code == 0, result.output
    with session_scope(settings.database_url) as s:
        second = service.current_version(s, "topic").version
    assert second != version
    assert recsys_jobs.refresh_index(settings) == "relabelled"
    with session_scope(settings.database_url) as s:
        items = {i.item_id: i for i in s.query(Item)}
        assert {items[i].topic_version for i in ("n2", "n3")} == {second}
        assert {items[i].topic for i in ("n2", "n3")} <= labels
        assert items["n1"].topic is None and items["m1"].topic is None  # categorised: not labelled
        feed = recsys_service.recommend_for_user(s, settings, "nobody", k=4)
        assert {r.item_id: r.category for r in feed}.get("n2") == items["n2"].topic  # the served snapshot follows
    assert recsys_jobs.refresh_index(settings) == "idle"
