"""finetune's words, one definition each: tasks, model version status, training run status, promote modes."""

from __future__ import annotations

from enum import StrEnum


class Task(StrEnum):
    """What a model version is for (the registry's `task` column)."""

    SENTIMENT = "sentiment"  # the 3-class financial sentiment classifier
    RECSYS = "recsys"  # the behaviour-tuned item/user encoder


class ModelStatus(StrEnum):
    """A registered version's place: served (`current`), waiting (`candidate`) or retired."""

    CANDIDATE = "candidate"  # registered, not served (the gate refused it, or --promote never)
    CURRENT = "current"  # the one served for its task
    ARCHIVED = "archived"  # served before, replaced by a newer promotion
    ROLLED_BACK = "rolled_back"  # served before, taken out by a rollback


class RunStatus(StrEnum):
    """A training run's life: queued -> running -> succeeded | failed | interrupted."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped (Ctrl-C, a dead process); `--resume` continues it


class ModelEventKind(StrEnum):
    """The registry's audit trail (`model_events.kind`)."""

    REGISTERED = "registered"
    PROMOTED = "promoted"
    KEPT = "kept"  # the gate (or --promote never) kept the version a candidate
    ROLLED_BACK = "rolled_back"


class PromoteMode(StrEnum):
    """`--promote`: let the gate decide, never promote, or promote whatever the figures."""

    AUTO = "auto"
    NEVER = "never"
    FORCE = "force"


TASKS: tuple[str, ...] = tuple(t.value for t in Task)
PROMOTE_MODES: tuple[str, ...] = tuple(m.value for m in PromoteMode)
MODEL_STATUSES: tuple[str, ...] = tuple(s.value for s in ModelStatus)
RUN_STATUSES: tuple[str, ...] = tuple(s.value for s in RunStatus)
