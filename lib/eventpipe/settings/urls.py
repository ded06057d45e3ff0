"""URLs in settings and messages: the database URL normalised, the API base URL checked, passwords masked."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlparse

from ..errors import SettingsError
from .values import shown

_QUERY_PASSWORD = re.compile(r"([?&;](?:password|passwd|pwd|pass)=)[^&;#\s'\"]*", re.I)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def _split_userinfo(rest: str) -> int:
    """Where the userinfo of ``rest`` (a URL after ``scheme://``) ends: its last ``@`` before the query,
    so an unencoded ``@`` in a password stays in the password; -1 without one."""
    query = rest.find("?")
    return rest.rfind("@", 0, query if query >= 0 else len(rest))


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``: in the userinfo (split at its *last* ``@``, also in
    malformed URLs like ``scheme:/u:pw@h``) and in a ``password=`` query parameter."""
    url = _QUERY_PASSWORD.sub(r"\1***", url)
    m = re.fullmatch(r"([A-Za-z][A-Za-z0-9+.\-]*:/*)?(.*)", url, re.S)
    assert m is not None  # the pattern matches any text
    prefix, rest = (m.group(1) or ""), m.group(2)
    at = _split_userinfo(rest)
    if at < 0:
        return url
    userinfo = rest[:at]
    if ":" not in userinfo:
        return url
    return f"{prefix}{userinfo.split(':', 1)[0]}:***{rest[at:]}"


def mask_urls(text: str) -> str:
    """``text`` with the password of every URL in it, and of every ``password=`` parameter, replaced by ``***``."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
    return _QUERY_PASSWORD.sub(r"\1***", text)


def url_passwords(url: str) -> list[str]:
    """Every password a URL carries (userinfo and ``password=`` query values), as written."""
    found = [m.group(0).split("=", 1)[1] for m in _QUERY_PASSWORD.finditer(url)]
    _scheme, sep, rest = url.partition("://")
    at = _split_userinfo(rest) if sep else -1
    if at >= 0 and ":" in rest[:at]:
        found.insert(0, rest[:at].split(":", 1)[1])
    return [p for p in found if p and p != "***"]


def _check_port(url: str, authority: str) -> None:
    for host in authority.split(","):
        port = host.rsplit("]", 1)[-1].rpartition(":")[2] if ":" in host.rsplit("]", 1)[-1] else ""
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise SettingsError(
                f"DATABASE_URL {shown(mask_url(url))}: port {shown(port)} is not a number from 1 to 65535"
            )


def _encode_userinfo(url: str, rest: str) -> str:
    """``rest`` (after ``scheme://``) with user and password percent-encoded, so that an unencoded ``@``,
    ``:`` or ``/`` in a password stays in the password instead of becoming part of the host name."""
    at = _split_userinfo(rest)
    host = rest[at + 1 :]
    _check_port(url, re.split(r"[/?]", host, maxsplit=1)[0])
    if at < 0:
        return rest
    user, colon, password = rest[:at].partition(":")
    userinfo = quote(unquote(user), safe="") + (colon + quote(unquote(password), safe="") if colon else "")
    return f"{userinfo}@{host}"


def normalise_database_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and pick the driver we ship (psycopg2)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", scheme):
        raise SettingsError(
            f"DATABASE_URL {shown(mask_url(url))} is not a URL: use postgresql://user@host:5432/db or sqlite:///path.sqlite"
        )
    base = scheme.split("+", 1)[0].lower()
    if base in ("postgresql", "postgres"):
        return f"postgresql+psycopg2://{_encode_userinfo(url, rest)}"
    if base == "sqlite":
        if rest.split("/", 1)[0]:
            raise SettingsError(
                "DATABASE_URL: a sqlite:// URL names a file and takes no user, password or host: "
                "use sqlite:///relative/path.sqlite or sqlite:////absolute/path.sqlite"
            )
        return f"sqlite://{rest}"
    raise SettingsError(
        f"DATABASE_URL has unknown scheme {shown(scheme)}: use postgresql://... or sqlite:///path.sqlite"
    )


def api_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the API base URL (not http(s), or carrying credentials), or None."""
    u = urlparse(url)
    if u.scheme not in ("http", "https") or not u.netloc:
        return f"API base URL {shown(mask_url(url))} is not an http(s) URL: set API_BASE_URL like http://host:8000"
    if "@" in u.netloc:
        return (
            f"API base URL {shown(mask_url(url))} carries credentials: refused (they would replace the "
            "configured auth); put them in the environment variables that source.auth names"
        )
    return None


def url_tokens(url: str) -> list[str]:
    """The pieces of a notification URL that may be a credential (a Slack webhook's path, a ``?token=``,
    ``slack://TOKEN/…``'s "host"): each path segment, query value and dotless host of 8 characters or more
    that holds a digit, or of 16 or more."""
    parsed = urlparse(url)
    pieces = [*parsed.path.split("/"), *(v for pair in parsed.query.split("&") for v in pair.split("=")[1:])]
    pieces += [parsed.username or "", parsed.password or ""]
    host = parsed.netloc.rsplit("@", 1)[-1].split(":", 1)[0]  # as written: hostname is lower-cased
    if "." not in host and "[" not in host:  # no host name nor address: an Apprise token in its place
        pieces.append(host)
    return [
        p
        for p in (unquote(piece) for piece in pieces)
        if len(p) >= 16 or (len(p) >= 8 and any(c.isdigit() for c in p))
    ]
