from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from monitor_fakes import FakeClassifier


@pytest.fixture
def fake_classifier() -> FakeClassifier:
    return FakeClassifier()
