"""Response formats: a streamed HTTP body -> the page's records, as JSON arrays of at most ``chunk_rows``.

The body is read in pieces under three limits (bytes off the wire, bytes after decompression, a total
deadline), un-gzipped on the way when ``Content-Encoding`` says so or the bytes are gzip. ``json`` parses
one document and takes the list at the records path (a body past ``STREAM_ABOVE`` is spooled to a
temporary file and its records parsed one at a time, so it is never held whole nor parsed at once); ``jsonl`` reads one record a line (Mixpanel's
export); ``zip`` reads every (gzipped) JSON Lines member of a zip archive (Amplitude's export). A record
the parser cannot handle (nested too deep, a lone surrogate) travels on as ``rundir.unparsed`` so it
becomes a dead letter. A body cut short (broken JSON, a gzip stream that stops early, a JSON Lines body
whose last line stops mid-record) is ``BadBody``: the page is asked again, never read as fewer records.
A JSON document without a list at the records path is ``PathMismatch``: a configuration error, not retried.
"""

from __future__ import annotations

import hashlib
import mmap
import re
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import ijson
import orjson
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from ..jsonio import dumps, loads
from ..rundir import unparsed
from .paginators import MISSING, PathMismatch, find

FORMATS = ("json", "jsonl", "zip")
STREAM_ABOVE = 8 * 2**20  # a JSON body larger than this is streamed through a temporary file
# a page up to this size is told from the next by its bytes; a larger one by their SHA-256 (holding its bytes
# until the next page came would double what a large export holds)
SAME_PAGE_BYTES = 8 * 2**20
_SUB = 5_000  # records parsed and written at a time when streaming
_PIECE = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


class BodyTooLarge(Exception):
    """A response is larger than ``api.max_response_mb`` or inflates past ``api.max_decompressed_mb``."""


class BodyDeadline(Exception):
    """A response is still arriving when its deadline (``api.timeout_s``) has passed."""


class BodyDropped(Exception):
    """The connection broke while the body was arriving."""


class BadBody(Exception):
    """The body is not what the format promises (not JSON, cut short)."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_inflated: int
    deadline: float  # time.monotonic() by which the whole response must have arrived


@dataclass
class Records:
    """One page's records: JSON arrays of at most ``chunk_rows`` records, their counts, the body."""

    chunks: list[bytes] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    body: Any = None  # the parsed JSON document (json format only), for the paginator

    @property
    def n(self) -> int:
        return sum(self.counts)

    def identity(self) -> list[bytes] | bytes:
        """What tells this page from another: its records' bytes, or for a large page their SHA-256. Comparing
        bytes stops at the first that differs (a blake2b digest of every page cost ~0.14 CPU s per 1M
        records)."""
        if sum(map(len, self.chunks)) <= SAME_PAGE_BYTES:
            return self.chunks
        digest = hashlib.sha256()
        for chunk in self.chunks:
            digest.update(chunk)
        return digest.digest()


class _Inflater:
    """gzip/zlib (several members too) inflated piece by piece, never past ``cap`` bytes in total."""

    def __init__(self, cap: int, counter: list[int]):
        self.cap, self.counter = cap, counter
        self.d = zlib.decompressobj(zlib.MAX_WBITS | 32)
        self.fed = False

    def feed(self, data: bytes) -> bytes:
        self.fed = self.fed or bool(data)
        out = []
        while data:
            piece = self.d.decompress(data, self.cap - self.counter[0] + 1)
            self.counter[0] += len(piece)
            if self.counter[0] > self.cap:
                raise BodyTooLarge(f"inflates past {self.cap // 2**20} MB")
            out.append(piece)
            if self.d.eof:
                data = self.d.unused_data
                if data:
                    self.d = zlib.decompressobj(zlib.MAX_WBITS | 32)
            else:
                data = self.d.unconsumed_tail
        return b"".join(out)

    @property
    def ended(self) -> bool:
        """Whether the stream reached its end (or never began): zlib inflates one cut short without complaint."""
        return self.d.eof or not self.fed


def _wire(raw: Any, limits: Limits) -> Iterator[bytes]:
    """The body's bytes as they arrive (``read1``: a trickle cannot hide behind a full buffer)."""
    total = 0
    while True:
        if time.monotonic() > limits.deadline:
            raise BodyDeadline("the response is still arriving at its deadline")
        try:
            data = raw.read1(_PIECE, decode_content=False)
        except ReadTimeoutError:
            raise BodyDeadline("no data within the read timeout") from None
        except (ProtocolError, OSError) as e:
            raise BodyDropped(type(e).__name__) from None
        if not data:
            return
        total += len(data)
        if total > limits.max_bytes:
            raise BodyTooLarge(f"is larger than {limits.max_bytes // 2**20} MB")
        yield data


def body_pieces(raw: Any, encoding: str, limits: Limits, sniff: bool = True) -> Iterator[bytes]:
    """The body, inflated when ``Content-Encoding`` is gzip/deflate or (``sniff``) its bytes are gzip."""
    counter = [0]
    inflater: _Inflater | None = None
    first = True
    for data in _wire(raw, limits):
        if first:
            first = False
            if encoding.lower() in ("gzip", "x-gzip", "deflate") or (sniff and data[:2] == _GZIP_MAGIC):
                inflater = _Inflater(limits.max_inflated, counter)
        if inflater is not None:
            data = inflater.feed(data)
        else:
            counter[0] += len(data)
            if counter[0] > limits.max_inflated:
                raise BodyTooLarge(f"is larger than {limits.max_inflated // 2**20} MB")
        if data:
            yield data
    if inflater is not None and not inflater.ended:
        raise BadBody("ends inside its gzip stream (truncated?)")


def _depth_problem(e: Exception) -> bool:
    return isinstance(e, RecursionError) or "ecursion" in str(e) or "depth limit" in str(e)


_TOO_DEEP = "record_unparseable: nested deeper than the JSON parser allows"
_SURROGATE = "record_unparseable: a \\u escape names half a character (a lone surrogate), not text"


def _surrogate(e: Exception) -> bool:
    return "surrogate" in str(e)


def _stand_in(text: bytes, reason: str) -> bytes:
    return orjson.dumps(unparsed(text.decode("utf-8", "replace"), reason))


def _parse_record(text: bytes) -> bytes:
    """One record's JSON text for a raw part, or an ``unparsed`` stand-in when no parser can carry it."""
    try:
        obj = loads(text)
    except RecursionError:
        return _stand_in(text, _TOO_DEEP)
    except ValueError as e:
        return _stand_in(
            text, _TOO_DEEP if _depth_problem(e) else f"record_unparseable: not JSON ({str(e)[:80]})"
        )
    try:
        return orjson.dumps(obj)
    except TypeError as e:
        if _depth_problem(e):
            return _stand_in(text, _TOO_DEEP)
        if _surrogate(e):
            return _stand_in(text, _SURROGATE)
        return dumps(obj).encode()  # integers beyond 64 bits: the standard library keeps them


class _Chunker:
    """Records (JSON texts) -> arrays of at most ``rows``."""

    def __init__(self, rows: int):
        self.rows, self.out = rows, Records()
        self.buf: list[bytes] = []

    def add(self, record: bytes) -> None:
        self.buf.append(record)
        if len(self.buf) >= self.rows:
            self.flush()

    def add_array(self, texts: list[bytes] | bytes, n: int) -> None:
        self.flush()
        body = texts if isinstance(texts, bytes) else b"[" + b",".join(texts) + b"]"
        self.out.chunks.append(body)
        self.out.counts.append(n)

    def flush(self) -> None:
        if self.buf:
            buf, self.buf = self.buf, []
            self.add_array(buf, len(buf))

    def done(self) -> Records:
        self.flush()
        return self.out


# -- json ---------------------------------------------------------------------------------------

_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}:,]')


def split_records(body: bytes, path: str) -> tuple[list[bytes], int, int] | None:
    """The texts of the records at ``path`` found by scanning brackets (no recursion, any depth), and
    where the list's contents start and end; None when the path holds no list. Used only when the
    whole document cannot be parsed at once."""
    target = () if path in ("", "$") else tuple(path.split("."))
    stack: list[tuple[bytes, tuple[str, ...]]] = []
    key: str | None = None
    expect_key = False
    depth = -1  # stack depth of the records list once found
    start = first = 0
    out: list[bytes] = []
    for m in _TOKEN.finditer(body):
        tok = m.group()
        c = tok[:1]
        if c == b'"':
            if expect_key and stack and stack[-1][0] == b"{":
                key = tok[1:-1].decode("utf-8", "replace")
            continue
        if c == b":":
            expect_key = False
            continue
        if c in (b"{", b"["):
            parent = stack[-1] if stack else None
            here = () if parent is None else parent[1] + ((key or "") if parent[0] == b"{" else "*",)
            stack.append((c, here))
            expect_key = c == b"{"
            if c == b"[" and depth < 0 and here == target:
                depth, start = len(stack), m.end()
                first = start
            continue
        if c == b",":
            if depth > 0 and len(stack) == depth:
                out.append(body[start : m.start()].strip())
                start = m.end()
            expect_key = bool(stack) and stack[-1][0] == b"{"
            continue
        # closing bracket
        if not stack:
            raise BadBody("is not valid JSON (unbalanced brackets)")
        if depth > 0 and len(stack) == depth:
            last = body[start : m.start()].strip()
            if last:
                out.append(last)
            return out, first, m.start()
        stack.pop()
        expect_key = False
    if stack:
        raise BadBody("is not valid JSON (it ends inside a value: truncated?)")
    return None


def _no_records(path: str, doc: Any) -> PathMismatch:
    return PathMismatch("records path", "source.records", path, "list", doc)


def read_json(pieces: Iterable[bytes], path: str, rows: int, keep: tuple[str, ...] = ()) -> Records:
    """One JSON document; the records list at ``path`` (``$``: the document is the list).

    A body up to ``STREAM_ABOVE`` bytes is parsed at once. A larger one is spooled to a temporary file as
    it arrives and its records are read from there one by one (ijson), so neither the body nor its parsed
    document is ever held whole; only the values at ``keep`` (what the paginator reads) are kept of the rest.
    """
    held: list[bytes] = []
    size = 0
    it = iter(pieces)
    for data in it:
        held.append(data)
        size += len(data)
        if size > STREAM_ABOVE:
            with tempfile.TemporaryFile() as spool:
                spool.writelines(held)
                held.clear()
                for data in it:
                    spool.write(data)
                return _stream(spool, path, rows, keep)
    return _parse_whole(b"".join(held), path, rows)


def _parse_whole(body: bytes, path: str, rows: int) -> Records:
    if not body.strip():
        raise BadBody("is empty, not JSON")
    try:
        doc = loads(body)
    except (ValueError, RecursionError):
        return _scan(body, path, rows)  # a record nested too deep, or broken JSON
    records = find(doc, path)
    if not isinstance(records, list):
        raise _no_records(path, doc)
    chunker = _Chunker(rows)
    for a in range(0, len(records), rows):
        part = records[a : a + rows]
        try:
            chunker.add_array(orjson.dumps(part), len(part))
        except TypeError as e:
            if _depth_problem(e) or _surrogate(e):
                return _scan(body, path, rows)
            for r in part:  # integers beyond 64 bits: the standard library writes them
                chunker.add(dumps(r).encode())
    out = chunker.done()
    out.body = doc
    return out


class _Slow(Exception):
    """The streamed body holds something only the scanning path can carry record by record."""


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_HIGH, _LOW = frozenset(b"89abAB"), frozenset(b"cdefCDEF")


def _lone_surrogate(body: Any) -> bool:
    """Whether a \\u escape names half a character without its other half (ijson would make it "?")."""
    for m in _SURROGATE_ESCAPE.finditer(body):
        i = m.start()
        if body[i + 3] in _HIGH:  # a high half: a low half must follow
            after = body[i + 6 : i + 10]
            if not (len(after) == 4 and after[:3] in (b"\\ud", b"\\uD") and after[3] in _LOW):
                return True
        elif i < 6 or body[i - 6 : i - 3] not in (b"\\ud", b"\\uD") or body[i - 3] not in _HIGH:
            return True  # a low half with no high half just before it
    return False


def _prefix(path: str) -> str:
    return "item" if path in ("", "$") else path + ".item"


def _stream(spool: IO[bytes], path: str, rows: int, keep: tuple[str, ...]) -> Records:
    """The records of a spooled body, parsed one by one and written ``_SUB`` at a time; the fallback (any
    record orjson cannot carry, broken JSON) scans the spooled bytes through a memory map."""
    spool.flush()
    with mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) as body:
        if not _lone_surrogate(body):  # ijson would turn one into "?": let the scan refuse it
            try:
                return _stream_records(spool, path, rows, keep)
            except _Slow:
                pass
        return _scan(body, path, rows)  # type: ignore[arg-type]


def _stream_records(spool: IO[bytes], path: str, rows: int, keep: tuple[str, ...]) -> Records:
    chunker = _Chunker(rows)
    pending: list[bytes] = []  # JSON arrays of up to _SUB records, joined into one chunk of ``rows``
    count = 0
    found = False

    def flush() -> None:
        nonlocal count
        if pending:
            chunker.add_array(b"[" + b",".join(a[1:-1] for a in pending) + b"]", count)
            pending.clear()
            count = 0

    spool.seek(0)
    batch: list[Any] = []
    try:
        for record in ijson.items(spool, _prefix(path), use_float=True):
            found = True
            batch.append(record)
            if len(batch) == _SUB or count + len(batch) >= rows:
                pending.append(_dump_batch(batch))
                count += len(batch)
                batch.clear()
                if count >= rows:
                    flush()
        if batch:
            pending.append(_dump_batch(batch))
            count += len(batch)
        flush()
        outline = _kept(spool, keep) if found else None
        if outline is None:  # a path without a value, or no record: which objects are there?
            outline = _outline(spool, (path, *keep))
    except (ijson.JSONError, ValueError):  # broken JSON, numbers past 64 bits, bytes that are not UTF-8
        raise _Slow from None
    if not found and not isinstance(find(outline, path), list):
        raise _no_records(path, outline)
    out = chunker.done()
    out.body = outline
    return out


def _dump_batch(batch: list[Any]) -> bytes:
    try:
        return orjson.dumps(batch)
    except TypeError as e:
        if _depth_problem(e) or _surrogate(e):
            raise _Slow from None
        return b"[" + b",".join(dumps(r).encode() for r in batch) + b"]"  # integers beyond 64 bits


_EMPTY = {"start_map": dict, "start_array": list}


def _kept(spool: IO[bytes], keep: tuple[str, ...]) -> dict[str, Any] | None:
    """The values at ``keep`` (null ones too), nested as in the body, each found by ijson's C parser; None
    when one is absent, so that ``_outline`` says which objects are there."""
    doc: dict[str, Any] = {}
    for p in keep:
        spool.seek(0)
        value = next(ijson.items(spool, p, use_float=True), MISSING)
        if value is MISSING:
            return None
        node = doc
        *parents, last = p.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return doc


def _outline(spool: IO[bytes], paths: tuple[str, ...]) -> Any:
    """The document reduced, in one pass, to what ``paths`` lead through: the objects on the way with
    their keys (other values as null), and the value at each path (an object or array there as an empty
    one). The paginator and the mismatch messages read it as they would the whole document. Every token
    passes through Python here, so a body whose paths all hold values takes ``_kept`` instead."""
    steps = {p for p in paths if p not in ("", "$")}
    parents = {""} | {".".join(p.split(".")[:i]) for p in steps for i in range(1, p.count(".") + 1)}
    nodes: dict[str, Any] = {}
    spool.seek(0)
    for prefix, event, value in ijson.parse(spool, use_float=True):
        if event == "map_key":
            if prefix in parents and isinstance(nodes.get(prefix), dict):
                nodes[prefix][value] = None
            continue
        if prefix not in parents and prefix not in steps or event in ("end_map", "end_array"):
            continue
        here = _EMPTY[event]() if event in _EMPTY else value
        if prefix in parents:
            nodes[prefix] = here
        if prefix:
            parent, _, key = prefix.rpartition(".")
            if isinstance(nodes.get(parent), dict):
                nodes[parent][key] = here
    return nodes.get("")


def _scan(body: bytes, path: str, rows: int) -> Records:
    """The slow path: records found by scanning, each parsed alone (one that fails becomes a dead letter)."""
    found = split_records(body, path)
    if found is None:
        raise BadBody(f"has no list at the records path {path!r}")
    texts, a, b = found
    chunker = _Chunker(rows)
    for t in texts:
        chunker.add(_parse_record(t))
    out = chunker.done()
    try:  # the rest of the document, for the paginator (has_more, next link...)
        out.body = loads(body[:a] + body[b:])
    except (ValueError, RecursionError):
        out.body = None
    return out


# -- JSON Lines and zip ---------------------------------------------------------------------------


def _lines(pieces: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """The non-blank lines, each with whether a newline ends it (only the body's last may lack one)."""
    rest = b""
    for data in pieces:
        data = rest + data
        lines = data.split(b"\n")
        rest = lines.pop()
        for line in lines:
            line = line.strip()
            if line:
                yield line, True
    if rest.strip():
        yield rest.strip(), False


def _cut_short(line: bytes) -> bool:
    """Whether a line is JSON that stops early (not JSON, and not a record only the parser cannot carry)."""
    try:
        loads(line)
    except RecursionError:
        return False
    except ValueError as e:
        return not (_depth_problem(e) or _surrogate(e))
    return False


def _read_lines(chunker: _Chunker, pieces: Iterable[bytes], what: str) -> None:
    """One record a line. A last line that no newline ends and that is not JSON is a body cut short
    (``BadBody``, so the page is retried): kept as a dead letter, it would hide the records never sent."""
    for line, ended in _lines(pieces):
        if not ended and _cut_short(line):
            raise BadBody(
                f"{what} inside a record: its last line is not JSON and no newline ends it (truncated?)"
            )
        chunker.add(_parse_record(line))


def read_jsonl(pieces: Iterable[bytes], rows: int) -> Records:
    """One record per line, read line by line as the body arrives."""
    chunker = _Chunker(rows)
    _read_lines(chunker, pieces, "ends")
    return chunker.done()


def read_zip(pieces: Iterable[bytes], rows: int, limits: Limits) -> Records:
    """A zip archive of (gzipped) JSON Lines files, members in name order; spooled to disk, never held whole."""
    chunker = _Chunker(rows)
    with tempfile.TemporaryFile() as spool:
        for data in pieces:
            spool.write(data)
        spool.seek(0)
        try:
            archive = zipfile.ZipFile(spool)
        except zipfile.BadZipFile:
            raise BadBody("is not a zip archive") from None
        counter = [0]
        with archive:
            for name in sorted(n for n in archive.namelist() if not n.endswith("/")):
                with archive.open(name) as member:
                    pieces = _member_pieces(member, name, limits, counter)
                    _read_lines(chunker, pieces, f"has a member {name!r} that ends")
    return chunker.done()


def _member_pieces(member: IO[bytes], name: str, limits: Limits, counter: list[int]) -> Iterator[bytes]:
    inflater = _Inflater(limits.max_inflated, counter) if name.endswith(".gz") else None
    while True:
        try:
            data = member.read(_PIECE)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise BadBody(f"has a broken member {name!r} ({type(e).__name__})") from None
        if not data:
            break
        if inflater is None:
            counter[0] += len(data)
            if counter[0] > limits.max_inflated:
                raise BodyTooLarge(f"inflates past {limits.max_inflated // 2**20} MB")
        else:
            try:
                data = inflater.feed(data)
            except zlib.error:
                raise BadBody(f"has a member {name!r} that is not gzip") from None
        yield data
    if inflater is not None and not inflater.ended:
        raise BadBody(f"has a member {name!r} that ends inside its gzip stream (truncated?)")


def read_records(
    fmt: str, raw: Any, encoding: str, path: str, rows: int, limits: Limits, keep: tuple[str, ...] = ()
) -> Records:
    """The records of one streamed response in format ``fmt`` (``keep``: the body paths the paginator reads)."""
    if fmt == "zip":
        return read_zip(body_pieces(raw, encoding, limits, sniff=False), rows, limits)
    pieces = body_pieces(raw, encoding, limits)
    try:
        return read_jsonl(pieces, rows) if fmt == "jsonl" else read_json(pieces, path, rows, keep)
    except zlib.error:
        raise BadBody("says it is gzip but does not inflate") from None
