"""Explainable numbers: the oracle index, the mark price and funding, step by step.

Each tool parses a JSON document in human units (:mod:`engine.explain.field_reader`), runs the
same pure functions the processes run (``engine.math``), and returns a JSON-ready dict with every
intermediate; ``render_text`` turns that dict into lines support can read to a user. No I/O and no
clock: the CLI (``hx oracle|mark|funding explain FILE.json [--json]``) reads the file and prints.
The formats are in ``docs/derivatives.md``; examples in ``examples/explain/``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.explain import funding_explain, mark_explain, oracle_explain
from engine.explain.field_reader import ExplainInputError
from engine.explain.funding_explain import explain_funding
from engine.explain.mark_explain import explain_mark
from engine.explain.oracle_explain import explain_oracle

render_oracle_text = oracle_explain.render_text
render_mark_text = mark_explain.render_text
render_funding_text = funding_explain.render_text

_RENDERERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "oracle": render_oracle_text,
    "mark": render_mark_text,
    "funding": render_funding_text,
}


def render_text(result: Mapping[str, Any]) -> str:
    """Text for any explain result (dispatches on ``result["tool"]``)."""
    return _RENDERERS[result["tool"]](result)


__all__ = [
    "ExplainInputError",
    "explain_funding",
    "explain_mark",
    "explain_oracle",
    "render_funding_text",
    "render_mark_text",
    "render_oracle_text",
    "render_text",
]
