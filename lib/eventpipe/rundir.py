"""A run's working folder, ``runs/<run_id>/``: the Parquet parts the stages hand each other, and their manifests.

``raw/`` holds page bodies exactly as the API sent them (written by the source), ``clean/`` and
``rejects/`` what the core made of them (read by storage). This module is the one place that knows
the layout and the schemas, so every layer reads and writes the same files.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SettingsError
from .jsonio import dumps, loads, write_json_atomic

if TYPE_CHECKING:
    import pyarrow as pa

# The schemas are made on first use (``__getattr__``): pyarrow is imported by the stages that write and read
# the parts, not by the runner and the command line, which only name a run's folder (~0.2 s as they start).
SCHEMA_NAMES = ("RAW_SCHEMA", "CLEAN_SCHEMA", "REJECT_SCHEMA")
_schemas: dict[str, pa.Schema] = {}


def _make_schemas() -> dict[str, pa.Schema]:
    import pyarrow as pa

    return {
        # one row per page (or per slice of a large page): a JSON array of the page's records as the API sent
        # them, whatever the wire format was (parsed again, column-wise, by the transform)
        "RAW_SCHEMA": pa.schema(
            [("page", pa.int32()), ("first_seq", pa.int64()), ("n", pa.int32()), ("body", pa.binary())]
        ),
        "CLEAN_SCHEMA": pa.schema(
            [
                ("seq", pa.int64()),
                ("user_id", pa.string()),
                ("event_type", pa.string()),
                ("timestamp", pa.timestamp("us", tz="UTC")),
                ("properties", pa.string()),
                ("session_id", pa.string()),
                ("event_date", pa.date32()),
                ("event_hour", pa.int16()),
            ]
        ),
        "REJECT_SCHEMA": pa.schema(
            [
                ("seq", pa.int64()),
                ("stage", pa.string()),
                ("reasons", pa.list_(pa.string())),
                ("raw", pa.string()),
            ]
        ),
    }


def __getattr__(name: str) -> pa.Schema:
    """``RAW_SCHEMA``, ``CLEAN_SCHEMA``, ``REJECT_SCHEMA``: made once, as first imported."""
    if name not in SCHEMA_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not _schemas:
        _schemas.update(_make_schemas())
    return _schemas[name]


KINDS = ("raw", "clean", "rejects")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_run_id(run_id: str) -> str:
    """A run id names folders: a plain name of letters, digits, ``.``, ``_`` and ``-`` (no path, no ``..``)."""
    if not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        shown = run_id[:40] + ("…" if len(run_id) > 40 else "")
        raise SettingsError(
            f"run_id {shown!r} is not a plain name: use letters, digits, '.', '_' and '-' "
            "(at most 128, no '..' or '/')"
        )
    return run_id


def new_run_id(kind: str, now: datetime | None = None) -> str:
    """A fresh run id, ``<UTC time>-<kind>-<6 hex>``: sorts by start time, and two runs never share one."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}-{kind}-{secrets.token_hex(3)}"


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


@dataclass(frozen=True)
class RunDir:
    """Where one run's parts and manifests live."""

    path: Path

    def parts(self, kind: str) -> list[Path]:
        return sorted((self.path / kind).glob("part-*.parquet"))

    def fresh(self, kind: str) -> Path:
        """``kind``'s folder, emptied (a rerun of a stage replaces its output)."""
        folder = self.path / kind
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return folder

    def manifest_path(self, stage: str) -> Path:
        return self.path / f"{stage}.json"

    def read_manifest(self, stage: str, run_id: str) -> dict[str, Any]:
        path = self.manifest_path(stage)
        if not path.is_file():
            raise SettingsError(f"{path} is missing: run the {stage} notebook for run {run_id} first")
        return json.loads(path.read_text())

    def write_manifest(self, stage: str, data: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path(stage), data)

    @property
    def settings_file(self) -> Path:
        """The run's resolved settings, no secret (``settings_file.RunSettings``): what every stage reads."""
        return self.path / "settings.json"

    @property
    def progress(self) -> Path:
        """The extract stage's pages and records so far (the CLI's progress bar reads it)."""
        return self.path / "extract.progress.json"

    def progress_writer(self, every_s: float = 0.25) -> Callable[[int, int], None]:
        """A callback for each page that rewrites ``progress`` at most every ``every_s`` seconds."""
        last = [0.0]

        def write(pages: int, records: int, final: bool = False) -> None:
            now = time.monotonic()
            if final or now - last[0] >= every_s:
                last[0] = now
                write_json_atomic(self.progress, {"pages": pages, "records": records, "done": final})

        return write

    @property
    def replayed(self) -> Path:
        """Hashes of the dead letters a replay settles (written by the transform, read by the load)."""
        return self.path / "replayed.json"


# A record the source could not parse (e.g. nested deeper than the JSON parser goes) travels as this
# object, holding the text the API sent and why it failed, so it becomes a dead letter, not a stall.
UNPARSED = "$eventpipe.unparsed"
UNPARSED_REASON = "$eventpipe.reason"


def unparsed(text: str, reason: str) -> dict[str, str]:
    return {UNPARSED: text, UNPARSED_REASON: reason}


def read_raw_part(path: str | Path) -> tuple[list[Any], list[int]]:
    """A raw part -> (records in API order, their sequence numbers)."""
    items: list[Any] = []
    seqs: list[int] = []
    for page_items, page_seqs in read_raw_blocks(path, 1):
        items.extend(page_items)
        seqs.extend(page_seqs)
    return items, seqs


def read_raw_blocks(path: str | Path, size: int) -> Iterator[tuple[list[Any], list[int]]]:
    """A raw part's records and sequence numbers in API order, decoded whole pages at a time, at least
    ``size`` records a time (but the last): a reader that keeps only what it needs of each holds one block
    of decoded records, not the part's."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    items: list[Any] = []
    seqs: list[int] = []
    for first, n, body in zip(
        table["first_seq"].to_pylist(), table["n"].to_pylist(), table["body"].to_pylist()
    ):
        page_items = loads(body)
        if len(page_items) != n:
            raise ValueError(f"{path}: page holds {len(page_items)} items, expected {n}")
        items.extend(page_items)
        seqs.extend(range(first, first + n))
        if len(items) >= size:
            yield items, seqs
            items, seqs = [], []
    if items:
        yield items, seqs


def write_part(table: pa.Table, path: Path) -> None:
    """A clean or rejects part as Parquet, neither compressed nor dictionary-encoded: a run reads its parts
    once or twice and removes them when it succeeds, so their writing and reading cost more than their size
    (a 100k-row clean part: written in half the CPU time, read in under half, ~3x the bytes)."""
    import pyarrow.parquet as pq

    pq.write_table(table, path, compression="none", use_dictionary=False)


def write_raw_items(raws: list[str], path: Path) -> None:
    """Records as text (e.g. dead letters) -> one raw part, as if one page had served them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = []
    for raw in raws:
        try:
            records.append(dumps(loads(raw)).encode())
        except (ValueError, TypeError, RecursionError) as e:  # still unparseable: it stays a dead letter
            records.append(dumps(unparsed(raw, f"record_unparseable: {type(e).__name__}")).encode())
    body = b"[" + b",".join(records) + b"]"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pydict(
            {"page": [1], "first_seq": [0], "n": [len(raws)], "body": [body]},
            schema=__getattr__("RAW_SCHEMA"),
        ),
        path,
        compression="none",  # as the extract writes its raw parts
        use_dictionary=False,
    )


def head(parts: list[Path], n: int) -> Iterator[pa.RecordBatch]:
    """The first rows of a run's Parquet parts, in order, reading no more batches than asked for."""
    import pyarrow.parquet as pq

    for part in parts:
        yield from pq.ParquetFile(part).iter_batches(batch_size=n)
