"""A run's resolved settings as one file, ``runs/<run_id>/settings.json``, and back.

The runner resolves the settings once and writes every one of them (no secret), the window and the
run's facts; each stage notebook rebuilds ``Settings`` from that file plus its kernel's environment,
the only place the secrets (``API_KEY``, the password in ``DATABASE_URL``, ``source.auth``'s
variables) ever are. ``public_parameters`` is also what the run ledger records.

A run started by hand (``01_extract`` with no settings file) writes the same file, so that 02 and 03 take
its window and id from it; such a run can load into a scratch database, ``scratch.sqlite`` in its folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from .errors import SettingsError
from .jsonio import write_json_atomic
from .settings import (
    SECTIONS,
    Settings,
    _to_plain,
    iso,
    load_dotenv_once,
    load_settings,
    mask_url,
    parse_window,
)

SCRATCH_DATABASE = "scratch.sqlite"


def scratch_database_url(run_folder: Path) -> str:
    """The scratch database of the run whose folder is ``run_folder``: a SQLite file of its own, in that folder."""
    return f"sqlite:///{run_folder.resolve() / SCRATCH_DATABASE}"


def public_parameters(settings: Settings) -> dict[str, Any]:
    """Every resolved parameter as ``section.key`` -> plain value, plus where they came from; no secret.

    Secrets live only in ``api_key`` and ``database_url``: the first is left out, the
    second is shown masked; URLs that carry a password in their user info are masked too.
    """
    out: dict[str, Any] = {
        k: mask_url(v) if isinstance(v, str) and "://" in v else v for k, v in _values(settings).items()
    }
    out["database"] = mask_url(settings.database_url.reveal())
    out["params_file"] = settings.params_file
    out["overrides"] = [mask_url(o) for o in settings.overrides]
    return out


def with_overrides(settings: Settings, overrides: Sequence[str]) -> Settings:
    """``settings`` with more ``-p`` overrides on top (a replay's ``quality.min_pass_rate=0``), checked as on
    the command line; the secrets stay the ones ``settings`` has."""
    if not overrides:
        return settings
    changed = load_settings(
        None, [*(_as_override(k, v) for k, v in _values(settings).items()), *overrides], env={}
    )
    return dataclasses.replace(
        changed,
        database_url=settings.database_url,
        api_key=settings.api_key,
        params_file=settings.params_file,
        overrides=(*settings.overrides, *overrides),
    )


def _values(settings: Settings) -> dict[str, Any]:
    """``section.key`` -> plain value (text, number, list, mapping) of every setting, as resolved."""
    return {
        f"{section}.{f.name}": _plain(getattr(getattr(settings, section), f.name))
        for section in SECTIONS
        for f in dataclasses.fields(getattr(settings, section))
    }


def _plain(value: Any) -> Any:
    # a duration's usual form ("15m") is in whole seconds; a shorter part is kept, as seconds
    if isinstance(value, timedelta) and value % timedelta(seconds=1):
        return f"{value.total_seconds()}s"
    return _to_plain(value)


class _PlainDumper(yaml.SafeDumper):
    """YAML that the params loader reads back: it refuses anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _as_override(key: str, value: Any) -> str:
    """``section.key=value`` in the form of the CLI's ``-p``, the value as YAML (which keeps any text exact)."""
    text = yaml.dump(value, Dumper=_PlainDumper, default_flow_style=True, allow_unicode=True, width=1 << 30)
    return f"{key}={text}"


@dataclass(frozen=True)
class RunSettings:
    """What a run's notebooks are given: the resolved settings, the window and the run's facts."""

    settings: Settings
    run_id: str
    kind: str
    since: datetime
    until: datetime
    replay: bool = False
    advance_watermark: bool = False
    # a hand run's choice: load into ``scratch_database_url(<the file's folder>)``, whatever DATABASE_URL says
    scratch: bool = False

    def write(self, path: Path) -> Path:
        """Write the file (atomically: a stage of another process may be reading it); return its path."""
        write_json_atomic(
            path,
            {
                "run_id": self.run_id,
                "kind": self.kind,
                "since": iso(self.since),
                "until": iso(self.until),
                "replay": self.replay,
                "advance_watermark": self.advance_watermark,
                "scratch": self.scratch,
                "settings": public_parameters(self.settings),
            },
        )
        return path

    @classmethod
    def read(cls, path: Path, env: Mapping[str, str] | None = None) -> RunSettings:
        """The file at ``path`` with the secrets of ``env`` (default: this process's environment and ``.env``).

        The file's API base URL wins over ``API_BASE_URL`` (``run --demo`` serves its own API), except when
        the file holds it masked (a password in its query): then it is the environment's, unmasked. A scratch
        run's database is the scratch file in ``path``'s folder, not ``DATABASE_URL``.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            params = dict(data["settings"])
            since, until = parse_window(data["since"], data["until"])
            facts = (
                str(data["run_id"]),
                str(data["kind"]),
                bool(data["replay"]),
                bool(data["advance_watermark"]),
                bool(data.get("scratch", False)),  # a file written before the scratch fact existed has none
            )
        except OSError as e:
            raise SettingsError(f"settings file {path} cannot be read ({e.strerror})") from None
        except (ValueError, KeyError, TypeError) as e:
            raise SettingsError(f"settings file {path} is not a run's settings file ({e})") from None
        if env is None:
            load_dotenv_once()
            env = os.environ
        # the environment without its API base URL, so that the file's (even an empty one) is the one used
        secrets_env = {k: v for k, v in env.items() if k != "API_BASE_URL"}
        env_url = env.get("API_BASE_URL", "")
        if env_url and mask_url(env_url) != env_url and mask_url(env_url) == params.get("api.base_url"):
            secrets_env["API_BASE_URL"] = env_url
            del params["api.base_url"]
        run_id, kind, replay, advance_watermark, scratch = facts
        if scratch:
            secrets_env["DATABASE_URL"] = scratch_database_url(path.parent)
        # every setting (a "section.key"; "database", "params_file" and "overrides" only say where they came
        # from) as a -p override, so the file is checked exactly as a command line is
        settings = load_settings(
            None, [_as_override(k, v) for k, v in params.items() if "." in k], env=secrets_env
        )
        database = mask_url(settings.database_url.reveal())
        if params.get("database") and database != params["database"] and not scratch:
            raise SettingsError(
                f"settings file {path}: the run writes to {params['database']}, but DATABASE_URL here names "
                f"{database}: execute the notebook in the environment of the run"
            )
        settings = dataclasses.replace(
            settings, params_file=params.get("params_file"), overrides=tuple(params.get("overrides") or ())
        )
        return cls(settings, run_id, kind, since, until, replay, advance_watermark, scratch)
