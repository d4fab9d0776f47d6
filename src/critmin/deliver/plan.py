"""``critmin deliver``: monthly allocation of allied projects' output to registered buyers (docs/deliver.md).

Supply: every project of the register outside the countries of concern with a capacity on its node's basis,
producing in month t when it is operating or commissioning, or when its first-output date (plus the status
class's typical delay) has passed; a project chosen by the portfolio may be given an earlier first month.
Monthly output is ``capacity_t / 12 · r(m)``, ramping up from first output (``r(m) = min(1, m / (12 Y))``, m the
month of output, Y the years to design: :func:`critmin.portfolio.finance.ramp_share`, fitted on plants' quarterly
output; a plant producing now counts the months since its dated first output; one without a date is at nameplate;
a producing plant whose output is reported, ``output_t``, is held at that run-rate (even above a stale capacity); one with
neither a date nor a reported output at ``utilisation_without_reported_output`` of nameplate). Demand: buyers with a published or computed annual demand (/ 12 per month)
within their start/end window. Eligibility: the node and form rule of ``critmin.deliver.forms`` (same node, or an
element node for its aggregate's buyer; forms that agree); the buyer's origin rule; a buyer with a contract
(``contract_projects``) is supplied only by the projects of its contract; never a buyer in a country of
concern (rejected by the register). A plant producing before the plan (``supply`` "existing") delivers only to
buyers whose contract names it: its output is trade the buyers already have, sold on terms the plan does not see
(review 26: Lynas' whole Dy/Tb output went to Japan's aggregate buyer although JARE holds a right to at most 65 % of
it, and Silmet's rare earths to Japan with no Japanese contract on record); what it does not deliver under a
recorded contract is reported as existing supply not allocated by the plan. A project contracted to a buyer who
publishes no volume is reserved for its contract holders in the same way (review 27: MP's Independence magnets,
contracted to GM and Apple, went to Japan's aggregate buyer).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from critmin._dates import month_offset, sponsor_offset
from critmin.atlas.model import Atlas
from critmin.deliver.buyers import contract_of
from critmin.deliver.forms import serve_conflict
from critmin.deliver.options import MAX_MONTHS, DeliveryOptions  # noqa: F401  (MAX_MONTHS re-exported)
from critmin.deliver.transport import solve_transport


def _origin_ok(rule: str, origin: str, atlas: Atlas) -> bool:
    if rule == "any":
        return True
    if rule == "no_concern":
        return origin not in atlas.concern
    if rule == "allied":
        return origin in atlas.allied
    return origin in {c.strip() for c in rule.split(";")}


def delivery_plan(atlas: Atlas, projects: pd.DataFrame, buyers: pd.DataFrame, months: int = 6, as_of: str | None = None,
                  first_month: dict[str, int] | None = None, market_share: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """The delivery programme over ``months`` months from ``as_of`` (see module docstring).

    ``market_share`` (node -> ISO3 -> share): the share of a tonne added at the node outside its dominant supplier
    that reaches the country's buyers (:meth:`critmin.simulate.run.Simulator.share_of_added_supply`, the rule of the
    stocks and the portfolio). An aggregate buyer (``kind`` aggregate: a country's whole industry) takes at most that
    share of a new project's output unless its contract names the project; the rest is sold to the other buyers outside
    the restrictor (review 33 F5: Port Pirie's new antimony went 100 % to the bloc, which the stocks credit with 37 %)."""
    from critmin._dates import month_or_now
    from critmin.inputs import make_options
    from critmin.portfolio.finance import ramp_share
    from critmin.portfolio.model import (
        InstrumentParameters,
        months_before_output,
        reported_output_t,
        years_to_design,
    )

    make_options(DeliveryOptions, months=months, as_of=as_of)  # checked before any work
    as_of = month_or_now(as_of)

    ip = InstrumentParameters.load()
    unreported = ip.get("project", "utilisation_without_reported_output")
    concern = atlas.concern
    sup = projects[projects["capacity_t"].notna() & (projects["capacity_t"] > 0) & ~projects["country_iso3"].isin(list(concern))].copy()
    reasons: list[dict[str, Any]] = []
    cap_rows, pids = [], []
    ramps: dict[str, dict[str, Any]] = {}
    for p in sup.to_dict("records"):
        status = str(p["status_class"])
        # the portfolio's rule (months_before_output): operating and commissioning projects deliver now, others
        # from their dated first output plus the typical delay, or after their status class's lead time
        start: int | None = 0 if status in ("operating", "commissioning") else int(round(months_before_output(p, status, as_of, ip, [])))
        if first_month and p["project_id"] in first_month:
            start = first_month[p["project_id"]]
        if start is None or start >= months:
            reasons.append({"project_id": p["project_id"], "reason": f"no output within the horizon (first output in about {start} months)"})
            continue
        # output ramps up from first output (finance.ramp_share); a plant producing now has the months since its
        # dated first output behind it; one without a date or a report runs at the register's median reported rate
        y, y_basis = years_to_design(p, ip)
        # review 36 (the stocks' rule since review 35b M4): a year-only date in the plan's own year has not passed, so no
        # months of output are behind the plant (Port Pirie's "2026" gave it five)
        since = sponsor_offset(as_of, str(p.get("first_output") or "")) if start == 0 else None
        reported = reported_output_t(p) if start == 0 else None
        if reported is not None:
            # a producing plant with a reported output is held at that run-rate, not at its ramp: the evidence of what
            # it makes (review 8: Lynas' LAMP planned at 10,500 t of NdPr against 6,814 t reported; Vidalia at 78-89 %
            # of nameplate while it made test material only); a report above the register's capacity (a capacity read
            # off one early quarter, Lynas' Dy/Tb circuit: 30 t against 58 t reported) wins too (review 9)
            rate = reported / float(p["capacity_t"])
            share = np.full(months, rate)
            age = month_offset(str(p.get("output_period") or ""), as_of) if p.get("output_period") else None
            basis = (f"reported output {reported:,.0f} t a year"
                     + (f" (period to {p.get('output_period')}, {age} months before the plan)" if age is not None else "")
                     + f" held flat: {rate:.0%} of nameplate" + (" (above the register's capacity, which the report supersedes)" if rate > 1 else ""))
        elif start > 0:
            share = ramp_share(np.arange(months) - start + 1.0, y)
            basis = f"first output in month {start + 1}; {y_basis}"
        elif since is not None and since <= 0:  # months of output already behind it
            share = ramp_share(np.arange(months) + 1.0 - since, y)
            basis = f"{-since} months of output since {p.get('first_output')}; {y_basis}"
        elif status == "commissioning":
            share = ramp_share(np.arange(months) + 1.0, y)
            basis = f"commissioning: first month of output now; {y_basis}"
        else:
            share = np.full(months, unreported)
            basis = (f"operating, neither an output nor a first-output date published: {unreported:.0%} of nameplate, the median "
                     "reported run-rate of the register's producing plants (utilisation_without_reported_output)")
        cap_rows.append(p["capacity_t"] / 12.0 * share)
        pids.append(str(p["project_id"]))
        # review 21: Japan's NdPr "covered 100 %" was Lynas' existing trade; a plant operating before the plan is
        # supply the buyers already have, not new supply (a commissioning plant or a first output ahead is new)
        kind = "existing" if start == 0 and status == "operating" and not (first_month and p["project_id"] in first_month) else "new"
        ramps[str(p["project_id"])] = {"share_first_month": float(share[min(start, months - 1)]), "share_last_month": float(share[-1]), "basis": basis,
                                       "supply": kind}
    sup = sup.set_index("project_id").loc[pids] if pids else sup.iloc[0:0]
    dem_rows, bids, prio, mins = [], [], [], []
    skipped = []
    open_volume: dict[str, str] = {}
    for b in buyers.to_dict("records"):
        s0 = month_offset(as_of, b.get("start")) or 0
        e0 = month_offset(as_of, b.get("end"))
        window = np.array([1.0 if (t >= s0 and (e0 is None or t <= e0)) else 0.0 for t in range(months)])
        if b["demand_t_per_year"] is None or pd.isna(b["demand_t_per_year"]):
            # review 33b G4: a contract without a published volume takes the new output of the plants it names (the
            # stock plan's rule: such a holder takes what the others leave); before, that output was reserved for it
            # and delivered to nobody (e-VAC's and MP's new magnets to GM). A plant producing before the plan is
            # trade the buyer already has (Sojitz and Lynas), not planned here
            share = b.get("contract_share")
            by_share = share is not None and not pd.isna(share)
            # review 36: a contract for a share of a plant's output is a stated quantity, so it is planned from a plant
            # producing before the plan too (JARE's 65 % of Lynas' Dy/Tb circuit, producing since May 2025)
            named = [i for i, pid in enumerate(pids) if pid in contract_of(b) and (by_share or ramps[pid]["supply"] == "new")]
            if not named:
                skipped.append({"buyer_id": b["buyer_id"], "reason": "no published demand volume" if not by_share else
                                "a share of output of plants that produce nothing in the window"})
                continue
            if by_share:
                # review 35 L5: a contract for a share of the plants' output (JARE: up to 65 % of Lynas' Dy/Tb)
                dem = float(share) * np.sum([cap_rows[i] for i in named], axis=0) * window
                open_volume[str(b["buyer_id"])] = (f"volume not published: {float(share):.0%} of the output of the plants its "
                                                   "contract names (" + ", ".join(pids[i] for i in named) + ")")
            else:
                dem = np.sum([cap_rows[i] for i in named], axis=0) * window
                open_volume[str(b["buyer_id"])] = ("volume not published: takes the new output of the plants its contract names ("
                                                   + ", ".join(pids[i] for i in named) + "), shared with any other such holder")
        else:
            dem = b["demand_t_per_year"] / 12.0 * window
        dem_rows.append(dem)
        bids.append(str(b["buyer_id"]))
        prio.append(int(b["priority"]))
        mins.append(float(b["min_contract_t"]) if b["min_contract_t"] is not None and not pd.isna(b["min_contract_t"]) else 0.0)
    bt = buyers.set_index("buyer_id").loc[bids] if bids else buyers.iloc[0:0]
    # review 27: a project contracted to a buyer who publishes no volume (MP's Independence plant to GM and Apple) has
    # its output reserved for its contract holders; the plan cannot give it to other buyers
    # (a contract for a share of the output leaves the rest to the other buyers)
    reserved = {pid for b in buyers.to_dict("records") if (b.get("demand_t_per_year") is None or pd.isna(b.get("demand_t_per_year")))
                and (b.get("contract_share") is None or pd.isna(b.get("contract_share"))) for pid in contract_of(b)}
    P, B = len(pids), len(bids)
    elig = np.zeros((P, B), dtype=bool)
    for i, pid in enumerate(pids):
        pr = sup.loc[pid]
        for k, bid in enumerate(bids):
            br = bt.loc[bid]
            contract = contract_of(br)
            # the matching's rule (critmin.deliver.forms): same node or an element for its aggregate, forms that
            # agree (a Dy/Tb oxide buyer is not delivered NdPr), the origin rule and the contract
            # a plant producing before the plan serves only the contracts that name it (module docstring)
            existing = ramps[pid]["supply"] == "existing"
            elig[i, k] = (serve_conflict(pr, br, f"{pr.get('product') or ''} {pr['name']}", f"{br.get('form') or ''} {br['name']}") is None
                          and _origin_ok(str(br["origin_rule"]), str(pr["country_iso3"]), atlas)
                          and (pid in contract if existing or pid in reserved else (not contract or pid in contract)))
    capacity = np.array(cap_rows) if cap_rows else np.zeros((0, months))
    demand = np.array(dem_rows) if dem_rows else np.zeros((0, months))
    pair_share = np.full((P, B), np.nan)
    if market_share:
        for i, pid in enumerate(pids):
            if ramps[pid]["supply"] != "new":
                continue
            node = f"{sup.loc[pid, 'commodity_id']}/{sup.loc[pid, 'stage']}"
            for k, bid in enumerate(bids):
                br = bt.loc[bid]
                m_share = (market_share.get(node) or {}).get(str(br["country_iso3"]))
                if elig[i, k] and str(br.get("kind") or "") == "aggregate" and m_share is not None and pid not in contract_of(br):
                    pair_share[i, k] = m_share
    # review 35 L5: a contract for a share of a plant's output holds that share against every other buyer
    reserve, holder = np.zeros(P), np.zeros((P, B), dtype=bool)
    for k, bid in enumerate(bids):
        share = bt.loc[bid].get("contract_share")
        if share is None or pd.isna(share):
            continue
        in_contract = contract_of(bt.loc[bid])
        for i, pid in enumerate(pids):
            if pid in in_contract:
                reserve[i] += float(share)
                holder[i, k] = True
    res = solve_transport(capacity, demand, elig, np.array(prio), np.array(mins), pids, bids, pair_share, reserve, holder)
    names_b = dict(zip(buyers["buyer_id"], buyers["name"], strict=True))
    names_p = dict(zip(projects["project_id"], projects["name"], strict=True))
    node_p = {str(k): f"{c}/{st}" for k, c, st in zip(projects["project_id"], projects["commodity_id"], projects["stage"], strict=True)}
    buyers_out = res.buyers.assign(name=res.buyers["buyer_id"].map(names_b),
                                   node=[f"{bt.loc[b, 'commodity_id']}/{bt.loc[b, 'stage']}" for b in res.buyers["buyer_id"]],
                                   country_iso3=[str(bt.loc[b, "country_iso3"]) for b in res.buyers["buyer_id"]],
                                   volume_basis=[open_volume.get(str(b), "published") for b in res.buyers["buyer_id"]])
    # totals by receiving country and node (tonnes are never added across nodes)
    totals = (buyers_out.groupby(["country_iso3", "node"])["delivered_t"].sum().reset_index()
              .rename(columns={"country_iso3": "receiving_country", "delivered_t": "tonnes"}) if len(buyers_out) else pd.DataFrame())
    totals = totals[totals["tonnes"] > 0] if len(totals) else totals
    supply_of = {k: v["supply"] for k, v in ramps.items()}
    alloc = res.allocation.assign(supply=res.allocation["project_id"].astype(str).map(supply_of))
    if len(totals):
        new_t = (alloc[alloc["supply"] == "new"].assign(
            receiving_country=alloc["buyer_id"].map(lambda b: str(bt.loc[b, "country_iso3"])),
            node=alloc["buyer_id"].map(lambda b: f"{bt.loc[b, 'commodity_id']}/{bt.loc[b, 'stage']}"))
                 .groupby(["receiving_country", "node"])["tonnes"].sum())
        totals = totals.assign(tonnes_from_new_supply=[float(new_t.get((c, n), 0.0)) for c, n in zip(totals["receiving_country"], totals["node"], strict=True)])
    return {
        "metadata": {"as_of": as_of, "months": months, "projects_supplying": P, "buyers_planned": B, "status": res.status},
        "allocation": alloc.assign(project=alloc["project_id"].map(names_p), buyer=alloc["buyer_id"].map(names_b),
                                   project_node=alloc["project_id"].astype(str).map(node_p)).to_dict("records"),
        "buyers": buyers_out.to_dict("records"),
        "totals": totals.to_dict("records"),
        "projects": res.projects.assign(
            name=res.projects["project_id"].map(names_p), node=res.projects["project_id"].astype(str).map(node_p),
            share_of_nameplate_first_month=res.projects["project_id"].map(lambda k: ramps.get(str(k), {}).get("share_first_month")),
            share_of_nameplate_last_month=res.projects["project_id"].map(lambda k: ramps.get(str(k), {}).get("share_last_month")),
            ramp_basis=res.projects["project_id"].map(lambda k: ramps.get(str(k), {}).get("basis")),
            supply=res.projects["project_id"].map(lambda k: ramps.get(str(k), {}).get("supply"))).to_dict("records"),
        "not_supplying": reasons,
        "buyers_not_planned": skipped,
    }
