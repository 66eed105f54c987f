"""``OrderBook``: the fast price-time priority book of one market (its twin: ``reference_book``).

Structure (per side): ``dict key -> Level`` and a sorted ascending ``list`` of keys, where the key
is ``price`` for bids and ``-price`` for asks, so the best level of either side is ``keys[-1]``
(O(1) peek and pop; ``bisect.insort`` for a new level, cheap at realistic level counts). A Level
(a small native class: ``size``, ``count``, ``queue``, ``price``) keeps its orders in a ``deque`` in time priority with *lazy deletion*: a cancelled order is marked
(``o[O_OPEN] = 0``) and left in the deque; the level's ``size``/``count`` are updated at once and
matching skips dead entries; a level whose dead entries outnumber the live ones is compacted. Orders
are plain lists (``engine.shard.order``). Indexes: ``order_id -> order``; ``account -> order`` for
an account with one resting order, ``account -> {order_id: order}`` once it has more (cancel-all is
O(own orders); no dict per single-order account); ``(account, client_order_id) -> order`` (live
only) for orders whose client order id differs from their order id -- an order with coid == oid is
found through ``order_id -> order`` instead, so the common coid == oid case costs no index entry.

The book receives commands the engine has already validated; it never rejects. It emits FILL,
TRADE, CANCELLED, AMENDED (self-trade decrement, reduce), L2_DELTA and BBO events with the market's
``seq``; the engine emits ACCEPTED/REJECTED/TRIGGERED/MARKET_STATUS through the same ``seq``.

Event order inside one command (both books follow it exactly; the tests compare event streams):
per opposite level swept: its FILL, TRADE and self-trade events in queue order, then one L2 for the
level; then the taker's fate (CANCELLED for a remainder, or the L2 of the level it rests on); BBO
last, only if it changed (``flush_bbo``). Mass cancels emit all CANCELLED first, then one L2 per
touched level in (side, price) order.

Invariants (``validate``): not crossed; a level's size/count equal the sum/number of its live
orders; no empty level; keys sorted and equal to the level dict; every index consistent.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from engine.shard.event_sink import sink_method
from engine.shard.order import O_ACCOUNT, O_COID, O_EXPIRE, O_OID, O_OPEN, O_PRICE, O_SIDE
from engine.types.enums import CancelReason, RejectCode, StpMode

# Module constants, bound once (Final: never rebound).
_SELF_TRADE: Final = int(CancelReason.SELF_TRADE)
_CANCEL_NEWEST: Final = int(StpMode.CANCEL_NEWEST)
_CANCEL_OLDEST: Final = int(StpMode.CANCEL_OLDEST)
_CANCEL_BOTH: Final = int(StpMode.CANCEL_BOTH)
_DUP_COID: Final = int(RejectCode.DUPLICATE_CLIENT_ORDER_ID)
_UNKNOWN_ORDER: Final = int(RejectCode.UNKNOWN_ORDER)

EventCallback = Callable[..., object]


class Level:
    """One price level (a native class once compiled: typed attributes, no boxing)."""

    __slots__ = ("size", "count", "queue", "price")

    def __init__(self, price: int) -> None:
        self.size = 0  # live open lots at the level
        self.count = 0  # live orders at the level
        # order records in time priority, including dead ones (open == 0)
        self.queue: deque[list[int]] = deque()
        self.price = price


class OrderBook:
    """Price-time priority book of one market. See the module docstring."""

    __slots__ = (
        "market_id",
        "seq",
        "now_ns",
        "last_bbo",
        "_levels",
        "_keys",
        "_orders",
        "_by_account",
        "_by_coid",
        "_bbo_dirty",
        "_on_accepted",
        "_on_fill",
        "_on_trade",
        "_on_l2",
        "_on_cancelled",
        "_on_amended",
        "_on_bbo",
    )

    def __init__(self, market_id: int, sink: Any) -> None:
        self.market_id = market_id
        self.seq = 0  # the market's event sequence: the last seq emitted
        self.now_ns = 0  # engine clock, stamped on events
        # last BBO emitted (bid px, bid size, ask px, ask size)
        self.last_bbo: tuple[int, int, int, int] = (0, 0, 0, 0)
        # callbacks; None when the sink does not want that kind (seq still advances)
        self._on_accepted: EventCallback | None = sink_method(sink, "on_accepted")
        self._on_fill: EventCallback | None = sink_method(sink, "on_fill")
        self._on_trade: EventCallback | None = sink_method(sink, "on_trade")
        self._on_l2: EventCallback | None = sink_method(sink, "on_l2")
        self._on_cancelled: EventCallback | None = sink_method(sink, "on_cancelled")
        self._on_amended: EventCallback | None = sink_method(sink, "on_amended")
        self._on_bbo: EventCallback | None = sink_method(sink, "on_bbo")
        # per side (0 bids, 1 asks): key -> level, and the sorted keys
        self._levels: list[dict[int, Level]] = [{}, {}]
        self._keys: list[list[int]] = [[], []]
        self._orders: dict[int, list[int]] = {}
        # account -> its one resting order (the common case: no per-account dict), or a dict
        # order_id -> order once it has two or more (it stays a dict until the account has none)
        self._by_account: dict[int, Any] = {}
        # (account, client_order_id) -> order, only for orders whose coid differs from their order
        # id: an order with coid == oid is found through ``_orders`` (see ``get_by_client_id``)
        self._by_coid: dict[tuple[int, int], list[int]] = {}
        self._bbo_dirty = False

    # ---- queries ---------------------------------------------------------------------------------
    def get(self, order_id: int) -> list[int] | None:
        return self._orders.get(order_id)

    def get_by_client_id(self, account: int, client_order_id: int) -> list[int] | None:
        if not client_order_id:
            return None
        o = self._orders.get(client_order_id)
        if o is not None and o[O_COID] == client_order_id and o[O_ACCOUNT] == account:
            return o
        return self._by_coid.get((account, client_order_id)) if self._by_coid else None

    def orders_of(self, account: int) -> list[list[int]]:
        """The account's resting orders in order-id order."""
        own = self._by_account.get(account)
        if own is None:
            return []
        if type(own) is list:
            return [own]
        return [own[k] for k in sorted(own)]

    def order_count(self) -> int:
        return len(self._orders)

    def open_count(self, account: int) -> int:
        """How many orders ``account`` has resting in this book."""
        own = self._by_account.get(account)
        return 0 if own is None else 1 if type(own) is list else len(own)

    def level_size(self, side: int, price: int) -> int:
        """Total open size resting at ``price`` on ``side`` (0 when there is no such level)."""
        lvl = self._levels[side].get(price if side == 0 else -price)
        return 0 if lvl is None else lvl.size

    def would_cross(self, side: int, price: int) -> bool:
        """Would an order at ``price`` on ``side`` meet at least one resting opposite order?"""
        keys = self._keys[side ^ 1]
        return bool(keys) and keys[-1] >= (-price if side == 0 else price)

    def best_price(self, side: int) -> int:
        """Best price on ``side``, 0 if empty."""
        keys = self._keys[side]
        if not keys:
            return 0
        return keys[-1] if side == 0 else -keys[-1]

    def fillable(self, side: int, price: int, size: int, account: int, stp: int) -> bool:
        """Could a taker fill ``size`` in full right now (FOK)? Own orders met on the way: skipped under
        cancel-oldest (they would be cancelled), fatal under every other STP mode (the taker would be
        cancelled or decremented); plain liquidity when stp is NONE."""
        okeys = self._keys[side ^ 1]
        levels = self._levels[side ^ 1]
        lk = -price if side == 0 else price
        need = size
        if not stp or account not in self._by_account:
            for i in range(len(okeys) - 1, -1, -1):
                key = okeys[i]
                if key < lk:
                    return False
                need -= levels[key].size
                if need <= 0:
                    return True
            return False
        for i in range(len(okeys) - 1, -1, -1):
            key = okeys[i]
            if key < lk:
                return False
            for o in levels[key].queue:
                if not o[O_OPEN]:
                    continue
                if o[O_ACCOUNT] == account:
                    if stp == _CANCEL_OLDEST:
                        continue
                    return False
                need -= o[O_OPEN]
                if need <= 0:
                    return True
        return False

    def bbo(self) -> tuple[int, int, int, int]:
        bk = self._keys[0]
        ak = self._keys[1]
        bp = bs = ap = az = 0
        if bk:
            lvl = self._levels[0][bk[-1]]
            bp = lvl.price
            bs = lvl.size
        if ak:
            lvl = self._levels[1][ak[-1]]
            ap = lvl.price
            az = lvl.size
        return bp, bs, ap, az

    def depth(self, side: int) -> list[tuple[int, int, int]]:
        """(price, size, count) per level, best first."""
        levels = self._levels[side]
        return [(levels[k].price, levels[k].size, levels[k].count) for k in reversed(self._keys[side])]

    def iter_orders(self) -> Iterator[list[int]]:
        """Every resting order: bids best level first, then asks best first; time priority in a level."""
        for side in (0, 1):
            levels = self._levels[side]
            for key in reversed(self._keys[side]):
                for o in levels[key].queue:
                    if o[O_OPEN]:
                        yield o

    # ---- emission helpers (cold paths) -----------------------------------------------------------
    def _emit_l2(self, side: int, lvl: Level) -> None:
        self.seq += 1
        if self._on_l2 is not None:
            self._on_l2(self.market_id, self.seq, lvl.price, lvl.size, lvl.count, side)

    def _emit_cancelled(self, oid: int, coid: int, size: int, account: int, reason: int, side: int) -> None:
        self.seq += 1
        if self._on_cancelled is not None:
            self._on_cancelled(self.market_id, self.seq, oid, coid, size, self.now_ns, account, reason, side)

    def _emit_amended(self, oid: int, coid: int, price: int, open_lots: int, account: int, kept: int) -> None:
        self.seq += 1
        if self._on_amended is not None:
            self._on_amended(self.market_id, self.seq, oid, coid, price, open_lots, account, kept)

    # ---- commands (validated by the engine) ------------------------------------------------------
    def submit(
        self,
        oid: int,
        coid: int,
        account: int,
        side: int,
        price: int,
        size: int,
        tif: int,
        order_type: int,
        flags: int,
        expire_ns: int,
        remainder_reason: int,
        filled: int = 0,
        accept: bool = True,
    ) -> int:
        """Accept (emit ACCEPTED when ``accept``), match, then rest the remainder (``remainder_reason <
        0``) or cancel it with that CancelReason; BBO last. ``filled`` carries lots filled earlier (an
        amended order). Returns DUPLICATE_CLIENT_ORDER_ID, with nothing changed, if ``coid`` is live for
        the account; else 0."""
        if coid:
            # a live order with this coid: indexed in _by_coid, or its order id equals the coid (the
            # order being submitted is never live itself, so coid == oid needs only the index)
            if self._by_coid and (account, coid) in self._by_coid:
                return _DUP_COID
            if coid != oid:
                x = self._orders.get(coid)
                if x is not None and x[6] == coid and x[1] == account:
                    return _DUP_COID
        if accept:
            self.seq += 1
            if self._on_accepted is not None:
                self._on_accepted(
                    self.market_id,
                    self.seq,
                    oid,
                    coid,
                    price,
                    size,
                    self.now_ns,
                    account,
                    side,
                    tif,
                    order_type,
                    flags,
                )
        keys = self._keys
        okeys = keys[side ^ 1]
        if okeys and okeys[-1] >= (-price if side == 0 else price):
            size, traded = self._match(oid, coid, account, side, price, size, (flags >> 4) & 7)
            filled += traded
            if not size:
                self.flush_bbo()
                return 0
        if remainder_reason >= 0:
            self._emit_cancelled(oid, coid, size, account, remainder_reason, side)
            self.flush_bbo()
            return 0
        # rest
        key = price if side == 0 else -price
        levels = self._levels[side]
        skeys = keys[side]
        lvl = levels.get(key)
        if lvl is None:
            lvl = levels[key] = Level(price)
            if not skeys or key > skeys[-1]:
                skeys.append(key)
                self._bbo_dirty = True
            else:
                insort(skeys, key)
        elif key == skeys[-1]:
            self._bbo_dirty = True
        o = [oid, account, side, price, size, filled, coid, tif, 0, flags, expire_ns, 0]
        lvl.queue.append(o)
        lvl.size += size
        lvl.count += 1
        self._orders[oid] = o
        own = self._by_account.setdefault(account, o)
        if own is not o:
            self._index_more(account, own, o)
        if coid and coid != oid:
            self._by_coid[(account, coid)] = o
        self.seq += 1
        if self._on_l2 is not None:
            self._on_l2(self.market_id, self.seq, price, lvl.size, lvl.count, side)
        if self._bbo_dirty:
            self.flush_bbo()
        return 0

    def _match(
        self, oid: int, coid: int, account: int, side: int, price: int, rem: int, stp: int
    ) -> tuple[int, int]:
        """Sweep the opposite side from its best level while it crosses ``price``.

        Returns (open size left, lots traded); the size left is 0 when self-trade prevention
        cancelled the taker (its CANCELLED is emitted here)."""
        mid = self.market_id
        oside = side ^ 1
        levels = self._levels[oside]
        keys = self._keys[oside]
        orders = self._orders
        by_account = self._by_account
        by_coid = self._by_coid
        on_fill = self._on_fill
        on_trade = self._on_trade
        on_l2 = self._on_l2
        now = self.now_ns
        lk = -price if side == 0 else price
        seq = self.seq
        traded = 0
        stop = False
        self._bbo_dirty = True
        while keys:
            key = keys[-1]
            if key < lk:
                break
            lvl = levels[key]
            q = lvl.queue
            px = lvl.price
            size0 = lvl.size
            while rem and lvl.count:
                m = q[0]
                mo = m[4]
                if not mo:
                    q.popleft()
                    continue
                if stp and m[1] == account:
                    self.seq = seq
                    if stp == _CANCEL_NEWEST:
                        stop = True
                        break
                    if stp == _CANCEL_OLDEST or stp == _CANCEL_BOTH:
                        m[4] = 0
                        q.popleft()
                        lvl.size -= mo
                        lvl.count -= 1
                        self._unindex(m)
                        self._emit_cancelled(m[0], m[6], mo, m[1], _SELF_TRADE, oside)
                        seq = self.seq
                        if stp == _CANCEL_BOTH:
                            stop = True
                            break
                        continue
                    # DECREMENT: both lose the overlap, no trade
                    d = rem if rem < mo else mo
                    rem -= d
                    mo -= d
                    m[4] = mo
                    lvl.size -= d
                    if mo:
                        self._emit_amended(m[0], m[6], px, mo, m[1], 1)
                    else:
                        q.popleft()
                        lvl.count -= 1
                        self._unindex(m)
                        self._emit_cancelled(m[0], m[6], d, m[1], _SELF_TRADE, oside)
                    if rem:
                        self._emit_amended(oid, coid, price, rem, account, 1)
                    else:
                        self._emit_cancelled(oid, coid, d, account, _SELF_TRADE, side)
                    seq = self.seq
                    continue
                if rem < mo:
                    t = rem
                    m[4] = mo - t
                    m[5] += t
                    rem = 0
                    lvl.size -= t
                    traded += t
                    seq += 1
                    if on_fill is not None:
                        on_fill(mid, seq, oid, m[0], px, t, account, m[1], side, 1)
                else:
                    t = mo
                    rem -= mo
                    m[4] = 0
                    m[5] += mo
                    q.popleft()
                    lvl.size -= mo
                    lvl.count -= 1
                    traded += mo
                    moid = m[0]
                    del orders[moid]
                    acct = m[1]
                    own = by_account.pop(acct)
                    if own is not m:
                        del own[moid]
                        if own:
                            by_account[acct] = own
                    if m[6] and m[6] != moid:
                        del by_coid[(acct, m[6])]
                    seq += 1
                    if on_fill is not None:
                        on_fill(mid, seq, oid, moid, px, t, account, acct, side, 3 if not rem else 2)
                seq += 1
                if on_trade is not None:
                    on_trade(mid, seq, px, t, now, side)
            if lvl.size != size0:
                seq += 1
                if on_l2 is not None:
                    on_l2(mid, seq, px, lvl.size, lvl.count, oside)
            if not lvl.count:
                keys.pop()
                del levels[key]
            if stop or not rem:
                break
        self.seq = seq
        if stop and rem:
            self._emit_cancelled(oid, coid, rem, account, _SELF_TRADE, side)
            rem = 0
        return rem, traded

    def _index_more(self, account: int, own: Any, o: list[int]) -> None:
        """Add ``o`` to the account index of an account that already has resting orders."""
        if type(own) is list:
            self._by_account[account] = {own[O_OID]: own, o[O_OID]: o}
        else:
            own[o[O_OID]] = o

    def _unindex(self, o: list[int]) -> None:
        oid = o[O_OID]
        acct = o[O_ACCOUNT]
        del self._orders[oid]
        own = self._by_account.pop(acct)
        if own is not o:
            del own[oid]
            if own:
                self._by_account[acct] = own
        if o[O_COID] and o[O_COID] != oid:
            del self._by_coid[(acct, o[O_COID])]

    def _detach(self, o: list[int]) -> Level:
        """Take a resting order out of its level and the indexes (no event); returns the level."""
        side = o[O_SIDE]
        key = o[O_PRICE] if side == 0 else -o[O_PRICE]
        lvl = self._levels[side][key]
        keys = self._keys[side]
        if key == keys[-1]:
            self._bbo_dirty = True
        lvl.size -= o[O_OPEN]
        lvl.count -= 1
        o[O_OPEN] = 0
        self._unindex(o)
        if not lvl.count:
            del self._levels[side][key]
            if key == keys[-1]:
                keys.pop()
            else:
                del keys[bisect_left(keys, key)]
        elif len(lvl.queue) > 2 * lvl.count + 32:
            lvl.queue = deque([x for x in lvl.queue if x[O_OPEN]])
        return lvl

    def cancel_by_id(self, order_id: int, account: int, reason: int) -> int:
        """Cancel a resting order of ``account`` (CANCELLED, L2, BBO): 0, or UNKNOWN_ORDER with
        nothing changed, also for another account's order (whose existence is not the caller's to
        learn). (The hot path of ``cancel``/``_detach``, inlined.)"""
        o = self._orders.pop(order_id, None)
        if o is None:
            return _UNKNOWN_ORDER
        if o[1] != account:
            self._orders[order_id] = o  # put back (the index's order is not observable)
            return _UNKNOWN_ORDER
        side = o[2]
        price = o[3]
        size = o[4]
        key = price if side == 0 else -price
        levels = self._levels[side]
        lvl = levels[key]
        keys = self._keys[side]
        lvl.size -= size
        lvl.count -= 1
        o[4] = 0
        own = self._by_account.pop(account)
        if own is not o:
            del own[order_id]
            if own:
                self._by_account[account] = own
        coid = o[6]
        if coid and coid != order_id:
            del self._by_coid[(account, coid)]
        best = key == keys[-1]
        if not lvl.count:
            del levels[key]
            if best:
                keys.pop()
            else:
                del keys[bisect_left(keys, key)]
        elif len(lvl.queue) > 2 * lvl.count + 32:
            lvl.queue = deque([x for x in lvl.queue if x[4]])
        mid = self.market_id
        seq = self.seq + 1
        if self._on_cancelled is not None:
            self._on_cancelled(mid, seq, order_id, coid, size, self.now_ns, account, reason, side)
        seq += 1
        self.seq = seq
        if self._on_l2 is not None:
            self._on_l2(mid, seq, price, lvl.size, lvl.count, side)
        if best:
            self._bbo_dirty = True
            self.flush_bbo()
        return 0

    def cancel(self, o: list[int], reason: int) -> None:
        """Cancel a resting order: CANCELLED (its open size), L2 of its level, BBO if it changed."""
        size = o[O_OPEN]
        lvl = self._detach(o)
        self._emit_cancelled(o[O_OID], o[O_COID], size, o[O_ACCOUNT], reason, o[O_SIDE])
        self._emit_l2(o[O_SIDE], lvl)
        if self._bbo_dirty:
            self.flush_bbo()

    def remove(self, o: list[int]) -> None:
        """Take a resting order out without a CANCELLED (amend that loses priority): the L2 only."""
        lvl = self._detach(o)
        self._emit_l2(o[O_SIDE], lvl)

    def reduce(self, o: list[int], new_open: int) -> None:
        """Lower a resting order's open size in place (keeps priority): AMENDED, L2, BBO."""
        side = o[O_SIDE]
        key = o[O_PRICE] if side == 0 else -o[O_PRICE]
        lvl = self._levels[side][key]
        lvl.size -= o[O_OPEN] - new_open
        o[O_OPEN] = new_open
        if key == self._keys[side][-1]:
            self._bbo_dirty = True
        self._emit_amended(o[O_OID], o[O_COID], o[O_PRICE], new_open, o[O_ACCOUNT], 1)
        self._emit_l2(side, lvl)
        self.flush_bbo()

    def cancel_many(self, victims: Iterable[list[int]], reason: int) -> None:
        """Cancel orders in the given order (CANCELLED each), then one L2 per touched level by (side,
        price), then BBO."""
        touched: dict[tuple[int, int], Level] = {}
        for o in list(victims):
            size = o[O_OPEN]
            lvl = self._detach(o)
            touched[(o[O_SIDE], lvl.price)] = lvl
            self._emit_cancelled(o[O_OID], o[O_COID], size, o[O_ACCOUNT], reason, o[O_SIDE])
        for side, price in sorted(touched):
            self._emit_l2(side, touched[(side, price)])
        self.flush_bbo()

    def flush_bbo(self) -> None:
        """Emit BBO if the top of book changed since the last BBO (once, at the end of a command)."""
        if self._bbo_dirty:
            self._bbo_dirty = False
            bk = self._keys[0]
            ak = self._keys[1]
            bp = bs = ap = az = 0
            if bk:
                lvl = self._levels[0][bk[-1]]
                bp = lvl.price
                bs = lvl.size
            if ak:
                lvl = self._levels[1][ak[-1]]
                ap = lvl.price
                az = lvl.size
            last = self.last_bbo
            if bp != last[0] or bs != last[1] or ap != last[2] or az != last[3]:
                self.last_bbo = (bp, bs, ap, az)
                self.seq += 1
                if self._on_bbo is not None:
                    self._on_bbo(self.market_id, self.seq, bp, bs, ap, az, self.now_ns)

    def restore_order(self, o: list[int]) -> None:
        """Append a resting order at the back of its level, no events (snapshot restore, priority order)."""
        side = o[O_SIDE]
        price = o[O_PRICE]
        key = price if side == 0 else -price
        levels = self._levels[side]
        lvl = levels.get(key)
        if lvl is None:
            lvl = levels[key] = Level(price)
            insort(self._keys[side], key)
        lvl.queue.append(o)
        lvl.size += o[O_OPEN]
        lvl.count += 1
        self._orders[o[O_OID]] = o
        own = self._by_account.setdefault(o[O_ACCOUNT], o)
        if own is not o:
            self._index_more(o[O_ACCOUNT], own, o)
        if o[O_COID] and o[O_COID] != o[O_OID]:
            self._by_coid[(o[O_ACCOUNT], o[O_COID])] = o

    # ---- invariants ------------------------------------------------------------------------------
    def validate(self) -> None:
        """Assert every structural invariant (see the module docstring). O(book)."""
        seen: dict[int, list[int]] = {}
        for side in (0, 1):
            levels, keys = self._levels[side], self._keys[side]
            assert keys == sorted(keys), f"side {side} keys unsorted"
            assert len(set(keys)) == len(keys) and set(keys) == set(levels), f"side {side} keys != levels"
            for key in keys:
                lvl = levels[key]
                size, cnt, queue, price = lvl.size, lvl.count, lvl.queue, lvl.price
                assert price == (key if side == 0 else -key), "level price/key mismatch"
                live = [o for o in queue if o[O_OPEN]]
                assert live, f"empty level {price} on side {side}"
                assert cnt == len(live), f"level {price}: count {cnt} != {len(live)}"
                assert size == sum(o[O_OPEN] for o in live), f"level {price}: size mismatch"
                for o in live:
                    assert o[O_OPEN] > 0 and o[O_SIDE] == side and o[O_PRICE] == price
                    assert o[O_OID] not in seen, f"order {o[O_OID]} twice"
                    seen[o[O_OID]] = o
        bk, ak = self._keys[0], self._keys[1]
        if bk and ak:
            assert bk[-1] < -ak[-1], f"book crossed: bid {bk[-1]} >= ask {-ak[-1]}"
        assert seen.keys() == self._orders.keys(), "order index != resting orders"
        for oid, o in self._orders.items():
            assert seen[oid] is o, f"order {oid}: index points at a stale record"
            own = self._by_account[o[O_ACCOUNT]]
            if type(own) is list:
                assert own is o, f"order {oid} missing from account index"
            else:
                assert own[oid] is o, f"order {oid} missing from account index"
            if o[O_COID] and o[O_COID] != oid:
                assert self._by_coid[(o[O_ACCOUNT], o[O_COID])] is o, f"order {oid} missing from coid index"
            assert self.get_by_client_id(o[O_ACCOUNT], o[O_COID]) is (o if o[O_COID] else None)
        assert sum(1 if type(v) is list else len(v) for v in self._by_account.values()) == len(
            self._orders
        ), "account index size"
        assert all(self._by_account.values()), "empty account entry"
        assert len(self._by_coid) == sum(
            1 for oid, o in self._orders.items() if o[O_COID] and o[O_COID] != oid
        ), "coid index size"
        assert all(o[O_EXPIRE] >= 0 for o in self._orders.values())
        assert not self._bbo_dirty and self.bbo() == self.last_bbo, "BBO changed without an event"
