"""Metrics for an existing monitoring stack: a Prometheus textfile per run, OpenLineage run events.

``metrics.prom`` follows node_exporter's textfile-collector convention (written to a
temporary name and renamed, so the collector never reads half a file). OpenLineage
events (START, then COMPLETE or FAIL) name the source API as the input dataset and
the ``analytics`` table as the output; they go to ``lineage.url`` (HTTP) and/or
``lineage.file`` (one JSON line per event) when either is set.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..core.run_metrics import RunMetrics

log = logging.getLogger(__name__)

PROM_FILE = "metrics.prom"
PRODUCER = "https://github.com/eventpipe/eventpipe"
RUN_NAMESPACE = uuid.UUID("5b0f1a52-5d3e-4c1e-9a0e-6576656e7470")
STATUSES = ("succeeded", "failed")


def write_prom(metrics: RunMetrics, path: Path, last_success: float | None = None) -> Path:
    """Counts, durations, status, pass rate and last success time of one run, as a textfile."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

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
    write_to_textfile(str(path), reg)
    return path


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


def lineage_event(
    event_type: str,
    run_id: str,
    kind: str,
    source_url: str,
    table: str,
    namespace: str,
    now: datetime | None = None,
) -> Any:
    """One START / COMPLETE / FAIL event for a run: the source API in, the table out."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState

    src = urlsplit(source_url)
    return RunEvent(
        eventType=RunState[event_type],
        eventTime=(now or datetime.now(timezone.utc)).isoformat(),
        run=Run(runId=str(uuid.uuid5(RUN_NAMESPACE, run_id))),
        job=Job(namespace=namespace, name=f"eventpipe.{kind or 'run'}"),
        inputs=[
            InputDataset(
                namespace=f"{src.scheme}://{src.hostname}{f':{src.port}' if src.port else ''}",
                name=src.path or "/",
            )
        ],
        outputs=[OutputDataset(namespace=namespace, name=table)],
        producer=PRODUCER,
    )


def emit_lineage(clients: list[Any], *args: Any, **kw: Any) -> None:
    """Emit one event to each destination; a lineage backend that is down never fails the run (a warning)."""
    if not clients:
        return
    event = lineage_event(*args, **kw)
    for client in clients:
        try:
            client.emit(event)
        except Exception as e:  # noqa: BLE001 - lineage is best effort by design
            log.warning("OpenLineage %s event not sent: %s: %s", args[0], type(e).__name__, e)
