"""The eventpipe DAG: point Airflow's dags folder here (``AIRFLOW__CORE__DAGS_FOLDER=<project>/dags``).

One DAG run per day loads that day; ``airflow backfill create`` loads a range.
Settings come from the worker's environment: ``EVENTPIPE_PARAMS`` (a params YAML),
``API_BASE_URL`` / ``API_KEY`` / ``DATABASE_URL`` (secrets: environment only).
"""

import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from eventpipe.orchestration.integrations.airflow import eventpipe_dag  # noqa: E402

dag = eventpipe_dag(
    dag_id=os.environ.get("EVENTPIPE_DAG_ID", "eventpipe"),
    params_file=os.environ.get("EVENTPIPE_PARAMS") or None,
    schedule=os.environ.get("EVENTPIPE_SCHEDULE", "@daily"),
    start_date=datetime.fromisoformat(os.environ.get("EVENTPIPE_START_DATE", "2024-01-01T00:00:00+00:00")),
    max_active_runs=int(os.environ.get("EVENTPIPE_MAX_ACTIVE_RUNS", "2")),
    retries=int(os.environ.get("EVENTPIPE_RETRIES", "2")),
    retry_delay=timedelta(seconds=float(os.environ.get("EVENTPIPE_RETRY_DELAY_S", "10"))),
)
