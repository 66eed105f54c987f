"""The shard's ports: what a matching engine is to the code around it (the shard process, replay,
tools, tests), as ``typing.Protocol`` classes (dYdX keeps such interfaces in an ``expected_keepers``
file; we keep them in ``ports.py`` where two packages meet).

Two implementations satisfy :class:`Engine`: the compiled core behind ``NativeEngine`` (what the shard
runs) and its Python twin ``MatchingEngine`` (the specification). ``make typecheck`` runs mypy on this
module, and the assignments at the bottom make mypy check both against the protocol, so a method
added to one and not the other, or given another signature, fails the type check rather than a
test. Behaviour (the same event bytes, the same snapshots) is held by the differential tests.

Invariants every Engine keeps: commands are 64-byte wire structs (``handle``) or the same commands as
int arguments (``place``/``cancel``/...), answered with a ``RejectCode`` (0 = ok); events go to the
sink given at construction, each market's ``seq`` gap-free; ``snapshot()`` is canonical (equal
states, equal bytes, whatever the implementation) and ``state_hash()`` hashes it. Constructors and
``restore(markets, sink, blob)`` are class-level and not part of the protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from engine.shard.event_interfaces import EventSink
from engine.types.market_spec import MarketSpec

__all__ = ["BookView", "Engine", "EventSink", "MarketView"]


class BookView(Protocol):
    """Read access to one market's book (copies of order records, ``engine.shard.order`` layout)."""

    @property
    def market_id(self) -> int: ...

    @property
    def seq(self) -> int: ...

    @property
    def last_bbo(self) -> tuple[int, int, int, int]: ...

    def bbo(self) -> tuple[int, int, int, int]: ...

    def depth(self, side: int) -> list[tuple[int, int, int]]: ...

    def order_count(self) -> int: ...

    def get(self, order_id: int) -> list[int] | None: ...

    def iter_orders(self) -> Iterator[list[int]]: ...


class MarketView(Protocol):
    """Read access to one market's engine state around its book."""

    @property
    def spec(self) -> MarketSpec: ...

    @property
    def book(self) -> BookView: ...

    @property
    def status(self) -> int: ...

    @property
    def mark(self) -> int: ...

    @property
    def last_oid(self) -> int: ...

    @property
    def stops(self) -> dict[int, list[int]]: ...


class Engine(Protocol):
    """One shard's matching state machine (see the module docstring)."""

    markets: dict[int, MarketSpec]
    sink: Any
    debug_validate: bool

    @property
    def now_ns(self) -> int: ...

    # ---- commands --------------------------------------------------------------------------------
    def handle(self, buf: Any, offset: int = 0) -> int: ...

    def handle_batch(self, buf: Any, count: int, offset: int = 0) -> None: ...

    def place(
        self,
        market_id: int,
        order_id: int,
        client_order_id: int,
        account: int,
        side: int,
        price: int,
        size: int,
        tif: int = 0,
        order_type: int = 0,
        flags: int = 0,
        trigger_ticks: int = 0,
        expire_ns: int = 0,
    ) -> int: ...

    def cancel(self, market_id: int, order_id: int, client_order_id: int, account: int) -> int: ...

    def amend(
        self,
        market_id: int,
        order_id: int,
        client_order_id: int,
        account: int,
        price_ticks: int,
        size_lots: int,
    ) -> int: ...

    def cancel_all(self, market_id: int, account: int) -> int: ...

    def set_mark(self, market_id: int, price_ticks: int, ts_ns: int = 0) -> int: ...

    def set_status(self, market_id: int, status: int) -> int: ...

    def advance_clock(self, now_ns: int, market_id: int = ...) -> int: ...

    # ---- queries ---------------------------------------------------------------------------------
    def book(self, market_id: int) -> BookView: ...

    def market(self, market_id: int) -> MarketView: ...

    def market_ids(self) -> list[int]: ...

    # ---- invariants, hashing, snapshots ----------------------------------------------------------
    def validate(self) -> None: ...

    def snapshot(self) -> bytes: ...

    def state_hash(self) -> bytes: ...


if TYPE_CHECKING:  # static conformance: mypy checks both implementations against the protocol
    from engine.shard.matching_engine import MatchingEngine
    from engine.shard.native_engine import NativeBookView, NativeEngine, NativeMarketView

    def _conforms(
        native: NativeEngine, twin: MatchingEngine, book: NativeBookView, view: NativeMarketView
    ) -> None:
        _core: Engine = native
        _twin: Engine = twin
        _book: BookView = book
        _view: MarketView = view
