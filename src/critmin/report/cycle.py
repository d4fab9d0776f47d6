"""The whole cycle on one atlas: priority minerals, vulnerabilities, scenario risks, portfolio, stockpiles,
deliveries and matches, with the sources, parameters and seed (``plan.json``; docs/plan.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

#: The steps run_cycle reports through ``step``, in order.
CYCLE_STEPS = ("priority minerals", "vulnerabilities by stage", "scenario risks", "portfolio", "stockpiles", "deliveries and matches",
               "back-test")

#: Keys of plan.json other tools rely on (issue 5).
PLAN_KEYS = ("priority_minerals", "vulnerabilities", "scenarios", "portfolio", "stockpiles", "deliveries", "matches", "sources", "summary")


def run_cycle(atlas: Any, sim: Any, draws: int = 500, seed: int = 0, as_of: str | None = None, top: int = 25,
              step: Callable[[str], None] | None = None, projects: pd.DataFrame | None = None, buyers: pd.DataFrame | None = None,
              supply: pd.DataFrame | None = None, first_month: dict[str, int] | None = None, budgets: dict[str, float] | None = None,
              delivery_months: int = 6, critical_lists: dict[str, set[str]] | None = None,
              stock_policy: dict[str, Any] | None = None, support: pd.DataFrame | None = None, risk_result: Any = None) -> dict[str, Any]:
    """Every part of the coordinated plan for the BLOC of participants (see module docstring).

    ``projects`` (the register's projects), ``buyers`` (the needs) and ``supply`` (projects and offers that
    can deliver) default to the bundled registers; the web workspace passes what the user may read.
    ``first_month`` gives supply rows a known first month of delivery (the workspace's offers); the
    recommended portfolio's projects deliver from their own first month. ``budgets`` add to or replace the
    agencies' budgets; ``critical_lists`` (participant -> commodity ids; default: the bundled lists) and
    ``stock_policy`` (``budget_usd``, ``max_days``, ``stages``, ``pooled``; default: :class:`critmin.stockpile.policy.StockpilePolicy`)
    make the stocks policy. ``risk_result`` reuses a :func:`critmin.simulate.risk.risk_run` of the same draws and
    seed (``critmin.Study`` keeps one). The executive answer is under ``summary``."""
    from critmin._dates import month_or_now
    from critmin.assess import assess
    from critmin.assess.supply import stage_metrics
    from critmin.atlas.lists import critical_lists as bundled_lists
    from critmin.deliver.buyers import bundled_buyers
    from critmin.deliver.match import match
    from critmin.deliver.plan import delivery_plan
    from critmin.portfolio.plan import run_portfolio
    from critmin.portfolio.register import bundled_register
    from critmin.report.summary import build_summary
    from critmin.simulate.backtest import run_backtest
    from critmin.simulate.risk import risk_ranking
    from critmin.stockpile.plan import disruption_sample, plan_stockpiles
    from critmin.stockpile.policy import StockpilePolicy
    from critmin.version import __version__

    as_of = month_or_now(as_of)

    def say(msg: str) -> None:
        if step:
            step(msg)

    say(CYCLE_STEPS[0])
    pm = assess(atlas, "BLOC", "critmin")
    priority = pm.head(top).to_dict("records")
    say(CYCLE_STEPS[1])
    sm = stage_metrics(atlas)
    keep = set(pm.head(top)["commodity"])
    vuln = sm[sm["commodity_id"].isin(keep)].to_dict("records")
    say(CYCLE_STEPS[2])
    risk, res = risk_ranking(sim, "BLOC", draws=draws, seed=seed, result=risk_result)
    say(CYCLE_STEPS[3])
    if projects is None:
        reg = bundled_register(atlas)
        projects, support = reg.projects, reg.support if support is None else support
    supply = projects if supply is None else supply
    portfolio = run_portfolio(atlas, sim, projects, budgets=budgets, draws=draws, seed=seed, as_of=as_of, risk_result=res, support=support)
    say(CYCLE_STEPS[4])
    sample = disruption_sample(sim, draws, seed, result=res)
    policy = StockpilePolicy.model_validate(stock_policy or {})
    lists = critical_lists if critical_lists is not None else bundled_lists()
    stock = plan_stockpiles(sim, "BLOC", budget=policy.budget_usd, pooled=policy.pooled, draws=draws, seed=seed, sample=sample,
                            commodities=lists, stages=tuple(policy.stages), max_days=policy.max_days,
                            sourced_demand_only=policy.sourced_demand_only)
    say(CYCLE_STEPS[5])
    if buyers is None:
        buyers = bundled_buyers(atlas)
    # the recommended portfolio's projects deliver from their (earlier) first month of output
    first = {**(first_month or {}), **{s["project_id"]: int(round(s["months_to_output"])) for s in portfolio["selected"]}}
    deliveries = delivery_plan(atlas, supply, buyers, delivery_months, as_of, first_month=first)
    matches = match(atlas, supply, buyers, as_of)
    say(CYCLE_STEPS[6])
    bt = run_backtest(sim, draws=min(draws, 200), seed=seed)
    validation = {
        "summary": bt.summary,
        "observations": bt.table.to_dict("records"),
        "method": "docs/validation.md: real events run on their historical baselines; simulated vs observed price ratios "
                  "(targeted market and the restrictor's own); parameters calibrated on the calibration cases, scored on the holdout",
    }
    used = set()
    for r in vuln:
        used |= set(str(r["source_ids"]).split(";"))
    src = atlas.sources
    sources = src[src["source_id"].isin(used) | src["source_id"].str.startswith("event_")].to_dict("records")
    plan: dict[str, Any] = {
        "metadata": {"critmin_version": __version__, "data_version": atlas.data_version, "seed": seed, "draws": draws, "as_of": as_of,
                     "delivery_months": delivery_months, "critical_lists": {j: sorted(v) for j, v in lists.items()},
                     "perspective": "BLOC", "participants": sorted(atlas.participants), "blocs": atlas.bloc_members(),
                     "parameters": res.metadata.get("parameters"),
                     "parameters_sha256": res.metadata.get("parameters_sha256"), "data_files": res.metadata.get("data_files")},
        "priority_minerals": priority,
        "vulnerabilities": vuln,
        "scenarios": risk.to_dict("records"),
        "portfolio": portfolio,
        "stockpiles": stock,
        "deliveries": deliveries,
        "matches": matches,
        "validation": validation,
        "sources": {
            "atlas": sources,
            "parameter_files": ["critmin/simulate/data/parameters.csv (PARAMETERS.md)", "critmin/portfolio/data/agencies.csv, instrument_parameters.csv (DEFAULTS.md)",
                                "critmin/stockpile/data/stockpile_parameters.csv (STOCKPILE.md)", "critmin/deliver/data/buyers.csv (BUYERS.md)",
                                "critmin/portfolio/data/projects.csv, support.csv (REGISTER.md)"],
            "raw_provenance": "data/raw/PROVENANCE.md",
        },
    }
    plan["summary"] = build_summary(plan, buyers)
    return plan


def frames(plan: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """One table per part of the plan (for the workbook)."""
    pf = plan["portfolio"]
    return {
        "priority_minerals": pd.DataFrame(plan["priority_minerals"]).drop(columns=["stages", "flags"], errors="ignore"),
        "vulnerabilities": pd.DataFrame(plan["vulnerabilities"]),
        "scenarios": pd.DataFrame(plan["scenarios"]).assign(top_scenarios=lambda d: d["top_scenarios"].map(
            lambda t: "; ".join(x["scenario"] for x in t)), flags=lambda d: d["flags"].map("; ".join)),
        "portfolio": pd.DataFrame(pf["selected"]).drop(columns=["assumptions"], errors="ignore"),
        "portfolio_projects": pd.DataFrame(pf["projects"]),
        "budgets": pd.DataFrame([{"budget": k, "budget_usd": v, "spent_usd": pf["spent"].get(k, 0.0)} for k, v in pf["budgets"].items()]),
        "stockpiles": pd.DataFrame(plan["stockpiles"]["stockpiles"]).drop(columns=["rules", "release_rule", "flags", "separate_stock_t", "separate_cost_usd",
                                                                                   "cost_share", "pooled_cost_by_member_usd"], errors="ignore"),
        "deliveries": pd.DataFrame(plan["deliveries"]["buyers"]),
        "allocation": pd.DataFrame(plan["deliveries"]["allocation"]),
        "matches": pd.DataFrame(plan["matches"]["matches"]),
        "validation": pd.DataFrame(plan.get("validation", {}).get("observations", [])),
        "sources": pd.DataFrame(plan["sources"]["atlas"]),
    }
