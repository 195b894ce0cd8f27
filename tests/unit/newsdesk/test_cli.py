from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from newsdesk.cli import LAZY_COMMANDS, cli


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in LAZY_COMMANDS:
        assert name in result.output


def _command_paths() -> list[list[str]]:
    """Every command and subcommand, as argument lists (importing each package's CLI module on the way)."""
    paths: list[list[str]] = []
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        paths.append([name])
        if isinstance(command, click.Group):
            paths += [[name, sub] for sub in command.list_commands(click.Context(command))]
    return paths


def test_every_command_has_help(tmp_path: Path) -> None:
    runner = CliRunner()
    paths = _command_paths()
    assert len(paths) > len(LAZY_COMMANDS)  # the groups' subcommands too
    for path in paths:
        result = runner.invoke(cli, ["--home", str(tmp_path), *path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


@pytest.mark.parametrize(("package", "command"), [("recsys", "catalog"), ("finetune", "models")])
def test_a_cli_module_with_a_typo_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, package: str,
                                               command: str) -> None:
    """A package's CLI module that fails at import time makes its commands fail, not show "not built yet"."""
    broken = tmp_path / "shadow"
    broken.mkdir()
    (broken / "cli.py").write_text("import click\n\nsesion = session  # a typo at import time\n")
    module = importlib.import_module(package)
    monkeypatch.setattr(module, "__path__", [str(broken), *module.__path__])  # found first
    monkeypatch.delitem(sys.modules, f"{package}.cli", raising=False)
    monkeypatch.delattr(module, "cli", raising=False)  # as in a fresh process: not imported yet
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), command, "--help"])
    monkeypatch.delitem(sys.modules, f"{package}.cli", raising=False)  # the real one is imported again later
    assert result.exit_code == 1, result.output
    assert f"the '{command}' command cannot be loaded" in result.output
    assert "NameError" in result.output and "Usage" not in result.output


def test_a_missing_command_attribute_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(LAZY_COMMANDS, "catalog", (LAZY_COMMANDS["catalog"][0], "catalog_grup"))
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "catalog", "--help"])
    assert result.exit_code == 1 and "catalog_grup" in result.output


def test_init_migrates_and_is_idempotent(tmp_path: Path) -> None:
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(cli, ["--home", str(tmp_path), "init"])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "newsdesk.db").exists()
    assert (tmp_path / "models").is_dir()


def test_bad_setting_is_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "--database-url", "mysql://nope", "init"])
    assert result.exit_code == 3
    assert result.output.strip().startswith("Error: NEWSDESK_DATABASE_URL")
    assert "Traceback" not in result.output


def test_command_without_a_database_says_run_init_and_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "elsewhere" / "var"
    result = CliRunner().invoke(cli, ["--home", str(home), "users", "list"])
    assert result.exit_code == 7
    assert "newsdesk init" in result.output and "NEWSDESK_HOME" in result.output
    assert "no such table" not in result.output and "Traceback" not in result.output
    assert not home.exists()  # no empty ./var left behind
    assert CliRunner().invoke(cli, ["--home", str(home), "models", "--help"]).exit_code == 0  # help still works


def test_unmigrated_database_is_reported_not_queried(tmp_path: Path) -> None:
    home = tmp_path / "var"
    home.mkdir()
    (home / "newsdesk.db").write_bytes(b"")  # e.g. left by an older version that created it silently
    result = CliRunner().invoke(cli, ["--home", str(home), "users", "list"])
    assert result.exit_code == 7 and "not initialised" in result.output and "newsdesk init" in result.output


def test_scheduler_skip_warning_is_logged_once_per_job() -> None:
    import logging

    from newsdesk.log import OncePerJob

    flt = OncePerJob()

    def record(job: str, at: str = "12:00:30") -> logging.LogRecord:
        return logging.LogRecord("apscheduler.scheduler", logging.WARNING, __file__, 1,
                                 'Execution of job "%s" skipped: maximum number of running instances reached (1)',
                                 (f"{job} (trigger: interval[0:00:30], next run at: 2026-12-01 {at} UTC)",), None)

    assert [flt.filter(record("queue", at)) for at in ("12:00:30", "12:01:00", "12:01:30")] == [True, False, False]
    assert flt.filter(record("cron"))  # another job still says it once
    other = logging.LogRecord("apscheduler.scheduler", logging.WARNING, __file__, 1, "job failed", (), None)
    assert flt.filter(other) and flt.filter(other)
