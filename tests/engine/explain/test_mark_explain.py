"""engine.explain.mark_explain: the example file, each component, bad input named by path."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from engine.explain import ExplainInputError, explain_mark, render_text
from engine.math.mark_price import BasisEma, calc_basis_ema, calc_mark_price

EXAMPLE = Path(__file__).parents[3] / "examples" / "explain" / "mark.json"
S = 10**9


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text())
    return data


def test_example_shows_each_component_and_the_mark() -> None:
    result = explain_mark(load())
    json.dumps(result)
    samples = result["mid_samples"]
    assert [s["dt_s"] for s in samples] == ["3", None, "6"]  # the one-sided sample is skipped
    assert samples[1]["basis"] is None and "one side empty" in samples[1]["note"]
    assert result["components"] == {
        "index_plus_basis_ema": "64054.411486",
        "median_bid_ask_last": "64053",
        "external_weighted_median": "64056",
    }
    assert result["mark"] == "64054.411486" and result["replaced_by_index"] == []
    text = render_text(result)
    assert "mark = median(a, b, c) = 64054.411486" in text


def test_explain_runs_the_engine_functions() -> None:
    half_life = 103_972_077_083
    ema = BasisEma(4_500_000_000_000, 1_700_000_051 * S)
    ema, _ = calc_basis_ema(ema, 5 * 10**12, 1_700_000_054 * S, half_life)
    ema, _ = calc_basis_ema(ema, 2 * 10**12, 1_700_000_060 * S, half_life)
    external = [
        (64_056_000_000, 3),
        (64_054_500_000, 2),
        (64_057_000_000, 2),
        (64_060_000_000, 1),
        (64_049_000_000, 1),
    ]
    engine = calc_mark_price(
        64_050_000_000, ema.basis_pico, 64_051_000_000, 64_053_000_000, 64_120_000_000, external
    )
    assert explain_mark(load())["mark_micro"] == engine.mark_micro


def test_given_basis_ema_and_missing_inputs() -> None:
    doc = {"market": "ETH-PERP", "index": "3000", "basis_ema": "1.5", "best_bid": None, "best_ask": "3010"}
    result = explain_mark(doc)
    assert result["components"]["index_plus_basis_ema"] == "3001.5"
    assert result["components"]["median_bid_ask_last"] == "3000"  # median(index, 3010, index)
    assert result["replaced_by_index"] == ["best_bid", "last_trade", "external_mids"]
    assert result["mark"] == "3000"
    assert "replaced by the index" in render_text(result)
    bare = explain_mark({"index": "3000"})
    assert bare["mark"] == "3000" and "no basis EMA yet" in render_text(bare)


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda d: d.pop("index"), "index"),
        (lambda d: d.update(index="-1"), "index"),
        (lambda d: d.pop("half_life_s"), "half_life_s"),
        (lambda d: d.update(half_life_s="0"), "half_life_s"),
        (lambda d: d.update(basis_ema="1"), "basis_ema"),  # both given
        (lambda d: d["mid_samples"][2].pop("time"), "mid_samples[2].time"),
        (lambda d: d["mid_samples"][0].update(time="1700000050"), "mid_samples[0].time"),  # before previous
        (lambda d: d["mid_samples"][0].update(bid="64050"), "mid_samples[0].bid"),  # crossed
        (lambda d: d["mid_samples"][2].update(ask="x"), "mid_samples[2].ask"),
        (lambda d: d["previous_ema"].pop("basis"), "previous_ema.basis"),
        (lambda d: d.update(best_bid="64060"), "best_bid"),  # above best ask
        (lambda d: d["external_mids"][1].pop("mid"), "external_mids[1].mid"),
        (lambda d: d["external_mids"][1].update(weight=-1), "external_mids[1].weight"),
        (lambda d: [m.update(weight=0) for m in d["external_mids"]], "external_mids"),
    ],
)
def test_missing_or_absurd_fields_name_their_path(edit: Any, path: str) -> None:
    doc = copy.deepcopy(load())
    edit(doc)
    with pytest.raises(ExplainInputError) as err:
        explain_mark(doc)
    assert err.value.path == path
