"""What an account exits with through the escape hatch: ``EscapeHatch.exitAmounts`` in Python.

Pure maths on the escape batch's asset states and the account's leaves (no web3):

- no liabilities in any asset: each claim leaf is paid in kind;
- otherwise (basket), with ``value(x) = x * price * 10**18 / 10**decimals`` (micro-USDC * 1e18)::

      net   = sum(value(claim_t), rounded down) - sum(value(liability_t), rounded up)      (0 if negative)
      pool  = sum(value(claimsTotal_t - liabilitiesTotal_t), rounded up)
      pay_t = floor((claimsTotal_t - liabilitiesTotal_t) * net / pool)

  so every account receives its net value at the committed prices as the same fraction of every holding,
  and what its debts net away stays for its creditors. The contract also clamps each payment to what is
  left of the token (``escaped_out``), which binds only for a batch with an account under water.
"""

from __future__ import annotations

from collections.abc import Sequence

from settlement.batch_commitments import AssetState

VALUE_SCALE = 10**18


def _value(x: int, price: int, decimals: int, up: bool) -> int:
    num, den = x * price * VALUE_SCALE, 10**decimals
    return int(-(-num // den) if up else num // den)


def calc_exit_amounts(
    assets: Sequence[AssetState],
    decimals: Sequence[int],
    claims: Sequence[int],
    liabilities: Sequence[int],
    escaped_out: Sequence[int] | None = None,
) -> tuple[list[int], bool]:
    """Per asset the amount paid, and whether the exit is netted (basket).

    Parameters
    ----------
    assets : the escape batch's asset states (listing order).
    decimals : each token's decimals (``Vault.decimalsOf``).
    claims, liabilities : the account's leaf amounts per asset.
    escaped_out : per asset, what others exited already (``EscapeHatch.escapedOut``), for the clamp.
    """
    basket = any(a.liabilities_total for a in assets)
    holdings = [a.claims_total - a.liabilities_total for a in assets]
    if not basket:
        pay = list(claims)
    else:
        owed = sum(_value(c, a.price, d, False) for c, a, d in zip(claims, assets, decimals, strict=True))
        owes = sum(_value(x, a.price, d, True) for x, a, d in zip(liabilities, assets, decimals, strict=True))
        pool = sum(_value(h, a.price, d, True) for h, a, d in zip(holdings, assets, decimals, strict=True))
        net = max(owed - owes, 0)
        pay = [h * net // pool if net else 0 for h in holdings]
    if escaped_out is not None:
        pay = [min(p, h - e) for p, h, e in zip(pay, holdings, escaped_out, strict=True)]
    return pay, basket
