"""A version trained and promoted from home A is served by processes of home B (one database, one model store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from finetune import service
from finetune.classifier import ClassifierHandle
from newsdesk import db
from newsdesk.db import session_scope
from newsdesk.settings import Settings

pytestmark = pytest.mark.slow
PG_URL = os.environ.get("NEWSDESK_TEST_DATABASE_URL", "")

ROOT = Path(__file__).resolve().parents[3]
TINY = {"max_steps": 2, "batch_size": 4, "max_length": 32, "evals_per_epoch": 3}
TRAIN = """text,label
Operating profit rose to EUR 13.1 mn from EUR 8.7 mn,positive
Net sales increased by 18% year on year,positive
The company won a large new order from a major customer,positive
Shares jumped after the upbeat earnings report,positive
The company's offices are located in Helsinki,neutral
The annual general meeting will be held on 20 March,neutral
The report covers the period from January to June,neutral
The firm has 120 employees in Finland,neutral
Operating loss widened to EUR 5 mn from EUR 2 mn,negative
Sales fell sharply due to weak demand,negative
The company announced layoffs of 300 workers,negative
Shares plunged after the profit warning,negative
"""

DEV = """text,label
Quarterly profit doubled on strong sales,positive
The meeting takes place in Espoo,neutral
Net loss deepened in the third quarter,negative
Revenue grew 12% to a record high,positive
The company is headquartered in Oulu,neutral
Demand collapsed and margins shrank,negative
"""
PROBE = ["Operating profit rose to EUR 13.1 mn", "Shares plunged after the profit warning", "The office is in Espoo"]


def _classify_in_a_process_of(settings: Settings) -> list[dict]:
    """`newsdesk classify -` in a separate process of that home (its own environment, as on another machine)."""
    env = {**os.environ, "NEWSDESK_HOME": str(settings.home), "NEWSDESK_DATABASE_URL": settings.database_url,
           "NEWSDESK_MODEL_STORE": settings.model_store, "NEWSDESK_DEVICE": "cpu", "PYTHONPATH": str(ROOT),
           # the torch path, as the in-process handle of this test serves (an exported path is checked, not identical)
           "NEWSDESK_FINETUNE__INFERENCE_PATH": "torch"}
    done = subprocess.run([sys.executable, "-m", "newsdesk.cli", "classify", "-"], env=env, cwd=ROOT, text=True,
                          input="".join(json.dumps({"text": t}) + "\n" for t in PROBE), capture_output=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_trained_on_a_served_on_b(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # one run (two short trainings): on PostgreSQL when the test database is set, else on a shared SQLite file;
    # tests/unit/finetune/test_finetune_store.py covers both databases with stand-in folders
    url = request.getfixturevalue("pg_url") if PG_URL else f"sqlite:///{tmp_path / 'shared.db'}"
    shared = tmp_path / "store"
    a, b = (Settings.load(env={"NEWSDESK_MODEL_STORE": str(shared), "NEWSDESK_FINETUNE__INFERENCE_PATH": "torch"},
                          home=tmp_path / name, database_url=url,
                          secret_key="s", device="cpu") for name in ("a", "b"))
    for s in (a, b):
        s.ensure_dirs()
    db.upgrade(url)
    train, dev = tmp_path / "train.csv", tmp_path / "dev.csv"
    train.write_text(TRAIN)
    dev.write_text(DEV)

    first = service.retrain(a, "sentiment", train_files=[train], dev_file=dev, args=TINY)
    assert first.promoted and first.path == shared / "sentiment" / first.version
    on_b = ClassifierHandle(b, refresh_s=0)
    served = on_b.get()
    assert served.version == first.version
    assert served.parts["sentiment"].folder == b.models_dir / "sentiment" / first.version  # B's cached copy
    on_a = ClassifierHandle(a, refresh_s=0).get()
    assert [p.scores for p in served.predict(PROBE)] == [p.scores for p in on_a.predict(PROBE)]
    assert [line["scores"] for line in _classify_in_a_process_of(b)] == [p.scores for p in on_a.predict(PROBE)]

    second = service.retrain(a, "sentiment", train_files=[train], dev_file=dev, promote="never",
                             args={**TINY, "seed": 7})
    assert not second.promoted and on_b.get().version == first.version
    with session_scope(url) as session:  # promoted from A: B's live handle swaps without a restart
        service.promote(session, a, "sentiment", second.version)
    assert on_b.get().version == second.version
    with session_scope(url) as session:  # rolled back from B: A's handle follows
        service.rollback(session, b, "sentiment")
    assert ClassifierHandle(a, refresh_s=0).get().version == first.version
