"""Real 2-step fine-tunes of the base encoder on 12 rows: registry, gating, classify, eval, live swap, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import store_support  # this folder's helpers (tests/integration/finetune/store_support.py)
import torch
from click.testing import CliRunner
from store_support import TINY

from finetune import service
from finetune.classifier import ClassifierHandle, SentimentClassifier
from finetune.model import pooled_vectors
from newsdesk.cli import cli
from newsdesk.db import session_scope
from newsdesk.errors import InvalidInput
from newsdesk.settings import Settings

pytestmark = pytest.mark.slow

@pytest.fixture
def sentiment_files(tmp_path: Path) -> tuple[Path, Path]:
    return store_support.sentiment_files(tmp_path)


def test_train_register_classify_eval_and_swap(settings: Settings, db_url: str,
                                               sentiment_files: tuple[Path, Path]) -> None:
    train, dev = sentiment_files
    first = service.retrain(settings, "sentiment", train_files=[train], dev_file=dev, args=TINY)
    assert first.promoted and first.primary_metric == "macro_f1" and 0 <= first.primary_value <= 1
    folder = settings.models_dir / "sentiment" / first.version
    for name in ("metrics.json", "args.json", "data.json", "timing.json", "classifier.json", "head.safetensors"):
        assert (folder / name).is_file(), name
    data = json.loads((folder / "data.json").read_text())
    assert data["train"][0]["rows"] == 12 and len(data["train"][0]["sha256"]) == 64
    assert json.loads((folder / "args.json").read_text())["max_steps"] == 2
    assert not list((settings.models_dir / "sentiment").glob(".staging-*"))
    with session_scope(db_url) as session:  # the trainer's progress callback wrote the run's row (#17)
        run = service.list_training_runs(session, "sentiment")[0]
        assert run.progress["step"] == run.progress["total"] == 2 and run.progress["at"]

    handle = ClassifierHandle(settings, refresh_s=0)
    assert handle.get().version == first.version
    served, plain = handle.get(), SentimentClassifier(folder, precision="float32")
    fast = SentimentClassifier(folder, precision="bfloat16")
    assert plain.dtype is None and fast.dtype == torch.bfloat16 and served.precision in ("float32", "bfloat16")
    probe = ["Sales rose 12%", "Operating loss widened", "The office is in Espoo"]
    fast_vectors = pooled_vectors(fast.model, fast.tokenizer, probe, 32, autocast=fast.dtype)
    float_vectors = pooled_vectors(plain.model, plain.tokenizer, probe, 32)
    assert fast_vectors.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(fast_vectors, float_vectors).min() > 0.99
    with pytest.raises(InvalidInput, match="inference precision"):
        SentimentClassifier(folder, precision="int4")

    runner = CliRunner()
    texts = [f"Sales rose {i}%" if i % 2 else f"Loss widened by {i} mn" for i in range(150)]
    stdin = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    result = runner.invoke(cli, ["classify", "-", "--batch-size", "16"], input=stdin, obj=settings)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 150 and set(lines[0]) == {"label", "scores"}
    assert set(lines[0]["scores"]) == {"negative", "neutral", "positive"}
    expected = handle.get().predict(texts)  # same order as the input, whatever the batching
    assert [line["label"] for line in lines] == [p.label for p in expected]
    assert all(abs(sum(line["scores"].values()) - 1) < 1e-4 for line in lines)

    result = runner.invoke(cli, ["eval", "sentiment", "--data", str(dev), "--json"], obj=settings)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 6 and set(report["per_class"]) == {"negative", "neutral", "positive"}
    assert sum(map(sum, report["confusion"]["matrix"])) == 6

    second = service.retrain(settings, "sentiment", train_files=[train], dev_file=dev, promote="never",
                             args={**TINY, "seed": 7})
    assert not second.promoted and handle.get().version == first.version
    with session_scope(settings.database_url) as s:
        service.promote(s, settings, "sentiment", second.version)
    assert handle.get().version == second.version  # picked up without a restart
    with session_scope(settings.database_url) as s:
        assert service.rollback(s, settings, "sentiment").version == first.version
    assert handle.get().version == first.version

    result = runner.invoke(cli, ["models", "list"], obj=settings)
    assert result.exit_code == 0 and f"* sentiment {first.version}" in result.output

    # a folder saved before heads had task names (one unnamed head, no "tasks") still loads and predicts the same
    from safetensors.torch import load_file, save_file

    old = folder.parent / "old-format"
    shutil.copytree(folder, old)
    head = load_file(str(old / "head.safetensors"))
    save_file({"weight": head["sentiment.weight"], "bias": head["sentiment.bias"]}, str(old / "head.safetensors"))
    meta = json.loads((old / "classifier.json").read_text())
    del meta["tasks"]
    (old / "classifier.json").write_text(json.dumps(meta))
    legacy = SentimentClassifier(old, precision="float32")
    assert legacy.tasks == ("sentiment",) and legacy.predict(probe) == plain.predict(probe)


def test_cli_rejects_bad_labels_with_row_and_exit_code(settings: Settings, db_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nfine,neutral\nmoon,bullish\n")
    result = CliRunner().invoke(cli, ["finetune", "sentiment", "--train", str(bad)], obj=settings)
    assert result.exit_code == 3 and f"{bad}:3: unknown label 'bullish'" in result.output
    result = CliRunner().invoke(cli, ["classify", "-"], input='{"text": "x"}\n', obj=settings)
    assert result.exit_code == 4 and "no sentiment model" in result.output


def test_interrupted_run_resumes_from_its_checkpoint(settings: Settings, db_url: str,
                                                     sentiment_files: tuple[Path, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from finetune.callbacks import ProgressBar

    train, dev = sentiment_files
    args = {**TINY, "max_steps": 4}
    original = ProgressBar.on_step_end

    def stop_after_two(self, args_, state, control, **kw):
        original(self, args_, state, control, **kw)
        if state.global_step == 2 and not getattr(self, "resumed", False):
            raise KeyboardInterrupt

    monkeypatch.setattr(ProgressBar, "on_step_end", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        service.retrain(settings, "sentiment", train_files=[train], dev_file=dev, args=args)
    with session_scope(settings.database_url) as s:
        assert service.list_training_runs(s)[0].status == "interrupted"
        assert service.current_version(s, "sentiment") is None  # nothing half-trained is served
    monkeypatch.setattr(ProgressBar, "on_step_end", original)
    outcome = service.retrain(settings, "sentiment", train_files=[train], dev_file=dev, args=args, resume=True)
    assert outcome.metrics["resumed_from"] == "checkpoint-1" and outcome.promoted  # saved after step 1


def test_pretrain_stage_from_the_cli_then_resume_reuses_it(settings: Settings, db_url: str,
                                                            sentiment_files: tuple[Path, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from finetune import train as train_module
    from finetune.args import SentimentArgs
    from finetune.data import LABELS, read_labelled
    from newsdesk.encoders import base_model_path

    train, dev = sentiment_files
    tweets = tmp_path / "tweets.csv"
    tweets.write_text("text,label\n$AAPL to the moon,positive\n$TSLA crashing hard,negative\n"
                      "$MSFT earnings on Tuesday,neutral\nbought more $NVDA calls,positive\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["finetune", "sentiment", "--pretrain", str(tweets), "--train", str(train),
                                 "--dev", str(dev), "--max-steps", "2", "--arg", "batch_size=4",
                                 "--arg", "max_length=32"], obj=settings)
    assert result.exit_code == 0, result.output
    with session_scope(settings.database_url) as s:
        version = service.current_version(s, "sentiment").version
    folder = settings.models_dir / "sentiment" / version
    data = json.loads((folder / "data.json").read_text())
    assert data["pretrain"][0]["rows"] == 4 and data["pretrain_rows"] == 4 and data["train"][0]["rows"] == 12
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["pretrain"]["rows"] == 4 and metrics["pretrain"]["steps"] == 2

    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nfine,neutral\nmoon,bullish\n")
    result = runner.invoke(cli, ["finetune", "sentiment", "--pretrain", str(bad), "--train", str(train)],
                           obj=settings)
    assert result.exit_code == 3 and f"{bad}:3: unknown label 'bullish'" in result.output

    # the main stage starts from the first stage's weights; a resumed run reuses a finished first stage
    rows, dev_rows, pre = read_labelled([train]), read_labelled([dev]), read_labelled([tweets])
    args = SentimentArgs(max_steps=2, batch_size=4, max_length=32)
    starts: list[dict[str, torch.Tensor] | None] = []
    fit = train_module._fit_classifier

    def spy(*a, **k):
        starts.append(k.get("init"))
        return fit(*a, **k)

    monkeypatch.setattr(train_module, "_fit_classifier", spy)
    work = tmp_path / "work"
    result = train_module.train_sentiment(base_model_path(), rows, dev_rows, args, work_dir=work,
                                          out_dir=tmp_path / "out", device="cpu", pretrain_rows=pre)
    assert len(starts) == 2 and starts[0] is None and starts[1] is not None
    assert result.steps == 4 and (work / "pretrain" / "weights.safetensors").is_file()
    fresh = train_module._new_model(base_model_path(), {"sentiment": LABELS}, args, {}).state_dict()
    key = "heads.sentiment.weight"
    assert not torch.equal(starts[1][key], fresh[key])  # trained in stage 1, then carried
    again = train_module.train_sentiment(base_model_path(), rows, dev_rows, args, work_dir=work,
                                         out_dir=tmp_path / "again", device="cpu", pretrain_rows=pre, resume=True)
    assert len(starts) == 3 and again.details["pretrain"]["resumed"] is True  # only the main stage ran again
    assert torch.equal(starts[2][key], starts[1][key])
