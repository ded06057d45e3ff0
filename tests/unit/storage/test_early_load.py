"""Early load (``storage.early_load``): the clean rows ``COPY``-ed while the transform runs, committed by the load.

The stage functions run in this one process, as in the runner's shared kernel, on PostgreSQL. Every test
compares the table with what the load stage alone makes of the same files (``runner.load_during_transform``
false): whatever the early load meets, the table and the counts are the same.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import psycopg2
import pytest

from eventpipe.errors import QualityGateFailed
from eventpipe.notebook import stages
from eventpipe.rundir import RunDir, part_name, write_raw_items
from eventpipe.settings import Secret, load_settings, normalise_database_url
from eventpipe.storage import early_load
from support import query

SINCE = datetime(2024, 5, 1, tzinfo=timezone.utc)
UNTIL = SINCE + timedelta(days=1)
PARTS = 4


def part_items(i: int, n: int = 250, dirty: int = 3) -> list[dict]:
    """Part ``i``: events in hour ``i`` only (the parts' time ranges do not overlap), a few dirty records,
    and a copy of an event of the next part (the later copy wins, across the parts)."""
    t0 = SINCE + timedelta(hours=i)
    out = [
        {
            "user_id": f"u{k % 40}",
            "event": "click" if k % 3 else "page_view",
            "timestamp": (t0 + timedelta(seconds=k * 7)).isoformat(),
            "properties": {"part": i, "k": k},
        }
        for k in range(n)
    ]
    out += [{"user_id": f"bad{i}-{k}", "event": "", "timestamp": t0.isoformat()} for k in range(dirty)]
    if i + 1 < PARTS:  # superseded by part i + 1's own copy of its first event
        nxt = SINCE + timedelta(hours=i + 1)
        out.append(
            {"user_id": "u0", "event": "page_view", "timestamp": nxt.isoformat(), "properties": {"old": 1}}
        )
    return out


def context(tmp_path: Path, url: str, run_id: str, *overrides: str, kind: str = "backfill", parts=None):
    settings = load_settings(None, [f"paths.runs_dir={tmp_path / 'runs'}", *overrides], env={})
    settings = dataclasses.replace(settings, database_url=Secret(normalise_database_url(url)))
    run = RunDir(tmp_path / "runs" / run_id)
    items = parts if parts is not None else [part_items(i) for i in range(PARTS)]
    for i, chunk in enumerate(items):
        write_raw_items([orjson.dumps(x).decode() for x in chunk], run.path / "raw" / part_name(i))
    run.write_manifest("extract", {"extracted": sum(map(len, items))})
    return stages.StageContext(settings, run_id, SINCE, UNTIL, run, kind=kind)


def table(url: str) -> list[tuple]:
    return query(
        url,
        "SELECT user_id, timestamp, event_type, session_id, properties::text, event_date, event_hour, run_id "
        "FROM analytics ORDER BY 1, 2, 3",
    )


def open_transactions(url: str) -> int:
    name = url.rsplit("/", 1)[1]
    return query(
        url,
        f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}' AND state LIKE 'idle in transaction%'",
    )[0][0]


def reset(url: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    conn.cursor().execute("TRUNCATE analytics, dead_letter, pipeline_runs, pipeline_state")
    conn.close()


def run_stages(ctx) -> tuple[dict, dict]:
    tq = stages.transform_quality(ctx)
    stages.check_gate(ctx, tq)
    return tq.metrics, stages.load(ctx)


def reference(tmp_path: Path, url: str, run_id: str, **kw) -> tuple[list[tuple], dict]:
    """What the load stage alone makes of the same run (the early load turned off)."""
    ctx = context(tmp_path / "ref", url, run_id, "runner.load_during_transform=false", **kw)
    _, loaded = run_stages(ctx)
    assert loaded["rows_copied_during_transform"] == 0
    return table(url), loaded


COUNTS = ("loaded", "inserted", "updated", "unchanged", "dead_letters_new", "dead_letters_seen", "passed")


def test_the_rows_copied_during_the_transform_are_invisible_until_the_load_commits_them(
    tmp_path, pg_fresh_url
):
    url = pg_fresh_url
    ctx = context(tmp_path, url, "r1")
    tq = stages.transform_quality(ctx)
    copying = early_load._current
    assert copying is not None and copying.run_id == "r1"
    copying.wait()  # every clean file copied, in a transaction of its own: nobody else sees a row yet
    assert copying.rows == tq.metrics["passed"] > 0 and copying.stopped is None
    assert query(url, "SELECT count(*) FROM analytics")[0][0] == 0
    assert open_transactions(url) == 1
    stages.check_gate(ctx, tq)
    loaded = stages.load(ctx)
    assert (
        loaded["rows_copied_during_transform"]
        == loaded["loaded"]
        == loaded["inserted"]
        == tq.metrics["passed"]
    )
    assert open_transactions(url) == 0 and early_load._current is None
    got = table(url)
    stamps = query(url, "SELECT DISTINCT loaded_at, run_id FROM analytics")
    assert len(stamps) == 1 and stamps[0][1] == "r1"  # one load, one stamp, as the load stage alone writes
    status = query(url, "SELECT status, loaded FROM pipeline_runs WHERE run_id = 'r1'")
    assert status == [("succeeded", loaded["loaded"])]

    reset(url)
    want, alone = reference(tmp_path, url, "r1")
    assert got == want
    assert {k: loaded[k] for k in COUNTS} == {k: alone[k] for k in COUNTS}


def test_a_failed_gate_rolls_the_copied_rows_back(tmp_path, pg_fresh_url):
    url = pg_fresh_url
    ctx = context(tmp_path, url, "r1", "quality.min_pass_rate=1.0")
    tq = stages.transform_quality(ctx)
    assert tq.metrics["gate"] == "failed"
    assert early_load._current is None and open_transactions(url) == 0
    with pytest.raises(QualityGateFailed):
        stages.check_gate(ctx, tq)
    with pytest.raises(QualityGateFailed):
        stages.load(ctx)
    assert query(url, "SELECT count(*) FROM analytics")[0][0] == 0


def test_a_rerun_over_stored_rows_takes_the_upsert_path(tmp_path, pg_fresh_url, caplog):
    caplog.set_level("INFO", logger="eventpipe.storage.early_load")
    url = pg_fresh_url
    run_stages(context(tmp_path, url, "r1"))
    changed = [part_items(i) for i in range(PARTS)]
    changed[2][5]["properties"] = {"changed": True}
    _, again = run_stages(context(tmp_path, url, "r2", parts=changed))
    assert again["rows_copied_during_transform"] == 0  # the first file's range is taken: nothing copied
    assert "already holds rows in the run's time range" in caplog.text
    assert (again["inserted"], again["updated"]) == (0, 1)
    assert again["unchanged"] == again["loaded"] - 1
    assert open_transactions(url) == 0
    got = table(url)

    reset(url)
    reference(tmp_path / "a", url, "r1")
    want, alone = reference(tmp_path / "b", url, "r2", parts=changed)
    assert [r[:-1] for r in got] == [r[:-1] for r in want]
    assert {k: again[k] for k in COUNTS} == {k: alone[k] for k in COUNTS}


def test_a_stored_key_beyond_the_first_files_range_rolls_the_copy_back_and_the_upsert_loads(
    tmp_path, pg_fresh_url, caplog
):
    """The last part's file is copied first and its range is free; part 0's first event is already stored,
    so its ``COPY`` meets a unique violation: everything copied is rolled back, the load upserts."""
    url = pg_fresh_url
    first = part_items(0)[0]
    run_stages(context(tmp_path, url, "r0", parts=[[first]]))
    caplog.set_level("INFO", logger="eventpipe.storage.early_load")
    _, loaded = run_stages(context(tmp_path, url, "r1"))
    assert "UniqueViolation: duplicate key" in caplog.text
    assert loaded["rows_copied_during_transform"] == 0
    assert (loaded["inserted"], loaded["updated"], loaded["unchanged"]) == (loaded["loaded"] - 1, 0, 1)
    assert open_transactions(url) == 0
    got = table(url)

    reset(url)
    reference(tmp_path / "a", url, "r0", parts=[[first]])
    want, alone = reference(tmp_path / "b", url, "r1")
    assert got == want
    assert {k: loaded[k] for k in COUNTS} == {k: alone[k] for k in COUNTS}


def fallback_after_the_copy(tmp_path, url, caplog, meddle, says: str) -> None:
    """Every clean file copied, then ``meddle(ctx)`` between the transform and the load: the load stage says
    ``says``, loads the run itself, and the table is the load alone's."""
    caplog.set_level("INFO", logger="eventpipe.storage.early_load")
    ctx = context(tmp_path, url, "r1")
    tq = stages.transform_quality(ctx)
    stages.check_gate(ctx, tq)
    early_load._current.wait()
    meddle(ctx)
    loaded = stages.load(ctx)
    assert says in caplog.text
    assert loaded["rows_copied_during_transform"] == 0
    assert loaded["inserted"] == loaded["loaded"] == tq.metrics["passed"]
    assert open_transactions(url) == 0
    got = table(url)
    reset(url)
    want, _ = reference(tmp_path, url, "r1")
    assert got == want


def test_a_clean_file_changed_after_its_copy_is_loaded_by_the_load_stage(tmp_path, pg_fresh_url, caplog):
    def touch(ctx):
        part = ctx.run.parts("clean")[1]
        stat = part.stat()
        os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))

    says = f"clean file {part_name(1)} changed after it was copied"
    fallback_after_the_copy(tmp_path, pg_fresh_url, caplog, touch, says)


def test_a_session_the_server_ended_is_not_committed_and_the_load_stage_loads(tmp_path, pg_fresh_url, caplog):
    def terminate(ctx):
        ended = query(
            pg_fresh_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        )
        assert ended == [(True,)]

    fallback_after_the_copy(tmp_path, pg_fresh_url, caplog, terminate, "its transaction is gone")


def test_another_runs_load_never_takes_it(tmp_path, pg_fresh_url):
    url = pg_fresh_url
    ctx = context(tmp_path, url, "r1")
    stages.check_gate(ctx, stages.transform_quality(ctx))
    other = context(tmp_path, url, "r2")
    other.run.write_manifest("transform_quality", ctx.read_manifest("transform_quality"))
    (other.run.path / "clean").mkdir()
    for p in ctx.run.parts("clean"):
        (other.run.path / "clean" / p.name).write_bytes(p.read_bytes())
    (other.run.path / "rejects").mkdir()
    loaded = stages.load(other)
    assert loaded["rows_copied_during_transform"] == 0 and loaded["inserted"] == loaded["loaded"]
    assert query(url, "SELECT DISTINCT run_id FROM analytics") == [("r2",)]
    assert open_transactions(url) == 0


@pytest.mark.parametrize(
    "kind, overrides",
    [
        ("manual", ()),  # a notebook run by hand: its load may never come, or come from another kernel
        ("airflow", ()),  # each stage an Airflow task of its own
        ("backfill", ("runner.shared_kernel=false",)),  # a kernel per notebook
        ("backfill", ("runner.load_during_transform=false",)),
    ],
)
def test_it_runs_only_where_the_load_runs_next_in_the_same_process(tmp_path, pg_fresh_url, kind, overrides):
    ctx = context(tmp_path, pg_fresh_url, "r1", *overrides, kind=kind)
    tq = stages.transform_quality(ctx)
    assert early_load._current is None
    stages.check_gate(ctx, tq)
    loaded = stages.load(ctx)
    assert loaded["rows_copied_during_transform"] == 0 and loaded["inserted"] == tq.metrics["passed"]


def test_not_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    ctx = context(tmp_path, url, "r1")
    tq = stages.transform_quality(ctx)
    assert early_load._current is None
    stages.check_gate(ctx, tq)
    assert stages.load(ctx)["inserted"] == tq.metrics["passed"]


def test_a_shared_table_gets_each_pipelines_rows_copied_early_under_its_source(tmp_path, pg_fresh_url):
    """Two pipelines, one table (``pipeline.shared``): the same events under two sources are no conflict,
    and the second pipeline's range check looks at its own rows only."""
    url = pg_fresh_url
    conn = psycopg2.connect(url)
    conn.autocommit = True
    conn.cursor().execute("DROP TABLE IF EXISTS events_all")
    conn.close()
    shared = ("pipeline.table=events_all", "pipeline.shared=true")
    _, a = run_stages(context(tmp_path / "a", url, "ra", "pipeline.name=a", *shared))
    _, b = run_stages(context(tmp_path / "b", url, "rb", "pipeline.name=b", *shared))
    assert a["rows_copied_during_transform"] == a["loaded"] == a["inserted"] > 0
    assert b["rows_copied_during_transform"] == b["loaded"] == b["inserted"] == a["loaded"]
    by_source = query(url, "SELECT source, count(*), min(run_id) FROM events_all GROUP BY 1 ORDER BY 1")
    assert by_source == [("a", a["loaded"], "ra"), ("b", b["loaded"], "rb")]
    assert open_transactions(url) == 0


KILLED_AFTER_THE_COPY = """
import os, sys
sys.path[:0] = [{here!r}, {tests!r}, {lib!r}]
from test_early_load import context
from eventpipe.notebook import stages
from eventpipe.storage import early_load
from pathlib import Path
ctx = context(Path({tmp!r}), {url!r}, "r1")
stages.transform_quality(ctx)
early_load._current.wait()
print(early_load._current.rows, flush=True)
os._exit(137)  # the kernel dies between its transform and its load, its transaction open
"""


def test_a_kernel_killed_between_transform_and_load_leaves_nothing_and_the_rerun_loads_everything(
    tmp_path, pg_fresh_url
):
    import subprocess
    import sys

    here = Path(__file__).resolve()
    script = KILLED_AFTER_THE_COPY.format(
        here=str(here.parent),
        tests=str(here.parents[2]),
        lib=str(here.parents[3] / "lib"),
        tmp=str(tmp_path / "killed"),
        url=pg_fresh_url,
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert int(proc.stdout.split()[0]) > 0  # it had copied rows
    assert query(pg_fresh_url, "SELECT count(*) FROM analytics")[0][0] == 0
    _, loaded = run_stages(
        context(tmp_path, pg_fresh_url, "r2")
    )  # would wait on the dead run's keys for ever
    assert loaded["rows_copied_during_transform"] == loaded["loaded"] == loaded["inserted"] > 0
    assert open_transactions(pg_fresh_url) == 0
