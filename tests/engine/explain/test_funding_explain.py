"""engine.explain.funding_explain: the example file, rate steps, payments, the zero-sum check."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from engine.explain import ExplainInputError, explain_funding, render_text
from engine.math.funding import FundingConfig, calc_funding_payments, calc_funding_rate

EXAMPLE = Path(__file__).parents[3] / "examples" / "explain" / "funding.json"


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text())
    return data


def test_example_explains_rate_and_payments() -> None:
    result = explain_funding(load())
    json.dumps(result)
    assert [s["premium"] for s in result["samples"]] == [
        "0.0156128%",
        "0.0366906%",
        "0.0259799%",
        "-0.0078062%",
    ]
    assert result["samples"][2]["impact_bid"] == "64068.640686"  # walked from the levels
    assert result["mean_premium"] == "0.0176192%"
    assert result["rate_period"] == "0.01%" and result["rate_interval"] == "0.00125%"
    assert result["cap"]["arithmetic"] == "0.75 x 3% = 2.25%" and not result["capped"]
    settlement = result["settlement"]
    amounts = {p["account"]: p["amount_micro"] for p in settlement["payments"]}
    assert amounts == {"alice": 1_201_088, "bob": -800_726, "carol": -266_909, "dave": 1, "erin": -133_454}
    assert sum(amounts.values()) == 0 and settlement["zero_sum"]["ok"]
    text = render_text(result)
    assert "alice" in text and "sum 0 -> zero: OK" in text


def test_explain_runs_the_engine_functions() -> None:
    rate = calc_funding_rate([156_128, 366_906, 259_799, -78_062], FundingConfig(cap_ppb=22_500_000))
    positions = [(0, 150_000_000), (1, -100_000_000), (2, -33_333_333), (3, 1), (4, -16_666_668)]
    payments = calc_funding_payments(positions, 64_058_000_000, rate.rate_interval_ppb)
    result = explain_funding(load())
    assert result["rate_interval_ppb"] == rate.rate_interval_ppb
    assert [p["amount_micro"] for p in result["settlement"]["payments"]] == [p.amount_micro for p in payments]


def test_premium_samples_absolute_cap_and_capping() -> None:
    doc = {
        "market": "X-PERP",
        "premium_samples": ["3%", "0.05"],
        "cap": "2%",
        "payment_interval_s": 3600,
        "mark": "10",
        "positions": [{"account": "a", "size": "-2"}, {"account": "b", "size": "2"}],
    }
    result = explain_funding(doc)
    assert result["mean_premium"] == "4%" and result["rate_uncapped"] == "3.95%"
    assert result["capped"] and result["rate_period"] == "2%" and result["rate_interval"] == "0.25%"
    payments = {p["account"]: (p["direction"], p["amount"]) for p in result["settlement"]["payments"]}
    assert payments == {"a": ("receives", "0.05"), "b": ("pays", "0.05")}  # longs pay
    assert "(capped)" in render_text(result)
    no_positions = explain_funding({"premium_samples": [], "cap": "1%"})
    assert no_positions["settlement"] is None and no_positions["rate_period"] == "0.01%"


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda d: d.pop("cap"), "cap"),
        (lambda d: d.update(cap="-1%"), "cap"),
        (lambda d: d["cap"].pop("maintenance"), "cap.maintenance"),
        (lambda d: d["cap"].update(multiplier="1000"), "cap.multiplier"),
        (lambda d: d.update(interest="250%"), "interest"),
        (lambda d: d.update(clamp="-0.05%"), "clamp"),
        (lambda d: d.update(weighting="cubic"), "weighting"),
        (lambda d: d.update(payment_interval_s="0"), "payment_interval_s"),
        (lambda d: d.update(payment_interval_s="86400"), "payment_interval_s"),
        (lambda d: d.pop("impact_samples"), "premium_samples"),
        (lambda d: d.update(premium_samples=["0.01%"]), "premium_samples"),
        (lambda d: d.pop("impact_notional"), "impact_notional"),
        (lambda d: d["impact_samples"][1].pop("index"), "impact_samples[1].index"),
        (lambda d: d["impact_samples"][0].update(impact_bid="0"), "impact_samples[0].impact_bid"),
        (lambda d: d["impact_samples"][2]["bids"][1].__setitem__(1, "-0.5"), "impact_samples[2].bids[1][1]"),
        (lambda d: d["impact_samples"][2]["asks"].append(["1"]), "impact_samples[2].asks[2]"),
        (lambda d: d.pop("mark"), "mark"),
        (lambda d: d["positions"][3].pop("size"), "positions[3].size"),
        (lambda d: d["positions"][0].update(size="1.123456789"), "positions[0].size"),
        (lambda d: d["positions"][0].update(size="2"), "positions"),  # not netting to zero
    ],
)
def test_missing_or_absurd_fields_name_their_path(edit: Any, path: str) -> None:
    doc = copy.deepcopy(load())
    edit(doc)
    with pytest.raises(ExplainInputError) as err:
        explain_funding(doc)
    assert err.value.path == path
