"""The extract alone: ``--style`` (one source preset's client against a bare loop over the same pages) and
``--latency-ms`` (a far-away API, at each ``--concurrency``, against the latency-bound limit)."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .common import API_KEY, BENCH_DIR, median
from .demo_api import DemoApi
from .snapshot import Code

STYLE_SECRETS = {
    "contract": {"API_KEY": API_KEY},
    "posthog": {"POSTHOG_API_KEY": API_KEY},
    "mixpanel": {"MIXPANEL_USER": "demo-user", "MIXPANEL_SECRET": API_KEY},
    "amplitude": {"AMPLITUDE_API_KEY": "demo-user", "AMPLITUDE_SECRET_KEY": API_KEY},
    "json-server": {},
    "offset": {"EVENTS_API_KEY": API_KEY},
    "cursor": {"EVENTS_TOKEN": API_KEY},
    "mixpanel-export": {
        "MIXPANEL_USER": "demo-user",
        "MIXPANEL_SECRET": API_KEY,
        "MIXPANEL_PROJECT_ID": "12345",
    },
    "posthog-events": {"POSTHOG_API_KEY": API_KEY},
}


def style_client(code: Code, style: str, url: str, per_page: int, extra: list[str] | None = None) -> Any:
    """The pipeline's source client configured by the style's preset, pointed at the demo API."""
    from eventpipe.demo.styles import PRESETS
    from eventpipe.settings import load_settings
    from eventpipe.source.client import SourceClient
    from eventpipe.source.config import SourceConfig

    env = {"API_BASE_URL": url, **STYLE_SECRETS[style]}
    size = {
        "posthog": f"source.params.limit={per_page}",
        "json-server": f"source.params._limit={per_page}",
        "cursor": f"source.params.limit={per_page}",
        "posthog-events": f"source.params.limit={per_page}",
    }
    overrides = [f"api.per_page={per_page}", *([size[style]] if style in size else []), *(extra or [])]
    preset = code.root / "params" / "sources" / f"{PRESETS.get(style, style)}.yaml"
    settings = load_settings(str(preset), overrides, env=env)
    return SourceClient(url, SourceConfig.from_settings(settings, env), settings.api)


def bare_pages(style: str, urls: list[str], auth: Any) -> tuple[int, float]:
    """The same URLs with a plain Session: body read, un-gzipped, parsed; no limits, no Parquet, nothing kept."""
    import gzip
    import io
    import zipfile

    import orjson
    import requests

    session = requests.Session()
    session.auth = auth
    session.headers.update({"Authorization": f"Bearer {API_KEY}"} if auth is None else {})
    if style == "offset":
        session.headers.update({"X-API-Key": API_KEY})
    n = 0
    t0 = time.perf_counter()
    for url in urls:
        r = session.get(url, timeout=600)
        r.raise_for_status()
        if style == "mixpanel":
            n += sum(1 for line in r.content.splitlines() if orjson.loads(line) is not None)
        elif style == "amplitude":
            with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
                for name in zf.namelist():
                    n += sum(1 for line in gzip.decompress(zf.read(name)).splitlines() if orjson.loads(line))
        else:
            body = orjson.loads(r.content)
            if not isinstance(body, list):
                body = next(body[k] for k in ("items", "results", "data", "events") if k in body)
            n += len(body)
    elapsed = time.perf_counter() - t0
    session.close()
    return n, elapsed


def style_bench(
    args: argparse.Namespace, code: Code, since: datetime, until: datetime, per_hour: int, tmp: Path
) -> int:
    """``--style``: extract (the pipeline's client and raw parts) against a bare loop over the same pages."""
    from eventpipe.source.extract import extract_window

    api = DemoApi(code, per_hour, tmp / "demo-api.log", style=args.style)
    try:
        api.wait_ready()
        rows: dict[str, list[float]] = {"extract_s": [], "bare_s": []}
        records = bare_n = 0
        for i in range(args.limit_repeat + 1):  # the first round warms the API's cache and is not counted
            client = style_client(code, args.style, api.url, args.per_page)
            urls: list[str] = []
            client.session.hooks["response"].append(lambda r, *a, _urls=urls, **k: _urls.append(r.url))
            t0 = time.perf_counter()
            res = extract_window(client, since, until, tmp / f"raw-{i}", 100_000)
            extract_s = time.perf_counter() - t0
            bare_n, bare_s = bare_pages(args.style, urls, client.session.auth)
            records = res.records
            if i:
                rows["extract_s"].append(extract_s)
                rows["bare_s"].append(bare_s)
    finally:
        api.stop()
    ext, bare = median(rows["extract_s"]), median(rows["bare_s"])
    assert ext and bare
    print(f"style {args.style}: {records:,} records ({bare_n:,} in the bare loop), {len(urls)} requests")
    print(f"  extract   {ext:8.2f}s  {records / ext:12,.0f} records/s")
    print(f"  bare loop {bare:8.2f}s  {bare_n / bare:12,.0f} records/s")
    print(f"  extract at {bare / ext:.0%} of the bare loop (medians of {args.limit_repeat})")
    return 0


def latency_bench(
    args: argparse.Namespace, code: Code, since: datetime, until: datetime, per_hour: int, tmp: Path
) -> int:
    """``--latency-ms``: extract from an API that takes that long per answer, at each ``--concurrency``,
    against the latency-bound limit ``pages x latency / concurrency`` (the pages this very run needed)."""
    from eventpipe.source.extract import extract_window

    levels = [int(c) for c in args.concurrency.split(",")]
    style = args.style or "contract"
    api = DemoApi(code, per_hour, tmp / "demo-api.log", style=style, latency_ms=args.latency_ms)
    latency = args.latency_ms / 1000
    rows: dict[int, dict[str, list[float]]] = {c: {"s": [], "limit": [], "requests": []} for c in levels}
    pages = records = 0
    try:
        api.wait_ready()
        extract_window(style_client(code, style, api.url, args.per_page), since, until, tmp / "warm", 100_000)
        for i in range(args.limit_repeat):
            for c in levels:
                extra = [f"api.concurrency={c}", *args.params]
                client = style_client(code, style, api.url, args.per_page, extra)
                t0 = time.perf_counter()
                res = extract_window(client, since, until, tmp / f"raw-{c}-{i}", 100_000)
                rows[c]["s"].append(time.perf_counter() - t0)
                pages, records = client.stats.pages, res.records
                rows[c]["limit"].append(pages * latency / c)
                rows[c]["requests"].append(client.stats.attempts)
    finally:
        api.stop()
    print(f"{style}: {records:,} records in {pages:,} pages, {args.latency_ms:g} ms per answer")
    print(f"{'concurrency':>11} {'extract s':>10} {'limit s':>8} {'x limit':>8} {'vs 1':>6} {'requests':>9}")
    base = median(rows[levels[0]]["s"])
    out = []
    for c in levels:
        s, limit = median(rows[c]["s"]), median(rows[c]["limit"])
        assert s and limit and base
        reqs = median(rows[c]["requests"])
        print(f"{c:>11} {s:>10.2f} {limit:>8.2f} {s / limit:>8.2f} {base / s:>6.1f} {reqs:>9,.0f}")
        out.append(
            {"concurrency": c, "extract_s": s, "limit_s": limit, "ratio": s / limit, "speedup": base / s}
        )
    print(f"(medians of {args.limit_repeat}; 'vs 1' is the speed-up over concurrency {levels[0]})")
    result = {"latency_ms": args.latency_ms, "pages": pages, "records": records, "levels": out}
    (BENCH_DIR / "latency.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0
