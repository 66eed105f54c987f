"""``hx oracle explain FILE.json``: sources, band and staleness -> the index, and every dropped
source with its reason. Parse (human units) -> :func:`engine.math.oracle_index.calc_index` (the
same code the oracle process runs) -> a JSON-ready dict -> optional text.

Input (``docs/derivatives.md`` has a full example)::

    {"asset": "BTC", "now": "1700000060",
     "config": {"staleness_s": "10", "band": "1%", "min_sources": 3,
                "max_move_per_s": "0.5%", "max_future_s": "1", "freeze_s": "0",
                "staleness_s_by_source": {"chainlink": "3600"}},
     "previous": {"index": "64000", "time": "1700000059",
                  "sources": {"binance": {"time": "1700000059", "price": "64001"}}},
     "sources": [{"id": "binance", "price": "64010.5", "time": "1700000059.5"}, ...]}

``config.max_move_per_s``, ``max_future_s``, ``freeze_s``, ``staleness_s_by_source`` and
``previous`` (and its ``sources``) are optional. A source's price or time that is not a number
(``"NaN"``, ``"oops"``) is not an input error: it is what the source sent, and the explanation
shows it dropped (UNPARSEABLE, BAD_TIMESTAMP). A missing one is an input error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.explain.field_reader import (
    ExplainInputError,
    child,
    get,
    pct_ppm,
    read_count,
    read_rate_ppm,
    read_seconds_ns,
    read_text,
    read_usdc_micro,
    require_list,
    require_mapping,
    seconds,
    usdc,
    usdc_pico,
)
from engine.math.oracle_index import (
    DropReason,
    IndexConfig,
    IndexState,
    IndexStatus,
    SourceQuote,
    SourceState,
    calc_index,
    parse_price_micro,
)
from engine.types.fixed import PPM


def _parse_config(doc: Mapping[str, object]) -> IndexConfig:
    cfg = require_mapping(get(doc, "config", ""), "config")
    by_source_raw = cfg.get("staleness_s_by_source") or {}
    by_source = {
        str(k): read_seconds_ns(v, child("config.staleness_s_by_source", str(k)), positive=True)
        for k, v in require_mapping(by_source_raw, "config.staleness_s_by_source").items()
    }
    min_sources = read_count(get(cfg, "min_sources", "config"), "config.min_sources", minimum=1)
    return IndexConfig(
        staleness_ns=read_seconds_ns(get(cfg, "staleness_s", "config"), "config.staleness_s", positive=True),
        band_ppm=read_rate_ppm(get(cfg, "band", "config"), "config.band"),
        min_sources=min_sources,
        max_move_ppm_per_s=read_rate_ppm(
            cfg.get("max_move_per_s", 0), "config.max_move_per_s", at_most_one=False
        ),
        max_future_ns=read_seconds_ns(cfg.get("max_future_s", 1), "config.max_future_s"),
        freeze_ns=read_seconds_ns(cfg.get("freeze_s", 0), "config.freeze_s"),
        staleness_ns_by_source=by_source,
    )


def _parse_previous(doc: Mapping[str, object]) -> IndexState:
    if doc.get("previous") is None:
        return IndexState()
    prev = require_mapping(doc["previous"], "previous")
    index = read_usdc_micro(get(prev, "index", "previous"), "previous.index")
    index_ts = read_seconds_ns(get(prev, "time", "previous"), "previous.time")
    sources: dict[str, SourceState] = {}
    for source_id, seen in require_mapping(prev.get("sources") or {}, "previous.sources").items():
        path = child("previous.sources", str(source_id))
        seen_map = require_mapping(seen, path)
        ts = read_seconds_ns(get(seen_map, "time", path), child(path, "time"))
        price = read_usdc_micro(get(seen_map, "price", path), child(path, "price"))
        changed = read_seconds_ns(seen_map.get("changed", seen_map["time"]), child(path, "changed"))
        sources[str(source_id)] = SourceState(ts, price, changed)
    return IndexState(index, index_ts, sources)


def _parse_sources(doc: Mapping[str, object]) -> tuple[list[SourceQuote], list[Mapping[str, object]]]:
    raw_sources = require_list(get(doc, "sources", ""), "sources")
    if not raw_sources:
        raise ExplainInputError("sources", "must list at least one source")
    quotes: list[SourceQuote] = []
    raws: list[Mapping[str, object]] = []
    for i, raw in enumerate(raw_sources):
        path = child("sources", i)
        src = require_mapping(raw, path)
        source_id = read_text(get(src, "id", path), child(path, "id"))
        price, reason = parse_price_micro(get(src, "price", path))
        try:
            ts = read_seconds_ns(get(src, "time", path), child(path, "time"))
        except ExplainInputError as err:
            if err.problem == "missing":
                raise
            ts = 0  # what the source sent is not a time: BAD_TIMESTAMP, shown as such
        quotes.append(SourceQuote(source_id, price, ts, reason))
        raws.append(src)
    return quotes, raws


def _why(
    reason: DropReason,
    quote: SourceQuote,
    now: int,
    config: IndexConfig,
    state: IndexState,
    centre: int,
    deviation_ppm: int | None,
    raw: Mapping[str, object],
) -> str:
    if reason == DropReason.UNPARSEABLE:
        return f"price {raw.get('price')!r} is not a number"
    if reason == DropReason.NON_POSITIVE:
        return f"price {usdc(quote.price_micro)} is not positive"
    if reason == DropReason.ABSURD:
        return f"price {usdc(quote.price_micro)} outside [{usdc(config.min_price_micro)}, {usdc(config.max_price_micro)}]"
    if reason == DropReason.BAD_TIMESTAMP:
        return f"time {raw.get('time')!r} is not a valid timestamp"
    if reason == DropReason.FUTURE:
        return f"time is {seconds(quote.ts_ns - now)} s ahead of now (more than {seconds(config.max_future_ns)} s)"
    if reason == DropReason.OUT_OF_ORDER:
        last = state.sources[quote.source_id].last_ts_ns
        return (
            f"time {seconds(quote.ts_ns)} is older than the last one seen from this source ({seconds(last)})"
        )
    if reason == DropReason.DUPLICATE:
        return "a second quote from this source in the same update"
    if reason == DropReason.STALE:
        limit = config.staleness_for(quote.source_id)
        return f"age {seconds(now - quote.ts_ns)} s > staleness {seconds(limit)} s"
    if reason == DropReason.FROZEN:
        return f"same price for more than {seconds(config.freeze_ns)} s while its timestamps advance"
    if reason == DropReason.DEVIATION:
        return (
            f"{pct_ppm(deviation_ppm or 0)} from the fresh median {usdc(centre)} "
            f"(band {pct_ppm(config.band_ppm)})"
        )
    return "used"


def explain_oracle(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Parse an oracle explain document, run the index update, and return every step."""
    doc = require_mapping(doc, "")
    asset = read_text(get(doc, "asset", ""), "asset")
    now = read_seconds_ns(get(doc, "now", ""), "now", positive=True)
    config = _parse_config(doc)
    state = _parse_previous(doc)
    quotes, raws = _parse_sources(doc)
    result = calc_index(quotes, now, config, state)

    sources = []
    for quote, verdict, raw in zip(quotes, result.verdicts, raws, strict=True):
        sources.append(
            {
                "id": quote.source_id,
                "price": usdc(quote.price_micro)
                if quote.parse_reason == DropReason.NONE
                else str(raw.get("price")),
                "time": seconds(quote.ts_ns) if quote.ts_ns > 0 else str(raw.get("time")),
                "age_s": seconds(now - quote.ts_ns) if 0 < quote.ts_ns <= now else None,
                "deviation": pct_ppm(verdict.deviation_ppm) if verdict.deviation_ppm is not None else None,
                "used": verdict.reason == DropReason.NONE,
                "reason": verdict.reason.name,
                "why": _why(
                    verdict.reason,
                    quote,
                    now,
                    config,
                    state,
                    result.fresh_median_micro,
                    verdict.deviation_ppm,
                    raw,
                ),
            }
        )
    centre = result.fresh_median_micro
    band = None
    if centre:  # exact: centre x (1 -+ band), in 1e-12 USDC
        band = {
            "low": usdc_pico(centre * (PPM - config.band_ppm)),
            "high": usdc_pico(centre * (PPM + config.band_ppm)),
        }
    rate_limit = None
    if result.max_move_micro is not None:
        rate_limit = {
            "max_move_per_s": pct_ppm(config.max_move_ppm_per_s),
            "elapsed_s": seconds(now - state.index_ts_ns),
            "max_move": usdc(result.max_move_micro),
            "applied": result.rate_limited,
        }
    return {
        "tool": "oracle",
        "asset": asset,
        "now": seconds(now),
        "config": {
            "staleness_s": seconds(config.staleness_ns),
            "staleness_s_by_source": {k: seconds(v) for k, v in config.staleness_ns_by_source.items()},
            "band": pct_ppm(config.band_ppm),
            "min_sources": config.min_sources,
            "max_move_per_s": pct_ppm(config.max_move_ppm_per_s) if config.max_move_ppm_per_s else None,
            "max_future_s": seconds(config.max_future_ns),
            "freeze_s": seconds(config.freeze_ns) if config.freeze_ns else None,
        },
        "previous": (
            {"index": usdc(state.index_micro), "time": seconds(state.index_ts_ns)}
            if state.index_micro
            else None
        ),
        "sources": sources,
        "fresh_count": sum(1 for v in result.verdicts if v.deviation_ppm is not None),
        "fresh_median": usdc(centre) if centre else None,
        "band": band,
        "used_count": sum(1 for v in result.verdicts if v.reason == DropReason.NONE),
        "median_of_used": usdc(result.accepted_median_micro) if result.accepted_median_micro else None,
        "rate_limit": rate_limit,
        "status": result.status.name,
        "index": usdc(result.index_micro) if result.index_micro else None,
        "index_micro": result.index_micro,
        "index_time": seconds(result.index_ts_ns) if result.index_micro else None,
    }


def render_text(result: Mapping[str, Any]) -> str:
    """The explanation as lines a support engineer can read to a user."""
    cfg = result["config"]
    lines = [
        f"Oracle index for {result['asset']} at t={result['now']} s",
        f"  rules: a source older than {cfg['staleness_s']} s is stale; band {cfg['band']} around the "
        f"median of the fresh sources; at least {cfg['min_sources']} sources needed"
        + (f"; the index moves at most {cfg['max_move_per_s']} per second" if cfg["max_move_per_s"] else ""),
    ]
    if result["previous"]:
        lines.append(f"  previous index: {result['previous']['index']} at t={result['previous']['time']} s")
    lines.append("  sources:")
    for src in result["sources"]:
        age = f", age {src['age_s']} s" if src["age_s"] is not None else ""
        dev = f", {src['deviation']} from the median" if src["deviation"] is not None and src["used"] else ""
        verdict = "used" if src["used"] else f"DROPPED ({src['reason']}: {src['why']})"
        lines.append(f"    {src['id']:<12} {src['price']:>16} at t={src['time']}{age}{dev} -> {verdict}")
    if result["fresh_median"]:
        lines.append(
            f"  fresh sources: {result['fresh_count']}, their median {result['fresh_median']}, "
            f"band [{result['band']['low']}, {result['band']['high']}]"
        )
    if result["median_of_used"]:
        lines.append(f"  median of the {result['used_count']} sources used: {result['median_of_used']}")
    rate = result["rate_limit"]
    if rate:
        lines.append(
            f"  rate limit: {rate['elapsed_s']} s since the previous index x {rate['max_move_per_s']}/s "
            f"-> at most {rate['max_move']} -> " + ("applied" if rate["applied"] else "not needed")
        )
    if result["status"] == IndexStatus.OK.name:
        lines.append(f"  index: {result['index']} (status OK)")
    else:
        held = result["index"] or "none yet"
        why = (
            "too few fresh sources"
            if result["status"] == "STALE"
            else "too few sources agree within the band"
        )
        lines.append(f"  status {result['status']}: {why}; the previous index is held: {held}")
    return "\n".join(lines) + "\n"
