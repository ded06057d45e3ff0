"""Storage in-process, on SQLite and PostgreSQL: the tables follow RunCounts, and both loaders count alike."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path

import orjson

from eventpipe.core.counts import RunCounts
from eventpipe.core.process import Rules, process
from eventpipe.rundir import RunDir, part_name, write_raw_items
from eventpipe.settings import Secret, load_settings, normalise_database_url
from eventpipe.storage.loaders import PostgresLoader, SQLiteLoader, loader_for
from eventpipe.storage.store import Store
from eventpipe.storage.tables import define_tables

NOW = datetime(2024, 5, 2, tzinfo=timezone.utc)


def test_pipeline_runs_has_a_column_per_count():
    columns = {c.name for c in define_tables().runs.columns}
    assert set(RunCounts.names()) <= columns


def _store(database_url: str) -> Store:
    settings = load_settings(None, [], env={})
    return Store(dataclasses.replace(settings, database_url=Secret(normalise_database_url(database_url))))


def _parts(tmp_path: Path, parts: list[list[dict]], name: str) -> RunDir:
    """A run of these raw parts (one page each), transformed."""
    run = RunDir(tmp_path / name)
    for i, items in enumerate(parts):
        write_raw_items([orjson.dumps(x).decode() for x in items], run.path / "raw" / part_name(i))
    process(run, Rules(load_settings(None, [], env={}).quality, NOW))
    return run


def _batch(tmp_path: Path, items: list[dict], name: str) -> RunDir:
    return _parts(tmp_path, [items], name)


def _load(store: Store, run: RunDir, run_id: str) -> RunCounts:
    counts, _ = loader_for(store).load(
        [str(p) for p in run.parts("clean")],
        [str(p) for p in run.parts("rejects")],
        run_id,
        run_values={"kind": "manual"},
    )
    return counts


ITEMS = [
    {"user_id": "u1", "event": "click", "timestamp": "2024-05-01T10:00:00Z", "properties": {"a": 1}},
    {"user_id": "u2", "event": "Page View", "timestamp": 1714557600},
    {"user_id": None, "event": "click", "timestamp": "2024-05-01T10:00:00Z"},  # a dead letter
]


def test_load_inserts_then_leaves_unchanged_then_updates(tmp_path, database_url):
    store = _store(database_url)
    store.create_schema()
    assert isinstance(loader_for(store), SQLiteLoader if store.is_sqlite else PostgresLoader)
    first = _load(store, _batch(tmp_path, ITEMS, "a"), "run-a")
    assert first.load_counts() == dict(
        loaded=2, inserted=2, updated=0, unchanged=0, dead_letters_new=1, dead_letters_seen=0
    )
    again = _load(store, _batch(tmp_path, ITEMS, "b"), "run-b")
    assert again.load_counts() == dict(
        loaded=2, inserted=0, updated=0, unchanged=2, dead_letters_new=0, dead_letters_seen=1
    )
    changed = [{**ITEMS[0], "properties": {"a": 2}}, *ITEMS[1:]]
    third = _load(store, _batch(tmp_path, changed, "c"), "run-c")
    assert (third.inserted, third.updated, third.unchanged) == (0, 1, 1)
    summary = store.window_summary(datetime(2024, 5, 1, tzinfo=timezone.utc), NOW)
    assert summary["in_window"] == 2 and summary["dead_letters"] == {"pending": 1}
    runs = {r["run_id"]: r for r in store.recent_runs(10)}
    assert runs["run-a"]["status"] == "succeeded" and runs["run-a"]["inserted"] == 2
    store.dispose()


def _event(user: str, hour: int) -> dict:
    return {"user_id": user, "event": "click", "timestamp": f"2024-05-01T{hour:02d}:00:00Z"}


def _stored_order(store: Store, run_id: str) -> list[str]:
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT user_id FROM analytics WHERE run_id = '{run_id}' ORDER BY ctid"
        ).all()
    return [r[0] for r in rows]


def test_postgres_takes_the_rows_in_the_key_s_order(tmp_path, pg_fresh_url):
    """Rows reach PostgreSQL's B-tree in the key's order: a direct COPY sorts each part, the upsert all of them.
    Which rows are stored does not change, only the order the server takes them in (their ``ctid``)."""
    store = _store(pg_fresh_url)
    store.create_schema()
    # an empty range: each part COPY-ed straight into the table, sorted on its own
    empty = _parts(tmp_path, [[_event("u9", 10), _event("u7", 11)], [_event("u8", 9), _event("u6", 12)]], "a")
    assert _load(store, empty, "run-a").inserted == 4
    assert _stored_order(store, "run-a") == ["u7", "u9", "u6", "u8"]
    # the same hours again, with new keys among the stored ones: staged, then upserted in the key's order
    parts = [[_event("u5", 10), _event("u1", 11), _event("u3", 9)], [_event("u4", 12), _event("u2", 10)]]
    taken = _load(store, _parts(tmp_path, parts, "b"), "run-b")
    assert (taken.inserted, taken.updated) == (5, 0)
    assert _stored_order(store, "run-b") == ["u1", "u2", "u3", "u4", "u5"]
    assert len(_stored_order(store, "run-a")) == 4
    store.dispose()


def test_a_run_s_clean_and_rejects_parts_are_written_uncompressed(tmp_path):
    import pyarrow.parquet as pq

    run = _batch(tmp_path, ITEMS, "a")
    for part in [*run.parts("clean"), *run.parts("rejects")]:
        column = pq.read_metadata(part).row_group(0).column(0)
        assert column.compression == "UNCOMPRESSED"
        assert "PLAIN_DICTIONARY" not in column.encodings and "RLE_DICTIONARY" not in column.encodings
