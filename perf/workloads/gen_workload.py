#!/usr/bin/env python3
"""Vendored copy of ../shared/workload/gen_workload.py (hx project shared workload; used only when
the shared copy beside the repo is absent). Keep byte-identical in behaviour with the original.

Generate a deterministic order stream for benchmarking and checking a matching engine.

The stream is a numpy structured array saved as .npy (see README.md beside this file).
Usage: gen_workload.py OUT.npy [--ops N] [--markets M] [--seed S] [--accounts A]
"""
import argparse

import numpy as np

ORDER = np.dtype([
    ("op", "u1"), ("side", "u1"), ("tif", "u1"), ("_pad", "u1"), ("market", "<u4"),
    ("oid", "<u8"), ("account", "<u8"), ("price", "<i8"), ("qty", "<i8"),
])
TRADE = np.dtype([("taker_oid", "<u8"), ("maker_oid", "<u8"), ("price", "<i8"), ("qty", "<i8")])
NEW, CANCEL = 1, 2
BUY, SELL = 0, 1
GTC, IOC, FOK, POST_ONLY = 0, 1, 2, 3


def generate(ops: int, markets: int = 1, seed: int = 1, accounts: int = 0) -> np.ndarray:
    """accounts=0 gives every order its own account, so self-trade prevention never applies."""
    rng = np.random.default_rng(seed)
    out = np.zeros(ops, dtype=ORDER)
    mids = np.full(markets, 100_000, dtype=np.int64)
    live: list[list[int]] = [[] for _ in range(markets)]
    next_oid = 1
    kinds = rng.random(ops)
    for i in range(ops):
        m = int(rng.integers(markets))
        r = kinds[i]
        rec = out[i]
        rec["market"] = m
        if r < 0.30 and live[m]:
            j = int(rng.integers(len(live[m])))
            lm = live[m]
            lm[j], lm[-1] = lm[-1], lm[j]
            rec["op"], rec["oid"] = CANCEL, lm.pop()
            continue
        if rng.random() < 0.01:
            mids[m] += int(rng.integers(-3, 4))
        side = int(rng.integers(2))
        sign = -1 if side == BUY else 1
        if r < 0.85:
            tif, off = GTC, sign * int(rng.geometric(0.15))
        elif r < 0.95:
            tif, off = IOC, -sign * int(rng.integers(0, 12))
        elif r < 0.98:
            tif, off = FOK, -sign * int(rng.integers(0, 8))
        else:
            tif, off = POST_ONLY, sign * int(rng.integers(-2, 6))
        rec["op"], rec["side"], rec["tif"] = NEW, side, tif
        rec["oid"] = next_oid
        rec["account"] = int(rng.integers(1, accounts + 1)) if accounts else next_oid
        rec["price"] = mids[m] + off
        rec["qty"] = int(rng.integers(1, 20)) if rng.random() < 0.9 else int(rng.integers(20, 500))
        if tif in (GTC, POST_ONLY):
            live[m].append(next_oid)
        next_oid += 1
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--ops", type=int, default=1_000_000)
    p.add_argument("--markets", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--accounts", type=int, default=0)
    a = p.parse_args()
    np.save(a.out, generate(a.ops, a.markets, a.seed, a.accounts))


if __name__ == "__main__":
    main()
