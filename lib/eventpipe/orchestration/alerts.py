"""Alerts: one message about a run's final outcome to each channel of ``alerts.channels``, through Apprise.

A channel is an environment variable (or ``NAME_FILE``) holding one Apprise URL (``mailto://``, ``json://``,
``form://``, ``slack://`` …): its credentials never sit in a params file, and the settings' redactor knows
the URL. Which outcomes are told is ``alerts.on``: ``failure``; ``success``; ``recovery``, the first success
after a failed run; ``quiet``, a window with 0 records after ``alerts.quiet_runs`` runs in a row that had
records. A channel that cannot take the message is logged and counted (``metrics.json``'s ``alerts``), and
the run's outcome stays what it was.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..audit.chain import RUN_PAGE
from ..core.run_metrics import RunMetrics
from ..settings import Settings
from ..storage.store import Store

log = logging.getLogger(__name__)

HISTORY = 50  # earlier runs read to tell recovery and quiet: those of the run's kind among them


@dataclass(frozen=True)
class Alert:
    """What one run's outcome says: its event (the most specific that ``alerts.on`` asks for) and text."""

    event: str
    title: str
    body: str


def alert_event(
    metrics: RunMetrics, on: Sequence[str], earlier: Sequence[dict[str, Any]], quiet_runs: int
) -> str | None:
    """The event to tell for a run that ended as ``metrics`` says (None: nothing to tell). ``earlier``: the
    pipeline's finished runs of the same kind before it, newest first, as ``pipeline_runs`` rows."""
    if metrics.status != "succeeded":
        return "failure" if "failure" in on else None
    had_data = earlier[:quiet_runs]
    if (
        "quiet" in on
        and metrics.counts.extracted == 0
        and len(had_data) == quiet_runs
        and all(r["status"] == "succeeded" and (r["extracted"] or 0) > 0 for r in had_data)
    ):
        return "quiet"
    if "recovery" in on and earlier and earlier[0]["status"] == "failed":
        return "recovery"
    return "success" if "success" in on else None


def run_link(settings: Settings, metrics: RunMetrics) -> str:
    """The run's page: under ``alerts.run_page`` when set (where the reports are served), else its path."""
    page = RUN_PAGE if settings.reports.html else ""
    if settings.alerts.run_page:
        return f"{settings.alerts.run_page.rstrip('/')}/{metrics.run_id}/{page}"
    folder = metrics.report_dir or str(settings.path("reports_dir") / metrics.run_id)
    return f"{folder}/{page}" if page else folder


def compose(settings: Settings, metrics: RunMetrics, event: str) -> Alert:
    """The message: pipeline, run id, window, the failure's class and first line, the counts, the run page."""
    pipeline = settings.pipeline.name
    verb = {"failure": "failed", "success": "succeeded", "recovery": "recovered", "quiet": "read 0 records"}
    title = f"eventpipe: pipeline {pipeline} run {metrics.run_id} {verb[event]}"
    lines = [
        f"pipeline: {pipeline}",
        f"run: {metrics.run_id} ({metrics.kind}), {metrics.status}",
        f"window: [{metrics.since}, {metrics.until}) UTC",
    ]
    if metrics.error is not None:
        first = (metrics.error.detail.strip().splitlines() or [""])[0]
        lines.append(f"failure: {metrics.error.failure_class} in stage {metrics.error.stage or '-'}: {first}")
    if event == "quiet":
        lines.append(
            f"the source sent no record in this window; the {settings.alerts.quiet_runs} runs before had some"
        )
    counts = metrics.known_counts()
    lines.append(
        "counts: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none (stopped before extract)")
    )
    lines.append(f"run page: {run_link(settings, metrics)}")
    return Alert(event, title, "\n".join(lines))


def send(alert: Alert, channels: Sequence[tuple[str, str]], timeout_s: float) -> dict[str, list[str]]:
    """``alert`` to each ``(name, url)`` channel on its own; the names that took it and those that did not.
    A channel is named in logs by its variable, never by its URL."""
    import apprise

    kind = apprise.NotifyType.FAILURE if alert.event == "failure" else apprise.NotifyType.SUCCESS
    if alert.event == "quiet":
        kind = apprise.NotifyType.WARNING
    out: dict[str, list[str]] = {"sent": [], "failed": []}
    for name, url in channels:
        try:
            plugin = apprise.Apprise.instantiate(url)
            if plugin is None:
                raise ValueError("not an Apprise URL Apprise can send to")
            plugin.socket_connect_timeout = plugin.socket_read_timeout = timeout_s
            with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as said:
                ok = plugin.notify(
                    body=alert.body,
                    title=alert.title,
                    notify_type=kind,
                    body_format=apprise.NotifyFormat.TEXT,
                )
            why = [line for line in said.getvalue().splitlines() if line.strip()]
            problem = "" if ok else (why[0] if why else "the channel did not take it")
        except Exception as e:  # noqa: BLE001 - an alert channel never fails the run
            ok, problem = False, f"{type(e).__name__}: {e}"
        if ok:
            out["sent"].append(name)
            log.info("alert %s sent to %s", alert.event, name)
        else:
            out["failed"].append(name)
            log.warning("alert %s to %s failed: %s; the run's outcome stands", alert.event, name, problem)
    return out


def notify(settings: Settings, store: Store, metrics: RunMetrics) -> None:
    """The runner's one call as a run's outcome is final: the alert ``alerts.on`` asks for, if any, sent to
    every channel; what happened goes into ``metrics`` (``alerts``: event, sent, failed, failed_channels)."""
    config = settings.alerts
    if not settings.alert_channels or not config.on:
        return
    try:
        earlier = [
            r
            for r in store.recent_runs(HISTORY)
            if r["run_id"] != metrics.run_id
            and r["kind"] == metrics.kind
            and r["status"] in ("succeeded", "failed")
        ]
        event = alert_event(metrics, config.on, earlier, config.quiet_runs)
        if event is None:
            return
        channels = [(name, url.reveal()) for name, url in settings.alert_channels]
        result = send(compose(settings, metrics, event), channels, config.timeout_s)
    except Exception as e:  # noqa: BLE001 - the run's history unreadable: told in the log, never fatal
        log.warning("alerts not sent: %s: %s", type(e).__name__, e)
        names = [name for name, _ in settings.alert_channels]
        metrics.extra["alerts"] = {"event": None, "sent": 0, "failed": len(names), "failed_channels": names}
        return
    metrics.extra["alerts"] = {
        "event": event,
        "sent": len(result["sent"]),
        "failed": len(result["failed"]),
        "failed_channels": result["failed"],
    }
