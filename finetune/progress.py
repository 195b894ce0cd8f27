"""A running training's progress (stage, step, total, time left), throttled, to the sink of the current run."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

REPORT_EVERY_S = 10.0  # how often a running training's progress is written to its run row

# Where a training's progress goes: `finetune.service.retrain` sets a writer to the run's row for the duration of
# the run (the trainer calls back in the same thread); None outside a run (tests, notebooks): nothing is recorded.
PROGRESS_SINK: ContextVar[Callable[[dict[str, Any]], None] | None] = ContextVar("finetune_progress_sink",
                                                                                 default=None)


class ProgressReport:
    """Throttled progress of one training stage: {"stage", "step", "total", "eta_s", "at"} to PROGRESS_SINK."""

    def __init__(self, stage: str, every_s: float = REPORT_EVERY_S) -> None:
        self.stage, self.every_s = stage, every_s
        self.sink = PROGRESS_SINK.get()
        self.t0 = time.monotonic()
        self.step0: int | None = None
        self.sent_at = float("-inf")

    def __call__(self, step: int, total: int, *, force: bool = False) -> None:
        if self.sink is None:
            return
        if self.step0 is None:
            self.step0, self.t0 = step, time.monotonic()
        now = time.monotonic()
        if not force and now - self.sent_at < self.every_s:
            return
        self.sent_at = now
        done = step - self.step0
        eta = (total - step) * (now - self.t0) / done if done > 0 else None
        self.sink({"stage": self.stage, "step": int(step), "total": int(total),
                   "eta_s": round(eta, 1) if eta is not None else None,
                   "at": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")})
