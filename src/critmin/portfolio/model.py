"""From the register, the agencies and the simulator to the portfolio programme (docs/portfolio.md §4).

``build_problem`` turns every (project, instrument, agency) combination that is eligible into an option with
its amount, budget charge, completion probability, months to first output and additional expected capacity;
projects or combinations that cannot be options get a reason. Defaults come from
``data/instrument_parameters.csv`` (sourced or marked assumptions) and ``data/agencies.csv``; every default a
project needs because the register is blank is listed in the option's ``assumptions``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from critmin._dates import month_offset
from critmin.atlas.model import Atlas
from critmin.atlas.schema import STAGES
from critmin.errors import CritminError, Problem
from critmin.portfolio.finance import (
    ProjectCase,
    annuity_payment,
    cash_flows,
    dscr,
    hedge_value,
    irr,
    mean_output_share,
    npv,
    uncovered_debt_service,
    viability_gap,
)
from critmin.portfolio.instruments import (
    equity_cost,
    guarantee_cost,
    insurance_cost,
    loan_cost,
    offtake_cost,
    price_floor_cost,
    project_default_probability,
)
from critmin.portfolio.optimise import CO_SUPPLY, PortfolioProblem
from critmin.portfolio.register_schema import parse_coproducts
from critmin.simulate.carry import carry_unstockable_ore
from critmin.simulate.nodes import NodeTable, all_element_value
from critmin.simulate.ore import need_not_counted

DATA = "data"

#: Atlas stages each agency stage word covers (agencies.csv ``eligible_stages``).
STAGE_WORDS: dict[str, set[str]] = {
    "all": set(STAGES),
    "exploration": {"mine"}, "feasibility": {"mine"}, "development": {"mine"}, "production": {"mine"}, "permitting": {"mine"},
    "mining": {"mine"}, "pre_construction": {"mine", "refine"}, "enabling_infrastructure": {"mine", "refine"},
    "processing": {"refine", "conversion", "enrichment", "metal"}, "refining": {"refine", "metal"}, "metal": {"metal"},
    "manufacturing": {"magnet", "cathode", "anode", "cell", "catalyst", "optical", "semiconductor", "product", "metal"},
    "recycling": {"refine", "metal"},
}
#: Public room left under max_public_share_of_capex below this share of capex is rounding, not an instrument
#: (Novonix's DOE loan is 79.99 % of its eligible cost).
MIN_INSTRUMENT_SHARE_OF_CAPEX = 0.01

#: Opening of the assumption recorded for a project on an aggregate node that holds only the remainder of its group.
REMAINDER_NOTE = "counted at the remainder node"

#: Additional settings of the portfolio model (critmin assumptions, documented in docs/portfolio.md).
MODEL_DEFAULTS: dict[str, float] = {
    "horizon_months": 180.0,  # evaluation period over which added capacity counts against its cost (review 34)
    "equity_share_of_capex": 0.2,  # equity ticket when an agency states no share
    "offtake_share_of_capacity": 0.5,  # share of output contracted by an offtake or covered by a floor
    "price_floor_ratio": 1.0,  # floor / today's price when no floor is stated for the node
    "price_volatility": 0.4,  # log-volatility per sqrt(year) of node prices (NdPr row of the parameter table)
    "unit_cost_share_of_price": 0.7,  # operating cost per tonne when the register has none, share of the node price
    "construction_years": 2.0,  # years of construction before first output for projects not yet producing
    "insurance_term_years": 10.0,  # years of political-risk cover
    "cost_of_public_funds": 1.25,  # social cost per USD of expected government cost (OMB Circular A-94 excess burden)
    "max_public_share_of_capex": 0.8,  # public money of all agencies at most this share of capex: the sponsor keeps the rest
}


def cost_weight(cost_of_public_funds: float, gov_rate: float, horizon_months: float) -> float:
    """Expected annual avoided loss (USD/yr) one USD of expected government cost must buy (docs/portfolio.md §5):

        κ = λ / a,   a = (1 - (1 + r_g)^(-H)) / r_g   (H = horizon in years; a = H when r_g = 0)

    λ the marginal cost of public funds; an option is funded only if ``a × avoided >= λ × cost``.
    """
    h = max(horizon_months, 1e-9) / 12.0
    a = (1.0 - (1.0 + gov_rate) ** -h) / gov_rate if gov_rate > 0 else h
    return float(cost_of_public_funds / a)


#: The instrument parameter that raises a supported project's completion probability (instrument_parameters.csv).
UPLIFT_PARAMETER = "completion_probability_uplift"

#: Status classes whose completion probability an instrument can raise (instrument_parameters.csv, uplift rows).
UPLIFT_STATUSES = ("financing", "permitted", "feasibility")

#: Permitting facilitation raises the completion probability only of a project still waiting for its permits (review
#: 13: Rhyolite Ridge, permitted in Oct 2024, and Stibnite, in financing after its Jan 2025 record of decision, were
#: credited with a permitting uplift).
UPLIFT_STATUSES_BY_INSTRUMENT: dict[str, tuple[str, ...]] = {"regulatory": ("feasibility",)}

#: Status classes in which an instrument can bring first output forward: money helps before financial close,
#: permitting facilitation (FAST-41) before the main permits are granted (docs/portfolio.md section 4).
ACCELERATED_STATUSES: dict[str, tuple[str, ...]] = {
    **{inst: UPLIFT_STATUSES for inst in ("grant", "loan", "loan_guarantee", "equity", "offtake", "price_floor", "insurance", "tax_credit")},
    "regulatory": ("feasibility", "exploration"),
}


def months_before_output(p: dict[str, Any], status: str, as_of: str, ip: InstrumentParameters, assume: list[str]) -> float:
    """Months from ``as_of`` to a project's first output without new support, ``T_p``.

    ``T_p = 0`` for an operating project and for one in commissioning whose date has passed; ``T_p = max(0,
    month(first_output) - as_of + d_s)`` with the register's delay or the status class's typical delay ``d_s`` beyond a
    sponsor's target date; ``T_p = d_s`` for a construction target passed by less than ``d_s`` (late, not unknown:
    the slip counted from now, so lateness never brings output sooner); and, where the register publishes no
    first-output date or a date passed otherwise (a paused mine's first output of 2017, a study's target), the status
    class's typical lead time ``L_s`` (``lead_time_months:<status>``
    in instrument_parameters.csv, delay included). Each default used is appended to ``assume``."""
    if status == "operating":
        return 0.0
    until = month_offset(as_of, str(p.get("first_output") or ""))
    raw_delay = p.get("delay_months")
    own_delay = raw_delay is not None and bool(np.isfinite(raw_delay))
    delay = float(raw_delay) if own_delay and raw_delay is not None else float(ip.get("project", f"delay_months:{status}", 0.0))
    if until is not None and until < 0 and status == "commissioning":
        # review 33b G2: a plant in commissioning whose first output is dated in the past is producing now (the
        # deliveries' rule); the class slip applies to a date ahead
        return 0.0
    if until is not None and until < 0 and status == "construction" and until + delay > 0:
        # review 33 F3: a construction target passed by less than the class's typical slip is late, not unknown
        # (Mountain Pass's Dy/Tb circuit, "mid-2026", read 18 months after 2026-12); review 33b G6: the slip is counted
        # from now (memoryless), so a later project never comes sooner, and past the slip the class lead time applies;
        # other classes' passed dates (a study's target) are evidence of stalling, not of lateness
        assume.append(f"first-output date {p.get('first_output')} has passed without reported output (status '{status}'): "
                      f"expected in {delay:g} months (the {'register' if own_delay else 'class'} delay, from now)")
        return delay
    if until is not None and until < 0:
        # a date passed by more than the typical slip, for a project that is not producing (paused, still in
        # construction, ...) is stale
        assume.append(f"first-output date {p.get('first_output')} has passed without output (status '{status}'): treated as unknown")
        until = None
    if until is None:
        lead = ip.get("project", f"lead_time_months:{status}", np.nan)
        if not np.isfinite(lead):
            raise CritminError(f"instrument parameters: no lead_time_months:{status} row for a project without a first-output date")
        assume.append(f"{NO_DATE_NOTE}: typical lead time {lead:g} months for status '{status}'")
        return float(lead)
    if not own_delay:
        assume.append(f"delay {delay:g} months for status '{status}'")
    return max(0.0, float(until) + delay)


def reported_output_t(p: dict[str, Any]) -> float | None:
    """A project's latest reported output (t/yr on the node basis, register column ``output_t``), or None."""
    v = p.get("output_t")
    return None if v is None or pd.isna(v) or str(v) == "" else float(v)


def _class_ramp_key(p: dict[str, Any]) -> str | None:
    """The ``instrument_parameters.csv`` row of a project's fitted class ramp, or None where the register gives the
    project's own ramp (``ramp_up_months``)."""
    own = p.get("ramp_up_months")
    if own is not None and not pd.isna(own) and str(own) != "":
        return None
    return f"ramp_up_years_to_design:{'mine' if p.get('stage') == 'mine' else 'processing'}"


def years_to_design(p: dict[str, Any], ip: InstrumentParameters) -> tuple[float, str]:
    """Years from first output to nameplate Y of a project's linear ramp (:func:`critmin.portfolio.finance.ramp_share`)
    and where it comes from: the register's ``ramp_up_months`` / 12 where given, else the fitted class value
    ``ramp_up_years_to_design:mine`` (mine stage) or ``:processing`` (every other stage)."""
    key = _class_ramp_key(p)
    if key is None:
        own = float(p["ramp_up_months"])
        return own / 12.0, f"register ramp-up {own:g} months"
    y = ip.get("project", key)
    return float(y), f"{key.split(':')[1]} ramp-up to nameplate over {y:g} years (fitted on plants' quarterly output)"


def years_to_design_range(p: dict[str, Any], ip: InstrumentParameters) -> tuple[float, float, float] | None:
    """(low, central, high) years to design of a project's ramp where it is the fitted class value (its row's range in
    instrument_parameters.csv), None where the register gives the project's own ramp (review 35b M3)."""
    key = _class_ramp_key(p)
    b = ip.bounds("project", key) if key is not None else None
    return None if key is None or b is None else (b[0], ip.get("project", key), b[1])


#: Price scenarios of project finance: multiples of today's node price (low, base, high; critmin assumption).
PRICE_SCENARIOS = (0.7, 1.0, 1.3)


class ModelError(CritminError):
    """The portfolio inputs cannot be combined (names the file, row and field where possible)."""


def _data(name: str) -> Path:
    return Path(str(resources.files("critmin.portfolio").joinpath(f"{DATA}/{name}")))


@dataclass
class InstrumentParameters:
    """``instrument_parameters.csv`` with lookups ``get(instrument, parameter)``."""

    table: pd.DataFrame

    @classmethod
    def load(cls, path: str | Path | None = None) -> InstrumentParameters:
        p = Path(path) if path else _data("instrument_parameters.csv")
        if not p.is_file():
            raise ModelError(f"{p}: {'not a file' if p.exists() else 'file not found'}")
        t = pd.read_csv(p, dtype={"instrument": str, "parameter": str}, keep_default_na=False)
        t["value"] = pd.to_numeric(t["value"], errors="coerce")
        return cls(t)

    def __post_init__(self) -> None:
        # the first row of each (instrument, parameter), looked up in a dict: get() is called per project and
        # option (a pandas filter per call made a 370-project portfolio spend 14 of its 23 s here)
        first = self.table.drop_duplicates(["instrument", "parameter"], keep="first")
        keys = list(zip(first["instrument"], first["parameter"], strict=True))
        self._value = dict(zip(keys, first["value"].astype(float), strict=True))
        self._kind = dict(zip(keys, first["kind"].astype(str), strict=True)) if "kind" in first.columns else {}

    def get(self, instrument: str, parameter: str, default: float | None = None) -> float:
        v = self._value.get((instrument, parameter))
        if v is not None and np.isfinite(v):
            return float(v)
        if default is not None:
            return default
        raise ModelError(f"instrument_parameters.csv has no value for ({instrument}, {parameter})")

    def with_values(self, values: dict[tuple[str, str], float], note: str) -> InstrumentParameters:
        """A copy with the ``(instrument, parameter)`` values replaced (a sensitivity case), each replaced row's kind
        set to ``sensitivity`` and ``note`` appended to its note; a key the table lacks raises ModelError."""
        t = self.table.copy()
        for (inst, par), v in values.items():
            m = (t["instrument"] == inst) & (t["parameter"] == par)
            if not m.any():
                raise ModelError(f"instrument_parameters.csv has no row ({inst}, {par}) to replace")
            t.loc[m, "value"] = float(v)
            if "kind" in t.columns:
                t.loc[m, "kind"] = "sensitivity"
            if "note" in t.columns:
                t.loc[m, "note"] = t.loc[m, "note"].astype(str) + f" [{note}]"
        return InstrumentParameters(t)

    def without_completion_uplift(self) -> InstrumentParameters:
        """The sensitivity case of review 34b K4: no instrument raises a project's completion probability (every
        ``completion_probability_uplift`` row at 0, an assumption with no causal estimate); support still brings output
        forward where its months are stated."""
        rows = self.table[self.table["parameter"] == UPLIFT_PARAMETER]
        return self.with_values({(str(i), UPLIFT_PARAMETER): 0.0 for i in rows["instrument"]}, "sensitivity: no completion uplift")

    def bounds(self, instrument: str, parameter: str) -> tuple[float, float] | None:
        """The (low, high) range of a row, or None where the table gives none."""
        t = self.table
        if "low" not in t.columns or "high" not in t.columns:
            return None
        m = t[(t["instrument"] == instrument) & (t["parameter"] == parameter)]
        if m.empty:
            return None
        lo, hi = pd.to_numeric(m["low"].iloc[0], errors="coerce"), pd.to_numeric(m["high"].iloc[0], errors="coerce")
        return (float(lo), float(hi)) if np.isfinite(lo) and np.isfinite(hi) else None

    def kind(self, instrument: str, parameter: str) -> str:
        k = (instrument, parameter)
        if k not in self._value:
            return "critmin default"
        return self._kind.get(k, "nan")


def read_agencies(path: str | Path | None = None) -> pd.DataFrame:
    """``agencies.csv`` with a parsed ``budget_basis`` (credit subsidy, face value or outlays)."""
    p = Path(path) if path else _data("agencies.csv")
    if not p.is_file():
        raise ModelError(f"{p}: {'not a file' if p.exists() else 'file not found'}")
    a = pd.read_csv(p, dtype=str, keep_default_na=False)
    for c in ("agency_id", "participant_iso3", "instrument", "budget_usd", "eligible_countries", "eligible_stages"):
        if c not in a.columns:
            raise ModelError(str(Problem(str(p), 1, c, "required column is missing")))
    for i, r in enumerate(a.to_dict("records")):
        if r["budget_usd"] != "":
            try:
                if float(r["budget_usd"]) < 0:
                    raise ValueError
            except ValueError:
                raise ModelError(str(Problem(str(p), i + 2, "budget_usd", f"'{r['budget_usd']}' is not a non-negative number"))) from None
    a["budget_usd"] = pd.to_numeric(a["budget_usd"], errors="coerce")
    a["max_share_of_capex"] = pd.to_numeric(a.get("max_share_of_capex", ""), errors="coerce")
    a["budget_basis"] = [_basis(str(n)) for n in a.get("note", [""] * len(a))]
    return a


def _basis(note: str) -> str:
    m = re.search(r"\[basis:\s*([^\]]+)\]", note)
    b = m.group(1).strip().lower() if m else "face value"
    return "cost" if "subsidy" in b or "cost" in b else "amount"


def budget_key_problems(budgets: dict[str, float], agencies: pd.DataFrame) -> list[str]:
    """Why each budget key is not ``AGENCY_ID:instrument`` (or ``AGENCY_ID:any``) of a known agency; a key
    that names nothing would otherwise be ignored without a word."""
    from critmin.portfolio.register_schema import INSTRUMENTS

    known = set(agencies["agency_id"])
    out = []
    for k in budgets:
        agency, _, inst = k.partition(":")
        if agency not in known:
            out.append(f"'{k}': unknown agency '{agency}' (use AGENCY_ID:instrument or AGENCY_ID:any; agencies: {', '.join(sorted(known))})")
        elif inst != "any" and inst not in INSTRUMENTS:
            out.append(f"'{k}': unknown instrument '{inst}' (use one of {', '.join(INSTRUMENTS)} or any)")
    return out


def read_budgets(path: str | Path) -> dict[str, float]:
    """User budgets: CSV ``agency_id,instrument,budget_usd`` (instrument ``any`` for a shared envelope)."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: file not found")
    t = pd.read_csv(p, dtype=str, keep_default_na=False)
    out: dict[str, float] = {}
    problems = []
    for c in ("agency_id", "instrument", "budget_usd"):
        if c not in t.columns:
            problems.append(Problem(str(p), 1, c, "required column is missing"))
    if problems:
        raise ModelError("; ".join(map(str, problems)))
    for i, r in enumerate(t.to_dict("records")):
        try:
            v = float(r["budget_usd"])
        except ValueError:
            problems.append(Problem(str(p), i + 2, "budget_usd", f"'{r['budget_usd']}' is not a number"))
            continue
        if v < 0 or not np.isfinite(v):
            problems.append(Problem(str(p), i + 2, "budget_usd", "a budget must be a finite, non-negative number"))
        out[f"{r['agency_id']}:{r['instrument']}"] = v
    if problems:
        raise ModelError("; ".join(map(str, problems)))
    return out


@dataclass
class Sample:
    """The simulator's scenario sample for the programme (BLOC perspective by default)."""

    node_names: list[str]
    shortfall: np.ndarray  # (nodes, draws) t
    months: np.ndarray  # (nodes, draws)
    value_per_t: np.ndarray  # (nodes,) USD/t
    loss: np.ndarray  # (nodes, draws) USD
    metadata: dict[str, Any] = field(default_factory=dict)
    #: (nodes,) USD/t with every tonne not consumed valued at the output multiple (the input-output convention);
    #: None where the sample was not built from a risk run
    value_per_t_io: np.ndarray | None = None
    #: with stocks in place: (nodes, draws) t of the shortfall they cover, and USD/t a project's tonne saves there
    #: (the buy-back premium of a released tonne); None without stocks
    stocked: np.ndarray | None = None
    stocked_value: np.ndarray | None = None
    #: (nodes,) the share of a tonne added at the node that reaches the counted members (None: all of it)
    supply_share: np.ndarray | None = None
    #: (nodes,) USD/t: the part of ``value_per_t`` (and of ``value_per_t_io``) that is the price effect, which a tonne
    #: brings whichever buyer of the segment receives it (None: no such part)
    price_value_per_t: np.ndarray | None = None
    price_value_per_t_io: np.ndarray | None = None


def sample_from_simulator(sim: Any, draws: int = 500, seed: int = 0, perspective: str = "BLOC", threads: int = 2, client: Any = None,
                          result: Any = None, sourced_demand_only: bool = True,
                          stocks_t: dict[str, dict[str, float]] | None = None,
                          supply_received_t: dict[str, dict[str, float]] | None = None,
                          supply_received_draws: dict[str, dict[str, np.ndarray]] | None = None) -> Sample:
    """Per node and draw of the risk library run (``critmin risk``; ``result`` reuses one), the shortfall, loss
    and months, and the value of a tonne of shortfall avoided (:meth:`Simulator.value_per_t_supplied`).

    ``sourced_demand_only``: a participant counts at a node only where its demand there is sourced, not a proxy
    (the BLOC sums its members that do; ``metadata["proxy_demand_not_counted"]`` lists the rest).

    ``stocks_t`` (node -> participant -> t): stocks in place. The shortfall is then what they leave,
    ``Σ_i max(D_is - S_i, 0)`` over the perspective's members i, and ``stocked`` what they cover, ``Σ_i min(D_is, S_i)``,
    where a project's tonne saves buying a released tonne back, ``stocked_value`` = the members' buy-back premium per
    tonne (:func:`critmin.stockpile.plan.refill_per_t`, weighted by the tonnes each stock covers; docs/portfolio.md §5,
    "Net of the stocks"). The value of a tonne supplied stays that of the run (the releases are not re-simulated).

    ``supply_received_t`` (node -> participant -> t/yr): supply in place in the year ahead that the participant
    receives (the plan's pipeline, as its stocks are sized on: review 35 L4, the stocks netted Sangdong's tungsten and
    the projects did not, so Mactung was credited with shortfalls Sangdong covers). Each member's shortfall is first
    what it leaves, ``max(D_is - (months_s / 12) r_i, 0)``, as in the stock plan; ``supply_received_draws`` (node ->
    participant -> t/yr per draw) gives ``r_is`` draw by draw instead (each plant delivering with its completion
    probability: review 35b M3)."""
    from critmin.simulate.risk import risk_run
    from critmin.simulate.run import PERSPECTIVES, REFILL_ROW

    j = PERSPECTIVES.index(perspective.upper())
    res = result if result is not None else risk_run(sim, draws, seed, threads=threads, client=client)
    draws = res.metadata["draws"]
    members = [i for i, p in enumerate(PERSPECTIVES) if p != "BLOC"] if perspective.upper() == "BLOC" else [j]
    node_draws: dict[str, np.ndarray] = {}
    net_short: dict[str, np.ndarray] = {}  # the perspective's shortfall after the stocks in place
    stocked: dict[str, np.ndarray] = {}  # the part of it the stocks cover (t)
    stocked_pi: dict[str, np.ndarray] = {}  # what sparing a covered tonne saves (USD/t): its buy-back premium
    proxy: dict[str, list[str]] = {}
    unusable: dict[str, list[str]] = {}
    shares: dict[str, tuple[float, str]] = {}
    # review 33 F4: a participant's shortfall of ore no plant of its own takes is carried to the refined stage where it
    # buys (as the stock plan does), so the need dropped at the ore node is counted where it is bought; before, the
    # DRC quota's cobalt loss (the bloc's #1) was counted nowhere in the portfolio
    carried_draws, carried = carry_unstockable_ore(sim, res.node_draws, [PERSPECTIVES[i] for i in members], sourced_only=sourced_demand_only)
    for k, nd in carried_draws.items():
        node = sim.nodes.nodes[sim.nodes.index[k]] if k in sim.nodes.index else None
        keep = list(members)
        if node is not None:
            # a participant's shortfall where its demand is a proxy is a volume nobody measured (not counted, as the
            # stock plan does not stock it); ore or concentrate no plant of the participant takes is bought in the
            # refined form, where it is counted (review 8: Kings Mountain's benefit was a lithium-ore shortfall of two
            # participants without a lithium refinery)
            for i in list(keep):
                why = need_not_counted(sim, node, PERSPECTIVES[i], sourced_demand_only)
                if why:
                    keep.remove(i)
                    if nd[3 + i].sum() > 0:
                        (proxy if why == "proxy" else unusable).setdefault(k, []).append(PERSPECTIVES[i])
        # a tonne added outside the restrictor is rationed among every buyer there: the counted members get their
        # demand's share of it (review 23)
        shares[k] = sim.share_of_added_supply(k, [PERSPECTIVES[i] for i in keep]) if node is not None and keep else (0.0, "no counted member")
        held = (stocks_t or {}).get(k, {})
        zero = np.zeros(nd.shape[1])
        got = (supply_received_t or {}).get(k, {})
        by_draw = (supply_received_draws or {}).get(k)
        for iso, arr in (by_draw or {}).items():
            if np.shape(arr) != zero.shape:
                raise ModelError(f"supply_received_draws[{k!r}][{iso!r}]: {np.size(arr)} values for {zero.size} draws")
        d = {i: np.maximum(nd[3 + i] - nd[6] / 12.0 * (np.asarray(by_draw.get(PERSPECTIVES[i], zero), dtype=float) if by_draw is not None
                                                       else float(got.get(PERSPECTIVES[i], 0.0))), 0.0) for i in keep}
        net_short[k] = sum((np.maximum(d[i] - float(held.get(PERSPECTIVES[i], 0.0)), 0.0) for i in keep), zero)
        covered = {i: np.minimum(d[i], float(held.get(PERSPECTIVES[i], 0.0))) for i in keep}
        stocked[k] = sum(covered.values(), zero)
        # the buy-back premium of the covered tonnes: π_is = refill premium / shortfall of member i (REFILL rows)
        premium = sum((covered[i] * np.divide(nd[REFILL_ROW + i], nd[3 + i], out=np.zeros_like(zero), where=nd[3 + i] > 0) for i in keep), zero)
        stocked_pi[k] = np.divide(premium, stocked[k], out=np.zeros_like(zero), where=stocked[k] > 0)
        nd = nd.copy()
        for off in (0, 3, 7, 10, 16, 19):  # loss, shortfall, supply values (and their price parts): its members counted here
            if off in (7, 10, 16, 19) and len(keep) > 1 and keep == members:
                continue  # the bloc's own supply value: a tonne supplied lowers the price both members pay
            nd[off + j] = nd[[off + i for i in keep]].sum(axis=0) if keep else 0.0
        node_draws[k] = nd
    names = sorted(k for k, v in node_draws.items() if v[3 + j].sum() > 0)
    short = np.array([net_short[k] for k in names]) if names else np.zeros((0, draws))
    loss = np.array([node_draws[k][j] for k in names]) if names else np.zeros((0, draws))
    months = np.array([node_draws[k][6] for k in names]) if names else np.zeros((0, draws))
    # what a tonne supplied is worth to the bloc where it is short: the output it saves and the premium it spares
    # (Simulator.value_per_t_supplied); the price the bloc pays on the tonnes it still buys is not avoidable
    v = np.array([sim.value_per_t_supplied(node_draws, name, j) for name in names])
    v_io = np.array([sim.value_per_t_supplied(node_draws, name, j, "input_output") for name in names])
    pe = np.array([sim.price_value_per_t_supplied(node_draws, name, j) for name in names])
    pe_io = np.array([sim.price_value_per_t_supplied(node_draws, name, j, "input_output") for name in names])
    return Sample(names, short, months, v, loss, {**res.metadata, "perspective": perspective.upper(), "sample_draws": draws,
                                                  "sourced_demand_only": sourced_demand_only, "proxy_demand_not_counted": proxy,
                                                  "ore_not_usable": unusable,
                                                  "ore_carried": sorted({(c["participant"], c["from"], c["node"]) for c in carried}),
                                                  "share_of_added_supply": {k: {"share": shares[k][0], "basis": shares[k][1]} for k in names},
                                                  "stocks_netted_t": {k: dict(v) for k, v in (stocks_t or {}).items() if k in node_draws},
                                                  "supply_netted_t": {k: dict(v) for k, v in (supply_received_t or {}).items() if k in node_draws}}, v_io,
                  np.array([stocked[k] for k in names]).reshape(len(names), draws) if stocks_t else None,
                  np.array([stocked_pi[k] for k in names]).reshape(len(names), draws) if stocks_t else None,
                  np.array([shares[k][0] for k in names]), pe, pe_io)


#: The 27 member states of the European Union (europa.eu, "EU countries"), for the EU's own instruments.
EU_MEMBERS = frozenset({"AUT", "BEL", "BGR", "HRV", "CYP", "CZE", "DNK", "EST", "FIN", "FRA", "DEU", "GRC", "HUN", "IRL", "ITA", "LVA",
                        "LTU", "LUX", "MLT", "NLD", "POL", "PRT", "ROU", "SVK", "SVN", "ESP", "SWE"})


def eligible_country(rule: str, country: str, participant: str, atlas: Atlas, project_text: str = "") -> bool:
    r = rule.strip().lower()
    if r in ("", "any", "any country"):
        return True
    if r == "domestic":
        return country == participant
    if r.startswith("any_excl") or "high_income" in r or "developing" in r:
        return country not in atlas.concern
    if r.startswith("eu+partners") or r.startswith("eu"):
        # review 34b K1: RESourceEU lends to projects in the EU and to the Critical Raw Materials Act's Strategic
        # Projects abroad (the Commission's list of June 2025), not to any country outside the countries of concern
        # (Mactung and Katpar were sent to it); a project abroad qualifies only where the register names it as one
        return country in EU_MEMBERS or (country not in atlas.concern and "crma strategic project" in project_text.lower())
    codes = {c.strip().upper() for c in re.split(r"[;,]", rule) if c.strip()}
    return country in codes


def budget_end(period: str) -> str | None:
    """The last day (YYYY-MM-DD) of a budget's stated period (``budget_period`` of agencies.csv), where it states one:
    "N months from YYYY-MM-DD" gives that day N months later; "to YYYY-MM-DD", "until …", "through …" give the date.
    Other wordings (fiscal years, "available until expended") give None: no end is applied."""
    m = re.search(r"(\d+)\s*months?\s+from\s+(\d{4})-(\d{2})-(\d{2})", period, re.IGNORECASE)
    if m:
        n, y, mo, d = (int(x) for x in m.groups())
        total = y * 12 + mo - 1 + n
        return f"{total // 12:04d}-{total % 12 + 1:02d}-{d:02d}"
    m = re.search(r"\b(?:to|until|through)\s+(\d{4}-\d{2}-\d{2})", period, re.IGNORECASE)
    return m.group(1) if m else None


def _eligible_stage(rule: str, stage: str) -> bool:
    words = [w.strip().lower() for w in re.split(r"[;,]", rule) if w.strip()] or ["all"]
    return any(stage in STAGE_WORDS.get(w, set()) for w in words)


@dataclass
class BuiltProblem:
    """The programme plus the reasons and assumptions behind it."""

    problem: PortfolioProblem
    reasons: dict[str, list[str]]
    assumptions: dict[str, list[str]]
    budgets: dict[str, float]
    budget_basis: dict[str, str]
    sample: Sample
    options_all: pd.DataFrame
    finance: list[dict[str, Any]] = field(default_factory=list)
    #: projects whose counted public support and committed private finance cover their capex (or whose public support
    #: reached the public share cap): new capex money would not be additional ("already financed")
    financed: set[str] = field(default_factory=set)


def build_problem(
    projects: pd.DataFrame,
    atlas: Atlas,
    sample: Sample,
    nodes: Any,
    agencies: pd.DataFrame | None = None,
    params: InstrumentParameters | None = None,
    budgets: dict[str, float] | None = None,
    as_of: str | None = None,
    deadline_months: float | None = None,
    settings: dict[str, float] | None = None,
    support: pd.DataFrame | None = None,
    persistence: dict[str, tuple[float, float]] | None = None,
) -> BuiltProblem:
    """Options for every eligible (project, instrument, agency); see docs/portfolio.md §4.

    ``persistence`` (node -> (a, ρ)): weigh each month of a project's added output by the share of its node's loss
    still expected then, the in-force share ``a`` relaxed at the annual rate ``ρ`` (:func:`finance.mean_output_share`;
    review 34b K5, a sensitivity case); None holds today's loss over the evaluation period.

    ``support`` (the register's support actions) gives each project's public support already counted
    (``counting`` rule of the register): new money is additional only up to the financing gap
    ``capex - counted support``; a project whose counted support covers its capex gets no money option
    ("already financed"), only regulatory support."""
    from critmin._dates import month_or_now

    as_of = month_or_now(as_of)
    counted = counted_capex_support(support)
    pending = pending_capex_support(support)
    ag = read_agencies() if agencies is None else agencies
    ip = params or InstrumentParameters.load()
    # the ``portfolio`` rows of instrument_parameters.csv (critmin assumptions, overridable with that file)
    st = {**{k: ip.get("portfolio", k, v) for k, v in MODEL_DEFAULTS.items()}, **(settings or {})}
    # budgets per key (agency:instrument, or agency:any shared), with their basis
    bud: dict[str, float] = {}
    basis: dict[str, str] = {}
    ended: dict[str, str] = {}
    for r in ag.to_dict("records"):
        if np.isfinite(r["budget_usd"]):
            end = budget_end(str(r.get("budget_period") or ""))
            if end is not None and as_of is not None and end[:7] <= str(as_of)[:7]:
                # review 34b K1: RESourceEU's "12 months from 2025-12-03" had run out by the plan's month
                ended[f"{r['agency_id']}:{r['instrument']}"] = end
                continue
            bud[f"{r['agency_id']}:{r['instrument']}"] = float(r["budget_usd"])
            basis[f"{r['agency_id']}:{r['instrument']}"] = r["budget_basis"]
    bad = budget_key_problems(budgets or {}, ag)
    if bad:
        raise ModelError("budgets: " + "; ".join(bad))
    for k, v in (budgets or {}).items():
        bud[k] = v
        basis.setdefault(k, "amount")
    node_idx = {n: i for i, n in enumerate(sample.node_names)}
    concern = atlas.concern
    gov_rate = ip.get("all", "discount_rate_government_usd")
    hurdle = ip.get("project", "hurdle_rate")
    tenor_default = int(ip.get("loan", "tenor_years"))
    tail = ip.get("loan", "reserve_tail_share", 0.0)
    pd_ = ip.get("loan", "annual_default_probability")
    lgd = ip.get("loan", "loss_given_default")
    commercial_spread = ip.get("loan", "interest_spread_commercial_reference")
    life_default = int(ip.get("project", "project_life_years"))
    horizon = st["horizon_months"]
    rows: list[dict[str, Any]] = []
    finance: list[dict[str, Any]] = []
    reasons: dict[str, list[str]] = {}
    financed: set[str] = set()
    assumptions: dict[str, list[str]] = {}
    for p in projects.to_dict("records"):
        pid = str(p["project_id"])
        why: list[str] = []
        assume: list[str] = []
        key = f"{p['commodity_id']}/{p['stage']}"
        cap = p.get("capacity_t")
        if cap is None or not np.isfinite(cap) or cap <= 0:
            reasons[pid] = ["no capacity on the node's basis in the register"]
            continue
        if key not in node_idx:
            # review 5: scandium, which has no node, read as "no shortfall", as if it were safe
            dropped = sample.metadata.get("proxy_demand_not_counted", {}).get(key)
            no_plant = sample.metadata.get("ore_not_usable", {}).get(key)
            to = sorted({v for _, u, v in sample.metadata.get("ore_carried", []) if u == key})
            reasons[pid] = ([f"the simulated shortfall at {key} is of {' and '.join(no_plant)}, which {'has' if len(no_plant) == 1 else 'have'} no "
                             "plant at the next stage to take this ore or concentrate: the need is counted where it is bought"
                             + (f" ({', '.join(to)}), where added refining answers it; a tonne of ore added here reaches them only once "
                                "refined elsewhere, which the portfolio does not credit (a limitation, not a finding that the mine is of no use)"
                                if to else ", not here")
                             + (f"; and of {' and '.join(dropped)}, whose demand there is a proxy (a volume nobody measured)" if dropped else "")]
                            if no_plant else
                            [f"the simulated shortfall at {key} is of {' and '.join(dropped)}, whose demand there is a proxy (a volume nobody "
                             "measured), so it is not counted (sourced_demand_only, as for stocks)"] if dropped else
                            [f"no simulated shortfall for the bloc at {key} in the scenario sample"] if key in nodes.index else
                            [f"{key} is not a node of the simulator (no world output or country shares on its basis in the atlas), so "
                             "its supply risk is not assessed: a data gap, not a finding of safety"])
            continue
        try:
            node = nodes.get(p["commodity_id"], p["stage"])
        except KeyError:
            reasons[pid] = [f"node {key} has no baseline in the simulator"]
            continue
        price = node.p0_usd_per_t
        if not np.isfinite(price):
            reasons[pid] = [f"no price for {key}"]
            continue
        whole = all_element_value(nodes, node)
        if whole is not None:
            # December 2026: the rare-earth aggregate holds the elements without a node of their own (mostly La/Ce)
            assume.append(f"{REMAINDER_NOTE} {key} ({price:,.0f} USD/t): the register gives its output as total REO, "
                          "not split by element, so any NdPr, Dy or Tb in it relieves no element node (its value is understated)")
            # review 12: its revenue is not La/Ce's (Caremag's gap was 211 M USD of a 242 M USD capex)
            price = whole[0] / whole[1]
            assume.append(f"revenue at the all-element average of separated rare earths, {price:,.0f} USD/t (world value "
                          f"{whole[0] / 1e9:,.2f} B USD / {whole[1]:,.0f} t), not the remainder's price: an average ore, not "
                          "this project's mix")
        # review 14: a project sells into its own market; U.S. anode material is priced at China's domestic price plus the
        # duties on Chinese material (the simulator keeps the world node price)
        market_key = f"price_ratio_in_market:{p['country_iso3']}:{key}"
        in_market = ip.get("project", market_key, 1.0)
        world_price = price  # the cost basis: a duty raises what a plant is paid, not what it costs (review 15)
        if in_market != 1.0:
            price *= in_market
            assume.append(f"revenue at {in_market:g}x the node price, the price in the market it sells to "
                          f"({market_key}, {ip.kind('project', market_key)})")
        status = str(p["status_class"])
        pi0 = p.get("completion_probability")
        if pi0 is None or not np.isfinite(pi0):
            pi0 = ip.get("project", f"completion_probability:{status}")
            assume.append(f"completion probability {pi0:g} for status '{status}' ({ip.kind('project', f'completion_probability:{status}')})")
        t0 = months_before_output(p, status, as_of, ip, assume)
        ramp_y, ramp_basis = years_to_design(p, ip)
        assume.append(ramp_basis)
        capex = p.get("capex_usd")
        if capex is None or not np.isfinite(capex):
            ci = _capital_intensity(ip, str(p["commodity_id"]), str(p["stage"]))
            if ci is None:
                why.append("no capex in the register and no capital intensity for its node: loan, guarantee, equity and grant cannot be sized")
                capex = np.nan
            else:
                capex = ci[0] * float(cap)
                assume.append(f"capex {capex:,.0f} USD = capacity x capital intensity {ci[0]:,.0f} USD per t/yr ({ci[1]})")
        public = counted.get(pid, 0.0)
        for text in pending.get(pid, []):
            # review 13: EXIM's letter to Stibnite beside a recommended DOE guarantee
            assume.append(f"{PENDING_NOTE} {text}: a new loan, guarantee, equity or grant from another agency may duplicate it")
        private = _usd(p.get("private_finance_usd"))
        have = public + private
        room = capex - have if np.isfinite(capex) else np.nan  # financing gap left for new public money
        # review 10: a DOE guarantee was stacked on DOE's own ATVM loan of 80 % of capex, leaving the sponsor nothing
        cap_share = float(st["max_public_share_of_capex"])
        public_room = cap_share * capex - public if np.isfinite(capex) else np.nan
        if np.isfinite(public_room) and public_room < MIN_INSTRUMENT_SHARE_OF_CAPEX * capex:
            public_room = min(public_room, 0.0)  # a remainder under 1 % of capex is rounding, not an instrument
        capped = bool(np.isfinite(room) and public_room < room)
        room = min(room, public_room) if capped else room
        held = (f"public support already counted {public:,.0f} USD" + (f" and committed private finance {private:,.0f} USD" if private else ""))
        if (have > 0 or capped) and np.isfinite(capex):
            assume.append(f"{held} of capex {capex:,.0f} USD: new money at most "
                          + (f"{max(room, 0.0):,.0f} USD, public money of all agencies being at most {cap_share:.0%} of capex "
                             "(max_public_share_of_capex)" if capped else f"the gap {max(room, 0.0):,.0f} USD"))
        if np.isfinite(room) and room <= 0:
            financed.add(pid)
            first = str(p.get("capex_note") or "no note").split(";")[0].strip()
            stale = (f"; counted support above the register's capex ({first}) suggests an out-of-date capex, a loan that also "
                     "funds interest, fees or reserves, or a support covering more than this project: to check" if have > capex * 1.001 else "")
            why.append((f"already financed: {held} cover its capex ({capex:,.0f} USD); "
                        "new capex money (loan, guarantee, equity, grant) would not be additional" if not capped else
                        f"already financed to the public share cap: {held}, {public / capex:.0%} of its capex ({capex:,.0f} USD); "
                        f"public money of all agencies is held to {cap_share:.0%} of capex, the sponsor keeping the rest at risk "
                        "(max_public_share_of_capex)") + stale)
        unit_cost = p.get("unit_cost_usd_per_t")
        published_cost = unit_cost is not None and np.isfinite(unit_cost)
        analogue_key = f"unit_cost_analogue:{p['country_iso3']}:{key}"
        analogue = ip.get("project", analogue_key, np.nan)
        if not published_cost and np.isfinite(analogue):
            # review 35b M1: the default rule put U.S. anode plants' cost below both published U.S. costs
            unit_cost = float(analogue)
            assume.append(f"unit cost {unit_cost:,.0f} USD per t of {key}, an analogue plant's published cost, not this plant's "
                          f"({analogue_key}, {ip.kind('project', analogue_key)}; no opex published for it)")
        elif not published_cost:
            unit_cost = st["unit_cost_share_of_price"] * world_price
            assume.append(f"unit cost {st['unit_cost_share_of_price']:.0%} of the node price (critmin assumption, no opex published)"
                          + (f", the world price before the market's ratio ({world_price:,.0f} USD/t)" if in_market != 1.0 else ""))
        else:
            assume.append(f"unit cost {float(unit_cost):,.0f} USD per t of {key}, published (the register's note gives the study)")
        life_p = p.get("life_years")
        life = int(round(float(life_p))) if life_p is not None and np.isfinite(life_p) and life_p > 0 else life_default
        if life != life_default:
            assume.append(f"life {life} years at nameplate (published mine life or reserves over output; default {life_default})")
        # review 14: 15-year loans on 10- and 12-year mines; lenders keep a reserve tail after the last repayment
        tenor = max(1, min(tenor_default, int(np.floor((1.0 - tail) * life))))
        if tenor < tenor_default:
            assume.append(f"loan tenor {tenor} years: {1.0 - tail:.0%} of its {life}-year life (reserve_tail_share {tail:g}), "
                          f"not the default {tenor_default}")
        co_nodes = coproduct_nodes(p, nodes)
        # review 13: co-products are revenue per t of the node's product, stressed with it in every price case
        co_rev = _coproduct_revenue(co_nodes, assume) / float(cap) if float(cap) > 0 else 0.0
        fin_price = price + co_rev
        # a published unit cost is the whole plant's (co-products included); the assumption adds 70 % of their revenue
        fin_cost = float(unit_cost) + (0.0 if published_cost else float(st["unit_cost_share_of_price"]) * co_rev)
        if co_rev:
            assume.append(f"finance on the revenue basket: {fin_price:,.0f} USD per t of {key} ({price:,.0f} of it the node's product), "
                          f"unit cost {fin_cost:,.0f} USD/t ("
                          + ("published, the whole plant's" if published_cost else
                             f"{st['unit_cost_share_of_price']:.0%} of the co-products' revenue added, critmin assumption")
                          + "); the price cases scale the whole basket")
        tax = ip.get("project", f"corporate_tax_rate:{p['country_iso3']}", ip.get("project", "corporate_tax_rate:USA"))
        vg = vg_base = np.nan
        hedge = 0.0
        uncovered: Callable[[float, float], float] | None = None
        if np.isfinite(capex):
            case = ProjectCase(float(cap), float(capex), fin_cost,
                               int(st["construction_years"]) if status not in ("operating", "commissioning") else 0,
                               ramp_y, life, tax, hurdle)
            prices = np.array([[fin_price * m] * (case.construction_years + life) for m in PRICE_SCENARIOS])
            gaps = viability_gap(case, prices)
            vg = float(np.mean(gaps))
            vg_base = float(gaps[PRICE_SCENARIOS.index(1.0)])
            # an offtake at today's price is worth its hedge: the low-price scenario's gap it removes (review 12)
            # (the offtake contracts the node's product only: a share price / fin_price of the basket at its base price)
            hedge = hedge_value(case, prices, st["offtake_share_of_capacity"] * price / fin_price, fin_price,
                                int(ip.get("offtake", "term_years")))
            # review 12: a loan the project's cash cannot repay at today's price is costed for what it cannot pay;
            # review 13: at today's price only (the base case, PRICE_SCENARIOS[1]). Averaged over the price cases it
            # charged every loan for the 0.7x case, whose margin is zero by the unit-cost assumption, on top of a
            # default model calibrated on realised losses (GAO's 7.9 %) that already include price-driven failures
            uncovered = _uncovered_for(case, prices[[PRICE_SCENARIOS.index(1.0)]], tenor)
            flows = cash_flows(case, prices)
            share = ip.get("loan", "share_of_capex_financed")
            dscrs = dscr(case, prices, share * float(capex), gov_rate + commercial_spread, tenor)
            finance.append({
                "project_id": pid, "price_scenarios": {f"{m:g}x": float(fin_price * m) for m in PRICE_SCENARIOS},
                "node_price_usd_per_t": float(price),
                "npv_usd": {f"{m:g}x": float(v) for m, v in zip(PRICE_SCENARIOS, npv(flows, hurdle), strict=True)},
                "irr": {f"{m:g}x": irr(f) for m, f in zip(PRICE_SCENARIOS, flows, strict=True)},
                "min_dscr_commercial_loan": {f"{m:g}x": float(v) for m, v in zip(PRICE_SCENARIOS, dscrs, strict=True)},
                "viability_gap_usd": {f"{m:g}x": float(v) for m, v in zip(PRICE_SCENARIOS, gaps, strict=True)},
                "viability_gap_mean_usd": vg, "offtake_hedge_value_usd": hedge, "hurdle_rate": hurdle, "capex_usd": float(capex), "unit_cost_usd_per_t": fin_cost,
                "assumptions": list(assume),
            })
        # loans and guarantees close before construction ends: the lender carries the construction risk too
        c_close = 1.0 if status == "operating" else ip.get(
            "project", "completion_probability:commissioning" if status == "commissioning" else "completion_probability:construction")
        pd_p = project_default_probability(pd_, tenor, c_close)
        for a in ag.to_dict("records"):
            inst = str(a["instrument"])
            if inst == "any":
                continue
            if str(a["eligible_countries"]).strip().lower() == "japan_link":
                # review 11: Japanese agencies finance Japanese companies' projects (agencies.csv note)
                link = p.get("japan_link")
                if str(p["country_iso3"]) != str(a["participant_iso3"]) and not (isinstance(link, str) and link.strip()):
                    continue
            elif not eligible_country(str(a["eligible_countries"]), str(p["country_iso3"]), str(a["participant_iso3"]), atlas,
                                       f"{p.get('frameworks') or ''} {p.get('note') or ''}"):
                continue
            if not _eligible_stage(str(a["eligible_stages"]), str(p["stage"])):
                continue
            federal = str(p.get("federal_decision_pending") or "").strip().lower()
            if inst == "regulatory" and federal == "no":
                # review 27: permitting facilitation (FAST-41) speeds federal decisions; a project licensed by a state
                # alone, or whose federal decisions are taken, has none left to speed up
                why.append(f"{a['agency_id']} regulatory: no U.S. federal permit or record of decision left to take "
                           "(federal_decision_pending: no; the source is in the register's note)")
                continue
            if inst == "regulatory" and federal == "facilitated":
                # review 35 L8: the U.S. government committed in October 2025 to advance the Upper Kobuk projects'
                # permits (and the Ambler Road's were reissued): recommending facilitation again adds nothing
                why.append(f"{a['agency_id']} regulatory: a federal commitment to advance its permits is already on record "
                           "(federal_decision_pending: facilitated; the source is in the register's note), so facilitation "
                           "would not be additional")
                continue
            bkey = f"{a['agency_id']}:{inst}"
            if bkey not in bud:
                shared = f"{a['agency_id']}:any"
                bkey = shared if shared in bud else bkey
            terms = _terms(inst, a, ip, float(cap), float(capex), price, vg, gov_rate, hurdle, tenor, pd_p, lgd, commercial_spread, st,
                           hedge, uncovered, vg_base)
            if terms is None:
                continue
            amount, bcost, value, note = terms
            if amount > 0 and np.isfinite(room) and inst in CAPEX_INSTRUMENTS:
                if room <= 0:
                    continue  # already financed (reason above)
                if amount > room:  # only the gap left by the support already counted is additional
                    f = room / amount
                    amount, bcost, value = amount * f, bcost * f, value * f
                    note += f"; cut to the financing gap {room:,.0f} USD (capex less counted support and committed private finance)"
            if basis.get(bkey, "amount") == "cost":
                # credit-subsidy envelope: charged the budget cost, but at least the appropriation ratio of the
                # amount (OBBBA funded DOE's loan authority at about 0.5 %), so fee-covered guarantees are not free
                floor = ip.get("loan_guarantee", "subsidy_rate:appropriation_ratio_DOE_EDF_OBBBA", 0.005)
                charge = max(bcost, floor * amount)
            else:
                charge = amount
            if charge > 0 and bkey not in bud:
                end_key = next((k for k in (bkey, f"{a['agency_id']}:any") if k in ended), None)
                why.append(f"{a['agency_id']} {inst}: its budget's stated period ended {ended[end_key]}, by the plan's month (set one with --budgets)"
                           if end_key else f"{a['agency_id']} {inst}: no published budget (set one with --budgets)")
                continue
            uplift = ip.get(inst, UPLIFT_PARAMETER, 0.0)
            # the uplift applies to projects still to be financed or permitted (instrument_parameters.csv note), and
            # scales with the share of the viability gap the instrument closes; an unknown gap earns no uplift
            if status not in UPLIFT_STATUSES_BY_INSTRUMENT.get(inst, UPLIFT_STATUSES) or not np.isfinite(vg):
                uplift = 0.0
            # a project viable in every price case gets the full uplift from money (the financing gap an NPV does not
            # show: tenor, size, lenders' caution), but an instrument worth nothing to it gets none (review 13: a DLA
            # offtake with no hedge value was credited +0.10 for Stibnite)
            share = (1.0 if value > 0 or inst not in ("offtake", "price_floor") else 0.0) if vg <= 0 else min(1.0, value / vg)
            if inst == "regulatory":
                share = 1.0  # review 14: permitting help acts on permit risk, not on the viability gap (it has no money value)
            closed = pid in financed and inst != "regulatory"
            if closed:
                # review 34b K2: with its capex covered (White Mesa Phase 2 by Energy Fuels' notes), an offtake or floor,
                # like capex money, neither raises its completion nor brings its output forward: finance is not its constraint
                share = 0.0
            pi_o = min(1.0, float(pi0) + uplift * share)
            # an instrument saves months only where it removes the project's bottleneck: finance before
            # financial close, permitting facilitation before the permits
            saved = (ip.get(inst, "months_to_first_output_change", 0.0)
                     if status in ACCELERATED_STATUSES.get(inst, ()) and not closed else 0.0)
            t_o = max(0.0, t0 + saved)
            # mean share of nameplate over the horizon, ramping up from first output (finance.mean_output_share)
            # (review 34: over the evaluation period, discounted at the government rate as the cost weight is)
            # (review 34b K5: with ``persistence``, each month's output weighed by the share of the node's loss still there)
            persist = (persistence or {}).get(key)
            h0 = mean_output_share(t0, horizon, ramp_y, rate=gov_rate, persistence=persist)
            h1 = mean_output_share(t_o, horizon, ramp_y, rate=gov_rate, persistence=persist)
            dq = float(cap) * (pi_o * h1 - float(pi0) * h0)
            if abs(dq) < DQ_NOISE * float(cap):
                dq = 0.0  # review 13: 5e-15 of rounding (equal shares) became a coefficient HiGHS rejects
            # review 13: co-products add supply at their own nodes in proportion (NICO's bismuth, White Mesa's Dy and Tb)
            co_supply = [(node_idx[c.key], t * dq / float(cap)) for _, t, c in co_nodes if c is not None and c.key in node_idx and dq > 0]
            n = node_idx[key]
            concern_share = sum(s for c, s in node.shares.items() if c in concern)
            rows.append({
                "project_id": pid, "instrument": inst, "agency": str(a["agency_id"]), "budget_key": bkey if charge > 0 else "none",
                "participant": str(a["participant_iso3"]), "node": n, "country": str(p["country_iso3"]), "commodity": str(p["commodity_id"]),
                "dq_t": dq, "cost_usd": float(max(charge, 0.0)), "amount_usd": float(amount), "budget_cost_usd": float(bcost),
                "value_to_project_usd": float(value), "months_to_output": t_o, "completion_probability": pi_o, "capacity_t": float(cap),
                "bonus": dq * float(sample.value_per_t[n]) * concern_share * (0.0 if p["country_iso3"] in concern else 1.0),
                "terms": note, "viability_gap_usd": vg, CO_SUPPLY: co_supply,
            })
        reasons[pid] = why
        assumptions[pid] = assume
    opts = pd.DataFrame(rows)
    if opts.empty:
        opts = pd.DataFrame(columns=["project_id", "instrument", "agency", "budget_key", "participant", "node", "country", "commodity",
                                     "dq_t", "cost_usd", "amount_usd", "months_to_output", "bonus"])
    bud_all = {**bud, "none": float("inf")}
    opts["economic_cost_usd"] = np.maximum(opts["budget_cost_usd"].to_numpy(dtype=float), 0.0) if "budget_cost_usd" in opts else opts["cost_usd"]
    problem = PortfolioProblem(opts, sample.shortfall, sample.months, sample.value_per_t, np.full(sample.shortfall.shape[1], 1.0 / max(sample.shortfall.shape[1], 1)),
                               {k: v for k, v in bud_all.items() if k in set(opts["budget_key"]) or k == "none"}, sample.node_names,
                               deadline_months=deadline_months,
                               cost_weight=cost_weight(st["cost_of_public_funds"], gov_rate, horizon),
                               stocked=sample.stocked, stocked_value=sample.stocked_value, supply_share=sample.supply_share,
                               price_value_per_t=sample.price_value_per_t)
    return BuiltProblem(problem, reasons, assumptions, bud, basis, sample, opts, finance, financed)


#: How a project's assumptions start when its first output is a default lead time (the plan and summary look for it).
NO_DATE_NOTE = "no first-output date"

#: Added capacity below this share of a project's capacity is floating-point noise of equal shares, not capacity.
DQ_NOISE = 1e-9

#: Instruments that finance the capex (an offtake, insurance or regulatory support is not capex money).
CAPEX_INSTRUMENTS = ("loan", "loan_guarantee", "equity", "grant")


def _usd(v: Any) -> float:
    """A register amount in USD, 0 when blank."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return 0.0
    return f if np.isfinite(f) else 0.0


#: Support the register records but does not count (not binding yet) that a new capex instrument may duplicate.
PENDING_STATUSES = ("letter_of_interest", "letter_of_intent", "preliminary", "in_principle", "proposed")
PENDING_NOTE = "pending, not counted:"


def pending_capex_support(support: pd.DataFrame | None) -> dict[str, list[str]]:
    """Per project, the capex support in the pipeline (a letter of interest, a preliminary or in-principle offer), not
    counted as money in place but a reason a new instrument may not be additional (review 13: EXIM's letter for up to
    US$1.8 B to Stibnite, with a formal application, beside a recommended DOE guarantee)."""
    if support is None or support.empty or "commitment_status" not in support:
        return {}
    s = support[~support["counts"].astype(bool) & support["instrument"].isin((*CAPEX_INSTRUMENTS, "tax_credit"))
                & support["commitment_status"].isin(PENDING_STATUSES)]
    out: dict[str, list[str]] = {}
    for r in s.itertuples():
        amt = _usd(r.amount_usd)
        out.setdefault(str(r.project_id), []).append(
            f"{r.agency} {str(r.instrument).replace('_', ' ')}" + (f" of up to {amt / 1e6:,.0f} M USD" if amt else "")
            + f" ({str(r.commitment_status).replace('_', ' ')}, {r.support_id})")
    return out


def counted_capex_support(support: pd.DataFrame | None) -> dict[str, float]:
    """USD of public capex money already counted per project (the register's ``counts`` rule; loans, guarantees,
    equity, grants and investment tax credits, not offtakes or price floors, which buy output), 0 when none."""
    if support is None or support.empty or "counts" not in support:
        return {}
    s = support[support["counts"].astype(bool) & support["instrument"].isin((*CAPEX_INSTRUMENTS, "tax_credit"))]
    amt = pd.to_numeric(s["amount_usd"], errors="coerce").fillna(0.0)
    return {str(k): float(v) for k, v in amt.groupby(s["project_id"]).sum().items()}


def _t(t: float) -> str:
    """Tonnes for a sentence: whole tonnes from 100 t, four significant figures below."""
    return f"{t:,.0f}" if t >= 100 else f"{t:.4g}"


def coproduct_nodes(p: dict[str, Any], nodes: NodeTable) -> list[tuple[str, float, Any]]:
    """The register's ``coproducts`` of a project as (commodity, t/yr at nameplate, node or None): each at its
    commodity's node of the project's own stage where there is one, else its first priced node."""
    out = []
    for name, t in parse_coproducts(p.get("coproducts")):
        cands = [n for n in nodes.nodes if n.commodity == name and np.isfinite(n.p0_usd_per_t) and n.p0_usd_per_t > 0]
        out.append((name, t, next((n for n in cands if n.stage == p["stage"]), cands[0] if cands else None)))
    return out


def _coproduct_revenue(parts: list[tuple[str, float, Any]], assume: list[str]) -> float:
    """Revenue a year at nameplate of a plant's other products (``parts`` from :func:`coproduct_nodes`):
    ``Σ_k q_k P_k``. Stibnite earns most of its revenue from gold, NICO from gold and bismuth at today's prices
    (review 12)."""
    if not parts:
        return 0.0
    revenue, said = 0.0, []
    for name, t, pick in parts:
        if pick is None:
            said.append(f"{name} {_t(t)} t (no priced node: not counted)")
            continue
        revenue += t * pick.p0_usd_per_t
        said.append(f"{name} {_t(t)} t at {pick.p0_usd_per_t:,.0f} USD/t ({pick.key})")
    assume.append(f"co-products a year at nameplate: {'; '.join(said)} = {revenue:,.0f} USD of revenue")
    return revenue


def _capital_intensity(ip: InstrumentParameters, commodity: str, stage: str) -> tuple[float, str] | None:
    t = ip.table[(ip.table["instrument"] == "project") & ip.table["parameter"].str.startswith(f"capital_intensity:{commodity}:")]
    if t.empty:
        return None
    pick = {"mine": "mine", "refine": "refin", "metal": "refin", "magnet": "magnet", "anode": "anode", "cathode": "cathode"}.get(stage, stage)
    for r in t.itertuples():
        if pick in str(r.parameter) and np.isfinite(r.value):
            return float(r.value), f"{r.parameter}, {r.kind}"
    return None


def _terms(inst: str, a: dict[str, Any], ip: InstrumentParameters, cap: float, capex: float, price: float, vg: float, gov_rate: float,
           hurdle: float, tenor: int, pd_: float, lgd: float, commercial_spread: float, st: dict[str, float],
           hedge: float = 0.0, uncovered: Callable[[float, float], float] | None = None,
           vg_base: float | None = None) -> tuple[float, float, float, str] | None:
    """(amount, budget cost, value to the project, note) of an instrument for a project, or None if not applicable.

    ``hedge`` is the offtake's value to the project (:func:`critmin.portfolio.finance.hedge_value`), 0 when the
    project's capex is unknown. ``uncovered(principal, rate)`` is the present value of the debt service the project's
    cash cannot pay (:func:`critmin.portfolio.finance.uncovered_debt_service`), added to a loan's or a guarantee's
    cost on top of the default-rate model (review 12)."""
    max_share = a.get("max_share_of_capex")
    if inst == "regulatory":
        return 0.0, ip.get("regulatory", "budget_cost_usd", 0.0), 0.0, "permitting facilitation"
    if inst in ("loan", "loan_guarantee", "equity", "grant") and not np.isfinite(capex):
        return None
    if inst == "grant":
        # review 13: a grant equal to the mean gap over the price cases overpaid in the base and high cases; it closes
        # the gap at today's price (vg_base), and a project viable at today's price gets no grant
        need = vg if vg_base is None else vg_base
        if not np.isfinite(need) or need <= 0:
            return None
        share = max_share if max_share is not None and np.isfinite(max_share) else ip.get("grant", "max_cost_share")
        g = min(need, share * capex)
        return g, g, g, f"grant {g:,.0f} USD (viability gap at today's price {need:,.0f}, cap {share:.0%} of capex)"
    if inst in ("loan", "loan_guarantee"):
        share = ip.get("loan", "share_of_capex_financed")
        if max_share is not None and np.isfinite(max_share):
            share = min(share, float(max_share))
        principal = share * capex
        commercial = gov_rate + commercial_spread
        if inst == "loan":
            rate = gov_rate + ip.get("loan", "interest_spread_over_treasury:DOE_LPO", 0.0)
            cost = loan_cost(principal, rate, tenor, gov_rate, pd_, lgd)
            value = _pv_payments(principal, commercial, tenor, hurdle) - _pv_payments(principal, rate, tenor, hurdle)
            short = uncovered(principal, rate) if uncovered is not None else 0.0
            return (principal, cost + short, value, f"loan {principal:,.0f} USD at {rate:.2%} for {tenor} y, default {pd_:.2%}/yr with "
                    "construction risk" + _uncovered_note(short))
        fee = ip.get("loan_guarantee", "guarantee_fee_annual")
        cov = ip.get("loan_guarantee", "coverage_share", 1.0)
        cost = guarantee_cost(principal, commercial, tenor, cov, fee, gov_rate, pd_, lgd)
        guaranteed_rate = gov_rate + fee
        value = _pv_payments(principal, commercial, tenor, hurdle) - _pv_payments(principal, guaranteed_rate, tenor, hurdle)
        short = cov * uncovered(principal, commercial) if uncovered is not None else 0.0
        return (principal * cov, cost + short, value, f"guarantee of {principal * cov:,.0f} USD, fee {fee:.2%}, default {pd_:.2%}/yr "
                "with construction risk" + _uncovered_note(short))
    if inst == "equity":
        share = float(max_share) if max_share is not None and np.isfinite(max_share) else st["equity_share_of_capex"]
        amount = min(share, st["equity_share_of_capex"]) * capex
        el = ip.get("equity", "expected_loss_share")
        return amount, equity_cost(amount, el), amount * el, f"equity {amount:,.0f} USD"
    vol = st["price_volatility"]
    q = st["offtake_share_of_capacity"] * cap
    if inst == "price_floor":
        years = int(ip.get("price_floor", "term_years"))
        floor = st["price_floor_ratio"] * price
        cost = price_floor_cost(q, floor, price, vol, years, gov_rate)
        return cost, cost, cost, f"floor {floor:,.0f} USD/t on {q:,.0f} t/yr for {years} y"
    if inst == "offtake":
        years = int(ip.get("offtake", "term_years"))
        amount = q * price * years
        resale = ip.get("offtake", "resale_share_of_market_price", 1.0)
        cost = offtake_cost(q, price, price, vol, years, gov_rate, resale_share=resale)
        note = f"offtake of {q:,.0f} t/yr at {price:,.0f} USD/t for {years} y, resold at {resale:.0%} of the market price"
        if hedge > 0:
            note += f"; worth {hedge:,.0f} USD to the project as a hedge (viability gap closed in the low-price case)"
        return amount, cost, float(hedge), note
    if inst == "insurance":
        if not np.isfinite(capex):
            return None
        cover = ip.get("insurance", "max_coverage_share") * capex
        cost = insurance_cost(cover, ip.get("insurance", "premium_rate_annual"), ip.get("insurance", "annual_claim_probability"),
                              int(st["insurance_term_years"]), gov_rate)
        return cover, cost, 0.0, f"political-risk cover {cover:,.0f} USD"
    return None


def _uncovered_for(case: ProjectCase, prices: np.ndarray, tenor: int) -> Callable[[float, float], float]:
    """``(principal, rate) -> PV`` of the debt service ``case`` cannot pay (:func:`uncovered_debt_service`)."""
    def f(principal: float, rate: float) -> float:
        return uncovered_debt_service(case, prices, principal, rate, tenor)
    return f


def _uncovered_note(short: float) -> str:
    return (f"; the project's cash over the tenor at today's price cannot repay {short:,.0f} USD of it (present value: "
            "debt unpaid, added to the cost)" if short > 0 else "")


def _pv_payments(principal: float, rate: float, tenor: int, disc: float) -> float:
    pay = annuity_payment(principal, rate, tenor)
    return float(sum(pay / (1.0 + disc) ** t for t in range(1, tenor + 1)))
