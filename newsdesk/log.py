"""One logging setup for the CLI, the web app and the worker."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_configured = False


class OncePerJob(logging.Filter):
    """Lets APScheduler's "skipped: maximum number of running instances reached" through once per job per process.

    A training holds the queue job for minutes while the 30 s interval keeps firing: one line says it, not one a
    tick (the scheduler already coalesces; it is the warning that repeated).
    """

    MARK = "maximum number of running instances reached"

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.MARK not in message:
            return True
        # 'Execution of job "NAME (trigger: ..., next run at: TIME)" skipped: ...': the job's name, not its next time
        job = message.split(" skipped:", 1)[0].split(" (trigger:", 1)[0]
        if job in self.seen:
            return False
        self.seen.add(job)
        return True


SCHEDULER_FILTER = OncePerJob()
logging.getLogger("apscheduler.scheduler").addFilter(SCHEDULER_FILTER)
logging.getLogger("apscheduler.executors.default").addFilter(SCHEDULER_FILTER)


def setup_logging(level: str = "INFO", logs_dir: Path | None = None, filename: str = "newsdesk.log") -> None:
    """Log to stderr and, when `logs_dir` is given, to a rotating file there. Idempotent per process."""
    global _configured
    root = logging.getLogger()
    root.setLevel(level.upper())
    if _configured:
        return
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(console)
    if logs_dir is not None:
        try:
            logs_dir.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(logs_dir / filename, maxBytes=10_000_000, backupCount=3)
            handler.setFormatter(logging.Formatter(FORMAT))
            root.addHandler(handler)
        except OSError:
            root.warning("cannot write logs under %s; logging to stderr only", logs_dir)
    for noisy in ("urllib3", "filelock", "httpx", "sentence_transformers.SentenceTransformer", "apscheduler.scheduler",
                  "apscheduler.executors.default", "waitress.queue", "alembic.runtime.plugins",
                  "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _configured = True
