"""Trainer callbacks: a tqdm bar with loss, throughput and the last dev scores."""

from __future__ import annotations

import time
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback


class ProgressBar(TrainerCallback):
    """One tqdm bar per run: steps done, running loss, examples per second, last dev score."""

    def __init__(self, batch_size: int, desc: str = "train") -> None:
        self.batch_size = batch_size
        self.desc = desc
        self.bar: tqdm | None = None
        self.postfix: dict[str, str] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=self.desc, unit="step",
                        dynamic_ncols=True)
        self.t0, self.step0 = time.monotonic(), state.global_step

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self.bar is None:
            return
        self.bar.update(state.global_step - self.bar.n)
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        self.postfix["ex/s"] = f"{(state.global_step - self.step0) * self.batch_size / elapsed:.1f}"
        self.bar.set_postfix(self.postfix, refresh=False)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any) -> None:
        logs = logs or {}
        if "loss" in logs:
            self.postfix["loss"] = f"{float(logs['loss']):.4f}"
        for key, value in logs.items():
            if key.startswith("eval_") and key not in ("eval_loss", "eval_runtime") and "per_second" not in key:
                self.postfix[key[5:]] = f"{float(value):.4f}"

    def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
