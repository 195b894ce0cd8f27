"""Unbound extension objects (Flask-Login, CSRF), the process runtime and request metrics."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import current_app
from flask_login import LoginManager, UserMixin
from flask_wtf.csrf import CSRFProtect

if TYPE_CHECKING:
    from newsdesk.runtime import Runtime

login_manager = LoginManager()
csrf = CSRFProtect()


def runtime() -> Runtime:
    """The process's composition root (classifier handle, recommender, worker), handed to `create_app`."""
    return current_app.extensions["newsdesk_runtime"]


@dataclass
class CurrentUser(UserMixin):
    """The logged-in user as the request sees it (a plain copy of the row, safe outside a session)."""

    id: int
    username: str
    role: str
    topics: list[str] | None = None
    via_token: bool = False

    def get_id(self) -> str:
        return str(self.id)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_analyst(self) -> bool:
        return self.role in ("analyst", "admin")


# Request latency buckets in seconds (Prometheus histogram convention: cumulative, `le` upper bounds).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class RequestMetrics:
    """Counts and latency histograms per (endpoint, method, status), exported by /metrics."""

    counts: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    buckets: dict[str, list[int]] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    totals: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self.lock:
            self.counts[(endpoint, method, str(status))] += 1
            row = self.buckets.setdefault(endpoint, [0] * len(BUCKETS))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    row[i] += 1
            self.sums[endpoint] += seconds
            self.totals[endpoint] += 1

    def render(self) -> list[str]:
        """Prometheus text lines for the request counters and the latency histogram."""
        lines = ["# HELP newsdesk_http_requests_total HTTP requests by endpoint, method and status.",
                 "# TYPE newsdesk_http_requests_total counter"]
        with self.lock:
            for (endpoint, method, status), n in sorted(self.counts.items()):
                lines.append(f'newsdesk_http_requests_total{{endpoint="{endpoint}",method="{method}",'
                             f'status="{status}"}} {n}')
            lines += ["# HELP newsdesk_http_request_duration_seconds Request latency by endpoint.",
                      "# TYPE newsdesk_http_request_duration_seconds histogram"]
            for endpoint, row in sorted(self.buckets.items()):
                for bound, n in zip(BUCKETS, row):
                    lines.append(f'newsdesk_http_request_duration_seconds_bucket{{endpoint="{endpoint}",'
                                 f'le="{bound}"}} {n}')
                lines.append(f'newsdesk_http_request_duration_seconds_bucket{{endpoint="{endpoint}",le="+Inf"}} '
                             f'{self.totals[endpoint]}')
                lines.append(f'newsdesk_http_request_duration_seconds_sum{{endpoint="{endpoint}"}} '
                             f'{self.sums[endpoint]:.6f}')
                lines.append(f'newsdesk_http_request_duration_seconds_count{{endpoint="{endpoint}"}} '
                             f'{self.totals[endpoint]}')
        return lines
