"""Where the web layer finds the service modules below it (recsys, monitor, finetune).

Each is imported on first use; a package that is not installed yet (or lacks a function) answers
`Unavailable` ("not available yet", HTTP 503) instead of failing the whole app. Tests may pass replacements.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

from newsdesk.errors import Unavailable
from newsdesk.settings import Settings

log = logging.getLogger(__name__)

PACKAGES = ("recsys", "monitor", "finetune")


class _Missing:
    """Stands in for a package that is not there yet: every attribute raises Unavailable."""

    def __init__(self, package: str, reason: str) -> None:
        self._package = package
        self._reason = reason

    def __getattr__(self, name: str) -> Any:
        raise Unavailable(f"{self._package} is not available yet ({self._reason})", {"package": self._package})


class _Checked:
    """Wraps a service module: a function it does not define (yet) raises Unavailable, not AttributeError."""

    def __init__(self, package: str, module: Any) -> None:
        self._package = package
        self._module = module

    def __getattr__(self, name: str) -> Any:
        try:
            return getattr(self._module, name)
        except AttributeError:
            raise Unavailable(f"{self._package}.service.{name} is not available yet",
                              {"package": self._package, "function": name}) from None


class Services:
    """The service modules the app calls, with optional replacements (`overrides={"recsys": fake}`)."""

    def __init__(self, settings: Settings, overrides: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self._overrides = dict(overrides or {})
        self._handle: Any = None
        self._lock = threading.Lock()

    def get(self, package: str) -> Any:
        """The `<package>.service` module (or its replacement); a `_Missing` stand-in when not installed."""
        if package in self._overrides:
            return _Checked(package, self._overrides[package])
        try:
            module = importlib.import_module(f"{package}.service")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] == package:
                return _Missing(package, f"module {exc.name} not found")
            raise
        return _Checked(package, module)

    def available(self, package: str) -> bool:
        return not isinstance(self.get(package), _Missing)

    @property
    def recsys(self) -> Any:
        return self.get("recsys")

    @property
    def monitor(self) -> Any:
        return self.get("monitor")

    @property
    def finetune(self) -> Any:
        return self.get("finetune")

    def classifier(self) -> Any:
        """The current sentiment classifier, or None when no model is there yet (messages stay unclassified)."""
        try:
            with self._lock:
                if self._handle is None:
                    self._handle = self.finetune.ClassifierHandle(self.settings)
            return self._handle.get()
        except Unavailable as exc:
            log.info("no sentiment classifier: %s", exc.message)
            return None
