"""PNG charts of a simulated sale (matplotlib, headless Agg backend).

``timeline.png``: stock (on hand, available, reserved: holds and checkout reservations) and
units sold over simulated time, and paid orders against buyers served (with a waitlist:
buyers waiting in line and offers made). ``latency.png``: the wall-clock latency of each
operation of the simulation (microseconds, in process), as percentile curves from its
HdrHistogram.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_charts"]


def write_charts(result: Any, out_dir: str | Path) -> list[Path]:
    """Write ``timeline.png`` and ``latency.png`` of a ``SimulationResult`` into ``out_dir``
    (created if needed); the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples = result.samples
    t = [x["t"] / 60.0 for x in samples]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for key, label in (("on_hand", "on hand"), ("available", "available"),
                       ("reserved", "reserved (holds + checkouts)"), ("sold", "sold")):
        ax1.step(t, [x[key] for x in samples], where="post", label=label)
    r = result.report
    if r.get("sold_out_at") is not None:
        ax1.axvline(r["sold_out_at"] / 60.0, color="grey", linestyle=":", label="sold out")
    ax1.set_ylabel("units")
    ax1.set_title(f"Flash sale: {r['units']:,} units, {r['buyers']:,} buyers")
    ax1.legend(loc="best")
    ax1.grid(alpha=0.3)
    ax2.step(t, [x["paid_orders"] for x in samples], where="post", label="paid orders")
    ax2.step(t, [x["buyers_done"] for x in samples], where="post", label="buyers served")
    if r.get("waitlist_joined"):
        ax2.step(t, [x.get("waitlist_waiting", 0) for x in samples], where="post",
                 label="waiting in line")
        ax2.step(t, [x.get("offers_made", 0) for x in samples], where="post",
                 label="waitlist offers made")
    ax2.set_xlabel("simulated minutes")
    ax2.set_ylabel("count")
    ax2.set_yscale("symlog")
    ax2.legend(loc="best")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    paths = [out / "timeline.png", out / "latency.png"]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 5))
    pcts = [50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99]
    for kind, hist in sorted(result.histograms.items()):
        ax.plot(range(len(pcts)), [hist.get_value_at_percentile(p) / 1000.0 for p in pcts],
                marker="o", label=f"{kind} ({hist.get_total_count():,})")
    ax.set_xticks(range(len(pcts)), [f"p{p:g}" for p in pcts])
    ax.set_yscale("log")
    ax.set_ylabel("ms of wall time (in process)")
    ax.set_title("Latency per operation")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)
    return paths
