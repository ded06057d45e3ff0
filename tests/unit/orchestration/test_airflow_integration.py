"""The Airflow integration seen from the project's side: it imports without Airflow, its run ids are stable."""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta, timezone

from eventpipe.orchestration.integrations import airflow as integration


def test_the_integration_imports_without_airflow_in_the_project_venv():
    assert importlib.util.find_spec("airflow") is None  # Airflow lives in .airflow-venv only
    assert integration.STAGES == ("extract", "transform_quality", "load")


def test_a_dag_runs_pipeline_run_id_is_derived_from_the_dag_and_its_interval_only():
    since = datetime(2024, 5, 1, tzinfo=timezone.utc)
    until = datetime(
        2024, 5, 2, 2, tzinfo=timezone(timedelta(hours=2))
    )  # the same instant as 05-02 00:00 UTC
    run_id = integration.pipeline_run_id("my dag/v2", since, until)
    assert run_id == "my_dag_v2-20240501T000000Z-20240502T000000Z"
    assert integration.pipeline_run_id("my dag/v2", since, until) == run_id  # every retry, every rerun
