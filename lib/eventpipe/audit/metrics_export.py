"""Metrics for an existing monitoring stack: a Prometheus textfile per run, OpenLineage run events.

``metrics.prom`` follows node_exporter's textfile-collector convention (written to a
temporary name and renamed, so the collector never reads half a file). OpenLineage
events (START, then COMPLETE or FAIL) name the source API as the input dataset and
the ``analytics`` table as the output; they go to ``lineage.url`` (HTTP) and/or
``lineage.file`` (one JSON line per event) when either is set. A COMPLETE or FAIL event carries the
quality gate's checks as the input's ``dataQualityAssertions`` facet (``quality_assertions``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..core.run_metrics import RunMetrics
from .files import write_text

log = logging.getLogger(__name__)

PROM_FILE = "metrics.prom"
PRODUCER = "https://github.com/eventpipe/eventpipe"
RUN_NAMESPACE = uuid.UUID("5b0f1a52-5d3e-4c1e-9a0e-6576656e7470")
STATUSES = ("succeeded", "failed")


def write_prom(metrics: RunMetrics, path: Path, last_success: float | None = None) -> Path:
    """Counts, durations, status, pass rate and last success time of one run, as a textfile."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    reg = CollectorRegistry()
    labels = {"kind": metrics.kind, "run_id": metrics.run_id}
    names = list(labels)
    records = Gauge(
        "eventpipe_run_records", "records per stage outcome in the run", [*names, "count"], registry=reg
    )
    for k, v in metrics.known_counts().items():
        records.labels(**labels, count=k).set(v)
    stage_s = Gauge("eventpipe_run_stage_seconds", "seconds per stage", [*names, "stage"], registry=reg)
    for k, v in metrics.stage_seconds.items():
        stage_s.labels(**labels, stage=k).set(v)
    Gauge("eventpipe_run_duration_seconds", "seconds the whole run took", names, registry=reg).labels(
        **labels
    ).set(metrics.duration_s or 0)
    status = Gauge("eventpipe_run_status", "1 for the run's status", [*names, "status"], registry=reg)
    for s in STATUSES:
        status.labels(**labels, status=s).set(1 if metrics.status == s else 0)
    if metrics.pass_rate is not None:
        Gauge(
            "eventpipe_run_pass_rate", "share of distinct records that passed quality", names, registry=reg
        ).labels(**labels).set(metrics.pass_rate)
    late = metrics.lateness
    if late is not None:
        Gauge(
            "eventpipe_run_late_rows", "rows the run inserted late (core.lateness)", names, registry=reg
        ).labels(**labels).set(late.late_rows)
        lag = Gauge(
            "eventpipe_run_late_lag_seconds",
            "arrival minus event time of the late rows, by quantile (1 = the longest)",
            [*names, "quantile"],
            registry=reg,
        )
        for q, v in (("0.5", late.lag_p50_s), ("0.99", late.lag_p99_s), ("1", late.lag_max_s)):
            if v is not None:
                lag.labels(**labels, quantile=q).set(v)
    finished = metrics.finished_at
    if finished:
        Gauge(
            "eventpipe_run_finished_timestamp_seconds",
            "when the run finished (unix time)",
            names,
            registry=reg,
        ).labels(**labels).set(_unix(finished))
    if last_success is not None:
        Gauge(
            "eventpipe_last_success_timestamp_seconds",
            "when a run of this kind last succeeded (unix time)",
            ["kind"],
            registry=reg,
        ).labels(kind=labels["kind"]).set(last_success)
    return write_text(path, generate_latest(reg))


def _unix(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- OpenLineage --------------------------------------------------------------------------------


def lineage_clients(url: str, file: str) -> list[Any]:
    """One client per configured destination: ``lineage.url`` (HTTP) and ``lineage.file`` (JSON lines)."""
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.file import FileConfig, FileTransport
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    clients = []
    if url:
        clients.append(OpenLineageClient(transport=HttpTransport(HttpConfig(url=url, timeout=5.0))))
    if file:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        clients.append(
            OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=file, append=True)))
        )
    return clients


# the record rules' reasons name the field they judge (``user_id_missing``, ``timestamp_unparseable``, ...)
_FIELDS = (
    ("user_id", "user_id"),
    ("session_id", "session_id"),
    ("event", "event_type"),
    ("timestamp", "timestamp"),
    ("properties", "properties"),
)


def _column(reason: str) -> str | None:
    return next((column for prefix, column in _FIELDS if reason.startswith(prefix + "_")), None)


def quality_assertions(transform: dict[str, Any], quality: Any) -> list[dict[str, Any]]:
    """The quality gate's checks of one run as OpenLineage assertions (``DataQualityAssertionsDatasetFacet``):
    each rule of the quality schema (``core.quality.build_schema``, named after the reason it gives) and
    each record rule that rejected records, with the records it rejected; then the pass-rate gate itself.
    ``transform`` is the transform stage's metrics (its ``reasons`` and ``pass_rate``); empty when the run
    stopped before the transform, and then there is no assertion."""
    if not transform or transform.get("pass_rate") is None:
        return []
    from ..core.quality import build_schema

    reasons: dict[str, int] = dict(transform.get("reasons") or {})
    out = []
    schema = build_schema(quality)
    for column, col in schema.columns.items():
        for check in col.checks:
            n = int(reasons.pop(check.name, 0))
            out.append(
                {
                    "assertion": check.name,
                    "success": n == 0,
                    "column": column,
                    "severity": "error",
                    "description": check.description,
                    "expected": "0",
                    "actual": str(n),
                }
            )
    for name, n in sorted(reasons.items()):  # the record rules that rejected records in the transform
        out.append(
            {
                "assertion": name,
                "success": False,
                "column": _column(name),
                "severity": "error",
                "description": "record rule (rejected records go to the dead letters)",
                "expected": "0",
                "actual": str(n),
            }
        )
    threshold = transform.get("min_pass_rate", quality.min_pass_rate)
    rate = float(transform["pass_rate"])
    out.append(
        {
            "assertion": "pass_rate",
            "name": "quality.min_pass_rate",
            "success": rate >= threshold,
            "severity": "error",
            "description": "share of distinct records that passed; under it nothing loads",
            "expected": f">= {threshold}",
            "actual": str(rate),
        }
    )
    return out


def lineage_event(
    event_type: str,
    run_id: str,
    kind: str,
    source_url: str,
    table: str,
    namespace: str,
    now: datetime | None = None,
    assertions: list[dict[str, Any]] | None = None,
) -> Any:
    """One START / COMPLETE / FAIL event for a run: the source API in (with the quality gate's
    ``assertions`` as its ``dataQualityAssertions`` facet when given), the table out."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.generated.data_quality_assertions_dataset import (
        Assertion,
        DataQualityAssertionsDatasetFacet,
    )

    src = urlsplit(source_url)
    facets = (
        {"dataQualityAssertions": DataQualityAssertionsDatasetFacet([Assertion(**a) for a in assertions])}
        if assertions
        else None
    )
    return RunEvent(
        eventType=RunState[event_type],
        eventTime=(now or datetime.now(timezone.utc)).isoformat(),
        run=Run(runId=str(uuid.uuid5(RUN_NAMESPACE, run_id))),
        job=Job(namespace=namespace, name=f"eventpipe.{kind or 'run'}"),
        inputs=[
            InputDataset(
                namespace=f"{src.scheme}://{src.hostname}{f':{src.port}' if src.port else ''}",
                name=src.path or "/",
                inputFacets=facets or {},
            )
        ],
        outputs=[OutputDataset(namespace=namespace, name=table)],
        producer=PRODUCER,
    )


def emit_lineage(
    clients: list[Any], *args: Any, transform: dict[str, Any] | None = None, quality: Any = None, **kw: Any
) -> None:
    """Emit one event to each destination; a lineage backend that is down never fails the run (a warning).
    With ``transform`` (the transform stage's metrics) and ``quality`` (the settings), the event carries
    the gate's checks."""
    if not clients:
        return
    if transform and quality is not None:
        kw["assertions"] = quality_assertions(transform, quality)
    event = lineage_event(*args, **kw)
    for client in clients:
        try:
            client.emit(event)
        except Exception as e:  # noqa: BLE001 - lineage is best effort by design
            log.warning("OpenLineage %s event not sent: %s: %s", args[0], type(e).__name__, e)
