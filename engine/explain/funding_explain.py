"""``hx funding explain FILE.json``: premium samples (or impact bid / ask and index, or the book
levels they come from), interest, clamp, cap, rate period and payment interval, positions -> the
rate per period and per interval and every payment with its arithmetic, and the zero-sum check.
Parse -> :mod:`engine.math.funding` (the code the funding stage runs) -> dict -> text.

Input (``docs/derivatives.md`` has a full example)::

    {"market": "BTC-PERP",
     "premium_samples": ["0.012%", "0.0135%"],                    # either this ...
     "impact_samples": [{"impact_bid": "64010", "impact_ask": "64012", "index": "64000"},
                        {"bids": [["64005", "0.2"], ["64000", "1"]],
                         "asks": [["64008", "0.3"], ["64010", "2"]], "index": "64001"}],
     "impact_notional": "20000",                                  # ... or this (levels need it)
     "weighting": "equal",                                        # or "linear"
     "interest": "0.01%", "clamp": "0.05%",
     "cap": "4%",                                  # or {"maintenance": "3%", "multiplier": "0.75"}
     "rate_period_s": "28800", "payment_interval_s": "3600",
     "mark": "64005",
     "positions": [{"account": "alice", "size": "1.5"}, {"account": "bob", "size": "-1.5"}]}

``interest`` (default 0.01%), ``clamp`` (0.05%), ``weighting`` (equal), ``rate_period_s`` (8 h)
and ``payment_interval_s`` (1 h) are optional; ``positions`` and ``mark`` are optional together
(without them only the rate is explained). Positions must net to zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from engine.explain.field_reader import (
    ExplainInputError,
    child,
    get,
    pct_ppb,
    pct_ppm,
    plain,
    read_rate_ppb,
    read_rate_ppm,
    read_seconds_ns,
    read_size_atoms,
    read_text,
    read_usdc_micro,
    require_list,
    require_mapping,
    seconds,
    units,
    usdc,
)
from engine.math.funding import (
    DEFAULT_CLAMP_PPB,
    DEFAULT_INTEREST_PPB,
    DEFAULT_PAYMENT_INTERVAL_NS,
    DEFAULT_RATE_PERIOD_NS,
    PAYMENT_SCALE,
    FundingConfig,
    PremiumWeighting,
    calc_cap_ppb_from_margin,
    calc_funding_payments,
    calc_funding_rate,
    calc_impact_ask_micro,
    calc_impact_bid_micro,
    calc_premium_ppb,
)
from engine.types.fixed import PPM


def _levels(value: object, path: str) -> list[tuple[int, int]]:
    levels = []
    for j, raw in enumerate(require_list(value, path)):
        level_path = child(path, j)
        pair = require_list(raw, level_path)
        if len(pair) != 2:
            raise ExplainInputError(level_path, "must be [price, size]")
        price = read_usdc_micro(pair[0], child(level_path, 0))
        size = read_size_atoms(pair[1], child(level_path, 1))
        if size <= 0:
            raise ExplainInputError(child(level_path, 1), f"must be > 0, got {units(size)}")
        levels.append((price, size))
    return levels


def _impact_samples(doc: Mapping[str, object]) -> tuple[list[int], list[dict[str, Any]]]:
    notional = None
    if doc.get("impact_notional") is not None:
        notional = read_usdc_micro(doc["impact_notional"], "impact_notional")
    samples: list[int] = []
    shown: list[dict[str, Any]] = []
    for i, raw in enumerate(require_list(doc["impact_samples"], "impact_samples")):
        path = child("impact_samples", i)
        sample = require_mapping(raw, path)
        index = read_usdc_micro(get(sample, "index", path), child(path, "index"))
        row: dict[str, Any] = {"index": usdc(index)}
        if "bids" in sample or "asks" in sample:
            if notional is None:
                raise ExplainInputError("impact_notional", "missing (needed to walk book levels)")
            bids = _levels(sample.get("bids") or [], child(path, "bids"))
            asks = _levels(sample.get("asks") or [], child(path, "asks"))
            bid = calc_impact_bid_micro(bids, notional)
            ask = calc_impact_ask_micro(asks, notional)
            row["from_levels"] = {
                "impact_notional": usdc(notional),
                "bid_levels": len(bids),
                "ask_levels": len(asks),
            }
        else:
            bid = (
                None
                if sample.get("impact_bid") is None
                else read_usdc_micro(sample["impact_bid"], child(path, "impact_bid"))
            )
            ask = (
                None
                if sample.get("impact_ask") is None
                else read_usdc_micro(sample["impact_ask"], child(path, "impact_ask"))
            )
        premium = calc_premium_ppb(bid, ask, index)
        above = max(0, bid - index) if bid is not None else 0
        below = max(0, index - ask) if ask is not None else 0
        row.update(
            impact_bid=usdc(bid) if bid is not None else None,
            impact_ask=usdc(ask) if ask is not None else None,
            arithmetic=f"(max(0, {_u(bid)} - {usdc(index)}) - max(0, {usdc(index)} - {_u(ask)})) / {usdc(index)}"
            f" = ({usdc(above)} - {usdc(below)}) / {usdc(index)}",
            premium=pct_ppb(premium),
        )
        samples.append(premium)
        shown.append(row)
    return samples, shown


def _u(micro: int | None) -> str:
    return "n/a" if micro is None else usdc(micro)


def _cap(doc: Mapping[str, object]) -> tuple[int, dict[str, Any]]:
    raw = get(doc, "cap", "")
    if isinstance(raw, Mapping):
        maintenance = read_rate_ppm(get(raw, "maintenance", "cap"), "cap.maintenance")
        multiplier = read_rate_ppm(get(raw, "multiplier", "cap"), "cap.multiplier", at_most_one=False)
        if multiplier > 100 * PPM:
            raise ExplainInputError("cap.multiplier", f"{raw['multiplier']!r} is absurd (more than 100)")
        cap = calc_cap_ppb_from_margin(maintenance, multiplier)
        return cap, {
            "kind": "margin",
            "maintenance": pct_ppm(maintenance),
            "multiplier": plain(Decimal(multiplier).scaleb(-6)),
            "arithmetic": f"{plain(Decimal(multiplier).scaleb(-6))} x {pct_ppm(maintenance)} = {pct_ppb(cap)}",
            "cap": pct_ppb(cap),
        }
    cap = read_rate_ppb(raw, "cap", non_negative=True)
    return cap, {"kind": "absolute", "cap": pct_ppb(cap)}


def _config(doc: Mapping[str, object]) -> tuple[FundingConfig, dict[str, Any]]:
    cap, cap_shown = _cap(doc)
    weighting_name = str(doc.get("weighting", "equal")).lower()
    if weighting_name not in ("equal", "linear"):
        raise ExplainInputError("weighting", f"must be 'equal' or 'linear', got {doc['weighting']!r}")
    period = read_seconds_ns(
        doc.get("rate_period_s", DEFAULT_RATE_PERIOD_NS // 10**9), "rate_period_s", positive=True
    )
    interval = read_seconds_ns(
        doc.get("payment_interval_s", DEFAULT_PAYMENT_INTERVAL_NS // 10**9),
        "payment_interval_s",
        positive=True,
    )
    if interval > period:
        raise ExplainInputError("payment_interval_s", f"{seconds(interval)} s is longer than the rate period")
    config = FundingConfig(
        cap_ppb=cap,
        interest_ppb=read_rate_ppb(doc.get("interest", pct_ppb(DEFAULT_INTEREST_PPB)), "interest"),
        clamp_ppb=read_rate_ppb(doc.get("clamp", pct_ppb(DEFAULT_CLAMP_PPB)), "clamp", non_negative=True),
        rate_period_ns=period,
        payment_interval_ns=interval,
        weighting=PremiumWeighting.LINEAR if weighting_name == "linear" else PremiumWeighting.EQUAL,
    )
    return config, cap_shown


def _payments(doc: Mapping[str, object], rate_ppb: int) -> dict[str, Any] | None:
    if doc.get("positions") is None:
        return None
    mark = read_usdc_micro(get(doc, "mark", ""), "mark")
    accounts: list[str] = []
    positions: list[tuple[int, int]] = []
    for i, raw in enumerate(require_list(doc["positions"], "positions")):
        path = child("positions", i)
        pos = require_mapping(raw, path)
        accounts.append(read_text(get(pos, "account", path), child(path, "account")))
        positions.append((i, read_size_atoms(get(pos, "size", path), child(path, "size"))))
    net = sum(size for _, size in positions)
    if net:
        raise ExplainInputError("positions", f"sizes sum to {units(net)}, not 0 (every long has its short)")
    payments = calc_funding_payments(positions, mark, rate_ppb)
    rows = []
    for account, payment in zip(accounts, payments, strict=True):
        exact = Decimal(payment.exact_raw) / PAYMENT_SCALE / 10**6
        amount = payment.amount_micro
        rows.append(
            {
                "account": account,
                "size": units(payment.size_atoms),
                "side": "long" if payment.size_atoms > 0 else "short" if payment.size_atoms < 0 else "flat",
                "arithmetic": f"{units(payment.size_atoms)} x {usdc(mark)} x {pct_ppb(rate_ppb)} = {plain(exact)}",
                "exact": plain(exact),
                "amount": usdc(abs(amount)),
                "amount_micro": amount,
                "direction": "pays" if amount > 0 else "receives" if amount < 0 else "nothing",
            }
        )
    paid = sum(p.amount_micro for p in payments if p.amount_micro > 0)
    received = -sum(p.amount_micro for p in payments if p.amount_micro < 0)
    return {
        "mark": usdc(mark),
        "rule": "payers round up to the micro-USDC; their total is shared among receivers pro rata, "
        "leftover micro-units to the largest remainders (ties: listed first)",
        "payments": rows,
        "zero_sum": {
            "paid": usdc(paid),
            "received": usdc(received),
            "sum": usdc(paid - received),
            "ok": paid == received,
        },
    }


def explain_funding(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Parse a funding explain document, compute the rate and the payments, return every step."""
    doc = require_mapping(doc, "")
    market = read_text(doc.get("market", "?"), "market")
    config, cap_shown = _config(doc)
    if doc.get("premium_samples") is not None and doc.get("impact_samples") is not None:
        raise ExplainInputError("premium_samples", "give either premium_samples or impact_samples, not both")
    shown: list[dict[str, Any]]
    if doc.get("impact_samples") is not None:
        samples, shown = _impact_samples(doc)
    elif doc.get("premium_samples") is not None:
        raw = require_list(doc["premium_samples"], "premium_samples")
        samples = [read_rate_ppb(v, child("premium_samples", i)) for i, v in enumerate(raw)]
        shown = [{"premium": pct_ppb(p)} for p in samples]
    else:
        raise ExplainInputError("premium_samples", "missing (or give impact_samples)")
    rate = calc_funding_rate(samples, config)
    period_h = Decimal(config.rate_period_ns) / (3600 * 10**9)
    return {
        "tool": "funding",
        "market": market,
        "samples": shown,
        "weighting": config.weighting.name.lower(),
        "mean_premium": pct_ppb(rate.mean_premium_ppb),
        "interest": pct_ppb(rate.interest_ppb),
        "clamp": pct_ppb(rate.clamp_ppb),
        "interest_minus_premium": pct_ppb(rate.interest_ppb - rate.mean_premium_ppb),
        "clamped": pct_ppb(rate.clamped_ppb),
        "rate_uncapped": pct_ppb(rate.uncapped_ppb),
        "cap": cap_shown,
        "capped": rate.capped,
        "rate_period_s": seconds(config.rate_period_ns),
        "rate_period": pct_ppb(rate.rate_period_ppb),
        "rate_period_ppb": rate.rate_period_ppb,
        "payment_interval_s": seconds(config.payment_interval_ns),
        "interval_share": f"{seconds(config.payment_interval_ns)} / {seconds(config.rate_period_ns)}",
        "rate_interval": pct_ppb(rate.rate_interval_ppb),
        "rate_interval_ppb": rate.rate_interval_ppb,
        "period_hours": plain(period_h),
        "settlement": _payments(doc, rate.rate_interval_ppb),
    }


def render_text(result: Mapping[str, Any]) -> str:
    """The explanation as readable lines, down to each account's payment."""
    lines = [f"Funding for {result['market']}", f"  premium samples ({len(result['samples'])}):"]
    for i, s in enumerate(result["samples"]):
        if "arithmetic" in s:
            lines.append(
                f"    #{i}: impact bid {s['impact_bid'] or 'n/a'}, ask {s['impact_ask'] or 'n/a'}, "
                f"index {s['index']}: {s['arithmetic']} = {s['premium']}"
            )
        else:
            lines.append(f"    #{i}: {s['premium']}")
    cap = result["cap"]
    cap_text = cap["cap"] if cap["kind"] == "absolute" else f"{cap['arithmetic']} (multiplier x maintenance)"
    lines += [
        f"  mean premium P ({result['weighting']} weights) = {result['mean_premium']}",
        f"  interest I = {result['interest']}; I - P = {result['interest_minus_premium']}; "
        f"clamped to +-{result['clamp']} -> {result['clamped']}",
        f"  rate per {result['period_hours']} h = P + clamp(I - P) = {result['rate_uncapped']}",
        f"  cap +-{cap_text} -> {result['rate_period']}"
        + (" (capped)" if result["capped"] else " (within the cap)"),
        f"  per payment interval: {result['rate_period']} x {result['interval_share']} = {result['rate_interval']}",
    ]
    settlement = result["settlement"]
    if settlement:
        lines.append(f"  payments at mark {settlement['mark']} (positive rate: longs pay shorts):")
        for p in settlement["payments"]:
            lines.append(
                f"    {p['account']:<12} {p['side']:<5} {p['size']:>12}: {p['arithmetic']} -> "
                f"{p['direction']} {p['amount']} USDC"
            )
        z = settlement["zero_sum"]
        lines.append(f"  rounding: {settlement['rule']}")
        lines.append(
            f"  paid {z['paid']}, received {z['received']}, sum {z['sum']} -> "
            + ("zero: OK" if z["ok"] else "NOT ZERO")
        )
    return "\n".join(lines) + "\n"
