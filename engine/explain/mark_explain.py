"""``hx mark explain FILE.json``: index, book mid samples with their time steps and the half-life
(or a given basis EMA), best bid / ask, last trade, weighted external mids -> each component and
the mark. Parse -> :mod:`engine.math.mark_price` (the code the oracle process runs) -> dict -> text.

Input (``docs/derivatives.md`` has a full example)::

    {"market": "BTC-PERP", "index": "64000",
     "half_life_s": "103.972077083",
     "previous_ema": {"basis": "4.5", "time": "1700000000"},
     "mid_samples": [{"time": "1700000003", "bid": "64004", "ask": "64006", "index": "63999.5"},
                     {"time": "1700000006", "mid": "64005.5"}],
     "best_bid": "64004", "best_ask": "64007", "last_trade": "64006",
     "external_mids": [{"venue": "binance", "mid": "64003", "weight": 3}]}

Either ``mid_samples`` (with ``half_life_s``, and optionally ``previous_ema``) or ``basis_ema``
(the EMA of mid - index, in USDC, as the process last published it), or neither (no EMA yet).
A sample gives ``mid`` or ``bid`` and ``ask``; a sample with one side missing (``"ask": null``)
is shown and skipped: no mid, the EMA keeps its value. ``index`` in a sample defaults to the
top-level index. ``best_bid``, ``best_ask``, ``last_trade`` and ``external_mids`` may be null or
absent: each missing one is replaced by the index, and the output says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from engine.explain.field_reader import (
    ExplainInputError,
    child,
    get,
    plain,
    read_count,
    read_seconds_ns,
    read_text,
    read_usdc_micro,
    read_usdc_pico,
    require_list,
    require_mapping,
    seconds,
    usdc,
    usdc_pico,
)
from engine.math.mark_price import (
    ONE_Q64,
    PICO_PER_MICRO,
    BasisEma,
    calc_basis_ema,
    calc_mark_price,
)


def _optional_price(doc: Mapping[str, object], key: str) -> int | None:
    return None if doc.get(key) is None else read_usdc_micro(doc[key], key)


def _decay_text(decay_q64: int) -> str:
    return plain((Decimal(decay_q64) / ONE_Q64).quantize(Decimal("1e-12")))


def _samples(
    doc: Mapping[str, object], index: int
) -> tuple[BasisEma | None, list[dict[str, Any]], int | None]:
    if doc.get("basis_ema") is not None:
        if doc.get("mid_samples") is not None:
            raise ExplainInputError("basis_ema", "give either basis_ema or mid_samples, not both")
        given = read_usdc_pico(doc["basis_ema"], "basis_ema")
        return BasisEma(given, 0), [], None
    if doc.get("mid_samples") is None:
        return None, [], None
    half_life = read_seconds_ns(get(doc, "half_life_s", ""), "half_life_s", positive=True)
    ema: BasisEma | None = None
    if doc.get("previous_ema") is not None:
        prev = require_mapping(doc["previous_ema"], "previous_ema")
        ema = BasisEma(
            read_usdc_pico(get(prev, "basis", "previous_ema"), "previous_ema.basis"),
            read_seconds_ns(get(prev, "time", "previous_ema"), "previous_ema.time"),
        )
    shown: list[dict[str, Any]] = []
    for i, raw in enumerate(require_list(doc["mid_samples"], "mid_samples")):
        path = child("mid_samples", i)
        sample = require_mapping(raw, path)
        ts = read_seconds_ns(get(sample, "time", path), child(path, "time"))
        if ema is not None and ts < ema.ts_ns:
            raise ExplainInputError(child(path, "time"), f"{seconds(ts)} is before the previous sample")
        raw_index = sample.get("index")
        sample_index = index if raw_index is None else read_usdc_micro(raw_index, child(path, "index"))
        mid_pico: int | None
        if sample.get("mid") is not None:
            mid_pico = read_usdc_pico(sample["mid"], child(path, "mid"))
            if mid_pico <= 0:
                raise ExplainInputError(child(path, "mid"), "must be > 0")
        else:
            bid = None if sample.get("bid") is None else read_usdc_micro(sample["bid"], child(path, "bid"))
            ask = None if sample.get("ask") is None else read_usdc_micro(sample["ask"], child(path, "ask"))
            if bid is not None and ask is not None and bid > ask:
                raise ExplainInputError(child(path, "bid"), f"bid {usdc(bid)} above ask {usdc(ask)}")
            mid_pico = None if bid is None or ask is None else (bid + ask) * PICO_PER_MICRO // 2
        row: dict[str, Any] = {
            "time": seconds(ts),
            "dt_s": seconds(ts - ema.ts_ns) if ema is not None else None,
            "index": usdc(sample_index),
            "mid": usdc_pico(mid_pico) if mid_pico is not None else None,
            "ema_before": usdc_pico(ema.basis_pico) if ema is not None else None,
        }
        if mid_pico is None:
            row.update(
                dt_s=None,
                basis=None,
                decay=None,
                ema_after=row["ema_before"],
                note="one side empty: no mid, EMA kept",
            )
        else:
            basis = mid_pico - sample_index * PICO_PER_MICRO
            first = ema is None
            ema, decay = calc_basis_ema(ema, basis, ts, half_life)
            row.update(
                basis=usdc_pico(basis),
                decay=None if first else _decay_text(decay),
                ema_after=usdc_pico(ema.basis_pico),
                note="first sample starts the EMA" if first else None,
            )
        shown.append(row)
    return ema, shown, half_life


def _external(doc: Mapping[str, object]) -> tuple[list[tuple[int, int]], list[dict[str, Any]]]:
    if doc.get("external_mids") is None:
        return [], []
    pairs: list[tuple[int, int]] = []
    shown: list[dict[str, Any]] = []
    for i, raw in enumerate(require_list(doc["external_mids"], "external_mids")):
        path = child("external_mids", i)
        ext = require_mapping(raw, path)
        venue = read_text(ext.get("venue", f"#{i}"), child(path, "venue"))
        mid = read_usdc_micro(get(ext, "mid", path), child(path, "mid"))
        weight = read_count(ext.get("weight", 1), child(path, "weight"), minimum=0)
        pairs.append((mid, weight))
        shown.append({"venue": venue, "mid": usdc(mid), "weight": weight})
    if pairs and not any(w for _, w in pairs):
        raise ExplainInputError("external_mids", "every weight is 0")
    return pairs, shown


def explain_mark(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Parse a mark explain document, compute the EMA and the three components, return every step."""
    doc = require_mapping(doc, "")
    market = read_text(doc.get("market", "?"), "market")
    index = read_usdc_micro(get(doc, "index", ""), "index")
    ema, samples, half_life = _samples(doc, index)
    bid, ask, last = (_optional_price(doc, k) for k in ("best_bid", "best_ask", "last_trade"))
    if bid is not None and ask is not None and bid > ask:
        raise ExplainInputError("best_bid", f"{usdc(bid)} is above best_ask {usdc(ask)}")
    external, external_shown = _external(doc)
    result = calc_mark_price(index, ema.basis_pico if ema else None, bid, ask, last, external)
    return {
        "tool": "mark",
        "market": market,
        "index": usdc(index),
        "half_life_s": seconds(half_life) if half_life is not None else None,
        "basis_ema_given": doc.get("basis_ema") is not None,
        "mid_samples": samples,
        "basis_ema": usdc_pico(ema.basis_pico) if ema else None,
        "best_bid": usdc(bid) if bid is not None else None,
        "best_ask": usdc(ask) if ask is not None else None,
        "last_trade": usdc(last) if last is not None else None,
        "external_mids": external_shown,
        "components": {
            "index_plus_basis_ema": usdc(result.ema_component_micro),
            "median_bid_ask_last": usdc(result.book_component_micro),
            "external_weighted_median": usdc(result.external_component_micro),
        },
        "replaced_by_index": list(result.substituted),
        "mark": usdc(result.mark_micro),
        "mark_micro": result.mark_micro,
    }


def render_text(result: Mapping[str, Any]) -> str:
    """The explanation as readable lines."""
    lines = [f"Mark price for {result['market']}: index {result['index']}"]
    if result["basis_ema_given"]:
        lines.append(f"  basis EMA (given): {result['basis_ema']}")
    elif result["mid_samples"]:
        lines.append(
            f"  EMA of (mid - index), half-life {result['half_life_s']} s; each step: "
            "ema' = basis + (ema - basis) x 2^(-dt / half-life)"
        )
        for s in result["mid_samples"]:
            if s["basis"] is None:
                lines.append(f"    t={s['time']}: {s['note']} (EMA {s['ema_after']})")
                continue
            step = f"dt {s['dt_s']} s, decay {s['decay']}" if s["decay"] is not None else s["note"]
            lines.append(
                f"    t={s['time']}: mid {s['mid']} - index {s['index']} = basis {s['basis']}; "
                f"{step}; EMA {s['ema_before'] or '-'} -> {s['ema_after']}"
            )
    else:
        lines.append("  no basis EMA yet")
    book = ", ".join(
        f"{k.replace('_', ' ')} {result[k] or '(none: index)'}"
        for k in ("best_bid", "best_ask", "last_trade")
    )
    lines.append(f"  book: {book}")
    if result["external_mids"]:
        mids = ", ".join(f"{m['venue']} {m['mid']} (weight {m['weight']})" for m in result["external_mids"])
        lines.append(f"  external mids: {mids}")
    comp = result["components"]
    lines += [
        f"  (a) index + basis EMA          = {comp['index_plus_basis_ema']}",
        f"  (b) median(bid, ask, last)     = {comp['median_bid_ask_last']}",
        f"  (c) weighted median external   = {comp['external_weighted_median']}",
    ]
    if result["replaced_by_index"]:
        lines.append(f"  replaced by the index: {', '.join(result['replaced_by_index'])}")
    lines.append(f"  mark = median(a, b, c) = {result['mark']}")
    return "\n".join(lines) + "\n"
