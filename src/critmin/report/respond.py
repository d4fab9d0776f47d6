"""``critmin respond``: the rapid-response brief for a new event ("China bans exports of X to Y from next
month"), two pages in HTML and PDF plus JSON, in well under a minute.

For the event's scenario(s) it states, from the same simulator, registers and atlas as the plan:

* the impact per participant: expected consumer loss, CVaR 95 %, shortfall, and the price bands month by month
  (targeted market and the restrictor's own);
* the exposure of each participant stage by stage for the commodity: the restrictor's share of world output,
  the participant's import reliance and the share of its imports from the restrictor;
* the days of cover that stocks give: commercial stocks (the simulator's ``inventory_months`` for the node)
  and government stocks where a source publishes them (none do by material for the U.S. or Japan today);
* alternative suppliers among the participants and like-minded countries, with their share and spare capacity;
* the register's projects at the node and in the commodity, with when they produce, and the buyers affected.
"""

from __future__ import annotations

import html
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from critmin.atlas.lists import LISTED_PARENT
from critmin.output import to_json, write_atomic
from critmin.report.summary import usd
from critmin.stockpile.plan import holdings_for, read_holdings

#: Why a participant's government stock of a material is not stated, where no source publishes it.
NOT_PUBLISHED = {"USA": "not published by material (the U.S. National Defense Stockpile stopped in 2023)",
                 "JPN": "not published (JOGMEC's volumes are confidential)"}

PARTICIPANTS = ("USA", "JPN")


def respond(sim: Any, scenarios: list[Any], projects: pd.DataFrame, buyers: pd.DataFrame, draws: int = 1000, seed: int = 0,
            as_of: str | None = None) -> dict[str, Any]:
    """The brief's record (see module docstring)."""
    from critmin._dates import month_or_now
    from critmin.portfolio.model import InstrumentParameters, months_before_output
    from critmin.simulate.nodes import under_input_control
    from critmin.simulate.run import run

    t0 = time.perf_counter()
    as_of = month_or_now(as_of)
    if not scenarios:
        raise ValueError("respond needs at least one scenario")
    res = run(sim, scenarios, draws, seed, keep_paths=True)
    atlas = sim.atlas
    holdings = read_holdings()
    ip = InstrumentParameters.load()
    events = []
    for sc in scenarios:
        # a measure on an input: the node as the measure sees it (the controlled producers keep only what they can make)
        node = under_input_control(sim.nodes.get(sc.commodity, sc.stage), sc.restrictors, sc.input_control)
        rows = res.scenarios[res.scenarios["scenario"] == sc.id]
        impact = [{
            "perspective": r["perspective"], "expected_loss_usd": float(r["expected_loss_usd"]), "cvar95_usd": float(r["cvar95_usd"]),
            "producer_gain_usd": float(r["producer_gain_usd"]), "shortfall_t": float(r["shortfall_t"]),
            "probability_of_shortfall": float(r["probability_of_shortfall"]), "peak_price_ratio_p05": float(r["peak_price_ratio_p05"]),
            "peak_price_ratio_p50": float(r["peak_price_ratio_p50"]), "peak_price_ratio_p95": float(r["peak_price_ratio_p95"]),
            "unrestricted_price_ratio": float(r["unrestricted_price_ratio"]),
        } for r in rows.to_dict("records")]
        paths = res.paths[res.paths["scenario"] == sc.id] if res.paths is not None else pd.DataFrame()
        bands = [{k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in r.items() if k != "scenario"}
                 for r in paths[[c for c in paths.columns if c == "month" or c.startswith(("price_t_", "price_u_", "shortfall_usa_", "shortfall_jpn_"))
                                 and not c.endswith("_mean")]].to_dict("records")] if len(paths) else []
        exposure = []
        for n in sim.nodes.nodes:
            if n.commodity != sc.commodity:
                continue
            if n.key == node.key:
                n = node
            for j in PARTICIPANTS:
                imp = n.import_shares.get(j, {})
                exposure.append({
                    "node": n.key, "participant": j, "demand_t_per_year": float(n.demand_share.get(j, 0.0) * n.q0_t) if np.isfinite(n.q0_t) else None,
                    "restrictor_share_of_world": float(sum(n.shares.get(c, 0.0) for c in sc.restrictors)),
                    "import_reliance": float(n.nir[j]) if j in n.nir and np.isfinite(n.nir[j]) else None,
                    "imports_from_restrictor": float(sum(imp.get(c, 0.0) for c in sc.restrictors)) if imp else None,
                    "demand_basis": n.demand_basis.get(j, ""),
                })
        inv = sim.params.resolve("inventory_months", node.commodity, node.stage, node.group)
        cover = []
        for j in PARTICIPANTS:
            # review 34: each participant's own government stock (the sourced holding where published, else why not)
            held, notes = holdings_for(holdings, j, node.commodity)
            use = float(node.demand_share.get(j, 0.0) * node.q0_t) if np.isfinite(node.q0_t) else 0.0
            gov = (f"{held:,.0f} t" + (f", {held / use * 365.0:,.0f} days of use" if use > 0 else "") + f" ({notes[0]})" if held is not None
                   else NOT_PUBLISHED.get(j, "not published") + (f"; latest record: {notes[0]}" if notes else ""))
            cover.append({"participant": j, "commercial_stock_days": float(inv.value * 365.0 / 12.0),
                          "commercial_stock_days_range": [float(inv.low * 365.0 / 12.0), float(inv.high * 365.0 / 12.0)],
                          "commercial_basis": f"inventory_months {inv.value:g} ({inv.kind}, scope {inv.scope})",
                          "government_stock": gov, "government_stock_t": held})
        friends = set(atlas.participants) | set(atlas.like_minded)
        # a targeted participant's own output is its domestic supply, not an alternative supplier to it
        targeted = set(sc.targets) & set(atlas.participants) if "WORLD" not in sc.targets else set()
        if "BLOC" in sc.targets:
            targeted = set(atlas.participants)
        alternatives = sorted(({"country": c, "share_of_world": float(s), "spare_t_per_year": float(node.spare_by_country.get(c, 0.0)),
                                "country_name": atlas.country_name(c) if hasattr(atlas, "country_name") else c}
                               for c, s in node.shares.items() if c in friends - targeted and s > 0), key=lambda x: -float(x["share_of_world"]))
        domestic = [{"country": c, "share_of_world": float(node.shares.get(c, 0.0))} for c in sorted(targeted) if node.shares.get(c, 0.0) > 0]
        concern = atlas.concern
        # the commodity and the listed commodity it is part of (Dy/Tb circuits sit at rare_earths/refine)
        related = {sc.commodity, LISTED_PARENT.get(sc.commodity, sc.commodity)}
        mine = projects[projects["commodity_id"].isin(list(related)) & ~projects["country_iso3"].isin(list(concern))]
        proj = []
        for p in mine.to_dict("records"):
            status = str(p["status_class"])
            if status == "unlikely":
                continue
            months = 0.0 if status in ("operating", "commissioning") else months_before_output(p, status, as_of, ip, [])
            proj.append({"project_id": p["project_id"], "name": p["name"], "country": p["country_iso3"], "node": f"{p['commodity_id']}/{p['stage']}",
                         "status": status, "capacity_t_per_year": None if pd.isna(p["capacity_t"]) else float(p["capacity_t"]),
                         "months_to_output": float(months), "same_node": (p["commodity_id"], p["stage"]) == (sc.commodity, sc.stage),
                         "helps": ("producing now: can redirect or expand" if months == 0 else
                                   f"first output in about {months:.0f} months: accelerating it shortens the gap" if months <= 36 else
                                   f"first output in about {months:.0f} months: too late for this event")})
        proj.sort(key=lambda x: (not x["same_node"], x["months_to_output"], -(x["capacity_t_per_year"] or 0)))
        aff = buyers[buyers["commodity_id"].isin(list(related))]
        affected = [{"buyer_id": b["buyer_id"], "name": b["name"], "country": b["country_iso3"], "node": f"{b['commodity_id']}/{b['stage']}",
                     "demand_t_per_year": None if b["demand_t_per_year"] is None or pd.isna(b["demand_t_per_year"]) else float(b["demand_t_per_year"]),
                     "kind": b["kind"]} for b in aff.to_dict("records")]
        events.append({
            "scenario": sc.id, "title": sc.title or sc.id, "commodity": sc.commodity, "stage": sc.stage, "restrictors": list(sc.restrictors),
            "targets": list(sc.targets), "regime": sc.regime, "duration_months": sc.duration_months, "status": sc.status,
            "world_output_t": float(node.q0_t), "price_usd_per_t": float(node.p0_usd_per_t), "unit_basis": node.q0_basis,
            "impact": impact, "bands": bands, "exposure": exposure, "cover": cover, "alternatives": alternatives, "domestic": domestic, "projects": proj,
            "buyers": affected, "flags": sorted({f for f in node.flags}),
        })
    return {
        "metadata": {**res.metadata, "as_of": as_of, "draws": draws, "seed": seed, "scenarios": [s.id for s in scenarios],
                     "seconds": round(time.perf_counter() - t0, 2)},
        "events": events,
    }


def _fmt(v: Any, kind: str = "") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    if kind == "usd":
        return usd(float(v))
    if kind == "pct":
        return f"{float(v):.1%}" if 0 < abs(float(v)) < 0.01 else f"{float(v):.0%}"
    if kind == "x":
        return f"x{float(v):.2f}"
    if kind == "t":
        return f"{float(v):,.0f}" if abs(float(v)) >= 10 else f"{float(v):,.2f}"
    return str(v)


#: The brief's tables: (event key, title, [(column, label, format)]).
BRIEF_TABLES = (
    ("impact", "Impact by participant", [("perspective", "Participant", ""), ("expected_loss_usd", "Expected loss", "usd"), ("cvar95_usd", "CVaR 95 %", "usd"),
                                          ("shortfall_t", "Shortfall, t", "t"), ("peak_price_ratio_p50", "Peak price (median)", "x"),
                                          ("peak_price_ratio_p95", "Peak price (95th pct)", "x"), ("unrestricted_price_ratio", "Restrictor's price", "x")]),
    ("exposure", "Exposure by stage", [("node", "Node", ""), ("participant", "Participant", ""), ("restrictor_share_of_world", "Restrictor's share", "pct"),
                                        ("import_reliance", "Import reliance", "pct"), ("imports_from_restrictor", "Imports from restrictor", "pct"),
                                        ("demand_t_per_year", "Demand, t/yr", "t")]),
    ("cover", "Days of cover", [("participant", "Participant", ""), ("commercial_stock_days", "Commercial stocks, days", "t"),
                                ("commercial_basis", "Basis", ""), ("government_stock", "Government stocks", "")]),
    ("alternatives", "Alternative suppliers (participants and like-minded)", [("country", "Country", ""), ("share_of_world", "Share of world", "pct"),
                                                                            ("spare_t_per_year", "Spare capacity, t/yr", "t")]),
    ("projects", "Projects in the register", [("project_id", "Id", ""), ("name", "Project", ""), ("country", "Country", ""), ("node", "Node", ""),
                                              ("status", "Status", ""), ("capacity_t_per_year", "Capacity, t/yr", "t"), ("helps", "How it helps", "")]),
    ("buyers", "Buyers affected", [("buyer_id", "Id", ""), ("name", "Buyer", ""), ("country", "Country", ""), ("node", "Node", ""),
                                   ("demand_t_per_year", "Need, t/yr", "t")]),
)


def _headline(ev: dict[str, Any]) -> str:
    bloc = next((r for r in ev["impact"] if r["perspective"] == "BLOC"), None)
    head = (f"{'/'.join(ev['restrictors'])} restricts {ev['commodity'].replace('_', ' ')} ({ev['stage']}) to {'/'.join(ev['targets'])} for "
            f"{ev['duration_months']} months ({ev['regime']}).")
    if bloc:
        head += (f" Expected consumer loss to the participants {usd(bloc['expected_loss_usd'])} (CVaR 95 % {usd(bloc['cvar95_usd'])}); "
                 f"targeted price peaks at x{bloc['peak_price_ratio_p50']:.1f} (95th percentile x{bloc['peak_price_ratio_p95']:.1f}).")
    alt = ev["alternatives"][:3]
    def pct(x: float) -> str:
        return f"{x:.0%}" if x >= 0.01 else f"{x:.1%}"

    head += (" Alternative supply: " + ", ".join(f"{a['country']} {pct(a['share_of_world'])}" for a in alt) + "." if alt
             else " No other participant or like-minded country produces at this stage.")
    if ev.get("domestic"):
        head += " Domestic output of the targeted: " + ", ".join(f"{d['country']} {pct(d['share_of_world'])} of world" for d in ev["domestic"]) + "."
    return head


def brief_html(rec: dict[str, Any]) -> str:
    """Self-contained HTML (no script, no external request)."""
    md = rec["metadata"]
    parts = []
    for ev in rec["events"]:
        parts.append(f"<h2>{html.escape(ev['title'])}</h2><p class='lead'>{html.escape(_headline(ev))}</p>")
        if ev["bands"]:
            b = pd.DataFrame(ev["bands"])
            cells = "".join(f"<tr><td>{int(r['month'])}</td><td>{_fmt(r.get('price_t_p05'), 'x')}</td><td>{_fmt(r.get('price_t_p50'), 'x')}</td>"
                            f"<td>{_fmt(r.get('price_t_p95'), 'x')}</td><td>{_fmt(r.get('price_u_p50'), 'x')}</td>"
                            f"<td>{_fmt(r.get('shortfall_usa_p50'), 't')}</td><td>{_fmt(r.get('shortfall_jpn_p50'), 't')}</td></tr>"
                            for r in b.to_dict("records"))
            parts.append("<h3>Price and shortfall bands by month</h3><table><tr><th>Month</th><th>Price p5</th><th>Price p50</th><th>Price p95</th>"
                         f"<th>Restrictor's price p50</th><th>USA short, t</th><th>JPN short, t</th></tr>{cells}</table>")
        for key, title, cols in BRIEF_TABLES:
            rows = ev[key][:12]
            head = "".join(f"<th>{html.escape(lab)}</th>" for _, lab, _ in cols)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c), k))}</td>" for c, _, k in cols) + "</tr>" for r in rows)
            parts.append(f"<h3>{html.escape(title)}</h3>" + (f"<table><tr>{head}</tr>{body}</table>" if rows else "<p><em>none</em></p>"))
        if ev["flags"]:
            parts.append("<p class='small'>Data flags: " + html.escape("; ".join(ev["flags"])) + "</p>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:1em auto;font-size:13px}table{border-collapse:collapse;margin:.3em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}th{background:#eef}.lead{font-size:15px}.small{color:#555;font-size:11px}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>critmin rapid-response brief</title><style>{style}</style></head><body>"
            f"<h1>Rapid-response brief</h1><p class='small'>critmin {html.escape(str(md.get('critmin_version')))}, data {html.escape(str(md.get('data_version')))}, "
            f"{md['draws']} draws, seed {md['seed']}, as of {md['as_of']}; computed in {md['seconds']} s. Losses are consumer losses "
            f"(input cost and lost output) for the scenario's duration, in USD; prices as ratios to the pre-event price.</p>"
            + "".join(parts) + "</body></html>")


def brief_pdf(rec: dict[str, Any]) -> bytes:
    """Two pages per event: the headline, the price bands chart and the impact table; then the tables."""
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.transforms import Bbox

    def esc(s: str) -> str:
        return s.replace("$", r"\$")

    def table(fig: Any, y: float, title: str, rows: list[dict[str, Any]], cols: list[tuple[str, str, str]], n: int = 10) -> float:
        rows = rows[:n]
        fig.text(0.06, y, title, fontsize=10, weight="bold", va="top")
        if not rows:
            fig.text(0.06, y - 0.02, "none", fontsize=8, va="top", style="italic")
            return y - 0.045
        # review 34: cells wrap within their column (names and reasons were cut at 44 characters and ran into the next
        # column); a column is as wide as its longest word or label, at most 40 characters, and rows grow with their lines
        raw = [[esc(_fmt(r.get(c), k)) for c, _, k in cols] for r in rows]
        labels = [lab for _, lab, _ in cols]
        w = np.array([min(max([len(lab)] + [len(x[i]) for x in raw]), 40) + 2 for i, lab in enumerate(labels)], float)
        chars = np.maximum((w / w.sum() * 135.0).astype(int), 6)  # about 150 characters of 6.5 pt across the table
        cells = [["\n".join(textwrap.wrap(x[i], int(chars[i]), break_long_words=True) or [""]) for i in range(len(cols))] for x in raw]
        lines = [max(c.count("\n") + 1 for c in row) for row in cells]
        unit = 0.0125
        h = unit * (sum(lines) + 1.5)
        ax = fig.add_axes((0.06, y - 0.02 - h, 0.88, h))
        ax.axis("off")
        tb = ax.table(cellText=cells, colLabels=labels, colWidths=list(w / w.sum()), bbox=Bbox.from_bounds(0, 0, 1, 1), cellLoc="left")
        tb.auto_set_font_size(False)
        tb.set_fontsize(6.5)
        for (r_, _), cell in tb.get_celld().items():
            cell.set_height((1.5 if r_ == 0 else lines[r_ - 1]) / (sum(lines) + 1.5))
            cell.get_text().set_va("center")
        return y - h - 0.05

    from critmin.report.glyphs import MISSING_NOTE, pdf_text

    rec, replaced = pdf_text(rec)  # characters the PDF fonts cannot draw (Japanese names) become MISSING_GLYPH
    md = rec["metadata"]
    buf = io.BytesIO()
    with PdfPages(buf) as pdf:
        for ev in rec["events"]:
            fig = plt.figure(figsize=(8.27, 11.69))
            fig.text(0.06, 0.965, "Rapid-response brief", fontsize=15, weight="bold", va="top")
            fig.text(0.06, 0.94, esc(f"{ev['title']}"[:120]), fontsize=9, va="top")
            y = 0.915
            for line in textwrap.wrap(_headline(ev), 110):
                fig.text(0.06, y, esc(line), fontsize=9, va="top")
                y -= 0.015
            fig.text(0.06, y - 0.003, esc(f"critmin {md.get('critmin_version')}, data {md.get('data_version')}, {md['draws']} draws, seed {md['seed']}, "
                                          f"as of {md['as_of']}, {md['seconds']} s"), fontsize=7, va="top", color="#555")
            if replaced:
                y -= 0.012
                fig.text(0.06, y - 0.003, esc(MISSING_NOTE), fontsize=7, va="top", color="#555")
            y -= 0.03
            if ev["bands"]:
                b = pd.DataFrame(ev["bands"])
                ax = fig.add_axes((0.1, y - 0.25, 0.8, 0.23))
                ax.fill_between(b["month"], b["price_t_p05"], b["price_t_p95"], alpha=0.25, label="targeted market, 5-95 %")
                ax.plot(b["month"], b["price_t_p50"], label="targeted market, median")
                ax.plot(b["month"], b["price_u_p50"], linestyle="--", label="restrictor's market, median")
                ax.set_xlabel("month")
                ax.set_ylabel("price / pre-event price")
                ax.legend(fontsize=7)
                y -= 0.3
            cols = dict((k, (t, c)) for k, t, c in BRIEF_TABLES)
            for key in ("impact", "cover", "alternatives"):
                t, c = cols[key]
                y = table(fig, y, t, ev[key], c)
            pdf.savefig(fig)
            plt.close(fig)
            fig = plt.figure(figsize=(8.27, 11.69))
            y = 0.96
            for key in ("exposure", "projects", "buyers"):
                t, c = cols[key]
                y = table(fig, y, t, ev[key], c, n=12)
            pdf.savefig(fig)
            plt.close(fig)
        info = pdf.infodict()
        info["Title"] = "critmin rapid-response brief"
        info["Subject"] = f"data {md.get('data_version')}, seed {md['seed']}"
    return buf.getvalue()


def write_brief(rec: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """brief.json, brief.html and brief.pdf, each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "brief.json", "html": out_dir / "brief.html", "pdf": out_dir / "brief.pdf"}
    pdf = brief_pdf(rec)
    page = brief_html(rec)
    write_atomic(paths["json"], (to_json(rec) + "\n").encode("utf-8"))
    write_atomic(paths["html"], page.encode("utf-8"))
    write_atomic(paths["pdf"], pdf)
    return paths
