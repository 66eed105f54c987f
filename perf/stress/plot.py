"""The stress run as a picture: prices, the insurance fund, open interest and liquidations over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_run(steps: list[Any], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t_s for s in steps]
    fig, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
    for symbol in steps[0].prices if steps else []:
        base = steps[0].prices[symbol] or 1.0
        axes[0].plot(t, [s.prices.get(symbol, 0) / base for s in steps], label=symbol)
    axes[0].set_ylabel("price / start")
    axes[0].legend(loc="best", fontsize=8)
    axes[1].plot(t, [s.insurance_usdc for s in steps], color="tab:green")
    axes[1].set_ylabel("insurance fund (USDC)")
    axes[2].plot(t, [s.open_interest for s in steps], color="tab:purple")
    axes[2].set_ylabel("open interest (units)")
    axes[3].step(t, [s.liquidations for s in steps], where="post", label="accounts liquidated")
    axes[3].step(t, [s.orders for s in steps], where="post", label="liquidation orders")
    axes[3].set_ylabel("cumulative")
    axes[3].set_xlabel("simulated seconds")
    axes[3].legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
