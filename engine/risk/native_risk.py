"""``NativeRiskEngine``: the risk engine with its hot path compiled (``engine/native/_hxrisk.c``).

``RiskEngine`` (risk_engine.py) is the specification; this class IS one, with two parts replaced:

* ``ledger`` is the C ``Ledger`` (the same method API as ``OrderLedger``; the core reads and writes
  its entries directly);
* ``apply_slots`` (one journal record), ``handle_command`` and ``apply_event`` first give the slots
  to ``Core.run``, which applies the common ones in C - NEW_ORDER, CANCEL, CANCEL_ALL, AMEND,
  L2_SNAPSHOT_REQUEST and HEARTBEAT from gateways; ACCEPTED, REJECTED, CANCELLED, AMENDED, TRIGGERED,
  FILL and HEARTBEAT from shards - and stops before the first slot it leaves to Python, having
  changed nothing for it. Python applies that one slot and the core goes on from the next. The
  events of risk's own liquidation orders are the core's too; a slot that ends one stops the core
  after it, and the liquidator's ``on_order_end`` runs for what ``Core.ended()`` lists;
* ``transfer_perp`` and ``move_cash`` (a takeover's or an ADL's position transfer, a haircut, a
  cover, a liquidation fee) are ``Core.transfer_perp`` and ``Core.move_cash`` where they cover the
  case (no isolated position on the book).

Everything else (deposits, withdrawals, the oracle's commands, funding, resolution, liquidation,
queries, RESTATE, the margin recomputation at the end of a record, snapshots) is the Python
engine's own code, on the same state: the core reads and writes the account book's numpy columns
in place and looks the engine's dicts up directly. ``tests/engine/risk/test_native_risk.py`` holds
the two engines to the same output bytes and state hash after every record.

``make_risk_engine`` picks the implementation: native unless ``HX_ENGINE=python`` (the switch the
shard's ``make_engine`` reads) or the extension is not built (``make setup`` builds it);
``HX_RISK_ENGINE`` (``python`` or ``native``) overrides it for risk alone (the benchmark runs the
Python risk engine against the compiled shard with it).
"""

from __future__ import annotations

import os
from typing import Any, Final

from engine.risk.liquidator import LiquidationParams
from engine.risk.margin_model import MarginModel
from engine.risk.order_ledger import Reservation
from engine.risk.risk_config import RiskConfig
from engine.risk.risk_engine import _FUNDING_WAITS_FOR, _PRICE_COMMANDS, SHARD_EVENTS_SOURCE, RiskEngine
from engine.types.enums import MarketKind
from engine.types.fixed import PPM
from engine.wire.layout import SLOT_BYTES

try:
    from engine.native import _hxrisk
except ImportError:  # pragma: no cover - make setup builds it; native_available() reports it
    _hxrisk = None  # type: ignore[assignment]
else:
    _hxrisk.set_reservation_type(Reservation)

ENGINE_ENV: Final = "HX_ENGINE"  # "python": the Python engines (risk and shard); else native
RISK_ENGINE_ENV: Final = "HX_RISK_ENGINE"  # risk only, over HX_ENGINE: "python" or "native"


def native_available() -> bool:
    """Is the compiled risk core importable (built by ``make setup``)?"""
    return _hxrisk is not None


def _use_native() -> bool:
    choice = os.environ.get(RISK_ENGINE_ENV) or os.environ.get(ENGINE_ENV, "native")
    return choice != "python" and native_available()


def make_risk_engine(
    config: RiskConfig,
    partition: int = 0,
    partitions: int = 1,
    shards: int = 1,
    margin: MarginModel | None = None,
    liquidation: LiquidationParams | None = None,
) -> RiskEngine:
    """The risk engine: ``NativeRiskEngine`` unless ``HX_ENGINE=python`` or the core is not built."""
    cls = NativeRiskEngine if _use_native() else RiskEngine
    return cls(config, partition, partitions, shards, margin, liquidation)


def core_tables(engine: RiskEngine) -> tuple[Any, ...]:
    """The static tables ``_hxrisk.Core`` is built from (markets, assets, perps, the vol-up factor)."""
    config, spec = engine.config, engine.margin.spec
    markets = [
        (
            m.market_id,
            m.perp,
            m.base_asset,
            m.tick_size_micro,
            m.lot_size_atoms,
            m.maker_fee_ppm,
            m.taker_fee_ppm,
            m.kind == MarketKind.PREDICTION,
        )
        for m in config.markets.values()
    ]
    assets = []
    for a in spec.assets:
        group = [b.asset_id for b in spec.assets if b.group == a.group] if a.group else []
        assets.append(
            (
                int(a.kind),
                a.qty_scale,
                a.floor_ppm,
                a.spot_fees.maker_ppm,
                a.spot_fees.taker_ppm,
                a.weights.upper_atoms,
                a.weights.weight_ppm,
                a.shock.upper_micro,
                a.shock.rate_ppm,
                group,
            )
        )
    perps = [(p.fees.maker_ppm, p.fees.taker_ppm, p.lot_atoms, p.underlying) for p in spec.perps]
    params = spec.params
    factor = max(PPM * PPM, params.vol_up_weight_ppm * params.vol_up_multiple_ppm)
    return markets, assets, perps, factor


class NativeRiskEngine(RiskEngine):
    """``RiskEngine`` with the C ledger and the C hot path (see the module docstring)."""

    NATIVE_MARGIN = True

    def __init__(
        self,
        config: RiskConfig,
        partition: int = 0,
        partitions: int = 1,
        shards: int = 1,
        margin: MarginModel | None = None,
        liquidation: LiquidationParams | None = None,
    ) -> None:
        if _hxrisk is None:  # pragma: no cover
            raise RuntimeError("the compiled risk core is not built (make setup)")
        super().__init__(config, partition, partitions, shards, margin, liquidation)
        self.ledger = _hxrisk.Ledger()  # type: ignore[assignment]
        self.core = _hxrisk.Core(*core_tables(self), partition, partitions, shards)
        self.handed_back = 0  # slots the core left to Python (for tests and metrics; not state)

    def apply_slots(self, buf: bytes | memoryview, off: int, count: int, source: int) -> None:
        end = off + count * SLOT_BYTES
        run = self.core.run
        while off < end:
            if self._touched and (source == SHARD_EVENTS_SOURCE or buf[off] not in _PRICE_COMMANDS):
                self._flush_touched()  # (the core reads dirty flags: the deferred ones first)
            if self._funding_due and (source == SHARD_EVENTS_SOURCE or buf[off] not in _FUNDING_WAITS_FOR):
                self._pay_funding_due()  # (and balances: a due funding payment first)
            off = run(self, buf, off, end, source)
            ended = self.core.ended()
            if ended:  # the core stopped after a slot that ended liquidation orders: the liquidator
                for coid, filled_all, refused in ended:  # follows them, as within RiskEngine's slot
                    self.liquidator.on_order_end(coid, filled_all=filled_all, refused=refused)
                continue
            if off < end:  # the core stopped before this one: Python applies it
                self.handed_back += 1
                if source == SHARD_EVENTS_SOURCE:
                    RiskEngine.apply_event(self, buf, off)
                else:
                    RiskEngine.handle_command(self, buf, off, source)
                off += SLOT_BYTES

    def handle_command(self, buf: bytes | memoryview, off: int, source: int = 0) -> None:
        self.apply_slots(buf, off, 1, source)

    def transfer_perp(self, src: int, dst: int, perp: int, size: int, notional: int) -> None:
        """``RiskEngine.transfer_perp`` (takeovers, ADL) in C, where it covers the case."""
        market = self.config.markets[self.config.perps[perp]].market_id
        if not self.core.transfer_perp(self, src, dst, perp, market, size, notional):
            RiskEngine.transfer_perp(self, src, dst, perp, size, notional)

    def adl_closes(
        self, fund: int, perp: int, market: int, rows: list[int], sizes: list[int], notionals: list[int],
        kind: int, side: int, price: int,
    ) -> bool:  # fmt: skip
        """``Liquidator._apply_closes``'s loop in C, where it covers the case (False: the loop's)."""
        return bool(self.core.adl_closes(self, fund, perp, market, rows, sizes, notionals, kind, side, price))

    def haircuts(
        self, dst: int, rows: list[int], amounts: list[int], markets: list[int], kind: int, reason_src: int,
        reason_dst: int, ref: int, insurance: int,
    ) -> bool:  # fmt: skip
        """``Liquidator._haircut``'s loop in C, where it covers the case (False: the loop's)."""
        return bool(
            self.core.haircuts(
                self, dst, rows, amounts, markets, kind, reason_src, reason_dst, ref, insurance
            )
        )

    def move_cash(self, src: int, dst: int, amount: int, reason_src: int, reason_dst: int, ref: int) -> None:
        """``RiskEngine.move_cash`` (haircuts, covers, liquidation fees) in C, where it covers the case."""
        if not self.core.move_cash(self, src, dst, amount, reason_src, reason_dst, ref):
            RiskEngine.move_cash(self, src, dst, amount, reason_src, reason_dst, ref)

    def apply_event(self, buf: bytes | memoryview, off: int) -> None:
        self.apply_slots(buf, off, 1, SHARD_EVENTS_SOURCE)
