"""docs/derivatives.md shows each example file and its text output as the tools produce them now."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.explain import explain_funding, explain_mark, explain_oracle, render_text

ROOT = Path(__file__).parents[3]
TOOLS = {"oracle": explain_oracle, "mark": explain_mark, "funding": explain_funding}


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_doc_shows_the_example_and_its_current_output(name: str) -> None:
    doc = (ROOT / "docs" / "derivatives.md").read_text()
    example = (ROOT / "examples" / "explain" / f"{name}.json").read_text()
    assert example.rstrip() in doc, f"docs/derivatives.md: the {name} example file changed"
    output = render_text(TOOLS[name](json.loads(example))).rstrip()
    assert output in doc, f"docs/derivatives.md: the {name} explain output changed"
