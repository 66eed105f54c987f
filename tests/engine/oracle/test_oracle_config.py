"""The [oracle] section: the demo config loads, and every bad key is an error naming table and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from oracle_harness import BASE_DOC, BTC_PERP, btc_sources, make_doc, simple_oracle

from engine.oracle.oracle_config import OracleConfigError, oracle_config_from
from hx.config import ConfigError, load_config


def test_the_demo_config_has_an_oracle_for_btc_eth_aapl_and_the_prediction() -> None:
    config = oracle_config_from(BASE_DOC, "hx.toml")
    assert config is not None
    assert sorted(config.index) == [1, 2, 3]
    assert sorted(config.perps) == [100, 101]
    assert list(config.sessions) == [300] and list(config.predictions) == [400]
    assert config.perps[BTC_PERP].funding.cap_ppb == 22_500_000  # 0.75 x 3%


def test_no_oracle_section_means_no_oracle() -> None:
    doc = dict(BASE_DOC)
    doc.pop("oracle")
    assert oracle_config_from(doc) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tick_ms": 0}, r"\[oracle\] tick_ms: want an integer in \[1, 60000\], got 0"),
        ({"band_ppm": "2%"}, r"\[oracle\] band_ppm: want an integer"),
        ({"nonsense": 1}, r"\[oracle\] nonsense: unknown key"),
        (
            {"source": [{"asset": "DOGE", "price": "1"}]},
            r"\[\[oracle.source\]\] #1 asset: unknown asset 'DOGE'",
        ),
        (
            {"source": [{"asset": "USDC", "price": "1"}]},
            r"\[\[oracle.source\]\] #1 asset: USDC is priced without",
        ),
        ({"source": [{"asset": "BTC"}]}, r"\[\[oracle.source\]\] #1 price: want a decimal string"),
        ({"source": [{"asset": "BTC", "price": "1.0000001"}]}, r"#1 price: want a positive amount with <= 6"),
        ({"source": [{"asset": "BTC", "price": "1", "mode": "evil"}]}, r"#1 mode: 'evil' is not one of"),
        ({"source": [{"asset": "BTC", "kind": "chainlink"}]}, r"#1 rpc_url: want a non-empty string"),
        (
            {"source": [{"asset": "BTC", "kind": "chainlink", "rpc_url": "http://x", "address": "0x12"}]},
            r"#1 address: want a 0x-prefixed 20-byte hex address",
        ),
        (
            {"source": btc_sources(2) + [{"asset": "BTC", "name": "f0", "price": "1"}]},
            r"#3 name: 'f0' is already",
        ),
        ({"perp": [{"market": "NOPE"}]}, r"\[\[oracle.perp\]\] #1 market: unknown market 'NOPE'"),
        ({"perp": [{"market": "ETH-USDC"}]}, r"#1 market: ETH-USDC is a spot market, want perp"),
        (
            {"perp": [{"market": "ETH-PERP"}]},
            r"#1 market: ETH-PERP's base asset 'ETH' has no \[\[oracle.source\]\]",
        ),
        ({"perp": [{"market": "BTC-PERP", "weighting": "odd"}]}, r"\[\[oracle.perp\]\] #1 weighting"),
        (
            {"perp": [{"market": "BTC-PERP", "payment_interval_s": 1, "premium_sample_ms": 5000}]},
            r"premium_sample_ms",
        ),
        (
            {"session": [{"market": "AAPL-USDC", "open": "9:30", "close": "16:00"}]},
            r"\[\[oracle.session\]\] #1 open",
        ),
        (
            {"session": [{"market": "AAPL-USDC", "open": "09:30", "close": "09:30"}]},
            r"#1 close: equal to open",
        ),
        (
            {"session": [{"market": "AAPL-USDC", "open": "09:30", "close": "16:00", "days": ["funday"]}]},
            r"#1 days",
        ),
        (
            {"session": [{"market": "AAPL-USDC", "open": "09:30", "close": "16:00", "halts": [["12:00"]]}]},
            r"halts\[0\]",
        ),
        ({"prediction": [{"market": "PRES28-YES"}]}, r"\[\[oracle.prediction\]\] #1 authority: missing"),
        ({"prediction": [{"market": "BTC-PERP", "authority": 1}]}, r"#1 market: BTC-PERP is a perp market"),
    ],
)
def test_a_bad_key_is_an_error_naming_its_table_and_key(change: dict, message: str) -> None:
    oracle = simple_oracle()
    oracle.update(change)
    with pytest.raises(OracleConfigError, match=message):
        oracle_config_from(make_doc(oracle), "test.toml")


def test_hx_config_reports_an_oracle_error_with_the_file(tmp_path: Path) -> None:
    from oracle_harness import ROOT

    text = (ROOT / "config" / "hx.toml").read_text().replace("tick_ms = 250 ", "tick_ms = -1 ")
    path = tmp_path / "hx.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"hx.toml: \[oracle\] tick_ms: want an integer"):
        load_config(path)
    assert load_config(ROOT / "config" / "hx.toml").doc["oracle"]["tick_ms"] == 250
