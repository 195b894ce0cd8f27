"""One `newsdesk worker` process for the two-worker test: the real `Worker` (scheduler election, recorded jobs,
stream consumers) with the deterministic keyword classifier in place of a model (a real one would make 10,000
messages take minutes on 2 CPUs). Settings come from NEWSDESK_* variables, exactly as `newsdesk worker` reads them;
the test migrates the database first.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "monitor"))

from monitor_fakes import FakeClassifier

from newsdesk.log import setup_logging
from newsdesk.settings import Settings
from newsdesk.worker import Worker


class KeywordHandle:
    """A classifier handle (`get()`) that always serves the keyword classifier."""

    def __init__(self) -> None:
        self.classifier = FakeClassifier()

    def get(self) -> FakeClassifier:
        return self.classifier


def main() -> None:
    settings = Settings.load()
    settings.ensure_dirs()
    setup_logging("INFO")
    Worker(settings, classifier_handle=KeywordHandle()).run_forever()


if __name__ == "__main__":
    main()
