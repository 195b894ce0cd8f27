"""ONNX export and the serving-path choice, on a tiny random BERT (real export, real ONNX Runtime, real checks)."""

from __future__ import annotations

import copy
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from finetune import serving
from finetune.checkset import save_check_set
from finetune.classifier import TextClassifier, load_served
from finetune.data import LABELS, LabelledText
from finetune.export import OnnxEngine, export_classifier, runtime_missing
from finetune.inference import (
    SELECTION_FILE,
    OnnxClassifierEngine,
    TorchClassifierEngine,
    cache_dir,
    label_quality,
    machine_signature,
)
from finetune.model import ClassifierModel, save_classifier_model
from newsdesk.encoders import base_model_path

TOPICS = ("markets", "earnings", "legal", "energy")
TEXTS = ["$AAPL beats on revenue, shares up 5% after hours", "Company reports a loss", "ok",
         "Regulators sue the bank over fraud allegations, stock slides in premarket trading on heavy volume",
         "Oil prices fall", "", "Dividend raised by 10 percent; buyback of $2B announced for next year"]


def tiny_model(folder: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide random BERT with a sentiment and a topic head (heads scaled so labels are not ties),
    saved as a classifier version folder under models/joint/."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base_model_path()), local_files_only=True)
    body = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=64, max_position_embeddings=128))
    model = ClassifierModel(body, {"sentiment": LABELS, "topic": TOPICS})
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.mul_(150.0)
    save_classifier_model(model, tokenizer, folder, max_length=64)
    return folder


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny") / "models" / "joint" / "v1")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def check_rows(clf: TextClassifier) -> dict[str, list[LabelledText]]:
    """Check rows whose gold labels are the float32 model's own labels (its macro-F1 there is 1.0)."""
    texts = [t for t in TEXTS if t] * 6
    return {task: [LabelledText(t, p.label) for t, p in zip(texts, clf.predict(texts, task=task))]
            for task in clf.tasks}


def test_exported_graph_gives_the_torch_probabilities_for_every_head(model_folder: Path, tmp_path: Path) -> None:
    clf = TextClassifier(model_folder)
    graph = export_classifier(copy.deepcopy(clf.model), tmp_path / "model.onnx")
    engine = OnnxClassifierEngine("onnx-float32", OnnxEngine(graph, clf.tokenizer, clf.max_length), clf.tasks)
    want = clf.predict_probs(TEXTS)
    got = engine.probs(TEXTS, None, 3)
    assert set(got) == {"sentiment", "topic"}
    for task in clf.tasks:
        assert got[task].shape == (len(TEXTS), len(clf.task_labels[task]))
        np.testing.assert_allclose(got[task].numpy(), want[task].numpy(), atol=1e-5)
    assert engine.probs([], None, 4)["topic"].shape[0] == 0


@pytest.mark.parametrize("per_text", [False, True], ids=["float32-batched", "int8-one-text-a-call"])
def test_labels_do_not_depend_on_the_texts_sharing_a_batch(model_folder: Path, tmp_path: Path,
                                                           per_text: bool) -> None:
    from finetune.export import INT8_CONFIGS, quantize

    clf = TextClassifier(model_folder)
    graph = export_classifier(copy.deepcopy(clf.model), tmp_path / "model.onnx")
    if per_text:
        graph = quantize(graph, tmp_path / "int8.onnx", INT8_CONFIGS[0])
    engine = OnnxEngine(graph, clf.tokenizer, clf.max_length, per_text=per_text, threads=2)
    alone = {t: engine.run([t])["sentiment"][0] for t in TEXTS}
    crowded = engine.run(TEXTS + [t.upper() * 3 for t in TEXTS], batch_size=5)["sentiment"]
    for i, text in enumerate(TEXTS):
        assert crowded[i].argmax() == alone[text].argmax()
        if per_text:  # nothing of a batch-mate reaches a text's quantisation scale: identical bits
            assert np.array_equal(crowded[i], alone[text])
        else:
            np.testing.assert_allclose(crowded[i], alone[text], atol=1e-5)


def test_auto_serves_the_fastest_passing_path_and_caches_the_choice(model_folder: Path, home: Path,
                                                                    tmp_path: Path) -> None:
    folder = tmp_path / "models" / "joint" / "v2"
    folder.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(model_folder, folder)
    save_check_set(folder, check_rows(TextClassifier(folder)))
    clf = TextClassifier(folder, version="v2")
    selection = serving.select_classifier_path(clf, home, "auto", 0.005)
    paths = {c.path: c for c in selection.checks}
    assert {"torch-float32", "onnx-float32", "onnx-int8", "onnx-int8-pc", "onnx-int8-rr"} <= set(paths)
    reference = paths["torch-float32"].quality["sentiment"]
    assert reference["agreement"] == 1.0 and reference["loss"] == 0.0 and reference["n"] == 72
    assert paths["onnx-float32"].ok and paths["onnx-float32"].quality["topic"]["loss"] == 0.0
    passed = [c for c in selection.checks if c.ok]
    assert clf.path == selection.chosen and selection.chosen in {c.path for c in passed}
    cache = cache_dir(home, folder)
    stored = json.loads((cache / SELECTION_FILE).read_text())
    assert stored["chosen"] == selection.chosen and stored["machine"]["cores"] >= 1
    # a second load on this machine reuses the graph and the choice: no export, no check
    exported = (cache / "model.onnx").stat().st_mtime_ns
    again = TextClassifier(folder, version="v2")
    assert serving.select_classifier_path(again, home, "auto", 0.005).chosen == selection.chosen
    assert (cache / "model.onnx").stat().st_mtime_ns == exported and again.path == selection.chosen
    assert [p.label for p in again.predict(TEXTS)] == [p.label for p in clf.predict(TEXTS)]


def test_quality_check_refuses_a_path_that_loses_more_than_the_tolerance(model_folder: Path, caplog) -> None:
    clf = TextClassifier(model_folder)
    texts = [t for t in TEXTS if t] * 4
    gold = {task: [p.label for p in clf.predict(texts, task=task)] for task in clf.tasks}
    worse = copy.deepcopy(clf.model)
    with torch.no_grad():  # a real path computing other labels: its sentiment head's rows rotated
        worse.heads["sentiment"].weight.copy_(worse.heads["sentiment"].weight.roll(1, dims=0))
    reference = TorchClassifierEngine(clf.model, clf.tokenizer, clf.max_length, None)
    degraded = TorchClassifierEngine(worse, clf.tokenizer, clf.max_length, None)
    degraded.name = "onnx-int8"

    def run(engine, batch):
        return {task: [clf.task_labels[task][i] for i in p.argmax(-1).tolist()]
                for task, p in engine.probs(batch, None, 8).items()}

    def judge(ref, out):
        return label_quality(ref, out, {t: list(g) for t, g in gold.items()}, clf.task_labels, 0.005)

    with caplog.at_level(logging.WARNING, logger="finetune.inference"):
        selection, engines = serving.run_selection("tiny", {}, reference, ["onnx-int8"], lambda name: degraded,
                                                   run, judge, texts)
    refused = next(c for c in selection.checks if c.path == "onnx-int8")
    assert not refused.ok and "sentiment macro-F1" in refused.reason and "> 0.005" in refused.reason
    assert refused.quality["topic"]["loss"] == 0.0 and refused.quality["sentiment"]["loss"] > 0.005
    assert selection.chosen == "torch-float32" and "onnx-int8" not in engines
    assert "path onnx-int8 refused: sentiment macro-F1" in caplog.text
    # without gold labels the same path is judged on agreement with the float32 labels
    ok, reason, _ = label_quality(run(reference, texts), run(degraded, texts), {}, clf.task_labels, 0.005)
    assert not ok and "of the float32 labels" in reason
    ok, _, _ = label_quality(run(reference, texts), run(degraded, texts), gold, clf.task_labels, 1.0)
    assert ok


def test_torch_serves_when_onnxruntime_is_missing(model_folder: Path, home: Path, monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    assert "onnxruntime is not installed" in runtime_missing()
    clf = TextClassifier(model_folder)
    with caplog.at_level(logging.WARNING):
        selection = serving.select_classifier_path(clf, home, "auto", 0.005)
    assert clf.path in ("torch-float32", "torch-bfloat16") and selection.chosen == clf.path
    onnx = [c for c in selection.checks if c.path.startswith("onnx")]
    assert onnx and all(not c.ok and "not installed" in c.reason for c in onnx)
    assert "refused: onnxruntime is not installed" in caplog.text
    assert machine_signature()["onnxruntime"] is None
    assert not (cache_dir(home, model_folder) / "model.onnx").exists()
    assert [p.label for p in clf.predict(TEXTS)] == [p.label for p in TextClassifier(model_folder).predict(TEXTS)]


def test_a_failed_export_leaves_the_torch_path(model_folder: Path, home: Path, monkeypatch) -> None:
    def broken(model, out):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(serving, "export_classifier", broken)
    clf = TextClassifier(model_folder)
    selection = serving.select_classifier_path(clf, home, "onnx-float32", 0.005)
    check = next(c for c in selection.checks if c.path == "onnx-float32")
    assert not check.ok and "unsupported operator" in check.reason
    assert selection.chosen == "torch-float32" == clf.path


def test_torch_choice_and_served_loading(model_folder: Path, settings) -> None:
    assert serving.select_classifier_path(TextClassifier(model_folder), settings.home, "torch") is None
    clf = load_served(settings, model_folder, "v1")  # the test settings say "torch"
    assert clf.path in ("torch-float32", "torch-bfloat16")
    from newsdesk.errors import InvalidInput

    with pytest.raises(InvalidInput, match="inference path"):
        serving.select_classifier_path(clf, settings.home, "onnx-int4")


def test_catalog_encoder_on_onnx_keeps_the_sentence_transformer_vectors(tmp_path: Path, home: Path) -> None:
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(1)
    raw = tmp_path / "raw"
    tokenizer = AutoTokenizer.from_pretrained(str(base_model_path()), local_files_only=True)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(str(raw))
    tokenizer.save_pretrained(str(raw))
    body = models.Transformer(str(raw), max_seq_length=64)
    st = SentenceTransformer(modules=[body, models.Pooling(32, "mean"), models.Normalize()], device="cpu")
    folder = tmp_path / "models" / "recsys" / "r1"
    st.save(str(folder))
    encoder = serving.load_catalog_encoder(folder, home, choice="onnx-float32")
    assert encoder.name == "onnx-float32"
    want = st.encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(encoder.encode(TEXTS, batch_size=3, normalize_embeddings=True), want, atol=1e-5)
    stored = json.loads((cache_dir(home, folder) / SELECTION_FILE).read_text())
    assert stored["chosen"] == "onnx-float32"
    assert next(c for c in stored["checks"] if c["path"] == "onnx-float32")["quality"]["neighbours_kept"] == 1.0


def test_serving_path_reads_the_choice_made_at_load(settings, db_url) -> None:
    from finetune import registry, service
    from finetune.inference import PathCheck, Selection, write_selection
    from newsdesk.db import session_scope
    from newsdesk.settings import FinetuneSettings

    auto = settings.replace(finetune=FinetuneSettings(inference_path="auto"))
    folder = settings.models_dir / "sentiment" / "s1"
    folder.mkdir(parents=True)
    with session_scope(settings.database_url) as session:
        assert service.serving_path(session, auto, "sentiment") == ""  # no current version
        registry.register(session, task="sentiment", version="s1", path=folder, metrics={"macro_f1": 0.8},
                          args={}, data={}, train_seconds=1.0, run_id=None)
        registry.set_current(session, "sentiment", "s1", actor="test")
        assert service.serving_path(session, auto, "sentiment") == ""  # not loaded by any process yet
        write_selection(cache_dir(settings.home, folder),
                        Selection("onnx-int8-pc", [PathCheck("onnx-int8-pc", True, "within tolerance", 900.0)], {}))
        assert service.serving_path(session, auto, "sentiment") == "onnx-int8-pc"
        assert service.serving_path(session, settings, "sentiment").startswith("torch-")
        assert service.serving_path(session, auto, "recsys") == ""  # the base encoder, not embedded with yet
