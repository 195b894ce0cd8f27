"""Helpers for the tests that train in one NEWSDESK_HOME and serve from another over one model store.

Used by tests/integration/finetune/test_finetune_store_two_homes.py and (through `sys.path`)
tests/integration/newsdesk/test_two_workers.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from finetune import service
from newsdesk.settings import Settings

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


def home_settings(home: Path, database_url: str, store: Path) -> Settings:
    """Settings of one home (`home`, its own cache under home/models) on the shared database and model store,
    serving on the torch path (an exported path is checked elsewhere, not identical)."""
    settings = Settings.load(env={"NEWSDESK_MODEL_STORE": str(store), "NEWSDESK_FINETUNE__INFERENCE_PATH": "torch"},
                             home=home, database_url=database_url, secret_key="s", device="cpu")
    settings.ensure_dirs()
    return settings


def sentiment_files(folder: Path) -> tuple[Path, Path]:
    """The tiny sentiment training and dev files, written to `folder`."""
    train, dev = folder / "train.csv", folder / "dev.csv"
    train.write_text(TRAIN)
    dev.write_text(DEV)
    return train, dev


def train_tiny(settings: Settings, folder: Path, *, promote: str = "auto", seed: int | None = None
               ) -> service.TrainOutcome:
    """A real 2-step sentiment fine-tune in `settings`' home on the tiny files (written to `folder`), published to
    its model store."""
    train, dev = sentiment_files(folder)
    args = {**TINY, **({"seed": seed} if seed is not None else {})}
    return service.retrain(settings, "sentiment", train_files=[train], dev_file=dev, promote=promote, args=args)


def classify_in_a_process_of(settings: Settings, texts: list[str] = PROBE) -> list[dict]:
    """`newsdesk classify -` in a separate process of that home (its own environment, as on another machine)."""
    env = {**os.environ, "NEWSDESK_HOME": str(settings.home), "NEWSDESK_DATABASE_URL": settings.database_url,
           "NEWSDESK_MODEL_STORE": settings.model_store, "NEWSDESK_DEVICE": "cpu", "PYTHONPATH": str(ROOT),
           "NEWSDESK_FINETUNE__INFERENCE_PATH": settings.finetune.inference_path}
    done = subprocess.run([sys.executable, "-m", "newsdesk.cli", "classify", "-"], env=env, cwd=ROOT, text=True,
                          input="".join(json.dumps({"text": t}) + "\n" for t in texts), capture_output=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()]
