"""An on-chain price feed for the oracle: any Chainlink ``AggregatorV3Interface`` feed, read from a thread.

The adapter reads exactly the published interface (``decimals``, ``latestRoundData``: round id,
answer, ``updatedAt``), so it reads a real Chainlink feed given its address and RPC URL as well as
the local ``HxPriceAggregator``. A thread polls every ``every_ms``; each *new* round (a round id
not seen before) becomes one quote: the answer scaled by the feed's decimals as an exact decimal
string (``"6400012345678e-8"``), timestamped with the round's ``updatedAt`` (so a feed that stops
updating goes stale in the oracle by its own clock, whatever the poll rate). Errors (RPC down, a
revert such as "No data present") are counted and retried; they never reach the oracle's loop. The
oracle parses and judges every quote at its edge (NaN-free by construction here, but zero,
negative or old answers are dropped there with their reason) and journals it, so a replay never
calls the chain.

Implements :class:`engine.oracle.ports.PriceSource`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from engine.oracle.ports import RawQuote

NS_PER_S = 10**9

# The AggregatorV3Interface ABI as Chainlink publishes it (the five read functions).
AGGREGATOR_V3_ABI: list[dict[str, Any]] = [
    {
        "inputs": [],
        "name": "decimals",
        "outputs": [{"internalType": "uint8", "name": "", "type": "uint8"}],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [],
        "name": "description",
        "outputs": [{"internalType": "string", "name": "", "type": "string"}],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [],
        "name": "version",
        "outputs": [{"internalType": "uint256", "name": "", "type": "uint256"}],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [{"internalType": "uint80", "name": "_roundId", "type": "uint80"}],
        "name": "getRoundData",
        "outputs": [
            {"internalType": "uint80", "name": "roundId", "type": "uint80"},
            {"internalType": "int256", "name": "answer", "type": "int256"},
            {"internalType": "uint256", "name": "startedAt", "type": "uint256"},
            {"internalType": "uint256", "name": "updatedAt", "type": "uint256"},
            {"internalType": "uint80", "name": "answeredInRound", "type": "uint80"},
        ],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [],
        "name": "latestRoundData",
        "outputs": [
            {"internalType": "uint80", "name": "roundId", "type": "uint80"},
            {"internalType": "int256", "name": "answer", "type": "int256"},
            {"internalType": "uint256", "name": "startedAt", "type": "uint256"},
            {"internalType": "uint256", "name": "updatedAt", "type": "uint256"},
            {"internalType": "uint80", "name": "answeredInRound", "type": "uint80"},
        ],
        "stateMutability": "view",
        "type": "function",
    },
]


def round_to_quote(answer: int, decimals: int, updated_at_s: int) -> RawQuote:
    """One round as the oracle's raw quote: the exact decimal answer and its time in ns."""
    return RawQuote(f"{answer}e-{decimals}" if decimals else str(answer), updated_at_s * NS_PER_S)


class ChainlinkSource:
    """One feed of one asset read from an ``AggregatorV3Interface`` contract.

    Parameters
    ----------
    asset_id, feed, name
        Where the quotes go in the oracle (the config's asset and the feed's index among its sources).
    rpc_url, address
        The chain's JSON-RPC endpoint and the feed contract.
    every_ms
        Poll period of the reading thread.
    start
        Start the thread now (tests may call :meth:`read_once` instead).
    """

    def __init__(
        self,
        asset_id: int,
        feed: int,
        name: str,
        rpc_url: str,
        address: str,
        every_ms: int = 1000,
        start: bool = True,
        perp_market: int = 0,
    ) -> None:
        from web3 import HTTPProvider, Web3

        self.asset_id, self.feed, self.name = asset_id, feed, name
        self.perp_market = perp_market  # 0: an index feed; else an external mid of this perp
        self.w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 5}))
        self.contract = self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=AGGREGATOR_V3_ABI)
        self.every_s = every_ms / 1000
        self.decimals: int | None = None
        self.last_round = 0
        self.errors = 0
        self.last_error = ""
        self._pending: list[RawQuote] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name=f"chainlink-{name}", daemon=True)
            self._thread.start()

    def read_once(self) -> bool:
        """Read the latest round; queue it if it is new. False on an error (counted, kept)."""
        try:
            if self.decimals is None:
                self.decimals = int(self.contract.functions.decimals().call())
            round_id, answer, _started, updated_at, _answered = (
                self.contract.functions.latestRoundData().call()
            )
        except Exception as exc:  # an RPC error or a revert: the feed is silent, the oracle sees it stale
            self.errors += 1
            self.last_error = repr(exc)[:200]
            return False
        if round_id != self.last_round:
            self.last_round = int(round_id)
            with self._lock:
                self._pending.append(round_to_quote(int(answer), self.decimals, int(updated_at)))
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self.read_once()
            self._stop.wait(self.every_s)

    def poll(self, now_ns: int) -> Sequence[RawQuote]:
        with self._lock:
            out, self._pending = self._pending, []
        return out

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def make_chainlink_sources(configs: Sequence[Any]) -> list[ChainlinkSource]:
    """The oracle's adapter factory (``OracleOptions.adapter_factory``): one source per chainlink
    feed of the config (``engine.oracle.oracle_config.SourceConfig``)."""
    return [
        ChainlinkSource(
            c.asset_id, c.feed, c.name, c.rpc_url, c.address, c.every_ms, perp_market=c.perp_market
        )
        for c in configs
        if c.kind == "chainlink"
    ]
