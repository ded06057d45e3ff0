"""Apache Airflow 3: a DAG whose runs are pipeline runs, one per data interval.

Imported by Airflow's interpreter only (its own virtual environment, its own
pins). Each task runs one stage in the *project's* environment as a child
process, ``<project>/.venv/bin/python -m eventpipe.cli.task <stage> …``, so the
notebooks execute with the project's kernel and pins, and through the same
runner code as the CLI: same report folder, failure classes, banners and run
records. Nothing of eventpipe's own is imported here, and Airflow is imported
only when a DAG is built, so this module loads anywhere.
"""

from __future__ import annotations

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
    whose runs have an empty interval; a pipeline run needs ``[start, end)``."""
    from airflow.sdk import CronDataIntervalTimetable, DeltaDataIntervalTimetable

    if isinstance(schedule, str) and not schedule.startswith("@once"):
        return CronDataIntervalTimetable(schedule, timezone="UTC")
    if isinstance(schedule, timedelta):
        return DeltaDataIntervalTimetable(schedule)
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
            params_file: str | None,
            overrides: Sequence[str],
            project: str,
            python: str,
            **kwargs: Any,
        ):
            super().__init__(**kwargs)
            self.stage, self.params_file, self.overrides = stage, params_file, list(overrides)
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
            """``python -m eventpipe.cli.task ARGS`` with this task's params file and ``-p`` overrides."""
            cmd = [self.python, "-m", "eventpipe.cli.task", *args]
            if self.params_file:
                cmd += ["--params", self.params_file]
            for o in self.overrides:
                cmd += ["-p", o]
            return cmd

        def execute(self, context: Any) -> str:
            since, until = context["data_interval_start"], context["data_interval_end"]
            if since is None or until is None or since >= until:
                raise ValueError(
                    f"DAG run {context['run_id']} has no data interval ({since}, {until}): "
                    "use a data-interval schedule"
                )
            run_id = pipeline_run_id(self.dag_id, since, until)
            cmd = self.command(run_id, since, until)
            self.log.info(
                "pipeline run %s, window [%s, %s): %s", run_id, _iso(since), _iso(until), " ".join(cmd)
            )
            # secrets (API_KEY, DATABASE_URL) reach the stage through the worker's environment, never as arguments
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.project,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=os.environ.copy(),
                start_new_session=True,
            )
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                self.log.info("%s", line.rstrip())
            code = self._proc.wait()
            if code < 0:  # killed by a signal before it could record the failure itself
                self._mark_failed(run_id, f"the stage's process was killed by signal {-code}")
            if code != 0:
                raise RuntimeError(
                    f"stage {self.stage} of run {run_id} failed (exit {code}); the executed notebook "
                    "in its report folder shows where"
                )
            return run_id

        def _mark_failed(self, run_id: str, detail: str) -> None:
            cmd = self._task_command(
                "mark-failed", "--run-id", run_id, "--failed-stage", self.stage, "--detail", detail
            )
            subprocess.run(cmd, cwd=self.project, env=os.environ.copy(), check=False, timeout=120)

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
    dag_id: str,
    params_file: str | None = None,
    schedule: Any = "@daily",
    start_date: datetime = datetime(2024, 1, 1, tzinfo=timezone.utc),
    *,
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

    ``params_file`` and ``overrides`` are the pipeline's parameters (never secrets); ``project`` is the
    eventpipe checkout (default: the one this module is in) and ``python`` the project environment's
    interpreter (default ``$EVENTPIPE_PYTHON`` or ``<project>/.venv/bin/python``). ``schedule`` is a
    cron string or a timedelta (turned into a data-interval timetable) or a timetable.
    """
    from airflow.sdk import DAG

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
                params_file=params_file,
                overrides=overrides,
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
