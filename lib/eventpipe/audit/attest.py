"""Signed run attestations: an in-toto Statement v1 in a DSSE envelope, signed with Ed25519.

With a signing key configured (``EVENTPIPE_SIGNING_KEY_FILE``: the path of a PEM private key, or
``EVENTPIPE_SIGNING_KEY``: the PEM itself; never a parameter), each run's sealed ledger entry is attested
in ``reports/<run_id>/attestation.dsse.json``. The statement's subjects are the run's sealed files; its
predicate (SLSA provenance v1) names the code version, the source notebooks and the parameters as resolved
dependencies, the counts and the quality verdict, and the ledger entry it attests (seq, hash, previous).
``report verify --public-key FILE`` checks it: whoever can write the folder and the database but has not the
private key cannot make a run that passes. Without a key a run has hashes and the chain only.

DSSE v1.0 (github.com/secure-systems-lab/dsse): the signature is over
``PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``, lengths in ASCII decimal.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SettingsError

if TYPE_CHECKING:  # cryptography is imported where it is used: the kernel set-up reads only the names below
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from ..core.run_metrics import RunMetrics

ENV_KEY_FILE = "EVENTPIPE_SIGNING_KEY_FILE"
ENV_KEY = "EVENTPIPE_SIGNING_KEY"
ATTESTATION_FILE = "attestation.dsse.json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:eventpipe:run:v1"
BUILDER_ID = "urn:eventpipe:runner"


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is signed, binding the payload to its type."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def signing_key(env: Mapping[str, str] = os.environ) -> Ed25519PrivateKey | None:
    """The configured Ed25519 private key (None: none configured); ``SettingsError`` when it is unusable."""
    path, pem = env.get(ENV_KEY_FILE, ""), env.get(ENV_KEY, "")
    if not path and not pem:
        return None
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    where = f"{ENV_KEY_FILE}={path}" if path else ENV_KEY
    try:
        data = Path(path).read_bytes() if path else pem.encode()
        key = serialization.load_pem_private_key(data, password=None)
    except (OSError, ValueError, TypeError) as e:
        raise SettingsError(f"signing key ({where}) cannot be read: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SettingsError(
            f"signing key ({where}) is not an Ed25519 key: make one with `report keygen FILE`"
        )
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as e:
        raise SettingsError(f"public key {path} cannot be read: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SettingsError(f"public key {path} is not an Ed25519 key")
    return key


def keyid(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key: the envelope's hint of which key signed (never trusted on its own)."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def keygen(path: Path) -> tuple[Path, Path]:
    """A new key pair: the private key at ``path`` (PKCS#8 PEM, mode 0600) and the public one at ``path.pub``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = path.with_name(path.name + ".pub")
    for p in (path, public):
        if p.exists():
            raise SettingsError(f"report keygen: {p} exists; pick another name (a key is never overwritten)")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path, public


def statement(entry: Mapping[str, Any], metrics: RunMetrics, params: Mapping[str, Any]) -> dict[str, Any]:
    """The in-toto Statement of one run's sealed ``entry`` (``audit.chain.seal``)."""
    code = entry.get("code") or {}
    dependencies = [
        {"name": f"notebooks/{name}", "digest": {"sha256": digest}}
        for name, digest in sorted((entry.get("notebooks_sha256") or {}).items())
    ]
    dependencies.append({"name": "parameters", "digest": {"sha256": entry["params_sha256"]}})
    if code.get("git_commit"):
        dependencies.append(
            {
                "name": "code",
                "digest": {"gitCommit": code["git_commit"]},
                "annotations": {"dirty": code["dirty"]},
            }
        )
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": name, "digest": {"sha256": digest}}
            for name, digest in sorted(entry["files_sha256"].items())
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "kind": metrics.kind,
                    "window": {"since": metrics.since, "until": metrics.until},
                },
                "internalParameters": {"params": dict(params), "code": code},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID},
                "metadata": {
                    "invocationId": metrics.run_id,
                    "startedOn": metrics.started_at,
                    "finishedOn": metrics.finished_at,
                },
                "byproducts": [
                    {
                        "name": "outcome",
                        "annotations": {
                            "status": metrics.status,
                            "counts": metrics.known_counts(),
                            "pass_rate": metrics.pass_rate,
                            "quality": quality_verdict(metrics),
                        },
                    },
                    {
                        "name": "ledger",
                        "digest": {"sha256": entry["entry_sha256"]},
                        "annotations": {"seq": entry["seq"], "previous": entry["previous"]},
                    },
                ],
            },
        },
    }


def quality_verdict(metrics: RunMetrics) -> str:
    """``passed``, ``failed`` (the gate stopped the run) or ``not reached`` (the run stopped before it)."""
    if metrics.error is not None and metrics.error.stage == "transform_quality":
        return "failed" if metrics.error.failure_class == "QualityGateFailed" else "not reached"
    return "passed" if "transform_quality" in metrics.stages else "not reached"


def sign(payload: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """A DSSE envelope of ``payload`` (a Statement) signed by ``key``."""
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode(),
        "signatures": [
            {
                "keyid": keyid(key.public_key()),
                "sig": base64.b64encode(key.sign(pae(PAYLOAD_TYPE, body))).decode(),
            }
        ],
    }


class AttestationInvalid(Exception):
    """An envelope no given key signed, or one that does not parse."""


def open_envelope(envelope: Mapping[str, Any], keys: Iterable[Ed25519PublicKey]) -> dict[str, Any]:
    """The Statement in ``envelope`` once one of its signatures verifies with one of ``keys``."""
    from cryptography.exceptions import InvalidSignature

    try:
        body = base64.b64decode(envelope["payload"], validate=True)
        payload_type = envelope["payloadType"]
        sigs = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
    except (KeyError, TypeError, ValueError) as e:
        raise AttestationInvalid(f"not a DSSE envelope ({type(e).__name__}: {e})") from None
    message = pae(payload_type, body)
    for key in keys:
        for sig in sigs:
            try:
                key.verify(sig, message)
            except InvalidSignature:
                continue
            if payload_type != PAYLOAD_TYPE:
                raise AttestationInvalid(f"signed, but its payload type is {payload_type!r}")
            return json.loads(body)
    raise AttestationInvalid(
        "no signature verifies with the given public key(s): forged, or signed by another key"
    )


def attest(
    report_dir: Path,
    entry: Mapping[str, Any],
    metrics: RunMetrics,
    params: Mapping[str, Any],
    key: Ed25519PrivateKey,
) -> Path:
    from .files import write_json

    path = report_dir / ATTESTATION_FILE
    write_json(path, sign(statement(entry, metrics, params), key))
    return path


def check(folder: Path, entry: Mapping[str, Any], keys: Iterable[Ed25519PublicKey]) -> str | None:
    """What is wrong with a run's attestation against its sealed ``entry`` (None: it is signed and matches)."""
    path = folder / ATTESTATION_FILE
    if not path.is_file():
        return "has no signed attestation"
    try:
        attested = open_envelope(json.loads(path.read_text(encoding="utf-8")), keys)
    except (ValueError, AttestationInvalid) as e:
        return f"attestation invalid: {e}"
    ledger = next(
        (
            b
            for b in attested.get("predicate", {}).get("runDetails", {}).get("byproducts", [])
            if b.get("name") == "ledger"
        ),
        {},
    )
    if ledger.get("digest", {}).get("sha256") != entry.get("entry_sha256"):
        return "attestation is signed, but for another ledger entry (the entry was rewritten after the run)"
    subjects = {s["name"]: s["digest"]["sha256"] for s in attested.get("subject", [])}
    if subjects != entry.get("files_sha256"):
        return "attestation is signed, but its subjects differ from the ledger entry's files"
    return None
