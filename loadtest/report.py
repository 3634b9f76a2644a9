"""The HTML report of a ``cart-engine loadtest`` run: one self-contained file.

Verdict, figures per scenario, HdrHistogram percentiles per route, and two plots embedded as
base64 PNG (matplotlib, Agg): throughput (requests and errors per second) and latency (p50 and
p99 per second, ms) of the scenarios' measured requests over the run, each scenario's start
marked.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

__all__ = ["render_html"]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(timeline: list[dict[str, Any]],
           phases: list[dict[str, Any]]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [row["second"] for row in timeline]
    out = []

    def mark(ax: Any) -> None:
        for p in phases:
            ax.axvline(p["at"], color="grey", linestyle=":", linewidth=1)
            ax.annotate(p["scenario"], (p["at"], 1), xycoords=("data", "axes fraction"),
                        xytext=(3, -12), textcoords="offset points", fontsize=8)

    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.plot(t, [row["requests"] for row in timeline], label="requests/s")
    ax.plot(t, [row["errors"] for row in timeline], label="errors/s", color="tab:red")
    mark(ax)
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("per second")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    out.append(("Throughput over time", _png(fig)))
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.plot(t, [row["p50_ms"] for row in timeline], label="p50")
    ax.plot(t, [row["p99_ms"] for row in timeline], label="p99")
    mark(ax)
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("ms (from scheduled start)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    out.append(("Latency over time", _png(fig)))
    plt.close(fig)
    return out


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(result: dict[str, Any]) -> str:
    """The report of a ``loadtest.remote`` result as one HTML document (no external files)."""
    e = html.escape
    v = result["verdict"]
    verdict = ("<p class='pass'>PASSED: every invariant held</p>" if v["passed"] else
               "<p class='fail'>FAILED</p><ul>" +
               "".join(f"<li>{e(f)}</li>" for f in v["failures"]) + "</ul>")
    checks = _table(["invariant", "findings"],
                    [[k, len(found)] for k, found in result["findings"].items()])
    verified = ", ".join(f"{n:,} {k}" for k, n in result["checks"].items()) or "nothing"
    routes = _table(
        ["route", "requests", "errors", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
         "statuses"],
        [[r["route"], f"{r['requests']:,}", r["errors"], r["p50_ms"], r["p90_ms"],
          r["p99_ms"], r["p999_ms"], r["max_ms"],
          ", ".join(f"{k}: {n}" for k, n in r["statuses"].items())]
         for r in result["routes"]])
    figures = "".join(
        f"<h3>{e(name)}</h3>" + _table(["figure", "value"], [[k, val] for k, val in f.items()])
        for name, f in result["figures"].items())
    cfg = result["config"]
    pacing = (f"open loop at {cfg['rate']:g} requests/s, latency from each request's "
              "scheduled start" if cfg.get("rate") else "closed loop (as fast as answered)")
    plots = "".join(f"<h3>{e(title)}</h3><img alt='{e(title)}' "
                    f"src='data:image/png;base64,{b64}'>"
                    for title, b64 in _plots(result["timeline"], result.get("phases", [])))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Load test {e(result['prefix'])} against {e(result['url'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 75em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.pass {{ color: #176b1f; font-weight: bold; }} .fail {{ color: #b00020; font-weight: bold; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>Load test against {e(result['url'])}</h1>
<p>Run {e(result['prefix'])}: scenarios {e(', '.join(cfg['scenarios']))},
{cfg['connections']} connections, up to {cfg['duration']:g} s each, {e(pacing)};
{result['requests']:,} measured requests in {result['seconds']:,.1f} s,
error rate {result['error_rate']:.3%}.</p>
<h2>Verdict</h2>{verdict}{checks}<p>Verified: {e(verified)}.</p>
<p>Clean-up: {e('; '.join(result['cleanup']) or 'nothing to do')}.</p>
<h2>Latency per route (HdrHistogram)</h2>{routes}
<h2>Over time</h2>{plots}
<h2>Scenarios</h2>{figures}
</body></html>
"""
