"""The coordinated plan's record: priority minerals, vulnerabilities, scenario risks, portfolio, stockpiles,
deliveries and matches, with the sources, parameters and seed (``plan.json``; docs/plan.md).

:meth:`critmin.Study.plan` runs the steps, each through the Study's own method, so the cycle is orchestrated
in one place; this module assembles their results (:func:`assemble_plan`) and gives the workbook's tables
(:func:`frames`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from critmin.atlas.lists import us_listed_elements_in

#: The steps :meth:`critmin.Study.plan` reports through ``step``, in order.
CYCLE_STEPS = ("priority minerals", "vulnerabilities by stage", "scenario risks", "portfolio", "stockpiles", "deliveries and matches",
               "back-test")

#: Keys of plan.json other tools rely on (issue 5).
PLAN_KEYS = ("priority_minerals", "vulnerabilities", "scenarios", "portfolio", "stockpiles", "deliveries", "matches", "sources", "summary")


def vulnerabilities(atlas: Any, priority: pd.DataFrame, top: int = 25) -> list[dict[str, Any]]:
    """Stage by stage metrics (country shares, concentration, concern share) of the ``top`` priority minerals."""
    from critmin.assess.supply import stage_metrics

    sm = stage_metrics(atlas)
    keep = set(priority.head(top)["commodity"])
    return list(sm[sm["commodity_id"].isin(keep)].to_dict("records"))


def validation_record(sim: Any, draws: int, seed: int) -> dict[str, Any]:
    """The back-test's summary and observations for the plan's appendix (at most 200 draws)."""
    from critmin.simulate.backtest import run_backtest

    bt = run_backtest(sim, draws=min(draws, 200), seed=seed)
    return {
        "summary": bt.summary,
        "observations": bt.table.to_dict("records"),
        "method": "docs/validation.md: real events run on their historical baselines; simulated vs observed price ratios "
                  "(targeted market and the restrictor's own); parameters calibrated on the calibration cases, scored on the holdout",
    }


def suspended_until(events: pd.DataFrame) -> dict[str, str]:
    """Per suspended event, the date its suspension ends (``... until YYYY-MM-DD`` in its status), from the atlas's
    events table."""
    out: dict[str, str] = {}
    for r in events.to_dict("records") if len(events) else []:
        m = re.search(r"until (\d{4}-\d{2}-\d{2})", str(r.get("status", "")))
        if m and str(r.get("status_class", "")) == "suspended":
            out[str(r["event_id"])] = m.group(1)
    return out


def suspended_not_simulated(events: pd.DataFrame, simulated: set[str]) -> list[dict[str, str]]:
    """Suspended events with no scenario row in the library (review 33 F2: China's October 2025 extraterritorial
    rare-earth rule, E022, suspended as E023 was, had no scenario and the answer did not name it): id, end of the
    suspension, commodities, forms and measure, so the answer can say what would change if it returned."""
    until = suspended_until(events)
    out = []
    for r in events.to_dict("records") if len(events) else []:
        e = str(r["event_id"])
        if e in until and e not in simulated:
            out.append({"event_id": e, "until": until[e], "commodities": str(r.get("commodities") or ""),
                        "forms": str(r.get("stages_forms") or ""), "measure": str(r.get("measure") or "")})
    return out


def in_force_not_simulated(events: pd.DataFrame, simulated: set[str], participants: tuple[str, ...] = ("USA", "JPN")) -> list[dict[str, str]]:
    """Measures in force aimed at a participant with no scenario row in the library (review 34 H9: China's 2026 dual-use
    ban on Japanese military users, E031, and its listing of 20 Japanese entities, E032, were not named): id,
    commodities, measure and targets. They feed the regime model's transition rates only (docs/simulation.md §10)."""
    out = []
    for r in events.to_dict("records") if len(events) else []:
        e, targets = str(r["event_id"]), str(r.get("targets") or "")
        if (str(r.get("status_class") or "") == "in_force" and e not in simulated
                and any(re.match(rf"{j}\b", t.strip()) for t in targets.split(";") for j in participants)):
            out.append({"event_id": e, "commodities": str(r.get("commodities") or ""), "measure": str(r.get("measure") or ""),
                        "targets": targets})
    return out


def assemble_plan(atlas: Any, *, priority: list[dict[str, Any]], vulnerabilities: list[dict[str, Any]], scenarios: list[dict[str, Any]],
                  risk_metadata: Mapping[str, Any], portfolio: dict[str, Any], stockpiles: dict[str, Any], deliveries: dict[str, Any],
                  matches: dict[str, Any], validation: dict[str, Any], buyers: pd.DataFrame, critical_lists: dict[str, set[str]],
                  draws: int, seed: int, as_of: str, delivery_months: int,
                  chokepoints: dict[str, dict[str, Any]] | None = None,
                  participant_scenarios: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The coordinated plan's record (``plan.json``) from the results of each step, with its metadata, the
    sources the vulnerabilities cite, the parameter files and the executive answer under ``summary``.
    :meth:`critmin.Study.plan` runs the steps (the one place the cycle is orchestrated) and calls this.
    ``chokepoints``: commodity -> the assessment's chokepoint stage, top country and share, for the ranked
    commodities outside the ``priority`` list (the executive answer's table names every ranked material's).
    ``participant_scenarios``: each participant's own ranking (``participant_risk`` in plan.json; review 26: the
    answer referred to rankings the plan did not hold)."""
    from critmin.report.summary import build_summary
    from critmin.version import __version__

    used: set[str] = set()
    for r in vulnerabilities:
        used |= set(str(r["source_ids"]).split(";"))
    src = atlas.sources
    sources = src[src["source_id"].isin(used) | src["source_id"].str.startswith("event_")].to_dict("records")
    plan: dict[str, Any] = {
        "metadata": {"critmin_version": __version__, "data_version": atlas.data_version, "seed": seed, "draws": draws, "as_of": as_of,
                     "delivery_months": delivery_months, "critical_lists": {j: sorted(v) for j, v in critical_lists.items()},
                     # listed minerals the ranking cannot value on their own (review 21): listed commodities without a
                     # ranking row, and U.S.-listed elements counted inside the rare-earth remainder
                     "not_ranked": {"listed_without_row": {j: sorted(set(v) - {str(r["commodity"]) for r in scenarios})
                                                           for j, v in critical_lists.items()},
                                    "us_listed_elements_in_rare_earths": us_listed_elements_in("rare_earths")},
                     "chokepoints": dict(chokepoints or {}),
                     # review 24: the answer compares a suspension's end with the plan's date
                     "suspended_until": suspended_until(atlas.events),
                     # the names of the restricting countries the answer's sentences give (the atlas's country table)
                     "country_names": {iso: atlas.country_name(iso) for iso in sorted(
                         {c for r in scenarios for t in r.get("top_scenarios") or [] for c in str(t.get("restrictors") or "").split(";") if c})},
                     "suspended_not_simulated": suspended_not_simulated(atlas.events, set(atlas.event_scenarios["event_id"].astype(str))),
                     "in_force_not_simulated": in_force_not_simulated(atlas.events, set(atlas.event_scenarios["event_id"].astype(str))),
                     "perspective": "BLOC", "participants": sorted(atlas.participants), "blocs": atlas.bloc_members(),
                     "parameters": risk_metadata.get("parameters"),
                     "parameters_sha256": risk_metadata.get("parameters_sha256"), "data_files": risk_metadata.get("data_files")},
        "priority_minerals": priority,
        "vulnerabilities": vulnerabilities,
        "scenarios": scenarios,
        "participant_risk": dict(participant_scenarios or {}),
        "portfolio": portfolio,
        "stockpiles": stockpiles,
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


def _supply_frame(plan: dict[str, Any]) -> pd.DataFrame:
    """The projects that supply the delivery plan: their output in the window on the ramp-up, what they deliver,
    and how the ramp was read (review 8: the ramp was visible in plan.json only)."""
    cols = ["project_id", "name", "output_in_window_t", "delivered_t", "share_of_nameplate_first_month", "share_of_nameplate_last_month",
            "ramp_basis"]
    rows = pd.DataFrame(plan["deliveries"].get("projects", []))
    if rows.empty:
        return pd.DataFrame(columns=cols)
    return rows.rename(columns={"capacity_t": "output_in_window_t"}).reindex(columns=cols)


def _risk_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A ranking's rows as a table: its driving scenarios and flags as text."""
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    return df.assign(top_scenarios=lambda d: d["top_scenarios"].map(lambda t: "; ".join(x["scenario"] for x in t)),
                     flags=lambda d: d["flags"].map("; ".join))


def frames(plan: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """One table per part of the plan (for the workbook); each participant's own ranking as ``scenarios_<ISO3>``."""
    pf = plan["portfolio"]
    return {
        "priority_minerals": pd.DataFrame(plan["priority_minerals"]).drop(columns=["stages", "flags"], errors="ignore"),
        "vulnerabilities": pd.DataFrame(plan["vulnerabilities"]),
        "scenarios": _risk_frame(plan["scenarios"]),
        **{f"scenarios_{j}": _risk_frame(rows) for j, rows in (plan.get("participant_risk") or {}).items()},
        "portfolio": pd.DataFrame(pf["selected"]).drop(columns=["assumptions"], errors="ignore"),
        "portfolio_projects": pd.DataFrame(pf["projects"]),
        "budgets": pd.DataFrame([{"budget": k, "budget_usd": v, "spent_usd": pf["spent"].get(k, 0.0)} for k, v in pf["budgets"].items()]),
        "stockpiles": pd.DataFrame(plan["stockpiles"]["stockpiles"]).drop(columns=["rules", "release_rule", "flags", "separate_stock_t", "separate_cost_usd",
                                                                                   "cost_share", "pooled_cost_by_member_usd"], errors="ignore"),
        "deliveries": pd.DataFrame(plan["deliveries"]["buyers"]),
        "allocation": pd.DataFrame(plan["deliveries"]["allocation"]),
        "supply": _supply_frame(plan),
        "matches": pd.DataFrame(plan["matches"]["matches"]),
        "validation": pd.DataFrame(plan.get("validation", {}).get("observations", [])),
        "sources": pd.DataFrame(plan["sources"]["atlas"]),
    }
