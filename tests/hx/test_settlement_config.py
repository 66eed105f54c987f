"""``[settlement]``: on in the embedded config, every error names its key, never with the faucet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hx.config import DEFAULT_CONFIG, ConfigError, load_config


def _with(tmp_path: Path, settlement: str, faucet: bool = False) -> Path:
    text = re.sub(r"(?m)^faucet = \w+", f"faucet = {str(faucet).lower()}", DEFAULT_CONFIG.read_text())
    start = re.search(r"(?m)^\[settlement\]", text).start()  # type: ignore[union-attr]
    end = text.index("# ---- assets")
    path = tmp_path / "hx.toml"
    path.write_text(text[:start] + "[settlement]\n" + settlement + "\n\n" + text[end:])
    return path


def test_on_by_default_without_the_faucet_and_off_on_request(tmp_path: Path) -> None:
    assert load_config().settlement.enabled and not load_config().gateway["faucet"]
    assert not load_config(_with(tmp_path, "")).settlement.enabled  # the section's own default is off
    c = load_config(_with(tmp_path, "enabled = true\nbatch_interval_s = 0.5"))
    assert c.settlement.enabled and c.settlement.batch_interval_s == 0.5
    assert not load_config(_with(tmp_path, "enabled = false", faucet=True)).settlement.enabled


@pytest.mark.parametrize(
    ("body", "faucet", "names"),
    [
        ("enabled = true", True, "[settlement] enabled: cannot run with [gateway] faucet"),
        ("enabeld = true", False, "[settlement] enabeld: unknown key"),
        ("confirmations = 0", False, "[settlement] confirmations"),
        ("batch_interval_s = 'fast'", False, "[settlement] batch_interval_s"),
        ("enabled = true\ntoken_assets = ['USDC', 'DOGE']", False, "[settlement] token_assets: 'DOGE'"),
        ("enabled = true\nrpc_url = 'http://x'", False, "[settlement] manifest"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, body: str, faucet: bool, names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace("[", r"\[").replace("]", r"\]")):
        load_config(_with(tmp_path, body, faucet))
