"""Run attestations: DSSE's pre-authentication encoding, the signature round trip, keys from the environment."""

from __future__ import annotations

import base64
import json

import pytest

from eventpipe.audit.attest import (
    ENV_KEY,
    ENV_KEY_FILE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    AttestationInvalid,
    keygen,
    load_public_key,
    open_envelope,
    pae,
    quality_verdict,
    sign,
    signing_key,
    statement,
)
from eventpipe.core.run_metrics import RunError, RunMetrics
from eventpipe.errors import SettingsError

ENTRY = {
    "run_id": "r1",
    "seq": 2,
    "previous": "p" * 64,
    "code": {"git_commit": "c" * 40, "dirty": False},
    "notebooks_sha256": {"01_extract.ipynb": "n" * 64},
    "params_sha256": "q" * 64,
    "files_sha256": {"metrics.json": "m" * 64, "run.log": "l" * 64},
    "entry_sha256": "e" * 64,
}


def test_pae_is_dsse_v1_with_ascii_decimal_lengths():
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_a_signed_statement_opens_with_its_public_key_only(tmp_path):
    private, public = keygen(tmp_path / "k")
    key = signing_key({ENV_KEY_FILE: str(private)})
    assert key is not None
    metrics = RunMetrics.with_counts(
        {"extracted": 5, "loaded": 4}, run_id="r1", kind="incremental", status="succeeded"
    )
    metrics.stages = {"transform_quality": {}}
    envelope = sign(statement(ENTRY, metrics, {"quality.min_pass_rate": 0.95}), key)
    opened = open_envelope(envelope, [load_public_key(public)])
    assert opened["_type"] == STATEMENT_TYPE and opened["predicateType"] == PREDICATE_TYPE
    assert {s["name"]: s["digest"]["sha256"] for s in opened["subject"]} == ENTRY["files_sha256"]
    deps = {d["name"] for d in opened["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps == {"notebooks/01_extract.ipynb", "parameters", "code"}
    outcome = opened["predicate"]["runDetails"]["byproducts"][0]["annotations"]
    assert outcome["counts"] == {"extracted": 5, "loaded": 4} and outcome["quality"] == "passed"

    other = load_public_key(keygen(tmp_path / "other")[1])
    with pytest.raises(AttestationInvalid, match="no signature verifies"):
        open_envelope(envelope, [other])
    body = json.loads(base64.b64decode(envelope["payload"]))
    body["subject"][0]["digest"]["sha256"] = "0" * 64
    forged = {**envelope, "payload": base64.b64encode(json.dumps(body).encode()).decode()}
    with pytest.raises(AttestationInvalid):
        open_envelope(forged, [load_public_key(public)])


def test_the_key_comes_from_a_file_or_the_pem_in_the_environment(tmp_path):
    private, _ = keygen(tmp_path / "k")
    assert private.stat().st_mode & 0o777 == 0o600
    assert signing_key({}) is None
    assert signing_key({ENV_KEY: private.read_text()}) is not None
    with pytest.raises(SettingsError, match="cannot be read"):
        signing_key({ENV_KEY_FILE: str(tmp_path / "missing")})
    with pytest.raises(SettingsError, match="cannot be read"):
        signing_key({ENV_KEY: "not a key"})
    with pytest.raises(SettingsError, match="exists"):
        keygen(tmp_path / "k")


def test_the_quality_verdict_follows_where_the_run_stopped():
    def metrics(**kw) -> RunMetrics:
        return RunMetrics(run_id="r", kind="incremental", status="failed", **kw)

    gate = RunError("transform_quality", "QualityGateFailed", "pass rate too low")
    assert quality_verdict(metrics(error=gate)) == "failed"
    assert quality_verdict(metrics(error=RunError("extract", "HTTPError", "x"))) == "not reached"
    assert quality_verdict(metrics(stages={"transform_quality": {}})) == "passed"


def test_the_signing_key_never_reaches_a_notebook_kernel(tmp_path, monkeypatch):
    from eventpipe.orchestration.kernel import kernel_env
    from eventpipe.settings import load_settings

    private, _ = keygen(tmp_path / "k")
    monkeypatch.setenv(ENV_KEY_FILE, str(private))
    monkeypatch.setenv(ENV_KEY, private.read_text())
    env = kernel_env(load_settings(None, ["api.base_url=http://127.0.0.1:9"], env={"API_KEY": "k-123456"}))
    assert ENV_KEY_FILE not in env and ENV_KEY not in env and env["API_KEY"] == "k-123456"
