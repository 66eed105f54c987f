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
class HxConfig:
    path: Path
    run: RunSection
    gateway: dict[str, Any] = field(default_factory=dict)
    doc: dict[str, Any] = field(default_factory=dict)  # the whole parsed file


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
    return HxConfig(path, run, gateway, doc)
