"""Trainer callbacks: a tqdm bar with loss, throughput and the last dev scores; the run's progress (step, total,
time left) handed to `finetune.progress` for the training run's row."""

from __future__ import annotations

import logging
import time
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback

from finetune.progress import ProgressReport

log = logging.getLogger(__name__)
LOG_EVERY_S = 60.0  # without a terminal (a server log) progress is one log line a minute, not a redrawn bar
class ProgressBar(TrainerCallback):
    """One tqdm bar per run: steps done, running loss, examples per second, last dev score."""

    def __init__(self, batch_size: int, desc: str = "train") -> None:
        self.batch_size = batch_size
        self.desc = desc
        self.bar: tqdm | None = None
        self.postfix: dict[str, str] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=self.desc, unit="step",
                        dynamic_ncols=True, disable=None)  # None: no bar when stderr is not a TTY
        self.t0, self.step0 = time.monotonic(), state.global_step
        self.logged_at = self.t0
        self.report = ProgressReport(self.desc)
        self.report(state.global_step, state.max_steps, force=True)

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self.bar is None:
            return
        self.bar.update(state.global_step - self.bar.n)
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        self.postfix["ex/s"] = f"{(state.global_step - self.step0) * self.batch_size / elapsed:.1f}"
        self.bar.set_postfix(self.postfix, refresh=False)
        self.report(state.global_step, state.max_steps)
        now = time.monotonic()
        if self.bar.disable and now - self.logged_at >= LOG_EVERY_S:
            self.logged_at = now
            done = state.global_step - self.step0
            left = (state.max_steps - state.global_step) * elapsed / done if done else 0.0
            log.info("%s: step %d/%d (%.0f%%), %s, about %.0f s left", self.desc, state.global_step,
                     state.max_steps, 100.0 * state.global_step / max(state.max_steps, 1),
                     ", ".join(f"{k} {v}" for k, v in self.postfix.items()), left)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any) -> None:
        logs = logs or {}
        if "loss" in logs:
            self.postfix["loss"] = f"{float(logs['loss']):.4f}"
        for key, value in logs.items():
            if key.startswith("eval_") and key not in ("eval_loss", "eval_runtime") and "per_second" not in key:
                self.postfix[key[5:]] = f"{float(value):.4f}"

    def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self.bar is not None:
            self.report(state.global_step, state.max_steps, force=True)
            self.bar.close()
            self.bar = None
