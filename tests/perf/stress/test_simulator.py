"""hx stress through the real processes: a crash liquidates, every invariant holds, bad input fails early."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.types.enums import PriceStatus
from hx.cli import main
from perf.stress.exchange_setup import MICRO
from perf.stress.scenario import load_scenario, parse_scenario
from perf.stress.simulator import SimOracle, Simulator, step_times


def test_a_crash_liquidates_and_every_invariant_holds(tmp_path: Path) -> None:
    sim = Simulator(load_scenario("crash"), accounts=150, seed=3, step_s=3.0)
    report = sim.run(calm_s=3)
    assert report["liquidations"] > 0 and report["liquidation_orders"] + report["takeovers"] > 0
    assert report["invariants"] == {
        "book_never_crossed": True,
        "liquidations_within_bankruptcy_price": True,
        "conservation": True,
        "no_uncovered_negative_equity": True,
        "replay_identical": True,
    }
    assert report["breach_to_order_p99_ms"] is not None and report["throughput_ratio"] > 0
    assert len(report["insurance_fund_usdc"]) == report["steps"]


def test_both_sides_open_and_a_squeeze_of_a_tiny_price_liquidates_the_shorts(tmp_path: Path) -> None:
    """The population's longs and shorts both hold their positions (the seeders' resting orders at
    the start price must not cross each other first), and a JELLY-like squeeze of a $0.0095 perp
    (+426%) liquidates the shorts."""
    doc = {
        "assets": {"JELLY-PERP": {"kind": "perp", "start_price": 0.0095}},
        "path": [{"t_s": 10, "prices": {"JELLY-PERP": 0.0095}}, {"t_s": 40, "prices": {"JELLY-PERP": 0.05}}],
    }
    path = tmp_path / "jelly.json"
    path.write_text(json.dumps(doc))
    sim = Simulator(load_scenario(str(path)), accounts=80, seed=5, step_s=2.0)
    report = sim.run(calm_s=2)
    sizes = {a: size for (a, _m), size in sim.tally.positions.items()}  # POSITION events seen
    for kind in ("long", "short"):
        accounts = [a for a, k in sim.pop.kinds.items() if k == kind]
        assert accounts and all(a in sizes for a in accounts), f"a {kind} account opened nothing"
    assert report["liquidations"] > 0 and all(report["invariants"].values()), report


def test_funding_is_paid_each_simulated_interval_and_the_mark_can_follow_the_book(tmp_path: Path) -> None:
    """A perp 0.5% over its listed underlying: each 10 simulated seconds longs pay shorts the
    period's rate (mean premium + clamp(interest - premium)) pro rata; the marks come from the
    oracle's mark formula over the live book. Money stays conserved (the offline check)."""
    doc = {
        "assets": {
            "BTC": {"kind": "collateral", "start_price": 60000},
            "BTC-PERP": {"kind": "perp", "start_price": 60300},
        },
        "path": [{"t_s": 30, "prices": {"BTC": 60000, "BTC-PERP": 60300}}],
        "funding": {"interval_s": 10, "period_s": 40},
        "book": {"mark_follows_book": True},
    }
    path = tmp_path / "premium.json"
    path.write_text(json.dumps(doc))
    report = Simulator(load_scenario(str(path)), accounts=60, seed=2).run(calm_s=1)
    assert [f["t_s"] for f in report["funding"]] == [10.0, 20.0, 30.0]
    # ~0.5% premium - 0.05% clamp, a quarter of it per interval: ~0.1125% (the oracle's noise aside)
    assert all(1_000_000 < f["rate_ppb"] < 1_250_000 for f in report["funding"]), report["funding"]
    assert report["funding_payments"] > 0 and report["funding_paid_usdc"] > 0
    assert all(report["invariants"].values()), report["invariants"]


def test_the_cli_refuses_a_bad_scenario_before_starting_anything(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"assets": {"X": {"kind": "perp", "start_price": 1}}, "path": [{"t_s": 1}]}))
    result = CliRunner().invoke(main, ["stress", "--scenario", str(bad), "--json"])
    assert result.exit_code == 1 and "path[0]: missing required key 'prices'" in result.output


def test_the_cli_runs_a_builtin_with_a_plot(tmp_path: Path) -> None:
    """... with the driver and risk on CPUs of their own (``--pin``, the default), and this process's
    own CPUs given back after."""
    out = tmp_path / "run.png"
    cpus = os.sched_getaffinity(0)
    result = CliRunner().invoke(
        main,
        [
            "stress",
            "--scenario",
            "equity-gap",
            "--accounts",
            "60",
            "--step-s",
            "5",
            "--calm-s",
            "2",
            "--json",
            "--plot",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert all(report["invariants"].values()) and out.stat().st_size > 10_000
    assert os.sched_getaffinity(0) == cpus
    if len(cpus) >= 2:
        first = min(cpus)
        assert report["placement"] == {
            "pinned": True,
            "driver_cpus": [first],
            "risk_cpus": sorted(cpus - {first}),
            "shards": "unpinned",
        }
    else:
        assert report["placement"] == {"pinned": False}


def test_the_fund_series_is_its_usdc_after_each_step() -> None:
    """``insurance_fund_usdc`` is the fund's USDC after each step: its unwind's fills and the
    liquidation fees move it between LIQUIDATION events, so the series must end where the fund's
    state ends (an equity gap: the fund takes shares over, then sells them back)."""
    report = Simulator(load_scenario("equity-gap"), accounts=150, seed=1, step_s=3.0).run(calm_s=1)
    assert report["takeovers"] > 0
    assert report["insurance_fund_usdc"][-1] == report["insurance_fund_end"]["usdc"]


def test_a_resolution_settles_what_the_population_holds(tmp_path: Path) -> None:
    """A market trading at 0.9 resolves NO: the population's YES longs and shorts hold shares
    (sized to the pre-trade bound, max(p, 1 - p) per share) and the resolution settles them."""
    doc = {
        "assets": {"ELECTION-YES": {"kind": "prediction", "start_price": 0.9}},
        "path": [{"t_s": 6, "prices": {"ELECTION-YES": 0.91}}],
        "resolution": {"market": "ELECTION-YES", "outcome": "NO", "t_s": 4},
    }
    path = tmp_path / "no.json"
    path.write_text(json.dumps(doc))
    report = Simulator(load_scenario(str(path)), accounts=40, seed=1).run(calm_s=1)
    assert report["resolution_settled_accounts"] > 30, report["resolution_settled_accounts"]
    assert all(report["invariants"].values()), report["invariants"]


def test_every_row_and_the_end_of_the_path_is_a_step() -> None:
    """A gap's bottom between two grid points and a path's end off the grid are still shown to
    the exchange (with ``--step-s 60`` a path ending at 90 s used to stop at 60 s)."""
    doc = {
        "assets": {"BTC-PERP": {"kind": "perp", "start_price": 60000}},
        "path": [
            {"t_s": 60, "prices": {"BTC-PERP": 60000}},
            {"t_s": 61, "prices": {"BTC-PERP": 40000}},
            {"t_s": 90, "prices": {"BTC-PERP": 55000}},
        ],
    }
    assert step_times(parse_scenario(doc), 60) == [0, 60, 61, 90]
    assert step_times(parse_scenario(doc), 0.1)[-1] == 90  # (90 / 0.1 is 899.999...)


def test_a_path_too_long_for_its_step_is_refused_before_anything_starts(tmp_path: Path) -> None:
    path = tmp_path / "long.json"
    path.write_text(
        json.dumps(
            {"assets": {"X-PERP": {"kind": "perp", "start_price": 1}}, "path": [{"t_s": 1e12, "prices": {}}]}
        )
    )
    result = CliRunner().invoke(main, ["stress", "--scenario", str(path), "--json"])
    assert result.exit_code == 1 and "give a larger --step-s" in result.output, result.output


def _oracle(manipulated: dict) -> SimOracle:  # type: ignore[type-arg]
    doc = {
        "assets": {"BTC-PERP": {"kind": "perp", "start_price": 60000}},
        "path": [{"t_s": 600, "prices": {"BTC-PERP": 30000}}],
        "oracle": {"BTC-PERP": {"sources": 1, "manipulated": manipulated}},
    }
    return SimOracle(parse_scenario(doc), seed=1)


def test_a_frozen_source_holds_the_price_it_had_whatever_the_step() -> None:
    """One source (an index of its own), frozen from 120 s: at 60 s steps it shows the path's
    price at 120 s (counted in steps, it showed the start price; at 0.01 s steps it followed)."""
    scenario_price = _oracle({}).scenario.price_of("BTC-PERP", 120)
    for step in (60.0, 0.5):
        oracle = _oracle({"mode": "freeze", "from_s": 120})
        t, shown = 0.0, []
        while t <= 300:
            index, status = oracle.index("BTC-PERP", t, oracle.scenario.price_of("BTC-PERP", t))
            assert status == PriceStatus.OK
            shown.append((t, index))
            t += step
        assert all(index == int(scenario_price * MICRO) for at, index in shown if at >= 120), (step, shown)


def test_a_token_at_a_millionth_of_a_dollar_trades_in_lots_of_a_million(tmp_path: Path) -> None:
    """PEPE at $0.000001 falling 60%: on the micro-USDC grid the whole path was one tick and a
    position overflowed int64 atoms (every opening order refused, nothing liquidated); traded
    as 1,000,000 PEPE at $1 its longs are liquidated like any others."""
    doc = {
        "assets": {"PEPE-PERP": {"kind": "perp", "start_price": 0.000001}},
        "path": [
            {"t_s": 5, "prices": {"PEPE-PERP": 0.000001}},
            {"t_s": 25, "prices": {"PEPE-PERP": 0.0000004}},
        ],
    }
    path = tmp_path / "pepe.json"
    path.write_text(json.dumps(doc))
    report = Simulator(load_scenario(str(path)), accounts=60, seed=1, step_s=2.0).run(calm_s=1)
    assert report["units"] == {"PEPE-PERP": 1_000_000}
    assert report["liquidations"] > 0 and all(report["invariants"].values()), report


def test_no_calm_flow_when_asked_for_none() -> None:
    """``--calm-s 0``: no calm phase (it ran one step of it), so no baseline to compare with."""
    report = Simulator(load_scenario("crash"), accounts=40, seed=1, step_s=10.0).run(calm_s=0)
    assert report["calm_flow_per_s"] == 0 and report["throughput_ratio"] is None
    assert all(report["invariants"].values()), report["invariants"]


def test_takeovers_count_in_the_liquidation_rate(tmp_path: Path) -> None:
    """A one-source oracle printing half the price for 5 s: the gap is past the price band, so
    every liquidation is a takeover (no order into the book): liquidations_per_s (orders through the
    book) reads 0 and liquidation_actions_per_s counts the takeovers."""
    doc = {
        "assets": {"BTC-PERP": {"kind": "perp", "start_price": 60000}},
        "path": [{"t_s": 12, "prices": {"BTC-PERP": 60000}}],
        "oracle": {
            "BTC-PERP": {
                "sources": 1,
                "manipulated": {"mode": "spike", "factor": 0.5, "from_s": 4, "to_s": 6},
            }
        },
    }
    path = tmp_path / "spike.json"
    path.write_text(json.dumps(doc))
    report = Simulator(load_scenario(str(path)), accounts=60, seed=1).run(calm_s=1)
    assert report["takeovers"] > 0 and report["liquidation_orders"] == 0, report
    assert report["liquidation_actions_per_s"] > 0 and all(report["invariants"].values()), report
    assert report["liquidations_per_s"] == 0 and report["liquidation_orders"] == 0


def test_sigterm_stops_the_run_and_removes_its_rings(tmp_path: Path) -> None:
    """``timeout`` or ``kill`` on ``hx stress``: the run stops its processes and removes its
    shared-memory rings (it used to die at once, leaving five segments in /dev/shm)."""
    path = tmp_path / "long.json"
    path.write_text(
        json.dumps(
            {
                "assets": {"X-PERP": {"kind": "perp", "start_price": 100}},
                "path": [{"t_s": 90_000, "prices": {}}],
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    cmd = [sys.executable, "-m", "hx.cli", "stress", "--scenario", str(path), "--accounts", "20"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rings = f"hx-stress-{proc.pid}-"
    try:
        deadline = time.monotonic() + 30
        while not any(p.name.startswith(rings) for p in Path("/dev/shm").iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
        time.sleep(1)  # into the steps
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = [p.name for p in Path("/dev/shm").iterdir() if p.name.startswith(rings)]
    assert not left, left


@pytest.mark.parametrize(("coin", "settles_in"), [("USDX", "USDC"), ("USDC", "USD")])
def test_a_stablecoin_collapse_liquidates_those_who_hold_it(
    tmp_path: Path, coin: str, settles_in: str
) -> None:
    """UST-like, or March 2023 as a reviewer writes it: a listed stablecoin falls to 0.1 while BTC
    stays flat. Half of the population's perp accounts funded in the settlement asset hold the
    stablecoin instead (in atoms, as every asset but the settlement one), so those at more than
    ~3x are liquidated; before, nobody held it and nothing happened. USDC itself listed as
    collateral may move: the run then settles in a dollar named USD (a USDC path was refused)."""
    from perf.stress.exchange_setup import build_exchange

    doc = {
        "assets": {
            coin: {"kind": "collateral", "start_price": 1},
            "BTC-PERP": {"kind": "perp", "start_price": 60000},
        },
        "path": [{"t_s": 5, "prices": {coin: 1}}, {"t_s": 25, "prices": {coin: 0.1}}],
    }
    path = tmp_path / f"{coin}.json"
    path.write_text(json.dumps(doc))
    scenario = load_scenario(str(path))
    ex = build_exchange(scenario)
    assert ex.assets[0].symbol == settles_in and any(
        a.symbol == coin and a.kind == "stable" for a in ex.assets
    )
    report = Simulator(scenario, accounts=80, seed=1, step_s=2.0).run(calm_s=1)
    assert report["liquidations"] > 5 and all(report["invariants"].values()), report


class _KillsRisk(Simulator):
    """A run that kill -9s the risk process while its continuation records work through a crash's
    cascade (accounts left to them, once the run has seen ``AT`` liquidations start: the driver
    waits for that work to end before its next barrier, ``Simulator._quiet``) and restarts it."""

    AT = (20, 150)  # kill once the run has seen this many liquidations start

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.kills = 0
        self.pending_at_kill: list[int] = []  # accounts risk had left to continuation records
        self.continued: list[int] = []  # continuation records before each kill (its metric)

    def _work_left(self) -> bool:
        metrics = self.pipeline.metrics_of("risk-0")
        if (
            metrics is not None
            and metrics["hx_liquidation_pending"]
            and self.kills < len(self.AT)
            and self.tally.liquidations >= self.AT[self.kills]
        ):
            self.kills += 1
            self.pending_at_kill.append(metrics["hx_liquidation_pending"])
            self.continued.append(metrics["hx_continuation_records_total"])
            self.pipeline.kill("risk-0")
            self.pipeline.restart("risk-0")
        return super()._work_left()


def test_risk_killed_in_a_cascade_recovers_and_finishes_it(tmp_path: Path) -> None:
    """kill -9 of risk while a crash's liquidations are under way (bounded records, accounts left
    to continuation records journaled after they ran): the restarted process rebuilds from its
    snapshot and journal, finishes the cascade, and every invariant holds, its state equal to a
    replay of its journal from scratch (``replay_identical``)."""
    sim = _KillsRisk(load_scenario("crash"), accounts=1_500, seed=4, step_s=2.0)
    report = sim.run(calm_s=1)
    assert sim.kills == len(_KillsRisk.AT)
    assert max(sim.continued) > 0 and max(sim.pending_at_kill) > 0, (sim.continued, sim.pending_at_kill)
    assert report["liquidations"] > _KillsRisk.AT[-1], report
    assert report["uncovered_usdc"] == 0 or report["adl_events"] > 0
    assert all(report["invariants"].values()), report["invariants"]


def test_the_premium_follows_a_listed_underlying_as_it_moves() -> None:
    """The funding premium compares the perp's index with its listed underlying's at the same step.
    The underlying (a collateral, no market of its own) kept the index of the first step, so a perp
    and its underlying falling together read as a deep discount and paid the capped rate
    (black-thursday-2020, brexit-2016 in the audit: -0.375% every interval on equal paths)."""
    doc = {
        "assets": {
            "BTC": {"kind": "collateral", "start_price": 60000},
            "BTC-PERP": {"kind": "perp", "start_price": 60000},
        },
        "path": [{"t_s": 20, "prices": {"BTC": 30000, "BTC-PERP": 30000}}],
        "funding": {"interval_s": 10, "period_s": 80},
    }
    sim = Simulator(parse_scenario(doc), accounts=10)
    out = []
    for t in (0.0, 10.0, 20.0):
        sim.price_messages(t)
        assert abs(sim.index_micro["BTC"] / sim.index_micro["BTC-PERP"] - 1) < 0.002, (t, sim.index_micro)
        out += sim._funding(t)
    # equal paths: the premium is the oracle's noise, so the rate is the interest's (0.01% a
    # period, an eighth of it an interval), far from the cap (3% a period)
    assert [f["t_s"] for f in sim.funding_paid] == [10.0, 20.0]
    assert all(abs(f["rate_ppb"]) < 200_000 for f in sim.funding_paid), sim.funding_paid


def test_the_funds_end_lists_what_it_holds_and_its_value_without_haircuts(tmp_path: Path) -> None:
    """A share whose session stays closed: every liquidation goes to the backstop, and the fund
    ends holding the shares it paid USDC for. Its ``equity_usdc`` is risk's (the shares at their
    collateral weight), far below their value: in the audit's run, USDC -5.70M, equity -2.39M
    while the shares were worth 5.47M (the fund was 0.23M down, not 2.39M). The report now lists
    the holdings and their value at the last prices."""
    doc = {
        "assets": {"AAPL": {"kind": "equity", "start_price": 200}},
        "path": [{"t_s": 5, "prices": {"AAPL": 200}}, {"t_s": 10, "prices": {"AAPL": 190}}],
        "sessions": {"AAPL": {"closed": [[0, 100]]}},
    }
    report = Simulator(parse_scenario(doc), accounts=120, seed=1).run(calm_s=1)
    end = report["insurance_fund_end"]
    assert report["takeovers"] > 0 and end["other_assets_held"] == 1, end
    held = end["assets_held"]["AAPL"]
    assert held > 0 and end["assets_value_usdc"] == pytest.approx(held * 190, rel=0.01), end
    assert end["usdc"] + end["assets_value_usdc"] > end["equity_usdc"], end  # the haircut
    assert all(report["invariants"].values()), report["invariants"]


def test_a_funding_interval_shorter_than_a_step_is_refused() -> None:
    """``interval_s`` 0.001 at 1 s steps ran and paid one interval's rate a step: a thousandth of
    what the format says ("every interval_s of simulated time"), silently."""
    import pytest

    from perf.stress.scenario import ScenarioError

    doc = {
        "assets": {"BTC-PERP": {"kind": "perp", "start_price": 60000}},
        "path": [{"t_s": 10, "prices": {"BTC-PERP": 55000}}],
        "funding": {"interval_s": 0.001},
    }
    with pytest.raises(ScenarioError, match=r"funding.interval_s: 0.001 s is shorter than a step"):
        Simulator(parse_scenario(doc), accounts=10, step_s=1.0)
    Simulator(parse_scenario(doc), accounts=10, step_s=0.001)  # at its own step it is every step
