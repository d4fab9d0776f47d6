"""``critmin portfolio``: build the programme from the register and the simulator, solve it, explain it."""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np
import pandas as pd

from critmin.atlas.model import Atlas
from critmin.portfolio.model import (
    BuiltProblem,
    InstrumentParameters,
    build_problem,
    read_agencies,
    sample_from_simulator,
)
from critmin.portfolio.optimise import Solution, frontier, greedy, marginal_values, solve


def current_month() -> str:
    d = datetime.date.today()
    return f"{d.year:04d}-{d.month:02d}"


def _selected_records(bp: BuiltProblem, sol: Solution, names: dict[str, str]) -> list[dict[str, Any]]:
    p = bp.problem
    sel = sol.selected
    z = np.zeros(p.shortfall.shape[0])
    np.add.at(z, sel["node"].to_numpy(dtype=int), sel["dq_t"].to_numpy(dtype=float))
    out = []
    for r in sel.to_dict("records"):
        n = int(r["node"])
        # attribution: the option's share of the supply added at its node times the node's avoided loss
        node_avoided = sol.avoided_by_node.get(p.node_names[n], 0.0)
        share = r["dq_t"] / z[n] if z[n] > 0 else 0.0
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
            "expected_avoided_usd": float(node_avoided * share),
            "terms": r.get("terms", ""),
            "assumptions": bp.assumptions.get(r["project_id"], []),
        })
    return out


def _reasons(bp: BuiltProblem, sol: Solution, deadline: float | None, names: dict[str, str]) -> list[dict[str, Any]]:
    chosen = dict(zip(sol.selected["project_id"], sol.selected["instrument"] + " from " + sol.selected["agency"], strict=True))
    opts = bp.options_all
    out = []
    for pid in sorted(bp.reasons):
        if pid in chosen:
            out.append({"project_id": pid, "name": names.get(pid, ""), "decision": "selected", "reason": f"funded: {chosen[pid]}"})
            continue
        mine = opts[opts["project_id"] == pid] if len(opts) else opts
        if mine.empty:
            base = bp.reasons[pid] or ["no eligible agency and instrument"]
            no_budget = [r for r in base if "no published budget" in r]
            other = [r for r in base if "no published budget" not in r]
            if no_budget:
                other.append("no published budget for: " + ", ".join(r.split(":")[0] for r in no_budget))
            out.append({"project_id": pid, "name": names.get(pid, ""), "decision": "rejected", "reason": "; ".join(other)})
            continue
        if (mine["dq_t"] <= 0).all():
            why = "adds no capacity over the planning horizon with any instrument (already producing or too late)"
        elif deadline is not None and (mine.loc[mine["dq_t"] > 0, "months_to_output"] > deadline).all():
            why = f"first output after the {deadline:g}-month deadline with every instrument (earliest {mine['months_to_output'].min():.0f} months)"
        else:
            best = mine[mine["dq_t"] > 0].assign(ratio=lambda d: d["dq_t"] / d["cost_usd"].clip(lower=1.0)).sort_values("ratio", ascending=False).iloc[0]
            spent = sol.spent.get(best["budget_key"], 0.0)
            budget = bp.problem.budgets.get(best["budget_key"], np.inf)
            why = (f"not worth its budget at the margin: best option {best['instrument']} from {best['agency']} adds "
                   f"{best['dq_t']:,.1f} t/yr for {best['cost_usd']:,.0f} USD; its budget {best['budget_key']} is "
                   f"{(spent / budget if np.isfinite(budget) and budget > 0 else 0):.0%} used by better options, or its node is already covered")
        out.append({"project_id": pid, "name": names.get(pid, ""), "decision": "rejected", "reason": why})
    return out


def run_portfolio(
    atlas: Atlas,
    sim: Any,
    projects: pd.DataFrame,
    budgets: dict[str, float] | None = None,
    deadline_months: float | None = None,
    draws: int = 500,
    seed: int = 0,
    as_of: str | None = None,
    gap: float = 0.01,
    time_limit: float = 60.0,
    with_frontier: bool = False,
    frontier_points: int = 20,
    cvar_weight: float = 0.0,
    cvar_alpha: float = 0.95,
    concern_weight: float = 0.0,
    max_country_share: float = 1.0,
    max_commodity_share: float = 1.0,
    min_participant_share: dict[str, float] | None = None,
    must_include: list[str] | None = None,
    client: Any = None,
    agencies_file: str | None = None,
    parameters_file: str | None = None,
    risk_result: Any = None,
) -> dict[str, Any]:
    """The full ``critmin portfolio`` record (docs/portfolio.md)."""
    as_of = as_of or current_month()
    sample = sample_from_simulator(sim, draws=draws, seed=seed, client=client, result=risk_result)
    bp = build_problem(projects, atlas, sample, sim.nodes, read_agencies(agencies_file), InstrumentParameters.load(parameters_file), budgets, as_of, deadline_months)
    p = bp.problem
    p.cvar_weight, p.cvar_alpha, p.bonus_weight = cvar_weight, cvar_alpha, concern_weight
    p.max_country_share, p.max_commodity_share = max_country_share, max_commodity_share
    p.min_participant_share = dict(min_participant_share or {})
    p.must_include = list(must_include or [])
    sol = solve(p, gap=gap, time_limit=time_limit)
    gr = greedy(p)
    names = dict(zip(projects["project_id"], projects["name"], strict=True))
    spent_by = sol.selected.groupby("agency")["cost_usd"].sum().to_dict() if len(sol.selected) else {}
    spent_inst = sol.selected.groupby("instrument")["cost_usd"].sum().to_dict() if len(sol.selected) else {}
    loss_before = {n: float(p.weights @ (p.value_per_t[i] * p.shortfall[i])) for i, n in enumerate(p.node_names)}
    risk: list[dict[str, Any]] = [
        {"node": n, "commodity": n.split("/")[0], "stage": n.split("/")[1], "expected_loss_usd": loss_before[n],
         "expected_avoided_usd": sol.avoided_by_node.get(n, 0.0),
         "share_avoided": sol.avoided_by_node.get(n, 0.0) / loss_before[n] if loss_before[n] > 0 else 0.0}
        for n in p.node_names if sol.avoided_by_node.get(n, 0.0) > 0 or loss_before[n] > 0
    ]
    risk.sort(key=lambda r: (-float(r["expected_avoided_usd"]), -float(r["expected_loss_usd"])))
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
        "budget_basis": {k: ("budget cost (credit subsidy)" if bp.budget_basis.get(k) == "cost" else "amount committed") for k in finite_budgets},
        "spent": {k: v for k, v in sol.spent.items() if k in finite_budgets},
        "money_by_agency": {str(k): float(v) for k, v in spent_by.items()},
        "money_by_instrument": {str(k): float(v) for k, v in spent_inst.items()},
        "risk_reduction": risk,
        "marginal_value_usd_per_usd": marginal_values(p, sol, gap=gap, time_limit=time_limit) if len(p.eligible()) else {},
        "projects": _reasons(bp, sol, deadline_months, names),
        "finance": bp.finance,
    }
    if with_frontier:
        rec["frontier"] = frontier(p, points=frontier_points, gap=gap, time_limit=time_limit).to_dict("records")
    return rec
