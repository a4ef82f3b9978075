"""Tests for bot.export_import: round trips, validation by line number, atomic imports."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import tracemalloc
from pathlib import Path

import pytest

from bot import export_import
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
        expected.append((text.replace("\x00", "\ufffd"), label))  # NUL is stored as U+FFFD (records.storable)
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



async def test_import_maps_another_label_set_into_the_models_labels(tmp_path: Path):
    from model.labels import GOEMOTIONS, SEED13

    path = tmp_path / "go.csv"
    path.write_text("text,label\nso annoyed,annoyance\nyay,joy\nwow,admiration\nugh,Annoyance\nmad,anger\n"
                    "what,notalabel\n", encoding="utf-8")
    store = await Store.open(tmp_path / "seed.sqlite3", labels=SEED13)  # the store takes only the model's labels
    try:
        report = await import_examples(store, path, labels=GOEMOTIONS, model_labels=SEED13)
        assert report.added == 5
        assert report.mapped == {("annoyance", "anger"): 2, ("joy", "happiness"): 1, ("admiration", "love"): 1}
        assert report.mapping_summary() == "admiration→love ×1, annoyance→anger ×2, joy→happiness ×1"
        assert [line for line, _ in report.errors] == [7]  # checked against the file's set first
        assert "unknown label 'notalabel'" in report.errors[0][1] and "admiration" in report.errors[0][1]
        assert await store.corrections_for_training() == [
            ("so annoyed", "anger"), ("yay", "happiness"), ("wow", "love"), ("ugh", "anger"), ("mad", "anger")]
    finally:
        await store.close()


async def test_rows_without_an_equivalent_are_reported_by_line_and_not_stored(store: Store, tmp_path: Path):
    from model.labels import EKMAN, SEED13

    path = tmp_path / "seed.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": lb}) + "\n"
                            for t, lb in [("happy", "happiness"), ("yeah right", "sarcasm"), ("sad", "sadness")]),
                    encoding="utf-8")
    report = await import_examples(store, path, labels=SEED13, model_labels=EKMAN)
    assert report.added == 2 and report.mapped == {("happiness", "joy"): 1}
    assert report.errors == [(2, "'sarcasm' has no equivalent among the model's labels "
                                 "(anger, disgust, fear, joy, sadness, surprise, neutral)")]
    assert await store.corrections_for_training() == [("happy", "joy"), ("sad", "sadness")]
    same = await import_examples(store, path, labels=LABELS, model_labels=LABELS)  # one set: nothing to map
    assert same.mapped == {} and same.mapping_summary() == "" and same.duplicates == 1

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
    report = await import_examples(store, latin, labels=LABELS)  # the bad line is skipped, not the whole file
    assert report.added == 1 and report.errors[0][0] == 3 and "UTF-8" in report.errors[0][1]
    with pytest.raises(ValueError, match=r"\.csv"):
        parse_examples(tmp_path / "in.txt", LABELS)
    with pytest.raises(FileNotFoundError):
        await import_examples(store, tmp_path / "missing.csv", labels=LABELS)


async def test_a_failed_chunk_keeps_the_chunks_before_it_and_a_re_import_adds_the_rest(store: Store, tmp_path: Path,
                                                                                      monkeypatch):
    """Imports commit chunk by chunk (short transactions); each chunk is all-or-nothing, re-importing is harmless."""
    monkeypatch.setattr(export_import, "IMPORT_CHUNK_ROWS", 100)
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"text": "t" * 2000 + str(i), "label": "joy"}) + "\n"
                            for i in range(300)), encoding="utf-8")
    pages = (await store._db.execute_fetchall("PRAGMA page_count"))[0][0]
    await store._db.execute(f"PRAGMA max_page_count = {pages + 250}")  # room for one chunk (~160 pages), not two
    with pytest.raises(StoreError, match="full"):
        await import_examples(store, path, labels=LABELS)
    assert await store.count_corrections() == 100
    await store._db.execute("PRAGMA max_page_count = 1073741823")
    report = await import_examples(store, path, labels=LABELS)
    assert (report.added, report.duplicates) == (200, 100)
    assert await store.count_corrections() == 300


# --------------------------------------------------------------------------- hostile and huge files


async def test_deeply_nested_json_is_one_bad_line_not_a_crash(store: Store, tmp_path: Path):
    deep = "[" * 100_000 + "]" * 100_000
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join([
        json.dumps({"text": "before", "label": "joy"}),
        deep,
        '{"text": "nested", "label": "joy", "extra": ' + deep + "}",
        json.dumps({"text": "after", "label": "sadness"}),
    ]) + "\n", encoding="utf-8")
    report = await import_examples(store, path, labels=LABELS)
    assert report.added == 2 and [n for n, _ in report.errors] == [2, 3]
    assert all("nested too deeply" in why for _, why in report.errors)
    arr = tmp_path / "in.json"
    arr.write_text('[{"text": "first", "label": "joy"}, ' + deep + ', {"text": "never read", "label": "joy"}]',
                   encoding="utf-8")
    report = await import_examples(store, arr, labels=LABELS)
    assert report.added == 1 and report.errors[0][0] == 2 and "nested too deeply" in report.errors[0][1]
    assert "the rest of the array was not read" in report.errors[0][1]


async def test_an_unterminated_csv_quote_is_reported_where_it_opened(store: Store, tmp_path: Path):
    path = tmp_path / "in.csv"
    path.write_text("text,label\nfine,joy\n\"oops,joy\n" + "".join(f"row {i},joy\n" for i in range(50)),
                    encoding="utf-8")
    report = await import_examples(store, path, labels=LABELS)
    assert report.added == 1
    assert report.errors == [(3, "a quote opened on line 3 is never closed, so lines 3-53 were not imported: "
                                 "close it (a quote inside a text is written \"\") and import the file again")]


async def test_a_quote_closed_many_lines_later_names_the_lines_it_swallowed(store: Store, tmp_path: Path):
    path = tmp_path / "in.csv"
    path.write_text('text,label\n"oops,joy\nrow a,joy\nrow b,joy\n"quoted" text,joy\nlast,joy\n', encoding="utf-8")
    report = await import_examples(store, path, labels=LABELS)
    assert report.added == 1 and report.errors[0][0] == 2
    assert "lines 2-5" in report.errors[0][1] and "closing quote" in report.errors[0][1]


async def test_csv_round_trip_keeps_texts_over_the_csv_modules_default_field_limit(store: Store, tmp_path: Path):
    long_text = "long " * 40_000  # 200,000 characters; csv refuses fields over 131,072 by default
    await store.add_correction(Correction(long_text, "joy", message_id=1, corrector_id=1))
    path = tmp_path / "out.csv"
    assert await export_examples(store, path) == 1
    dest = await Store.open(tmp_path / "dest.sqlite3", labels=LABELS)
    try:
        report = await import_examples(dest, path, labels=LABELS)
        assert report == ImportReport(added=1, errors=[])
        assert await dest.corrections_for_training() == [(long_text, "joy")]
    finally:
        await dest.close()


async def test_texts_the_store_cannot_keep_are_bad_rows(store: Store, tmp_path: Path):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join([
        '{"text": "lone \\ud800 surrogate", "label": "joy"}',  # valid JSON, but not UTF-8 text
        json.dumps({"text": "x" * (export_import.MAX_TEXT_CHARS + 1), "label": "joy"}),
        json.dumps({"text": "fine", "label": "joy"}),
    ]) + "\n", encoding="utf-8")
    report = await import_examples(store, path, labels=LABELS)
    assert report.added == 1 and [n for n, _ in report.errors] == [1, 2]
    assert "lone surrogate" in report.errors[0][1] and "longer than 1,000,000 characters" in report.errors[1][1]


FORMULAS = ["=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\tTab first", "\rCR first", "'=quoted formula",
            "''=two quotes", "'tis plain", "plain - text", "=", "'"]


async def test_csv_export_defuses_formulas_and_import_of_it_restores_them(store: Store, tmp_path: Path):
    """OWASP: a cell starting with = + - @ TAB or CR gets a leading quote; our import takes it off again."""
    for i, text in enumerate(FORMULAS):
        await store.add_correction(Correction(text, "joy", message_id=i + 1, corrector_id=1, created_at=1000.0 + i))
    path = tmp_path / "out.csv"
    await export_examples(store, path)
    with open(path, newline="", encoding="utf-8") as f:
        cells = [row[0] for row in csv.reader(f)][1:]
    for cell in cells:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert cells[FORMULAS.index("'tis plain")] == "'tis plain" and cells[FORMULAS.index("'")] == "'"
    dest = await Store.open(tmp_path / "dest.sqlite3", labels=LABELS)
    try:
        assert (await import_examples(dest, path, labels=LABELS)).errors == []
        assert [t for t, _ in await dest.corrections_for_training()] == FORMULAS
    finally:
        await dest.close()


async def test_import_writes_in_short_transactions_so_other_writers_get_through(store: Store, tmp_path: Path,
                                                                                monkeypatch):
    """One transaction for the whole file held the lock past the busy timeout: /correct failed with "locked"."""
    path = tmp_path / "big.csv"
    path.write_text("text,label\n" + "".join(f"text number {i},joy\n" for i in range(9_000)), encoding="utf-8")
    chunks: list[int] = []
    events: list[str] = []
    add_examples = store.add_examples
    member: list[asyncio.Task] = []

    async def member_corrects():
        await store.add_correction(Correction("a member's correction", "anger", message_id=1, corrector_id=2))
        events.append("correction")

    async def spy(examples):
        chunks.append(len(examples))
        if not member:  # a member corrects while the first chunk is being written
            member.append(asyncio.create_task(member_corrects()))
        added = await add_examples(examples)
        events.append("chunk")
        return added

    monkeypatch.setattr(store, "add_examples", spy)
    report = await import_examples(store, path, labels=LABELS)
    await member[0]
    assert report.added == 9_000
    assert "chunk" in events[events.index("correction"):], "the correction waited for the whole import"
    assert len(chunks) >= 3 and max(chunks) <= export_import.IMPORT_CHUNK_ROWS <= 5_000


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
async def test_import_memory_is_bounded_by_a_chunk_not_the_file(store: Store, tmp_path: Path, fmt: str, monkeypatch):
    """Measured with tracemalloc (every thread): reading everything first peaked at 8-9x the file's size.

    Streamed, the peak is about one chunk whatever the file's size (0.8 MB at 2,000 rows a chunk for
    files of 1.4 and 3.8 MB); with 500 rows a chunk it stays under half of this 1 MB file.
    """
    monkeypatch.setattr(export_import, "IMPORT_CHUNK_ROWS", 500)
    rows = [(f"message {i} " + "word " * 10, LABELS[i % 4]) for i in range(12_000)]
    path = tmp_path / f"big.{fmt}"
    with open(path, "w", encoding="utf-8", newline="") as f:
        if fmt == "csv":
            csv.writer(f).writerows([("text", "label"), *rows])
        elif fmt == "jsonl":
            f.writelines(json.dumps({"text": t, "label": lb}) + "\n" for t, lb in rows)
        else:
            json.dump([{"text": t, "label": lb} for t, lb in rows], f)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        report = await import_examples(store, path, labels=LABELS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.added == 12_000 and report.ok
    assert peak < size / 2, f"peak {peak / 1e6:.2f} MB for a {size / 1e6:.2f} MB file"
