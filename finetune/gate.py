"""The champion/challenger gate: one decision, with its reason, for every retraining path (CLI, job, console).

`decide(task, mode, candidate, champion, rule)` takes the challenger's and the champion's metrics dicts (the same
evaluation data) and a rule; it returns a frozen `GateDecision`. A task brings its own rule by passing any object
with `judge(task, candidate, champion) -> GateDecision` (for example a joint multi-task rule that promotes only if
the version loses on neither task); `MarginRule` is the default: the primary metric must beat the champion's by a
margin, absolute or relative.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from finetune.evaluate import PRIMARY
from finetune.vocabulary import PROMOTE_MODES, PromoteMode
from newsdesk.errors import GateRejected, InvalidInput
from newsdesk.settings import FinetuneSettings


@dataclass(frozen=True)
class GateDecision:
    """Whether a candidate is served, and why (`reason` is one line, shown by the CLI and stored with the run)."""

    promote: bool
    task: str
    metric: str
    candidate: float | None
    champion: float | None
    margin: float
    reason: str
    mode: str = PromoteMode.AUTO
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        """True when the gate itself said no (`--promote auto`), not when promotion was switched off."""
        return self.mode == PromoteMode.AUTO and not self.promote

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def raise_if_refused(self) -> None:
        """Raises:
            GateRejected: the gate refused the candidate (exit code 5, HTTP 409).
        """
        if self.refused:
            raise GateRejected(self.reason, {"task": self.task, "metric": self.metric, "candidate": self.candidate,
                                             "champion": self.champion, "margin": self.margin})


class Rule(Protocol):
    """What a task supplies to decide on `--promote auto`."""

    def judge(self, task: str, candidate: Mapping[str, Any], champion: Mapping[str, Any] | None) -> GateDecision:
        ...


@dataclass(frozen=True)
class MarginRule:
    """Promote when `metric` beats the champion's by `margin` (with `relative`, a fraction of the champion's value,
    for metrics such as NDCG@10 whose values are small and whose scale depends on the catalog)."""

    metric: str
    higher_is_better: bool = True
    margin: float = 0.0
    relative: bool = False
    champion_label: str = "current"  # how the reason names the champion ("current", "base encoder")

    def beats(self, candidate: float, champion: float) -> bool:
        need = self.margin * abs(champion) if self.relative else self.margin
        return candidate >= champion + need if self.higher_is_better else candidate <= champion - need

    def judge(self, task: str, candidate: Mapping[str, Any], champion: Mapping[str, Any] | None) -> GateDecision:
        value = _number(candidate.get(self.metric))
        best = _number(champion.get(self.metric)) if champion is not None else None

        def decision(promote: bool, reason: str) -> GateDecision:
            return GateDecision(promote, task, self.metric, value, best, self.margin, reason)

        if value is None:
            return decision(False, f"kept: no {self.metric} measured")
        if best is None:
            return decision(True, f"promoted: first {task} model ({self.metric} {value:.4f})")
        by = f"{self.margin:.0%}" if self.relative else f"{self.margin}"
        if self.beats(value, best):
            return decision(True, f"promoted: {self.metric} {value:.4f} beats {self.champion_label} {best:.4f} "
                                  f"by >= {by}")
        return decision(False, f"kept, not promoted: {self.metric} {value:.4f} does not beat {self.champion_label} "
                               f"{best:.4f} by {by}")


@dataclass(frozen=True)
class JointRule:
    """A joint (multi-task) version, one model serving several tasks: promoted for all of them at once only if it
    loses on none. `candidate` and `champion` map each task to its metrics on that task's dev rows (a champion of
    None: no version of that task is current, so the task cannot lose); a task loses when its primary metric falls
    below the current version's by more than `margin` (0: any drop loses)."""

    tasks: tuple[str, ...]
    margin: float = 0.0

    def judge(self, task: str, candidate: Mapping[str, Any], champion: Mapping[str, Any] | None) -> GateDecision:
        parts, lost, per_task = [], [], {}
        for name in self.tasks:
            metric, higher = PRIMARY[name]
            value = _number((candidate.get(name) or {}).get(metric))
            current = (champion or {}).get(name)
            best = _number(current.get(metric)) if current is not None else None
            per_task[name] = {"metric": metric, "candidate": value, "champion": best}
            if value is None:
                lost.append(name)
                parts.append(f"{name} {metric} not measured")
            elif best is None:
                parts.append(f"{name} {metric} {value:.4f} (first {name} model)")
            else:
                if not MarginRule(metric, higher, -self.margin).beats(value, best):
                    lost.append(name)
                parts.append(f"{name} {metric} {value:.4f} vs current {best:.4f}")
        summary = "; ".join(parts)
        if lost:
            reason = f"kept, not promoted: loses on {' and '.join(lost)} ({summary})"
        else:
            reason = f"promoted for {' and '.join(self.tasks)}: loses on neither ({summary})"
        metric = PRIMARY[self.tasks[0]][0] if self.tasks else ""
        return GateDecision(not lost, task, metric, None, None, self.margin, reason, details={"tasks": per_task})


@dataclass(frozen=True)
class StudentRule:
    """A student (a smaller model distilled from a served version): promoted on `--promote auto` only when it loses
    at most `tolerance` of the primary metric against the current version on the same dev rows (the same tolerance
    a faster inference path may lose), so a faster student replaces its teacher only at a loss the operator set.
    Beyond it the student stays a candidate, its measured loss recorded, for `newsdesk models promote`."""

    metric: str = "macro_f1"
    tolerance: float = 0.005
    champion_label: str = "current"

    def judge(self, task: str, candidate: Mapping[str, Any], champion: Mapping[str, Any] | None) -> GateDecision:
        value = _number(candidate.get(self.metric))
        best = _number(champion.get(self.metric)) if champion is not None else None

        def decision(promote: bool, reason: str) -> GateDecision:
            return GateDecision(promote, task, self.metric, value, best, -self.tolerance, reason)

        if value is None:
            return decision(False, f"kept: no {self.metric} measured")
        if best is None:
            return decision(True, f"promoted: first {task} model (student, {self.metric} {value:.4f})")
        loss = best - value
        if loss <= self.tolerance + 1e-9:
            return decision(True, f"promoted: student {self.metric} {value:.4f} loses {loss:.4f} <= {self.tolerance} "
                                  f"against {self.champion_label} {best:.4f}")
        return decision(False, f"kept, not promoted: student {self.metric} {value:.4f} loses {loss:.4f} > "
                               f"{self.tolerance} against {self.champion_label} {best:.4f}")


def check_mode(mode: str) -> None:
    """Raises:
        InvalidInput: `mode` is not auto, never or force.
    """
    if mode not in PROMOTE_MODES:
        raise InvalidInput(f"promote must be one of {', '.join(PROMOTE_MODES)}, got {mode!r}", {"field": "promote"})


def default_rule(task: str, settings: FinetuneSettings, champion_label: str = "current") -> MarginRule:
    """The task's primary metric and direction (`finetune.evaluate.PRIMARY`) with the configured margin."""
    metric, higher = PRIMARY[task]
    if task == "recsys":
        return MarginRule(metric, higher, settings.recsys_promote_margin, relative=True, champion_label=champion_label)
    return MarginRule(metric, higher, settings.promote_margin, champion_label=champion_label)


def decide(task: str, mode: str, candidate: Mapping[str, Any], champion: Mapping[str, Any] | None,
           rule: Rule) -> GateDecision:
    """The gate's decision for a candidate's metrics against the champion's (None: no champion yet).

    Raises:
        InvalidInput: unknown promote mode.
    """
    check_mode(mode)
    judged = rule.judge(task, candidate, champion)
    if mode == PromoteMode.NEVER:
        return GateDecision(False, task, judged.metric, judged.candidate, judged.champion, judged.margin,
                            "kept: promotion disabled (--promote never)", mode, dict(judged.details))
    if mode == PromoteMode.FORCE:
        return GateDecision(True, task, judged.metric, judged.candidate, judged.champion, judged.margin,
                            "promoted: forced (--promote force)", mode, dict(judged.details))
    return judged


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
