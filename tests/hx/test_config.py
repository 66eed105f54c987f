"""The one configuration file: the embedded default loads; every bad key or value is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from hx.config import DEFAULT_CONFIG, ConfigError, load_config


def test_the_embedded_default_loads_with_risk_and_every_asset_class() -> None:
    config = load_config()
    assert config.run.risk >= 1 and config.settlement.enabled  # money arrives on the local chain
    assert not config.gateway.get("faucet")  # so the development faucet is off
    kinds = {m["kind"] for m in config.doc["market"]}
    assert kinds == {"perp", "spot", "equity", "prediction"}


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ("[bogus]\nx = 1\n", "[bogus]: unknown section"),
        ("[run]\nportt = 1\n", "[run] portt: unknown key"),
        ('[run]\nport = "x"\n', "[run] port: want an integer"),
        ("[run]\nport = 70000\n", "[run] port: want an integer in [1, 65535]"),
        ('[run]\nfsync = "sometimes"\n', "[run] fsync: 'sometimes' is not one of"),
        ("[gateway]\nfaucett = true\n", "[gateway] faucett: unknown key"),
        ('[gateway]\nloop_mode = "spin"\n', "[gateway]: loop_mode 'spin'"),
    ],
)
def test_bad_keys_and_values_are_named(tmp_path: Path, edit: str, named: str) -> None:
    text = DEFAULT_CONFIG.read_text()
    for section in ("[run]", "[gateway]"):
        if edit.startswith(section):  # replace the section's table with the edited one
            head, _, rest = text.partition(section + "\n")
            body, sep, tail = rest.partition("\n[")
            text = head + edit + "\n[" + tail
            break
    else:
        text = edit + text
    path = tmp_path / "hx.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)


def test_a_market_without_its_asset_is_refused_when_risk_runs(tmp_path: Path) -> None:
    path = tmp_path / "hx.toml"
    path.write_text(DEFAULT_CONFIG.read_text().replace('base_asset = "AAPL"', 'base_asset = "TSLA"'))
    with pytest.raises(ConfigError, match="'TSLA' is not a listed asset"):
        load_config(path)
