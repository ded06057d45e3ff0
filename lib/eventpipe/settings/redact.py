"""The redactor: every secret of the settings, in every form a message may carry it, replaced by ``***``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus, unquote

from .urls import mask_urls, url_passwords

if TYPE_CHECKING:
    from .schema import Settings

MIN_SECRET_CHARS = 3


def _forms(value: str) -> set[str]:
    """``value`` as written, percent-encoded (path, component and form style), JSON- and repr-escaped."""
    return {
        value,
        quote(value),
        quote(value, safe=""),
        quote_plus(value),
        json.dumps(value)[1:-1],
        repr(value)[1:-1],
    }


class Redactor:
    """Replaces every form in which a secret may turn up in a message by ``***``, and the password of any URL:
    applied to each message before it is printed or stored (run records, metrics, logs, reports, the source
    client's errors).

    ``secrets`` are taken as they are; of each password inside ``urls`` also its decoded form and the pieces
    that an unencoded ``@``, ``:`` or ``/`` would split off (a driver that misreads the URL quotes those).
    Forms shorter than ``MIN_SECRET_CHARS`` are left out: they would match ordinary words.
    """

    def __init__(self, secrets: Iterable[str] = (), urls: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                forms |= _forms(secret)
        for url in urls:
            for password in (unquote(p) for p in url_passwords(url)):
                for value in (password, *re.split(r"[@:/]", password)):
                    forms |= _forms(value)
        # longest first: a secret that contains another is replaced whole
        self.forms = tuple(sorted((f for f in forms if len(f) >= MIN_SECRET_CHARS), key=len, reverse=True))

    @property
    def longest(self) -> int:
        """The length of the longest form a secret takes in a message (0 without secrets)."""
        return len(self.forms[0]) if self.forms else 0

    def redact(self, text: str) -> str:
        """``text`` with every form of every secret, and every URL password, replaced by ``***``."""
        for form in self.forms:
            if form in text:
                text = text.replace(form, "***")
        return mask_urls(text)


_NO_SECRETS = Redactor()


def redact(text: str, settings: Settings | None) -> str:
    """``settings.redactor.redact(text)``; without settings, the URL passwords only."""
    return (settings.redactor if settings is not None else _NO_SECRETS).redact(text)
