"""``critmin stockpile``: stock targets per participant and commodity from the simulated disruption distribution.

For every node where a participant runs short in the simulator's risk sample (the ``critmin risk`` library,
annual draws): the newsvendor stock, its costs, the 60/90/180-day rules evaluated on the same distribution,
a release rule the simulator can use, and (``pooled``) a stock shared by the participants. With a budget,
one linear programme allocates it across commodities (docs/stockpile.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from critmin.atlas.lists import on_list
from critmin.inputs import make_options
from critmin.simulate.carry import carry_unstockable_ore
from critmin.simulate.nodes import PARTICIPANTS, REMAINDER_FLAG, STALE_MARK
from critmin.simulate.ore import plant_intake_t, unusable_ore_reason
from critmin.simulate.run import REFILL_ROW
from critmin.stockpile.policy import STOCKABLE_STAGES, StockpileOptions
from critmin.stockpile.sizing import (
    cost_by_draw,
    expected_cost,
    keep_line,
    newsvendor,
    pool,
    pool_worth,
    stock_lp,
)

DAYS_RULES = (60, 90, 180)


def _data(name: str) -> Path:
    return Path(str(resources.files("critmin.stockpile").joinpath(f"data/{name}")))


@dataclass
class StockParameters:
    """Holding-cost rates and the day rules (``stockpile_parameters.csv``, with sources or marked assumptions)."""

    capital_rate: dict[str, float]
    storage_rate: float
    storage_basis: str
    days_rules: tuple[int, ...]
    storage_by_commodity: dict[str, float] = field(default_factory=dict)
    #: USD a year of holding a stock line at all (``fixed_cost_usd_per_line_year``; 0 without the row)
    fixed_cost: float = 0.0
    #: USD a year a pool must save to be worth its agreement (``pool_agreement_cost_usd_per_year``; 0 without the row)
    pool_cost: float = 0.0
    #: share of a year's market outside the restrictor a buyer takes a year while filling a stock
    #: (``max_purchase_share_of_market_per_year``; None without the row): states the years to fill
    purchase_share: float | None = None
    #: years of buying at ``purchase_share`` within which a stock must be in place (``max_years_to_fill``; None without
    #: the row): caps every line (review 27)
    max_years_to_fill: float | None = None

    #: warehouse rent, USD per tonne a year (``storage_cost_usd_per_t_year``; None without the row)
    rent_per_t: float | None = None
    #: multiple of that rent for materials that need controlled storage (``storage_cost_multiplier_controlled``)
    rent_multiplier: dict[str, float] = field(default_factory=dict)

    def storage(self, commodity: str) -> float:
        """Storage and insurance cost as a fraction of value per year (commodity row, else the ``*`` row)."""
        return self.storage_by_commodity.get(commodity, self.storage_rate)

    def storage_usd_per_t(self, commodity: str, p0: float) -> float:
        """Storage cost, USD per tonne a year: the warehouse rent times the commodity's controlled-storage multiple
        (review 33b G9: a rent is paid per tonne, whatever the price; the fraction-of-value rows were that rent over
        the USGS price, charged on a node price on another basis); without a rent row, ``p0`` times the rate."""
        if self.rent_per_t is not None:
            return self.rent_per_t * self.rent_multiplier.get(commodity, 1.0)
        return p0 * self.storage(commodity)

    @classmethod
    def load(cls, path: str | Path | None = None) -> StockParameters:
        from critmin.portfolio.model import InstrumentParameters

        ip = InstrumentParameters.load()
        cap = {"USA": ip.get("all", "discount_rate_government_usd"), "JPN": ip.get("all", "discount_rate_government_jpy")}
        p = Path(path) if path else _data("stockpile_parameters.csv")
        storage, basis = 0.01, "critmin assumption 1 %/yr (no stockpile_parameters.csv)"
        rules = DAYS_RULES
        if p.exists():
            t = pd.read_csv(p, dtype=str, keep_default_na=False)
            row = t[(t["parameter"] == "storage_cost_rate") & (t["scope"] == "*")]
            if len(row) and row["value"].iloc[0] != "":
                storage = float(row["value"].iloc[0])
                basis = f"{row['kind'].iloc[0]}: {row['source'].iloc[0]}"
            by_c = {str(r["scope"]).split(":", 1)[1]: float(r["value"]) for r in t.to_dict("records")
                    if r["parameter"] == "storage_cost_rate" and str(r["scope"]).startswith("commodity:") and r["value"] != ""}
            kr = t[(t["parameter"] == "capital_cost_rate") & (t["scope"] == "KOR")]
            if len(kr) and kr["value"].iloc[0] != "":
                cap["KOR"] = float(kr["value"].iloc[0])
            fx = t[(t["parameter"] == "fixed_cost_usd_per_line_year") & (t["scope"] == "*")]
            fixed = float(fx["value"].iloc[0]) if len(fx) and fx["value"].iloc[0] != "" else 0.0
            pa = t[(t["parameter"] == "pool_agreement_cost_usd_per_year") & (t["scope"] == "*")]
            pool_cost = float(pa["value"].iloc[0]) if len(pa) and pa["value"].iloc[0] != "" else 0.0
            ps = t[(t["parameter"] == "max_purchase_share_of_market_per_year") & (t["scope"] == "*")]
            share = float(ps["value"].iloc[0]) if len(ps) and ps["value"].iloc[0] != "" else None
            yf = t[(t["parameter"] == "max_years_to_fill") & (t["scope"] == "*")]
            years = float(yf["value"].iloc[0]) if len(yf) and yf["value"].iloc[0] != "" else None
            rt = t[(t["parameter"] == "storage_cost_usd_per_t_year") & (t["scope"] == "*")]
            rent = float(rt["value"].iloc[0]) if len(rt) and rt["value"].iloc[0] != "" else None
            mult = {str(r["scope"]).split(":", 1)[1]: float(r["value"]) for r in t.to_dict("records")
                    if r["parameter"] == "storage_cost_multiplier_controlled" and str(r["scope"]).startswith("commodity:") and r["value"] != ""}
            if rent is not None:
                basis = f"warehouse rent US${rent:,.1f} per tonne a year (storage_cost_usd_per_t_year), x3 for controlled storage where stated"
            return cls(cap, storage, basis, rules, by_c, fixed, pool_cost, share, years, rent, mult)
        return cls(cap, storage, basis, rules)


def read_holdings(path: str | Path | None = None) -> pd.DataFrame:
    """What public sources say of today's government stocks (``stockpile/data/holdings.csv``: holder, country,
    commodity, quantity in t where convertible, kind holding / acquisition_plan / target_days / budget /
    disposal, as-of date, source; data/raw/stockpiles/PROVENANCE.md)."""
    p = Path(path) if path else Path(str(resources.files("critmin.stockpile").joinpath("data/holdings.csv")))
    return pd.read_csv(p, dtype={"commodity_id": str, "country_iso3": str, "kind": str}, keep_default_na=False)


def holdings_for(h: pd.DataFrame, participant: str, commodity: str) -> tuple[float | None, list[str]]:
    """A participant's sourced holding of a commodity in t (None where no source publishes it) and every
    sourced statement about it (holdings, acquisition plans, targets), newest first."""
    held, _, _, notes = _holdings_and_plans(h, participant, commodity)
    return held, notes


def _holdings_and_plans(h: pd.DataFrame, participant: str, commodity: str) -> tuple[float | None, float | None, float | None, list[str]]:
    """The newest sourced holding (t), the largest published acquisition plan in t (a solicitation, RFI, AMP maximum
    or contract ceiling: evidence, not stock; plans of one buyer overlap, so they are not added), the tonnes
    actually ordered under them (``ordered_t``, summed), and every statement, newest first."""
    from critmin.atlas.lists import LISTED_PARENT

    mine = h[(h["country_iso3"] == participant) & h["commodity_id"].isin([commodity, LISTED_PARENT.get(commodity, commodity)])]
    held = plan = ordered = None
    notes = []
    for r in mine.sort_values("as_of", ascending=False).to_dict("records"):
        q = pd.to_numeric(r.get("quantity_t"), errors="coerce")
        qty = f"{q:,.0f} t" if np.isfinite(q) else (f"{r['quantity']} {r['unit']}".strip() if str(r.get("quantity", "")) else "quantity not published")
        o = pd.to_numeric(r.get("ordered_t", ""), errors="coerce")
        status = str(r.get("status") or "").strip()
        notes.append(f"{str(r['kind']).replace('_', ' ')}: {qty} ({r['material']}, {r['as_of']}; {r['holder']})"
                     + (f", of which {o:,.1f} t ordered" if np.isfinite(o) else "") + (f" [{status}]" if status else ""))
        if r["kind"] == "holding" and np.isfinite(q) and held is None:
            held = float(q)
        # review 23: a cancelled solicitation is evidence, not a plan that "covers" a target
        if r["kind"] == "acquisition_plan" and np.isfinite(q) and not status.startswith("cancelled"):
            plan = max(plan or 0.0, float(q))
        if np.isfinite(o):
            ordered = (ordered or 0.0) + float(o)
    return held, plan, ordered, notes


def disruption_sample(sim: Any, draws: int = 500, seed: int = 0, result: Any = None) -> dict[str, Any]:
    """Per node, each participant's shortfall (t) in every annual draw of the risk library, and the months
    (``result`` reuses a :func:`critmin.simulate.risk.risk_run`)."""
    from critmin.simulate.risk import risk_run

    res = result if result is not None else risk_run(sim, draws, seed)
    return {"node_draws": res.node_draws, "metadata": res.metadata, "draws": res.metadata["draws"],
            "purchase_price": purchase_price_ratios(res.scenarios), "control_losses": control_losses(res.scenarios)}


def control_losses(scenarios: pd.DataFrame | None) -> dict[str, dict[str, float]]:
    """Per node, the bloc's expected loss ``probability × expected loss`` (USD a year) of each control in force that the
    risk run carries there (the event rows ``ev.*`` of status ``in_force``), by its restrictors (``;``-joined ISO3).
    Review 27 F7: the stock's relaxation rate is that of the controls carrying the loss, not the largest at the node."""
    out: dict[str, dict[str, float]] = {}
    if scenarios is None or not len(scenarios) or "status" not in scenarios:
        return out
    ev = scenarios[(scenarios["status"] == "in_force") & (scenarios["perspective"] == "BLOC")
                   & scenarios["scenario"].astype(str).str.startswith("ev.")]
    for r in ev.to_dict("records"):
        w = float(r["probability"]) * float(r["expected_loss_usd"])
        if np.isfinite(w) and w > 0:
            node = out.setdefault(f"{r['commodity']}/{r['stage']}", {})
            who = str(r["restrictors"])
            node[who] = node.get(who, 0.0) + w
    return out


#: Required columns of ``stockpile/data/purchase_prices.csv``.
PURCHASE_PRICE_COLUMNS = ("commodity_id", "stage", "form", "market", "as_of", "usd_per_t", "low_usd_per_t", "high_usd_per_t", "source", "url")


def read_purchase_prices(path: str | Path | None = None) -> pd.DataFrame:
    """The latest observed benchmark price a stock of a node is bought at today (``stockpile/data/purchase_prices.csv``:
    one row per node, the node's own form and market, USD per tonne of its basis with a range, as-of month, source;
    docs/stockpile.md §2, "Bought at today's price"). Bad rows are refused with the file, line and field."""
    from critmin.errors import CritminError

    p = Path(path) if path else Path(str(resources.files("critmin.stockpile").joinpath("data/purchase_prices.csv")))
    t = pd.read_csv(p, dtype={"commodity_id": str, "stage": str, "as_of": str}, keep_default_na=False)
    missing = [c for c in PURCHASE_PRICE_COLUMNS if c not in t.columns]
    if missing:
        raise CritminError(f"{p}, line 1: missing column(s) {', '.join(missing)}")
    for i, r in enumerate(t.to_dict("records")):
        vals = [pd.to_numeric(r[c], errors="coerce") for c in ("low_usd_per_t", "usd_per_t", "high_usd_per_t")]
        for c, v in zip(("low_usd_per_t", "usd_per_t", "high_usd_per_t"), vals, strict=True):
            if not (np.isfinite(v) and v > 0):
                raise CritminError(f"{p}, line {i + 2}, field '{c}': not a positive number")
        if not vals[0] <= vals[1] <= vals[2]:
            raise CritminError(f"{p}, line {i + 2}, field 'usd_per_t': low <= usd_per_t <= high fails")
        if not str(r["source"]).strip() or not str(r["url"]).strip():
            raise CritminError(f"{p}, line {i + 2}, field 'source': every price needs its source and address")
    if "fall_back_usd_per_t" in t.columns:
        for i, v in enumerate(t["fall_back_usd_per_t"]):
            x = pd.to_numeric(v, errors="coerce")
            if str(v).strip() and not (np.isfinite(x) and x > 0):
                raise CritminError(f"{p}, line {i + 2}, field 'fall_back_usd_per_t': not a positive number")
    if t.duplicated(["commodity_id", "stage"]).any():
        raise CritminError(f"{p}, line {int(np.flatnonzero(t.duplicated(['commodity_id', 'stage']))[0]) + 2}: one row per node")
    return t


def fall_back_prices(table: pd.DataFrame) -> dict[str, float]:
    """Per node, the price a relaxation of the control lets the price outside the restrictor fall to, where observed
    (``fall_back_usd_per_t`` of ``purchase_prices.csv``: the restrictor's home price; review 25: tungsten's fall was
    charged down to the 2024 price although China's own price stood at about five times it)."""
    if "fall_back_usd_per_t" not in table.columns:
        return {}
    out: dict[str, float] = {}
    for r in table.to_dict("records"):
        x = pd.to_numeric(r["fall_back_usd_per_t"], errors="coerce")
        if np.isfinite(x) and x > 0:
            out[f"{r['commodity_id']}/{r['stage']}"] = float(x)
    return out


def observed_purchase_ratios(sim: Any, table: pd.DataFrame) -> dict[str, tuple[float, str]]:
    """Per node with an observed benchmark (:func:`read_purchase_prices`), the ratio of today's price to the node's
    baseline P0 and its basis, ``g = p_obs / P0``. Review 23: antimony and tungsten stocks were bought at the simulated
    mean price under China's controls (x1.54, x1.75) while the benchmarks had risen x2.1 and x2.2 by late 2025."""
    out: dict[str, tuple[float, str]] = {}
    for r in table.to_dict("records"):
        key = f"{r['commodity_id']}/{r['stage']}"
        if key not in sim.nodes.index:
            continue
        p0 = sim.nodes.nodes[sim.nodes.index[key]].p0_usd_per_t
        if np.isfinite(p0) and p0 > 0:
            price = float(r["usd_per_t"])
            basis = (f"latest observed benchmark ({r['form']}, {r['market']}, {r['as_of']}: "
                     f"{price:,.0f} USD/t, up to {float(r['high_usd_per_t']):,.0f}; purchase_prices.csv)")
            home = pd.to_numeric(r.get("fall_back_usd_per_t", ""), errors="coerce")
            if np.isfinite(home) and home > price:
                # review 34 H5: no one outside the restrictor sells below its home price while its exports are licensed
                # (tungsten: Rotterdam in January 2026 below China's long-term APT price of February 2026)
                price = float(home)
                basis += (f"; bought at the restrictor's home price, {price:,.0f} USD/t, which stands above that benchmark "
                          "(no seller outside it sells below it while its exports are licensed)")
            out[key] = (price / p0, basis)
    return out


def relaxation_rates(sim: Any, library: list[Any] | None = None,
                     losses: dict[str, dict[str, float]] | None = None) -> dict[str, tuple[float, str]]:
    """Per node, the annual probability that the control raising its price today is relaxed, and whose control it is.
    Where the risk run carries controls in force at the node with a loss (``losses``, :func:`control_losses`), the
    loss-weighted mean of their restrictors' relaxation probabilities (the regime model, docs/simulation.md §10.1),
    ``ρ = Σ_c L_c ρ_c / Σ_c L_c``, named by the restrictor with the largest loss; else the largest relaxation
    probability of the restrictors of the controls in force at the node (review 27 F7: Japan's lithium stock took
    Namibia's relaxation, the largest at the node, while the loss was Zimbabwe's ban); else at a node of the same
    commodity upstream of it (refined cobalt: the DRC's quota on its ore). Only relaxations of the control for every
    destination count, for every buyer: the risk family that sizes the stock's shortfalls has that relaxation, and a
    stock's cost must assume the same. Reviews 25-27: China's Nov 2025
    general licences for U.S. end users (five regimes) had set its rate at 0.265 for every buyer, then for the USA alone
    (beside 0.906 of shortfalls from the family: 1.17); they are reported (``relaxation_by_destination``), not used.
    Nodes without such a control are absent. (The library's events in force; the risk run gathers them and their
    outcomes in families ``ctl.*``.)"""
    if sim.regimes is None:
        return {}
    lib = library if library is not None else sim.library()
    at: dict[str, tuple[float, str]] = {}
    for s in lib:
        if s.status == "in_force" and s.restrictors:
            key = f"{s.commodity}/{s.stage}"
            rho, who = max((sim.regimes.probability_for(r, "relaxation", "WORLD"), r) for r in s.restrictors)
            if rho > at.get(key, (-1.0, ""))[0]:
                at[key] = (float(rho), who)
    for key, by in (losses or {}).items():
        total = sum(by.values())
        if total <= 0:
            continue
        rates = {who: max(sim.regimes.probability_for(r, "relaxation", "WORLD") for r in who.split(";")) for who in by}
        at[key] = (float(sum(by[w] * rates[w] for w in by) / total), max(by, key=lambda w: by[w]))
    out = dict(at)
    for u_key, val in at.items():
        u = sim.nodes.index[u_key] if u_key in sim.nodes.index else None
        if u is None:
            continue
        for v, _, _ in sim.chain.links[u]:
            nv = sim.nodes.nodes[v]
            if nv.commodity == sim.nodes.nodes[u].commodity and nv.key not in at:
                out[nv.key] = max(out.get(nv.key, (-1.0, "")), val)
    return out


def loss_persistence(sim: Any, scenarios: pd.DataFrame | None, library: list[Any] | None = None) -> dict[str, tuple[float, float]]:
    """Per node with a relaxation rate (:func:`relaxation_rates`), ``(a, ρ)``: the share ``a`` of its commodity's
    expected loss to the bloc (``probability × expected loss`` over the risk run's BLOC rows, every stage) that comes
    from controls in force (the ``ev.*`` rows of status ``in_force``: :func:`control_losses`), and the node's annual
    relaxation probability ``ρ``. The portfolio weighs a project's later output by ``a (1 - ρ)^t + 1 - a``, the
    expected share of today's loss still there if these controls are relaxed at the regime model's rate and not
    re-imposed (review 34b K5: the stocks are written down at that rate while the projects' benefit was held flat).
    By commodity, not node, because a control on ore carries its loss to the refined stages (the DRC's cobalt quota)."""
    if scenarios is None or not len(scenarios) or "status" not in scenarios:
        return {}
    bloc = scenarios[scenarios["perspective"] == "BLOC"]
    w = pd.to_numeric(bloc["probability"], errors="coerce") * pd.to_numeric(bloc["expected_loss_usd"], errors="coerce")
    w = w.where(np.isfinite(w) & (w > 0), 0.0)
    total = w.groupby(bloc["commodity"]).sum()
    in_force = w[(bloc["status"] == "in_force") & bloc["scenario"].astype(str).str.startswith("ev.")].groupby(bloc["commodity"]).sum()
    out = {}
    for key, (rho, _) in relaxation_rates(sim, library, control_losses(scenarios)).items():
        c = key.split("/")[0]
        t = float(total.get(c, 0.0))
        if t > 0:
            out[key] = (min(float(in_force.get(c, 0.0)) / t, 1.0), float(rho))
    return out


def purchase_price_ratios(scenarios: pd.DataFrame) -> dict[str, tuple[float, str]]:
    """Per node, the price a stock is bought at today, as a ratio to the baseline price, and why: the simulated mean
    price under a control in force that started after the baseline data (it happens in every draw of the risk run:
    family ``ctl.*``, status ``in_force``), in the market the participants buy in (the targeted one when the control
    targets them or every destination, else the unrestricted one), else 1 (docs/stockpile.md §2). Review 19b: the
    buy-back paid the squeeze while the first fill was costed at 2024 prices."""
    out: dict[str, tuple[float, str]] = {}
    if scenarios is None or not len(scenarios) or "targeted_price_ratio_mean" not in scenarios:
        return out
    ctl = scenarios[(scenarios["status"] == "in_force") & scenarios["family"].str.startswith("ctl.") & (scenarios["perspective"] == "BLOC")]
    for r in ctl.itertuples():
        key = f"{r.commodity}/{r.stage}"
        # the participants buy in the targeted market when the control targets them (or everyone), else outside it
        targeted = bool({"WORLD", "BLOC", *PARTICIPANTS} & set(str(r.targets).split(";")))
        ratio = max(float(r.targeted_price_ratio_mean if targeted else r.unrestricted_price_ratio), 1.0)
        if ratio > out.get(key, (1.0, ""))[0]:
            out[key] = (ratio, f"simulated mean price under the control in force ({r.scenario})")
    return out


def with_pass_through(sim: Any, ratios: dict[str, tuple[float, str]]) -> dict[str, tuple[float, str]]:
    """Purchase price ratios with the cost of a dearer input passed on to the next stage of the same commodity:

        g_v = max(g_v, 1 + c_uv P0_u (g_u - 1) / P0_v)

    for each chain link u -> v (``c_uv`` t of u per t of v) where a control in force raises u's price (``ratios``,
    :func:`purchase_price_ratios`). The one-node scenarios do not carry a price down the chain. Review 21: Japan's
    cobalt ore stock was bought at 3.42 times the 2024 price under the DRC's quota, and the U.S. refined-cobalt stock,
    sized on the same carried shortfall, at the 2024 price; with the ore's cost passed on, refined cobalt is bought at
    2.2 times (observed after the DRC's suspension: about 2)."""
    out = dict(ratios)
    for key, (g_u, basis) in ratios.items():
        if g_u <= 1.0 or key not in sim.nodes.index:
            continue
        iu = sim.nodes.index[key]
        u = sim.nodes.nodes[iu]
        for v, _, c in sim.chain.links[iu]:
            nv = sim.nodes.nodes[v]
            if nv.commodity != u.commodity or not (np.isfinite(c) and np.isfinite(u.p0_usd_per_t) and np.isfinite(nv.p0_usd_per_t)
                                                   and nv.p0_usd_per_t > 0):
                continue
            g_v = 1.0 + c * u.p0_usd_per_t * (g_u - 1.0) / nv.p0_usd_per_t
            if g_v > out.get(nv.key, (1.0, ""))[0]:
                out[nv.key] = (g_v, f"the cost of {key} passed on ({key} x{g_u:.2f}: {basis})")
    return out


def refill_per_t(nd: np.ndarray, k: int) -> np.ndarray:
    """Per draw, what buying back a tonne drawn from participant k's stock costs above the baseline price (USD/t):
    ``π_s = R_ks / D_ks``, R the refill premium of its tonnes short (``RunResult.node_draws`` rows from
    ``REFILL_ROW``: price premium of its segment times the probability that the disruption still holds a year on;
    docs/stockpile.md §2), 0 in draws without a shortfall."""
    short = nd[3 + k]
    return np.divide(nd[REFILL_ROW + k], short, out=np.zeros_like(short), where=short > 0)


def _against_holdings(h: pd.DataFrame, participant: str, commodity: str, target_t: float) -> dict[str, Any]:
    """The target against what is held, what is ordered, and what the holder has said it may buy.

    ``to_buy_t = max(0, target - holding - ordered)`` where either is published, else ``None``. A published
    plan (solicitation, RFI, AMP maximum, contract ceiling) is not stock and is not netted (review 11: DLA's
    7,480 t cobalt solicitation was cancelled, its 1,978 t tin request replaces tin-pest ingots, its 3,039 t
    antimony figure is a five-year ceiling with a first order of 143 t); where it would cover the target the
    row says so (review 10: the plan recommended less than DLA's plans without saying so)."""
    held, plan, ordered, notes = _holdings_and_plans(h, participant, commodity)
    out: dict[str, Any] = {"current_holding_t": held, "ordered_t": ordered, "planned_acquisition_t": plan,
                           "to_buy_t": (max(0.0, target_t - (held or 0.0) - (ordered or 0.0)) if held is not None or ordered is not None else None),
                           "holdings_evidence": notes or ["no public figure for this material (holdings by material are not published)"]}
    if plan is not None and plan >= target_t > 0:
        out["against_holdings"] = (f"the holder has published a plan, request or contract ceiling of {plan:,.0f} t (not an award"
                                   + (f"; {ordered:,.1f} t ordered so far" if ordered else "") + f"): if it is bought, this target "
                                   f"({target_t:,.0f} t) is covered; its size follows the holder's own (defence) requirement")
    return out


#: A stock decided by fewer draws with a shortfall than this says so (its size rests on a few simulated years).
FEW_DRAWS = 20


def flag_concerns(flag: str, participant: str) -> bool:
    """Whether a node flag bears on one participant's stock: a flag naming the other participant does not (a
    Japanese stock row does not carry "USA demand share is a proxy")."""
    others = [p for p in PARTICIPANTS if p != participant]
    if flag.startswith(f"{participant} "):
        return True
    if any(flag.startswith(f"{o} ") for o in others):
        return False  # about the other participant, even where it names this one ("the JPN composition applied ...")
    return not any(f" {o} " in f" {flag} " for o in others) or participant in flag


def expected_price_fall(rho: float, p_buy: float, floor: float) -> float:
    """``rho max(P_buy - F, 0)`` (USD per t a year): the expected fall in a stock's value when the control behind its
    price is relaxed (annual probability ``rho``) and the price falls back to ``F``, the restrictor's home price where
    observed, else the baseline (docs/stockpile.md §2)."""
    return rho * max(p_buy - floor, 0.0)


#: How a stock row marks a stale consumption figure (the ranking's :data:`critmin.simulate.nodes.STALE_MARK` says it is
#: counted with the proxies there; the stock is sized on it, as a sourced figure).
STALE_STOCK_MARK = "(stale: the line is sized on it all the same, a sourced figure; a newer one could move it)"


def received_t(sim: Any, key: str, participant: str, supply_t: float, contracted: dict[str, float] | None = None) -> float:
    """Tonnes a year of ``supply_t`` added at node ``key`` that reach ``participant``: what its buyers' contracts hold,
    then its share of the rationed market (:meth:`Simulator.share_of_added_supply`) of the rest,
    ``r_j = c_j + m_j max(z - Σ_i c_i, 0)`` (review 27). The stocks and the portfolio use the same rule."""
    held = contracted or {}
    m_j, _ = sim.share_of_added_supply(key, (participant,))
    return float(held.get(participant, 0.0)) + float(m_j) * max(float(supply_t) - sum(held.values()), 0.0)


def shortfall_after_projects(nd: np.ndarray, k: int, added_t: float, share: float) -> np.ndarray:
    """Participant k's shortfall per draw once projects add ``added_t`` t/yr to the node, of which the participant
    receives ``share`` (its demand over the market the disruption rations, :func:`critmin.simulate.nodes.share_of_added_supply`),
    delivered over the draw's months of disruption:

        D'_ks = max(D_ks - f_s m_k z, 0),   f_s = months_s / 12

    Review 23: the rule shared z between the two participants alone (in proportion to their shortfalls), which gave
    them a whole mine's output although every buyer outside the restrictor is rationed with them."""
    return np.maximum(nd[3 + k] - nd[6] / 12.0 * added_t * float(share), 0.0)


def partial_controls(sim: Any, library: list[Any] | None = None) -> dict[str, list[str]]:
    """Per node, the controls in force whose product list covers only part of it (``scope_high < 1``): the library's
    scenarios with status ``in_force``."""
    out: dict[str, list[str]] = {}
    for s in (library if library is not None else sim.library()):
        if s.status == "in_force" and s.scope_high < 1.0:
            out.setdefault(f"{s.commodity}/{s.stage}", []).append(s.id)
    return out


def basket_reason(node: Any, partial: dict[str, list[str]]) -> str | None:
    """Why a stock of an aggregate node's remainder would not relieve its shortfalls, or None.

    The rare-earth aggregate holds what its element nodes leave (mostly lanthanum and cerium, priced as such:
    docs/simulation.md §3). Where a control in force covers only part of it (China's April 2025 licences: samarium,
    lutetium, scandium, 3-15 % of the node), its simulated shortfalls are of those elements, which a stock of the
    basket does not hold. Review 20: Japan's 2,844 t "rare earths" stock was La/Ce bought against a samarium
    shortage."""
    if not any(f.startswith(REMAINDER_FLAG) for f in node.flags) or node.key not in partial:
        return None
    return (f"a remainder basket (mostly lanthanum and cerium, priced as such) short only of the elements a control in "
            f"force covers ({', '.join(partial[node.key])}: a part of the node), which a stock of the basket would not hold")


def stage_reliance(node: Any, participant: str, sim: Any = None) -> float:
    """The participant's net import reliance for the days-of-net-imports cap of a stock at ``node``.

    The commodity figure (one per commodity, all forms, recycling counted as domestic supply; 1 where unknown), except
    at an ore stage whose commodity has a later stage in the model (every mine node when ``sim`` is not given), where
    it is at least ``1 - s_j / d_j`` (the participant's share of world mine output over its demand share there): a
    refiner of imported ore imports all the ore it uses, whatever its refined output covers. Review 19b: Japan's cobalt ore stock was capped at 31 % of its use, Japan's all-forms cobalt reliance,
    although Japan mines no cobalt and its refinery runs on imported intermediate. Review 23: a single-stage node
    standing for every form (antimony/mine, held as metal) keeps the commodity figure (USGS: 85 %, secondary
    antimony counted), not 1."""
    nir = node.nir.get(participant, np.nan)
    nir = float(nir) if nir is not None and np.isfinite(nir) else 1.0
    d = node.demand_share.get(participant, np.nan)
    ore = node.stage == "mine" and (sim is None or any(n.commodity == node.commodity and n.stage != "mine" for n in sim.nodes.nodes))
    if ore and np.isfinite(d) and d > 0:
        nir = max(nir, 1.0 - min(node.shares.get(participant, 0.0) / d, 1.0))
    return nir


def net_exporter_at(node: Any, participant: str, sim: Any = None) -> bool:
    """Whether the participant's own output covers its use: its stage-matched net import reliance
    (:func:`stage_reliance`) is 0, or its share of the node's world output is at least its demand share there,
    ``s_j >= d_j`` (the reliance is one figure per commodity: Japan imports all its nickel ore, reliance 1, but makes
    more refined nickel than it uses, 5.25 % of world output against 4.85 %, review 16). Review 23: Japan was a "net
    exporter of titanium ore" on its titanium-sponge reliance (0), although it mines none."""
    if stage_reliance(node, participant, sim) <= 0.0:
        return True
    d = node.demand_share.get(participant, np.nan)
    return bool(np.isfinite(d) and d > 0 and node.shares.get(participant, 0.0) >= d)


def one_stage_per_consumption(sim: Any, node_draws: dict[str, np.ndarray], members: list[str], stages: tuple[str, ...]) -> dict[tuple[str, str], str]:
    """Nodes not to stock because the same consumption figure is stocked at another stage of the commodity
    (stages where the participant is a net exporter are not candidates: they are never stocked).

    A participant's consumption of a commodity is often one figure (apparent consumption of refined cobalt, say)
    that serves as its demand at every stage of the commodity; stocking the mine and the refined stage against it
    would hold the same need twice. Nodes of one commodity whose demand rests on the same figure (the same basis
    text) are grouped, and only the node with the largest expected shortage cost without a stock,
    ``v_jn E[D_jn]`` (the need the stock answers), is stocked; ties go to the more processed stage. Returns
    ``{(participant, node): node stocked instead}``."""
    from critmin.atlas.schema import STAGE_ORDER

    groups: dict[tuple[str, str, str], list[tuple[float, int, str]]] = {}
    for key, nd in node_draws.items():
        node = sim.nodes.nodes[sim.nodes.index[key]]
        if node.stage not in stages or not (np.isfinite(node.p0_usd_per_t) and np.isfinite(node.q0_t)):
            continue
        for j in members:
            basis = node.demand_basis.get(j, "")
            if not basis or basis.startswith("proxy") or net_exporter_at(node, j, sim) or unusable_ore_reason(sim, node, j):
                continue
            k = PARTICIPANTS.index(j)
            need = sim.value_per_t_supplied(node_draws, key, k) * float(nd[3 + k].mean())
            groups.setdefault((j, node.commodity, basis.split(" / ")[0]), []).append((need, STAGE_ORDER.get(node.stage, -1), key))
    out: dict[tuple[str, str], str] = {}
    for (j, _, _), items in groups.items():
        kept = max(items)[2]
        for _, _, key in items:
            if key != kept:
                out[(j, key)] = kept
    return out


def plan_stockpiles(sim: Any, perspective: str = "BLOC", budget: float | None = None, pooled: bool = False, draws: int = 500,
                    seed: int = 0, params: StockParameters | None = None, sample: dict[str, Any] | None = None,
                    commodities: dict[str, set[str]] | None = None, stages: tuple[str, ...] | None = None,
                    max_days: float | None = None, sourced_demand_only: bool = True,
                    after_projects: dict[str, float] | None = None,
                    after_projects_contracted: dict[str, dict[str, float]] | None = None,
                    supply_year_ahead: dict[str, float] | None = None,
                    supply_year_ahead_contracted: dict[str, dict[str, float]] | None = None,
                    supply_year_ahead_draws: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """Stock targets (see module docstring). ``budget`` (USD of purchases) applies per participant.

    Policy: ``commodities`` maps each participant to the commodities it may stock (its critical-mineral list,
    derived nodes through their listed parent; ``None``: the bundled lists, ``critmin.atlas.lists``); ``stages`` the stockable stages (default
    :data:`STOCKABLE_STAGES`); ``max_days`` caps every stock at that many days of the participant's net imports,
    ``S <= max_days / 365 * NIR_j d_j Q0`` (days of net imports: the participant's own output keeps flowing; NIR 1
    where unknown). The same caps bind the budgeted programme.

    ``after_projects`` (node -> t/yr): the expected supply the recommended projects add once they produce; each
    stock row at such a node also gives ``stock_after_projects_t``, the line sized on what they leave
    (:func:`shortfall_after_projects`; docs/stockpile.md §2, "After the projects"). ``after_projects_contracted`` (node
    -> ISO3 -> t/yr): the part of it contracted to buyers of a country, which goes to that country; a participant
    receives ``c_j + m_j max(z - Σ_i c_i, 0)`` (review 27: GM holds all of Thacker Pass Phase 1, yet Japan's lithium
    stock fell on it).

    ``supply_year_ahead`` (node -> t/yr) and ``supply_year_ahead_contracted`` (node -> ISO3 -> t/yr): the output expected
    over the twelve months ahead from plants producing since the node's base year or being commissioned or built
    (review 34 H7, 34b K9: Japan's dysprosium stock was sized as if Lynas' Dy/Tb circuit, producing since May 2025, did
    not exist, and the U.S. tungsten stock as if Sangdong, commissioning, shipped nothing to GTP). Each line is sized on
    the shortfall they leave, ``D'_js = max(D_js - f_s r_j, 0)`` with ``r_j`` what the participant receives (its
    contracts, then its market share of the rest: as after the projects), and records it
    (``supply_year_ahead_received_t_per_year``; docs/stockpile.md §2, "The year ahead"). ``supply_year_ahead_draws`` (node ->
    participant -> t/yr per draw of the sample) replaces that expectation by what the participant receives in each draw
    (review 35b M3: a plant that may not deliver is not a certain supply; the plan draws each plant's delivery with its
    completion probability, :meth:`critmin.Study.year_ahead_draws`)."""
    # every option checked before any work (one model for the library, the CLI, the study file and the web)
    make_options(StockpileOptions, perspective=perspective, budget_usd=budget, pooled=pooled, draws=draws, seed=seed, max_days=max_days,
                 stages=list(stages) if stages is not None else list(STOCKABLE_STAGES), sourced_demand_only=sourced_demand_only,
                 after_projects=dict(after_projects or {}), after_projects_contracted=dict(after_projects_contracted or {}),
                 supply_year_ahead=dict(supply_year_ahead or {}), supply_year_ahead_contracted=dict(supply_year_ahead_contracted or {}))
    ahead, ahead_contracted = dict(supply_year_ahead or {}), dict(supply_year_ahead_contracted or {})
    ahead_draws = dict(supply_year_ahead_draws or {})
    covered_ahead: list[dict[str, str]] = []
    stages = tuple(stages) if stages is not None else STOCKABLE_STAGES
    contracted = dict(after_projects_contracted or {})
    if commodities is None:
        from critmin.atlas.lists import critical_lists

        commodities = critical_lists()
    sp = params or StockParameters.load()
    holdings = read_holdings()
    smp = sample or disruption_sample(sim, draws, seed)
    draws = smp["draws"]
    w = np.full(draws, 1.0 / draws)
    members = list(PARTICIPANTS) if perspective.upper() == "BLOC" else [perspective.upper()]
    rows: list[dict[str, Any]] = []
    not_stocked: list[dict[str, str]] = []
    stocked_elsewhere: list[dict[str, str]] = []
    net_exporter: list[dict[str, str]] = []
    wrong_form: list[dict[str, str]] = []
    baskets: list[dict[str, str]] = []
    library = sim.library()
    partial = partial_controls(sim, library)
    relax = relaxation_rates(sim, library, smp.get("control_losses"))
    lp_inputs: dict[str, list[tuple[str, np.ndarray, float, float, float, float, np.ndarray]]] = {j: [] for j in members}
    node_draws, carried = carry_unstockable_ore(sim, smp["node_draws"], members, sourced_only=sourced_demand_only)
    # a stock is bought at today's price: the latest observed benchmark where one is recorded, else the simulated
    # price under the controls in force since the baseline; the simulated price stays as the low case
    simulated = dict(smp.get("purchase_price", {}))
    prices_table = read_purchase_prices()
    observed = observed_purchase_ratios(sim, prices_table)
    floors = fall_back_prices(prices_table)
    purchase_prices = with_pass_through(sim, {**simulated, **observed})
    low_case = with_pass_through(sim, simulated)
    stocked_at = one_stage_per_consumption(sim, node_draws, members, stages)
    for key in sorted(node_draws):
        nd = node_draws[key]
        node = sim.nodes.nodes[sim.nodes.index[key]]
        p0 = node.p0_usd_per_t
        if not (np.isfinite(p0) and np.isfinite(node.q0_t)):
            continue
        # a stock is bought at today's price: under a control in force since the baseline, the simulated price
        # under it (the buy-back premium of a release is counted apart, against the release price P0)
        ratio, ratio_basis = purchase_prices.get(key, (1.0, "baseline price"))
        p_buy = p0 * ratio
        # what a tonne released is worth to each participant where it is short (its end uses: output saved plus the
        # premium spared on that tonne), the pool's the bloc's
        c_of = {j: sim.value_per_t_supplied(node_draws, key, PARTICIPANTS.index(j)) for j in members}
        c_pool = sim.value_per_t_supplied(node_draws, key, len(PARTICIPANTS))
        months = nd[6]
        typical_months = float(months[months > 0].mean()) if (months > 0).any() else 12.0
        if node.stage not in stages:
            continue
        per_member: dict[str, np.ndarray] = {}
        refills: dict[str, np.ndarray] = {}
        separate: dict[str, float] = {}  # each member's own stock (t), the pool's cap
        for j in members:
            short = nd[3 + PARTICIPANTS.index(j)]
            if not (short > 0).any():
                continue
            if commodities is not None and not on_list(node.commodity, commodities.get(j, set())):
                continue
            basis = node.demand_basis.get(j, "")
            if net_exporter_at(node, j, sim):
                # a net exporter's own output covers its use: a shortfall simulated for it is the proportional
                # rationing of a world market its producers serve first, and a public stock would hold what they make
                net_exporter.append({"participant": j, "node": key, "reason": "its own output covers its use (net import reliance 0, "
                                     "or a share of world output at least its demand share here)"})
                continue
            unusable = unusable_ore_reason(sim, node, j)
            if unusable:
                wrong_form.append({"participant": j, "node": key, "reason": unusable})
                continue
            basket = basket_reason(node, partial)
            if basket:
                baskets.append({"participant": j, "node": key, "reason": basket})
                continue
            kept = stocked_at.get((j, key))
            if kept is not None:
                # one consumption figure is one need: stocked once, in the most processed form it is bought in
                stocked_elsewhere.append({"participant": j, "node": key, "stocked_at": kept,
                                          "reason": f"the same consumption ({basis.split(' / ')[0]}) is stocked at {kept}, where its need is largest"})
                continue
            if sourced_demand_only and basis.startswith("proxy"):
                # a stock sized on a demand nobody measured is an invented volume: listed, not stocked
                not_stocked.append({"participant": j, "node": key, "reason": f"demand is a proxy ({basis})"})
                continue
            year_ahead: dict[str, float] = {}
            if key in ahead or key in ahead_draws:
                # the line is sized on what the plants expected in the year ahead leave (the participant's contracts
                # first, then its market share of the rest), drawn plant by plant where the draws are given
                got_s = (np.asarray(ahead_draws[key].get(j, np.zeros(draws)), dtype=float) if key in ahead_draws
                         else np.full(draws, received_t(sim, key, j, ahead.get(key, 0.0), ahead_contracted.get(key, {}))))
                if got_s.shape != (draws,):
                    raise ValueError(f"supply_year_ahead_draws[{key!r}][{j!r}]: {got_s.shape[0] if got_s.ndim else 1} values for {draws} draws")
                got = float(w @ got_s)
                year_ahead = {"supply_year_ahead_t_per_year": ahead.get(key, got), "supply_year_ahead_received_t_per_year": got,
                              "supply_year_ahead_share_of_draws_without": min(float(w @ (got_s <= 0)), 1.0),
                              "expected_shortfall_before_year_ahead_t": float(w @ short)}
                short = np.maximum(nd[3 + PARTICIPANTS.index(j)] - nd[6] / 12.0 * got_s, 0.0)
                if not (short > 0).any():
                    covered_ahead.append({"participant": j, "node": key, "reason": (
                        f"the output expected in the year ahead from plants producing or being commissioned or built ({ahead[key]:,.0f} t; "
                        f"{j} receives {got:,.0f} t of it) covers every simulated shortfall")})
                    continue
            per_member[j] = short
            c = c_of[j]
            # buying a drawn tonne back while the disruption still holds costs its premium over the baseline price
            refill = refill_per_t(nd, PARTICIPANTS.index(j))
            refills[j] = refill
            # review 24: a stock bought above the baseline price loses that premium when the control behind it is
            # relaxed (the price falls back), an expected loss of value rho (P_buy - P0) a year beside capital and storage
            rho, rho_who = relax.get(key, (0.0, ""))
            # ... down to the restrictor's home price where it is observed, else to the baseline (review 25)
            floor = max(p0, floors.get(key, p0))
            price_fall = expected_price_fall(rho, p_buy, floor)
            # review 33b G9: storage is a warehouse rent per tonne (stockpile_parameters.csv), whatever the price; capital
            # on p_buy
            hold = p_buy * sp.capital_rate.get(j, sp.capital_rate["USA"]) + sp.storage_usd_per_t(node.commodity, p0) + price_fall
            s_opt, cost_opt = newsvendor(short, w, hold, c, refill)
            cost0 = float(expected_cost(0.0, short, w, hold, c))
            annual_use = node.demand_share[j] * node.q0_t
            # the policy caps a stock at days of what the participant imports: its own output keeps flowing when
            # imports stop (review 8: Japan's magnet stock held 2.5 years of its imports, a sixth of its use)
            nir = stage_reliance(node, j, sim)
            annual_imports = nir * annual_use
            cap_t = max_days / 365.0 * annual_imports if max_days is not None else np.inf
            # an ore stock feeds the participant's own plants: no more than they can take in the same days
            plant = plant_intake_t(sim, node, j)
            cap_plant = (max_days if max_days is not None else 365.0) / 365.0 * plant if plant is not None else np.inf
            # review 27: no more than the participants can buy in max_years_to_fill at the assumed share of the market
            # outside the restrictor, shared between them by demand (Japan's gallium took 10.5 years to fill)
            market_t = sim.rationed_market_t(key)
            d_all = sum(v for v in node.demand_share.values() if np.isfinite(v))
            cap_fill = (sp.max_years_to_fill * sp.purchase_share * market_t * (node.demand_share[j] / d_all)
                        if sp.max_years_to_fill and sp.purchase_share and market_t > 0 and d_all > 0 else np.inf)
            capped = s_opt > min(cap_t, cap_plant, cap_fill)
            if capped:
                s_opt = min(cap_t, cap_plant, cap_fill)
                cost_opt = float(expected_cost(s_opt, short, w, hold, c, refill))
            # a line is held only where it saves more than the fixed cost of holding it at all
            s_free, saving_free = s_opt, cost0 - cost_opt
            s_opt, cost_opt = keep_line(s_opt, cost_opt, cost0, sp.fixed_cost)
            # review 36 (N7): lines came and went with the random seed (seed 1 added two U.S. lines). A line is held only
            # where its net saving is positive beyond sampling noise, the pools' rule: x̄ - F > 2 se over the draws
            saving_se, s_noisy = 0.0, 0.0
            if s_opt > 0:
                clear, _, saving_se = pool_worth(cost_by_draw(0.0, short, hold, c) - cost_by_draw(s_opt, short, hold, c, refill), w, sp.fixed_cost)
                if not clear:
                    s_noisy, s_opt, cost_opt = s_opt, 0.0, cost0
            low: dict[str, Any] = {}
            if key in observed:
                # the low case: the same line sized and bought at the simulated price under the controls
                r_lo = low_case.get(key, (1.0, "baseline price"))[0]
                hold_lo = (p0 * r_lo * sp.capital_rate.get(j, sp.capital_rate["USA"]) + sp.storage_usd_per_t(node.commodity, p0)
                           + expected_price_fall(rho, p0 * r_lo, floor))
                s_lo, c_lo = newsvendor(short, w, hold_lo, c, refill)
                s_lo = min(s_lo, cap_t, cap_plant, cap_fill)
                c_lo = float(expected_cost(s_lo, short, w, hold_lo, c, refill))
                s_lo, c_lo = keep_line(s_lo, c_lo, float(expected_cost(0.0, short, w, hold_lo, c)), sp.fixed_cost)
                low = {"purchase_price_ratio_simulated": r_lo, "optimal_stock_t_at_simulated_price": s_lo,
                       "optimal_stock_usd_at_simulated_price": s_lo * p0 * r_lo}
            after: dict[str, Any] = {}
            if after_projects and key in after_projects:
                # once the recommended projects produce, the line is sized on the shortfall they leave
                m_j, m_basis = sim.share_of_added_supply(key, (j,))
                held = contracted.get(key, {})
                z_open = max(after_projects[key] - sum(held.values()), 0.0)
                receives = held.get(j, 0.0) + m_j * z_open
                short_after = shortfall_after_projects(nd, PARTICIPANTS.index(j), receives, 1.0)
                s_a, c_a = newsvendor(short_after, w, hold, c, refill)
                s_a = min(s_a, cap_t, cap_plant, cap_fill)
                c_a = float(expected_cost(s_a, short_after, w, hold, c, refill))
                s_a, c_a = keep_line(s_a, c_a, float(expected_cost(0.0, short_after, w, hold, c)), sp.fixed_cost)
                after = {"stock_after_projects_t": min(s_a, s_opt) if s_opt > 0 else 0.0, "projects_supply_t_per_year": after_projects[key],
                         "projects_supply_contracted_t_per_year": dict(held), "projects_supply_received_t_per_year": receives,
                         "share_of_projects_supply": m_j, "share_of_projects_supply_basis": m_basis}
            rules = {}
            for days in sp.days_rules:
                # a rule, too, holds no more ore than the plants take, and no more than the policy's days of net imports
                s_rule = min(days / 365.0 * annual_use, cap_plant, cap_t, cap_fill)  # and no more than can be bought in time
                rules[f"{days}_days"] = {"stock_t": s_rule, "expected_cost_usd": float(expected_cost(s_rule, short, w, hold, c, refill))
                                         + (sp.fixed_cost if s_rule > 0 else 0.0)}
            against = _against_holdings(holdings, j, node.commodity, s_opt)
            against_note = against.pop("against_holdings", None)
            rows.append({
                "node": key, "commodity": node.commodity, "stage": node.stage, "participant": j,
                "shortage_cost_usd_per_t": c, "holding_cost_usd_per_t_year": hold, "critical_fractile": max(0.0, 1.0 - hold / c) if c > 0 else 0.0,
                "expected_price_fall_usd_per_t_year": price_fall, "relaxation_probability": rho, "fall_back_usd_per_t": floor,
                "relaxation_of": rho_who,
                # review 24: the market a stock is bought in, and the years it takes to fill at the assumed buying rate
                "market_outside_restrictor_t_per_year": market_t,
                "years_to_fill": s_opt / (sp.purchase_share * market_t) if sp.purchase_share and market_t > 0 else np.nan,
                "refill_premium_usd_per_t": float(nd[REFILL_ROW + PARTICIPANTS.index(j)].sum() / short.sum()) if short.sum() > 0 else 0.0,
                "probability_of_shortfall": min(max(float(w @ (short > 0)), 0.0), 1.0), "expected_shortfall_t": float(w @ short),
                "purchase_price_ratio": ratio, "purchase_price_basis": ratio_basis,
                # review 21: "antimony/mine" stands for Sb in every form and is priced as metal; the row says what a
                # tonne of the stock is (the form and basis the node's price is quoted for)
                "bought_as": str(node.p0_basis).split("; ")[0],
                **low, "optimal_stock_t": s_opt, "optimal_stock_usd": s_opt * p_buy, "days_of_consumption": 365.0 * s_opt / annual_use if annual_use > 0 else np.nan,
                "days_of_net_imports": 365.0 * s_opt / annual_imports if annual_imports > 0 else np.nan, "net_import_reliance": nir,
                "expected_cost_without_stock_usd": cost0, "expected_cost_with_stock_usd": cost_opt, "saving_usd": cost0 - cost_opt,
                "fixed_cost_usd_per_year": sp.fixed_cost, "stock_before_fixed_cost_t": s_free, "saving_before_fixed_cost_usd": saving_free,
                "saving_se_usd": saving_se, "stock_not_clear_of_noise_t": s_noisy,
                **after, **year_ahead,
                "rules": rules,
                **against,
                "release_rule": {"holdings_t": s_opt, "max_release_t_per_month": s_opt / max(typical_months, 1.0), "price_cap": 1.0},
                "shortfall_draws": int((short > 0).sum()),
                # review 24: a line sized on an estimated or stale consumption says so (Japan's Dy, Tb, Y, Bi)
                # review 35b M7: the ranking counts a stale figure with the proxies; a stock is sized on it all the same (it
                # is sourced), and says so rather than "counted with the proxies", which read as a proxy stocked
                "flags": [f.replace(STALE_MARK, STALE_STOCK_MARK) for f in node.flags
                          if any(w in f for w in ("proxy", "low-tier", "an estimate", "stale", "assumption")) and flag_concerns(f, j)]
                + ([f"capped at the policy's {max_days:g} days of " + ("consumption" if nir >= 1.0 else f"net imports ({nir:.0%} of consumption)")]
                   if capped and cap_t <= min(cap_plant, cap_fill) else [])
                + ([f"capped at what {j}'s own plants take in {max_days if max_days is not None else 365:g} days ({plant:,.0f} t a year)"]
                   if capped and cap_plant < min(cap_t, cap_fill) else [])
                + ([f"capped at what can be bought in {sp.max_years_to_fill:g} years at {sp.purchase_share:.0%} of the market outside the "
                    f"restrictor ({market_t:,.0f} t a year), {j}'s share by demand: {cap_fill:,.1f} t (max_years_to_fill, an assumption)"]
                   if capped and cap_fill < min(cap_t, cap_plant) else [])
                + ([f"decided by {int((short > 0).sum())} of {draws} draws with a shortfall: rerun with more draws before buying"]
                   if 0 < (short > 0).sum() < FEW_DRAWS and s_opt > 0 else [])
                + ([against_note] if against_note else [])
                + ([f"not held: {s_free:,.0f} t would save US${saving_free:,.0f} a year, less than the fixed cost of a stock line "
                    f"(US${sp.fixed_cost:,.0f} a year)"] if s_free > 0 and s_opt == 0 and s_noisy == 0 else [])
                + ([f"not held: {s_noisy:,.0f} t would save US${saving_free:,.0f} a year (standard error US${saving_se:,.0f} over "
                    f"{len(short)} draws), not clear of the line's fixed cost (US${sp.fixed_cost:,.0f} a year) by twice its sampling error: "
                    "more draws would settle it"] if s_noisy > 0 else []),
            })
            lp_inputs[j].append((key, short, hold, c, p_buy, min(cap_t, cap_plant, cap_fill), refill))
            separate[j] = s_opt  # what the member brings to a pool: the line it keeps
        if pooled and len(per_member) > 1:
            hold = (p_buy * float(np.mean([sp.capital_rate.get(j, sp.capital_rate["USA"]) for j in per_member])) + sp.storage_usd_per_t(node.commodity, p0)
                    + expected_price_fall(relax.get(key, (0.0, ""))[0], p_buy, max(p0, floors.get(key, p0))))
            c = c_pool
            total = np.sum(list(per_member.values()), axis=0)
            bought_back = np.sum([refills[j] * per_member[j] for j in per_member], axis=0)
            refill_pool = np.divide(bought_back, total, out=np.zeros_like(total), where=total > 0)
            pl = pool(per_member, w, hold, c, refills, refill_pool)
            pool_flags = []
            # Each member brings at most its own stock (its row above: its shortage value, capped by the policy's
            # days of net imports and its plants' intake), and the pool holds at most their sum. Review 10: capped
            # only at the sum of the policy caps and valued at the bloc's shortage cost, the pooled magnet stock
            # (6,299 t) put Japan's need into U.S. headroom, 1.7 times the members' own stocks (3,670 t). Separate
            # and pooled stocks are compared at the pool's shortage cost under the same caps; the pooled cost is
            # convex in the stock, so a pooled optimum above the cap costs at the cap no more than the capped
            # separate stocks: pooling still never costs more.
            caps = {j: separate[j] for j in per_member}
            sep_t = {j: min(pl.separate_stock_t[j], caps[j]) for j in per_member}
            sep_cost = {j: float(expected_cost(sep_t[j], per_member[j], w, hold, c, refills[j])) for j in per_member}
            ps = min(pl.pooled_stock_t, sum(caps.values()))
            if ps < pl.pooled_stock_t - 1e-9:
                pool_flags.append(f"capped at the members' own stocks ({sum(caps.values()):,.0f} t): a pool shares stock, "
                                  "it does not hold one member's need in another's headroom")
            # review 20: a pool is an agreement to share, each member keeping its line (its procurement, assay and
            # warehouse); charged once to the pool and twice to the members, the fixed cost was most of the "saving",
            # so it is left out of the comparison (docs/stockpile.md §4)
            pc = float(expected_cost(ps, total, w, hold, c, refill_pool))
            # review 22: the pools "recommended" on a saving of US$259 k against US$250 k were within the sampling noise
            by_draw = (np.sum([cost_by_draw(sep_t[j], per_member[j], hold, c, refills[j]) for j in per_member], axis=0)
                       - cost_by_draw(ps, total, hold, c, refill_pool))
            z = sum(sep_cost.values())
            if pc > z:
                # the members' refill premiums differ (a control relaxed for one member's buyers only): the one pooled
                # stock at their weighted premium costs more, so the pool keeps their stocks as separate accounts
                # (sizing.pool), at exactly their separate cost
                ps, pc, by_draw = sum(sep_t.values()), z, np.zeros_like(by_draw)
                pool_flags.append("kept as the members' separate accounts: their buy-back premiums differ, and one "
                                  "pooled stock would cost more")
            worth, _, saving_se = pool_worth(by_draw, w, sp.pool_cost)
            recommended = bool(ps > 0 and worth)
            share = {j: (v / z if z > 0 else 1.0 / len(sep_cost)) for j, v in sep_cost.items()}
            pl = replace(pl, separate_stock_t=sep_t, separate_cost_usd=sep_cost, pooled_stock_t=ps, pooled_cost_usd=pc,
                         saving_usd=z - pc, pooled_share=share, pooled_cost_by_member_usd={j: pc * f for j, f in share.items()})
            rows.append({
                "node": key, "commodity": node.commodity, "stage": node.stage, "participant": "POOL(" + "+".join(per_member) + ")",
                "shortage_cost_usd_per_t": c, "holding_cost_usd_per_t_year": hold, "optimal_stock_t": pl.pooled_stock_t,
                "optimal_stock_usd": pl.pooled_stock_t * p_buy, "purchase_price_ratio": ratio, "expected_cost_with_stock_usd": pl.pooled_cost_usd,
                "separate_stock_t": pl.separate_stock_t, "separate_cost_usd": pl.separate_cost_usd, "pooling_saving_usd": pl.saving_usd,
                # review 33 F8: the separate stocks of the comparison are re-sized at the pool's shortage cost and the
                # members' mean capital rate (one basis for both sides); the lines the plan recommends are beside them
                "recommended_lines_t": {j: float(separate[j]) for j in per_member},
                # review 21: a pool row restates its members' stocks; it is a recommendation only where sharing saves more
                # than an agreement costs (docs/stockpile.md §4), otherwise the members hold their own lines
                "pooling_saving_se_usd": saving_se, "pooling_saving_net_usd": pl.saving_usd - sp.pool_cost,
                "pool_recommended": recommended,
                "pool_verdict": (("pool: " if recommended else "hold separately: ")
                                 + f"sharing saves US${pl.saving_usd:,.0f} a year (standard error US${saving_se:,.0f}) against an "
                                 f"agreement cost of US${sp.pool_cost:,.0f} (pool_agreement_cost_usd_per_year, an assumption): "
                                 f"net US${pl.saving_usd - sp.pool_cost:,.0f}, " + ("more" if worth else "not more") + " than twice its "
                                 "standard error; the separate stocks compared are re-sized at the pool's shortage cost and the members' "
                                 "mean capital rate (" + ", ".join(f"{j} {pl.separate_stock_t[j]:,.0f} t" for j in per_member)
                                 + "), beside the recommended lines (" + ", ".join(f"{j} {separate[j]:,.0f} t" for j in per_member) + ")"
                                 if pl.pooled_stock_t > 0 else "no stock to share: no member holds this line"),
                "cost_share": pl.pooled_share, "pooled_cost_by_member_usd": pl.pooled_cost_by_member_usd,
                # pooling saves little when the members run short in the same draws (the same disruptions)
                "shortfall_correlation": float(np.corrcoef(list(per_member.values()))[0, 1]) if len(per_member) == 2 and
                all(np.std(v) > 0 for v in per_member.values()) else None,
                "release_rule": {"holdings_t": pl.pooled_stock_t, "max_release_t_per_month": pl.pooled_stock_t / max(typical_months, 1.0), "price_cap": 1.0},
                "flags": [f for f in node.flags if "proxy" in f or "low-tier" in f] + pool_flags,
            })
    budgets: dict[str, Any] = {}
    if budget is not None:
        for j, items in lp_inputs.items():
            if not items:
                continue
            D = np.array([it[1] for it in items])
            plan = stock_lp(D, w, np.array([it[2] for it in items]), np.array([it[3] for it in items]), np.array([it[4] for it in items]), budget,
                            capacity_t=np.array([it[5] for it in items]), refill=np.array([it[6] for it in items]), fixed=sp.fixed_cost)
            budgets[j] = {
                "budget_usd": budget, "spent_usd": plan.budget_used_usd, "total_cost_usd": plan.total_usd,
                "value_of_budget_usd_per_usd": plan.budget_shadow_price, "status": plan.status,
                "stocks": [{"node": it[0], "stock_t": float(s), "stock_usd": float(s * it[4])} for it, s in zip(items, plan.stock_t, strict=True)],
            }
    # under a budget, every row also states the stock the budgeted programme buys (what the plan recommends)
    for r in rows:
        bplan = budgets.get(r["participant"])
        if bplan is not None:
            line = {x["node"]: x for x in bplan["stocks"]}.get(r["node"])
            r["budgeted_stock_t"] = line["stock_t"] if line else 0.0
            r["budgeted_stock_usd"] = line["stock_usd"] if line else 0.0
    rows.sort(key=lambda r: (-float(r.get("saving_usd", r.get("pooling_saving_usd", 0.0)) or 0.0), r["node"], r["participant"]))
    return {
        "metadata": {**smp["metadata"], "perspective": perspective.upper(), "stockable_stages": list(stages), "max_days": max_days,
                     "candidates": {j: sorted(v) for j, v in commodities.items()},
                     "holdings_context": {j: holdings_for(holdings, j, "*")[1] for j in members}, "storage_cost_rate": sp.storage_rate, "storage_cost_rate_by_commodity": sp.storage_by_commodity,
                     "storage_cost_usd_per_t_year": sp.rent_per_t, "storage_cost_multiplier_controlled": sp.rent_multiplier,
                     "storage_basis": sp.storage_basis,
                     "fixed_cost_usd_per_line_year": sp.fixed_cost,
                     "pool_agreement_cost_usd_per_year": sp.pool_cost,
                     "purchase_share_of_market_per_year": sp.purchase_share,
                     "capital_rate": sp.capital_rate, "days_rules": list(sp.days_rules),
                     "sourced_demand_only": sourced_demand_only, "not_stocked_proxy_demand": not_stocked,
                     "not_stocked_same_consumption": stocked_elsewhere, "not_stocked_net_exporter": net_exporter,
                     "not_stocked_unusable_form": wrong_form, "not_stocked_covered_in_year_ahead": covered_ahead,
                     "not_stocked_basket": baskets,
                     # lines that would save less than their fixed cost (docs/stockpile.md §2)
                     "not_held_fixed_cost": [{"participant": r["participant"], "node": r["node"], "stock_t": r["stock_before_fixed_cost_t"],
                                              "saving_usd": r["saving_before_fixed_cost_usd"]}
                                             for r in rows if r.get("stock_before_fixed_cost_t", 0.0) > 0 and r["optimal_stock_t"] == 0
                                             and not r.get("stock_not_clear_of_noise_t")],
                     # review 36 (N7): lines whose saving is not clear of their fixed cost beyond sampling noise
                     "not_held_sampling_noise": [{"participant": r["participant"], "node": r["node"], "stock_t": r["stock_not_clear_of_noise_t"],
                                                  "saving_usd": r["saving_before_fixed_cost_usd"], "saving_se_usd": r["saving_se_usd"]}
                                                 for r in rows if r.get("stock_not_clear_of_noise_t")],
                     # review 17: a carry is reported only where the next stage is stocked for that participant
                     "ore_shortfall_met_downstream": [x for x in carried if (x["participant"], x["node"]) in
                                                      {(r["participant"], r["node"]) for r in rows}]},
        "stockpiles": rows,
        "budget_plans": budgets,
    }
