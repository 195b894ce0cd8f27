"""A `newsdesk worker`-style consumer process for the crash test: the real stream and database path, with the
deterministic fake classifier (the real model would make 10,000 messages take minutes on 2 CPUs).

Settings come from NEWSDESK_* variables, exactly as `newsdesk worker` reads them.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "monitor"))

from monitor_fakes import FakeClassifier

from monitor.stream import Consumer
from newsdesk import db
from newsdesk.settings import Settings


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    settings = Settings.load()
    db.upgrade(settings.database_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    classifier = FakeClassifier()
    Consumer(settings, lambda: classifier, stop, claim_idle_ms=int(sys.argv[1]) if len(sys.argv) > 1 else 1000,
             claim_every_s=1.0).run()


if __name__ == "__main__":
    main()
