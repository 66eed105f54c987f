"""The oracle's state machine: quotes, books and requests in; prices, statuses and funding out.

Deterministic: every input is a journaled message (its clock comes from the journal record), and
the outputs are a pure function of them; the numbers come from ``engine.math`` only (index, mark,
funding, TWAP), the calendar from :mod:`engine.oracle.session_calendar`.

Inputs (``apply_quote``, ``apply_event``, ``handle_request``, ``tick``, ``on_shard_lost``):

* SOURCE_QUOTE: a feed's latest quote (price as parsed at the edge, its reason, its timestamps),
  for the asset's index, or (``perp_market`` set) an external venue's mid of a perp for the mark;
* a shard's L2_DELTA, TRADE and BOOK_RESET of a configured perp (the book for mid and impact prices);
* RESOLUTION_REQUEST from a gateway (the authority proposes or disputes an outcome);
* a tick every ``tick_ms``: everything time-driven happens here, in this order, and so the
  messages of one record go out in this order: ORACLE_PRICE (per asset, on change), RESOLUTION (a
  dispute window passed), SET_MARKET_STATUS (session, stale halt, close, resolution, delisting;
  on change), MARK_PRICE (per market, on change in ticks), FUNDING (each interval that ended, ids
  consecutive, once), SETTLEMENT_PRICE (a perp reaching its delisting time, once).

Outputs (``take_outputs``): bytes per shard (MARK_PRICE, SET_MARKET_STATUS, L2_SNAPSHOT_REQUEST),
bytes for risk (the same for every partition), and the public stream (MARK, FUNDING_RATE,
RESOLUTION_STATUS; REJECTED carries the requester's account and is private to it), whose ``seq``
is gap-free from 1.

Funding timing: interval ``k`` spans ``[k * I, (k + 1) * I)``; it is paid at the first tick at or
after its end, with the premium samples taken inside it, and intervals are paid in order without a
gap: after a stop of the oracle, every interval that ended meanwhile is paid on the first tick
(those without samples at the interest rate, clamped and capped). Risk pays an interval id once.
"""

from __future__ import annotations

import hashlib
import pickle
from typing import Any, Final

from engine.math.funding import (
    FundingRate,
    calc_funding_rate,
    calc_impact_ask_micro,
    calc_impact_bid_micro,
    calc_premium_ppb,
)
from engine.math.mark_price import BasisEma, calc_basis_ema, calc_basis_pico, calc_mark_price
from engine.math.oracle_index import (
    DropReason,
    IndexState,
    IndexStatus,
    SourceQuote,
    SourceVerdict,
    calc_index,
    calc_twap_micro,
)
from engine.math.rounding import div_round_half_even
from engine.oracle.oracle_config import OracleConfig
from engine.oracle.session_calendar import calc_session_status
from engine.types.enums import (
    MarketKind,
    MarketStatus,
    MsgType,
    RejectCode,
    ResolutionAction,
    ResolutionState,
)
from engine.wire.layout import ALL_MARKETS, BY_TYPE, SLOT_BYTES, WIRE_VERSION

LAST_TRADE_MAX_AGE_NS: Final = 60 * 10**9  # an older last trade is no evidence: the index stands in
SNAPSHOT_MAGIC: Final = b"HXORAC01"
_REASONS: Final = {int(r): r for r in DropReason}
BOOK_EVENTS: Final = frozenset({MsgType.L2_DELTA, MsgType.TRADE, MsgType.BOOK_RESET})


def _packer(t: MsgType) -> Any:
    st = BY_TYPE[int(t)].struct
    return lambda market, *body: st.pack(int(t), WIRE_VERSION, SLOT_BYTES, market, *body)


def _unpacker(t: MsgType) -> Any:
    return BY_TYPE[int(t)].struct.unpack_from


_P_ORACLE = _packer(MsgType.ORACLE_PRICE)
_P_MARK_PRICE = _packer(MsgType.MARK_PRICE)
_P_STATUS = _packer(MsgType.SET_MARKET_STATUS)
_P_FUNDING = _packer(MsgType.FUNDING)
_P_RESOLUTION = _packer(MsgType.RESOLUTION)
_P_SETTLEMENT = _packer(MsgType.SETTLEMENT_PRICE)
_P_MARK = _packer(MsgType.MARK)
_P_RATE = _packer(MsgType.FUNDING_RATE)
_P_RES_STATUS = _packer(MsgType.RESOLUTION_STATUS)
_P_REJECTED = _packer(MsgType.REJECTED)
_P_L2_REQUEST = _packer(MsgType.L2_SNAPSHOT_REQUEST)
_P_QUOTE = _packer(MsgType.SOURCE_QUOTE)
_U_QUOTE = _unpacker(MsgType.SOURCE_QUOTE)
_U_L2 = _unpacker(MsgType.L2_DELTA)
_U_TRADE = _unpacker(MsgType.TRADE)
_U_REQUEST = _unpacker(MsgType.RESOLUTION_REQUEST)


def pack_source_quote(
    asset_id: int,
    feed: int,
    reason: int,
    price_micro: int,
    source_ts_ns: int,
    arrival_ns: int,
    perp_market: int = 0,
) -> bytes:
    """The SOURCE_QUOTE journal slot of one quote (the edge clamps values into the field ranges);
    ``perp_market`` names the perp of an external mid (0: an index feed of the asset)."""
    return _P_QUOTE(asset_id, feed, reason, perp_market, price_micro, source_ts_ns, arrival_ns)


class OracleEngine:
    """See the module docstring. ``n_shards`` routes a market to its shard (``market % n_shards``)."""

    def __init__(self, config: OracleConfig, n_shards: int) -> None:
        if n_shards < 1:
            raise ValueError("the oracle needs >= 1 shard to talk to")
        self.config = config
        self.n_shards = n_shards
        self.to_shards: list[bytearray] = [bytearray() for _ in range(n_shards)]
        self.to_risk = bytearray()
        self.public = bytearray()
        # managed markets: a session, a priced base asset, a prediction, or a perp
        self.managed = sorted(
            m
            for m, spec in config.markets.items()
            if m in config.sessions
            or m in config.predictions
            or config.asset_of_market.get(m, -1) in config.index
        )
        self.feed_names = {a: tuple(f.name for f in config.feeds_of(a)) for a in config.index}
        self.external_feeds = {m: config.externals_of(m) for m in config.perps}
        self.state: dict[str, Any] = self._fresh_state()
        self.verdicts: dict[int, tuple[SourceVerdict, ...]] = {}  # the last tick's, per asset (a read)
        self.index_updates = 0  # ORACLE_PRICE messages produced by this instance (a metric)

    def _fresh_state(self) -> dict[str, Any]:
        c = self.config
        return {
            "now_ns": 0,
            "seq": 0,  # public stream
            "quotes": {a: {} for a in c.index},  # asset -> feed -> (price, source ts, reason)
            "index_state": {a: IndexState() for a in c.index},
            "index": {a: (0, int(IndexStatus.STALE), 0) for a in c.index},  # price, status, ts
            "sent_price": {},  # asset -> (price, status) last sent to risk
            "stale_since": {a: 0 for a in c.index},  # 0: fresh (or never seen: set on first tick)
            "history": {a: [] for a in {p.asset_id for p in c.perps.values() if p.delist_at_ns}},
            "books": {m: ({}, {}) for m in c.perps},  # price_ticks -> size_lots, bids then asks
            "last_trade": {m: (0, 0) for m in c.perps},  # price_ticks, engine ts
            "ema": {m: None for m in c.perps},
            "external": {m: {} for m in c.perps},  # perp -> feed -> (price, source ts, reason)
            "mark": {m: 0 for m in c.perps},  # micro
            "sent_mark": {},  # market -> ticks last sent in MARK_PRICE
            "sent_public_mark": {},  # market -> (mark, index, status) last in MARK
            "samples": {m: [] for m in c.perps},
            "next_sample_ns": {m: 0 for m in c.perps},
            "interval": {},  # perp -> the id of the interval running (unpaid)
            "last_rate": {m: 0 for m in c.perps},
            "status": {m: int(c.markets[m].status) for m in self.managed},
            "resolution": {},  # market -> [state, outcome, final_at_ns]
            "settled": [],  # delisted perps already settled
        }

    # ---- inputs ----------------------------------------------------------------------------------
    def apply_quote(self, buf: bytes | memoryview, off: int) -> None:
        """A SOURCE_QUOTE: the feed's latest quote replaces its previous one (judged at the tick)."""
        (_t, _v, _l, asset, feed, reason, perp_market, price, source_ts, _arrival) = _U_QUOTE(buf, off)
        if perp_market:
            mids = self.state["external"].get(perp_market)
            if mids is not None and feed < len(self.external_feeds[perp_market]):
                mids[feed] = (price, source_ts, reason)
            return
        quotes = self.state["quotes"].get(asset)
        if quotes is None or feed >= len(self.feed_names[asset]):
            return  # not a configured feed: the edge never writes one; ignore rather than crash
        quotes[feed] = (price, source_ts, reason)

    def apply_event(self, buf: bytes | memoryview, off: int) -> None:
        """A shard's L2_DELTA / TRADE / BOOK_RESET of a configured perp (others are ignored)."""
        t = buf[off]
        market = int.from_bytes(buf[off + 4 : off + 8], "little")
        books = self.state["books"].get(market)
        if books is None:
            return
        if t == MsgType.L2_DELTA:
            (_t, _v, _l, _m, _seq, price, size, _count, side, _prev) = _U_L2(buf, off)
            book = books[1 if side else 0]
            if size > 0:
                book[price] = size
            else:
                book.pop(price, None)
        elif t == MsgType.TRADE:
            (_t, _v, _l, _m, _seq, price, _size, ts, _side) = _U_TRADE(buf, off)
            self.state["last_trade"][market] = (price, ts)
        elif t == MsgType.BOOK_RESET:
            books[0].clear()
            books[1].clear()

    def on_shard_lost(self, shard: int) -> None:
        """The oracle's cursor on a shard's event ring was dropped: forget that shard's books and
        ask it to restate them (BOOK_RESET + levels follow on its event ring)."""
        for m, books in self.state["books"].items():
            if m % self.n_shards == shard:
                books[0].clear()
                books[1].clear()
        self.to_shards[shard] += _P_L2_REQUEST(ALL_MARKETS)

    def handle_request(self, buf: bytes | memoryview, off: int) -> None:
        """A RESOLUTION_REQUEST (anything else from a gateway ring is ignored: the gateway sends
        the oracle nothing else)."""
        if buf[off] != MsgType.RESOLUTION_REQUEST:
            return
        (_t, _v, _l, market, account, action, outcome, _ts) = _U_REQUEST(buf, off)
        code = self._check_request(market, account, action, outcome)
        if code != RejectCode.OK:
            # private to the requester, so outside the public sequence (seq 0 and ts 0, as the
            # gateway's own rejects): every subscriber sees the oracle's seq without a gap, and a
            # client's private-stream position (risk's per-account seq) is not disturbed by it
            self._public(_P_REJECTED(market, 0, 0, 0, 0, account, int(code), MsgType.RESOLUTION_REQUEST))
            return
        pred = self.config.predictions[market]
        final_at = self.now_ns + pred.dispute_window_ns
        state = ResolutionState.PROPOSED if action == ResolutionAction.PROPOSE else ResolutionState.DISPUTED
        self.state["resolution"][market] = [int(state), outcome, final_at]
        self._public(_P_RES_STATUS(market, self._next_seq(), int(state), outcome, final_at, self.now_ns))

    def _check_request(self, market: int, account: int, action: int, outcome: int) -> RejectCode:
        pred = self.config.predictions.get(market)
        if pred is None:
            return RejectCode.NOT_A_PREDICTION_MARKET
        if account != pred.authority:
            return RejectCode.NOT_RESOLUTION_AUTHORITY
        if action not in (ResolutionAction.PROPOSE, ResolutionAction.DISPUTE):
            return RejectCode.BAD_RESOLUTION_ACTION
        if outcome not in (0, 1):
            return RejectCode.BAD_OUTCOME
        current = self.state["resolution"].get(market)
        if current is not None and current[0] == ResolutionState.FINAL:
            return RejectCode.ALREADY_RESOLVED
        if action == ResolutionAction.PROPOSE:
            if self.now_ns < pred.close_at_ns:
                return RejectCode.MARKET_NOT_CLOSED
            if current is not None:
                return RejectCode.ALREADY_PROPOSED
            return RejectCode.OK
        if current is None:
            return RejectCode.NO_PROPOSAL
        if self.now_ns >= current[2]:
            return RejectCode.DISPUTE_WINDOW_CLOSED
        return RejectCode.OK

    # ---- the tick ---------------------------------------------------------------------------------
    @property
    def now_ns(self) -> int:
        return int(self.state["now_ns"])

    def set_clock(self, now_ns: int) -> None:
        """The record's clock; never backwards (a record stamped earlier keeps the later time)."""
        if now_ns > self.state["now_ns"]:
            self.state["now_ns"] = now_ns

    def tick(self) -> None:
        """Everything time-driven, in the output order of the module docstring."""
        now = self.now_ns
        self._tick_index(now)
        self._tick_resolutions(now)
        delisting = [
            m
            for m, p in self.config.perps.items()
            if p.delist_at_ns and now >= p.delist_at_ns and m not in self.state["settled"]
        ]
        self.state["settled"].extend(delisting)
        self._tick_statuses(now)
        self._tick_marks(now)
        self._tick_funding(now)
        for m in delisting:
            self._settle(m, now)

    def _tick_index(self, now: int) -> None:
        s = self.state
        for asset, cfg in self.config.index.items():
            names = self.feed_names[asset]
            quotes = [
                SourceQuote(names[f], price, ts, _REASONS.get(reason, DropReason.UNPARSEABLE))
                for f, (price, ts, reason) in sorted(s["quotes"][asset].items())
            ]
            result = calc_index(quotes, now, cfg, s["index_state"][asset])
            s["index_state"][asset] = result.state
            self.verdicts[asset] = result.verdicts
            status = int(result.status)
            s["index"][asset] = (result.index_micro, status, result.index_ts_ns)
            if status == IndexStatus.OK:
                s["stale_since"][asset] = 0
                hist = s["history"].get(asset)
                if hist is not None and (not hist or hist[-1][0] != result.index_micro):
                    hist.append((result.index_micro, now))
                    self._prune_history(asset, now)
            elif not s["stale_since"][asset]:
                s["stale_since"][asset] = now
            if result.index_micro and s["sent_price"].get(asset) != (result.index_micro, status):
                s["sent_price"][asset] = (result.index_micro, status)
                self.index_updates += 1
                self.to_risk += _P_ORACLE(ALL_MARKETS, asset, status, result.index_micro, now)

    def _prune_history(self, asset: int, now: int) -> None:
        window = max(p.delist_twap_ns for p in self.config.perps.values() if p.asset_id == asset)
        hist = self.state["history"][asset]
        cut = 0
        while cut + 1 < len(hist) and hist[cut + 1][1] <= now - window:
            cut += 1  # keep the last sample before the window: its step reaches into it
        if cut:
            del hist[:cut]

    def _tick_resolutions(self, now: int) -> None:
        for market, res in sorted(self.state["resolution"].items()):
            if res[0] != ResolutionState.FINAL and now >= res[2]:
                res[0] = int(ResolutionState.FINAL)
                self.to_risk += _P_RESOLUTION(market, res[1], now)
                self._public(
                    _P_RES_STATUS(market, self._next_seq(), int(ResolutionState.FINAL), res[1], res[2], now)
                )

    def _desired_status(self, market: int, now: int) -> int:
        c, s = self.config, self.state
        if market in s["settled"]:
            return int(MarketStatus.RESOLVED)
        pred = c.predictions.get(market)
        if pred is not None:
            res = s["resolution"].get(market)
            if res is not None and res[0] == ResolutionState.FINAL:
                return int(MarketStatus.RESOLVED)
            return int(MarketStatus.CLOSED if now >= pred.close_at_ns else s["status"][market])
        session = c.sessions.get(market)
        status = calc_session_status(session, now) if session is not None else MarketStatus.OPEN
        asset = c.asset_of_market.get(market, -1)
        since = s["stale_since"].get(asset, 0)
        if status == MarketStatus.OPEN and since and now - since >= c.halt_after_ns:
            status = MarketStatus.HALTED
        return int(status)

    def _tick_statuses(self, now: int) -> None:
        s = self.state
        for market in self.managed:
            current = s["status"][market]
            if current == MarketStatus.RESOLVED:
                continue  # final
            want = self._desired_status(market, now)
            if want != current:
                s["status"][market] = want
                msg = _P_STATUS(market, want)
                self.to_risk += msg
                self.to_shards[market % self.n_shards] += msg

    def _touch(self, market: int) -> tuple[int | None, int | None]:
        bids, asks = self.state["books"][market]
        tick = self.config.perps[market].tick_size_micro
        bid = max(bids) * tick if bids else None
        ask = min(asks) * tick if asks else None
        return bid, ask

    def _tick_marks(self, now: int) -> None:
        c, s = self.config, self.state
        for market in self.managed:
            spec = c.markets[market]
            asset = c.asset_of_market.get(market, -1)
            if asset not in c.index or market in s["settled"]:
                continue
            index, status, _ts = s["index"][asset]
            if index <= 0:
                continue
            perp = c.perps.get(market)
            if perp is None:
                mark = index  # spot and equity: the band is centred on the index
            else:
                bid, ask = self._touch(market)
                basis = calc_basis_pico(bid, ask, index)
                if basis is not None:
                    s["ema"][market], _ = calc_basis_ema(s["ema"][market], basis, now, perp.half_life_ns)
                ema = s["ema"][market]
                trade_ticks, trade_ts = s["last_trade"][market]
                last = (
                    trade_ticks * perp.tick_size_micro
                    if trade_ticks and now - trade_ts <= LAST_TRADE_MAX_AGE_NS
                    else None
                )
                mark = calc_mark_price(
                    index,
                    None if ema is None else ema.basis_pico,
                    bid,
                    ask,
                    last,
                    self._external_mids(market, now),
                ).mark_micro
                s["mark"][market] = mark
            public = (mark, index, status)  # every priced market: its `index` channel
            if s["sent_public_mark"].get(market) != public:
                s["sent_public_mark"][market] = public
                self._public(_P_MARK(market, self._next_seq(), mark, index, now, status))
            ticks = max(1, div_round_half_even(mark, spec.tick_size_micro))
            if s["sent_mark"].get(market) != ticks:
                s["sent_mark"][market] = ticks
                msg = _P_MARK_PRICE(market, ticks, now)
                self.to_shards[market % self.n_shards] += msg
                if perp is not None:
                    self.to_risk += msg

    def _external_mids(self, market: int, now: int) -> list[tuple[int, int]]:
        """``(mid, weight)`` of the perp's external venues whose latest quote is usable now: parsed,
        positive, not from the future, not older than its staleness (none: (c) is the index)."""
        c = self.config
        out = []
        for feed, (price, ts, reason) in sorted(self.state["external"][market].items()):
            src = self.external_feeds[market][feed]
            staleness = src.staleness_ns or c.staleness_ns
            if reason == 0 and price > 0 and 0 < ts <= now + c.max_future_ns and now - ts <= staleness:
                out.append((price, src.weight))
        return out

    def _tick_funding(self, now: int) -> None:
        s = self.state
        for market, perp in self.config.perps.items():
            if market in s["settled"]:
                continue
            interval_ns = perp.funding.payment_interval_ns
            k = now // interval_ns
            running = s["interval"].setdefault(market, k)
            paid = False
            while running < k:  # every interval that ended, in order, once
                rate = calc_funding_rate(s["samples"][market], perp.funding)  # [] after the first
                self.to_risk += _P_FUNDING(market, running, rate.rate_interval_ppb, s["mark"][market], now)
                s["last_rate"][market] = rate.rate_interval_ppb
                s["samples"][market] = []
                running += 1
                s["interval"][market] = running
                paid = True
            sampled = False
            if now >= s["next_sample_ns"][market]:
                s["next_sample_ns"][market] = (now // perp.premium_sample_ns + 1) * perp.premium_sample_ns
                premium = self._premium_ppb(market)
                if premium is not None:
                    s["samples"][market].append(premium)
                    sampled = True
            if paid or sampled:
                predicted = self.predicted_rate(market)
                self._public(
                    _P_RATE(
                        market,
                        self._next_seq(),
                        predicted.rate_interval_ppb,
                        s["last_rate"][market],
                        (running + 1) * interval_ns,
                        interval_ns,
                    )
                )

    def predicted_rate(self, market: int) -> FundingRate:
        """The rate the running interval would pay now (its samples so far)."""
        return calc_funding_rate(self.state["samples"][market], self.config.perps[market].funding)

    def _premium_ppb(self, market: int) -> int | None:
        perp = self.config.perps[market]
        index = self.state["index"][perp.asset_id][0]
        if index <= 0:
            return None
        bids, asks = self.state["books"][market]
        tick, lot = perp.tick_size_micro, perp.lot_size_atoms
        bid_levels = [(p * tick, q * lot) for p, q in sorted(bids.items(), reverse=True)]
        ask_levels = [(p * tick, q * lot) for p, q in sorted(asks.items())]
        impact_bid = calc_impact_bid_micro(bid_levels, perp.impact_notional_micro)
        impact_ask = calc_impact_ask_micro(ask_levels, perp.impact_notional_micro)
        return calc_premium_ppb(impact_bid, impact_ask, index)

    def _settle(self, market: int, now: int) -> None:
        perp = self.config.perps[market]
        start, end = perp.delist_at_ns - perp.delist_twap_ns, perp.delist_at_ns
        twap = calc_twap_micro(self.state["history"].get(perp.asset_id, []), start, end)
        price = twap.twap_micro if twap is not None else self.state["index"][perp.asset_id][0]
        self.to_risk += _P_SETTLEMENT(market, price, start, end, now)

    # ---- outputs and state ------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self.state["seq"] += 1
        return int(self.state["seq"])

    def _public(self, msg: bytes) -> None:
        self.public += msg

    def take_outputs(self) -> tuple[list[bytes], bytes, bytes]:
        """What the last records produced: per shard, for risk, public; then cleared."""
        shards = [bytes(b) for b in self.to_shards]
        risk, public = bytes(self.to_risk), bytes(self.public)
        for b in self.to_shards:
            b.clear()
        self.to_risk.clear()
        self.public.clear()
        return shards, risk, public

    def snapshot(self) -> bytes:
        return SNAPSHOT_MAGIC + pickle.dumps(self.state, protocol=5)

    def restore(self, blob: bytes) -> None:
        if blob[: len(SNAPSHOT_MAGIC)] != SNAPSHOT_MAGIC:
            raise ValueError("not an oracle snapshot")
        state = pickle.loads(blob[len(SNAPSHOT_MAGIC) :])  # noqa: S301 - our own file, checksummed
        if set(state) != set(self.state) or set(state["books"]) != set(self.config.perps):
            raise ValueError("oracle snapshot is for another configuration")
        self.state = state

    def validate(self) -> None:
        """Raise AssertionError when an invariant does not hold (the debug switch and the tests)."""
        s, c = self.state, self.config
        for m, (bids, asks) in s["books"].items():
            assert all(q > 0 for q in bids.values()) and all(q > 0 for q in asks.values()), f"book {m}"
        for m, k in s["interval"].items():
            assert k <= s["now_ns"] // c.perps[m].funding.payment_interval_ns or m in s["settled"], (
                f"perp {m}: interval {k} runs ahead of the clock"
            )
        for m, res in s["resolution"].items():
            assert res[0] in (0, 1, 2) and res[1] in (0, 1), f"resolution {m}: {res}"
            if res[0] == ResolutionState.FINAL:
                assert s["status"][m] == MarketStatus.RESOLVED, f"market {m} resolved but not RESOLVED"
        for m in s["settled"]:
            assert s["status"].get(m, MarketStatus.RESOLVED) == MarketStatus.RESOLVED, f"perp {m} settled"
        for asset, (price, status, _ts) in s["index"].items():
            assert price >= 0 and status in (0, 1, 2), f"asset {asset}: index {price}, status {status}"

    def state_hash(self) -> str:
        return hashlib.sha256(self.snapshot()).hexdigest()

    # ---- reads for tools -------------------------------------------------------------------------
    def index_of(self, asset: int) -> tuple[int, int, int]:
        """(price micro, PriceStatus, ts) of an asset's index."""
        price, status, ts = self.state["index"][asset]
        return int(price), int(status), int(ts)

    def mark_of(self, market: int) -> int:
        return int(self.state["mark"][market])

    def ema_of(self, market: int) -> BasisEma | None:
        ema: BasisEma | None = self.state["ema"][market]
        return ema

    def kinds(self) -> dict[int, MarketKind]:
        return {m: spec.kind for m, spec in self.config.markets.items()}
