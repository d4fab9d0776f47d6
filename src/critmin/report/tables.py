"""How a plan column reads: its label with the unit and its kind (USD, tonnes, share, ratio, count, text), one
rule for the PDF, the HTML and the workbook, so that no report prints "nan", "0.000" or a JSON string."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from critmin.report.summary import usd

#: Columns named outright (label, kind); the rest follow :func:`kind_of` and :func:`label_of`.
NAMED: dict[str, tuple[str, str]] = {
    "rank": ("Rank", "int"), "score": ("Score", "num3"), "hhi": ("HHI (0-10,000)", "int"), "commodity": ("Commodity", "text"),
    "commodity_id": ("Commodity", "text"), "stage": ("Stage", "text"), "node": ("Node", "text"), "participant": ("Participant", "text"),
    "top_country": ("Top country", "text"), "chokepoint_stage": ("Chokepoint stage", "text"), "category": ("Category", "text"),
    "import_reliance": ("Import reliance", "pct"), "share_met": ("Share met", "pct"), "months_to_output": ("Months to first output", "int"),
    "days_of_consumption": ("Days of consumption", "int"), "days_of_net_imports": ("Days of net imports", "int"), "completion_probability": ("Completion probability", "pct"),
    "probability_of_shortfall": ("Probability of a shortfall", "pct"), "observed_ratio": ("Observed price ratio", "ratio"),
    "simulated_ratio": ("Simulated price ratio", "ratio"), "within_2x": ("Within 2x", "text"), "direction_right": ("Direction right", "text"),
    "horizon_months": ("Horizon, months", "int"), "critical_fractile": ("Critical fractile", "pct"),
    "shortfall_correlation": ("Shortfall correlation", "num3"), "cost_share": ("Cost share", "text"), "month": ("Month", "int"),
    "pool_recommended": ("Pool recommended", "text"), "pool_verdict": ("Pool verdict", "text"),
    "bought_as": ("Held as (the form its price is for)", "text"),
    "priority": ("Priority", "int"), "projects": ("Projects", "int"), "year": ("Year", "text"),
    "var95_usd": ("VaR 95 %, USD", "usd"), "cvar95_usd": ("CVaR 95 %, USD", "usd"),
    "probability_of_loss": ("Annual probability of a loss", "pct"), "conditional_loss_usd": ("Loss when it happens, USD", "usd"),
    "expected_loss_io_usd": ("Loss if every tonne given up stopped output, USD", "usd"), "top_scenarios": ("Driving scenarios", "text"),
    "name": ("Name", "text"), "project_id": ("Project", "text"), "buyer_id": ("Buyer", "text"), "url": ("Link", "text"),
}

_SHARE_WORDS = ("share", "fraction", "reliance")


def kind_of(col: str) -> str:
    """usd, t, pct, ratio, int, num3 or text, from the column's name."""
    if col in NAMED:
        return NAMED[col][1]
    c = col.lower()
    if c.endswith("_usd") or c.endswith("_usd_per_t") or c.endswith("_usd_per_year") or c.endswith("usd_per_t_year"):
        return "usd"
    if c.endswith("_t") or c.endswith("_t_per_year") or c in ("tonnes", "capacity_t", "demand_t", "delivered_t"):
        return "t"
    if any(w in c for w in _SHARE_WORDS):
        return "pct"
    if "ratio" in c:
        return "ratio"
    if c.endswith("_months") or c.endswith("_days"):
        return "int"
    return "text"


def label_of(col: str) -> str:
    """A header with its unit: ``expected_loss_usd`` -> "Expected loss, USD"."""
    if col in NAMED:
        return NAMED[col][0]
    c = col
    unit = ""
    for suffix, u in (("_usd_per_t_year", "USD/t-yr"), ("_usd_per_t", "USD/t"), ("_usd_per_usd", "USD per USD"), ("_usd", "USD"),
                      ("_t_per_year", "t/yr"), ("_t", "t"), ("_months", "months"), ("_days", "days")):
        if c.endswith(suffix):
            c, unit = c[: -len(suffix)], u
            break
    text = c.replace("_", " ").strip().capitalize()
    return f"{text}, {unit}" if unit else text


def cell_text(v: Any, kind: str) -> str:
    """A value as a reader wants it; blank for a missing one; lists and mappings as plain text."""
    if v is None:
        return ""
    if isinstance(v, float | np.floating) and not np.isfinite(v):
        return ""
    if isinstance(v, list | tuple):
        return "; ".join(cell_text(x, "text") if not isinstance(x, dict) else _mapping(x) for x in v)
    if isinstance(v, dict):
        return _mapping(v)
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if kind == "text" or not isinstance(v, int | float | np.integer | np.floating):
        return str(v)
    x = float(v)
    if kind == "usd":
        return usd(x)
    if kind == "t":
        return f"{x:,.0f}" if abs(x) >= 10 else f"{x:,.2f}".rstrip("0").rstrip(".") if x else "0"
    if kind == "pct":
        return f"{x:.0%}" if abs(x) >= 0.01 or x == 0 else f"{x:.2%}"
    if kind == "ratio":
        return f"x{x:.2f}"
    if kind == "int":
        return f"{x:,.0f}"
    if kind == "num3":
        return f"{x:,.3f}"
    return str(v)


def _mapping(d: dict[str, Any]) -> str:
    if "scenario" in d:
        return str(d["scenario"])
    return ", ".join(f"{k}: {v if not isinstance(v, dict | list) else json.dumps(v, default=str)}" for k, v in d.items())


#: Excel number formats per kind.
XLSX_FORMATS = {"usd": "$#,##0", "t": "#,##0.0", "pct": "0.0%", "ratio": "0.00", "int": "#,##0", "num3": "0.000"}
