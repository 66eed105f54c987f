"""engine.explain.oracle_explain: the example file, every step shown, bad input named by path."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from engine.explain import ExplainInputError, explain_oracle, render_text
from engine.math.oracle_index import IndexConfig, IndexState, SourceQuote, calc_index

EXAMPLE = Path(__file__).parents[3] / "examples" / "explain" / "oracle.json"


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text())
    return data


def test_example_explains_every_source() -> None:
    result = explain_oracle(load())
    json.dumps(result)  # JSON-ready
    by_id = {s["id"]: s for s in result["sources"]}
    assert by_id["binance"]["used"] and by_id["chainlink"]["used"]  # 48 s old, its own 3600 s timeout
    assert by_id["coinbase"]["reason"] == "STALE" and "age 19 s > staleness 10 s" in by_id["coinbase"]["why"]
    assert by_id["kraken"]["reason"] == "DEVIATION" and "band 1%" in by_id["kraken"]["why"]
    assert by_id["gate"]["reason"] == "UNPARSEABLE"
    assert result["fresh_median"] == "64052.1"
    assert result["band"] == {"low": "63411.579", "high": "64692.621"}
    assert result["status"] == "OK" and result["index"] == "64050.8"
    assert result["rate_limit"]["max_move"] == "96" and not result["rate_limit"]["applied"]
    text = render_text(result)
    assert "kraken" in text and "DEVIATION" in text and "index: 64050.8 (status OK)" in text


def test_explain_runs_the_engine_function() -> None:
    """The tool is a translation, not a second implementation: same numbers as calc_index."""
    quotes = [
        SourceQuote("binance", 64_052_100_000, 1_700_000_059_800_000_000),
        SourceQuote("okx", 64_049_500_000, 1_700_000_059_100_000_000),
        SourceQuote("bybit", 64_055_000_000, 1_700_000_058_700_000_000),
        SourceQuote("chainlink", 64_047_250_000, 1_700_000_012_000_000_000),
    ]
    config = IndexConfig(
        staleness_ns=10 * 10**9,
        band_ppm=10_000,
        min_sources=3,
        max_move_ppm_per_s=500,
        staleness_ns_by_source={"chainlink": 3600 * 10**9},
    )
    engine = calc_index(
        quotes, 1_700_000_060 * 10**9, config, IndexState(64_000 * 10**6, 1_700_000_057 * 10**9)
    )
    assert explain_oracle(load())["index_micro"] == engine.index_micro


def test_rate_limit_and_stale_status() -> None:
    doc = load()
    doc["previous"] = {"index": "63000", "time": "1700000059"}
    limited = explain_oracle(doc)
    assert limited["rate_limit"]["applied"] and limited["index"] == "63031.5"  # 63000 + 0.05% x 1 s
    doc["sources"] = doc["sources"][:2]
    stale = explain_oracle(doc)
    assert stale["status"] == "STALE" and stale["index"] == "63000"
    assert "the previous index is held: 63000" in render_text(stale)


def test_garbage_from_a_source_is_a_reason_not_an_error() -> None:
    doc = load()
    doc["sources"] += [
        {"id": "x1", "price": -5, "time": "1700000059"},
        {"id": "x2", "price": "64050", "time": "yesterday"},
        {"id": "x3", "price": "64050", "time": "1700000099"},
        {"id": "x4", "price": None if False else "inf", "time": "1700000059"},
    ]
    reasons = {s["id"]: s["reason"] for s in explain_oracle(doc)["sources"]}
    assert reasons["x1"] == "NON_POSITIVE"
    assert reasons["x2"] == "BAD_TIMESTAMP"
    assert reasons["x3"] == "FUTURE"
    assert reasons["x4"] == "UNPARSEABLE"


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda d: d.pop("now"), "now"),
        (lambda d: d.update(now="-5"), "now"),
        (lambda d: d.pop("config"), "config"),
        (lambda d: d["config"].pop("band"), "config.band"),
        (lambda d: d["config"].update(band="250%"), "config.band"),
        (lambda d: d["config"].update(min_sources=0), "config.min_sources"),
        (lambda d: d["config"].update(staleness_s="0"), "config.staleness_s"),
        (
            lambda d: d["config"]["staleness_s_by_source"].update(chainlink="-1"),
            "config.staleness_s_by_source.chainlink",
        ),
        (lambda d: d["previous"].update(index="0"), "previous.index"),
        (lambda d: d.update(sources=[]), "sources"),
        (lambda d: d["sources"][2].pop("price"), "sources[2].price"),
        (lambda d: d["sources"][3].pop("time"), "sources[3].time"),
        (lambda d: d["sources"][1].update(id=7), "sources[1].id"),
        (lambda d: d["sources"].append("binance"), "sources[7]"),
    ],
)
def test_missing_or_absurd_fields_name_their_path(edit: Any, path: str) -> None:
    doc = copy.deepcopy(load())
    edit(doc)
    with pytest.raises(ExplainInputError) as err:
        explain_oracle(doc)
    assert err.value.path == path
