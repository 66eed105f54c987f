"""Scenario files: the built-in ones load; nonsense is refused naming the row and field."""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from perf.stress.scenario import ScenarioError, builtin_names, load_scenario, parse_scenario

GOOD = {
    "assets": {
        "BTC-PERP": {"kind": "perp", "start_price": 60000},
        "YES": {"kind": "prediction", "start_price": 0.5},
    },
    "path": [
        {"t_s": 10, "prices": {"BTC-PERP": 60000}},
        {"t_s": 20, "prices": {"BTC-PERP": 30000, "YES": 1}, "note": "halved", "t_utc": "2020-03-12T02:00Z"},
    ],
    "notes_for_humans": "anything",
}


def test_every_builtin_loads() -> None:
    names = builtin_names()
    assert {"crash", "squeeze", "equity-gap", "resolution", "oracle-attack", "cascade", "depeg"} <= set(names)
    assert {"luna-2022", "jelly-2025", "oct10-2025"} <= set(names)  # incidents, compressed
    for name in names:
        assert load_scenario(name).path


def test_interpolation_is_log_linear_and_linear_for_predictions() -> None:
    s = parse_scenario(GOOD)
    mid = s.prices_at(15)
    assert abs(float(mid["BTC-PERP"]) - 60000 / 2**0.5) < 1e-6  # geometric midpoint
    assert float(s.prices_at(15)["YES"]) == pytest.approx(0.5 + 0.5 * 15 / 20)  # from 0.5 at t=0 to 1 at 20
    assert s.prices_at(99)["BTC-PERP"] == 30000  # after the last row: the last price
    assert set(s.ignored) == {"notes_for_humans", "path[1].note", "path[1].t_utc"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("path"), "missing required key 'path'"),
        (lambda d: d.update(paths=d.pop("path")), "missing required key 'path' (found 'paths'"),
        (
            lambda d: d["assets"]["BTC-PERP"].update(kind="future"),
            "assets.BTC-PERP.kind: 'future' is not one of",
        ),
        (
            lambda d: d["assets"]["BTC-PERP"].pop("start_price"),
            "assets.BTC-PERP: missing required key 'start_price'",
        ),
        (
            lambda d: d["path"][1]["prices"].update({"BTC-PERP": "abc"}),
            "path[1].prices.BTC-PERP: must be a number",
        ),
        (
            lambda d: d["path"][1]["prices"].update({"BTC-PERP": -5}),
            "path[1].prices.BTC-PERP: a price must be > 0",
        ),
        (
            lambda d: d["path"][1]["prices"].update({"YES": 1.5}),
            "path[1].prices.YES: a prediction market's price",
        ),
        (lambda d: d["path"][1].update(t_s=5), "path[1].t_s: time goes backwards"),
        (lambda d: d["path"][0].update(tss=1), "path[0]: unknown key(s) ['tss']"),
        (lambda d: d["path"][0]["prices"].update(ETH=1), "path[0].prices.ETH: not an asset"),
        (
            lambda d: d.update(resolution={"market": "BTC-PERP", "outcome": "YES", "t_s": 1}),
            "not a prediction asset",
        ),
        (lambda d: d.update(sessions={"BTC-PERP": [[1, 2]]}), "sessions.BTC-PERP: must be an object"),
        (
            lambda d: d.update(sessions={"BTC-PERP": {"closed": [[5, 2]]}}),
            "sessions.BTC-PERP.closed[0]: to_s must be after from_s",
        ),
        (lambda d: d.update(sessions={"ETH": {"closed": []}}), "sessions.ETH: not a market of the scenario"),
        (lambda d: d.update(oracle={"ETH": {"sources": 3}}), "oracle.ETH: not an asset of the scenario"),
        (
            lambda d: d.update(oracle={"BTC-PERP": {"sources": 3, "manipulated": {"mode": "wobble"}}}),
            "oracle.BTC-PERP.manipulated.mode: 'wobble' is not one of",
        ),
        (
            lambda d: d.update(oracle={"BTC-PERP": {"sources": 3, "manipulated": {"source": 3}}}),
            "oracle.BTC-PERP.manipulated.source: must be an integer in [0, 2]",
        ),
        (lambda d: d.update(book={"levels": 2.5}), "book.levels: must be an integer in [1, 100]"),
        (
            lambda d: d.update(book={"mark_follows_book": "yes"}),
            "book.mark_follows_book: must be true or false",
        ),
        (lambda d: d.update(funding={"interval_s": 0}), "funding.interval_s: must be in [0.001, inf]"),
        (lambda d: d.update(population={"short_bias": 2}), "population.short_bias: must be in [0, 1]"),
        (lambda d: d.update(pathh=d.pop("path")), "missing required key 'path' (found 'pathh'"),
        (
            lambda d: d.update(
                assets={"USDT": {"kind": "collateral", "start_price": 1}}, path=[{"t_s": 1, "prices": {}}]
            ),
            "assets: no market (every asset is collateral)",
        ),
        (
            lambda d: d["assets"].update(USDC={"kind": "spot", "start_price": 1}),
            "assets.USDC: USDC is the settlement asset every market is quoted in",
        ),
        (
            lambda d: d.update(resolution={"market": "YES", "outcome": "NO", "t_s": 500}),
            "resolution.t_s: must be in [0, 20]",
        ),
        (
            lambda d: d["assets"].update({"X" * 29: {"kind": "perp", "start_price": 1}}),
            "a symbol has 1 to 28",
        ),
        (
            lambda d: d["assets"]["YES"].update(margin=0.5),
            "assets.YES.margin: a prediction market is margined",
        ),
    ],
)
def test_nonsense_is_refused_naming_the_row_and_field(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    doc = copy.deepcopy(GOOD)
    edit(doc)
    with pytest.raises(ScenarioError, match=re.escape(message)):
        parse_scenario(doc)


def test_what_the_run_does_not_use_is_listed_as_documentation() -> None:
    """``description`` and an asset's ``leverage`` are used by nothing: listed, not dropped silently."""
    doc = copy.deepcopy(GOOD)
    doc["description"] = "why"
    doc["assets"]["BTC-PERP"]["leverage"] = 10
    assert {"description", "assets.BTC-PERP.leverage"} <= set(parse_scenario(doc).ignored)


def test_a_row_at_zero_is_the_price_at_zero() -> None:
    doc = copy.deepcopy(GOOD)
    doc["path"].insert(0, {"t_s": 0, "prices": {"BTC-PERP": 59000}})
    s = parse_scenario(doc)
    assert s.prices_at(0)["BTC-PERP"] == 59000 and s.prices_at(0)["YES"] == Decimal("0.5")


def test_unknown_keys_inside_the_sections_are_listed_as_documentation() -> None:
    doc = copy.deepcopy(GOOD)
    doc.update(book={"depth_usd": 1e6, "depht_usd": 5}, oracle={"BTC-PERP": {"sources": 5, "src": "x"}})
    assert {"book.depht_usd", "oracle.BTC-PERP.src"} <= set(parse_scenario(doc).ignored)


def test_a_file_that_is_not_json_or_not_there(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        load_scenario(str(bad))
    with pytest.raises(ScenarioError, match="built-in ones are"):
        load_scenario("no-such-scenario")
    with pytest.raises(ScenarioError, match="cannot read it: Is a directory"):
        load_scenario(str(tmp_path))  # (an IsADirectoryError traceback)
    good = tmp_path / "mine.json"
    good.write_text(json.dumps(GOOD))
    assert load_scenario(str(good)).name == "mine"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["path"][1]["prices"].update({"BTC-PERP": 1e30}),
            "path[1].prices.BTC-PERP: a price must be at most 1,000,000,000 USDC",
        ),
        (
            lambda d: d["assets"]["BTC-PERP"].update(start_price=10**12),
            "assets.BTC-PERP.start_price: a price must be at most 1,000,000,000 USDC",
        ),
        (lambda d: d["assets"]["BTC-PERP"].update(lot=1e30), "assets.BTC-PERP.lot: must be at most"),
        (lambda d: d["assets"]["BTC-PERP"].update(tick=1e20), "assets.BTC-PERP.tick: must be at most"),
        (lambda d: d.update(book={"depth_usd": 1e30}), "book.depth_usd: must be in [0.01, 100000000000]"),
        (
            lambda d: d["assets"].update({"B\n-PERP": {"kind": "perp", "start_price": 1}}),
            "assets: 'B\\n-PERP': a symbol has 1 to 28",
        ),
    ],
)
def test_values_the_engine_cannot_hold_are_refused_naming_the_field(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    """They passed the checks and the run died later: a price of 1e30 or a lot of 1e30 units with
    the shard's config error (a traceback), a depth of 1e30 USDC with struct.error encoding the
    makers' orders, a price of 1e12 ran and liquidated nothing (the oracle's index stops at 1e9)."""
    doc = copy.deepcopy(GOOD)
    edit(doc)
    with pytest.raises(ScenarioError, match=re.escape(message)):
        parse_scenario(doc)


def test_json_nested_too_deeply_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"assets": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ScenarioError, match="nested too deeply"):
        load_scenario(str(deep))


def _price_by_walking_every_row(s, symbol: str, t: Decimal) -> Decimal:  # type: ignore[no-untyped-def]
    """The interpolation as it was written first (every row, every call): the specification."""
    import math

    points = [(Decimal(0), s.assets[symbol].start_price)]
    points += [(row.t_s, row.prices[symbol]) for row in s.path if symbol in row.prices]
    if t <= 0:
        return [p for at, p in points if at == 0][-1]
    for (t0, p0), (t1, p1) in zip(points, points[1:], strict=False):
        if t0 <= t <= t1:
            if t1 == t0:
                return p1
            f = (t - t0) / (t1 - t0)
            if s.assets[symbol].kind == "prediction" or p0 == 0 or p1 == 0:
                return p0 + (p1 - p0) * f
            return Decimal(
                math.exp(math.log(float(p0)) + (math.log(float(p1)) - math.log(float(p0))) * float(f))
            )
    return points[-1][1]


def test_a_long_path_interpolates_as_the_row_walk_did_in_time_independent_of_its_length() -> None:
    """A tape replayed at one row a second (a day is 86,400 rows) walked every row for every
    symbol at every step: ~100 ms a step at 100,000 rows, hours for the run. The same prices,
    from each symbol's own rows taken once."""
    import random
    import time

    rng = random.Random(7)
    rows, t = [], 0
    for _ in range(400):
        t += rng.choice([1, 1, 2, 5])
        prices = {}
        if rng.random() < 0.7:
            prices["BTC-PERP"] = rng.uniform(1000, 90000)
        if rng.random() < 0.4:
            prices["YES"] = rng.choice([0, 0.3, 1])
        rows.append({"t_s": t, "prices": prices})
    rows[0]["t_s"] = 0
    s = parse_scenario({"assets": GOOD["assets"], "path": rows})
    for when in [0, 0.5, 1, 3.25, t / 2, t - 0.1, t, t + 10] + [rng.uniform(0, t) for _ in range(300)]:
        for symbol in ("BTC-PERP", "YES"):
            assert s.price_of(symbol, when) == _price_by_walking_every_row(s, symbol, Decimal(repr(when)))
    long = parse_scenario(
        {
            "assets": GOOD["assets"],
            "path": [{"t_s": i + 1, "prices": {"BTC-PERP": 60000 + i % 7}} for i in range(100_000)],
        }
    )
    long.prices_at(1.0)  # (takes the rows once)
    start = time.perf_counter()
    for k in range(200):
        long.prices_at(50_000.5 + k)
    assert time.perf_counter() - start < 2.0  # ~20 s walking the rows, ~10 ms now


def test_a_key_given_twice_is_refused_naming_it(tmp_path: Path) -> None:
    """JSON keeps the last of two equal keys: a second "book" silently replaced the first."""
    twice = tmp_path / "twice.json"
    text = json.dumps(GOOD)
    twice.write_text(text[:-1] + ', "book": {"depth_usd": 5}, "book": {"levels": 3}}')
    with pytest.raises(ScenarioError, match="key 'book' is given twice"):
        load_scenario(str(twice))
