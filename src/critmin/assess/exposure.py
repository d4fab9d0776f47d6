"""Exposure of a perspective (USA, JPN or the BLOC of participants): import reliance and import sourcing.

Every value carries a ``basis`` saying where it came from and a ``proxy`` flag; a proxy is used only where the
atlas has no figure, and every output that depends on one says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from critmin.assess.reliance import bloc_reliance
from critmin.assess.supply import stage_shares_table
from critmin.atlas.model import Atlas
from critmin.atlas.schema import STAGE_ORDER
from critmin.errors import MethodError

PERSPECTIVES = ("USA", "JPN", "BLOC")

_TONNES = {"t": 1.0, "kg": 1e-3, "kt": 1e3, "Mt": 1e6, "g": 1e-6}
_TONNES_LONG = {
    "metric tons": 1.0,
    "metric dry tons": 1.0,
    "kilograms": 1e-3,
    "thousand metric tons": 1e3,
    "thousand metric dry tons": 1e3,
    "million metric tons": 1e6,
}


def tonnes_factor(unit: str) -> float | None:
    """Factor converting a mass unit ('t REO', 'kg Ga', 'kt', 'kilograms', 'thousand metric tons') to tonnes.

    None when the unit is not a mass (GWh, carats, days...).
    """
    u = unit.strip()
    if u.lower() in _TONNES_LONG:
        return _TONNES_LONG[u.lower()]
    first = u.split(" ")[0] if u else ""
    return _TONNES.get(first)


def participants_of(atlas: Atlas, perspective: str) -> list[str]:
    """ISO3 codes a perspective stands for: one country, or every participant for BLOC."""
    p = perspective.upper()
    if p == "BLOC":
        return sorted(atlas.participants)
    if p in set(atlas.countries["iso3"]):
        return [p]
    raise MethodError(f"unknown perspective '{perspective}'; use one of {PERSPECTIVES} or an ISO3 code")


@dataclass
class Reliance:
    """Net import reliance of one perspective for one commodity (fraction), with its provenance."""

    value: float | None
    low: float | None
    high: float | None
    basis: str
    proxy: bool = False
    year: int | None = None
    source_ids: list[str] = field(default_factory=list)


def us_reliance(atlas: Atlas, commodity_id: str, year: int = 2024) -> tuple[Reliance, float | None]:
    """U.S. NIR (see :func:`_us_reliance`), computed once per atlas, commodity and year: the screen and the
    simulator's nodes ask for it about 200 times in a plan."""
    t = atlas.us_trade
    cache = atlas.__dict__.setdefault("_us_reliance_cache", {})
    key = (commodity_id, year, id(t), len(t))
    if key not in cache:
        cache[key] = _us_reliance(atlas, commodity_id, year)
    rel, cons = cache[key]
    return replace(rel, source_ids=list(rel.source_ids)), cons


def _us_reliance(atlas: Atlas, commodity_id: str, year: int = 2024) -> tuple[Reliance, float | None]:
    """U.S. NIR from the USGS salient statistics (published NIR, latest year <= ``year``), and consumption in t.

    Qualifiers: ``>x`` is the range x-1 and ``<x`` the range 0-x, valued at the midpoint; ``E`` (net exporter) = 0.
    Where several forms exist: the commodity's own form (blank, or rare earths' compounds and metals), else the
    most import-reliant headline form.
    """
    t = atlas.rows_of("us_trade", ("commodity_id",), (commodity_id,))
    all_rows = t[t["year"] <= year]
    rows = all_rows[all_rows["nir_pct"].notna()]
    if rows.empty:
        rel, cons = _us_reliance_from_trade(all_rows)
        if rel.value is None and not rel.basis.startswith("unknown"):  # "unknown": U.S. trade rows without a consumption
            # no USGS figure at all (the derivative products, the separated rare earths): the atlas's own
            # production shares and consumption, as for every other country (:func:`reliance_from_atlas`)
            computed, c_t = reliance_from_atlas(atlas, "USA", commodity_id, year)
            if computed.value is not None:
                return computed, c_t
            return replace(rel, basis=f"{rel.basis}; {computed.basis}"), cons
        return rel, cons
    latest = rows.sort_values("year").groupby("form").tail(1)
    # the commodity's own form first; else the headline forms (usgs_salient_headline.csv), the most import-reliant
    # of them (titanium: sponge >95 %, not dioxide pigment, of which the U.S. is a net exporter; zinc: refined, not
    # ores; magnesium: metal >75 %, not compounds); the alphabetical first form used to decide
    order = sorted(latest.to_dict("records"), key=lambda x: (x["form"] not in ("", "compounds_metals"), not bool(x["headline"]),
                                                             -_censored(float(x["nir_pct"]) / 100.0, str(x["nir_qualifier"]))[0], x["form"]))
    r = pd.Series(order[0])
    rows = rows[rows["form"] == r["form"]]
    q = r["nir_qualifier"]
    v, low, high = _censored(float(r["nir_pct"]) / 100.0, str(q))
    basis = f"USGS published NIR {int(r['year'])}" + (f" ({q}{r['nir_pct']:g} %: midpoint of the range)" if q in ("<", ">") else "")
    if q == "E":
        basis += " (net exporter)"
    if r["form"]:
        basis += f", form {r['form']}"
    cons = None
    f = tonnes_factor(str(r["unit"]))
    if pd.notna(r["consumption"]) and f is not None:
        cons = float(r["consumption"]) * f
    return Reliance(v, low, high, basis, False, int(r["year"]), [str(r["source_id"])]), cons


def us_consumption_from_trade(atlas: Atlas, commodity_id: str, year: int = 2024) -> tuple[float, float, float, str] | None:
    """U.S. consumption (t) where the USGS withholds it but publishes trade and a net import reliance:
    ``C = (imports - exports) / NIR``, over the NIR's range (a censored ">50 %" gives C between NI and 2 NI),
    for the latest year with all three; None otherwise (no import surplus, no NIR, or a "<x %" NIR, whose range
    reaches 0 and leaves consumption unbounded). Review 11: the U.S.
    lithium proxy (37,173 t) was eleven times the 3,200 t these figures allow, tungsten's (15,764 t) above 9,400 t.
    Returns (central, low, high, basis)."""
    t = atlas.rows_of("us_trade", ("commodity_id",), (commodity_id,))
    rows = t[(t["year"] <= year) & t["nir_pct"].notna() & t["imports"].notna() & t["exports"].notna() & t["consumption"].isna()]
    rows = rows[rows["form"].isin(["", "compounds_metals"])] if (rows["form"].isin(["", "compounds_metals"])).any() else rows[rows["headline"].astype(bool)]
    if rows.empty:
        return None
    r = rows.sort_values("year").iloc[-1]
    f = tonnes_factor(str(r["unit"]))
    ni = (float(r["imports"]) - float(r["exports"])) * float(f or np.nan)
    v, low, high = _censored(float(r["nir_pct"]) / 100.0, str(r["nir_qualifier"]))
    if not np.isfinite(ni) or ni <= 0 or low <= 0:
        return None  # no import surplus, or a reliance "<x %" whose range reaches 0: consumption unbounded above
    q = f"{r['nir_qualifier']}{r['nir_pct']:g} %" if str(r["nir_qualifier"]) in ("<", ">") else f"{r['nir_pct']:g} %"
    return (ni / v, ni / high, ni / low,
            f"USGS {int(r['year'])} imports {float(r['imports']):,.0f} less exports {float(r['exports']):,.0f} t over its net import reliance {q}")


def _censored(v: float, qualifier: str) -> tuple[float, float, float]:
    """(value, low, high) of a published NIR ``v`` (fraction) with its qualifier: ``>x`` is the range x-1 and ``<x``
    the range 0-x, both valued at the midpoint (the bound itself understated ">50 %" and overstated "<25 %"); a
    plain value is exact."""
    if qualifier == ">":
        return (v + 1.0) / 2.0, v, 1.0
    if qualifier == "<":
        return v / 2.0, 0.0, v
    return v, v, v


def _us_reliance_from_trade(rows: pd.DataFrame) -> tuple[Reliance, float | None]:
    """U.S. NIR inferred from the salient trade figures where the USGS published none.

    With net imports ``N_y = I_y - E_y`` of the latest year y that has both, and C the latest reported
    consumption: ``NIR = 0`` when ``N_y <= 0`` (a net exporter or a balance: no production figure is needed, as
    ``N/(P + N) <= 0`` for any P >= 0), else ``N_y / C`` clipped to [0, 1]. The upper bound uses the largest net
    imports of the years shown, ``max_y N_y / C`` (1 when C is unknown). Mercury is the case in point: the USGS
    could not compute its NIR ("information was inadequate"), but U.S. imports were 0-4 t a year with exports
    banned, against 13 t of consumption and 103 t of by-product output in 2021. Flagged as inferred.
    """
    trade = rows[rows["imports"].notna() & rows["exports"].notna()].sort_values("year")
    if trade.empty:
        return Reliance(None, None, None, "no U.S. net import reliance in the atlas"), None
    last = trade.iloc[-1]
    net = float(last["imports"]) - float(last["exports"])
    cons_rows = rows[rows["consumption"].notna() & (rows["consumption"] > 0)].sort_values("year")
    f = tonnes_factor(str(last["unit"])) or 1.0
    cons = float(cons_rows["consumption"].iloc[-1]) if len(cons_rows) else None
    if net > 0 and cons is None:
        return Reliance(None, None, None, f"unknown: U.S. net imports {net:g} {last['unit']} in {int(last['year'])} but no "
                        "consumption figure"), None
    max_net = float((trade["imports"] - trade["exports"]).clip(lower=0.0).max())
    value = 0.0 if net <= 0 else min(net / cons, 1.0)  # type: ignore[operator]
    high = min(max_net / cons, 1.0) if cons else 1.0
    qual = " ".join(sorted({q for q in rows["nir_qualifier"] if q}))
    basis = (f"inferred from trade: U.S. net imports {net:g} {last['unit']} in {int(last['year'])}"
             + (f" against consumption {cons:g} {last['unit']}" if cons else "")
             + (f" (USGS published no NIR: {qual})" if qual else " (USGS published no NIR)"))
    return (Reliance(value, 0.0, max(high, value), basis, False, int(last["year"]), sorted(set(rows["source_id"]))),
            cons * f if cons else None)


def _domestic_production(atlas: Atlas, iso3: str, commodity_id: str) -> pd.DataFrame:
    p = atlas.rows_of("production", ("commodity_id", "country_iso3"), (commodity_id, iso3))
    return p[(p["measure"] == "production") & (p["case"] == "")]


def consumption_tonnes(atlas: Atlas, iso3: str, commodity_id: str, year: int = 2024, stage: str = "") -> tuple[float, int, str] | None:
    """:func:`_consumption_tonnes`, computed once per atlas and arguments (an immutable tuple)."""
    t = atlas.consumption
    cache = atlas.__dict__.setdefault("_consumption_cache", {})
    key = (iso3, commodity_id, year, stage, id(t), len(t))
    if key not in cache:
        cache[key] = _consumption_tonnes(atlas, iso3, commodity_id, year, stage)
    return cache[key]


def _consumption_row(atlas: Atlas, iso3: str, commodity_id: str, year: int = 2024, stage: str = "") -> pd.Series | None:
    """The consumption row :func:`consumption_tonnes` reads (the latest in a mass unit), or None."""
    c = atlas.rows_of("consumption", ("country_iso3", "commodity_id"), (iso3, commodity_id))
    on_stage = (c["stage"].fillna("") == stage) if "stage" in c.columns else pd.Series(stage == "", index=c.index)
    rows = c[c["quantity"].notna() & (c["year"] <= year) & on_stage]
    rows = rows[[tonnes_factor(u) is not None and not re.search(r"/yr|days", u) for u in rows["unit"]]]
    if rows.empty:
        return None
    return rows.sort_values(["year", "item"]).iloc[-1]


def _consumption_tonnes(atlas: Atlas, iso3: str, commodity_id: str, year: int = 2024, stage: str = "") -> tuple[float, int, str] | None:
    """Latest consumption figure (t) of a country from the consumption table, or None: rows of the commodity as a
    whole (blank stage) by default, or the rows of one stage."""
    r = _consumption_row(atlas, iso3, commodity_id, year, stage)
    if r is None:
        return None
    return float(r["quantity"]) * float(tonnes_factor(str(r["unit"])) or 1.0), int(r["year"]), str(r["source_id"])


def consumption_high_tonnes(atlas: Atlas, iso3: str, commodity_id: str, year: int = 2024, stage: str = "") -> float | None:
    """The high end (t) of the range of the consumption figure :func:`consumption_tonnes` reads, where the row
    gives one (``quantity_high``), else None."""
    r = _consumption_row(atlas, iso3, commodity_id, year, stage)
    if r is None or "quantity_high" not in r.index or pd.isna(r["quantity_high"]):
        return None
    return float(r["quantity_high"]) * float(tonnes_factor(str(r["unit"])) or 1.0)


def country_reliance(atlas: Atlas, iso3: str, commodity_id: str, year: int = 2024) -> tuple[Reliance, float | None]:
    """:func:`_country_reliance`, computed once per atlas, country, commodity and year (the screen and the
    simulator's nodes ask for the same values)."""
    cache = atlas.__dict__.setdefault("_country_reliance_cache", {})
    key = (iso3, commodity_id, year, id(atlas.production), id(atlas.consumption), id(atlas.us_trade))
    if key not in cache:
        cache[key] = _country_reliance(atlas, iso3, commodity_id, year)
    rel, cons = cache[key]
    return replace(rel, source_ids=list(rel.source_ids)), cons


def _country_reliance(atlas: Atlas, iso3: str, commodity_id: str, year: int = 2024) -> tuple[Reliance, float | None]:
    """NIR of a country: the USGS for the U.S. (:func:`us_reliance`), else :func:`reliance_from_atlas`; a country
    that produces but whose consumption is not in the atlas takes the U.S. reliance on the same commodity as a
    proxy (flagged, with the full 0-1 range): it is right where both economies supply themselves (lime, cement,
    stone, sand), and no worse than assuming full reliance elsewhere."""
    if iso3 == "USA":
        return us_reliance(atlas, commodity_id, year)
    rel, cons = reliance_from_atlas(atlas, iso3, commodity_id, year)
    if rel.value is not None or not rel.basis.startswith("unknown: ") or "produces" not in rel.basis:
        return rel, cons
    us, _ = us_reliance(atlas, commodity_id, year)
    if us.value is not None:
        return (
            Reliance(us.value, 0.0, 1.0, f"proxy: {iso3} produces but its consumption is not in the atlas; the U.S. "
                     f"reliance stands in ({us.basis})", True, us.year, list(us.source_ids)),
            cons,
        )
    return rel, cons


@dataclass(frozen=True)
class StageOutput:
    """A country's output at one node in tonnes, with how it was obtained."""

    stage: str
    tonnes: float | None
    basis: str
    source_ids: tuple[str, ...]
    bound: str = ""  # "le": the output is at most ``tonnes``; "ge": at least (a published share's bound)


@dataclass(frozen=True)
class PublishedNode:
    """A node whose country shares are a published table (no tonnage series)."""

    shares: dict[str, float]
    bounds: dict[str, str]  # the share's bound: "" (a value), "approx", "le" (at most), "ge" (at least)
    year: int | None  # of the share table
    world_t: float | None  # world output on the node's basis (the ``world_output`` row marked ``use``)
    world_year: int | None
    world_basis: str
    source_ids: tuple[str, ...]


def published_nodes(atlas: Atlas, year: int = 2024) -> dict[tuple[str, str], PublishedNode]:
    """Nodes whose country shares are a published table (no tonnage series), per (commodity, stage): the named
    shares and their bounds, the world output in tonnes on the node's basis and the sources. Computed once per
    atlas and year."""
    cache = atlas.__dict__.setdefault("_published_nodes_cache", {})
    key = (year, id(atlas.production), id(atlas.tables.get("stage_shares")), id(atlas.tables.get("world_output")))
    if key in cache:
        return cache[key]
    sh = stage_shares_table(atlas, year)
    sh = sh[sh["basis"] == "published"]
    wo = atlas.tables.get("world_output")
    world: dict[tuple[str, str], tuple[float, str, str, int | None]] = {}
    if wo is not None:
        for r in wo[wo["use"] & wo["world_output_t"].notna()].to_dict("records"):
            world[(str(r["commodity_id"]), str(r["stage"]))] = (float(r["world_output_t"]), str(r["quantity_basis"]), str(r["source_id"]),
                                                                int(r["year"]) if pd.notna(r["year"]) else None)
    out = {}
    for (c, st), g in sh.groupby(["commodity_id", "stage"], sort=True):
        w = world.get((str(c), str(st)))
        out[(str(c), str(st))] = PublishedNode(
            {str(k): float(v) for k, v in zip(g["country_iso3"], g["share"], strict=True)},
            {str(k): str(b or "") for k, b in zip(g["country_iso3"], g["bound"], strict=True)},
            int(g["year"].max()) if g["year"].notna().any() else None,
            w[0] if w else None, w[3] if w else None, w[1] if w else "",
            tuple(sorted(set(g["source_id"].astype(str)) | ({w[2]} if w else set()))))
    cache[key] = out
    return out


def country_output(atlas: Atlas, iso3: str, commodity_id: str, year: int = 2024) -> list[StageOutput]:
    """A country's output of a commodity per stage, in tonnes of the node's basis (latest year up to ``year``).

    - Tonnage series (USGS, IEA): the country's rows, summed over items, one figure per source, averaged over
      sources (the IEA and the USGS both give Japan's refined copper).
    - Nodes with a published share table only (the derivative products, the separated rare earths):
      ``P = s_c · W`` with ``s_c`` the country's named share and W the node's world output (``world_output``);
      ``tonnes`` None when W is unknown. A country the table does not name gets no row.
    """
    rows: list[StageOutput] = []
    prod = _domestic_production(atlas, iso3, commodity_id)
    listed = prod[prod["value"].notna() & (prod["value"] > 0) & (prod["year"] <= year)]
    if len(listed):
        latest = listed[listed["year"] == listed["year"].max()]
        latest = latest.assign(_f=[tonnes_factor(u) for u in latest["unit"]])
        for st, at in latest.groupby("stage", sort=False):
            at = at[at["_f"].notna()]
            if at.empty:
                rows.append(StageOutput(str(st), None, f"{iso3} {st} output listed, not in tonnes", tuple(sorted(set(latest["source_id"])))))
                continue
            per_source = (at["value"] * at["_f"]).groupby(at["source_id"]).sum()
            n_src = f", mean of {len(per_source)} sources" if len(per_source) > 1 else ""
            rows.append(StageOutput(str(st), float(per_source.mean()), f"{iso3} {st} production {float(per_source.mean()):g} t{n_src}",
                                    tuple(sorted(set(at["source_id"])))))
    have = {r.stage for r in rows}
    for (c, st), node in published_nodes(atlas, year).items():
        if c != commodity_id or st in have or node.shares.get(iso3, 0.0) <= 0:
            continue
        s_c, w, bound = node.shares[iso3], node.world_t, node.bounds.get(iso3, "")
        word = {"le": "at most ", "ge": "at least "}.get(bound, "")
        if w is None:
            rows.append(StageOutput(st, None, f"{iso3} {word}{s_c:.1%} of world {st} output (no world tonnage)", node.source_ids, bound))
            continue
        years = (f"; the share is of {node.year}, the world output of {node.world_year}"
                 if node.year and node.world_year and node.year != node.world_year else "")
        rows.append(StageOutput(st, s_c * w, f"{iso3} {st} output {word}{s_c * w:,.0f} t = {s_c:.1%} of world output {w:,.0f} t "
                                             f"({node.world_basis}){years}", node.source_ids, bound))
    return rows


def _unnamed_bound(atlas: Atlas, iso3: str, commodity_id: str, year: int) -> tuple[float, str, tuple[str, ...]] | None:
    """For a country no table names: the lowest NIR its output could give, ``max(0, 1 - (1 - Σ s)·W / C)``, on a
    node with a published table, a world output W and the country's consumption C of that stage (the unnamed rest
    of world output is the most it could make), as (low, basis, sources); None where no node has all three."""
    lows = []
    for (c, st), node in published_nodes(atlas, year).items():
        shares, w, src = node.shares, node.world_t, node.source_ids
        if c != commodity_id or w is None:
            continue
        cons = consumption_tonnes(atlas, iso3, commodity_id, year, stage=st) or consumption_tonnes(atlas, iso3, commodity_id, year)
        if not cons or cons[0] <= 0:
            continue
        rest = max(1.0 - sum(shares.values()), 0.0)
        low = float(np.clip(1.0 - rest * w / cons[0], 0.0, 1.0))
        lows.append((low, f"the table names {1.0 - rest:.1%} of world {st} output ({w:,.0f} t), so {iso3} made at most "
                          f"{rest * w:,.0f} t against its consumption {cons[0]:,.0f} t: NIR {low:.2f}-1", tuple(src) + (cons[2],)))
    return max(lows, key=lambda x: x[0]) if lows else None


def _first_stage(atlas: Atlas, iso3: str, commodity_id: str) -> str:
    """The most upstream stage with a consumption row of the country for the commodity ("" when none)."""
    c = atlas.rows_of("consumption", ("country_iso3", "commodity_id"), (iso3, commodity_id))
    stages = sorted({str(x) for x in c["stage"].fillna("") if x}, key=lambda st: STAGE_ORDER.get(st, 99)) if "stage" in c.columns else []
    return stages[0] if stages else ""


def _first_stage_consumption(atlas: Atlas, iso3: str, commodity_id: str, year: int) -> tuple[float, int, str] | None:
    """The country's consumption of the commodity's most upstream stage that has a row, or None."""
    c = atlas.rows_of("consumption", ("country_iso3", "commodity_id"), (iso3, commodity_id))
    stages = sorted({str(x) for x in c["stage"].fillna("") if x}, key=lambda st: STAGE_ORDER.get(st, 99)) if "stage" in c.columns else []
    for st in stages:
        got = consumption_tonnes(atlas, iso3, commodity_id, year, stage=st)
        if got:
            return got
    return None


def reliance_from_atlas(atlas: Atlas, iso3: str, commodity_id: str, year: int = 2024) -> tuple[Reliance, float | None]:
    """NIR of a country from the atlas's production and consumption, and its consumption (t) where known.

    - No output of the commodity at any stage (:func:`country_output`: tonnage series, or a published share
      table that names it) while the commodity has country data: P = 0, so ``NIR = (I - E)/(I - E) = 1``, an
      inference (small producers hide in "Other countries"), flagged; where a published table leaves part of
      world output unnamed, the low end of the range is what that rest could supply (:func:`_unnamed_bound`).
    - Output and consumption known: ``NIR = max(0, 1 - P/C)`` (stock changes ignored), with P the output of the
      most upstream stage the country has in tonnes and C the consumption of the commodity, else of that stage
      (Japan's NdFeB magnets: 4.8 % of world output against its 16,400 t).
    - Otherwise unknown (None); the basis says "produces" when only the consumption is missing.
    """
    out = country_output(atlas, iso3, commodity_id, year)
    cons = consumption_tonnes(atlas, iso3, commodity_id, year)
    use = cons or _first_stage_consumption(atlas, iso3, commodity_id, year)
    if use is not None and use[0] == 0:
        # a sourced nil consumption (U.S. and Japanese LFP cathode in 2024: no LFP cell plant ran): nothing is
        # imported, so nothing is relied on (review 31 F3: read as "unknown", NIR = 1 ranked LFP cathode 5th); a
        # consumption range's high end (the U.S. LFP plants of 2025-2026) bounds the range (review 32 F6)
        stage = "" if cons else _first_stage(atlas, iso3, commodity_id)
        c_high = consumption_high_tonnes(atlas, iso3, commodity_id, year, stage=stage)
        hi, note = 0.0, ""
        if c_high is not None and c_high > 0:
            output_t = [float(o.tonnes) for o in out if o.tonnes is not None]
            hi = float(np.clip(1.0 - (max(output_t) if output_t else 0.0) / c_high, 0.0, 1.0))
            note = f"; the high end, {c_high:,.0f} t, gives NIR {hi:.2f}"
        return Reliance(0.0, 0.0, hi, f"computed: {iso3} consumption is nil ({use[1]}): no net imports (C = 0){note}", False,
                        use[1], [use[2]]), 0.0
    if not out:
        # the weight a bloc gives the country is its consumption: of the commodity, else of its first staged row
        # (the derivative products have only a stage row; review 8 found the bloc's anode and magnet reliance
        # weighted equally "for want of consumption" beside both participants' figures)
        cons = cons or _first_stage_consumption(atlas, iso3, commodity_id, year)
        has_data = any(c == commodity_id for c, _ in published_nodes(atlas, year)) or bool(
            len(atlas.rows_of("production", ("commodity_id",), (commodity_id,))))
        if not has_data:
            return Reliance(None, None, None, f"unknown: no production data of {commodity_id} in the atlas"), cons[0] if cons else None
        bound = _unnamed_bound(atlas, iso3, commodity_id, year)
        basis = f"inferred: no {iso3} production listed at any stage (P = 0 => NIR = 1)"
        if bound is None or bound[0] >= 1.0:
            return Reliance(1.0, 1.0, 1.0, basis, False, None, []), cons[0] if cons else None
        return (Reliance(1.0, bound[0], 1.0, f"{basis}; {bound[1]}", False, year, sorted(set(bound[2]))),
                cons[0] if cons else None)
    tonnes = [o for o in out if o.tonnes is not None]
    first = min(tonnes, key=lambda o: STAGE_ORDER.get(o.stage, 99)) if tonnes else None
    cons_stage = ""
    if cons is None and first is not None:
        # no figure for the commodity as a whole: the consumption of the stage the production is of (Japan's
        # bismuth: 500 t refined in 2024 against a refined demand of 600-700 t, JMIA)
        cons = consumption_tonnes(atlas, iso3, commodity_id, year, stage=first.stage)
        cons_stage = first.stage
    if cons is not None and first is not None and cons[0] > 0:
        v = float(np.clip(1.0 - float(first.tonnes) / cons[0], 0.0, 1.0))  # type: ignore[arg-type]
        basis = f"computed 1 - P/C: {first.basis} vs consumption {cons[0]:,.0f} t ({cons[1]})"
        lo, hi = v, v
        c_high = consumption_high_tonnes(atlas, iso3, commodity_id, year, stage=cons_stage)
        if c_high is not None and c_high > cons[0]:
            # the consumption is the low end of a range (Japan's cathode material 37,600-144,910 t): the NIR at
            # its high end bounds the range; the value stays on the consumption the simulator uses
            hi = max(hi, float(np.clip(1.0 - float(first.tonnes) / c_high, 0.0, 1.0)))  # type: ignore[arg-type]
            basis += f"; consumption {cons[0]:,.0f}-{c_high:,.0f} t gives NIR {lo:.2f}-{hi:.2f}"
        if first.bound in ("le", "ge"):
            # output at most (le) or at least (ge) s·W: NIR at least / at most v; valued at the midpoint, as a
            # censored USGS NIR
            lo, hi = (v, 1.0) if first.bound == "le" else (0.0, hi)
            v = (lo + hi) / 2.0
            basis += f"; the share is {'an upper' if first.bound == 'le' else 'a lower'} bound, so NIR {lo:.2f}-{hi:.2f}, valued at the midpoint"
        return Reliance(v, lo, hi, basis, False, cons[1], sorted(set(first.source_ids)) + [cons[2]]), cons[0]
    made = "; ".join(o.basis for o in out)
    return Reliance(None, None, None, f"unknown: {iso3} produces ({made}) but its consumption is not in the atlas"), cons[0] if cons else None


def perspective_reliance(atlas: Atlas, perspective: str, commodity_id: str, year: int = 2024) -> Reliance:
    """NIR of USA, JPN (or any ISO3) or the BLOC of participants for one commodity.

    BLOC: ``NIR_bloc = Σ_p C_p·NIR_p / Σ_p C_p`` (see :func:`critmin.assess.reliance.bloc_reliance`). When a
    participant's consumption is unknown the equal-weight mean is used and flagged as a proxy, with the
    participants' minimum and maximum as bounds; when a participant's NIR is unknown the BLOC value is None.
    """
    members = participants_of(atlas, perspective)
    parts = [country_reliance(atlas, iso, commodity_id, year) for iso in members]
    if len(members) == 1:
        return parts[0][0]
    values = [r.value for r, _ in parts]
    if any(v is None for v in values):
        missing = [m for m, (r, _) in zip(members, parts, strict=True) if r.value is None]
        return Reliance(None, None, None, f"unknown: no reliance for {', '.join(missing)}")
    nir = np.array(values, dtype=float)
    cons = [c for _, c in parts]
    sources = sorted({s for r, _ in parts for s in r.source_ids})
    lows = [float(r.low if r.low is not None else r.value) for r, _ in parts]  # type: ignore[arg-type]
    highs = [float(r.high if r.high is not None else r.value) for r, _ in parts]  # type: ignore[arg-type]
    detail = "; ".join(f"{m}: {r.basis}" for m, (r, _) in zip(members, parts, strict=True))
    if all(c is not None and c >= 0 for c in cons) and sum(c or 0.0 for c in cons) == 0:
        # every participant's consumption is a sourced nil: no reliance, and no proxy (review 31 F3)
        return Reliance(0.0, 0.0, max(highs), f"consumption nil in every participant ({detail})", False, None, sources)
    if all(c is not None and c >= 0 for c in cons):
        w = np.array(cons, dtype=float)
        v = float(bloc_reliance(nir, w))
        lo = float(bloc_reliance(np.array(lows, dtype=float), w))
        hi = float(bloc_reliance(np.array(highs, dtype=float), w))
        return Reliance(v, lo, hi, f"consumption-weighted over participants ({detail})", False, None, sources)
    v = float(nir.mean())
    return Reliance(
        v, min(lows), max(highs),
        f"proxy: equal weights, participant consumption unknown ({detail})", True, None, sources,
    )


def import_sourcing(atlas: Atlas, iso3: str, commodity_id: str) -> tuple[pd.Series, str, list[str]] | None:
    """Import shares (fractions, index = partner ISO3) of one importer for one commodity, or None.

    Choice among published tables: percentages only (rank-only rows are skipped); newest period; a form
    named total/combined/all before specific forms; then alphabetical. Returns (shares, basis, source_ids).
    """
    s = atlas.rows_of("import_sources", ("importer_iso3", "commodity_id"), (iso3, commodity_id))
    rows = s[s["share_pct"].notna()]
    if rows.empty:
        return None
    groups = rows.groupby(["form", "period", "source_id"], as_index=False).agg(n=("share_pct", "size"))
    groups["_end"] = groups["period"].str.extract(r"(\d{2,4})\D*$")[0].map(lambda x: int(x) % 100 if isinstance(x, str) else -1)
    groups["_general"] = ~groups["form"].str.contains(r"total|combined|all", case=False)
    groups = groups.sort_values(["_end", "_general", "n", "form"], ascending=[False, True, False, True])
    best = groups.iloc[0]
    sel = rows[(rows["form"] == best["form"]) & (rows["period"] == best["period"]) & (rows["source_id"] == best["source_id"])]
    named = sel[sel["partner_entity"] == "country"]
    shares = named.groupby("partner_iso3")["share_pct"].sum() / 100.0
    basis = f"{iso3} import sources, {best['form']}, {best['period']}"
    return shares.sort_values(ascending=False), basis, [str(best["source_id"])]
