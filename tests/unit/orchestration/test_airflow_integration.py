"""The Airflow integration seen from the project's side: it imports without Airflow, its run ids are stable,
a connection becomes the stage's environment, one DAG id per pipeline."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

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


@dataclass
class Conn:
    """What the factory reads of an Airflow connection (``airflow.sdk.Connection``'s fields)."""

    host: str | None = None
    password: str | None = None
    extra: str | None = None
    login: str | None = None
    schema: str | None = None
    port: int | None = None


@pytest.mark.parametrize(
    "host, schema, port, url",
    [
        ("https://events.example.com/v1/", None, None, "https://events.example.com/v1"),
        ("events.example.com", "https", 8443, "https://events.example.com:8443"),
        ("127.0.0.1", None, 8000, "http://127.0.0.1:8000"),  # as the HTTP provider's hook reads it
        ("http://127.0.0.1:8000", None, 9, "http://127.0.0.1:8000"),  # a port in the URL wins
    ],
)
def test_a_connections_host_becomes_the_base_url(host, schema, port, url):
    env = integration.connection_env("c", Conn(host=host, schema=schema, port=port))
    assert env == {"API_BASE_URL": url}


def test_password_is_the_api_key_and_extra_the_source_auth_variables():
    extra = json.dumps({"MIXPANEL_USER": "svc-user", "MIXPANEL_SECRET": "s3cret-value"})
    env = integration.connection_env("web", Conn(host="http://h:1", password="k" * 12, extra=extra))
    assert env == {
        "API_BASE_URL": "http://h:1",
        "API_KEY": "k" * 12,
        "MIXPANEL_USER": "svc-user",
        "MIXPANEL_SECRET": "s3cret-value",
    }


@pytest.mark.parametrize(
    "conn, words",
    [
        (Conn(login="svc"), "login is not used"),
        (Conn(extra="not json"), "extra is not JSON"),
        (Conn(extra="[1]"), "not a JSON object"),
        (Conn(extra='{"PATH": "/tmp"}'), "extra key 'PATH'"),
        (Conn(extra='{"PYTHONPATH": "/tmp"}'), "extra key 'PYTHONPATH'"),
        (Conn(extra='{"lower": "x"}'), "extra key 'lower'"),
        (Conn(extra='{"USER_ID": 7}'), "extra USER_ID is not text"),
        (Conn(password="k" * 12, extra='{"API_KEY": "other-key-1"}'), "extra sets API_KEY"),
    ],
)
def test_what_the_stage_would_not_use_is_one_line_naming_the_connection(conn, words):
    with pytest.raises(ValueError) as e:
        integration.connection_env("web", conn)
    message = str(e.value)
    assert message.startswith("connection 'web': ") and words in message and "\n" not in message
    assert "other-key-1" not in message and "/tmp" not in message  # names, never values


def test_with_a_connection_the_stage_gets_its_secrets_and_none_of_the_workers_or_airflows():
    worker = {
        "PATH": "/usr/bin",
        "DATABASE_URL": "postgresql://db/x",
        "API_KEY": "worker-key-123",
        "API_KEY_FILE": "/run/secrets/k",
        "API_BASE_URL": "http://old",
        "AIRFLOW_CONN_EVENTPIPE": '{"password": "worker-key-123"}',
        "AIRFLOW_VAR_TOKEN": "t",
    }
    env = integration.stage_env(worker, {"API_KEY": "conn-key-456", "MIXPANEL_SECRET": "m" * 10})
    assert env == {
        "PATH": "/usr/bin",
        "DATABASE_URL": "postgresql://db/x",
        "API_KEY": "conn-key-456",
        "MIXPANEL_SECRET": "m" * 10,
    }
    # without a connection: the worker's environment, still without Airflow's connections and variables
    assert integration.stage_env(worker, None) == {
        k: v for k, v in worker.items() if not k.startswith("AIRFLOW_")
    }


def test_one_dag_per_pipeline_default_keeping_the_dag_id_of_before(tmp_path):
    (tmp_path / "params" / "pipelines").mkdir(parents=True)
    for name in ("web", "backend", "default", "not-a-name"):
        (tmp_path / "params" / "pipelines" / f"{name}.yaml").write_text("{}\n")
    assert integration.pipeline_names(tmp_path) == ["default", "backend", "web"]
    assert [integration.pipeline_dag_id(p) for p in ("default", "web")] == ["eventpipe", "eventpipe_web"]
    assert integration.pipeline_dag_id("web", prefix="ep") == "ep_web"
