"""The composition root: one `Runtime` per process wires settings, the sentiment model, the recommender and the worker.

Built once by the process's entry point (`newsdesk serve`, `newsdesk worker`, a command that needs a model) and
handed to `web.create_app(settings, runtime=...)` and the worker, so a `serve` process and its in-process worker
share ONE classifier handle (one loaded model). The service modules are imported here statically; tests build a
`Runtime` with fakes (`Runtime(settings, classifier_handle=FakeHandle())`) instead of patching imports.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from finetune import service as finetune_service
from finetune.classifier import SentimentClassifier
from newsdesk.errors import NewsdeskError, Unavailable
from newsdesk.settings import Settings
from newsdesk.worker import Worker
from recsys import service as recsys_service

log = logging.getLogger(__name__)


class ClassifierSource(Protocol):
    """What the runtime needs of a classifier handle (`finetune.service.ClassifierHandle` or a test fake)."""

    def get(self) -> SentimentClassifier: ...


class Runtime:
    """Settings plus the process's long-lived objects: the classifier handle, the recommender and the worker."""

    def __init__(self, settings: Settings, *, classifier_handle: ClassifierSource | None = None) -> None:
        self.settings = settings
        self.classifier_handle: ClassifierSource = (classifier_handle if classifier_handle is not None
                                                    else finetune_service.ClassifierHandle(settings))
        self._worker: Worker | None = None
        self._lock = threading.Lock()

    def classifier(self) -> SentimentClassifier | None:
        """The current sentiment classifier, or None while no model is in service (messages stay pending)."""
        try:
            return self.classifier_handle.get()
        except Unavailable as exc:
            log.info("no sentiment classifier: %s", exc.message)
            return None

    def recommender(self) -> recsys_service.Recommender:
        """The process's recommender (its snapshot of vectors, index and collaborative map)."""
        return recsys_service.get_recommender(self.settings)

    def warm_recommender(self) -> bool:
        """Load the recommender snapshot now; False (logged) when there is nothing to serve yet."""
        try:
            self.recommender().snapshot()
        except NewsdeskError as exc:  # no catalog/index yet: the first request will say so
            log.info("recommender not warmed: %s", exc.message)
            return False
        return True

    @property
    def worker(self) -> Worker | None:
        """The worker started by `start_worker` (None when this process runs none)."""
        return self._worker

    def start_worker(self) -> Worker:
        """Start the scheduler and consumers in this process, sharing this runtime's classifier handle."""
        with self._lock:
            if self._worker is None:
                self._worker = Worker(self.settings, classifier_handle=self.classifier_handle)
                self._worker.start()
            return self._worker

    def stop_worker(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.stop()
                self._worker = None

