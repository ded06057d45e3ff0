"""The eventpipe DAGs: point Airflow's dags folder here (``AIRFLOW__CORE__DAGS_FOLDER=<project>/dags``).

One DAG per pipeline: ``eventpipe`` for the pipeline ``default``, ``eventpipe_<name>`` for each
``params/pipelines/<name>.yaml``; each DAG run loads its data interval, ``airflow backfill create``
loads a range. Settings come from the environment of every Airflow component (docs/airflow.md):

- ``EVENTPIPE_SCHEDULE`` (cron or preset, default ``@daily``), ``EVENTPIPE_SCHEDULE_<NAME>`` for one
  pipeline (its name upper-cased); a bad one fails here, as the file's import error;
- ``EVENTPIPE_CONN_ID`` (pipeline ``default``) and ``EVENTPIPE_CONN_ID_<NAME>``: the Airflow connection
  holding that pipeline's secrets; without one, ``API_BASE_URL`` / ``API_KEY`` come from the worker's
  environment (secrets: a connection or the environment, never a parameter);
- ``EVENTPIPE_PARAMS`` (pipeline ``default``'s params file), ``EVENTPIPE_PIPELINES`` (a comma-separated
  choice of pipelines), ``EVENTPIPE_DAG_ID`` (the prefix, default ``eventpipe``), ``EVENTPIPE_START_DATE``,
  ``EVENTPIPE_MAX_ACTIVE_RUNS``, ``EVENTPIPE_RETRIES``, ``EVENTPIPE_RETRY_DELAY_S``.
"""

import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from eventpipe.orchestration.integrations.airflow import (  # noqa: E402
    DEFAULT_PIPELINE,
    eventpipe_dag,
    pipeline_dag_id,
    pipeline_names,
)


def _setting(name: str, pipeline: str) -> str | None:
    """``NAME_<PIPELINE>`` for one pipeline, else ``NAME`` (the connection: ``default``'s only)."""
    own = os.environ.get(f"{name}_{pipeline.upper()}")
    if own is not None or (name == "EVENTPIPE_CONN_ID" and pipeline != DEFAULT_PIPELINE):
        return own
    return os.environ.get(name)


chosen = os.environ.get("EVENTPIPE_PIPELINES", "")
pipelines = [p.strip() for p in chosen.split(",") if p.strip()] or pipeline_names(
    os.environ.get("EVENTPIPE_PROJECT")
)
for pipeline in pipelines:
    schedule = _setting("EVENTPIPE_SCHEDULE", pipeline)
    try:
        dag = eventpipe_dag(
            dag_id=pipeline_dag_id(pipeline, os.environ.get("EVENTPIPE_DAG_ID", "eventpipe")),
            pipeline=pipeline,
            params_file=(os.environ.get("EVENTPIPE_PARAMS") or None)
            if pipeline == DEFAULT_PIPELINE
            else None,
            conn_id=_setting("EVENTPIPE_CONN_ID", pipeline) or None,
            schedule="@daily" if schedule is None else schedule,
            start_date=datetime.fromisoformat(
                os.environ.get("EVENTPIPE_START_DATE", "2024-01-01T00:00:00+00:00")
            ),
            max_active_runs=int(os.environ.get("EVENTPIPE_MAX_ACTIVE_RUNS", "2")),
            retries=int(os.environ.get("EVENTPIPE_RETRIES", "2")),
            retry_delay=timedelta(seconds=float(os.environ.get("EVENTPIPE_RETRY_DELAY_S", "10"))),
        )
    except ValueError as e:  # one line in Airflow's import errors: the pipeline, what is wrong, what to use
        raise ValueError(f"dags/eventpipe.py, pipeline {pipeline}: {e}") from None
    globals()[dag.dag_id] = dag
