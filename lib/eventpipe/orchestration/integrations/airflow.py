"""Apache Airflow 3: a DAG whose runs are pipeline runs, one per data interval.

Imported by Airflow's interpreter only (its own virtual environment, its own
pins). Each task runs one stage in the *project's* environment as a child
process, ``<project>/.venv/bin/python -m eventpipe.cli.task <stage> …``, so the
notebooks execute with the project's kernel and pins, and through the same
runner code as the CLI: same report folder, failure classes, banners and run
records. Nothing of eventpipe's own is imported here, and Airflow is imported
only when a DAG is built, so this module loads anywhere.

One DAG per pipeline (``params/pipelines/<name>.yaml``): ``pipeline_dag_id`` names it, and its
secrets may come from an Airflow connection (``conn_id``) instead of the worker's environment: the
task reads the connection when it runs, tells Airflow's secrets masker every value, and hands them
to the stage's process in its environment only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[4]
STAGES = ("extract", "transform_quality", "load")
RUN_KIND = "airflow"
DEFAULT_PIPELINE = "default"
BAD_SETTINGS_EXIT = 2  # cli.task: bad usage or settings, which a retry cannot fix
# a pipeline's name is a plain identifier (eventpipe.settings.pipelines checks the same in the stage)
_PIPELINE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# what a connection's extra may name: an environment variable the stage reads, none of the interpreter's
_ENV_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]*")
_RESERVED_PREFIXES = ("AIRFLOW", "EVENTPIPE_", "PYTHON", "LD_")
_RESERVED_NAMES = ("PATH", "HOME")
# the task's environment that the stage must not inherit: Airflow's connections and variables (secrets)
_AIRFLOW_SECRET_ENV = ("AIRFLOW_CONN_", "AIRFLOW_VAR_")


def pipeline_dag_id(pipeline: str, prefix: str = "eventpipe") -> str:
    """``eventpipe`` for the pipeline ``default`` (the DAG id before pipelines existed), else ``eventpipe_<name>``."""
    return prefix if pipeline == DEFAULT_PIPELINE else f"{prefix}_{pipeline}"


def pipeline_names(project: str | Path | None = None) -> list[str]:
    """``default`` and every pipeline defined in ``<project>/params/pipelines/``, in name order."""
    folder = Path(project or PROJECT) / "params" / "pipelines"
    named = {p.stem for p in folder.glob("*.yaml") if _PIPELINE_RE.fullmatch(p.stem)}
    return [DEFAULT_PIPELINE, *sorted(named - {DEFAULT_PIPELINE})]


def connection_env(conn_id: str, conn: Any) -> dict[str, str]:
    """The stage's secrets from an Airflow connection: host → ``API_BASE_URL``, password → ``API_KEY``,
    each key of the extra (an environment variable ``source.auth`` names) → its value.

    The host is a base URL (``https://events.example.com/v1``) or a host name that the schema
    (``http``/``https``, default ``http``) and port complete, as the HTTP provider's hook reads it.
    Raises ``ValueError`` (one line naming the connection and the field, never a value) on what the
    stage would not use.
    """
    where = f"connection {conn_id!r}"
    if conn.login:
        raise ValueError(
            f"{where}: login is not used; put a user name in extra under the variable "
            'source.auth names, e.g. {"MIXPANEL_USER": "..."}'
        )
    env: dict[str, str] = {}
    if conn.host:
        env["API_BASE_URL"] = _base_url(conn.host, conn.schema, conn.port)
    if conn.password:
        env["API_KEY"] = conn.password
    raw = conn.extra or ""
    try:
        extra = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        raise ValueError(f"{where}: extra is not JSON (an object of variable names and values)") from None
    if not isinstance(extra, dict):
        raise ValueError(f"{where}: extra is not a JSON object of variable names and values")
    for name, value in extra.items():
        if not _ENV_NAME_RE.fullmatch(name) or name.startswith(_RESERVED_PREFIXES) or name in _RESERVED_NAMES:
            raise ValueError(
                f"{where}: extra key {name!r} is not a variable the pipeline reads (upper-case letters, "
                "digits and _, as source.auth names them)"
            )
        if name in env:
            raise ValueError(f"{where}: extra sets {name}, which the connection's host or password sets")
        if not isinstance(value, str):
            raise ValueError(f"{where}: extra {name} is not text")
        env[name] = value
    return env


def _base_url(host: str, schema: str | None, port: int | None) -> str:
    if "://" not in host:
        scheme = schema if schema in ("http", "https") else "http"
        host = f"{scheme}://{host}"
    if port:
        scheme, rest = host.split("://", 1)
        netloc, sep, path = rest.partition("/")
        if ":" not in netloc.rsplit("]", 1)[-1]:
            netloc = f"{netloc}:{port}"
        host = f"{scheme}://{netloc}{sep}{path}"
    return host.rstrip("/")


def stage_env(environ: dict[str, str], secrets: dict[str, str] | None) -> dict[str, str]:
    """The stage's environment: the task's, without Airflow's connections and variables; with a connection,
    its secrets replace the worker's API settings (a worker needs no ``API_KEY`` of its own)."""
    env = {k: v for k, v in environ.items() if not k.startswith(_AIRFLOW_SECRET_ENV)}
    if secrets is not None:
        for name in ("API_BASE_URL", "API_KEY", *secrets):
            env.pop(name, None)
            env.pop(f"{name}_FILE", None)
        env.update(secrets)
    return env


def pipeline_run_id(dag_id: str, since: datetime, until: datetime) -> str:
    """One pipeline run per DAG run, the same on every retry: derived from the DAG and its data interval."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", dag_id)
    fmt = "%Y%m%dT%H%M%SZ"
    return f"{safe}-{_utc(since):{fmt}}-{_utc(until):{fmt}}"


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


def _iso(value: datetime) -> str:
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _timetable(schedule: Any) -> Any:
    """Data-interval timetables: Airflow 3's default for cron strings and timedeltas is a *trigger* timetable,
    whose runs have an empty interval; a pipeline run needs ``[start, end)``.

    A schedule that cannot give one (not cron, ``@once``, ``None``, a zero timedelta) is refused here, when
    the DAG file is parsed (Airflow shows it as the file's import error), not when a run computes its
    interval."""
    from airflow.sdk import CronDataIntervalTimetable, DeltaDataIntervalTimetable
    from airflow.sdk.exceptions import AirflowTimetableInvalid

    if isinstance(schedule, timedelta):
        if schedule <= timedelta(0):
            raise ValueError(f"schedule {schedule}: a pipeline's interval must be longer than zero")
        return DeltaDataIntervalTimetable(schedule)
    if isinstance(schedule, str):
        timetable = CronDataIntervalTimetable(schedule.strip(), timezone="UTC")
        try:
            timetable.validate()
        except AirflowTimetableInvalid:
            raise ValueError(
                f"schedule {schedule!r} is not a cron expression: use one such as '0 0 * * *' or a preset "
                "(@hourly, @daily, @weekly, @monthly); a run needs a data interval, so not @once"
            ) from None
        return timetable
    if schedule is None:
        raise ValueError("schedule None: a pipeline's DAG needs a data-interval schedule (e.g. '@daily')")
    return schedule


def _operator_class() -> type:
    from airflow.sdk import BaseOperator

    class EventpipeStageOperator(BaseOperator):
        """Runs one stage of the DAG run's pipeline run in the project's environment."""

        ui_color = "#5b8def"

        def __init__(
            self,
            *,
            stage: str,
            pipeline: str,
            params_file: str | None,
            overrides: Sequence[str],
            conn_id: str | None,
            project: str,
            python: str,
            **kwargs: Any,
        ):
            super().__init__(**kwargs)
            self.stage, self.params_file, self.overrides = stage, params_file, list(overrides)
            self.pipeline, self.conn_id = pipeline, conn_id
            self.project, self.python = project, python
            self._proc: subprocess.Popen[str] | None = None

        def command(self, run_id: str, since: datetime, until: datetime) -> list[str]:
            return self._task_command(
                self.stage,
                "--run-id",
                run_id,
                "--since",
                _iso(since),
                "--until",
                _iso(until),
                "--kind",
                RUN_KIND,
            )

        def _task_command(self, *args: str) -> list[str]:
            """``python -m eventpipe.cli.task ARGS`` with this task's pipeline, params file and ``-p`` overrides."""
            cmd = [self.python, "-m", "eventpipe.cli.task", *args, "--pipeline", self.pipeline]
            if self.params_file:
                cmd += ["--params", self.params_file]
            for o in self.overrides:
                cmd += ["-p", o]
            return cmd

        def execute(self, context: Any) -> str:
            from airflow.sdk.exceptions import AirflowFailException

            # a run without a logical date (``dags trigger`` without one) has no data interval keys at all
            since, until = context.get("data_interval_start"), context.get("data_interval_end")
            if since is None or until is None or since >= until:
                # a configuration error: every retry would fail the same way
                raise AirflowFailException(
                    f"DAG run {context['run_id']} has no data interval ({since}, {until}): "
                    "use a data-interval schedule (a cron string or a timedelta given to eventpipe_dag)"
                )
            env = self._env()
            run_id = pipeline_run_id(self.dag_id, since, until)
            cmd = self.command(run_id, since, until)
            self.log.info(
                "pipeline %s, run %s, window [%s, %s): %s",
                self.pipeline,
                run_id,
                _iso(since),
                _iso(until),
                " ".join(cmd),
            )
            # secrets reach the stage in its environment only, never as arguments
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.project,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                start_new_session=True,
            )
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                self.log.info("%s", line.rstrip())
            code = self._proc.wait()
            if code < 0:  # killed by a signal before it could record the failure itself
                self._mark_failed(run_id, f"the stage's process was killed by signal {-code}", env)
            if code == BAD_SETTINGS_EXIT:
                raise AirflowFailException(
                    f"stage {self.stage} of run {run_id}: bad settings (exit {code}, the line above says "
                    "which); not retried"
                )
            if code != 0:
                raise RuntimeError(
                    f"stage {self.stage} of run {run_id} failed (exit {code}); the executed notebook "
                    "in its report folder shows where"
                )
            return run_id

        def _env(self) -> dict[str, str]:
            """The stage's environment, with the connection's secrets (read now: a rotated key needs no
            restart), each one told to Airflow's secrets masker first."""
            if not self.conn_id:
                return stage_env(dict(os.environ), None)
            from airflow.sdk import Connection
            from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException
            from airflow.sdk.log import mask_secret  # what airflow.sdk.execution_time.secrets_masker names

            try:
                conn = Connection.get(self.conn_id)
            except AirflowNotFoundException:
                raise AirflowFailException(
                    f"pipeline {self.pipeline}: connection {self.conn_id!r} is not defined: create it "
                    "(airflow connections add) or set AIRFLOW_CONN_" + self.conn_id.upper()
                ) from None
            try:
                secrets = connection_env(self.conn_id, conn)
            except ValueError as e:
                raise AirflowFailException(f"pipeline {self.pipeline}: {e}") from None
            for name, value in secrets.items():
                if name != "API_BASE_URL":
                    # no name: given one, the masker skips values whose name does not sound secret (a user)
                    mask_secret(value)
            return stage_env(dict(os.environ), secrets)

        def _mark_failed(self, run_id: str, detail: str, env: dict[str, str]) -> None:
            cmd = self._task_command(
                "mark-failed", "--run-id", run_id, "--failed-stage", self.stage, "--detail", detail
            )
            subprocess.run(cmd, cwd=self.project, env=env, check=False, timeout=120)

        def on_kill(self) -> None:
            # SIGTERM: the stage marks its run failed (class "terminated") and exits
            if self._proc is not None and self._proc.poll() is None:
                os.killpg(self._proc.pid, signal.SIGTERM)
                try:
                    self._proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(self._proc.pid, signal.SIGKILL)

    EventpipeStageOperator.__qualname__ = EventpipeStageOperator.__name__  # its name in task logs
    return EventpipeStageOperator


def eventpipe_dag(
    dag_id: str | None = None,
    params_file: str | None = None,
    schedule: Any = "@daily",
    start_date: datetime = datetime(2024, 1, 1, tzinfo=timezone.utc),
    *,
    pipeline: str = DEFAULT_PIPELINE,
    conn_id: str | None = None,
    overrides: Sequence[str] = (),
    project: str | Path | None = None,
    python: str | None = None,
    max_active_runs: int = 2,
    retries: int = 2,
    retry_delay: timedelta = timedelta(seconds=10),
    catchup: bool = False,
    tags: Sequence[str] = ("eventpipe",),
    **dag_kwargs: Any,
) -> Any:
    """A DAG ``extract`` → ``transform_quality`` → ``load`` whose every run loads its data interval.

    ``pipeline`` names the pipeline (its state, table and window locks; default ``default``), whose params are
    ``params/pipelines/<pipeline>.yaml`` unless ``params_file`` names others; ``overrides`` are ``-p``
    parameters (never secrets). ``dag_id`` defaults to ``pipeline_dag_id(pipeline)``. ``conn_id`` names the
    Airflow connection holding the pipeline's secrets (``connection_env``); without one they come from the
    worker's environment. ``project`` is the eventpipe checkout (default: the one this module is in) and
    ``python`` the project environment's interpreter (default ``$EVENTPIPE_PYTHON`` or
    ``<project>/.venv/bin/python``). ``schedule`` is a cron string or a timedelta (turned into a
    data-interval timetable, checked now) or a timetable.
    """
    from airflow.sdk import DAG

    if not _PIPELINE_RE.fullmatch(pipeline):
        raise ValueError(
            f"pipeline {pipeline!r}: a pipeline's name is a plain identifier (letters, digits, _)"
        )
    dag_id = dag_id or pipeline_dag_id(pipeline)
    project = str(Path(project or os.environ.get("EVENTPIPE_PROJECT") or PROJECT).resolve())
    python = python or os.environ.get("EVENTPIPE_PYTHON") or str(Path(project) / ".venv" / "bin" / "python")
    operator = _operator_class()
    dag = DAG(
        dag_id,
        schedule=_timetable(schedule),
        start_date=start_date,
        catchup=catchup,
        max_active_runs=max_active_runs,
        tags=list(tags),
        default_args={"retries": retries, "retry_delay": retry_delay},
        **dag_kwargs,
    )
    with dag:
        tasks = [
            operator(
                task_id=stage,
                stage=stage,
                pipeline=pipeline,
                params_file=params_file,
                overrides=overrides,
                conn_id=conn_id,
                project=project,
                python=python,
            )
            for stage in STAGES
        ]
        for upstream, downstream in zip(tasks, tasks[1:]):
            upstream >> downstream
    return dag


if __name__ == "__main__":  # pragma: no cover - a quick look at the run ids
    print(
        pipeline_run_id(sys.argv[1], datetime.fromisoformat(sys.argv[2]), datetime.fromisoformat(sys.argv[3]))
    )
