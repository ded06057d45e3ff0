"""The settings' schema: a frozen dataclass per section, each field with its default and help, and ``Secret``.

A field's type names its coercion (``coerce``); its help is what ``run_pipeline.py params`` prints.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .project import resolve_path
from .redact import Redactor
from .urls import url_tokens


class Secret:
    """A value that never prints itself."""

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


DEFAULT_PIPELINE = "default"


def _param(default: Any, help: str) -> Any:
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"help": help})
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class PipelineSettings:
    """Which pipeline a run belongs to: its state (watermark, dead letters, runs, locks) and its table."""

    name: str = _param(
        DEFAULT_PIPELINE, "the pipeline's name (--pipeline NAME reads params/pipelines/NAME.yaml)"
    )
    table: str = _param("", "destination table; empty means analytics (pipeline default) or analytics_<name>")
    shared: bool = _param(
        False,
        "pipeline.table is shared with other pipelines: a source column (the pipeline's name) joins its key",
    )

    @property
    def table_name(self) -> str:
        if self.table:
            return self.table
        return "analytics" if self.name == DEFAULT_PIPELINE else f"analytics_{self.name}"


@dataclass(frozen=True)
class ApiSettings:
    base_url: str = _param("", "API base URL; empty means the API_BASE_URL environment variable")
    endpoint: str = _param("/analytics", "path of the events endpoint")
    per_page: int = _param(100, "items asked for per page")
    timeout_s: float = _param(30.0, "seconds to wait for one page (connect and read)")
    max_retries: int = _param(5, "retries per page on 429, 5xx, timeouts and dropped connections")
    backoff_initial_s: float = _param(0.5, "first backoff; doubles per retry, with jitter")
    backoff_max_s: float = _param(30.0, "cap on one backoff wait (Retry-After included)")
    retry_budget_s: float = _param(300.0, "overall time a page may spend on retries")
    max_pages: int = _param(100_000, "backstop: a run that needs more pages than this fails (a looping API)")
    max_response_mb: float = _param(64.0, "cap on the bytes read for one response; past it the page fails")
    max_decompressed_mb: float = _param(
        64.0, "cap on one response's size after gzip/zip decompression; past it the page fails"
    )
    min_interval_s: float = _param(0.0, "minimum time between two requests (APIs with hourly quotas)")
    concurrency: int = _param(
        4, "requests in flight at once (slices, and pages fetched ahead); 1 asks one after another"
    )
    max_requests_per_s: float = _param(0.0, "one request budget for all workers; 0 means no limit")


@dataclass(frozen=True)
class SourceSettings:
    """How the events API is read, in dlt's vocabulary (see docs/sources.md); checked by ``source.config``."""

    paginator: dict = _param(
        {}, "paginator: type page_number|offset|cursor|json_link|header_link|single_page"
    )
    records: str = _param(
        "items", "path of the records list in the body, dotted; $ means the body is the list"
    )
    format: str = _param("json", "response format: json, jsonl (JSON Lines) or zip (of gzipped JSON Lines)")
    window: dict = _param(
        {},
        "how since/until are sent: params, format, end, granularity, step, filter_field; the clock the API "
        "selects by (clock: event|arrival, horizon, arrival_field)",
    )
    fields: dict = _param({}, "field map: user_id/event/timestamp/properties/session_id -> path(s)")
    auth: dict = _param(
        {}, "auth: type bearer|api_key|basic|none and the environment variables of its secrets"
    )
    params: dict = _param({}, "fixed query parameters sent with every request")


@dataclass(frozen=True)
class WindowSettings:
    initial_since: str = _param("", "start of the first incremental run; empty means 7 days before now")
    overlap: timedelta = _param(timedelta(hours=1), "re-read this much before the watermark (late events)")
    settle: timedelta = _param(timedelta(0), "incremental runs read up to now minus this")


@dataclass(frozen=True)
class QualitySettings:
    min_pass_rate: float = _param(0.95, "below this share of passing records the run fails and loads nothing")
    allowed_events: tuple = _param(
        ["page_view", "click", "sign_up", "purchase", "logout"], "allowed event types (after normalising)"
    )
    min_timestamp: datetime = _param(
        datetime(2020, 1, 1, tzinfo=timezone.utc), "events before this are rejected"
    )
    max_future: timedelta = _param(timedelta(hours=1), "events later than now plus this are rejected")


@dataclass(frozen=True)
class LoadSettings:
    batch_size: int = _param(100_000, "records per chunk in extract, transform and load")
    schema: str = _param("", "PostgreSQL schema for the tables; empty means the default search path")
    statement_timeout_s: float = _param(
        0.0, "PostgreSQL statement_timeout for the pipeline's sessions; 0 means none"
    )


@dataclass(frozen=True)
class PathSettings:
    reports_dir: str = _param("reports", "executed notebooks and metrics, one folder per run")
    runs_dir: str = _param("runs", "intermediate Parquet, one folder per run")
    notebooks_dir: str = _param("notebooks", "the stage notebooks the runner executes")


@dataclass(frozen=True)
class RunnerSettings:
    cell_timeout_s: int = _param(3600, "papermill execution timeout per cell (at least 1)")
    max_workers: int = _param(
        0, "cap on backfill --workers (larger values are clamped); 0 means the number of CPUs"
    )
    kernel_name: str = _param(
        "eventpipe", "Jupyter kernel the notebooks run in (`make` installs `eventpipe`)"
    )
    shared_kernel: bool = _param(
        True,
        "run the three notebooks in one kernel, started early and reset between "
        "them (saves ~2 s a run); false: a fresh kernel per notebook",
    )
    keep_runs: bool = _param(
        False, "keep runs/<run_id>/ after a successful run (always kept after a failure)"
    )
    transform_workers: int = _param(
        0,
        "processes that parse raw parts in the transform: 0 means one per CPU, 1 the kernel alone "
        "(a run of fewer than 3 parts, and each partition of a parallel backfill, uses the kernel alone)",
    )
    load_during_transform: bool = _param(
        True,
        "PostgreSQL, one kernel per run: COPY each finished clean part into the destination while the "
        "transform runs, in the load's transaction, which the load stage commits after the quality gate "
        "(false: the load stage copies every row itself)",
    )


@dataclass(frozen=True)
class DemoSettings:
    seed: int = _param(42, "seed of the synthetic events")
    events_per_hour: int = _param(120, "synthetic events per hour of event time")
    dirty_share: float = _param(0.02, "share of events broken in a way the record rules reject")
    duplicate_share: float = _param(0.02, "share of events sent again (a later copy wins)")


@dataclass(frozen=True)
class ReportSettings:
    html: bool = _param(
        True, "write HTML beside each executed notebook, a page per run and reports/index.html"
    )
    with_code: bool = _param(False, "keep the code cells in the HTML (hidden by default, for auditors)")
    prometheus: bool = _param(True, "write metrics.prom (node_exporter textfile format) in each run's folder")


@dataclass(frozen=True)
class LineageSettings:
    url: str = _param("", "OpenLineage HTTP endpoint base URL; empty: no HTTP events")
    file: str = _param("", "file that OpenLineage events are appended to as JSON lines; empty: none")
    namespace: str = _param("eventpipe", "OpenLineage namespace of the job and the output table")


@dataclass(frozen=True)
class ScheduleSettings:
    """When ``schedule`` runs this pipeline (``schedule --all``: each pipeline on its own); one of the two."""

    every: str = _param("", "run every this long, e.g. 15m (the first run at start)")
    cron: str = _param("", 'crontab expression in UTC, e.g. "*/15 * * * *"')


@dataclass(frozen=True)
class AlertSettings:
    """Messages about a run's outcome through Apprise (see "Alerts" in the README)."""

    channels: tuple = _param(
        [], "environment variables each holding one Apprise URL (or NAME_FILE): where alerts go"
    )
    on: tuple = _param(["failure"], "when: failure, success, recovery (first success after a failure), quiet")
    quiet_runs: int = _param(
        3, "quiet: a window with 0 records after this many runs in a row that had records"
    )
    run_page: str = _param(
        "", "base URL of the reports folder for the run link (…/<run_id>/); empty: the local path"
    )
    timeout_s: float = _param(10.0, "seconds one channel may take to take a message")


SECTIONS = {
    "pipeline": PipelineSettings,
    "api": ApiSettings,
    "window": WindowSettings,
    "quality": QualitySettings,
    "load": LoadSettings,
    "paths": PathSettings,
    "runner": RunnerSettings,
    "demo": DemoSettings,
    "reports": ReportSettings,
    "lineage": LineageSettings,
    "source": SourceSettings,
    "schedule": ScheduleSettings,
    "alerts": AlertSettings,
}


@dataclass(frozen=True)
class Settings:
    api: ApiSettings
    window: WindowSettings
    quality: QualitySettings
    load: LoadSettings
    paths: PathSettings
    runner: RunnerSettings
    demo: DemoSettings
    reports: ReportSettings
    lineage: LineageSettings
    source: SourceSettings
    pipeline: PipelineSettings
    schedule: ScheduleSettings
    alerts: AlertSettings
    database_url: Secret
    api_key: Secret
    params_file: str | None = None
    overrides: tuple[str, ...] = ()
    auth_secrets: tuple[
        Secret, ...
    ] = ()  # what source.auth sends, read from the environment (load.auth_secrets)
    # alerts.channels: each variable's name and the Apprise URL it holds (load.alert_channels)
    alert_channels: tuple[tuple[str, Secret], ...] = ()

    def path(self, name: str) -> Path:
        return resolve_path(getattr(self.paths, name))

    @functools.cached_property
    def redactor(self) -> Redactor:
        """Built once: the API key, the database password, what ``source.auth`` sends and the alert channels'
        URLs (whole, and the tokens in their paths and queries), in every form."""
        channels = [url.reveal() for _, url in self.alert_channels]
        return Redactor(
            (
                self.api_key.reveal(),
                *(s.reveal() for s in self.auth_secrets),
                *channels,
                *(t for url in channels for t in url_tokens(url)),
            ),
            (self.database_url.reveal(), *channels),
        )
