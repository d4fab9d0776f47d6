"""Charts of a simulated disruption: monthly price-ratio band and participant shortfalls (offline files).

HTML embeds plotly.js from the installed plotly package (no CDN); PNG is drawn with matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from critmin.errors import CritminError
from critmin.output import write_atomic


def write_chart(paths: pd.DataFrame, scenario_id: str, out: Path, title: str = "") -> None:
    """Write the chart of one scenario's monthly bands to ``out`` (.html or .png), atomically."""
    p = paths[paths["scenario"] == scenario_id].sort_values("month")
    if p.empty:
        raise CritminError(f"no monthly paths for {scenario_id}")
    suffix = out.suffix.lower()
    title = title or scenario_id
    if suffix == ".html":
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=("Price ratio P/P0 in the targeted segment", "Monthly shortfall (t)"))
        m = p["month"]
        fig.add_trace(go.Scatter(x=m, y=p["price_t_p95"], line={"width": 0}, showlegend=False, hoverinfo="skip"), row=1, col=1)
        fig.add_trace(go.Scatter(x=m, y=p["price_t_p05"], fill="tonexty", line={"width": 0}, name="5-95 %"), row=1, col=1)
        fig.add_trace(go.Scatter(x=m, y=p["price_t_p50"], name="median price ratio"), row=1, col=1)
        fig.add_trace(go.Scatter(x=m, y=p["price_u_p50"], name="unrestricted segment (median)", line={"dash": "dot"}), row=1, col=1)
        for key, name in (("shortfall_usa", "USA"), ("shortfall_jpn", "JPN")):
            fig.add_trace(go.Scatter(x=m, y=p[f"{key}_p50"], name=f"{name} shortfall (median)"), row=2, col=1)
        fig.update_layout(title=title, template="plotly_white")
        fig.update_xaxes(title_text="month", row=2, col=1)
        html = fig.to_html(include_plotlyjs=True, full_html=True, config={"showSendToCloud": False, "displaylogo": False})
        write_atomic(out, html.encode("utf-8"))
    elif suffix == ".png":
        import io

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
        ax1.fill_between(p["month"], p["price_t_p05"], p["price_t_p95"], alpha=0.3, label="5-95 %")
        ax1.plot(p["month"], p["price_t_p50"], label="median price ratio")
        ax1.plot(p["month"], p["price_u_p50"], ls=":", label="unrestricted segment")
        ax1.set_ylabel("P/P0")
        ax1.legend(fontsize=8)
        for key, name in (("shortfall_usa", "USA"), ("shortfall_jpn", "JPN")):
            ax2.plot(p["month"], p[f"{key}_p50"], label=f"{name} shortfall (median)")
        ax2.set_ylabel("t per month")
        ax2.set_xlabel("month")
        ax2.legend(fontsize=8)
        fig.suptitle(title, fontsize=10)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        write_atomic(out, buf.getvalue())
    else:
        raise CritminError(f"--chart {out}: use a .html or .png file name")
