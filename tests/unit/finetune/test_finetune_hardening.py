"""Issue #20 finding 7: ordinary bad files give one `Error: FILE:LINE: ...` line and exit 3, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from newsdesk.cli import cli
from newsdesk.settings import Settings

GOOD_CSV = "text,label\n" + "".join(f"good news number {n},positive\nbad news number {n},negative\n"
                                     for n in range(60))


def _files(tmp_path: Path) -> dict[str, tuple[Path, int]]:
    """name -> (file, the line the error must name)."""
    out = {}
    binary = tmp_path / "binary.csv"
    binary.write_bytes(GOOD_CSV.encode() + b"\x89PNG\r\n\x1a\n\x00\x00\xff\xd8\xff,positive\n")
    out["binary"] = (binary, GOOD_CSV.count("\n") + 1)
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(b"text,label\nfine,positive\nCaf\xe9 cr\xe8me,neutral\n")
    out["latin1"] = (latin, 3)
    surrogate = tmp_path / "surrogate.jsonl"
    surrogate.write_text('{"text": "fine", "label": "positive"}\n{"text": "lone \\ud83d half", "label": "neutral"}\n')
    out["surrogate"] = (surrogate, 2)
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"text": "fine", "label": "positive"}\n{"text": "x", "label": "neutral", "extra": '
                    + "[" * 100_000 + "]" * 100_000 + "}\n")
    out["deep"] = (deep, 2)
    nul = tmp_path / "nul.jsonl"
    nul.write_text('{"text": "fine", "label": "positive"}\n{"text": "a\\u0000b", "label": "neutral"}\n')
    out["nul"] = (nul, 2)
    return out


def _one_error(result, path: Path, line: int) -> None:
    assert result.exit_code == 3, result.output
    errors = [row for row in result.output.splitlines() if row.startswith("Error:")]
    assert len(errors) == 1 and f"{path}:{line}:" in errors[0], result.output
    assert "Traceback" not in result.output and "internal error" not in result.output


@pytest.mark.parametrize("kind", ["binary", "latin1", "surrogate", "deep", "nul"])
def test_finetune_and_classify_on_bad_files(settings: Settings, db_url: str, tmp_path: Path, kind: str) -> None:
    path, line = _files(tmp_path)[kind]
    runner = CliRunner()
    home = ["--home", str(settings.home)]
    _one_error(runner.invoke(cli, [*home, "classify", str(path)]), path, line)
    _one_error(runner.invoke(cli, [*home, "finetune", "sentiment", "--train", str(path), "--max-steps", "1"]),
               path, line)


def test_classify_reads_stdin_bytes_that_are_not_utf8(settings: Settings, db_url: str) -> None:
    result = CliRunner().invoke(cli, ["--home", str(settings.home), "classify", "-"],
                                input=b"text\nfine\n\xff\xfe broken\n")
    _one_error(result, Path("stdin.csv"), 3)
