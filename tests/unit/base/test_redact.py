"""The redactor: one object per settings, and no form of any configured secret survives it.

It covers the API key, the database password (as written, decoded, percent-encoded, and the pieces an
unencoded ``@`` or ``:`` splits off) and what ``source.auth`` sends (the values of its environment
variables, the basic ``Authorization`` credential); any URL password is masked even without settings.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from urllib.parse import quote, quote_plus

import pytest

from eventpipe.settings import Redactor, Secret, load_settings, redact

API_KEY = 'sk-live/KEY+ab12"q'  # a slash, a plus and a quote: each form differs


def settings(*overrides: str, **env: str):
    return load_settings(None, list(overrides), env={"API_KEY": API_KEY, **env})


@pytest.mark.parametrize(
    "form",
    [
        API_KEY,
        quote(API_KEY),
        quote(API_KEY, safe=""),
        quote_plus(API_KEY),
        json.dumps(API_KEY)[1:-1],
        f"Bearer {API_KEY}",
    ],
    ids=["plain", "path-encoded", "component-encoded", "form-encoded", "json", "header"],
)
def test_the_api_key_is_redacted_in_every_form(form):
    clean = settings().redactor.redact(f"the API said: {form} is wrong")
    assert "KEY" not in clean and "ab12" not in clean and "***" in clean


def test_the_database_password_is_redacted_as_written_decoded_encoded_and_in_pieces():
    s = settings(DATABASE_URL="postgresql://u:Pg%40LEAKEDTAIL99@db.invalid/db?password=QueryPw4242")
    text = (
        'host name "LEAKEDTAIL99@db.invalid"; Pg@LEAKEDTAIL99; Pg%40LEAKEDTAIL99; "Pg@LEAKEDTAIL99"; '
        "QueryPw4242"
    )
    clean = s.redactor.redact(text)
    assert "LEAKEDTAIL99" not in clean and "QueryPw4242" not in clean
    assert "db.invalid" in clean  # the host is not a secret


def test_a_custom_source_auth_variable_is_redacted():
    s = settings("source.auth.type=bearer", "source.auth.token_env=EVENTS_TOKEN", EVENTS_TOKEN="tok-9f8e7d")
    assert s.redactor.redact("sent tok-9f8e7d and tok-9f8e7d%0A") == "sent *** and ***%0A"


def test_basic_auth_user_password_and_header_are_redacted():
    s = settings("source.auth.type=basic", API_USER="someone")
    header = base64.b64encode(f"someone:{API_KEY}".encode()).decode()
    clean = s.redactor.redact(f"Authorization: Basic {header}; user someone; key {quote(API_KEY, safe='')}")
    assert header not in clean and "someone" not in clean and "KEY" not in clean


def test_a_secret_of_three_characters_is_redacted_and_shorter_ones_are_not_searched_for():
    assert Redactor(["abc"]).redact("xabcx") == "x***x"
    assert Redactor(["ab", ""]).redact("a table of ab") == "a table of ab"


def test_any_url_password_is_masked_even_without_settings():
    text = "could not connect to postgresql://other:OtherPw77@h/d?sslmode=x&password=QueryPw4242"
    for clean in (Redactor().redact(text), redact(text, None)):
        assert "OtherPw77" not in clean and "QueryPw4242" not in clean and "postgresql://other:***@h" in clean


def test_the_redactor_is_built_once_per_settings_and_follows_a_replaced_key():
    s = settings()
    assert s.redactor is s.redactor
    assert redact(API_KEY, s) == "***"
    demo = dataclasses.replace(s, api_key=Secret("demo-key-123"))
    assert demo.redactor.redact("demo-key-123") == "***"


def test_longest_is_the_longest_form_of_a_secret():
    assert Redactor().longest == 0
    assert Redactor(["a/b/c"]).longest == len(quote("a/b/c", safe=""))
