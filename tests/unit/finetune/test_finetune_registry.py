from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from finetune import registry, service
from finetune.pipeline import Prepared, finish
from finetune.tables import ModelEvent, TrainingRun
from newsdesk.db import session_scope
from newsdesk.errors import Conflict, InvalidInput, NotFound
from newsdesk.settings import Settings


def stage(settings: Settings, task: str, version: str) -> Path:
    staged = registry.staging_dir(settings, task, version)
    staged.mkdir()
    (staged / "weights.bin").write_bytes(b"w")
    return staged


def prepared(settings: Settings, version: str, value: float, champion: float | None) -> Prepared:
    return Prepared(stage(settings, "sentiment", version), {"macro_f1": value}, champion, "", {"train_rows": 3},
                    3, 1.5, {})


def finish_version(session, settings: Settings, version: str, value: float, promote: str = "auto"):
    current = registry.current_row(session, "sentiment")
    champion = current.primary_value if current is not None else None
    return finish(session, settings, "sentiment", version, 1, prepared(settings, version, value, champion),
                  {"epochs": 1}, promote, "test")


def test_publish_is_atomic_and_writes_sidecars(settings: Settings) -> None:
    staged = stage(settings, "sentiment", "v1")
    final = registry.publish(staged, settings, "sentiment", "v1", {"metrics.json": {"macro_f1": 0.5}})
    assert final == settings.models_dir / "sentiment" / "v1" and not staged.exists()
    assert (final / "weights.bin").read_bytes() == b"w" and "macro_f1" in (final / "metrics.json").read_text()
    with pytest.raises(Conflict):  # never overwrite a published version
        registry.publish(stage(settings, "sentiment", "v1"), settings, "sentiment", "v1", {})


def test_first_version_is_promoted_and_worse_one_is_kept(settings: Settings, session) -> None:
    first = finish_version(session, settings, "v1", 0.80)
    assert first.promoted and "first" in first.reason
    second = finish_version(session, settings, "v2", 0.802)  # better, but not by the 0.005 margin
    assert not second.promoted and "does not beat" in second.reason
    assert service.current_version(session, "sentiment").version == "v1"
    third = finish_version(session, settings, "v3", 0.81)
    assert third.promoted and service.current_version(session, "sentiment").version == "v3"
    statuses = {v.version: v.status for v in service.list_versions(session, "sentiment")}
    assert statuses == {"v1": "archived", "v2": "candidate", "v3": "current"}
    kinds = [e.kind for e in session.scalars(select(ModelEvent).order_by(ModelEvent.id))]
    assert kinds == ["registered", "promoted", "registered", "kept", "registered", "promoted"]


def test_promote_never_and_force(settings: Settings, session) -> None:
    finish_version(session, settings, "v1", 0.80)
    assert not finish_version(session, settings, "v2", 0.99, promote="never").promoted
    assert finish_version(session, settings, "v3", 0.10, promote="force").promoted
    assert service.current_version(session, "sentiment").version == "v3"


def test_manual_promote_and_rollback(settings: Settings, session) -> None:
    finish_version(session, settings, "v1", 0.80)
    finish_version(session, settings, "v2", 0.70)  # kept
    with pytest.raises(NotFound):
        service.rollback(session, settings, "sentiment")  # nothing promoted before v1
    assert service.promote(session, settings, "sentiment", "v2").is_current
    back = service.rollback(session, settings, "sentiment", actor="ops")
    assert back.version == "v1" and back.is_current
    assert {v.version: v.status for v in service.list_versions(session)} == {"v1": "current", "v2": "rolled_back"}
    with pytest.raises(NotFound):
        service.promote(session, settings, "sentiment", "v9")
    with pytest.raises(InvalidInput):
        service.list_versions(session, "images")


def test_failed_run_keeps_what_is_served(settings: Settings, db_url: str, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    with session_scope(db_url) as s:
        finish_version(s, settings, "v1", 0.80)

    def crash(*_args, staged: Path, **_kw):
        staged.mkdir()
        (staged / "half-written").write_text("x")
        raise RuntimeError("disk full")

    monkeypatch.setattr("finetune.service.prepare_sentiment", crash)
    data = tmp_path / "t.csv"
    data.write_text("text,label\na,neutral\n")
    with pytest.raises(RuntimeError):
        service.retrain(settings, "sentiment", train_files=[data])
    with session_scope(db_url) as s:
        assert service.current_version(s, "sentiment").version == "v1"
        run = service.list_training_runs(s, "sentiment")[0]
        assert run.status == "failed" and "disk full" in run.error
    assert sorted(p.name for p in (settings.models_dir / "sentiment").iterdir() if not p.name.startswith(".train")) \
        == ["v1"]


def test_interrupted_run_is_marked_interrupted(settings: Settings, db_url: str,
                                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def interrupt(*_a, **_kw):
        raise KeyboardInterrupt

    monkeypatch.setattr("finetune.service.prepare_sentiment", interrupt)
    with pytest.raises(KeyboardInterrupt):
        service.retrain(settings, "sentiment", train_files=[tmp_path / "x.csv"])
    with session_scope(db_url) as s:
        assert service.list_training_runs(s)[0].status == "interrupted"
        assert service.current_version(s, "sentiment") is None


def test_request_retrain_queues_a_run(session) -> None:
    run_id = service.request_retrain(session, "recsys", "alice")
    run = session.get(TrainingRun, run_id)
    assert (run.status, run.trigger, run.requested_by) == ("queued", "request", "alice")
    assert [r.id for r in service.list_training_runs(session, "recsys")] == [run_id]


def test_encoder_path_falls_back_to_base(settings: Settings, session) -> None:
    version, path = service.encoder_path(session, settings)
    assert version is None and (path / "config.json").is_file()


def test_bad_promote_mode_is_rejected_before_work(settings: Settings, db_url: str) -> None:
    with pytest.raises(InvalidInput, match="promote must be"):
        service.retrain(settings, "sentiment", train_files=["x.csv"], promote="maybe")


def test_refused_candidate_exits_5_and_stays_a_candidate(settings: Settings, db_url: str,
                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from newsdesk.cli import cli

    with session_scope(db_url) as s:
        finish_version(s, settings, "v1", 0.80)

    def weaker(*_args, staged: Path, **_kw) -> Prepared:  # trained and evaluated: 0.79 against the champion's 0.80
        staged.mkdir()
        (staged / "weights.bin").write_bytes(b"w")
        return Prepared(staged, {"macro_f1": 0.79}, 0.80, "v1", {"train_rows": 1}, 1, 1.0, {})

    monkeypatch.setattr("finetune.service.prepare_sentiment", weaker)
    data = tmp_path / "t.csv"
    data.write_text("text,label\na,neutral\n")
    result = CliRunner().invoke(cli, ["finetune", "sentiment", "--train", str(data)], obj=settings)
    assert result.exit_code == 5, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert errors == ["Error: kept, not promoted: macro_f1 0.7900 does not beat current 0.8000 by 0.005"]
    with session_scope(db_url) as s:
        statuses = {v.version: v.status for v in service.list_versions(s, "sentiment")}
        assert service.current_version(s, "sentiment").version == "v1"
    assert sorted(statuses.values()) == ["candidate", "current"]
    forced = CliRunner().invoke(cli, ["finetune", "sentiment", "--train", str(data), "--promote", "never"],
                                obj=settings)
    assert forced.exit_code == 0, forced.output  # switched off is not refused
