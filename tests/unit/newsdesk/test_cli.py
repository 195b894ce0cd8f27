from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from newsdesk.cli import LAZY_COMMANDS, cli


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in LAZY_COMMANDS:
        assert name in result.output


def test_every_command_has_help(tmp_path: Path) -> None:
    runner = CliRunner()
    for name in LAZY_COMMANDS:
        result = runner.invoke(cli, ["--home", str(tmp_path), name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage" in result.output


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
