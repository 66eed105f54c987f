"""The JSON files users hand the tools: every bad file is one line naming it, never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from hx.cli import main
from hx.json_file import MAX_NESTING, JsonFileError, load_json_file, nesting_depth

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n,:'),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\x'), inner, max_size=3)
    ),
    max_leaves=30,
)


def _depth(doc: Any) -> int:  # the specification: how deep the parsed document nests
    if isinstance(doc, list):
        return 1 + max((_depth(v) for v in doc), default=0)
    if isinstance(doc, dict):
        return 1 + max((_depth(v) for v in doc.values()), default=0)
    return 0


@given(_json, st.booleans())
def test_the_depth_is_the_documents_whatever_brackets_its_strings_hold(doc: Any, indent: bool) -> None:
    assert nesting_depth(json.dumps(doc, indent=1 if indent else None)) == _depth(doc)


@pytest.mark.parametrize("limit", [None, 200_000])  # as run, and with the recursion limit raised
def test_a_deep_file_is_refused_before_the_decoder_recurses(tmp_path: Path, limit: int | None) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    old = sys.getrecursionlimit()
    try:
        if limit:  # (json.loads then overflows the C stack: a segmentation fault, not an exception)
            sys.setrecursionlimit(limit)
        with pytest.raises(JsonFileError, match=r"deep\.json: .*nested too deeply \(100001 levels"):
            load_json_file(deep)
    finally:
        sys.setrecursionlimit(old)
    ok = tmp_path / "ok.json"
    ok.write_text("[" * MAX_NESTING + "]" * MAX_NESTING)
    assert nesting_depth(ok.read_text()) == MAX_NESTING
    load_json_file(ok)  # the limit itself is allowed


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\xff\xfe{", "not UTF-8 text"),
        (b"{nope", "not valid JSON"),
        (b"1" * 5_000, "not valid JSON: Exceeds the limit"),  # (int() refuses > 4,300 digits)
        (None, "cannot read it"),  # a directory
    ],
)
def test_unreadable_files_are_one_line_errors(tmp_path: Path, content: bytes | None, why: str) -> None:
    path = tmp_path / "f.json"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(JsonFileError, match=why):
        load_json_file(path)
    with pytest.raises(JsonFileError, match="no such file"):
        load_json_file(tmp_path / "absent.json")


@pytest.mark.parametrize(
    "tool", [["oracle", "explain"], ["mark", "explain"], ["funding", "explain"], ["risk", "what-if"]]
)
def test_every_tool_reading_a_users_json_says_why_it_cannot(tmp_path: Path, tool: list[str]) -> None:
    runner = CliRunner()
    for name, content in (("deep.json", b"[" * 10_000 + b"]" * 10_000), ("bin.json", b"\xff{")):
        path = tmp_path / name
        path.write_bytes(content)
        result = runner.invoke(main, [*tool, str(path)])
        assert result.exit_code == 1, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)  # (not an error raised)
        assert str(path) in result.output and (
            "nested too deeply" in result.output or "UTF-8" in result.output
        )
        assert "Traceback" not in result.output
