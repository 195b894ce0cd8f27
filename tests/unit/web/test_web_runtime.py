"""The composition root as the app sees it: one runtime per process, one classifier handle shared with the worker."""

from __future__ import annotations

from collections.abc import Sequence

from flask.testing import FlaskClient
from web_support import bearer, make_users

from finetune.classifier import Prediction
from monitor import jobs as monitor_jobs
from monitor import service as monitor_service
from newsdesk import db
from newsdesk.runtime import Runtime
from newsdesk.settings import Settings
from web import create_app


class KeywordClassifier:
    """"falls" -> negative, else neutral (the served classifier's contract: version, predict, predict_tasks)."""

    version = "fake-7"
    tasks = ("sentiment",)

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[Prediction]:
        out = []
        for text in texts:
            label = "negative" if "falls" in text else "neutral"
            out.append(Prediction(label, {k: 0.8 if k == label else 0.1 for k in ("negative", "neutral", "positive")}))
        return out

    def predict_tasks(self, texts: Sequence[str], batch_size: int = 64) -> list[dict[str, Prediction]]:
        return [{"sentiment": p} for p in self.predict(texts, batch_size)]


class FakeHandle:
    def __init__(self) -> None:
        self.classifier = KeywordClassifier()
        self.calls = 0

    def get(self) -> KeywordClassifier:
        self.calls += 1
        return self.classifier


def test_a_runtime_built_with_fakes_serves_the_app(settings: Settings, db_url: str) -> None:
    handle = FakeHandle()
    app = create_app(settings, runtime=Runtime(settings, classifier_handle=handle), testing=True)
    client: FlaskClient = app.test_client()
    tokens = make_users(db_url)
    response = client.post("/api/v1/ingest", headers=bearer(tokens["ingest"]),
                           json=[{"id": "r1", "text": "$ABC falls hard"}, {"id": "r2", "text": "$ABC holds"}])
    assert response.status_code == 202, response.get_json()
    assert handle.calls == 1
    with db.session_scope(db_url) as session:
        stored = {m.source_id: (m.label, m.model_version) for m in monitor_service.latest_messages(session, 10)}
    assert stored == {"r1": ("negative", "fake-7"), "r2": ("neutral", "fake-7")}


def test_no_sentiment_model_means_no_classifier(settings: Settings, db_url: str) -> None:
    assert Runtime(settings).classifier() is None  # messages are then stored unclassified, not refused


def test_serve_and_its_worker_share_one_classifier_handle(settings: Settings, db_url: str) -> None:
    """`serve` with the in-process worker: the web app and monitor's jobs/consumers use the same handle."""
    runtime = Runtime(settings)
    app = create_app(settings, runtime=runtime, start_worker=True, testing=True)
    try:
        assert runtime.worker is not None and runtime.worker.scheduler.running
        assert runtime.worker.classifier_handle is runtime.classifier_handle
        assert monitor_jobs.classifier_handle_for(settings) is runtime.classifier_handle
        assert app.extensions["newsdesk_runtime"] is runtime
        assert {job.id for job in runtime.worker.scheduler.get_jobs()} >= {"monitor-rules", "recsys:refresh-index"}
    finally:
        runtime.stop_worker()
    assert runtime.worker is None
