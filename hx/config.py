"""The exchange's one configuration file (``config/hx.toml`` embedded; ``hx up --config FILE``).

Sections: ``[run]`` (process counts, address, state directory, durability and scheduling),
``[gateway]`` (``GatewayOptions`` fields), ``[[asset]]`` and ``[[market]]`` (read by every stage
through ``engine.types``). Everything is validated before anything starts: an unknown section or
key, or a bad value, is a :class:`ConfigError` that names it (``[run] port: ...``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.types.asset_spec import AssetConfigError, assets_from_doc
from engine.types.market_spec import MarketConfigError, markets_from_doc

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "hx.toml"
SECTIONS = ("run", "gateway", "asset", "market", "risk", "oracle", "settlement", "demo")
WAITS = ("auto", "busy-spin", "spin-then-backoff", "sleep", "blocking")
FSYNCS = ("always", "batch", "none", "ack")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file, section and key."""


@dataclass(frozen=True)
class RunSection:
    shards: int = 1
    risk: int = 1
    gateways: int = 1
    host: str = "127.0.0.1"
    port: int = 8765
    state_dir: str = "var/run"
    wait: str = "auto"
    fsync: str = "batch"
    snapshot_every: int = 5000
    realtime_priority: int = 0
    metrics_port: int = 9464  # the Prometheus endpoint (0: off)
    stall_timeout_s: int = 10  # a live process whose loop stops this long is restarted


_INT_RANGES = {
    "shards": (1, 64),
    "risk": (0, 64),
    "gateways": (0, 16),
    "port": (1, 65535),
    "snapshot_every": (1, 10**9),
    "realtime_priority": (0, 49),
    "metrics_port": (0, 65535),
    "stall_timeout_s": (1, 3600),
}
_CHOICES = {"wait": WAITS, "fsync": FSYNCS}


@dataclass(frozen=True)
class SettlementSection:
    """``[settlement]``: the chain (off by default). Without ``rpc_url`` a local anvil is started
    (the chain stage) with the contracts deployed; with it, ``manifest`` names the deployment."""

    enabled: bool = False
    rpc_url: str = ""
    manifest: str = ""
    operator_key_env: str = "HX_OPERATOR_KEY"
    confirmations: int = 1
    batch_interval_s: float = 1.0
    batch_max_events: int = 10_000
    token_assets: tuple[str, ...] = ("USDC", "ETH", "BTC")  # per vault token (listing order); "" = none
    fee_address: str = ""
    block_time_s: float = 1.0  # the local chain's block time (0: a block per transaction)
    dispute_window_s: int = 60  # the local chain's dispute window


def _settlement_section(raw: Any, where: str, doc: dict[str, Any], run: RunSection) -> SettlementSection:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [settlement] must be a table")
    known = {f.name: f for f in fields(SettlementSection)}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{where}: [settlement] {key}: unknown key; known: {sorted(known)}")
        want = known[key].type
        ok = {
            "bool": isinstance(value, bool),
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
            "float": isinstance(value, int | float) and not isinstance(value, bool) and value >= 0,
        }.get(str(want), isinstance(value, list) and all(isinstance(x, str) for x in value))
        if not ok:
            raise ConfigError(f"{where}: [settlement] {key}: want {want}, got {value!r}")
    if "confirmations" in raw and raw["confirmations"] < 1:
        raise ConfigError(f"{where}: [settlement] confirmations: want >= 1, got {raw['confirmations']}")
    if "batch_interval_s" in raw and not 0.05 <= raw["batch_interval_s"] <= 3600:
        raise ConfigError(
            f"{where}: [settlement] batch_interval_s: want 0.05..3600, got {raw['batch_interval_s']}"
        )
    if "batch_max_events" in raw and raw["batch_max_events"] < 1:
        raise ConfigError(f"{where}: [settlement] batch_max_events: want >= 1, got {raw['batch_max_events']}")
    section = SettlementSection(
        **{**raw, "token_assets": tuple(raw.get("token_assets", SettlementSection.token_assets))}
    )
    if section.enabled:
        if doc.get("gateway", {}).get("faucet"):
            raise ConfigError(
                f"{where}: [settlement] enabled: cannot run with [gateway] faucet = true (chain deposits and "
                "faucet credits would mix in the accounts the chain proves)"
            )
        if not run.risk:
            raise ConfigError(f"{where}: [settlement] enabled: needs [run] risk >= 1")
        if section.rpc_url and not section.manifest:
            raise ConfigError(
                f"{where}: [settlement] manifest: required with rpc_url (the deployment's JSON)"
            )
        symbols = {a.get("symbol") for a in doc.get("asset", []) if isinstance(a, dict)}
        for sym in section.token_assets:
            if sym and sym not in symbols:
                raise ConfigError(f"{where}: [settlement] token_assets: {sym!r} is not an [[asset]] symbol")
    return section


@dataclass(frozen=True)
class HxConfig:
    path: Path
    run: RunSection
    gateway: dict[str, Any] = field(default_factory=dict)
    doc: dict[str, Any] = field(default_factory=dict)  # the whole parsed file
    settlement: SettlementSection = field(default_factory=SettlementSection)


def _run_section(raw: Any, where: str) -> RunSection:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [run] must be a table")
    known = {f.name: f for f in fields(RunSection)}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{where}: [run] {key}: unknown key; known: {sorted(known)}")
        want = known[key].type
        if want == "int":
            lo, hi = _INT_RANGES[key]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ConfigError(f"{where}: [run] {key}: want an integer in [{lo}, {hi}], got {value!r}")
        elif not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: [run] {key}: want a non-empty string, got {value!r}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"{where}: [run] {key}: {value!r} is not one of {list(_CHOICES[key])}")
    return RunSection(**raw)


def _gateway_section(raw: Any, where: str) -> dict[str, Any]:
    from gateway.server import GatewayOptions

    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [gateway] must be a table")
    known = {f.name for f in fields(GatewayOptions)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{where}: [gateway] {key}: unknown key; known: {sorted(known)}")
    try:
        GatewayOptions(**raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: [gateway]: {exc}") from None
    return dict(raw)


def load_config(path: str | Path | None = None) -> HxConfig:
    """Read and check the whole file (ConfigError names what is wrong)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    where = str(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    for key in doc:
        if key not in SECTIONS:
            raise ConfigError(f"{where}: [{key}]: unknown section; known: {list(SECTIONS)}")
    run = _run_section(doc.get("run", {}), where)
    gateway = _gateway_section(doc.get("gateway", {}), where)
    try:
        markets_from_doc(doc, where)
        assets = assets_from_doc(doc, where)
    except (MarketConfigError, AssetConfigError) as exc:
        raise ConfigError(str(exc)) from None
    if run.risk:
        from engine.risk.risk_config import RiskConfigError, risk_config_from

        if not assets:
            raise ConfigError(f"{where}: [run] risk = {run.risk} needs [[asset]] tables (or set risk = 0)")
        try:
            risk_config_from(markets_from_doc(doc, where), assets)
        except RiskConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if "oracle" in doc:
        from engine.oracle.oracle_config import OracleConfigError, oracle_config_from

        try:
            oracle_config_from(doc, where)
        except OracleConfigError as exc:
            raise ConfigError(str(exc)) from None
    settlement = _settlement_section(doc.get("settlement", {}), where, doc, run)
    return HxConfig(path, run, gateway, doc, settlement)
