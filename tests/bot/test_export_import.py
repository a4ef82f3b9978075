"""Tests for bot.export_import: round trips, validation by line number, atomic imports."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bot.export_import import ImportReport, export_examples, import_examples, parse_examples
from bot.store import Correction, Store, StoreError

LABELS = ("anger", "joy", "sadness", "neutral")

WEIRD_TEXTS = [
    "nul\x00inside\x00",
    "x" * 4_500,
    "emoji 😀🔥👩‍👩‍👧",
    "مرحبا بالعالم \u202eRTL override\u202c עברית",
    'quotes "double", \'single\', comma, and\nnewline\r\nCRLF',
    "line\u2028separator\u2029 and tab\t",
    "  leading and trailing spaces  ",
]


@pytest.fixture
async def store(tmp_path: Path):
    s = await Store.open(tmp_path / "src.sqlite3", labels=LABELS)
    yield s
    await s.close()


async def fill(store: Store) -> list[tuple[str, str]]:
    expected = []
    for i, text in enumerate(WEIRD_TEXTS):
        label = LABELS[i % len(LABELS)]
        await store.add_correction(Correction(text, label, guild_id=1, message_id=i + 1,
                                              corrector_id=7, created_at=1000.0 + i))
        expected.append((text, label))
    return expected


@pytest.mark.parametrize("name", ["out.csv", "out.jsonl", "out.json"])
async def test_round_trip_keeps_weird_text_intact(store: Store, tmp_path: Path, name: str):
    expected = await fill(store)
    path = tmp_path / "export" / name
    assert await export_examples(store, path) == len(expected)
    dest = await Store.open(tmp_path / "dest.sqlite3", labels=LABELS)
    try:
        report = await import_examples(dest, path, labels=LABELS)
        assert report == ImportReport(added=len(expected), errors=[])
        assert await dest.corrections_for_training() == expected
        rows = await dest._db.execute_fetchall("SELECT DISTINCT source, message_id FROM corrections")
        assert list(rows) == [("import", None)]
    finally:
        await dest.close()


async def test_export_formats_and_majority(store: Store, tmp_path: Path):
    for corrector, label in [(1, "joy"), (2, "anger"), (3, "anger")]:
        await store.add_correction(Correction("same msg", label, message_id=9, corrector_id=corrector))
    buf = io.StringIO()
    assert await export_examples(store, buf, "csv") == 1
    assert buf.getvalue() == "text,label\r\nsame msg,anger\r\n"
    raw = io.BytesIO()
    await export_examples(store, raw, "jsonl")
    assert not raw.closed
    assert [json.loads(x) for x in raw.getvalue().decode().splitlines()] == [
        {"text": "same msg", "label": "anger"}]
    with pytest.raises(ValueError):
        await export_examples(store, io.StringIO(), "xml")
    with pytest.raises(ValueError):
        await export_examples(store, tmp_path / "out.txt")


async def test_export_since(store: Store, tmp_path: Path):
    await store.add_correction(Correction("old", "joy", message_id=1, corrector_id=1, created_at=10))
    await store.add_correction(Correction("new", "joy", message_id=2, corrector_id=1, created_at=20))
    buf = io.StringIO()
    assert await export_examples(store, buf, "jsonl", since=15) == 1
    assert json.loads(buf.getvalue())["text"] == "new"


async def test_hf_datasets_loads_exports(store: Store, tmp_path: Path):
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    expected = await fill(store)
    for name, builder in [("d.csv", "csv"), ("d.jsonl", "json")]:
        await export_examples(store, tmp_path / name)
        ds = datasets.load_dataset(builder, data_files=str(tmp_path / name),
                                   cache_dir=str(tmp_path / "hf-cache"), split="train")
        assert list(zip(ds["text"], ds["label"])) == expected


async def test_csv_import_reports_bad_rows_by_line(store: Store, tmp_path: Path):
    path = tmp_path / "in.csv"
    path.write_text(
        "id,Text,LABEL\n"  # 1: extra column, header case/order do not matter
        "1,fine,Joy\n"  # 2: label matched case-insensitively
        '2,"multi\nline",anger\n'  # 3-4
        "3,,joy\n"  # 5: empty text
        "4,   ,joy\n"  # 6: blank text
        "5,hello,happy\n"  # 7: unknown label
        "6,short\n"  # 8: missing label
        "\n"  # 9: blank line, ignored
        "7\n"  # 10: missing text
        "8,ok again, sadness \n",  # 11
        encoding="utf-8",
    )
    report = await import_examples(store, path, labels=LABELS)
    assert report.added == 3 and not report.ok
    assert [line for line, _ in report.errors] == [5, 6, 7, 8, 10]
    messages = dict(report.errors)
    assert messages[5] == "empty text" and messages[8] == "missing label"
    assert messages[10] == "missing text"
    assert "unknown label 'happy'" in messages[7] and "anger, joy" in messages[7]
    assert await store.corrections_for_training() == [
        ("fine", "joy"), ("multi\nline", "anger"), ("ok again", "sadness")]


async def test_csv_without_required_columns(store: Store, tmp_path: Path):
    path = tmp_path / "in.csv"
    path.write_text("sentence,emotion\nhi,joy\n", encoding="utf-8")
    report = await import_examples(store, path, labels=LABELS)
    assert report.added == 0 and report.errors[0][0] == 1 and "header" in report.errors[0][1]
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    assert (await import_examples(store, empty, labels=LABELS)).errors[0][0] == 1


async def test_jsonl_import_reports_bad_rows_by_line(store: Store, tmp_path: Path):
    path = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"text": "good one", "label": "joy"}),  # 1
        "{not json",  # 2
        json.dumps(["text", "joy"]),  # 3
        "",  # 4 blank: ignored
        json.dumps({"label": "joy"}),  # 5
        json.dumps({"text": "", "label": "joy"}),  # 6
        json.dumps({"text": "x", "label": "mystery"}),  # 7
        json.dumps({"text": 5, "label": "joy"}),  # 8
        json.dumps({"text": "sep\u2028inside", "label": "anger"}, ensure_ascii=False),  # 9
    ]
    path.write_text("\r\n".join(lines) + "\n", encoding="utf-8")
    report = await import_examples(store, path, labels=LABELS)
    assert report.added == 2
    assert [line for line, _ in report.errors] == [2, 3, 5, 6, 7, 8]
    assert dict(report.errors)[2].startswith("invalid JSON")
    assert await store.corrections_for_training() == [("good one", "joy"), ("sep\u2028inside", "anger")]


async def test_json_array_and_bad_encoding(store: Store, tmp_path: Path):
    arr = tmp_path / "in.json"
    arr.write_text(json.dumps([{"text": "a", "label": "joy"}, {"text": "b", "label": "??"}]), encoding="utf-8")
    report = await import_examples(store, arr, labels=LABELS)
    assert report.added == 1 and [n for n, _ in report.errors] == [2]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\nok,joy\ncaf\xe9,joy\n".encode("latin-1"))
    report = await import_examples(store, latin, labels=LABELS)
    assert report.added == 0 and report.errors[0][0] == 3 and "UTF-8" in report.errors[0][1]
    with pytest.raises(ValueError, match=r"\.csv"):
        parse_examples(tmp_path / "in.txt", LABELS)
    with pytest.raises(FileNotFoundError):
        await import_examples(store, tmp_path / "missing.csv", labels=LABELS)


async def test_import_is_one_transaction(store: Store, tmp_path: Path):
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"text": "t" * 2000 + str(i), "label": "joy"}) + "\n"
                            for i in range(300)), encoding="utf-8")
    pages = (await store._db.execute_fetchall("PRAGMA page_count"))[0][0]
    await store._db.execute(f"PRAGMA max_page_count = {pages + 20}")
    with pytest.raises(StoreError, match="full"):
        await import_examples(store, path, labels=LABELS)
    assert await store.count_corrections() == 0
    await store._db.execute("PRAGMA max_page_count = 1073741823")
    assert (await import_examples(store, path, labels=LABELS)).added == 300
    assert await store.count_corrections() == 300
