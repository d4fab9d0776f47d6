"""Baseline market data of every commodity-stage node, drawn from the atlas.

For each node: country shares of world output, world output ``Q0`` (t/yr), price ``P0`` (USD/t), the demand
share and import profile of each participant. Every figure records its basis; a figure the atlas does not
hold is NaN and the basis says so (money is then not computed for that node, tonnage ratios still are).

- ``Q0``: sum of the share-basis production series (countries + "Other countries") converted to tonnes.
- ``Q0`` is replaced by the atlas table ``world_output`` where it has a row for the node (nodes without a
  tonnage series, or a series on a wider basis).
- ``P0``: the node's own price from the atlas table ``node_prices`` (USD per tonne of the node's quantity
  basis: bauxite per dry t, alumina, aluminium metal; concentrate per t contained W; REO; oxide; magnet...);
  never another stage's price. A ``--product-values`` file may replace it.
- export shares of each producer (exports / production) from the atlas table ``export_shares``.
- demand share ``d_j = C_j / Q0`` where ``C_j`` is the participant's consumption in tonnes (USA: USGS apparent
  consumption; JPN: the consumption table). Missing: the median ratio over nodes that have it (a proxy,
  flagged), clipped to [0, 1].
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd

from critmin.assess.exposure import (
    consumption_high_tonnes,
    consumption_tonnes,
    country_reliance,
    import_sourcing,
    tonnes_factor,
    us_consumption_from_trade,
)
from critmin.assess.supply import CAPACITY_DATASET, REMAINDER_DATASET, stage_shares_table
from critmin.atlas.model import Atlas

#: Participants whose losses are computed (BLOC = their sum).
PARTICIPANTS = ("USA", "JPN")

_LB = 0.45359237e-3  # t per lb (exact definition)
_PRICE_TO_USD_PER_T = {
    "USD/t": 1.0,
    "USD/kg": 1e3,
    "USD/g": 1e6,
    "USD/lb": 1.0 / _LB,
    "US cents/lb": 0.01 / _LB,
    "USD/troy oz": 1.0 / 31.1034768e-6,
    "USD/short ton": 1.0 / 0.90718474,
    "USD/flask": 1.0 / (76 * _LB),  # a mercury flask holds 76 lb
}


#: A participant's consumption figure older than this many years before the reference year is flagged as stale in
#: every output that uses it, and its loss counts in ``proxy_share_of_loss`` (review 16: Japan's cobalt demand is
#: of 2013, its tungsten of 2014). A reporting threshold, not a model parameter: it changes no number.
STALE_DEMAND_YEARS = 5
#: The words that mark a stale figure in a node's flags (``risk.rests_on_proxy`` counts them with the proxies).
STALE_MARK = "(stale: counted with the proxies)"


def stale_flag(subject: str, data_year: int, year: int) -> str | None:
    """The flag of a figure (``subject``: "JPN consumption", "world output") more than :data:`STALE_DEMAND_YEARS`
    older than the reference year, else None."""
    if year - data_year <= STALE_DEMAND_YEARS:
        return None
    return f"{subject} is from {data_year}, older than {STALE_DEMAND_YEARS} years before {year} {STALE_MARK}"


def price_to_usd_per_t(value: float, unit: str) -> float | None:
    """Convert a price to USD per metric ton; None when the unit is not a price per mass."""
    f = _PRICE_TO_USD_PER_T.get(unit.strip())
    return None if f is None else float(value) * f


@dataclass
class Node:
    """Baseline of one commodity-stage node (normalised quantities are fractions of world output ``Q0``)."""

    commodity: str
    stage: str
    group: str
    shares: dict[str, float]
    share_basis: str
    q0_t: float
    q0_basis: str
    p0_usd_per_t: float
    p0_basis: str
    demand_share: dict[str, float]
    demand_basis: dict[str, str]
    nir: dict[str, float]
    import_shares: dict[str, dict[str, float]]
    spare_by_country: dict[str, float] = field(default_factory=dict)
    #: per producer with trade data: (export share, low, high, basis) = exports / production on the node's basis
    export_share: dict[str, tuple[float, float, float, str]] = field(default_factory=dict)
    #: commercial stocks held in one country beyond buyers' working stocks (Fanya's seized exchange stocks in China),
    #: by holder ISO3: (mode, low, high) in months of world consumption (``simulate/data/located_stocks.csv``)
    located_stocks: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    source_ids: list[str] = field(default_factory=list)
    #: per country, the bound of its share where the table gives one (``le``: an upper bound; ``ge``, ``approx``)
    share_bounds: dict[str, str] = field(default_factory=dict)

    @property
    def share_year(self) -> int | None:
        """The data year of the node's country shares (the latest year its ``share_basis`` names), else None."""
        years = re.findall(r"\b(20\d\d)\b", self.share_basis)
        return max(int(y) for y in years) if years else None

    @property
    def key(self) -> str:
        return f"{self.commodity}/{self.stage}"

    @property
    def value_usd(self) -> float:
        """Annual value of world output P0*Q0 (USD/yr); NaN when either is unknown."""
        return self.p0_usd_per_t * self.q0_t


#: Suffix of the key under which an input-control scenario keeps the restrictors' own output at the node (not withheld).
OWN_OUTPUT = " own output"
#: Start of the flag of an input-control scenario (the ranking reads it to name what the measure cuts).
INPUT_CONTROL_FLAG = "input control:"
#: End of the flag of a base-year nil consumption whose row runs higher (the ranking row and the answer carry it).
NOT_SIMULATED_FLAG = "that use is not simulated"


def under_input_control(node: Node, restrictors: list[str], control: dict[str, float] | None) -> Node:
    """The node as a measure on one of its inputs sees it (``Scenario.input_control``; validation.md §6, the
    chemistry split): China licensing the ternary precursors from which Korea makes nickel-based cathode.

    With ``π_c`` the share of producer c's output made from the restrictors' input:

    - the controlled output ``s_R' = Σ_c π_c s_c`` takes the restrictors' place (split over them pro rata to their
      own shares), and its export share is 1 (it is made outside the restrictors and sold to the world);
    - each controlled producer keeps ``(1 - π_c) s_c``, so its makers gain only on what they can still make;
    - the restrictors' own output at the node stays on the market under ``"<ISO3> own output"`` (the measure does
      not cover it) and sells into the same world market as the rest: one integrated market, in which the
      restrictors' own buyers share the shortfall and, where the node has no spare capacity by country, the generic
      ``spare_capacity`` rate applies to every producer outside the controlled output, the restrictors' own
      included. Review 32 bracketed the U.S. loss of E023's precursor route from about a quarter (the restrictors'
      idle lines fill the gap) to three times (their output kept at home) of this figure (validation.md §6).

    Without ``control`` the node is returned unchanged. A participant cannot be the restrictor of an input control
    (its producers' gain would be credited on another country's output).
    """
    if not control:
        return node
    rs = sorted(set(restrictors))
    if set(rs) & set(PARTICIPANTS):
        raise ValueError(f"input control by a participant ({sorted(set(rs) & set(PARTICIPANTS))}) at {node.key} is not modelled")
    shares = dict(node.shares)
    controlled = 0.0
    for c, pi in control.items():
        part = shares.get(c, 0.0) * pi
        if c in shares:
            shares[c] -= part
        controlled += part
    own = {r: shares.pop(r, 0.0) for r in rs}
    total_own = sum(own.values())
    for r in rs:
        if own[r] > 0:
            shares[r + OWN_OUTPUT] = own[r]
        shares[r] = controlled * (own[r] / total_own if total_own > 0 else 1.0 / len(rs))
    exports = {k: v for k, v in node.export_share.items() if k not in rs}
    for r in rs:
        exports[r] = (1.0, 1.0, 1.0, "input control: the controlled output is made outside the restrictors and sold to the world")
    named = ", ".join(f"{c} {p:.0%} of {node.shares.get(c, 0.0):.1%}" for c, p in sorted(control.items()))
    absent = sorted(c for c in control if node.shares.get(c, 0.0) <= 0)
    flag = (f"{INPUT_CONTROL_FLAG} the measure restricts an input; the output it stops ({named} of world output = "
            f"{controlled:.1%}) stands in for the restrictors' exports, and their own output at the node is not withheld"
            + (f" ({', '.join(absent)} listed with no share of the node: nothing of theirs is stopped)" if absent else ""))
    return replace(node, shares=shares, export_share=exports,
                   share_bounds={k: v for k, v in node.share_bounds.items() if k not in rs}, flags=[*node.flags, flag])


def market_outside_restrictor(node: Node, fallback_export_share: float) -> tuple[float, str]:
    """``d_T = 1 - s_r (1 - e_r)``: the share of world output that a ban on every destination rations, outside the
    home use of the node's largest producer r that is not a participant (``s_r`` its share of output, ``e_r`` its
    export share from the trade data, else ``fallback_export_share``, the ``restrictor_export_share`` parameter), and
    its basis; 1 where no such producer is listed."""
    others = {c: s for c, s in node.shares.items() if c not in PARTICIPANTS and c not in ("other", "OTHER", "ROW") and s > 0}
    if not others:
        return 1.0, "no dominant supplier outside the participants"
    r = max(sorted(others), key=lambda c: others[c])
    s_r = others[r]
    if r in node.export_share:
        e_r, basis = float(node.export_share[r][0]), f"{r} export share {float(node.export_share[r][0]):.2f} (trade data)"
    else:
        e_r, basis = float(fallback_export_share), f"{r} export share {fallback_export_share:.2f} (restrictor_export_share parameter, an assumption)"
    return 1.0 - s_r * (1.0 - e_r), f"outside {r}'s home use ({r} {s_r:.2f} of output; {basis})"


def share_of_added_supply(node: Node, members: tuple[str, ...] | list[str], fallback_export_share: float) -> tuple[float, str]:
    """The share of a tonne added outside the dominant supplier that reaches ``members`` in a disruption, and its
    basis (docs/simulation.md §7.1):

        m = Σ_{i ∈ members} d_i / max(d_T, Σ_k d_k),   d_T = 1 - s_r (1 - e_r)   (:func:`market_outside_restrictor`)

    ``d_i`` the members' demand shares of world output. ``d_T`` is the market outside the restrictor's home use of its
    own output: the simulator rations that market in proportion to demand (``engine._statics``, a ban on every
    destination), so a tonne added there lowers every buyer's shortfall by its demand share of it. Review 23: the
    stock plan gave the two participants a whole new mine's output, although they use about 28 % of the world's
    antimony and 17 % of its tungsten. ``k`` runs over every participant with a demand share: where the participants
    together want more than that market (Japan's primary gallium), they share the tonne in proportion to demand, so
    the members' shares never add to more than the tonne (review 27: Japan 1.00 and the USA 0.23 of new gallium)."""
    def share(i: str) -> float:
        v = float(node.demand_share.get(i, np.nan))
        return v if np.isfinite(v) else 0.0

    d = sum(share(i) for i in members)
    if d <= 0:
        return 0.0, "no sourced demand share of the members"
    d_all = max(sum(share(i) for i in node.demand_share), d)
    d_t, where = market_outside_restrictor(node, fallback_export_share)
    if where.startswith("no dominant"):
        return min(d, 1.0), f"the members' demand share of world output ({d:.2f}; no dominant supplier outside them)"
    den = max(d_t, d_all)
    m = min(d / den, 1.0) if den > 0 else 1.0
    return m, (f"{d:.3f} of world demand over the {d_t:.3f} {where}" if den == d_t else
               f"{d:.3f} of world demand over the participants' {d_all:.3f}, more than the {d_t:.3f} {where}")


def _world_output(atlas: Atlas, shares: pd.DataFrame) -> dict[tuple[str, str], tuple[float, str]]:
    p = atlas.production
    p = p[p["for_shares"] & (p["case"] == "") & (p["measure"] == "production") & p["entity"].isin(["country", "other"])]
    out: dict[tuple[str, str], tuple[float, str]] = {}
    tonnage = shares[shares["basis"] == "tonnage"].drop_duplicates(["commodity_id", "stage"])
    for r in tonnage.itertuples(index=False):
        rows = p[(p["commodity_id"] == r.commodity_id) & (p["stage"] == r.stage) & (p["year"] == r.year) & (p["source_id"] == r.source_id)]
        f = rows["unit"].map(lambda u: tonnes_factor(str(u)))
        if rows.empty or f.isna().any():
            out[(r.commodity_id, r.stage)] = (np.nan, f"world output not in tonnes ({', '.join(sorted(set(rows['unit'])))})")
            continue
        q = float((rows["value"].fillna(0.0) * f.astype(float)).sum())
        out[(r.commodity_id, r.stage)] = (q, f"{r.source_id} {int(r.year)} production, countries + other")
    return out


def _spare(atlas: Atlas, commodity: str, stage: str, year: int) -> dict[str, float]:
    """Capacity minus production by country (t) where the atlas lists both for the node and year."""
    p = atlas.rows_of("production", ("commodity_id", "stage"), (commodity, stage))
    rows = p[(p["case"] == "") & (p["year"] == year) & (p["entity"] == "country")]
    cap = rows[rows["measure"] == "capacity"]
    prod = rows[(rows["measure"] == "production") & rows["for_shares"]]
    if cap.empty or prod.empty:
        return {}
    def tonnes(df: pd.DataFrame) -> pd.Series:
        f = df["unit"].map(lambda u: tonnes_factor(str(u))).astype(float)
        return (df["value"] * f).groupby(df["country_iso3"]).sum()
    c, q = tonnes(cap), tonnes(prod)
    both = c.index.intersection(q.index)
    return {str(k): float(max(c[k] - q[k], 0.0)) for k in both if np.isfinite(c[k]) and np.isfinite(q[k])}


def _prices(atlas: Atlas) -> dict[tuple[str, str], tuple[float, str]]:
    """Each node's own baseline price (USD per tonne of the node's quantity basis) from the atlas table
    ``node_prices`` (the row marked ``use``). A node without one stays unpriced: it never borrows another
    stage's price."""
    t = atlas.tables.get("node_prices")
    out: dict[tuple[str, str], tuple[float, str]] = {}
    if t is None:
        return out
    t = t[t["use"] & t["usd_per_t"].notna()]
    for r in t.to_dict("records"):
        rng = ""
        if pd.notna(r["low_usd_per_t"]) or pd.notna(r["high_usd_per_t"]):
            rng = f", range {r['low_usd_per_t']:,.0f}-{r['high_usd_per_t']:,.0f}" if pd.notna(r["low_usd_per_t"]) and pd.notna(r["high_usd_per_t"]) else ""
        year = f" {int(r['year'])}" if pd.notna(r["year"]) else ""
        out[(str(r["commodity_id"]), str(r["stage"]))] = (
            float(r["usd_per_t"]),
            f"{r['form']} ({r['market']}{year}), {r['usd_per_t']:,.0f} USD per {r['quantity_basis']}{rng}; {r['verification']} [{r['source_id']}]",
        )
    return out


def _world_output_rows(atlas: Atlas) -> dict[tuple[str, str], tuple[float, str]]:
    """World output on the node's own basis from the atlas table ``world_output`` (rows marked ``use``): nodes
    without a tonnage series, and nodes whose series covers a wider basis (e.g. IEA battery-grade graphite,
    natural and synthetic, against the spherical natural graphite node)."""
    t = atlas.tables.get("world_output")
    out: dict[tuple[str, str], tuple[float, str]] = {}
    if t is None:
        return out
    for r in t[t["use"] & t["world_output_t"].notna()].to_dict("records"):
        year = f" {int(r['year'])}" if pd.notna(r["year"]) else ""
        out[(str(r["commodity_id"]), str(r["stage"]))] = (
            float(r["world_output_t"]), f"world_output table: {r['quantity_basis']}{year}, {r['verification']} [{r['source_id']}]")
    return out


def _world_output_years(atlas: Atlas) -> dict[tuple[str, str], int]:
    """Data year of each node's ``world_output`` row marked ``use`` (where it has one)."""
    t = atlas.tables.get("world_output")
    if t is None:
        return {}
    used = t[t["use"] & t["world_output_t"].notna() & t["year"].notna()]
    return {(str(c), str(st)): int(y) for c, st, y in zip(used["commodity_id"], used["stage"], used["year"], strict=True)}


def _export_shares(atlas: Atlas) -> dict[tuple[str, str], dict[str, tuple[float, float, float, str]]]:
    """Per node and producer: (export share, low, high, basis) from the atlas table ``export_shares``."""
    t = atlas.tables.get("export_shares")
    out: dict[tuple[str, str], dict[str, tuple[float, float, float, str]]] = {}
    if t is None:
        return out
    for r in t[t["use"] & t["export_share"].notna()].to_dict("records"):
        e = float(r["export_share"])
        lo = float(r["low"]) if pd.notna(r["low"]) else e
        hi = float(r["high"]) if pd.notna(r["high"]) else e
        lo, hi = min(lo, e), max(hi, e)
        year = f" {int(r['year'])}" if pd.notna(r["year"]) else ""
        out.setdefault((str(r["commodity_id"]), str(r["stage"])), {})[str(r["exporter_iso3"])] = (
            e, lo, hi, f"{r['basis']}{year}, {r['verification']} [{r['source_id']}]")
    return out


@dataclass
class NodeTable:
    """All nodes with country shares, with helpers to look them up."""

    nodes: list[Node]
    product_values: pd.DataFrame | None = None

    @cached_property
    def index(self) -> dict[str, int]:
        return {n.key: i for i, n in enumerate(self.nodes)}

    def get(self, commodity: str, stage: str) -> Node:
        i = self.index.get(f"{commodity}/{stage}")
        if i is None:
            raise KeyError(f"{commodity}/{stage}")
        return self.nodes[i]

    def __len__(self) -> int:
        return len(self.nodes)


#: A participant consumption / world output ratio above this is taken to compare different bases (e.g. a
#: U.S. apparent consumption of a processed form against world mine output) and replaced by the proxy.
MAX_PLAUSIBLE_DEMAND_SHARE = 0.5


def _consumption_ratio(cons: dict[str, dict[str, float]]) -> dict[tuple[str, str], tuple[float, int]]:
    """Median ratio of two participants' consumption (t) over the commodities where both are known."""
    out: dict[tuple[str, str], tuple[float, int]] = {}
    for a in PARTICIPANTS:
        for b in PARTICIPANTS:
            if a == b:
                continue
            r = [cons[c][a] / cons[c][b] for c in cons if cons[c].get(a, 0) > 0 and cons[c].get(b, 0) > 0]
            out[(a, b)] = (float(np.median(r)), len(r)) if r else (np.nan, 0)
    return out


#: the aggregate node whose tonnes include those of the element nodes (group ``rare_earths``)
AGGREGATE_NODE = "rare_earths"


def _element_proxies_by_composition(nodes: list[Node]) -> None:
    """A participant's element demand that no source gives, where it has a measured demand at the aggregate: its
    aggregate total times the other participant's share of the element in its own total,
    ``C_e,j = C_agg,j · C_e,o / C_agg,o`` (flagged as a proxy; netted from the aggregate like a measured element).

    Review 11: the U.S. NdPr, Dy and Tb demand was Japan's times the median U.S./Japan consumption ratio (2.07) and
    sat beside the whole U.S. aggregate: 11,358 t of NdPr against USGS apparent consumption of 6,600 t of all rare
    earths. By composition it is 1,927 t (Japan's 29 % NdPr share of its products; the U.S. end-use split bounds
    its non-La/Ce rest at about 1,665 t, so even this overstates, Japan's mix being magnet-heavy). The proxies of one
    participant together stay within what its measured elements leave of its total (6,600 t less yttrium 500 t and
    lanthanum + cerium 4,435 t, an estimated lower bound: 1,665 t), scaled down where they exceed it."""
    for agg in nodes:
        if agg.commodity != AGGREGATE_NODE or not np.isfinite(agg.q0_t) or agg.q0_t <= 0:
            continue
        elements = [e for e in nodes if e.group == agg.group and e.commodity != AGGREGATE_NODE and e.stage == agg.stage
                    and np.isfinite(e.q0_t) and e.q0_t > 0]
        for iso in PARTICIPANTS:
            other = next(o for o in PARTICIPANTS if o != iso)
            if not (agg.demand_basis.get(iso, "").startswith(iso) and agg.demand_basis.get(other, "").startswith(other)):
                continue
            total_j, total_o = agg.demand_share[iso] * agg.q0_t, agg.demand_share[other] * agg.q0_t
            # the participant's measured element demands, once per element over the group's stages (U.S. yttrium
            # 500 t, lanthanum + cerium 4,435 t): the proxies share what they leave of its total
            measured = {n.commodity: n.demand_share[iso] * n.q0_t for n in nodes
                        if n.group == agg.group and n.commodity != AGGREGATE_NODE and np.isfinite(n.q0_t)
                        and np.isfinite(n.demand_share.get(iso, np.nan)) and n.demand_basis.get(iso, "").startswith(iso)}
            room = max(total_j - sum(measured.values()), 0.0)
            todo = {e.commodity: total_j * e.demand_share[other] * e.q0_t / total_o for e in elements
                    if not np.isfinite(e.demand_share.get(iso, np.nan)) and e.demand_basis.get(other, "").startswith(other)}
            scale = min(1.0, room / sum(todo.values())) if sum(todo.values()) > 0 else 1.0
            for e in elements:
                if e.commodity not in todo:
                    continue
                t = todo[e.commodity] * scale
                e.demand_share[iso] = t / e.q0_t
                e.demand_basis[iso] = (f"{COMPOSITION_PROXY} {iso} rare-earth total {total_j:,.0f} t x {other}'s {e.commodity} share of its "
                                       f"total ({e.demand_share[other] * e.q0_t:,.0f} / {total_o:,.0f} t)"
                                       + (f" x {scale:.3f} (the proxies together within the {room:,.0f} t its measured elements leave)" if scale < 1 else "")
                                       + f": {t:,.0f} t")
                e.flags.append(f"{iso} demand share is a proxy (the {other} composition applied to the {iso} rare-earth total)")


#: Opening of the flag of an aggregate node whose world output is the remainder after its element nodes.
REMAINDER_FLAG = "world output is the remainder"


def all_element_value(nodes: NodeTable, node: Node) -> tuple[float, float] | None:
    """For an aggregate node that holds only the remainder after its element nodes, the world value (USD/yr) and
    output (t/yr) of all its group's separated output at that stage, ``(Σ_g P0_g Q0_g, Σ_g Q0_g)`` over the
    aggregate and its element nodes (the rare-earth refine stage: 5.42 B USD, 375,190 t; their ratio is the
    all-element average price); None for any other node."""
    if not any(f.startswith(REMAINDER_FLAG) for f in node.flags):
        return None
    group = [n for n in nodes.nodes if n.group == node.group and n.stage == node.stage and np.isfinite(n.value_usd)]
    return sum(n.value_usd for n in group), sum(n.q0_t for n in group)


#: Opening of the basis of an element demand proxied from the other participant's composition (netted from the aggregate).
COMPOSITION_PROXY = "proxy by composition:"


def _net_of_elements(nodes: list[Node]) -> None:
    """A participant's demand at the rare-earth aggregate, net of its demand at the element nodes of the same stage.

    Japan's 18,835 t of rare-earth products (JSNM 2024) include its 5,500 t of NdPr, 1,160 t of yttrium and its
    dysprosium and terbium, which are nodes of their own with their own demand, losses and stocks; counted in the
    aggregate too, they were held twice (review 5: a 7,469 t aggregate stock beside the element stocks). For each
    participant j and stage s with a measured or estimated (not proxy) demand at the aggregate:
    ``d_agg,j = max(C_agg,j - Σ_e C_e,j, 0) / Q0_agg`` over the element nodes e at s with such a demand, flagged.
    The world output is netted the same way where every element node of the group at that stage has one
    (``Q0_agg = Q0_all - Σ_e Q0_e``; the refine stage: all separated rare earths less NdPr, Dy, Tb and Y), so the
    node is the remainder on both sides (mostly lanthanum and cerium) and its price is the remainder's (the atlas
    price row of the aggregate says so). Before December 2026 the refine node kept the IEA magnet-REE total
    (80,805 t) and an NdPr-rich basket ($25,052/t) against a remainder demand of mostly La/Ce ($1,090/t): Japan's
    12,032 t read as 15 % of the world and were valued at 23 times their price. Where an element's world output is
    unknown (terbium at the mine) the aggregate keeps its whole world output and price (flagged): netting a partial
    sum would leave a remainder that still holds the unknown element.
    """
    by = {(n.commodity, n.stage): n for n in nodes}
    for n in nodes:
        if n.commodity != AGGREGATE_NODE or not np.isfinite(n.q0_t) or n.q0_t <= 0:
            continue
        members = [e for e in nodes if e.group == n.group and e.commodity != AGGREGATE_NODE and e.stage == n.stage]
        elements = [e for e in members if (e.commodity, e.stage) in by and np.isfinite(e.q0_t)]
        q_all = n.q0_t
        if members and len(elements) == len(members):
            q_rest = q_all - sum(e.q0_t for e in elements)
            if q_rest <= 0:
                raise ValueError(f"{n.key}: its element nodes' world output ({q_all - q_rest:,.0f} t) is not below the "
                                 f"aggregate's ({q_all:,.0f} t): the aggregate's world_output row must cover all elements")
            n.q0_t = q_rest
            n.q0_basis = (f"{n.q0_basis}, less its element nodes ({', '.join(f'{e.commodity} {e.q0_t:,.0f} t' for e in elements)}): "
                          f"{q_rest:,.0f} t")
            n.flags.append(f"{REMAINDER_FLAG} after the element nodes ({q_rest:,.0f} of {q_all:,.0f} t); its "
                           f"country shares are the aggregate's ({n.share_basis}), not measured for the remainder")
        elif members:
            missing = sorted(e.commodity for e in members if e not in elements)
            n.flags.append(f"world output and price cover all rare earths ({', '.join(missing)} without a world output at "
                           "this stage), while participants' demand is net of their element nodes")
        netted = n.q0_t < q_all
        for iso in PARTICIPANTS:
            if not np.isfinite(n.demand_share.get(iso, np.nan)):
                continue
            total = n.demand_share[iso] * q_all
            parts = {e.commodity: e.demand_share[iso] * e.q0_t for e in elements
                     if np.isfinite(e.demand_share.get(iso, np.nan))
                     and (e.demand_basis.get(iso, "").startswith(iso) or e.demand_basis.get(iso, "").startswith(COMPOSITION_PROXY))}
            rest = max(total - sum(parts.values()), 0.0)
            n.demand_share[iso] = rest / n.q0_t
            if not parts:
                continue
            n.demand_basis[iso] = (f"{n.demand_basis[iso]}, less its element nodes ({', '.join(f'{k} {v:,.0f} t' for k, v in sorted(parts.items()))}): "
                                   f"{rest:,.0f} t")
            n.flags.append(f"{iso} demand is net of its element nodes ({rest:,.0f} of {total:,.0f} t)"
                           + ("" if netted else ", valued at the all-rare-earth basket price although the rest is mostly "
                              "lanthanum and cerium"))


def build_nodes(atlas: Atlas, year: int = 2024, product_values: pd.DataFrame | None = None) -> NodeTable:
    """Baseline of every node with country shares (see module docstring)."""
    shares = stage_shares_table(atlas, year)
    q0 = _world_output(atlas, shares)
    q0.update(_world_output_rows(atlas))
    q0_year = _world_output_years(atlas)
    prices = _prices(atlas)
    trade = _export_shares(atlas)
    groups = dict(zip(atlas.commodities["commodity_id"], atlas.commodities["group"], strict=True))
    pv = {}
    pq: dict[tuple[str, str], tuple[float, str]] = {}
    if product_values is not None:
        for r in product_values.to_dict("records"):
            key = (str(r["commodity_id"]), str(r["stage"]))
            if pd.notna(r.get("value_usd_per_t")) and str(r.get("value_usd_per_t")) != "":
                pv[key] = (float(r["value_usd_per_t"]), f"--product-values file: {r.get('source', '')}")
            if pd.notna(r.get("world_output_t")) and str(r.get("world_output_t", "")) != "":
                pq[key] = (float(r["world_output_t"]), f"--product-values file world output: {r.get('world_output_note', '')}")

    # participant consumption and reliance per commodity (computed once per commodity)
    cons: dict[str, dict[str, float]] = {}
    from_trade: dict[str, str] = {}  # commodity -> flag of a U.S. consumption estimated from USGS trade
    nir: dict[str, dict[str, float]] = {}
    imports: dict[str, dict[str, dict[str, float]]] = {}
    cons_year: dict[tuple[str, str], int] = {}  # (commodity, participant) -> year of a consumption-table figure
    for c in sorted(set(shares["commodity_id"])):
        cons[c], nir[c], imports[c] = {}, {}, {}
        for iso in PARTICIPANTS:
            rel, cons_t = country_reliance(atlas, iso, c, year)
            ct = consumption_tonnes(atlas, iso, c, year)
            if iso != "USA" or cons_t is None:  # the USA: USGS apparent consumption first, then the consumption table
                cons_t = ct[0] if ct else cons_t
                if ct and ct[0] == cons_t:
                    cons_year[(c, iso)] = int(ct[1])
            if iso == "USA" and cons_t is None:
                # USGS withholds consumption but publishes trade and a reliance: net imports / NIR (review 11)
                est = us_consumption_from_trade(atlas, c, year)
                if est is not None:
                    cons_t = est[0]
                    from_trade[c] = (f"USA consumption is an estimate from trade ({est[3]}: {est[0]:,.0f} t, range "
                                     f"{est[1]:,.0f}-{est[2]:,.0f})")
            if cons_t is not None and cons_t > 0:
                cons[c][iso] = float(cons_t)
            nir[c][iso] = float(rel.value) if rel.value is not None else np.nan
            src = import_sourcing(atlas, iso, c)
            imports[c][iso] = {str(k): float(v) for k, v in src[0].items()} if src else {}

    # consumption rows on one stage's own basis (looked up only where they exist)
    cons_table = atlas.consumption
    staged = {(str(i), str(c), str(s)) for i, c, s in zip(cons_table["country_iso3"], cons_table["commodity_id"],
                                                          cons_table["stage"].fillna(""), strict=True) if s}
    # staged consumption rows that are estimates (their note says so): the flag follows the figure into every output
    estimated: dict[tuple[str, str, str], str] = {}
    for r in cons_table[cons_table["stage"].fillna("") != ""].itertuples():
        note = str(r.note or "")
        # the flag word may follow a unit statement ("unit as published: t Dy2O3. ESTIMATE ..."): Japan's Dy and Tb
        # demand carried no flag (review 8)
        m = re.search(r"\b(ESTIMATE[^.:;(]*|LOWER BOUND|UPPER BOUND)", note)
        if m:
            estimated[(str(r.country_iso3), str(r.commodity_id), str(r.stage))] = m.group(1).strip(" ,").lower()
    nodes: list[Node] = []
    for (c, st), g in shares.groupby(["commodity_id", "stage"], sort=True):
        c, st = str(c), str(st)
        q, qb = q0.get((c, st), (np.nan, "world output unknown: shares are published percentages, no tonnage"))
        flags: list[str] = []
        if (g["dataset"] == CAPACITY_DATASET).any():
            flags.append("country shares are of capacity, not production (no production table found)")
        old_rows = g[(g["dataset"] == REMAINDER_DATASET) & (g["year"] < int(g["year"].max()))]
        for r in old_rows.itertuples(index=False):
            flags.append(f"{r.country_iso3} share attributed out of the table's unnamed rest from {int(r.year)} data "
                         f"({r.share:.2%}; production_in_remainder)")
        wy = q0_year.get((c, st))
        stale_q = stale_flag("world output", wy, year) if wy is not None and (c, st) not in pq else None
        if stale_q:  # review 17: the uranium conversion node's world output is 2017 production beside 2024 shares
            flags.append(stale_q)
        if (c, st) in pq:
            q, qb = pq[(c, st)]
            flags.append("world output from a --product-values file")
        if (c, st) in pv:
            p, pb = pv[(c, st)]
        elif (c, st) in prices:
            p, pb = prices[(c, st)]
        else:
            p, pb = np.nan, "no price of this node in the atlas (node_prices)"
        d: dict[str, float] = {}
        db: dict[str, str] = {}
        for iso in PARTICIPANTS:
            own = consumption_tonnes(atlas, iso, c, year, stage=st) if (iso, c, st) in staged else None  # own basis first
            cq = own[0] if own else cons.get(c, {}).get(iso)
            if cq is not None and np.isfinite(q) and q > 0 and cq / q <= MAX_PLAUSIBLE_DEMAND_SHARE:
                d[iso] = float(cq / q)
                db[iso] = f"{iso} consumption {cq:,.0f} t / world output"
                if not own and iso == "USA" and c in from_trade:
                    db[iso] += " (estimated from trade)"
                    flags.append(from_trade[c])
                cy = int(own[1]) if own else cons_year.get((c, iso))
                stale_c = stale_flag(f"{iso} consumption", cy, year) if cy is not None else None
                if stale_c:
                    flags.append(stale_c)
                if own and estimated.get((iso, c, st)):
                    # review 5: Japan's 16,400 t of magnets (production plus imports, exports not deducted) carried no flag
                    kind = estimated[(iso, c, st)].removeprefix("estimate").strip(" ,")
                    flags.append(f"{iso} consumption is an estimate{f' ({kind})' if kind else ''}, not a published figure")
                if own and own[0] == 0:
                    # review 32 F6: a nil of the base year whose row runs higher (U.S. LFP cathode: no plant in 2024, the
                    # plants of 2025-2026 at their nameplate) is exposure the simulation leaves out: said, not hidden
                    high = consumption_high_tonnes(atlas, iso, c, year, stage=st)
                    if high:
                        flags.append(f"{iso} consumption nil in {int(own[1])}, up to {high:,.0f} t at the row's high end: "
                                     f"{NOT_SIMULATED_FLAG}")
            else:
                if cq is not None and np.isfinite(q) and q > 0:
                    flags.append(f"{iso} consumption/world output {cq / q:.2f} > {MAX_PLAUSIBLE_DEMAND_SHARE}: different bases, proxy used")
                d[iso] = np.nan
        nodes.append(
            Node(
                commodity=c,
                stage=st,
                group=groups.get(c, ""),
                shares={str(k): float(v) for k, v in zip(g["country_iso3"], g["share"], strict=True)},
                share_bounds={str(k): str(b) for k, b in zip(g["country_iso3"], g["bound"], strict=True) if isinstance(b, str) and b},
                share_basis=f"{g['basis'].iloc[0]} ({g['dataset'].iloc[0]} {int(g['year'].max())})",
                q0_t=float(q),
                q0_basis=qb,
                p0_usd_per_t=float(p),
                p0_basis=pb,
                demand_share=d,
                demand_basis=db,
                nir={iso: nir.get(c, {}).get(iso, np.nan) for iso in PARTICIPANTS},
                import_shares={iso: imports.get(c, {}).get(iso, {}) for iso in PARTICIPANTS},
                spare_by_country=_spare(atlas, c, st, int(g["year"].max())),
                export_share=trade.get((c, st), {}),
                flags=flags,
                source_ids=sorted(set(g["source_id"])),
            )
        )
    _element_proxies_by_composition(nodes)
    _net_of_elements(nodes)
    # demand-share proxies (flagged): from the other participant's share of the same node, scaled by the median
    # ratio of the two participants' consumption over the commodities where both are known; else the median
    # observed demand share of the participant
    ratio = _consumption_ratio(cons)
    for iso in PARTICIPANTS:
        other = next(o for o in PARTICIPANTS if o != iso)
        obs = [n.demand_share[iso] for n in nodes if np.isfinite(n.demand_share[iso])]
        med = float(np.median(obs)) if obs else np.nan
        k, n_pairs = ratio.get((iso, other), (np.nan, 0))
        for n in nodes:
            if np.isfinite(n.demand_share[iso]):
                continue
            if np.isfinite(n.demand_share[other]) and np.isfinite(k) and n.demand_basis.get(other, "").startswith(other):
                n.demand_share[iso] = float(min(n.demand_share[other] * k, MAX_PLAUSIBLE_DEMAND_SHARE))
                n.demand_basis[iso] = (f"proxy: {other} demand share x median {iso}/{other} consumption ratio {k:.3g} "
                                       f"over {n_pairs} commodities with both")
            else:
                n.demand_share[iso] = med
                n.demand_basis[iso] = f"proxy: median {iso} consumption/world output over {len(obs)} nodes with data ({med:.3g})"
            n.flags.append(f"{iso} demand share is a proxy")
    for n in nodes:
        if not np.isfinite(n.q0_t):
            n.flags.append("world output unknown: no USD loss")
        if not np.isfinite(n.p0_usd_per_t):
            n.flags.append("price unknown: no USD loss")
    return NodeTable(nodes, product_values)


def with_located_stocks(nodes: NodeTable, rows: list[dict[str, object]]) -> NodeTable:
    """``nodes`` with the located stocks of ``rows`` (columns commodity_id, holder_iso3, months, low, high: months
    of world consumption) on every stage of their commodity. A stock in the restricting country cannot buffer the
    buyers it targets, and one held by a targeted country can (docs/simulation.md §4.3)."""
    by_c: dict[str, dict[str, tuple[float, float, float]]] = {}
    for r in rows:
        mode, lo, hi = (float(r[k]) for k in ("months", "low", "high"))  # type: ignore[arg-type]
        by_c.setdefault(str(r["commodity_id"]), {})[str(r["holder_iso3"])] = (mode, lo, hi)
    if not by_c:
        return nodes
    out = [replace(n, located_stocks=dict(by_c[n.commodity])) if n.commodity in by_c else n for n in nodes.nodes]
    return NodeTable(out, nodes.product_values)
