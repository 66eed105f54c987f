"""The ``withdraw`` op: an account's EIP-712-signed withdrawal -> the run's withdrawal log + a risk hold.

Request: ``{"op": "withdraw", "token": "0x..", "amount": "<token base units>", "destination": "0x..",
"nonce": <int < 2**63>, "expiry": <unix s>, "signature": "0x<65 bytes>"}``, from a session logged in
with the account's own key (an agent key can trade, never withdraw). The gateway checks what it can
without the chain (the token is listed and maps to an asset, the amount is whole engine units, the
signature recovers to the session's account), appends the signed request to ``withdrawals.log``,
then asks risk to hold the amount (WITHDRAW_REQUEST, request id = nonce). Risk refuses with a
REJECTED event when free collateral does not cover it; settlement pairs the hold with the signed
request, checks it against the chain, batches it (the contract checks the signature again) and pays
after the dispute window; a bad one comes back as a returned hold. Answer: ``{"type": "withdraw",
"nonce": n, "status": "requested"}``. Needs ``settlement-chain.json`` (written by settlement).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.accounts.account_registry import normalise_address
from engine.accounts.withdrawal_log import SignedWithdrawal, WithdrawalLog, recover_withdrawal_signer
from engine.types.enums import MsgType, RejectCode
from engine.wire.codec import encode
from engine.wire.layout import ALL_MARKETS
from gateway.control import control_op
from gateway.session import Session

if TYPE_CHECKING:
    from gateway.server import GatewayServer


def _int(msg: dict[str, Any], key: str, lo: int, hi: int) -> int | None:
    v = msg.get(key)
    if isinstance(v, str) and v.isdigit():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < hi:
        return None
    return v


def _chain(run_dir: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads((run_dir / "settlement-chain.json").read_text())
        return doc
    except (OSError, ValueError):
        return None


@control_op("withdraw", needs_login=True)
def op_withdraw(server: GatewayServer, sess: Session, msg: dict[str, Any]) -> None:
    """Withdraw to an address: signed by the account's key (EIP-712 ``Withdrawal``), held by risk,
    paid by the ClearingHouse after the dispute window."""
    if sess.is_agent:
        sess.error(msg, RejectCode.PERMISSION_DENIED, "an agent key can trade but never withdraw")
        return
    run_dir = server.auth.registry.path.parent
    chain = _chain(run_dir)
    if chain is None:
        sess.error(msg, RejectCode.UNKNOWN_OP, "withdrawals need settlement, which is not running")
        return
    token = normalise_address(msg.get("token", ""))
    listed = {str(t["address"]).lower(): t for t in chain["tokens"]}
    spec = listed.get(token or "")
    if spec is None or spec.get("asset") not in server.catalog.asset_ids:
        sess.error(msg, RejectCode.UNKNOWN_ASSET, f"token must be one of {sorted(listed)} with an asset")
        return
    destination = normalise_address(msg.get("destination", ""))
    if destination is None or int(destination, 16) == 0:
        sess.error(msg, RejectCode.BAD_FIELD, "destination must be a non-zero 0x-prefixed 20-byte address")
        return
    amount = _int(msg, "amount", 1, 1 << 255)
    nonce = _int(msg, "nonce", 0, 1 << 63)  # ids >= 2**63 are settlement's forced requests at risk
    expiry = _int(msg, "expiry", 1, 1 << 64)
    sig = msg.get("signature")
    if amount is None or nonce is None or expiry is None:
        sess.error(
            msg, RejectCode.BAD_FIELD, "amount (base units), nonce (< 2**63) and expiry must be integers"
        )
        return
    if not isinstance(sig, str) or len(sig) != 132 or not sig.startswith("0x"):
        sess.error(msg, RejectCode.BAD_FIELD, "signature must be 0x-hex of 65 bytes")
        return
    asset = server.catalog.asset_ids[spec["asset"]]
    decimals = len(str(server.catalog.assets[asset].scale)) - 1
    factor = 10 ** (int(spec["decimals"]) - decimals)
    units, rest = divmod(amount, factor)
    if rest or units >= 1 << 62:
        sess.error(msg, RejectCode.AMOUNT_OUT_OF_RANGE, f"amount must be a multiple of {factor} base units")
        return
    w = SignedWithdrawal(
        sess.account_id, sess.address, spec["address"], amount, destination, nonce, expiry, sig.lower()
    )
    if recover_withdrawal_signer(w, int(chain["chain_id"]), chain["clearing_house"]) != sess.address.lower():
        sess.error(msg, RejectCode.BAD_SIGNATURE, "the signature is not this account's")
        return
    WithdrawalLog(run_dir).append(w)
    data = encode(
        MsgType.WITHDRAW_REQUEST, account=sess.account_id, asset=asset, amount=units, request_id=nonce
    )
    if server.router.submit(data, [ALL_MARKETS], sess.account_id):
        sess.error(msg, RejectCode.BACKPRESSURE, retry_after_s=0.001)
        return
    server.kick()
    sess.reply(msg, {"type": "withdraw", "nonce": nonce, "status": "requested"})
