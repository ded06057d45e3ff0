"""Transform ahead (``core.ahead``): parts prepared while the extract runs give the transform's own files,
counts and reasons, or are prepared again when the transform's "now" would judge a record differently."""

from __future__ import annotations

import dataclasses
from concurrent.futures import FIRST_COMPLETED, wait
from datetime import timedelta

import psutil
import pyarrow.parquet as pq
import pytest
from test_process import NOW, RULES, WINDOWED, outcome, raw_run, records, result_of

from eventpipe.core import ahead
from eventpipe.core import process as process_module
from eventpipe.core.process import Rules, process
from eventpipe.settings import QualitySettings


def run_ahead(run, ahead_rules: Rules, parts: int, workers: int = 2, drain: bool = False) -> ahead.Ahead:
    """What the extract does: the pool started, ``parts`` parts handed over as they are written (with
    ``drain``, as a long extract would: every one of them prepared before the transform starts)."""
    started = ahead.start(run.path, ahead_rules, workers)
    assert started is not None
    for i, path in enumerate(run.parts("raw")[:parts]):
        started.part_written(i, path)
    while drain and started.backlog:
        wait(list(started.futures.values()), return_when=FIRST_COMPLETED)
        started.top_up()
    return started


def outcome_ahead(run, rules: Rules, early: ahead.Ahead | None, workers: int = 1) -> tuple:
    r = process(run, rules, workers=workers, ahead=early)
    return (*result_of(r, run), r.ahead)


def files(run) -> dict:
    return {(kind, p.name): pq.read_table(p) for kind in ("clean", "rejects") for p in run.parts(kind)}


@pytest.mark.parametrize("rules", [RULES, WINDOWED], ids=["api-window", "client-filter"])
@pytest.mark.parametrize("handed, drain", [(2, False), (5, False), (10, False), (10, True)])
def test_parts_prepared_ahead_give_the_same_files(tmp_path, rules, handed, drain):
    items = records(600)
    alone = raw_run(tmp_path / "alone", items, 60)
    early = raw_run(tmp_path / "early", items, 60)
    expected = outcome(alone, rules, False)
    a = run_ahead(early, rules, handed, drain=drain)
    got = outcome_ahead(early, rules, ahead.take(early.path, rules, False))
    assert got[:-1] == expected
    assert got[-1] == a.used >= 1  # at least the first parts were handed over
    assert a.used + a.redone <= handed
    assert files(early).keys() == files(alone).keys()
    for key, table in files(alone).items():
        assert files(early)[key].equals(table), key
    assert not (early.path / ahead.FOLDER).exists()


def test_a_later_now_that_would_judge_a_record_differently_prepares_the_part_again(tmp_path):
    """The records run to hours after NOW: with the extract's "now" an hour earlier, the records between the
    two limits were refused as too far ahead; the transform's "now" accepts them, so those parts are redone."""
    items = records(600)
    earlier = dataclasses.replace(RULES, now=NOW - timedelta(hours=1))
    alone = raw_run(tmp_path / "alone", items, 60)
    early = raw_run(tmp_path / "early", items, 60)
    expected = outcome(alone, RULES, False)
    a = run_ahead(early, earlier, 100, drain=True)  # every part
    got = outcome_ahead(early, RULES, ahead.take(early.path, RULES, False))
    assert got[:-1] == expected
    assert a.redone >= 1 and a.used >= 1, (a.used, a.redone)  # the early parts' records are hours before
    assert got[-1] == a.used


def test_a_refusal_naming_another_minute_prepares_the_part_again(tmp_path):
    """Same limits for every record, but a "timestamp_in_future" reason names "now" to the minute."""
    items = records(600)
    seconds_later = dataclasses.replace(RULES, now=NOW + timedelta(seconds=1))
    minute_later = dataclasses.replace(RULES, now=NOW + timedelta(minutes=1))
    for name, later, redone in (("second", seconds_later, False), ("minute", minute_later, True)):
        alone = raw_run(tmp_path / f"alone-{name}", items, 60)
        early = raw_run(tmp_path / f"early-{name}", items, 60)
        expected = outcome(alone, later, False)
        a = run_ahead(early, RULES, 100, drain=True)
        got = outcome_ahead(early, later, ahead.take(early.path, later, False))
        assert got[:-1] == expected, name
        assert (a.redone > 0) is redone, (name, a.used, a.redone)


@pytest.mark.parametrize(
    "change",
    ["another run", "other rules", "replay", "an earlier now"],
)
def test_a_pool_started_for_something_else_is_not_taken(tmp_path, change):
    items = records(200)
    run = raw_run(tmp_path / "run", items, 40)
    rules, path, replay = RULES, run.path, False
    if change == "another run":
        path = tmp_path / "other"
    elif change == "other rules":
        rules = dataclasses.replace(RULES, quality=QualitySettings(allowed_events=("click",)))
    elif change == "replay":
        replay = True
    else:
        rules = dataclasses.replace(RULES, now=NOW - timedelta(seconds=1))
    a = run_ahead(run, RULES, 3)
    workers = [psutil.Process(p) for p in a.pool._processes]  # noqa: SLF001 - to see them end
    assert ahead.take(path, rules, replay) is None
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive
    assert not (run.path / ahead.FOLDER).exists()
    assert ahead.take(run.path, RULES, False) is None  # closed, not kept


def test_a_new_start_or_discard_closes_the_pool_never_taken(tmp_path):
    run = raw_run(tmp_path / "run", records(200), 40)
    first = run_ahead(run, RULES, 2)
    second = run_ahead(run, RULES, 2)
    assert first.pool._shutdown_thread  # noqa: SLF001
    ahead.discard()
    assert second.pool._shutdown_thread  # noqa: SLF001
    assert ahead.take(run.path, RULES, False) is None


def test_no_pool_ahead_when_the_transform_would_use_none(tmp_path):
    assert ahead.start(tmp_path, RULES, 1) is None  # runner.transform_workers=1: the kernel alone
    assert not (tmp_path / ahead.FOLDER).exists()


def test_a_part_kept_in_a_file_reads_back_as_prepared(tmp_path):
    """``prepare_kept`` (the worker's side: arrays as ``.npz``, the rest as JSON) and ``read_kept`` give back
    ``prepare``'s own result: keys, rows, hours, every reason (non-ASCII text included) and the counts."""
    items = records(300) + [
        {"user_id": "u", "event": "click", "timestamp": "not a time \U0001f600 ü"},
        {"user_id": None, "event": 7, "timestamp": 1e30},
    ]
    run = raw_run(tmp_path, items, 400)
    raw = run.parts("raw")[0]
    job = (0, raw, tmp_path / "clean.parquet", tmp_path / "rejects.parquet", WINDOWED, False)
    direct = process_module.prepare(*job)
    kept = ahead.prepare_kept(tmp_path / "kept.npz", *job)
    back = ahead.read_kept(kept)
    assert any("\U0001f600 ü" in r for rs in back.bad_reasons for r in rs)
    for f in dataclasses.fields(direct):
        a, b = getattr(direct, f.name), getattr(back, f.name)
        if hasattr(a, "dtype"):
            assert a.dtype == b.dtype and (a == b).all(), f.name
        else:
            assert a == b, f.name


def test_the_first_parts_to_merge_are_prepared_here_while_the_workers_prepare_parts_ahead(tmp_path):
    """The parts prepared ahead are the first ones and merged last; the merge starts with the last ones, which
    the load waits for. While a worker still prepares a part ahead, no part is queued behind it: this process
    prepares them itself, even with a sink loading the files; the files are the same."""
    import threading
    from concurrent.futures import Future

    from test_process import Sink

    items = records(600)
    expected = outcome(raw_run(tmp_path / "alone", items, 60), WINDOWED, False)
    run = raw_run(tmp_path / "early", items, 60)
    a = run_ahead(run, WINDOWED, 1)
    done = a.futures[0].result()  # part 0, prepared ahead: shown as still being prepared until the end
    held: Future = Future()
    a.futures[0] = held
    submitted: list[int] = []
    submit = a.pool.submit

    def recorded(fn, *args):
        submitted.append(args[0])
        return submit(fn, *args)

    a.pool.submit = recorded  # type: ignore[method-assign]

    class Last(Sink):
        def file_final(self, path):
            super().file_final(path)
            if len(self.files) == len(run.parts("raw")) - 1:  # every part but part 0: it is done now
                threading.Timer(0.05, held.set_result, [done]).start()

    sink = Last()
    r = process(run, WINDOWED, on_final=sink, ahead=ahead.take(run.path, WINDOWED, False))
    assert result_of(r, run) == expected and r.ahead == 1
    assert submitted == []
    assert [name for name, _ in sink.files] == [p.name for p in run.parts("clean")][::-1]
