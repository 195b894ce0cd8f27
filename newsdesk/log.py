"""One logging setup for the CLI, the web app and the worker."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_configured = False


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
