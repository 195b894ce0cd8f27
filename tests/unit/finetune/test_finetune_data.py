from __future__ import annotations

import io
from pathlib import Path

import pytest

from finetune.data import (
    Positive,
    consecutive_pairs,
    file_fingerprint,
    item_text,
    read_interactions_file,
    read_labelled,
    read_texts,
    split_dev,
)
from newsdesk.errors import InvalidInput


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_csv_and_jsonl_in_order(tmp_path: Path) -> None:
    csv_file = write(tmp_path / "a.csv", 'text,label\n"Profit rose, a lot",positive\nSales fell,Negative\n')
    jsonl = write(tmp_path / "b.jsonl", '{"text": "Flat quarter", "label": "neutral"}\n\n')
    rows = read_labelled([csv_file, jsonl])
    assert [(r.text, r.label) for r in rows] == [("Profit rose, a lot", "positive"), ("Sales fell", "negative"),
                                                 ("Flat quarter", "neutral")]


def test_unknown_label_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.csv", "text,label\nok,neutral\nfine,neutral\nup up,bullish\n")
    with pytest.raises(InvalidInput) as err:
        read_labelled([path])
    assert f"{path}:4" in err.value.message and "bullish" in err.value.message
    assert err.value.details["line"] == 4


def test_unknown_label_in_jsonl_names_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", '{"text": "a", "label": "neutral"}\n{"text": "b", "label": "meh"}\n')
    with pytest.raises(InvalidInput, match=r"bad.jsonl:2: unknown label 'meh'"):
        read_labelled([path])


@pytest.mark.parametrize("content", ["", "text,label\n"])
def test_empty_file_is_rejected(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "empty.csv", content)
    with pytest.raises(InvalidInput, match="no labelled rows"):
        read_labelled([path])


def test_missing_column_empty_text_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="needs the fields text and label"):
        read_labelled([write(tmp_path / "c.csv", "sentence,label\nx,neutral\n")])
    with pytest.raises(InvalidInput, match=":2: empty text"):
        read_labelled([write(tmp_path / "d.csv", "text,label\n ,neutral\n")])
    with pytest.raises(InvalidInput, match="no such file"):
        read_labelled([tmp_path / "nope.csv"])


def test_read_texts_csv_jsonl_and_stdin(tmp_path: Path) -> None:
    assert read_texts(write(tmp_path / "t.csv", "id,text\n1,first\n2,second\n")) == ["first", "second"]
    assert read_texts(write(tmp_path / "t.jsonl", '{"text": "a"}\n{"text": "b"}\n')) == ["a", "b"]
    assert read_texts("-", stdin=io.StringIO('{"text": "x"}\n{"text": "y"}\n')) == ["x", "y"]
    assert read_texts("-", stdin=io.StringIO("text\nx\ny\n")) == ["x", "y"]
    with pytest.raises(InvalidInput, match=":2: needs a string field text"):
        read_texts(write(tmp_path / "u.jsonl", '{"text": "a"}\n{"body": "b"}\n'))


def test_split_dev_is_stratified_and_reproducible(tmp_path: Path) -> None:
    rows = read_labelled([write(tmp_path / "s.csv", "text,label\n" + "".join(
        f"t{i},{label}\n" for i, label in enumerate(["neutral"] * 20 + ["positive"] * 10 + ["negative"] * 10)))])
    train, dev = split_dev(rows, 0.1, seed=1)
    assert sorted(r.label for r in dev) == ["negative", "neutral", "neutral", "positive"]
    assert len(train) + len(dev) == 40 and not {r.text for r in train} & {r.text for r in dev}
    assert split_dev(rows, 0.1, seed=1) == (train, dev)


def test_fingerprint_counts_rows_and_labels(tmp_path: Path) -> None:
    info = file_fingerprint(write(tmp_path / "f.csv", "text,label\na,neutral\nb,positive\nc,neutral\n"))
    assert info["rows"] == 3 and info["labels"] == {"neutral": 2, "positive": 1} and len(info["sha256"]) == 64


def test_item_text_rule() -> None:
    assert item_text("Toy Story (1995)", "Adventure|Animation", "A cowboy doll.") == \
        "Toy Story (1995). Adventure, Animation. A cowboy doll."
    assert item_text("Markets rally.", "", "") == "Markets rally"
    assert item_text("Title", None, "Body") == "Title. Body"


def test_interactions_file_keeps_likes_and_pairs_follow_time(tmp_path: Path) -> None:
    path = write(tmp_path / "i.csv", "user_id,item_id,rating,timestamp\nu1,b,5,200\nu1,a,4.5,100\nu1,c,2,300\n"
                                     "u1,d,4,400\nu2,a,5,100\n")
    likes = read_interactions_file(path, 4.0)
    assert [(p.user_id, p.item_id) for p in likes] == [("u1", "a"), ("u1", "b"), ("u1", "d"), ("u2", "a")]
    pairs = consecutive_pairs(likes, max_gap=1, max_pairs=10, seed=0)
    assert sorted(pairs) == [("a", "b"), ("b", "d")]
    with pytest.raises(InvalidInput, match=":2: bad rating"):
        read_interactions_file(write(tmp_path / "j.csv", "user_id,item_id,rating\nu,i,five\n"), 4.0)


def test_pairs_are_capped() -> None:
    from datetime import datetime

    likes = [Positive("u", f"i{n}", datetime(2020, 1, 1, 0, n)) for n in range(30)]
    assert len(consecutive_pairs(likes, max_gap=2, max_pairs=5, seed=0)) == 5
