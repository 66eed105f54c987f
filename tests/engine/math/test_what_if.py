"""engine.math.what_if: the composition agrees with the functions it composes."""

from __future__ import annotations

import dataclasses

from risk_constants import BTC, BTC_PERP, ETH_PERP, PM1, PRICES, SPEC, A, M, account, at_mark

from engine.math.fees import calc_fee_micro
from engine.math.portfolio_margin import calc_portfolio_margin
from engine.math.position import apply_fill
from engine.math.pre_trade import BUY, SELL
from engine.math.what_if import OpenOrder, WhatIfInput, calc_what_if

STATE = account(
    usdc=25_000 * M,
    btc=A // 2,
    pm1=-200 * A,
    btc_perp=at_mark(-(4 * A) // 10, 61_000 * M),
    eth_perp=at_mark(3 * A, 2_900 * M),
)
ORDERS = (OpenOrder(2, ETH_PERP, BUY, 2 * A, 2_950 * M), OpenOrder(BTC, None, SELL, A // 10, 62_000 * M))


def test_what_if_is_the_engines_maths() -> None:
    result = calc_what_if(SPEC, WhatIfInput(STATE, PRICES, ORDERS))
    base = calc_portfolio_margin(SPEC, STATE, PRICES)
    assert result.portfolio.equity_micro == base.equity_micro
    assert result.portfolio.im_micro == base.im_micro
    assert result.portfolio.free_micro == base.free_micro - sum(result.order_reserve_micro)
    assert result.order_reserve_micro[1] == 0  # selling haircut BTC above its price frees collateral
    assert set(result.liquidation_price_micro) == {BTC_PERP, ETH_PERP}
    assert set(result.max_buy_atoms) == {1, 2, 3, PM1}


def test_can_buy_is_what_the_pre_trade_check_accepts_and_it_is_safe() -> None:
    """Buying the reported quantity of BTC at its price, as a taker, leaves free collateral >= 0."""
    result = calc_what_if(SPEC, WhatIfInput(STATE, PRICES, ()))
    qty = result.max_buy_atoms[BTC]
    assert qty > 0
    price = PRICES.asset_price_micro[BTC]
    notional = qty * price // A
    balance = list(STATE.balance)
    balance[BTC] += qty
    balance[0] -= notional + calc_fee_micro(notional, SPEC.assets[BTC].spot_fees.taker_ppm)
    after = calc_portfolio_margin(SPEC, dataclasses.replace(STATE, balance=tuple(balance)), PRICES)
    assert after.free_micro >= 0
    buy, sell = result.max_perp_atoms[BTC_PERP]
    assert buy > 0 and sell > 0
    step = apply_fill(
        STATE.perp_size_atoms[BTC_PERP],
        STATE.perp_cost_micro[BTC_PERP],
        buy,
        buy * PRICES.mark_micro[BTC_PERP] // A,
    )
    sizes, costs = list(STATE.perp_size_atoms), list(STATE.perp_cost_micro)
    sizes[BTC_PERP], costs[BTC_PERP] = step.size_atoms, step.cost_micro
    balance = list(STATE.balance)
    balance[0] += step.realised_micro - calc_fee_micro(buy * PRICES.mark_micro[BTC_PERP] // A, 500)
    after = calc_portfolio_margin(
        SPEC,
        dataclasses.replace(
            STATE, balance=tuple(balance), perp_size_atoms=tuple(sizes), perp_cost_micro=tuple(costs)
        ),
        PRICES,
    )
    assert after.free_micro >= 0
