"""Schema-driven fuzzing: schemathesis generates requests from /api/v1/openapi.json; none may answer 5xx.

Every package is installed and the data is seeded, so a 503 would be a bug too (a service that cannot answer).
"""

from __future__ import annotations

import time

import pytest
from flask import Flask
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from web_support import bearer

MAX_EXAMPLES = 10  # per operation, and every operation has its own time budget below
BUDGET_S = 2.0


def test_no_operation_answers_500(app: Flask, seeded: dict) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13
    tokens = seeded["tokens"]
    failures: list[str] = []
    for operation in operations:
        headers = bearer(tokens["ingest"] if operation.path == "/ingest" else tokens["admin"])
        deadline = time.monotonic() + BUDGET_S

        @given(case=operation.as_strategy())
        @hsettings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                   suppress_health_check=list(HealthCheck))
        def run(case) -> None:
            if time.monotonic() > deadline:  # noqa: B023 - run() is called inside this iteration
                return
            response = case.call(headers=headers)  # noqa: B023
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                f"{response.text[:200]}")
            elif response.status_code >= 400:
                body = response.json()
                assert set(body["error"]) == {"code", "message", "details"}, body

        run()
    assert failures == []
