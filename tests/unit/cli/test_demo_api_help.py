"""``demo-api --help`` is complete: every style of the registry, every fault, and a help text for every option."""

from __future__ import annotations

import argparse

import pytest

from eventpipe.cli.main import build_parser
from eventpipe.demo.faults import FAULT_KINDS
from eventpipe.demo.styles import ENDPOINTS, STYLES


def _demo_api() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["demo-api"]


def test_help_lists_every_style_and_fault(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo-api", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert len(STYLES) >= 7
    for style in STYLES:
        assert f"{style} ({ENDPOINTS[style]})" in text
    for fault in FAULT_KINDS:
        assert fault in text


def test_every_option_has_help():
    missing = [a.option_strings for a in _demo_api()._actions if not a.help or a.help == argparse.SUPPRESS]
    assert missing == []


def test_a_style_added_to_the_registry_shows_by_itself(monkeypatch):
    import eventpipe.demo.styles as styles

    monkeypatch.setattr(styles, "STYLES", (*STYLES, "brandnew"))
    monkeypatch.setitem(styles.ENDPOINTS, "brandnew", "/new/events")
    assert "brandnew (/new/events)" in " ".join(_demo_api().format_help().split())
    assert build_parser().parse_args(["demo-api", "--style", "brandnew"]).style == "brandnew"


def test_an_unknown_style_is_one_line_naming_the_styles(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["demo-api", "--style", "nope"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.splitlines()) == 1 and all(s in err for s in STYLES)
