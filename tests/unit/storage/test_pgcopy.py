"""The binary ``COPY`` encoder (``storage.pgcopy``) against PostgreSQL itself.

The oracle is the server: the same rows inserted through its text input and written back with
``COPY … TO STDOUT (FORMAT binary)`` are the bytes the encoder must produce, and rows the encoder wrote
read back as the values they came from.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

import psycopg2
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventpipe.storage import pgcopy
from eventpipe.storage.loaders import JSONB_COLUMNS
from eventpipe.storage.tables import JSONText, define_tables

UTC = timezone.utc
COLUMNS = "a text, ts timestamptz, d date, h smallint, i integer, b bigint, f double precision, z boolean"
SCHEMA = pa.schema(
    [
        ("a", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("d", pa.date32()),
        ("h", pa.int16()),
        ("i", pa.int32()),
        ("b", pa.int64()),
        ("f", pa.float64()),
        ("z", pa.bool_()),
    ]
)
EDGES = [
    ("click", datetime(2024, 5, 1, 0, 0, 0, 123456, tzinfo=UTC), date(2024, 5, 1), 0, 1, 2**62, 1.5, True),
    (None, None, None, None, None, None, None, None),
    ("", datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), date(1999, 12, 31), -1, -1, -1, -2.5, False),
    (
        "é漢字 😀 \t\n\\\"',;",
        datetime(1, 1, 1, tzinfo=UTC),
        date(1, 1, 1),
        -(2**15),
        -(2**31),
        -(2**63),
        1e-300,
        True,
    ),
    (
        "x" * 100_000,
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        date(9999, 12, 31),
        2**15 - 1,
        2**31 - 1,
        2**63 - 1,
        1e300,
        None,
    ),
    ("\\N", datetime(1970, 1, 1, tzinfo=UTC), date(1970, 1, 1), 23, 0, 0, float("inf"), False),
]


@pytest.fixture
def cur(pg_fresh_url: str) -> Iterator[psycopg2.extensions.cursor]:
    conn = psycopg2.connect(pg_fresh_url)
    c = conn.cursor()
    c.execute("SET TimeZone = 'UTC'")
    c.execute(f"CREATE TEMP TABLE t ({COLUMNS})")
    c.execute("CREATE TEMP TABLE j (id integer, doc jsonb)")
    yield c
    conn.rollback()
    conn.close()


def server_binary(cur: psycopg2.extensions.cursor, rows: list[tuple]) -> bytes:
    """``rows`` through the server's own input and binary output."""
    cur.execute("TRUNCATE t")
    for row in rows:
        cur.execute("INSERT INTO t VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", row)
    out = io.BytesIO()
    cur.copy_expert("COPY t TO STDOUT WITH (FORMAT binary)", out)
    return out.getvalue()


def table_of(rows: list[tuple]) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(SCHEMA.names, r)) for r in rows], schema=SCHEMA)


def test_the_bytes_are_the_servers_own(cur: psycopg2.extensions.cursor) -> None:
    assert pgcopy.encode(table_of(EDGES)).read() == server_binary(cur, EDGES)


def test_rows_read_back_as_written(cur: psycopg2.extensions.cursor) -> None:
    cur.copy_expert(
        "COPY t FROM STDIN WITH (FORMAT binary)", io.BytesIO(pgcopy.encode(table_of(EDGES)).read())
    )
    cur.execute("SELECT * FROM t")
    assert cur.fetchall() == EDGES


def test_slices_chunks_and_no_rows(cur: psycopg2.extensions.cursor) -> None:
    table = table_of(EDGES)
    two_chunks = pa.concat_tables([table.slice(0, 2), table.slice(2)])
    assert two_chunks.column("a").num_chunks == 2
    assert pgcopy.encode(two_chunks).read() == server_binary(cur, EDGES)
    assert pgcopy.encode(table.slice(2, 3)).read() == server_binary(cur, EDGES[2:5])
    assert pgcopy.encode(table.slice(0, 0)).read() == server_binary(cur, [])
    for rows in (1, 4, len(EDGES)):  # encoded a slice at a time: the same bytes
        assert pgcopy.encode(two_chunks, slice_rows=rows).read() == server_binary(cur, EDGES)


def test_jsonb_text_is_sent_with_its_version(cur: psycopg2.extensions.cursor) -> None:
    docs = [
        '{"a": 1}',
        "{}",
        '{"k": "é\\u00e9", "n": [1, 2.50, null], "big": 123456789012345678901234567890}',
        "[]",
        '"s"',
    ]
    table = pa.table({"id": pa.array(range(len(docs)), pa.int32()), "doc": pa.array(docs)})
    cur.copy_expert(
        "COPY j FROM STDIN WITH (FORMAT binary)", io.BytesIO(pgcopy.encode(table, {"doc"}).read())
    )
    cur.execute("SELECT doc::text FROM j ORDER BY id")
    got = [r[0] for r in cur.fetchall()]
    cur.execute("SELECT d::jsonb::text FROM unnest(%s) AS d", (docs,))
    assert got == [r[0] for r in cur.fetchall()]


def test_what_cannot_be_stored_fails_loudly(cur: psycopg2.extensions.cursor) -> None:
    with pytest.raises(ValueError, match="jsonb column 'doc' holds a NULL"):
        pgcopy.encode(pa.table({"doc": pa.array(["{}", None])}), {"doc"})
    with pytest.raises(TypeError, match="no binary COPY encoding"):
        pgcopy.encode(pa.table({"x": pa.array([1.5], pa.float32())}))
    # a NUL inside text: the server refuses the COPY, nothing is cut short
    nul = pa.table({"id": pa.array([1], pa.int32()), "doc": pa.array(['{"a": "x\x00y"}'])})
    with pytest.raises(psycopg2.Error):
        cur.copy_expert("COPY j FROM STDIN WITH (FORMAT binary)", io.BytesIO(pgcopy.encode(nul).read()))


def test_constants_are_fields_of_every_row(cur: psycopg2.extensions.cursor) -> None:
    at = datetime(2026, 12, 5, 6, 7, 8, 901234, tzinfo=UTC)
    lineage = {
        "i_text": "run-ü",
        "when": at,
        "before_2000": datetime(1970, 1, 1, tzinfo=timezone(timedelta(hours=2))),
    }
    cur.execute(
        "CREATE TEMP TABLE c (a text, h smallint, i_text text, when_ timestamptz, before_2000 timestamptz)"
    )
    table = pa.table({"a": pa.array(["x", None]), "h": pa.array([1, 2], pa.int16())})
    cur.copy_expert(
        "COPY c FROM STDIN WITH (FORMAT binary)", io.BytesIO(pgcopy.encode(table, (), lineage).read())
    )
    cur.execute("SELECT * FROM c")
    start = datetime(1969, 12, 31, 22, tzinfo=UTC)
    assert cur.fetchall() == [("x", 1, "run-ü", at, start), (None, 2, "run-ü", at, start)]
    with pytest.raises(ValueError, match="naive datetime"):
        pgcopy.encode(table, (), {"t": datetime(2026, 1, 1)})


def test_the_loader_names_every_jsonb_column_it_copies() -> None:
    tables = define_tables()
    jsonb = {c.name for t in (tables.analytics, tables.dead_letter) for c in t.columns if c.type is JSONText}
    assert jsonb == JSONB_COLUMNS


_text = st.one_of(
    st.none(), st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
)
_moment = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
)
_row = st.tuples(
    _text,
    _moment,
    st.one_of(st.none(), st.dates()),
    st.one_of(st.none(), st.integers(-(2**15), 2**15 - 1)),
    st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    st.one_of(st.none(), st.floats(allow_nan=False).map(lambda f: f + 0.0)),  # psycopg2 sends -0.0 as -(0.0)
    st.one_of(st.none(), st.booleans()),
)


@settings(
    max_examples=60,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rows=st.lists(_row, max_size=40), slice_rows=st.integers(1, 50))
def test_any_rows_are_the_servers_bytes(
    cur: psycopg2.extensions.cursor, rows: list[tuple], slice_rows: int
) -> None:
    assert pgcopy.encode(table_of(rows), slice_rows=slice_rows).read() == server_binary(cur, rows)
