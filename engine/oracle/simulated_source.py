"""Simulated price feeds: a seeded random walk with jumps per asset, and feeds that misbehave.

Every feed of an asset sees the same *true* path (:class:`TruePath`: a geometric random walk in
steps of ``STEP_NS``, with occasional jumps), plus its own small noise, so honest feeds agree within
their noise and adversarial ones can be told apart. Modes (from ``start_after_ms`` on; honest before):

* ``honest``: the true price (with noise) every ``every_ms``;
* ``spike``: honest, except that every 4th update is ``spike_ppm`` above or below;
* ``freeze``: repeats the price it had when the mode started, with fresh timestamps;
* ``lag``: the price of ``lag_ms`` ago, with its old timestamp;
* ``drift``: honest times ``1 + drift_ppm_per_s * t`` (t since the mode started): a slow walk away;
* ``silent``: sends nothing;
* ``garbage``: cycles through NaN, zero, a negative price, an absurd one, text, a future and an
  old timestamp.

Floats are fine here: this is the edge, and the quotes it produces are journaled as parsed
micro-USDC; the engine never recomputes them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from engine.oracle.oracle_config import NS_PER_MS, NS_PER_S, SourceConfig
from engine.oracle.ports import RawQuote

STEP_NS = 100 * NS_PER_MS  # the true path's resolution


class TruePath:
    """The asset's true price over time, deterministic from its seed; kept for ``lag``."""

    def __init__(
        self,
        start_price: float,
        vol_ppm_per_s: int,
        jump_ppm: int,
        jumps_per_hour: int,
        seed: int,
        shock_every_s: int = 0,
        shock_ppm: int = 0,
        shock_over_s: int = 5,
    ) -> None:
        self.rng = random.Random(seed)
        # scheduled shocks: steps [k * every, k * every + over) of shock k >= 1 each move the price
        # by an equal factor, down for odd k and up for even k (a crash, then a rally)
        self.shock_every = shock_every_s * NS_PER_S // STEP_NS
        self.shock_steps = max(1, shock_over_s * NS_PER_S // STEP_NS)
        self.shock_log = math.log1p(min(shock_ppm, 900_000) / 1e6) / self.shock_steps if shock_ppm else 0.0
        self.step_sigma = vol_ppm_per_s / 1e6 * math.sqrt(STEP_NS / NS_PER_S)
        self.jump = jump_ppm / 1e6
        self.jump_p = jumps_per_hour * STEP_NS / (3600 * NS_PER_S)
        self.origin_ns: int | None = None
        self.prices = [start_price]  # prices[i] holds from origin + i * STEP_NS

    def price_at(self, ts_ns: int) -> float:
        if self.origin_ns is None:
            self.origin_ns = ts_ns
        i = max(0, (ts_ns - self.origin_ns) // STEP_NS)
        while len(self.prices) <= i:
            p = self.prices[-1] * math.exp(self.rng.gauss(0.0, self.step_sigma))
            if self.jump and self.rng.random() < self.jump_p:
                p *= 1 + (self.jump if self.rng.random() < 0.5 else -self.jump)
            step = len(self.prices)
            if self.shock_every and self.shock_log:
                k, phase = divmod(step, self.shock_every)
                if k >= 1 and phase < self.shock_steps:
                    p *= math.exp(-self.shock_log if k % 2 else self.shock_log)
            self.prices.append(p)
        return self.prices[i]


class SimulatedSource:
    """One simulated feed (a :class:`~engine.oracle.ports.PriceSource`)."""

    def __init__(self, config: SourceConfig, path: TruePath, seed: int = 0) -> None:
        self.config = config
        self.asset_id = config.asset_id
        self.feed = config.feed
        self.name = config.name
        self.perp_market = config.perp_market  # 0: an index feed; else an external mid of this perp
        self.path = path
        self.rng = random.Random((seed << 16) ^ (config.seed << 8) ^ config.feed)
        self.started_ns: int | None = None
        self.next_ns = 0
        self.count = 0
        self.frozen: float | None = None

    def _honest(self, ts_ns: int) -> float:
        noise = self.config.noise_ppm / 1e6
        return self.path.price_at(ts_ns) * (1 + self.rng.uniform(-noise, noise))

    def poll(self, now_ns: int) -> Sequence[RawQuote]:
        c = self.config
        if self.started_ns is None:
            self.started_ns = now_ns
            self.next_ns = now_ns
        if now_ns < self.next_ns:
            return ()
        self.next_ns = now_ns + c.every_ms * NS_PER_MS
        self.count += 1
        mode_on = now_ns - self.started_ns >= c.start_after_ms * NS_PER_MS
        mode = c.mode if mode_on else "honest"
        since_s = (now_ns - self.started_ns - c.start_after_ms * NS_PER_MS) / NS_PER_S
        if mode == "honest":
            return (RawQuote(f"{self._honest(now_ns):.6f}", now_ns),)
        if mode == "spike":
            price = self._honest(now_ns)
            if self.count % 4 == 0:
                price *= 1 + (c.spike_ppm / 1e6) * (1 if self.count % 8 == 0 else -1)
            return (RawQuote(f"{price:.6f}", now_ns),)
        if mode == "freeze":
            if self.frozen is None:
                self.frozen = self._honest(now_ns)
            return (RawQuote(f"{self.frozen:.6f}", now_ns),)
        if mode == "lag":
            then = now_ns - c.lag_ms * NS_PER_MS
            return (RawQuote(f"{self._honest(max(then, self.started_ns)):.6f}", max(then, 1)),)
        if mode == "drift":
            factor = 1 + c.drift_ppm_per_s / 1e6 * max(since_s, 0.0)
            return (RawQuote(f"{self._honest(now_ns) * factor:.6f}", now_ns),)
        if mode == "silent":
            return ()
        garbage: list[RawQuote] = [
            RawQuote(float("nan"), now_ns),
            RawQuote(0, now_ns),
            RawQuote("-5", now_ns),
            RawQuote("1e30", now_ns),
            RawQuote("price", now_ns),
            RawQuote(f"{self._honest(now_ns):.6f}", now_ns + 3600 * NS_PER_S),  # from the future
            RawQuote(f"{self._honest(now_ns):.6f}", 1),  # far in the past
        ]
        return (garbage[self.count % len(garbage)],)

    def close(self) -> None:
        pass


def make_simulated_sources(configs: Sequence[SourceConfig], seed: int) -> list[SimulatedSource]:
    """Every simulated feed, sharing one true path per asset."""
    paths: dict[int, TruePath] = {}
    out = []
    for c in configs:
        if c.kind != "simulated":
            continue
        if c.asset_id not in paths:
            paths[c.asset_id] = TruePath(
                c.price_micro / 1e6,
                c.vol_ppm_per_s,
                c.jump_ppm,
                c.jumps_per_hour,
                seed * 1000 + c.asset_id,
                c.shock_every_s,
                c.shock_ppm,
                c.shock_over_s,
            )
        out.append(SimulatedSource(c, paths[c.asset_id], seed))
    return out
