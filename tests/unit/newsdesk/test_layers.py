"""The real import graph: web -> recsys/monitor -> finetune -> newsdesk, web through service modules, no cycles.

Every `import` / `from ... import` anywhere in a module counts (function-level ones included), resolved to the
project module it names; every module must also import cleanly, so a typo at import time fails here.
"""

from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("newsdesk", "finetune", "recsys", "monitor", "web")
ALLOWED = {
    "newsdesk": set(),
    "finetune": {"newsdesk"},
    "recsys": {"newsdesk", "finetune"},
    "monitor": {"newsdesk", "finetune"},
    "web": {"newsdesk", "finetune", "recsys", "monitor"},
}
# The composition root: the runtime, the CLI, the worker and the demo loader wire the packages together (and the
# migration environment loads every package's tables).
COMPOSITION_ROOT = {"newsdesk.runtime", "newsdesk.cli", "newsdesk.worker", "newsdesk.demo", "newsdesk.migrations.env"}
# What web may import from the packages below it: their front doors, and these result/value types.
WEB_MAY_USE = {
    "finetune.service", "recsys.service", "monitor.service",
    "finetune.vocabulary", "monitor.vocabulary",  # str enums and constants: tasks, states, kinds, tickers
    "monitor.views",  # the result dataclasses monitor's service returns (AlertInfo, MessageInfo, IngestResult, ...)
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def project_modules() -> dict[str, Path]:
    """Every module of the five packages (migrations included: they are code too), by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _resolve(name: str) -> str | None:
    """The project module `name` refers to (a module, or the package holding the imported attribute)."""
    modules = project_modules()
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports_of(module: str) -> frozenset[str]:
    """Project modules that `module` imports, anywhere in its body."""
    path = project_modules()[module]
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names]  # a submodule, else resolves to `base`
        else:
            continue
        for target in targets:
            resolved = _resolve(target)
            if resolved is not None and resolved != module:
                found.add(resolved)
    return frozenset(found)


def _package(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_upward_imports(package: str) -> None:
    bad = []
    for module in sorted(m for m in project_modules() if _package(m) == package):
        if module in COMPOSITION_ROOT or module.startswith("newsdesk.demo."):
            continue
        for target in imports_of(module):
            other = _package(target)
            if other != package and other not in ALLOWED[package]:
                bad.append(f"{module} imports {target}")
    assert bad == []


def test_web_uses_only_the_service_modules() -> None:
    bad = [f"{module} imports {target}" for module in sorted(project_modules()) if _package(module) == "web"
           for target in sorted(imports_of(module))
           if _package(target) in ("finetune", "recsys", "monitor") and target not in WEB_MAY_USE]
    assert bad == []


def test_no_import_cycles_between_modules() -> None:
    """Tarjan's strongly connected components over the module graph; any component of two or more is a cycle.

    A package's `__init__` importing its own submodules is not a cycle of interest (it is how packages load).
    """
    graph = {m: {t for t in imports_of(m) if not m.startswith(t + ".")} for m in project_modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_graph_sees_function_level_imports() -> None:
    """The walk must see imports inside functions (the test would be blind otherwise)."""
    assert "recsys.cli" in imports_of("newsdesk.cli")  # only imported inside a loader function
    assert "monitor.service" in imports_of("web.api.alerts")


STRING_IMPORT = re.compile(r"(?:finetune|recsys|monitor|web)(?:\.\w+)+(?::\w+)?")


def test_no_string_imports_of_the_packages() -> None:
    """No `importlib.import_module(...)`/`__import__` and no "package.module:attr" strings outside migrations."""
    bad = []
    for module, path in sorted(project_modules().items()):
        if ".migrations." in module and not module.endswith(".env"):  # revisions name tables, not modules
            continue
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("import_module", "__import__"):
                    bad.append(f"{module}:{node.lineno} calls {name}")
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and STRING_IMPORT.fullmatch(node.value) and node.value.split(":")[0] in project_modules()):
                bad.append(f"{module}:{node.lineno} names {node.value!r}")
    assert bad == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_imports(package: str) -> None:
    """Import every module: a typo at import time (NameError, SyntaxError, a misspelt name) fails here."""
    failed = []
    for module in sorted(m for m in project_modules() if _package(m) == package):
        if ".migrations." in module:  # Alembic revision files are loaded by Alembic, not imported
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - collected and reported all at once
            failed.append(f"{module}: {type(exc).__name__}: {exc}")
    assert failed == []
