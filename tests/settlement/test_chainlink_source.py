"""The on-chain price adapter against a real anvil: the HxPriceAggregator read through the exact
AggregatorV3Interface ABI, each new round once, its updatedAt as the quote's time; errors counted,
never raised; the quotes judged by the oracle engine like any feed's."""

from __future__ import annotations

import time
from typing import Any

import pytest

from engine.math.oracle_index import DropReason, parse_price_micro
from engine.oracle.oracle_config import SourceConfig
from settlement.anvil import DEV_PRIVATE_KEYS
from settlement.chain import Artifact, Chain
from settlement.chainlink_source import ChainlinkSource, make_chainlink_sources, round_to_quote

NS = 10**9


@pytest.fixture(scope="module")
def aggregator_artifact(artifacts: dict[str, Artifact]) -> Artifact:
    return Artifact.load("HxPriceAggregator")


def _feed(deployer: Chain, artifact: Artifact, decimals: int = 8) -> Any:
    contract, _ = deployer.deploy(artifact, decimals, "BTC / USD", deployer.address)
    return contract


def test_round_to_quote_is_exact() -> None:
    q = round_to_quote(6_400_012_345_678, 8, 1_700_000_000)
    assert parse_price_micro(q.price) == (64_000_123_457, DropReason.NONE)  # half-even at the 7th decimal
    assert q.source_ts_ns == 1_700_000_000 * NS
    assert parse_price_micro(round_to_quote(64_000, 0, 1).price) == (64_000_000_000, DropReason.NONE)
    assert parse_price_micro(round_to_quote(-500, 8, 1).price)[0] == -5  # judged NON_POSITIVE by the oracle


def test_reads_each_new_round_once_with_its_updated_at(
    anvil: Any, deployer: Chain, aggregator_artifact: Artifact, snapshot: None
) -> None:
    feed = _feed(deployer, aggregator_artifact)
    source = ChainlinkSource(1, 0, "chain", anvil.url, feed.address, start=False)
    assert source.read_once() is False  # no round yet: "No data present", counted
    assert source.errors == 1 and "No data present" in source.last_error
    assert source.poll(0) == []
    receipt = deployer.transact(feed.functions.submit(6_400_000_000_000))
    stamp = deployer.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert source.read_once() and source.read_once()  # the same round twice: queued once
    (quote,) = source.poll(0)
    assert parse_price_micro(quote.price) == (64_000_000_000, DropReason.NONE)
    assert quote.source_ts_ns == stamp * NS
    deployer.transact(feed.functions.submit(6_410_050_000_000))
    source.read_once()
    assert [parse_price_micro(q.price)[0] for q in source.poll(0)] == [64_100_500_000]
    assert source.decimals == 8 and source.last_round == 2


def test_the_thread_polls_and_stops(
    anvil: Any, deployer: Chain, aggregator_artifact: Artifact, snapshot: None
) -> None:
    feed = _feed(deployer, aggregator_artifact, decimals=18)
    deployer.transact(feed.functions.submit(3_300 * 10**18))

    config = SourceConfig(2, 0, "eth", "chainlink", every_ms=50, rpc_url=anvil.url, address=feed.address)
    (source,) = make_chainlink_sources([config])
    try:
        deadline = time.monotonic() + 10
        quotes: list[Any] = []
        while not quotes and time.monotonic() < deadline:
            quotes = list(source.poll(0))
            time.sleep(0.05)
        assert [parse_price_micro(q.price)[0] for q in quotes] == [3_300_000_000]
    finally:
        source.close()
    assert source._thread is not None and not source._thread.is_alive()


def test_an_unreachable_chain_is_an_error_count_not_an_exception() -> None:
    from settlement.anvil import find_free_port

    source = ChainlinkSource(
        1, 0, "down", f"http://127.0.0.1:{find_free_port()}", "0x" + "11" * 20, start=False
    )
    assert source.read_once() is False and source.errors == 1
    assert DEV_PRIVATE_KEYS  # the fixtures' key set is unchanged


def test_the_oracle_engine_indexes_a_chain_feed_and_drops_its_stale_round(
    anvil: Any, deployer: Chain, aggregator_artifact: Artifact, snapshot: None
) -> None:
    import copy
    import tomllib
    from pathlib import Path

    from engine.oracle.oracle_config import oracle_config_from
    from engine.oracle.oracle_engine import OracleEngine
    from engine.oracle.process import BATCH_HEADER, HEADER_SLOT, TICK, apply_record, quote_slots

    feed = _feed(deployer, aggregator_artifact)
    receipt = deployer.transact(feed.functions.submit(6_400_000_000_000))
    stamp = deployer.w3.eth.get_block(receipt["blockNumber"])["timestamp"] * NS
    doc = copy.deepcopy(tomllib.loads((Path(__file__).parents[2] / "config" / "hx.toml").read_text()))
    source = {"asset": "BTC", "kind": "chainlink", "rpc_url": anvil.url, "address": feed.address}
    doc["oracle"] = {"min_sources": 1, "staleness_ms": 60_000, "source": [source]}
    config = oracle_config_from(doc)
    assert config is not None
    engine = OracleEngine(config, 1)
    (adapter,) = make_chainlink_sources(config.sources)
    try:
        deadline = time.monotonic() + 10
        slots = b""
        while not slots and time.monotonic() < deadline:
            slots = quote_slots([adapter], stamp + NS)
            time.sleep(0.05)
        for now, body in ((stamp + NS, slots), (stamp + 61 * NS, b"")):
            record = BATCH_HEADER.pack(TICK, 0, 0, 0, now, len(body) // 64).ljust(HEADER_SLOT, b"\0") + body
            apply_record(engine, record, 0)
            if body:
                assert engine.index_of(1)[:2] == (64_000_000_000, 0)
        assert engine.index_of(1)[1] == 1  # a minute later without a new round: stale
        assert [v.reason for v in engine.verdicts[1]] == [DropReason.STALE]
    finally:
        adapter.close()


def test_the_oracle_process_builds_chain_feeds_through_the_factory_the_composition_root_names() -> None:
    import copy
    import tomllib
    from pathlib import Path

    from engine.oracle.oracle_config import oracle_config_from
    from engine.oracle.process import make_sources
    from hx.stages import ORACLE_ADAPTER_FACTORY

    doc = copy.deepcopy(tomllib.loads((Path(__file__).parents[2] / "config" / "hx.toml").read_text()))
    chain = {
        "asset": "BTC",
        "name": "cl",
        "kind": "chainlink",
        "rpc_url": "http://127.0.0.1:9",
        "address": "0x" + "22" * 20,
    }
    doc["oracle"]["source"].append(chain)
    config = oracle_config_from(doc)
    assert config is not None
    with pytest.raises(ValueError, match="feeds cl need an adapter factory"):
        make_sources(config)
    sources = make_sources(config, ORACLE_ADAPTER_FACTORY)
    try:
        chained = [s for s in sources if isinstance(s, ChainlinkSource)]
        assert [(s.asset_id, s.name, s.feed) for s in chained] == [(1, "cl", 3)]  # BTC's fourth feed
    finally:
        for s in sources:
            s.close()
