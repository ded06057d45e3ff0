"""The docs cite only what exists: every relative markdown link and every backticked repository file path
in README.md and docs/*.md names a file or folder of the checkout.

A backticked path counts when it starts with a folder of the checkout (``lib/eventpipe/...py``,
``tests/...py``, ``params/...yaml``, ``docs/...md``); a bare test file name (``test_client.py::test_x``)
must be a file somewhere under tests/; a top-level document named in prose (``DESIGN.md``,
``CONTRIBUTING.md``) must be at the root of the checkout. Globs and placeholders (``*``, ``<run_id>``, ``…``) are patterns,
not paths, and are skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# the folders of the checkout (reports/, runs/ and data/ are made by runs: docs name files in them freely)
TOP_FOLDERS = ("bench", "dags", "docs", "lib", "notebooks", "params", "tests")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`\s]+)`")
_ROOT_DOC = re.compile(r"(?<![\w/.-])([A-Z][A-Z_]+\.md)\b")
_PATTERN = re.compile(r"[*<>{}…]|\.\.\.")
_TEST_FILES = {p.name: p for p in (ROOT / "tests").rglob("test_*.py")}


def cited_files(doc: Path) -> list[Path]:
    """What ``doc`` cites as a file: its relative links, and its backticked paths in the repository."""
    text = doc.read_text(encoding="utf-8")
    cited = []
    for target in _LINK.findall(text):
        if not re.match(r"[a-z][a-z0-9+.-]*:|#", target):  # not a URL, not an anchor in the same page
            cited.append(doc.parent / target.split("#")[0])
    for code in _CODE.findall(text):
        path = code.split("::")[0]
        if _PATTERN.search(path):
            continue
        if "/" in path and path.split("/")[0] in TOP_FOLDERS:
            cited.append(ROOT / path)
        elif re.fullmatch(r"test_\w+\.py", path):
            cited.append(_TEST_FILES.get(path, ROOT / "tests" / path))
    cited += [ROOT / name for name in _ROOT_DOC.findall(text)]
    return cited


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_file_a_doc_cites_exists(doc):
    missing = [str(p.relative_to(ROOT)) for p in cited_files(doc) if not p.exists()]
    assert not missing, f"{doc.relative_to(ROOT)} cites files that are not in the repository: {missing}"


def test_the_check_finds_a_missing_file(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("See [the guide](nowhere.md), `lib/eventpipe/gone.py`, `test_gone.py::t` and GONE.md.\n")
    assert cited_files(doc) == [
        tmp_path / "nowhere.md",
        ROOT / "lib/eventpipe/gone.py",
        ROOT / "tests/test_gone.py",
        ROOT / "GONE.md",
    ]
