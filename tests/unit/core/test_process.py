"""The chunk loop (``core.process``): cutting the records into parts, or preparing the parts in worker
processes, changes nothing: not a row of the clean and reject files, not a count, reason or settled hash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eventpipe.core.process import Rules, clean_table, process, transform_workers
from eventpipe.core.quality import check
from eventpipe.core.records import parse_items
from eventpipe.rundir import CLEAN_SCHEMA, RAW_SCHEMA, RunDir, part_name
from eventpipe.settings import QualitySettings

NOW = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
RULES = Rules(QualitySettings(), NOW)
WINDOWED = Rules(QualitySettings(), NOW, window=(NOW - timedelta(hours=6), NOW - timedelta(hours=1)))


def records(n: int = 400) -> list[dict]:
    """Clean events, copies of earlier ones sent later (the copy wins), transform and quality failures,
    and quality failures sent twice, spread so that many copies land in another part than their original."""
    out: list[dict] = []
    for i in range(n):
        ts = NOW - timedelta(hours=8) + timedelta(seconds=67 * i)  # the last ones are hours ahead of NOW
        event = ("click", "page_view", "scroll")[i % 3 if i % 11 == 0 else i % 2]  # "scroll": not allowed
        out.append(
            {"user_id": f"u{i % 37}", "event": event, "timestamp": ts.isoformat(), "properties": {"i": i}}
        )
        if i % 5 == 0 and i >= 10:  # a copy of an event sent 10 records earlier, with newer properties
            copy = dict(out[-11 - (i // 5 - 2)], properties={"copy": i})
            out.append(copy)
        if i % 23 == 0:
            out.append({"user_id": None, "event": "click", "timestamp": ts.isoformat()})
    return out


def raw_run(tmp: Path, items: list[dict], per_part: int, per_page: int = 4) -> RunDir:
    """``items`` as raw parts of ``per_part`` records, in pages of ``per_page``, in API order."""
    (tmp / "raw").mkdir(parents=True)
    seq = page = 0
    for index, start in enumerate(range(0, len(items), per_part)):
        chunk = items[start : start + per_part]
        rows: dict[str, list] = {"page": [], "first_seq": [], "n": [], "body": []}
        for p in range(0, len(chunk), per_page):
            body = chunk[p : p + per_page]
            rows["page"].append(page)
            rows["first_seq"].append(seq)
            rows["n"].append(len(body))
            rows["body"].append(orjson.dumps(body))
            seq, page = seq + len(body), page + 1
        pq.write_table(pa.Table.from_pydict(rows, schema=RAW_SCHEMA), tmp / "raw" / part_name(index))
    return RunDir(tmp)


def rows_of(run: RunDir, kind: str) -> list[dict]:
    out = [r for p in run.parts(kind) for r in pq.read_table(p).to_pylist()]
    return sorted(out, key=lambda r: r["seq"])


def outcome(run: RunDir, rules: Rules, replay: bool, workers: int = 0) -> tuple:
    return result_of(process(run, rules, replay=replay, workers=workers), run)


def result_of(r, run: RunDir) -> tuple:
    """What ``process`` made of a run: counts, reasons, hours, settled hashes, the clean and reject rows."""
    return (
        r.counts.as_dict(),
        dict(r.reasons),
        r.per_hour.to_dict(),
        sorted(r.settled_hashes),
        rows_of(run, "clean"),
        rows_of(run, "rejects"),
    )


@pytest.mark.parametrize("replay", [False, True])
@pytest.mark.parametrize("rules", [RULES, WINDOWED], ids=["api-window", "client-filter"])
def test_cutting_the_records_into_parts_changes_nothing(tmp_path, rules, replay):
    items = records()
    whole = outcome(raw_run(tmp_path / "one", items, len(items)), rules, replay)
    counts = whole[0]
    assert counts["duplicates"] > 0 and counts["rejected_quality"] > 0 and counts["rejected_transform"] > 0
    for per_part in (7, 50, 101):
        cut = outcome(raw_run(tmp_path / f"cut{per_part}", items, per_part), rules, replay)
        assert cut == whole, per_part


@pytest.mark.parametrize("replay", [False, True])
@pytest.mark.parametrize("rules", [RULES, WINDOWED], ids=["api-window", "client-filter"])
@pytest.mark.parametrize(
    "block, per_page", [(7, 4), (3, 4), (5, 300)], ids=["7", "3", "pages-of-many-blocks"]
)
def test_parsing_a_part_a_block_at_a_time_changes_nothing(
    tmp_path, monkeypatch, rules, replay, block, per_page
):
    """``prepare`` decodes and parses a part a few blocks of records at a time and keeps only the raw texts
    (and, for a replay, the hashes) its dead letters and settled records need: with blocks of a few records,
    and with pages that span many blocks, the files, counts, reasons and hashes are those of one block."""
    import eventpipe.core.records as records_module

    items = records()
    whole = outcome(raw_run(tmp_path / "one", items, 250, per_page), rules, replay)
    assert whole[0]["rejected_quality"] > 0 and whole[0]["rejected_transform"] > 0
    monkeypatch.setattr(records_module, "BLOCK", block)
    assert outcome(raw_run(tmp_path / "blocks", items, 250, per_page), rules, replay) == whole


def test_copies_in_a_later_part_are_taken_out_of_the_earlier_parts_files(tmp_path):
    """Both a passing and a quality-failing record whose copy sits in the next part: only the copy stays."""
    first = {"user_id": "u1", "event": "click", "timestamp": "2024-05-01T10:00:00Z", "properties": {"v": 1}}
    future = {"user_id": "u2", "event": "click", "timestamp": "2024-05-01T20:00:00Z", "properties": {"v": 1}}
    items = [first, future, {**first, "properties": {"v": 2}}, {**future, "properties": {"v": 2}}]
    run = raw_run(tmp_path, items, per_part=2)
    r = process(run, RULES)
    assert (r.counts.passed, r.counts.rejected_quality, r.counts.duplicates) == (1, 1, 2)
    assert [orjson.loads(x["properties"]) for x in rows_of(run, "clean")] == [{"v": 2}]
    assert [orjson.loads(x["raw"])["properties"] for x in rows_of(run, "rejects")] == [{"v": 2}]
    assert not (run.path / "rejects" / part_name(0)).exists()  # its only reject was superseded
    assert dict(r.reasons) == {"timestamp_in_future": 1}


def test_worker_processes_write_the_same_files_as_the_kernel_alone(tmp_path):
    items = records(600)
    alone = raw_run(tmp_path / "alone", items, 60)
    pooled = raw_run(tmp_path / "pooled", items, 60)
    expected = outcome(alone, WINDOWED, True, workers=0)
    assert outcome(pooled, WINDOWED, True, workers=1) == expected
    assert outcome(pooled, WINDOWED, True, workers=3) == expected
    for kind in ("clean", "rejects"):
        names = [p.name for p in alone.parts(kind)]
        assert names == [p.name for p in pooled.parts(kind)]
        for name in names:
            a = pq.read_table(alone.path / kind / name)
            assert pq.read_table(pooled.path / kind / name).equals(a), (kind, name)
    shutil.rmtree(tmp_path)


class Sink:
    """Records each clean file ``process`` calls final and what it held then; ``stop_after``: files after
    which it says it stopped loading (``process`` then prepares parts in this process again)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stopped: str | None = None
        self.files: list[tuple[str, bytes]] = []
        self.stop_after = stop_after

    def file_final(self, path: Path) -> None:
        self.files.append((path.name, path.read_bytes()))
        if self.stop_after is not None and len(self.files) >= self.stop_after:
            self.stopped = "stopped"


@pytest.mark.parametrize("workers", [0, 1, 3])
@pytest.mark.parametrize("stop_after", [None, 2])
def test_each_clean_file_is_final_when_handed_over_and_the_files_are_the_same(tmp_path, workers, stop_after):
    """Handed over last part first, each as it ends up; with a sink loading, the workers prepare every part
    (this process keeps its core for the load), and the result is the same file for file."""
    items = records(600)
    expected = outcome(raw_run(tmp_path / "alone", items, 60), WINDOWED, False)
    run = raw_run(tmp_path / "sink", items, 60)
    sink = Sink(stop_after)
    assert result_of(process(run, WINDOWED, workers=workers, on_final=sink), run) == expected
    names = [p.name for p in run.parts("clean")]
    assert [name for name, _ in sink.files] == names[::-1]
    assert dict(sink.files) == {p.name: p.read_bytes() for p in run.parts("clean")}


@pytest.mark.parametrize(
    "requested, parts, expected",
    [(1, 10, 0), (0, 2, 0), (2, 2, 0), (2, 3, 1), (4, 3, 2), (3, 100, 2)],
)
def test_transform_workers(requested, parts, expected):
    assert transform_workers(requested, parts) == expected


def test_transform_workers_zero_means_one_per_cpu(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert transform_workers(0, 10) == 1  # and this process
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert transform_workers(0, 10) == 0


def test_quality_reasons_come_in_the_schemas_order_whatever_the_batch():
    """A reason list must not depend on the rest of the batch (pandera's ``validate`` returned failure cases
    in no fixed order: from about nine rows failing two checks on, some came timestamp first)."""
    import pandas as pd

    bad = {"event_type": "scroll", "timestamp": pd.Timestamp("2024-05-01T20:00:00Z")}
    good = {"event_type": "click", "timestamp": pd.Timestamp("2024-05-01T10:00:00Z")}
    for n in (1, 2, 9, 17, 300):
        reasons = check(pd.DataFrame([good] + [bad] * n), QualitySettings(), NOW)
        assert reasons[0] == []
        for rs in reasons[1:]:
            assert [r.split(":")[0] for r in rs] == ["event_not_allowed", "timestamp_in_future"], n


def test_the_clean_table_is_the_one_pandas_derived_columns_made():
    """Arrow derives ``event_date`` and ``event_hour``; the table (and its pandas notes) is the one that
    ``from_pandas`` made of the frame with the columns pandas derived (``dt.date``, ``dt.hour``)."""
    import numpy as np
    import pandas as pd

    stamps = [
        "2024-05-01T23:30:00-02:00",
        "2024-05-02T00:30:00+02:00",
        "2024-05-01T00:00:00Z",
        1714607999.999999,
    ]
    df = parse_items(
        np.arange(len(stamps)), [{"user_id": "u", "event": "click", "timestamp": t} for t in stamps]
    )
    for frame in (df, df.iloc[:0]):
        derived = frame.assign(
            event_date=frame["timestamp"].dt.date, event_hour=frame["timestamp"].dt.hour.astype("Int16")
        )
        want = pa.Table.from_pandas(derived[CLEAN_SCHEMA.names], schema=CLEAN_SCHEMA, preserve_index=False)
        got = clean_table(frame)
        assert got.equals(want, check_metadata=True)
        pd.testing.assert_frame_equal(got.to_pandas(), want.to_pandas())


@pytest.mark.parametrize("block", [8192, 5])
def test_the_clean_table_from_arrow_text_is_the_one_from_the_frame(monkeypatch, block):
    """``prepare`` takes the clean file's text columns from the Arrow arrays the parse built a block at a time:
    any rows of them give the table (schema and pandas notes included) that ``clean_table`` makes of the
    frame's rows; a value Arrow cannot take as text (a lone surrogate) gives no arrays at all."""
    import numpy as np

    import eventpipe.core.records as records_module
    from eventpipe.core.process import clean_table_of
    from eventpipe.core.records import parse_columns
    from eventpipe.demo.data import _generate_hour

    monkeypatch.setattr(records_module, "BLOCK", block)
    items = [orjson.loads(g.body) for g in _generate_hour(3, 400, 0.2, 0.05, 473000)]
    parsed = parse_columns(np.arange(len(items)), items, arrow=True)
    df, text = parsed.frame, parsed.text
    assert text is not None and len(text["user_id"]) == len(df)
    ok = np.flatnonzero(df["reasons"].map(len).to_numpy() == 0)
    rng = np.random.default_rng(block)
    for text_rows in (ok, ok[rng.random(len(ok)) < 0.5], ok[:0], np.arange(len(df))[df["user_id"].isna()]):
        kept = df.iloc[text_rows].reset_index(drop=True)  # the frame after the dedup, as in ``prepare``
        rows = np.flatnonzero(rng.random(len(kept)) < 0.8)
        want = clean_table(kept.iloc[rows])
        got = clean_table_of(kept, rows, text, text_rows[rows])
        assert got.equals(want, check_metadata=True)
    surrogate = dict(items[0], session_id="s\udc00")
    assert parse_columns([0, 1], [items[0], surrogate], arrow=True).text is None


@pytest.mark.parametrize("block", [8192, 3])
def test_a_record_the_source_could_not_parse_keeps_the_reason_it_came_with(monkeypatch, block):
    """Only the records that hold the source's marker (whatever its value) take their own reason instead of
    the record rules', in any block of ``records.BLOCK``; the others keep theirs."""
    import eventpipe.core.records as records_module
    from eventpipe.core.process import parse_records
    from eventpipe.rundir import UNPARSED, UNPARSED_REASON, unparsed

    monkeypatch.setattr(records_module, "BLOCK", block)
    good = {"user_id": "u1", "event": "click", "timestamp": NOW.isoformat()}
    items = [
        good,
        unparsed("[[[", "record_unparseable: JSONDecodeError"),
        {"user_id": None, "event": "click", "timestamp": NOW.isoformat()},
        {UNPARSED: None},  # the marker with a null value is still the marker
        ["not", "an", "object"],
        {UNPARSED: "x", "user_id": "u2"},  # no reason with it
        good,
        {"user_id": "u3", "event": "click", "timestamp": NOW.isoformat(), UNPARSED_REASON: "not a marker"},
    ]
    df = parse_records(items, list(range(len(items))), RULES)
    assert df["reasons"].tolist() == [
        [],
        ["record_unparseable: JSONDecodeError"],
        ["user_id_missing: absent or null"],
        ["record_unparseable"],
        ["record_not_object: item is a list"],
        ["record_unparseable"],
        [],
        [],
    ]


@pytest.mark.parametrize("chosen, expected", [("", "system"), ("mimalloc", "mimalloc")])
def test_the_parsing_processes_take_arrows_buffers_from_malloc_unless_a_pool_was_chosen(chosen, expected):
    """Arrow's own allocator keeps the freed tables' pages; glibc's ``malloc`` hands them back when a part is
    done (``release_free_memory``). A transform worker is a process of its own: the pool is set on import."""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if chosen:
        env["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    code = "import eventpipe.core.process, pyarrow as pa; print(pa.default_memory_pool().backend_name)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
