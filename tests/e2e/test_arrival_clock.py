"""The arrival clock: the Amplitude preset, unchanged, against the demo's Amplitude export (files by *upload*
time, events of 23:40-24:00 uploaded after midnight, numeric session ids), on SQLite and PostgreSQL.

A backfill keeps every event of its range, those uploaded after each midnight included (the last one too);
an incremental run picks up late uploads by arrival time; both count their late rows, and the figures
reach metrics.json, ``status`` and metrics.prom."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from eventpipe.demo import styles
from eventpipe.demo.data import DemoConfig, Generated
from eventpipe.demo.server import DEMO_USER
from support import (
    API_KEY,
    HOUR,
    ROOT,
    Api,
    Clock,
    Project,
    expected_table,
    query,
    runs,
    start_api,
    table_rows,
)

PRESET = str(ROOT / "params" / "sources" / "amplitude.yaml")
D1 = datetime(2025, 5, 29, tzinfo=timezone.utc)
D2 = D1 + timedelta(days=3)  # the backfill's end: a midnight that late uploads cross too
DAY = timedelta(days=1)


@pytest.fixture
def amplitude(clock: Clock) -> Iterator[Api]:
    """From 23:00 before D1 (so the day before's late uploads land in D1's files) to 04:00 after D2."""
    a = start_api(DemoConfig(start=D1 - HOUR, events_per_hour=30, end=D2 + 4 * HOUR), style="amplitude")
    yield a
    a.server.stop()


@pytest.fixture
def project(amplitude: Api, tmp_path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The preset's environment and nothing else: the base URL and the two credentials."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("API_BASE_URL", amplitude.url)
    monkeypatch.delenv("API_KEY", raising=False)
    monkeypatch.setenv("AMPLITUDE_API_KEY", DEMO_USER)
    monkeypatch.setenv("AMPLITUDE_SECRET_KEY", API_KEY)
    return Project(tmp_path, database_url)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _key(g: Generated) -> tuple[str, int, str]:
    assert g.truth is not None
    return (g.truth.user_id, g.truth.timestamp_ms, g.truth.event_type)


def _last_copies(events: list[Generated]) -> dict[tuple[str, int, str], Generated]:
    """Each clean event's last copy in upload order (the one a load keeps)."""
    out = {}
    for g in sorted(events, key=styles.upload_ms):
        if g.truth is not None:
            out[_key(g)] = g
    return out


def _uploaded(api: Api, lo: datetime, hi: datetime) -> list[Generated]:
    return api.data.uploaded(lo, hi, styles.upload_ms, styles.MAX_UPLOAD_LAG_MS)


def _crossing(api: Api, midnight: datetime) -> set[tuple[str, int, str]]:
    """The clean events of the 20 minutes before ``midnight`` that were uploaded after it."""
    events = api.data.events(midnight - timedelta(minutes=20), midnight)
    return {k for k, g in _last_copies(list(events)).items() if styles.upload_ms(g) >= _ms(midnight)}


def _metrics(project: Project, run_id: str) -> dict:
    return json.loads((project.reports / run_id / "metrics.json").read_text())


def test_backfill_keeps_the_events_uploaded_after_each_midnight(project, amplitude, capsys):
    assert (
        project.cli("backfill", "--start", D1.isoformat(), "--end", D2.isoformat(), "--params", PRESET) == 0
    )
    said = capsys.readouterr().out
    url = project.database_url
    table = table_rows(url)
    assert table == expected_table(amplitude, D1, D2)
    assert all(
        s is None or s.lstrip("-").isdigit() for _, s in table.values()
    )  # numeric session ids, as text
    for midnight in (D1 + DAY, D1 + 2 * DAY, D2):  # the last one, the range's end, included
        crossed = _crossing(amplitude, midnight)
        assert crossed and crossed <= set(table)
    # uploaded after D1 but of the day before: D1's requests return them, no window keeps them
    before = _crossing(amplitude, D1)
    assert before and not before & set(table)

    # dead letters: the dirty records the requests returned (uploads of [D1, D2 + horizon)) that the
    # partitions' windows keep, or that carry no usable time
    dirty = {
        styles.render_event("amplitude", g).decode()
        for g in _uploaded(amplitude, D1, D2 + HOUR)
        if g.truth is None
        and (
            D1 <= datetime.fromtimestamp(g.sort_ms / 1000, tz=timezone.utc) < D2
            or g.dirty_kind.startswith("timestamp_")
            or g.dirty_kind == "not_an_object"
        )
    }
    assert dirty and {r[0] for r in query(url, "SELECT raw FROM dead_letter")} == dirty

    parts = [r for r in runs(url) if r["kind"] == "backfill"]
    assert [(r["window_since"], r["window_until"]) for r in parts] == [
        (D1 + i * DAY, D1 + (i + 1) * DAY) for i in range(3)
    ]
    outside = late_total = 0
    for r in parts:
        m = _metrics(project, r["run_id"])
        a, b = r["window_since"], r["window_until"]
        outside += m["counts"]["outside_window"]
        # late: the partition's rows uploaded at or after its end, found thanks to the horizon
        late = [
            g
            for g in _last_copies(list(amplitude.data.events(a, b))).values()
            if styles.upload_ms(g) >= _ms(b)
        ]
        lags = np.array([(styles.upload_ms(g) - g.truth.timestamp_ms) / 1000 for g in late])
        lateness = m["lateness"]
        assert lateness["measure"] == "arrived at or after the window's end"
        assert lateness["at"] == b.isoformat().replace("+00:00", "Z")
        assert lateness["late_rows"] == lateness["lag_rows"] == len(late) > 0
        late_total += len(late)
        assert lateness["lag_max_s"] == pytest.approx(lags.max(), abs=1e-3)
        assert lateness["lag_p50_s"] == pytest.approx(np.percentile(lags, 50), abs=1e-3)
        assert lateness["lag_p99_s"] == pytest.approx(np.percentile(lags, 99), abs=1e-3)
    assert outside >= len(before)  # counted and shown, not dropped silently
    assert f"{outside} records returned outside their partition's window" in said
    assert f"late rows (arrived after their partition's end): {late_total}" in said


def test_incremental_run_loads_late_uploads_by_arrival_and_counts_them(project, amplitude, clock, capsys):
    url = project.database_url
    first_since = D2 - 2 * HOUR
    clock.set(D2 + 3 * HOUR)  # settle 3h: the first run reads the uploads up to midnight
    assert (
        project.cli("run", "--params", PRESET, "-p", f"window.initial_since={first_since.isoformat()}") == 0
    )
    first = runs(url)[-1]
    assert (first["window_since"], first["window_until"]) == (first_since, D2)
    crossed = _crossing(amplitude, D2)
    assert crossed and not crossed & set(table_rows(url))  # uploaded after midnight: not read yet
    assert "lateness" not in _metrics(project, first["run_id"])  # a first run: nothing can be late

    clock.advance(HOUR)
    # no overlap: the second run reads only the uploads after midnight, and keeps them all, the events of
    # the day before among them
    assert project.cli("run", "--params", PRESET, "-p", "window.overlap=0s") == 0
    second = runs(url)[-1]
    assert (second["window_since"], second["window_until"]) == (D2, D2 + HOUR)
    # every upload of [first_since, D2 + 1h), whatever its event time; the last copy of each event
    expected = {
        k: styles.amplitude_truth(g.truth)
        for k, g in _last_copies(_uploaded(amplitude, first_since, D2 + HOUR)).items()
    }
    table = table_rows(url)
    assert table == expected and crossed <= set(table)

    # late: inserted by the second run with an event time before its watermark (midnight)
    loaded_first = set(_last_copies(_uploaded(amplitude, first_since, D2)))
    late = [
        g
        for k, g in _last_copies(_uploaded(amplitude, D2, D2 + HOUR)).items()
        if g.truth.timestamp_ms < _ms(D2) and k not in loaded_first
    ]
    lags = np.array([(styles.upload_ms(g) - g.truth.timestamp_ms) / 1000 for g in late])
    assert set(crossed) <= {_key(g) for g in late}
    m = _metrics(project, second["run_id"])
    lateness = m["lateness"]
    assert lateness["measure"] == "event time before the previous watermark"
    assert lateness["late_rows"] == lateness["lag_rows"] == len(late) > 0
    assert lateness["lag_max_s"] == pytest.approx(lags.max(), abs=1e-3)
    assert lateness["lag_p99_s"] == pytest.approx(np.percentile(lags, 99), abs=1e-3)

    # the figures in metrics.prom, the run page and status
    prom = (project.reports / second["run_id"] / "metrics.prom").read_text()
    assert (
        f'eventpipe_run_late_rows{{kind="incremental",run_id="{second["run_id"]}"}} {float(len(late))}'
        in prom
    )
    assert 'quantile="1"' in prom and "eventpipe_run_late_lag_seconds" in prom
    page = (project.reports / second["run_id"] / "run.html").read_text()
    assert 'id="lateness"' in page and f">{len(late)}<" in page
    capsys.readouterr()
    assert project.cli("status") == 0
    out = capsys.readouterr().out
    assert f"late rows: {len(late)} in the last 2 runs" in out
    assert f"max {int(lags.max()) // 60}m" in out
    assert project.cli("status", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["runs"][0]["lateness"]["late_rows"] == len(late)


def test_a_backfill_whose_late_uploads_are_not_settled_is_refused(project, amplitude, capsys):
    """Its last partition needs uploads up to its end plus the horizon, which the export has 3 h later."""
    code = project.cli(
        "backfill", "--start", D1.isoformat(), "--end", "2025-06-02T09:00:00Z", "--params", PRESET
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "needs the arrivals up to 2025-06-02T10:00:00Z" in err and "end it by 2025-06-02T08:30:00Z" in err
    assert amplitude.server.requests == 0


def test_an_unknown_clock_is_one_line_before_any_request(project, amplitude, capsys):
    for bad, said in (
        ("source.window.clock=upload", "source.window.clock 'upload'"),
        ("source.window.horizon=soon", "source.window.horizon: 'soon' is not a duration"),
    ):
        assert project.cli("run", "--params", PRESET, "-p", bad) == 2
        err = capsys.readouterr().err.strip()
        assert said in err and len(err.splitlines()) == 1
    assert amplitude.server.requests == 0
