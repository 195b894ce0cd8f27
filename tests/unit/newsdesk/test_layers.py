"""Dependencies point one way: web -> recsys/monitor -> finetune -> newsdesk. A test fails on any upward import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ALLOWED = {
    "newsdesk": set(),
    "finetune": {"newsdesk"},
    "recsys": {"newsdesk", "finetune"},
    "monitor": {"newsdesk", "finetune"},
    "web": {"newsdesk", "finetune", "recsys", "monitor"},
}
# The composition root: the CLI, the worker, the demo loader and the migration env wire all packages together.
COMPOSITION_ROOT = {"newsdesk/cli.py", "newsdesk/worker.py", "newsdesk/demo/__init__.py", "newsdesk/migrations/env.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_upward_imports(package: str) -> None:
    folder = ROOT / package
    if not folder.is_dir():
        pytest.skip(f"{package} not built yet")
    bad = []
    for path in folder.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel in COMPOSITION_ROOT:
            continue
        for mod in _imports(path) & set(ALLOWED):
            if mod != package and mod not in ALLOWED[package]:
                bad.append(f"{rel} imports {mod}")
    assert bad == []
