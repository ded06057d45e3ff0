"""The run's OpenLineage event carries the quality gate's checks as the input's ``dataQualityAssertions`` facet."""

from __future__ import annotations

import json

import pytest

from support import query


def _events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_failed_gate_sends_each_check_with_its_result_and_column(project, tmp_path):
    lineage = tmp_path / "lineage.jsonl"
    gate = ("-p", "window.overlap=8h", "-p", "quality.min_pass_rate=0.9999", "-p", f"lineage.file={lineage}")
    assert project.cli("run", *gate) == 1
    (rid,) = query(project.database_url, "SELECT run_id FROM pipeline_runs")[0]
    reasons = json.loads((project.reports / rid / "metrics.json").read_text())["stages"]["transform_quality"]
    start, fail = _events(lineage)
    assert start["eventType"] == "START" and start["inputs"][0]["inputFacets"] == {}
    assert fail["eventType"] == "FAIL"
    facet = fail["inputs"][0]["inputFacets"]["dataQualityAssertions"]
    assert facet["_schemaURL"].endswith(
        "DataQualityAssertionsDatasetFacet.json#/$defs/DataQualityAssertionsDatasetFacet"
    )
    checks = {a["assertion"]: a for a in facet["assertions"]}
    # every rule of the quality schema, passed or not, with its column
    assert checks["event_not_allowed"]["column"] == "event_type"
    assert checks["timestamp_before_min"]["column"] == checks["timestamp_in_future"]["column"] == "timestamp"
    # every reason the run rejected records for, with how many
    for reason, n in reasons["reasons"].items():
        assert checks[reason]["success"] is False and checks[reason]["actual"] == str(n), reason
    assert {a["assertion"] for a in facet["assertions"] if a["success"]} == {
        name
        for name in ("event_not_allowed", "timestamp_before_min", "timestamp_in_future")
        if name not in reasons["reasons"]
    }
    for reason in reasons["reasons"]:  # a record rule names the field it judges; record_* the whole record
        expected = next(
            (c for c in ("user_id", "timestamp", "properties") if reason.startswith(c + "_")), None
        )
        if reason.startswith(("event_", "user_id_", "timestamp_", "properties_", "record_")):
            assert checks[reason].get("column") == (
                expected or ("event_type" if reason.startswith("event_") else None)
            )
    gate_check = checks["pass_rate"]
    assert gate_check["success"] is False and gate_check["expected"] == ">= 0.9999"
    assert gate_check["actual"] == str(reasons["pass_rate"]) and gate_check["name"] == "quality.min_pass_rate"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_passed_gate_says_so(project, tmp_path):
    lineage = tmp_path / "lineage.jsonl"
    assert project.cli("run", "-p", f"lineage.file={lineage}") == 0
    complete = _events(lineage)[-1]
    assert complete["eventType"] == "COMPLETE"
    checks = {
        a["assertion"]: a for a in complete["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"]
    }
    assert checks["pass_rate"]["success"] is True and checks["pass_rate"]["expected"] == ">= 0.95"
