"""Escape exit maths (EscapeHatch.exitAmounts in Python): in kind without liabilities, netted pro rata with
them; never more than the holdings whatever the order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.batch_commitments import AssetState
from settlement.escape_exit import calc_exit_amounts

USDC, WETH = "0x" + "01" * 20, "0x" + "02" * 20
DEC = [6, 18]


def _assets(claims: list[list[int]], debts: list[list[int]], prices: list[int]) -> list[AssetState]:
    return [
        AssetState(
            t, b"\x01" * 32, sum(c[i] for c in claims), b"\x02" * 32, sum(d[i] for d in debts), prices[i]
        )
        for i, t in enumerate([USDC, WETH])
    ]


def test_in_kind_without_liabilities() -> None:
    a = _assets([[5, 7], [1, 0]], [[0, 0], [0, 0]], [10**6, 3000 * 10**6])
    assert calc_exit_amounts(a, DEC, [5, 7], [0, 0]) == ([5, 7], False)


def test_basket_matches_the_forge_example() -> None:
    # alice: 1 WETH, owes 1,000 USDC; bob: 6,000 USDC claim; vault: 5,000 USDC + 1 WETH
    claims = [[0, 10**18], [6000 * 10**6, 0]]
    debts = [[1000 * 10**6, 0], [0, 0]]
    a = _assets(claims, debts, [10**6, 3000 * 10**6])
    assert calc_exit_amounts(a, DEC, claims[0], debts[0]) == ([1250 * 10**6, 25 * 10**16], True)
    assert calc_exit_amounts(a, DEC, claims[1], debts[1]) == ([3750 * 10**6, 75 * 10**16], True)


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**13), st.integers(0, 10**21), st.integers(0, 10**13)), min_size=1,
                max_size=6), st.integers(500, 9000))  # fmt: skip
def test_property_exits_never_exceed_holdings(accounts: list[tuple[int, int, int]], weth_usd: int) -> None:
    price = [10**6, weth_usd * 10**6]
    # each account: USDC claim, WETH claim, USDC debt, kept solvent (debt <= its claims' value)
    rows = []
    for usdc, weth, debt in accounts:
        cap = usdc + weth * weth_usd // 10**12
        rows.append(([usdc, weth], [min(debt, cap), 0]))
    # claims - liabilities must be >= 0 per asset: give the USDC debts to a creditor's claim
    total_debt = sum(d[0] for _, d in rows)
    rows.append(([total_debt, 0], [0, 0]))
    a = _assets([c for c, _ in rows], [d for _, d in rows], price)
    paid = [0, 0]
    for c, d in rows:
        pay, _ = calc_exit_amounts(a, DEC, c, d, escaped_out=paid)
        paid = [p + x for p, x in zip(paid, pay, strict=True)]
    assert paid[0] <= a[0].claims_total - a[0].liabilities_total
    assert paid[1] <= a[1].claims_total - a[1].liabilities_total
