"""Gateway building blocks in-process: validator twins, decimals, buckets, registry, auth, L2 book."""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import time
from decimal import Decimal

import numpy as np
import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.accounts.account_registry import AccountRegistry
from engine.types.enums import MsgType, RejectCode
from engine.wire.codec import encode
from engine.wire.layout import ALL_MARKETS, L2_DELTA, SLOT_BYTES
from gateway.auth import Authenticator
from gateway.binary import check_struct, market_table, validate_frame
from gateway.protocol.json_commands import command_struct
from gateway.protocol.l2_book import L2Book
from gateway.protocol.market_info import MarketCatalog, MarketInfo
from gateway.protocol.signing import agent_typed_data, login_typed_data, sign_typed_data
from gateway.protocol.units import JsonReject, from_units, to_units
from gateway.rate_limiter import TokenBucket

MARKETS = frozenset({1, 2})
ACCOUNT = 7
CATALOG = MarketCatalog(
    [
        MarketInfo(1, "BTC-USD", Decimal("0.5"), Decimal("0.001")),
        MarketInfo(2, "ETH-USD", Decimal("0.01"), Decimal("0.01")),
    ]
)


def new_order(**kw: int) -> bytes:
    fields = dict(client_order_id=1, price_ticks=100, size_lots=1)
    fields.update(kw)
    market = fields.pop("market_id", 1)
    return encode(MsgType.NEW_ORDER, market, **fields)


def _reference(frame: bytes, account: int) -> list[int]:
    n = len(frame) // SLOT_BYTES
    codes = [check_struct(frame, k * SLOT_BYTES, account, MARKETS) for k in range(n)]
    if len(frame) % SLOT_BYTES:
        codes.append(RejectCode.BAD_LENGTH)
    return codes


def _fast(frame: bytes, account: int) -> list[int]:
    res = validate_frame(frame, account, MARKETS, market_table(MARKETS))
    codes = [0] * ((len(frame) + SLOT_BYTES - 1) // SLOT_BYTES)
    for off, code in res.rejects:
        codes[off // SLOT_BYTES] = code
    # accepted structs carry the session's account and are the non-rejected ones, in order
    good = [k for k, c in enumerate(codes) if c == 0]
    assert res.count == len(good)
    for j, k in enumerate(good):
        acc_off = {1: 56, 2: 24, 3: 40, 4: 8}[frame[k * SLOT_BYTES]]
        assert struct.unpack_from("<I", res.accepted, j * SLOT_BYTES + acc_off)[0] == account
    return codes


def test_gateway_validator_accepts_and_stamps_account():
    frame = (
        new_order()
        + encode(MsgType.CANCEL, 1, order_id=5)
        + encode(MsgType.AMEND, 2, client_order_id=3, size_lots=2)
        + encode(MsgType.CANCEL_ALL, ALL_MARKETS)
    )
    res = validate_frame(frame, ACCOUNT, MARKETS)
    assert res.rejects == [] and res.count == 4 and res.markets == [1, 1, 2, ALL_MARKETS]


@pytest.mark.parametrize(
    "frame,code",
    [
        (new_order(order_id=9), RejectCode.BAD_FIELD),
        (new_order(client_order_id=0), RejectCode.BAD_FIELD),
        # ids from 2^63 up are risk's own (liquidation orders): the engine must never see one
        (new_order(client_order_id=1 << 63), RejectCode.BAD_FIELD),
        (new_order(client_order_id=(1 << 64) - 1), RejectCode.BAD_FIELD),
        (encode(MsgType.CANCEL, 1, client_order_id=(1 << 63) + 1), RejectCode.BAD_FIELD),
        (encode(MsgType.AMEND, 1, client_order_id=1 << 63, size_lots=2), RejectCode.BAD_FIELD),
        (encode(MsgType.ORDER_QUERY, 1, client_order_id=1 << 63, request_id=1), RejectCode.BAD_FIELD),
        (new_order(side=2), RejectCode.BAD_SIDE),
        (new_order(tif=9), RejectCode.BAD_TIF),
        (new_order(order_type=6), RejectCode.BAD_ORDER_TYPE),
        (new_order(flags=0x08), RejectCode.BAD_FLAGS),
        (new_order(flags=5 << 4), RejectCode.BAD_FLAGS),
        (new_order(size_lots=0), RejectCode.BAD_SIZE_LOT),
        (new_order(price_ticks=-1), RejectCode.BAD_PRICE_TICK),
        (new_order(market_id=3), RejectCode.UNKNOWN_MARKET),
        (new_order(account=8), RejectCode.WRONG_ACCOUNT),
        (encode(MsgType.CANCEL, 1), RejectCode.BAD_FIELD),
        (encode(MsgType.CANCEL_ALL, 1, account=99), RejectCode.WRONG_ACCOUNT),
        (encode(MsgType.FILL, 1), RejectCode.UNKNOWN_MSG_TYPE),
        (bytes([200]) + bytes(63), RejectCode.UNKNOWN_MSG_TYPE),
        (bytes([1, 2]) + new_order()[2:], RejectCode.BAD_VERSION),
        (new_order()[:2] + struct.pack("<H", 128) + new_order()[4:], RejectCode.BAD_LENGTH),
        (encode(MsgType.CANCEL, 1, order_id=1)[:40] + b"\x01" + bytes(23), RejectCode.MALFORMED),
        (new_order()[:30], RejectCode.BAD_LENGTH),
    ],
)
def test_gateway_validator_reject_codes(frame, code):
    assert _reference(frame, ACCOUNT) == [code]
    assert _fast(frame, ACCOUNT) == [code]


def test_gateway_validator_refuses_risk_client_order_ids_on_every_path():
    """A client order id with the top bit set (risk's liquidation orders) is refused by the
    gateway on the scalar and the numpy bulk path, in JSON too: the engine never sees one."""
    for n in (1, 5, 120):
        structs = [new_order(client_order_id=k + 1) for k in range(n)]
        structs[n // 2] = new_order(client_order_id=(1 << 63) | 7)
        frame = b"".join(structs)
        codes = [0] * n
        codes[n // 2] = RejectCode.BAD_FIELD
        assert _fast(frame, ACCOUNT) == codes == _reference(frame, ACCOUNT)
    for msg in (
        {
            "op": "place",
            "market": 1,
            "side": "buy",
            "price": "100.5",
            "size": "0.002",
            "client_order_id": 1 << 63,
        },
        {"op": "cancel", "market": 1, "client_order_id": (1 << 64) - 1},
        {"op": "amend", "market": 1, "client_order_id": 1 << 63, "size": "0.002"},
    ):
        with pytest.raises(JsonReject) as exc:
            command_struct(msg, CATALOG, ACCOUNT)
        assert exc.value.code == RejectCode.BAD_FIELD and "client_order_id" in exc.value.detail


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), max_size=6),
    st.integers(1, 130),
    st.randoms(use_true_random=False),
)
def test_gateway_validator_fast_paths_equal_reference(mutations, n, rnd):
    """Bulk frames (scalar and numpy fast paths) give exactly the reference codes."""
    structs = [bytearray(new_order(client_order_id=k + 1, side=k & 1, price_ticks=100 + k)) for k in range(n)]
    for byte, value in mutations:
        structs[rnd.randrange(n)][byte] = value
    frame = b"".join(structs)
    assert _fast(frame, ACCOUNT) == _reference(frame, ACCOUNT)


def test_gateway_decimal_conversion_is_exact():
    assert to_units("100.5", Decimal("0.5"), "price") == 201
    assert to_units("0.003", Decimal("0.001"), "size") == 3
    assert to_units(3, Decimal("0.5"), "price") == 6
    assert from_units(201, Decimal("0.5")) == "100.5"
    assert from_units(3, Decimal("0.001")) == "0.003"
    for bad, code in [
        ("100.25", RejectCode.BAD_DECIMAL),
        ("1e400", RejectCode.BAD_DECIMAL),
        ("nan", RejectCode.BAD_DECIMAL),
        ("abc", RejectCode.BAD_DECIMAL),
        (1.5, RejectCode.BAD_FIELD),
        ("-1", RejectCode.BAD_PRICE_TICK),
        ("0", RejectCode.BAD_PRICE_TICK),
        ("9" * 30, RejectCode.BAD_PRICE_TICK),
        ("1" * 100, RejectCode.BAD_DECIMAL),
    ]:
        with pytest.raises(JsonReject) as exc:
            to_units(bad, Decimal("0.5"), "price")
        assert exc.value.code == code, bad


def test_gateway_json_command_matches_binary():
    data = command_struct(
        {
            "op": "place",
            "market": 1,
            "side": "sell",
            "price": "100.5",
            "size": "0.002",
            "client_order_id": 9,
            "tif": "ioc",
            "post_only": True,
            "stp": "cancel_both",
        },
        CATALOG,
        ACCOUNT,
    )
    assert check_struct(data, 0, ACCOUNT, MARKETS) == 0
    assert data == encode(
        MsgType.NEW_ORDER,
        1,
        client_order_id=9,
        price_ticks=201,
        size_lots=2,
        account=ACCOUNT,
        side=1,
        tif=1,
        flags=1 | (3 << 4),
    )
    with pytest.raises(JsonReject) as exc:
        command_struct(
            {
                "op": "place",
                "market": 1,
                "side": "buy",
                "price": "1",
                "size": "1",
                "client_order_id": 1,
                "account": 3,
            },
            CATALOG,
            ACCOUNT,
        )
    assert exc.value.code == RejectCode.WRONG_ACCOUNT


def test_gateway_token_bucket_refills_and_reports_retry_after():
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=5, clock=lambda: now[0])
    assert bucket.try_take(7) == 5
    assert bucket.try_take(1) == 0
    assert bucket.retry_after_s(1) == pytest.approx(0.1)
    now[0] += 0.25
    assert bucket.try_take(3) == 2


_REGISTRY_WORKER = """
import json, sys
from engine.accounts.account_registry import AccountRegistry
reg = AccountRegistry(sys.argv[1])
print(json.dumps({a: reg.ensure_account(a) for a in sys.argv[2:]}))
"""


def test_gateway_account_registry_is_consistent_across_processes(tmp_path):
    addresses = [Account.create().address for _ in range(30)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _REGISTRY_WORKER, str(tmp_path), *random.sample(addresses, 30)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    maps = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert maps[0] == maps[1] == maps[2]
    assert sorted(maps[0].values()) == list(range(1, 31))
    assert AccountRegistry(tmp_path).get_account_id(addresses[0].lower()) == maps[0][addresses[0]]


def test_gateway_auth_login_replay_expiry_agent(tmp_path):
    auth = Authenticator(AccountRegistry(tmp_path), chain_id=31337, challenge_ttl_s=0.2)
    main, agent, other = Account.create(), Account.create(), Account.create()
    a = main.address.lower()

    def login(conn: int, key, signer: str, account: str = a, ch=None):
        ch = ch or auth.issue_challenge(conn)
        sig = sign_typed_data(key, login_typed_data(31337, account, signer, ch.nonce_hex, ch.expires_at_ms))
        return auth.check_login(conn, account, signer, ch.nonce_hex, sig), ch, sig

    res, ch, sig = login(1, main.key, a)
    assert res.code == 0 and res.account_id == 1 and not res.is_agent
    assert auth.check_login(1, a, a, ch.nonce_hex, sig).code == RejectCode.CHALLENGE_UNKNOWN  # replay
    assert login(2, other.key, a)[0].code == RejectCode.BAD_SIGNATURE
    ch = auth.issue_challenge(3)
    assert login(4, main.key, a, ch=ch)[0].code == RejectCode.CHALLENGE_UNKNOWN  # another connection's
    ch = auth.issue_challenge(5)
    time.sleep(0.3)
    assert login(5, main.key, a, ch=ch)[0].code == RejectCode.CHALLENGE_EXPIRED
    ag = agent.address.lower()
    assert login(6, agent.key, ag, account=ag)[0].is_agent is False  # a key signing for itself
    assert login(7, agent.key, ag, account=a)[0].code == RejectCode.AGENT_NOT_AUTHORISED
    # approval must be signed by the main key, with an increasing nonce
    bad = sign_typed_data(
        agent.key, agent_typed_data(31337, "ApproveAgent", a, Account.create().address.lower(), 1)
    )
    assert (
        auth.check_agent_change("ApproveAgent", a, Account.create().address, 1, bad)
        == RejectCode.BAD_SIGNATURE
    )
    ag2 = Account.create()
    g = sign_typed_data(main.key, agent_typed_data(31337, "ApproveAgent", a, ag2.address.lower(), 5))
    assert auth.check_agent_change("ApproveAgent", a, ag2.address, 5, g) == 0
    assert auth.check_agent_change("ApproveAgent", a, ag2.address, 5, g) == RejectCode.BAD_NONCE
    res = login(8, ag2.key, ag2.address.lower(), account=ag2.address.lower())[0]
    assert res.code == 0 and res.account_id != 1 and not res.is_agent  # signing for itself: its own account
    res = login(9, ag2.key, ag2.address.lower(), account=a)[0]
    assert res.code == 0 and res.account_id == 1 and res.is_agent
    r = sign_typed_data(main.key, agent_typed_data(31337, "RevokeAgent", a, ag2.address.lower(), 6))
    assert auth.check_agent_change("RevokeAgent", a, ag2.address, 6, r) == 0
    assert login(10, ag2.key, ag2.address.lower(), account=a)[0].code == RejectCode.AGENT_NOT_AUTHORISED


def test_gateway_l2_book_lazy_fold_equals_eager():
    rnd = random.Random(5)
    for _ in range(30):
        eager, lazy = L2Book(1), L2Book(1)
        rows: list[np.ndarray] = []
        for seq in range(1, 400):
            side, price, size, count = (
                rnd.randint(0, 1),
                rnd.randint(1, 30),
                rnd.choice([0, 0, 1, 3]),
                rnd.randint(1, 4),
            )
            eager.apply(seq, side, price, size, count)
            rows.append(
                np.frombuffer(L2_DELTA.pack(36, 1, 64, 1, seq, price, size, count, side, 0), np.uint8)
            )
            if rnd.random() < 0.05:
                lazy.apply_block(np.array(rows))
                rows = []
        if rows:
            lazy.apply_block(np.array(rows))
        assert lazy.as_tuple() == eager.as_tuple() and lazy.seq == eager.seq


def test_gateway_json_orders_refuse_what_they_do_not_define_naming_the_field():
    good = {
        "op": "place",
        "market": 1,
        "side": "buy",
        "price": "100.5",
        "size": "0.002",
        "client_order_id": 1,
    }
    assert command_struct(good, CATALOG, ACCOUNT)
    for change, code, named in [
        ({"side": "BUY"}, RejectCode.BAD_FIELD, "side"),
        ({"price": " 0.5"}, RejectCode.BAD_DECIMAL, "price"),
        ({"price": "+0.5"}, RejectCode.BAD_DECIMAL, "price"),
        ({"price": "5e-1"}, RejectCode.BAD_DECIMAL, "price"),
        ({"size": "0.002 "}, RejectCode.BAD_DECIMAL, "size"),
        ({"tif": None}, RejectCode.BAD_FIELD, "tif"),
        ({"colour": "red"}, RejectCode.BAD_FIELD, "colour"),
    ]:
        with pytest.raises(JsonReject) as exc:
            command_struct({**good, **change}, CATALOG, ACCOUNT)
        assert exc.value.code == code and named in exc.value.detail, (change, exc.value.detail)
    with pytest.raises(JsonReject) as exc:
        command_struct({"op": "cancel_all", "market": None}, CATALOG, ACCOUNT)
    assert "market" in exc.value.detail


def test_a_text_frame_rings_the_order_rings_doorbells_before_its_control_op() -> None:
    """The wake-ups that this loop iteration's order frames deferred go out before a JSON op runs
    (a what-if or a login's signature check can take milliseconds), not after it."""
    from types import SimpleNamespace

    from picows import WSMsgType

    from gateway.ingress import Ingress

    calls: list[str] = []
    server = SimpleNamespace(options=None, stats={}, ring_doorbells=lambda: calls.append("doorbells"))
    ingress = Ingress(server)  # type: ignore[arg-type]
    ingress.on_text = lambda sess, payload: calls.append("op")  # type: ignore[method-assign]
    frame = SimpleNamespace(msg_type=WSMsgType.TEXT, fin=True, get_payload_as_bytes=lambda: b"{}")
    ingress.on_frame(SimpleNamespace(last_rx=0.0), frame)  # type: ignore[arg-type]
    assert calls == ["doorbells", "op"]
