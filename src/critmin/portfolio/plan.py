"""``critmin portfolio``: build the programme from the register and the simulator, solve it, explain it."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np
import pandas as pd

from critmin._dates import current_month
from critmin._text import usd, usd_apart
from critmin.atlas.model import Atlas
from critmin.inputs import make_options
from critmin.portfolio.model import (
    CAPEX_INSTRUMENTS,
    NO_DATE_NOTE,
    PENDING_NOTE,
    REMAINDER_NOTE,
    BuiltProblem,
    InstrumentParameters,
    build_problem,
    read_agencies,
    sample_from_simulator,
)
from critmin.portfolio.optimise import (
    CO_SUPPLY,
    PortfolioProblem,
    Solution,
    added_avoided,
    added_supply,
    economic_cost,
    expected_avoided,
    frontier,
    greedy,
    marginal_values,
    solve,
)
from critmin.portfolio.options import PortfolioOptions


def alternative_programme(sol: Solution, p_alt: PortfolioProblem, gap: float, time_limit: float, base: str, alt: str) -> dict[str, Any]:
    """The programme ``sol`` checked on an alternative problem ``p_alt`` (built with other assumptions, otherwise as
    the programme's): what the chosen options avoid there (``expected_avoided_usd_same_programme``), each chosen
    option's added capacity in both cases, and the programme the optimiser chooses there (``both``, ``only_<base>``,
    ``only_<alt>``). Review 34b K4 (``with_uplift``/``without_uplift``) and K5 (``held``/``relaxed``)."""
    key = ["project_id", "instrument", "agency"]
    chosen = sol.selected[key] if len(sol.selected) else pd.DataFrame(columns=key)
    same = p_alt.options.merge(chosen, on=key, how="inner") if len(p_alt.options) else p_alt.options.iloc[0:0]
    dq_alt = {str(r["project_id"]): float(r["dq_t"]) for r in same.to_dict("records")}
    sol_alt = solve(p_alt, gap=gap, time_limit=time_limit)
    ids = set(sol.selected["project_id"]) if len(sol.selected) else set()
    ids_alt = set(sol_alt.selected["project_id"]) if len(sol_alt.selected) else set()
    # review 35 L2: a project kept with another instrument or agency is not the same decision
    terms = {str(r["project_id"]): (str(r["instrument"]), str(r["agency"])) for r in sol.selected.to_dict("records")} if len(sol.selected) else {}
    terms_alt = {str(r["project_id"]): (str(r["instrument"]), str(r["agency"])) for r in sol_alt.selected.to_dict("records")} if len(sol_alt.selected) else {}
    return {"both": sorted(ids & ids_alt), f"only_{base}": sorted(ids - ids_alt), f"only_{alt}": sorted(ids_alt - ids),
            "other_terms": {k: {"instrument": terms_alt[k][0], "agency": terms_alt[k][1]} for k in sorted(ids & ids_alt) if terms[k] != terms_alt[k]},
            "expected_avoided_usd_same_programme": expected_avoided(p_alt, same),
            f"expected_avoided_usd_{base}": float(sol.expected_avoided_usd),
            f"expected_avoided_usd_chosen_{alt}": float(sol_alt.expected_avoided_usd),
            "added_capacity_t_per_year": {str(r["project_id"]): {base: float(r["dq_t"]), alt: dq_alt.get(str(r["project_id"]), 0.0)}
                                          for r in sol.selected.to_dict("records")} if len(sol.selected) else {}}


#: How a credit-subsidy budget is labelled in the record (charged the budget cost, not the face amount).
COST_BASIS_LABEL = "budget cost (credit subsidy)"


def _selected_records(bp: BuiltProblem, sol: Solution, names: dict[str, str]) -> list[dict[str, Any]]:
    p = bp.problem
    sel = sol.selected
    z = added_supply(p, sel, np.ones(len(sel)))
    out = []
    for r in sel.to_dict("records"):
        n = int(r["node"])
        # attribution: the option's share of the supply added at each node it supplies (its own, its co-products')
        # times that node's avoided loss
        pairs = [(n, float(r["dq_t"]))] + [(int(nn), float(qq)) for nn, qq in (r.get(CO_SUPPLY) or [])]
        avoided = sum(sol.avoided_by_node.get(p.node_names[nn], 0.0) * (qq / z[nn] if z[nn] > 0 else 0.0) for nn, qq in pairs)
        co = {p.node_names[nn]: round(qq, 3) for nn, qq in pairs[1:] if qq >= 5e-4}  # t/yr, to the kilogram
        # once producing: nameplate times the completion probability with the support (not the increment dq the support
        # causes, averaged over the horizon); co-products in proportion (review 20b)
        cap, prob = float(r.get("capacity_t", np.nan)), float(r.get("completion_probability", np.nan))
        once = cap * prob if np.isfinite(cap) and np.isfinite(prob) else float(r["dq_t"])
        scale_once = once / float(r["dq_t"]) if float(r["dq_t"]) > 0 else 0.0
        out.append({
            "project_id": r["project_id"],
            "name": names.get(r["project_id"], ""),
            "instrument": r["instrument"],
            "agency": r["agency"],
            "participant": r["participant"],
            "node": p.node_names[n],
            "cost_usd": float(r["cost_usd"]),  # charged against its budget (the figures in 'spent')
            "budget_cost_usd": float(r.get("budget_cost_usd", r["cost_usd"])),  # credit-reform cost to the government
            "amount_usd": float(r["amount_usd"]),
            "added_capacity_t_per_year": float(r["dq_t"]),
            "months_to_output": float(r["months_to_output"]),
            "completion_probability": float(r.get("completion_probability", np.nan)),
            "expected_avoided_usd": float(avoided),
            "co_product_capacity_t_per_year": co,
            "output_once_producing_t_per_year": once,
            "co_product_output_once_producing_t_per_year": {k: round(v * scale_once, 3) for k, v in co.items()},
            # review 24: what the plant makes once it produces is its nameplate; the completion probability is the
            # chance that it does (the stock sentence names it), not a discount on its output
            "nameplate_t_per_year": cap if np.isfinite(cap) else once,
            "co_product_nameplate_t_per_year": {k: round(v * scale_once / prob, 3) for k, v in co.items()}
            if np.isfinite(prob) and prob > 0 else {k: round(v * scale_once, 3) for k, v in co.items()},
            "terms": r.get("terms", ""),
            "assumptions": bp.assumptions.get(r["project_id"], []),
        })
    return out


def _tonnes(t: float) -> str:
    """Tonnes for a reason text: thousands separated; two significant figures below 10 (0.06 t of gallium is not 0)."""
    return f"{t:,.0f}" if abs(t) >= 10 else f"{t:.2g}"


#: An operating plant whose reported output is below this share of nameplate is called idle in its reason (review 14).
IDLE_SHARE = 0.2


def _idle_notes(projects: pd.DataFrame) -> dict[str, str]:
    """Per operating project whose latest reported output (``output_t``) is under :data:`IDLE_SHARE` of its capacity,
    a sentence saying so: the status class says operating, the output says idle (review 14: Vidalia at 0 t in 2025,
    White Mesa Phase 1 at 35 of 850 t, were 'already producing')."""
    out: dict[str, str] = {}
    if "output_t" not in projects.columns:
        return out
    for r in projects.itertuples():
        cap, got = pd.to_numeric(r.capacity_t, errors="coerce"), pd.to_numeric(r.output_t, errors="coerce")
        if np.isfinite(cap) and cap > 0 and np.isfinite(got) and got < IDLE_SHARE * cap:
            period = str(getattr(r, "output_period", "") or "").strip()
            out[str(r.project_id)] = (f"but its reported output{' (' + period + ')' if period else ''} is {_tonnes(float(got))} t, "
                                      f"{got / cap:.0%} of its {_tonnes(float(cap))} t nameplate: the idle capacity that "
                                      "qualification, offtake or working-capital support could bring back is not modelled")
    return out


def _no_capacity_reason(status: str, mine: pd.DataFrame, horizon: float, status_text: str = "", idle: str = "") -> str:
    """Why no instrument adds expected capacity to a project (docs/portfolio.md section 4: additionality)."""
    first = float(mine["months_to_output"].min())
    if status == "operating":
        if idle:
            return f"treated as producing (status class operating), so support adds no capacity (additionality); {idle}"
        return "already producing: support would add no capacity (additionality)"
    if status in ("commissioning", "construction"):
        # review 9: Kellyton read "finance already in place" while its own status says financing is in progress: the rule
        # is an assumption of the status class, and the published status is shown beside it when it says otherwise
        caveat = (f"; its published status reads '{status_text}', so check whether its finance is complete"
                  if re.search(r"financ|fund", status_text, re.IGNORECASE) and not re.search(r"fully (funded|financed)", status_text, re.IGNORECASE)
                  else "")
        return (f"treated as financed because its status class is {status} (an assumption of the class): first output in about "
                f"{first:.0f} months with or without support, so no instrument adds capacity{caveat}")
    if not np.isfinite(mine["viability_gap_usd"].astype(float)).any():
        return (f"data gap: no capex in the register, so the viability gap is unknown and no instrument is credited with raising its "
                f"completion (status {status}, first output in about {first:.0f} months)")
    if first >= horizon:
        return f"first output after the {horizon:.0f}-month evaluation period even with support (about {first:.0f} months)"
    return f"no instrument raises its completion or brings its output forward (status {status})"


def _unspent(bp: BuiltProblem, sol: Solution, budgets: dict[str, float], deadline: float | None, statuses: dict[str, str]) -> dict[str, str]:
    """Per budget left mostly unspent (< 95 %), the constraint that bound: eligibility, additionality, data gaps,
    the deadline, or no shortfall left to cut at the margin."""
    opts = bp.options_all
    funded = set(sol.selected["project_id"]) if len(sol.selected) else set()
    out = {}
    for key, budget in budgets.items():
        spent = sol.spent.get(key, 0.0)
        if budget <= 0 or spent >= 0.95 * budget:
            continue
        mine = opts[opts["budget_key"] == key] if len(opts) else opts
        useful = mine[mine["dq_t"] > 0] if len(mine) else mine
        if mine.empty:
            why = "eligibility: no project in the register is eligible for this agency and instrument (country, stage or missing capex)"
        elif useful.empty and key.endswith(":offtake"):
            # review 11: the generic additionality text blamed the projects; review 12: an offtake is valued as a hedge
            st = pd.Series([statuses.get(str(x), "") for x in mine["project_id"].unique()]).value_counts().to_dict()
            why = ("an offtake adds capacity only through its hedge: the viability gap it closes in the low-price case for a project "
                   "still to be financed (finance.hedge_value, then the offtake's completion-probability uplift); its "
                   f"{len(mine['project_id'].unique())} eligible projects gain none (by status: "
                   + ", ".join(f"{k} {v}" for k, v in st.items()) + "): already producing or built, no capex to value the hedge, "
                   "or viable even at the low price")
        elif useful.empty:
            st = pd.Series([statuses.get(str(x), "") for x in mine["project_id"].unique()]).value_counts().to_dict()
            why = ("additionality: its eligible projects add no expected capacity (by status: "
                   + ", ".join(f"{k} {v}" for k, v in st.items()) + "): already producing, already financed, or no capex to size the gap")
        elif deadline is not None and (useful["months_to_output"] > deadline).all():
            why = f"deadline: every useful option gives first output after {deadline:g} months"
        elif set(useful["project_id"]) <= funded:
            why = "all its useful projects are funded (by this or another agency); nothing left to buy"
        else:
            why = _no_margin_reason(bp, sol, useful[~useful["project_id"].isin(list(funded))], mine)
        out[key] = f"{spent / budget:.0%} used; {why}"
    return out


def _no_margin_reason(bp: BuiltProblem, sol: Solution, rest: pd.DataFrame, mine: pd.DataFrame | None = None) -> str:
    """Why a budget's remaining useful options were not bought: the best of them against the net-benefit test, and
    the largest losses left that none of them reaches (review 10: 'the nodes are covered' while 68 % of the
    avoidable loss sat at nodes where nothing was avoided). Where the budget has options at such a node that add
    no capacity (``mine``: all its options), they are named (review 13: 'none of its options reaches' cobalt ore
    while DLA had options there for paused or undated projects)."""
    p = bp.problem
    ratios = []
    for i, r in rest.iterrows():
        gain = added_avoided(p, sol.selected, int(r["node"]), float(r["dq_t"]), r.get(CO_SUPPLY))
        need = p.cost_weight * float(economic_cost(rest.loc[[i]])[0])
        ratios.append((gain / need if need > 0 else np.inf, gain, need, str(r["project_id"]), p.node_names[int(r["node"])]))
    reached = {p.node_names[int(n)] for n in rest["node"]}
    pot = p.loss_potential()  # with stocks in place, what they leave and the buy-back of what they cover
    left = {n: float(p.weights @ pot[i]) - sol.avoided_by_node.get(n, 0.0) for i, n in enumerate(p.node_names)}
    far = sorted(((v, n) for n, v in left.items() if n not in reached and v > 0), reverse=True)[:3]
    idle: dict[str, list[str]] = {}
    if mine is not None and len(mine):
        for n, g in mine[mine["dq_t"] <= 0].groupby("node"):
            idle[p.node_names[int(n)]] = sorted(set(map(str, g["project_id"])))

    def _at(n: str) -> str:
        ps = idle.get(n)
        return f" (its options there, {', '.join(ps[:4])}{', ...' if len(ps) > 4 else ''}, add no expected capacity)" if ps else ""

    elsewhere = ("; the largest losses left are at nodes none of its options adds capacity to: "
                 + ", ".join(f"{n} ({usd(v)} a year){_at(n)}" for v, n in far)) if far else ""
    if not ratios:
        return "no option left" + elsewhere
    ratio, gain, need, pid, node = max(ratios)
    if np.isfinite(ratio) and ratio <= 1:
        return (f"no remaining option passes the net-benefit test: the best, {pid} at {node}, would avoid {usd(gain)} a year "
                f"against {usd(need)} a year needed to justify its cost" + elsewhere)
    return ("its remaining options are held back by another constraint (the portfolio's country, commodity or "
            f"participant shares, or a shared project); the best, {pid} at {node}, would avoid {usd(gain)} a year" + elsewhere)


def _selected_reason(pid: str, chosen: dict[str, str], bp: BuiltProblem, sol: Solution, names: dict[str, str]) -> str:
    """Funded: what it buys per dollar, and the best option at the same node that was not funded."""
    r = sol.selected[sol.selected["project_id"] == pid].iloc[0]
    node = bp.problem.node_names[int(r["node"])]
    cost = float(r["cost_usd"])
    # review 21: Mactung read as three capacities (the support's increment here, none in a budget's reason, its output
    # once producing in the stocks); the reason now names all three and what each is
    cap, prob = float(r.get("capacity_t", np.nan)), float(r.get("completion_probability", np.nan))
    plant = (f"nameplate {_tonnes(cap)} t/yr, expected to make {_tonnes(cap * prob)} t/yr once producing "
             f"(completion probability {prob:.2f} with the support); " if np.isfinite(cap) and np.isfinite(prob) else "")
    # review 23: a reason read "$141 M of budget" (a face amount) for one project and "$38 M" (a subsidy cost) for
    # another; every reason now gives the face amount, the expected cost to governments and the budget's charge, and
    # the tonnes per million USD on the expected cost
    face = float(r.get("amount_usd") or 0.0)
    econ = float(r.get("budget_cost_usd", cost) if pd.notna(r.get("budget_cost_usd", cost)) else cost)
    per = (f"{plant}the support adds {_tonnes(float(r['dq_t']))} t/yr of expected output at {node}, averaged over the evaluation period (discounted), "
           f"for {usd(face)} of face amount and an expected cost to governments of {usd(max(econ, 0.0))}"
           + (f" (charged {usd(cost)} to its budget, counted in face amounts)" if abs(cost - max(econ, 0.0)) > 0.5 else ""))
    if econ > 0:
        per += f" ({_tonnes(float(r['dq_t']) / econ * 1e6)} t/yr per million USD of expected cost)"
    share = bp.problem.supply_share
    if share is not None and float(share[int(r["node"])]) < 1.0:
        # review 23: the bloc receives its share of the tonnes, with every buyer outside the dominant supplier
        per += (f"; in a disruption the bloc receives about {float(share[int(r['node'])]):.0%} of those tonnes (its demand "
                "over the market rationed outside the dominant supplier), and all of them lower the price it pays")
    opts = bp.options_all
    rivals = opts[(opts["node"] == r["node"]) & (~opts["project_id"].isin(list(chosen))) & (opts["dq_t"] > 0)] if len(opts) else opts
    if len(rivals):
        b = rivals.assign(ratio=lambda d: d["dq_t"] / d["cost_usd"].clip(lower=1.0)).sort_values("ratio", ascending=False).iloc[0]
        alt = (f"; it beat {b['project_id']} {names.get(str(b['project_id']), '')} ({b['instrument']} from {b['agency']}: "
               f"{_tonnes(float(b['dq_t']))} t/yr for {usd(float(b['cost_usd']))})")
    else:
        sel = sol.selected
        others = sorted(set(sel.loc[(sel["node"] == r["node"]) & (sel["project_id"] != pid), "project_id"]))
        # review 5: three selected magnet projects each said no other project offered capacity at their node
        alt = (f"; every other project at this node with an option was funded too ({', '.join(others)})" if others else
               "; no other project offered capacity at this node")
    # review 8: with the ramp inside the planning horizon, a default lead time decides much of an option's value
    lead = next((a for a in bp.assumptions.get(pid, []) if a.startswith(NO_DATE_NOTE) or "treated as unknown" in a), None)
    timing = f"; its first output is not dated ({lead}), so its value rests on that default" if lead else ""
    pend = [a for a in bp.assumptions.get(pid, []) if a.startswith(PENDING_NOTE)] if str(r["instrument"]) in CAPEX_INSTRUMENTS else []
    pending = "; " + "; ".join(pend) if pend else ""
    return f"funded with a {chosen[pid]}: {per}{alt}{timing}{pending}{_remainder_caveat(bp, pid)}"


def _remainder_caveat(bp: BuiltProblem, pid: str) -> str:
    """The caveat of a project whose output is counted at the rare-earth remainder node (empty otherwise)."""
    note = next((a for a in bp.assumptions.get(pid, []) if a.startswith(REMAINDER_NOTE)), None)
    return f"; {note}" if note else ""


def _reasons(bp: BuiltProblem, sol: Solution, deadline: float | None, names: dict[str, str], statuses: dict[str, str],
             horizon: float, status_texts: dict[str, str] | None = None, idle: dict[str, str] | None = None) -> list[dict[str, Any]]:
    status_texts = status_texts or {}
    idle = idle or {}
    chosen = dict(zip(sol.selected["project_id"], sol.selected["instrument"] + " from " + sol.selected["agency"], strict=True))
    opts = bp.options_all
    # each project's options, grouped once (a filter per project was quadratic in the register's size)
    by_project = {pid: g for pid, g in opts.groupby("project_id", sort=False)} if len(opts) else {}
    none = opts.iloc[0:0]
    out = []
    for pid in sorted(bp.reasons):
        if pid in chosen:
            out.append({"project_id": pid, "name": names.get(pid, ""), "decision": "selected", "reason": _selected_reason(pid, chosen, bp, sol, names),
                        "already_financed": pid in bp.financed})
            continue
        mine = by_project.get(pid, none)
        if mine.empty:
            base = bp.reasons[pid] or ["no eligible agency and instrument"]
            no_budget = [r for r in base if "no published budget" in r]
            other = [r for r in base if "no published budget" not in r]
            if no_budget:
                other.append("no published budget for: " + ", ".join(r.split(":")[0] for r in no_budget))
            out.append({"project_id": pid, "name": names.get(pid, ""), "decision": "rejected", "reason": "; ".join(other),
                        "already_financed": pid in bp.financed})
            continue
        financed = [r for r in bp.reasons[pid] if r.startswith("already financed")]
        if financed and (mine["dq_t"] <= 0).all():
            why = financed[0]
        elif (mine["dq_t"] <= 0).all():
            why = _no_capacity_reason(statuses.get(pid, ""), mine, horizon, status_texts.get(pid, ""), idle.get(pid, ""))
        elif deadline is not None and (mine.loc[mine["dq_t"] > 0, "months_to_output"] > deadline).all():
            why = f"first output after the {deadline:g}-month deadline with every instrument (earliest {mine['months_to_output'].min():.0f} months)"
        else:
            # the option closest to passing the net-benefit test: the largest gain next to the funded projects less the
            # cost it must justify (review 27: the reason quoted an EU loan, best by tonnes per face dollar, while the
            # recommended option was a cheaper CAN guarantee)
            live = mine[mine["dq_t"] > 0]
            econs = economic_cost(live)
            gains = np.array([added_avoided(bp.problem, sol.selected, int(r["node"]), float(r["dq_t"]), r.get(CO_SUPPLY))
                              for _, r in live.iterrows()])
            k = int(np.argmax(gains - bp.problem.cost_weight * econs))
            best = live.iloc[k]
            spent = sol.spent.get(best["budget_key"], 0.0)
            budget = bp.problem.budgets.get(best["budget_key"], np.inf)
            gain, econ = float(gains[k]), float(econs[k])
            need = bp.problem.cost_weight * econ
            if bp.problem.cost_weight > 0 and gain <= need:
                gain_s, need_s = usd_apart(gain, need)
                why = (f"fails the net-benefit test: its best option ({best['instrument']} from {best['agency']}, "
                       f"adding {_tonnes(float(best['dq_t']))} t/yr of expected output) would avoid {gain_s} a year of expected loss "
                       f"next to the funded projects, against {need_s} a year needed to justify its expected cost of {usd(econ)} "
                       f"(marginal cost of public funds over the evaluation period){_remainder_caveat(bp, pid)}")
            else:
                why = (f"not worth its budget at the margin: best option {best['instrument']} from {best['agency']} adds "
                       f"{_tonnes(float(best['dq_t']))} t/yr of expected output for {usd(float(best['cost_usd']))}; its budget {best['budget_key']} is "
                       f"{(spent / budget if np.isfinite(budget) and budget > 0 else 0):.0%} used by better options, or its node is already covered")
        out.append({"project_id": pid, "name": names.get(pid, ""), "decision": "rejected", "reason": why,
                    "already_financed": pid in bp.financed})
    return out


def run_portfolio(
    atlas: Atlas,
    sim: Any,
    projects: pd.DataFrame,
    options: PortfolioOptions | None = None,
    *,
    client: Any = None,
    risk_result: Any = None,
    support: pd.DataFrame | None = None,
    persistence: dict[str, tuple[float, float]] | None = None,
    supply_draws: dict[str, dict[str, np.ndarray]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The full ``critmin portfolio`` record (docs/portfolio.md).

    ``options`` (:class:`critmin.portfolio.options.PortfolioOptions`), or its fields as keywords
    (``budgets=..., draws=..., as_of=...``), are checked before any work starts. ``risk_result`` reuses a risk
    run's draws; ``support``: the register's support actions (public money already counted limits what new money
    can add); ``persistence`` (node -> (in-force share of its loss, annual relaxation probability)): the programme is
    also checked with that loss relaxed over the evaluation period (``selection_with_controls_relaxed``; review 34b K5);
    ``supply_draws`` (node -> participant -> t/yr per draw): the supply in place received draw by draw, in place of
    ``supply_received_t`` (review 35b M3)."""
    if options is None:
        options = make_options(PortfolioOptions, **fields)
    elif fields:
        options = make_options(PortfolioOptions, **{**options.model_dump(), **fields})
    o = options
    as_of = o.as_of or current_month()
    budgets, deadline_months, draws, seed, gap, time_limit = o.budgets, o.deadline_months, o.draws, o.seed, o.gap, o.time_limit
    with_frontier, frontier_points = o.frontier_points > 0, o.frontier_points
    cvar_weight, cvar_alpha, concern_weight = o.cvar_weight, o.cvar_alpha, o.concern_weight
    agencies_file, parameters_file = o.agencies_file, o.parameters_file
    sample = sample_from_simulator(sim, draws=draws, seed=seed, client=client, result=risk_result, stocks_t=dict(o.stocks_t),
                                   supply_received_t={k: dict(v) for k, v in o.supply_received_t.items()},
                                   supply_received_draws=supply_draws)
    ip = InstrumentParameters.load(parameters_file)
    horizon = ip.get("portfolio", "horizon_months")
    agencies = read_agencies(agencies_file)
    country = {str(r["agency_id"]): str(r["participant_iso3"]) for r in agencies.to_dict("records")}
    bp = build_problem(projects, atlas, sample, sim.nodes, agencies, ip, budgets, as_of, deadline_months,
                       support=support)
    p = bp.problem
    p.cvar_weight, p.cvar_alpha, p.bonus_weight = cvar_weight, cvar_alpha, concern_weight
    p.max_country_share, p.max_commodity_share = o.max_country_share, o.max_commodity_share
    p.min_participant_share = dict(o.min_participant_share)
    p.must_include = list(o.must_include)
    sol = solve(p, gap=gap, time_limit=time_limit)
    gr = greedy(p)
    # robustness (review 18): the same programme with every tonne not consumed valued at the output multiple (the
    # input-output convention); a project chosen under both valuations does not rest on how price-driven cuts are valued
    robust: dict[str, Any] = {}
    if sample.value_per_t_io is not None:
        sol_io = solve(dataclasses.replace(p, value_per_t=sample.value_per_t_io, price_value_per_t=sample.price_value_per_t_io),
                       gap=gap, time_limit=time_limit)
        ids = set(sol.selected["project_id"]) if len(sol.selected) else set()
        ids_io = set(sol_io.selected["project_id"]) if len(sol_io.selected) else set()
        robust = {"both": sorted(ids & ids_io), "only_ranked_valuation": sorted(ids - ids_io),
                  "only_input_output": sorted(ids_io - ids), "expected_avoided_usd_input_output": sol_io.expected_avoided_usd}
    def settled(alt: BuiltProblem) -> PortfolioProblem:
        """The alternative problem with the programme's own settings."""
        return dataclasses.replace(alt.problem, cvar_weight=p.cvar_weight, cvar_alpha=p.cvar_alpha, bonus_weight=p.bonus_weight,
                                   max_country_share=p.max_country_share, max_commodity_share=p.max_commodity_share,
                                   min_participant_share=dict(p.min_participant_share), must_include=list(p.must_include))

    # review 34b K4: the same programme with no completion uplift (an assumption with no causal estimate)
    bp0 = build_problem(projects, atlas, sample, sim.nodes, agencies, ip.without_completion_uplift(), budgets, as_of, deadline_months,
                        support=support)
    uplift_check = alternative_programme(sol, settled(bp0), gap, time_limit, "with_uplift", "without_uplift")
    # review 34b K5: and with the loss of the controls in force relaxed at the regime model's rate, not re-imposed
    relaxed_check: dict[str, Any] = {}
    if persistence:
        bp_r = build_problem(projects, atlas, sample, sim.nodes, agencies, ip, budgets, as_of, deadline_months, support=support,
                             persistence=dict(persistence))
        relaxed_check = alternative_programme(sol, settled(bp_r), gap, time_limit, "held", "relaxed")
        nodes_chosen = {str(r["node"]) for r in _selected_records(bp, sol, {})}
        relaxed_check["persistence"] = {k: {"in_force_share": float(a), "relaxation_probability": float(r)}
                                        for k, (a, r) in sorted(persistence.items()) if k in nodes_chosen}
    names = dict(zip(projects["project_id"], projects["name"], strict=True))
    sel = sol.selected.assign(budget_cost_usd=sol.selected.get("budget_cost_usd", sol.selected["cost_usd"])) if len(sol.selected) else sol.selected

    def total(by: str, col: str) -> dict[str, float]:
        return {str(k): float(v) for k, v in sel.groupby(by)[col].sum().items()} if len(sel) else {}

    pot = p.loss_potential()  # with stocks in place: what they leave, and the buy-back of what they cover
    loss_before = {n: float(p.weights @ pot[i]) for i, n in enumerate(p.node_names)}
    risk: list[dict[str, Any]] = [
        {"node": n, "commodity": n.split("/")[0], "stage": n.split("/")[1], "avoidable_loss_usd": loss_before[n],
         "expected_avoided_usd": sol.avoided_by_node.get(n, 0.0),
         "share_avoided": sol.avoided_by_node.get(n, 0.0) / loss_before[n] if loss_before[n] > 0 else 0.0}
        for n in p.node_names if sol.avoided_by_node.get(n, 0.0) > 0 or loss_before[n] > 0
    ]
    risk.sort(key=lambda r: (-float(r["expected_avoided_usd"]), -float(r["avoidable_loss_usd"])))
    finite_budgets = {k: v for k, v in p.budgets.items() if np.isfinite(v)}
    rec: dict[str, Any] = {
        "metadata": {**sample.metadata, "as_of": as_of, "agencies": agencies_file or "bundled", "instrument_parameters": parameters_file or "bundled", "deadline_months": deadline_months, "mip_gap_target": gap,
                     "cvar_weight": cvar_weight, "cvar_alpha": cvar_alpha, "concern_weight": concern_weight,
                     "projects_in_register": int(len(projects)), "options": int(len(p.eligible()))},
        "status": sol.status,
        "gap": sol.gap,
        "seconds": sol.seconds,
        "objective": sol.objective,
        "expected_avoided_usd": sol.expected_avoided_usd,
        "cvar_residual_usd": sol.cvar_residual_usd,
        "greedy_objective": gr.objective,
        "greedy_expected_avoided_usd": gr.expected_avoided_usd,
        "selected": _selected_records(bp, sol, names),
        "greedy_selected": [{"project_id": r["project_id"], "instrument": r["instrument"], "agency": r["agency"], "cost_usd": float(r["cost_usd"])}
                            for r in gr.selected.to_dict("records")],
        "budgets": finite_budgets,
        "unspent": _unspent(bp, sol, finite_budgets, deadline_months, dict(zip(projects["project_id"], projects["status_class"].astype(str), strict=True))),
        "budget_basis": {k: (COST_BASIS_LABEL if bp.budget_basis.get(k) == "cost" else "amount committed") for k in finite_budgets},
        # the country of each budget's agency (the study's agency table), read by the executive answer
        "budget_country": {k: country.get(str(k).split(":")[0], "") for k in finite_budgets},
        "spent": {k: v for k, v in sol.spent.items() if k in finite_budgets},
        # one basis per figure, never added across bases: the credit-reform budget cost (what the support costs
        # the government: a loan's subsidy cost, a grant's full amount) and, apart, the face amount committed
        "money_by_agency": total("agency", "budget_cost_usd"),
        "money_by_instrument": total("instrument", "budget_cost_usd"),
        "face_amount_by_agency": total("agency", "amount_usd"),
        "face_amount_by_instrument": total("instrument", "amount_usd"),
        "risk_reduction": risk,
        "marginal_value_usd_per_usd": marginal_values(p, sol, gap=gap, time_limit=time_limit) if len(p.eligible()) else {},
        "projects": _reasons(bp, sol, deadline_months, names, dict(zip(projects["project_id"], projects["status_class"].astype(str), strict=True)),
                             horizon, dict(zip(projects["project_id"], projects["status"].fillna("").astype(str), strict=True))
                             if "status" in projects.columns else None, _idle_notes(projects)),
        "finance": bp.finance,
        "selection_under_input_output": robust,
        "selection_without_completion_uplift": uplift_check,
        "selection_with_controls_relaxed": relaxed_check,
    }
    if with_frontier:
        rec["frontier"] = frontier(p, points=frontier_points, gap=gap, time_limit=time_limit).to_dict("records")
    return rec
