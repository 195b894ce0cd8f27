"""The console's scheduler panel: the worker running the schedule and the recorded job executions."""

from __future__ import annotations

from datetime import datetime

from flask.testing import FlaskClient
from web_support import login

from newsdesk import jobruns, locks
from newsdesk.settings import Settings


def test_console_shows_the_leader_and_recent_job_runs(client: FlaskClient, tokens: dict, settings: Settings,
                                                      db_url: str) -> None:
    login(client, "admin")
    html = client.get("/console/").get_data(as_text=True)
    assert "No worker holds the schedule now." in html and "No scheduled job has run yet." in html
    recorder = jobruns.Recorder(db_url, "host-b:4242")
    run_id = recorder.claim("monitor-notify", datetime(2026, 12, 1, 14, 0, 5))
    recorder.finish(run_id, jobruns.JobOutcome.SUCCEEDED, "{}")
    recorder.claim("recsys:refresh-index", datetime(2026, 12, 1, 14, 2, 0))
    with locks.hold(db_url, jobruns.SCHEDULER_LOCK, what="the schedule", fallback_dir=settings.home / "locks"):
        html = client.get("/console/").get_data(as_text=True)
    table = html.split('id="job-runs"', 1)[1].split("</table>", 1)[0]
    assert table.index("recsys:refresh-index") < table.index("monitor-notify")  # newest tick first
    assert table.count("host-b:4242") == 2 and ">succeeded<" in table and ">running<" in table
    assert f"Running on worker <span class=\"mono\">{locks.owner_name()}</span>" in html
