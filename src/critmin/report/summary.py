"""The executive answer: the plan's first page in plain sentences and one table each (plan.json["summary"]).

Built only from the plan's own parts, so it can never disagree with them: the risk ranking (consumer loss,
BLOC), the portfolio (face amount and budget cost kept apart), the stocks (t, USD, days of consumption), the
six-month deliveries by receiving country and commodity (tonnes never added across commodities), the buyers
left short, and what would change the recommendation.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from critmin._text import usd
from critmin.deliver.buyers import contract_of
from critmin.deliver.forms import AGGREGATE_OF, form_tags
from critmin.portfolio.model import CAPEX_INSTRUMENTS, NO_DATE_NOTE, PENDING_NOTE
from critmin.portfolio.plan import COST_BASIS_LABEL
from critmin.stockpile.plan import FEW_DRAWS, read_holdings


def _nodes(items: list[Any], kind: str = "") -> str:
    """'1 node is' or '3 listed nodes are': the subject of a count sentence, in the right number."""
    n = len(items)
    return f"{n} {kind}node is" if n == 1 else f"{n} {kind}nodes are"


#: A top commodity's loss resting at least this share on proxies, stale figures or assumptions is named in the caveats.
PROXY_SHARE_STATED = 0.25


def _dearer_since_baseline(plan: dict[str, Any], nodes: dict[str, float]) -> list[str]:
    """For stocked nodes (with the price ratio each is bought at), the observed price rise outside China after a
    control of September 2024 or later (events from E014 on, after the 2024 baseline year; the back-test's targeted
    observations in the plan: 'antimony/mine x2.8 at its 12-month peak (E014.antimony)'), largest first; rises under
    1.5x, or not above the price the stock is bought at, are left out."""
    out = []
    for o in (plan.get("validation") or {}).get("observations", []):
        if o.get("segment") != "targeted" or o.get("node") not in nodes or str(o.get("event_id", "")) < "E014":
            continue
        r = float(o.get("observed_ratio") or 0.0)
        if r >= 1.5 and r > nodes[str(o["node"])]:
            h = int(o.get("horizon_months") or 0)
            what = {"peak": f"at its {h}-month peak", "mean": f"on average over {h} months",
                    "month": f"after {h} month{'s' if h != 1 else ''}"}.get(str(o.get("statistic")), "")
            out.append((r, f"{o['node']} x{r:.1f} {what} ({o['case_id']})"))
    return [t for _, t in sorted(out, reverse=True)]


#: a share of the portfolio's benefit resting on one assumption is stated from this share on
ASSUMPTION_SHARE_STATED = 0.25


def _viable_without_support(pf: dict[str, Any]) -> list[dict[str, Any]]:
    """Selected projects given money (a capex instrument) that the finance model finds viable at every price case:
    their benefit is the completion probability the instrument is assumed to add, not a gap it closes."""
    fin = {str(f["project_id"]): f for f in pf.get("finance") or []}
    return [x for x in pf.get("selected") or [] if x.get("instrument") in CAPEX_INSTRUMENTS and str(x["project_id"]) in fin
            and all(float(v) <= 0 for v in fin[str(x["project_id"])].get("viability_gap_usd", {"x": 1}).values())]


def _against_60_days(row: dict[str, Any]) -> dict[str, float]:
    """A stock row against JOGMEC's base rule, 60 days of consumption (its ``rules["60_days"]``): the rule's extra
    expected cost a year over the optimum (``C_rule − C_opt``, not negative: the optimum minimises C on the same
    draws) and the rule's stock in USD at the row's purchase price. Empty where the row has no such rule or no stock."""
    r = (row.get("rules") or {}).get("60_days")
    if not r or not float(row.get("optimal_stock_t") or 0.0) > 0:
        return {}
    price = float(row["optimal_stock_usd"]) / float(row["optimal_stock_t"])
    return {"extra_cost_of_60_days_usd_per_year": float(r["expected_cost_usd"]) - float(row["expected_cost_with_stock_usd"]),
            "stock_usd_at_60_days": float(r["stock_t"]) * price}


def _portfolio_assumptions(pf: dict[str, Any]) -> list[str]:
    """Sentences naming the share of the portfolio's expected loss avoided that rests on an assumption rather than on
    the project's data (review 14): money for projects the finance model finds viable in every price case (their
    benefit is the instruments' completion uplift, standing for a financing gap the NPV does not show), and projects
    without a first-output date (their benefit is months saved on a default lead time)."""
    sel = pf.get("selected") or []
    total = sum(float(x.get("expected_avoided_usd") or 0.0) for x in sel)
    if total <= 0:
        return []
    viable = _viable_without_support(pf)
    undated = [x for x in sel if any(str(a).startswith(NO_DATE_NOTE) for a in x.get("assumptions") or [])]
    out = []
    for group, text in ((viable, "goes to projects the finance model finds viable at every price case ({}): their benefit is the "
                                 "completion probability a government instrument is assumed to add (completion_probability_uplift), "
                                 "standing for a financing gap an NPV does not show. If such projects would close without it, that "
                                 "benefit is not additional"),
                        (undated, "comes from projects without a first-output date ({}): their benefit rests on the default lead time "
                                  "of their status and the months an instrument is assumed to save; a dated schedule could move it")):
        part = sum(float(x.get("expected_avoided_usd") or 0.0) for x in group)
        if part >= ASSUMPTION_SHARE_STATED * total:
            names = ", ".join(sorted({str(x.get("name") or x["project_id"]) for x in group}))
            out.append(f"{part / total:.0%} of the portfolio's expected loss avoided ({usd(part)} of {usd(total)} a year) " + text.format(names) + ".")
    return out


def _moved_by_valuation(risk: pd.DataFrame, top: int) -> str:
    """The materials outside the ranking's top ``top`` that the input-output convention would put inside it (review
    18b: gallium ranked 18th for the bloc and 4th valued as output lost, and the answer did not say so)."""
    if not len(risk) or "expected_loss_io_usd" not in risk:
        return ""
    r = risk.dropna(subset=["expected_loss_usd"]).reset_index(drop=True)
    io_rank = r["expected_loss_io_usd"].rank(ascending=False, method="first")
    moved = [f"{r.at[i, 'name']} would be #{int(io_rank[i])} instead of #{i + 1}" for i in range(top, len(r)) if io_rank[i] <= top]
    return "; ".join(moved)


def _suspension_status(susp: list[dict[str, Any]], plan: dict[str, Any]) -> str:
    """Review 24: the bloc's #1 and #2 rested on a suspension that had ended before the plan's date, and the answer
    said only "check its status". Names the end of each suspension and whether it is before the plan's month."""
    until = (plan.get("metadata") or {}).get("suspended_until") or {}
    as_of = str((plan.get("metadata") or {}).get("as_of") or "")
    out = []
    for e in sorted({str(x["scenario"]).split(".")[1] for x in susp if str(x["scenario"]).startswith("ev.")}):
        if e in until:
            past = bool(as_of) and until[e][:7] < as_of[:7]
            out.append(f"{e}'s suspension ran until {until[e]}" + (f", before the plan's month ({as_of[:7]}), and no later status is "
                                                                  "recorded (events.csv)" if past else ""))
    return ("; ".join(out) + ". ") if out else ""


def _suspended_not_simulated(plan: dict[str, Any], top: int = 10) -> list[str]:
    """A sentence per suspended measure the library does not simulate (``metadata.suspended_not_simulated``; review 33
    F2) that reaches the participants' ranked materials, and one sentence listing the others: what each covers, when
    its suspension ended, and, for each participant's top-``top`` row it reaches (its commodity id, or a word of it of
    five letters or more, appears in the measure's commodities or forms: ``ndfeb_magnets`` by "magnets"), the makers'
    gain that is then in doubt and the buyers' loss that would rise (review 33b G7: U.S. buyers of magnets made
    outside China were left out)."""
    md = plan.get("metadata") or {}
    as_of = str(md.get("as_of") or "")
    out, quiet = [], []
    for ev in md.get("suspended_not_simulated") or []:
        text = f"{ev['commodities']} {ev['forms']}".lower()
        gains, buyers = [], []
        for j, rows in (plan.get("participant_risk") or {}).items():
            who = PARTICIPANT_NAMES.get(j, j)
            whose = who + ("'" if who.endswith("s") else "'s")
            for r in (rows or [])[:top]:
                cid = str(r.get("commodity") or "")
                words = [w for w in cid.split("_") if len(w) >= 5]
                if not (cid and (cid.replace("_", " ") in text or any(re.search(rf"\b{w}\b", text) for w in words))):
                    continue
                gain = float(r.get("producer_gain_usd") or 0.0)
                if gain > 0:
                    gains.append(f"{whose} {r['name']} (rank {int(r['rank'])}: consumer loss {usd(float(r['expected_loss_usd']))} a year, "
                                 f"its makers' gain {usd(gain)}, net {usd(float(r.get('net_loss_usd') or 0.0))})")
                else:
                    buyers.append(f"{whose} {r['name']} (rank {int(r['rank'])}, {usd(float(r['expected_loss_usd']))} a year)")
        past = bool(as_of) and ev["until"][:7] < as_of[:7]
        if not (gains or buyers):
            quiet.append(f"{ev['event_id']} ({ev['measure']} on {ev['commodities']})")
            continue
        out.append(f"Not simulated: {ev['event_id']}, {ev['measure']} on {ev['commodities']} ({ev['forms']}), suspended until {ev['until']}"
                   + (f", before the plan's month ({as_of[:7]}), with no later status recorded (events.csv)" if past else "")
                   + ". The library has no scenario for it. Back in force, it would reach"
                   + (f" the makers credited with a gain in {'; '.join(gains)}: their gain is then in doubt and the net loss moves toward the "
                      "consumer loss" if gains else "")
                   + ("; and" if gains and buyers else "")
                   + (f" the buyers of the items it covers made outside China, whose imports would need Chinese licences: {'; '.join(buyers)}, "
                      "a loss that would rise" if buyers else "")
                   + ". Check its status before relying on those figures.")
    if quiet:
        out.append("Also suspended and not simulated, reaching none of the participants' top-ranked materials: " + "; ".join(quiet)
                   + ". Check their status.")
    return out


def _net_of_producers(risk: pd.DataFrame, top: int) -> str:
    """The ranking on net loss beside the ranked consumer loss (review 23: Japan's cathode and anode ranked #4 and
    #5 by consumer loss are net gains to Japan, whose makers export them, and the answer did not say so): the totals,
    the net top five, and the top materials where the bloc's producers gain a large part of what its buyers lose."""
    if not len(risk) or "net_loss_usd" not in risk or "producer_gain_usd" not in risk:
        return ""
    r = risk.dropna(subset=["expected_loss_usd", "net_loss_usd"])
    gross, net = float(r["expected_loss_usd"].clip(lower=0.0).sum()), float(r["net_loss_usd"].sum())
    if not (gross > 0 and float(r["producer_gain_usd"].fillna(0.0).sum()) > 0):
        return ""
    top_net = r.sort_values("net_loss_usd", ascending=False).head(5)
    offset = [x for x in r.head(top).to_dict("records") if float(x["producer_gain_usd"] or 0.0) >= 0.25 * float(x["expected_loss_usd"])]
    return (f" Net of what the bloc's own producers gain from the same prices, the bloc's expected loss is {usd(net)} a year "
            f"instead of {usd(gross)}, led by {', '.join(top_net['name'])}"
            + (" (in the top " + str(top) + " by consumer loss, the producers' gain offsets much of it for "
               + "; ".join(f"{x['name']}: {usd(float(x['expected_loss_usd']))} consumer loss, "
                            + (f"{usd(float(x['net_loss_usd']))} net" if float(x["net_loss_usd"]) >= 0 else f"a net gain of {usd(-float(x['net_loss_usd']))}") for x in offset)
               + ")" if offset else "")
            + ". The ranking stays on the consumer loss: stocks and projects protect buyers, and a producer's windfall does not "
            "supply a plant; the gains are upper bounds where the makers' own inputs rise in price or are cut in ways the model "
            "does not hold (contract prices that pass metal costs through, the makers' own cathode precursors, the first months of a "
            "licensing stop: docs/simulation.md §7).")


def contracted_elsewhere(pid: str, j: str, buyer_rows: list[dict[str, Any]]) -> bool:
    """Whether all of project ``pid``'s output is contracted to buyers of countries other than ``j`` (review 34 H10:
    Japan's tungsten stock was said to fall on Sangdong, whose output GTP in the USA takes under a contract without a
    published volume): some contract names it, none of ``j``'s does, and one of them has no volume (it takes what the
    others leave, as :func:`critmin.study.core.contracted_supply` shares it) or their shares of output
    (``contract_share``) add up to all of it."""
    named = [b for b in buyer_rows if pid in contract_of(b)]
    if not named or any(str(b["country_iso3"]) == j for b in named):
        return False

    def given(v: Any) -> bool:
        return v is not None and np.isfinite(float(v))

    shares = [float(b["contract_share"]) for b in named if given(b.get("contract_share"))]
    return sum(shares) >= 1.0 or any(not given(b.get("demand_t_per_year")) and not given(b.get("contract_share")) for b in named)


def _relaxed_clause(rc: dict[str, Any], keep: list[str], pname: dict[str, str]) -> str:
    """The programme's benefit if the controls in force behind it were relaxed at the regime model's rate and not
    re-imposed (review 34b K5: the benefit is held at today's level over the evaluation period, while the stocks are
    written down at that rate), and which projects would then not be chosen."""
    if not rc:
        return ""
    per = rc.get("persistence") or {}
    said = [f"{k}: {v['in_force_share']:.0%} of the commodity's loss from controls in force, relaxed with probability "
            f"{v['relaxation_probability']:.0%} a year" for k, v in sorted(per.items()) if float(v.get("in_force_share") or 0.0) > 0]
    fail = [pname.get(x, x) for x in keep if x in set(rc.get("only_held") or [])]
    return (" That benefit holds today's expected loss over the 15 years; if the controls in force behind it were relaxed at the "
            "regime model's rate and not re-imposed" + (f" ({'; '.join(said)})" if said else "")
            + f", the same programme would avoid {usd(float(rc.get('expected_avoided_usd_same_programme') or 0.0))} a year"
            + (f", and {', '.join(fail)} would not be chosen." if fail else ", and each project would still be chosen."))


def _year_ahead_note(st: pd.DataFrame, pf: dict[str, Any], buyers: pd.DataFrame | None) -> str:
    """Which lines are sized net of the output the plants producing or being built deliver in the year ahead, how many
    tonnes each participant receives of it, and from which plants (review 34 H7, 34b K9)."""
    rows = [r for r in (st.to_dict("records") if len(st) else []) if r["participant"] in ("USA", "JPN")
            and float(r.get("supply_year_ahead_received_t_per_year") or 0.0) >= 0.5]
    if not rows:
        return ""
    buyer_rows = buyers.to_dict("records") if buyers is not None and len(buyers) else []
    ahead = pf.get("pipeline_year_ahead") or []

    def plants(node: str, j: str) -> str:
        return ", ".join(f"{x['name']} ({float(x['expected_t_year_ahead']):,.0f} t)" for x in ahead if x.get("node") == node
                         and not contracted_elsewhere(str(x.get("project_id") or ""), j, buyer_rows))

    return ("Each line is sized on the shortfall left once the plants producing since the node's base year or being commissioned "
            "deliver their output of the year ahead (on their ramp, times their completion probability): "
            + "; ".join(f"{r['participant']} {r['node']} receives {float(r['supply_year_ahead_received_t_per_year']):,.0f} t"
                        + (f" of the year's output of {o}" if (o := plants(str(r['node']), str(r['participant']))) else "")
                        + (", and holds no stock" if float(r.get("optimal_stock_t") or 0.0) <= 0 else "")
                        for r in sorted(rows, key=lambda r: -float(r["supply_year_ahead_received_t_per_year"])))
            + ".")


def _uplift_in_lead(wu: dict[str, Any], keep: list[str], pname: dict[str, str]) -> str:
    """The lead's short form of the uplift check (review 34b K4; the note gives it in full)."""
    fail = [pname.get(x, x) for x in keep if x in set(wu.get("only_with_uplift") or [])]
    return (f", {usd(float(wu.get('expected_avoided_usd_same_programme') or 0.0))} without the assumed completion uplift"
            + (f" ({', '.join(fail)} then not chosen)" if fail else " (each still chosen)"))


def _rests_on(kept: pd.DataFrame, plan: dict[str, Any], pname: dict[str, str]) -> str:
    """Review 35b M1: the funded money whose benefit rests mostly on a suspended control (its return counted at an
    assumed annual probability) says so: the scenario carrying most of the loss of the project's material at its stage
    (the BLOC ranking's ``top_scenarios``), when it carries at least half of it and its status is ``suspended``."""
    rows = {str(r["commodity"]): r for r in plan.get("scenarios") or []}
    found: dict[tuple[str, str, str, float, str], list[str]] = {}
    for r in (kept.to_dict("records") if len(kept) else []):
        if not float(r.get("amount_usd") or 0.0) > 0:
            continue
        node = str(r.get("node") or "") or next((str(x.get("node")) for x in plan["portfolio"].get("selected") or []
                                                  if x["project_id"] == r["project_id"]), "")
        if "/" not in node:
            continue
        commodity, stage = node.split("/", 1)
        row = rows.get(commodity)
        tops = [t for t in (row or {}).get("top_scenarios") or [] if t.get("stage") == stage]
        total = float((row or {}).get("expected_loss_usd") or 0.0)
        if not tops or total <= 0:
            continue
        top = max(tops, key=lambda t: float(t.get("contribution_usd") or 0.0))
        share = float(top.get("contribution_usd") or 0.0) / total
        if top.get("status") == "suspended" and share >= 0.5:
            event = str(top["scenario"]).split(".")[1] if str(top["scenario"]).startswith("ev.") else str(top["scenario"])
            key = (event, str(top.get("restrictors") or "").replace(";", ", "), commodity, share, f"{float(top.get('probability') or 0.0):g}")
            found.setdefault(key, []).append(str(r["project_id"]))
    money = kept[kept["amount_usd"].fillna(0.0) > 0] if len(kept) else kept
    out = []
    for (ev, who, com, share, prob), ids in found.items():
        # the lead is short: "the U.S. money" when it is all of one participant's money
        owners = set(money.loc[money["project_id"].isin(ids), "participant"])
        whose = (f"The {MONEY_OF[next(iter(owners))]} money" if len(owners) == 1 and next(iter(owners)) in MONEY_OF
                 and set(money.loc[money["participant"].isin(owners), "project_id"]) == set(ids) else " and ".join(pname.get(x, x) for x in ids))
        until = str(((plan.get("metadata") or {}).get("suspended_until") or {}).get(ev) or "")
        names = (plan.get("metadata") or {}).get("country_names") or {}
        named = ", ".join(names.get(c.strip(), c.strip()) for c in who.split(","))
        out.append(f" {whose} rests on {named}'s suspended control {ev} ({share:.0%} of the "
                   f"{com.replace('_', ' ')} loss), counted at an assumed {prob} a year"
                   + (f"; suspended to {until}, no later status recorded" if until else "") + ".")
    return "".join(out)


def _without_uplift_clause(wu: dict[str, Any], keep: list[str], pname: dict[str, str], with_usd: float) -> str:
    """How much of the programme's benefit is the assumed completion uplift (review 34b K4): the loss the same projects
    avoid when support only brings output forward, and which of them would then fail the net-benefit test."""
    same = float(wu.get("expected_avoided_usd_same_programme") or 0.0)
    fail = [pname.get(x, x) for x in keep if x in set(wu.get("only_with_uplift") or [])]
    # review 35 L2: "each still passes" was said of a project the check kept only with another instrument
    other = {x: t for x, t in (wu.get("other_terms") or {}).items() if x in keep}
    return (f" {usd(with_usd - same)} of it is the completion probability support is assumed to add (no causal estimate); "
            f"without that, the projects avoid {usd(same)} through the months support is assumed to save"
            + (f", and {', '.join(fail)} would not be chosen" if fail else ", and each would still be chosen")
            + (" (" + "; ".join(f"{pname.get(x, x)} with a {str(t['instrument']).replace('_', ' ')} from {t['agency']}" for x, t in sorted(other.items()))
               + " instead)" if other else ""))


def _fund_lead(kept: pd.DataFrame, pname: dict[str, str]) -> str:
    """The projects to fund in any case, by whose money: each participant's (money, then permitting support at no
    cost), then the partners' (a recommendation to them), and the totals in face amount and expected cost."""
    def _terms(r: dict[str, Any]) -> str:
        return (f"{pname.get(r['project_id'], r['project_id'])} ({str(r['instrument']).replace('_', ' ')}, {r['agency']}, "
                f"{usd(float(r['amount_usd']))})")

    parts = []
    for j, who in PARTICIPANT_NAMES.items():
        mine = kept[kept["participant"] == j]
        money = mine[mine["amount_usd"].fillna(0.0) > 0]
        free = mine[mine["amount_usd"].fillna(0.0) <= 0]
        said = "; ".join(_terms(r) for r in money.to_dict("records")) or "none"
        if len(free):
            # review 36: "with U.S. money, permitting support at no cost" read as money
            said += ("; " if len(money) else ", and ") + "permitting support at no cost for " + ", ".join(pname.get(x, x) for x in free["project_id"])
        parts.append(f"with {MONEY_OF.get(j, who)} money, {said}")
    partner = kept[~kept["participant"].isin(list(PARTICIPANT_NAMES))]
    if len(partner):
        parts.append("recommended to partners, " + "; ".join(_terms(r) for r in partner.to_dict("records")))
    return ("Fund in any case: " + "; ".join(parts) + f". In all {usd(float(kept['amount_usd'].sum()))} of face amount, "
            f"{usd(float(kept['budget_cost_usd'].sum()))} expected cost to governments.")


def _driven_at(top: list[dict[str, Any]]) -> str:
    """Stage and restricting countries of the scenarios that carry a material's loss, largest first (review 26: the
    chokepoint column named China's cobalt refining while the loss came from the DRC's ore quota)."""
    seen: list[str] = []
    for x in top[:2]:
        if x.get("stage") and x.get("restrictors"):
            who = str(x["restrictors"]).replace(";", ", ")
            # review 32: E023's precursor licence cuts Korean cathode, not China's own
            w = f"{x['stage']} ({who} licence on an input: output made from it elsewhere)" if x.get("on_input") else f"{x['stage']} ({who})"
            if w not in seen:
                seen.append(w)
    return "; ".join(seen)


#: Names of the participants in the answer's sentences.
PARTICIPANT_NAMES = {"USA": "the United States", "JPN": "Japan"}
#: The participants' money as the answer's sentences name it.
MONEY_OF = {"USA": "U.S.", "JPN": "Japanese"}


def _by_participant(plan: dict[str, Any], n: int = 5) -> str:
    """Each participant's own top ``n`` by its buyers' consumer loss, and the materials among its top ten where its own
    producers gain more than its buyers lose (review 26: the answer pointed to participants' rankings the plan did not
    hold, and the bloc's first two materials are net gains for Japan)."""
    out = []
    for j, rows in (plan.get("participant_risk") or {}).items():
        r = pd.DataFrame(rows)
        if not len(r) or "expected_loss_usd" not in r:
            continue
        r = r.dropna(subset=["expected_loss_usd"])
        top = r.head(n)
        gains = [x for x in r.head(10).to_dict("records") if pd.notna(x.get("net_loss_usd")) and float(x["net_loss_usd"]) < 0]
        out.append(f"for {PARTICIPANT_NAMES.get(j, j)}, "
                   + ", ".join(f"{x['name']} ({usd(float(x['expected_loss_usd']))})" for x in top.to_dict("records"))
                   + (" (" + "; ".join(f"{x['name']}: its producers gain {usd(-float(x['net_loss_usd']))} more than its buyers lose"
                                      for x in gains)
                      # review 28 F1: the gain credits full output at the higher price; the makers' own input costs rise
                      # in it only where the same event restricts a modelled input
                      + "; an upper bound: its makers are credited full output at the higher price, and a rise in their own "
                        "input costs only where the same event restricts an input the model holds (docs/simulation.md §7))"
                      if gains else ""))
    if not out:
        return ""
    return (" Each participant's own ranking (sections 3a-3b; participant_risk in plan.json, with the net figure beside): "
            + "; ".join(out) + ".")


def build_summary(plan: dict[str, Any], buyers: pd.DataFrame | None = None, top: int = 10) -> dict[str, Any]:
    """Sentences and tables of the executive answer (see module docstring)."""
    pm = {r["commodity"]: r for r in plan.get("priority_minerals", [])}
    risk = pd.DataFrame(plan["scenarios"])
    pri_rows = []
    choke = (plan.get("metadata") or {}).get("chokepoints") or {}
    for r in risk.head(top).to_dict("records"):
        # review 21: cobalt (#3 by loss) is outside the assessment's top 25, and its chokepoint read blank
        a = pm.get(r["commodity"]) or choke.get(r["commodity"], {})
        drivers = "; ".join(x["scenario"] for x in (r.get("top_scenarios") or [])[:2])
        # review 23: ranks closer than twice the sampling error of their difference are a range, not an order
        lo, hi = int(r.get("rank_best") or r["rank"]), int(r.get("rank_worst") or r["rank"])
        pri_rows.append({"rank": int(r["rank"]), "rank_range": f"{lo}-{hi}" if hi > lo else str(lo),
                         "mineral": r["name"], "expected_loss_usd_per_year": float(r["expected_loss_usd"]),
                         "cvar95_usd": float(r["cvar95_usd"]), "category": r["category"],
                         "chokepoint": f"{a.get('chokepoint_stage', '')} ({a.get('top_country', '')} {a.get('top_share', np.nan):.0%})" if a else "",
                         "loss_driven_at": _driven_at(r.get("top_scenarios") or []),
                         "driving_scenarios": drivers})
    first = pri_rows[0] if pri_rows else None
    # review 34 H15: "Cobalt alone carries" read as an order among five materials tied within their sampling error
    tied = [r for r in pri_rows if r["rank_range"].split("-")[0] == "1"]
    s_pri = (f"The bloc's largest expected supply losses are in {', '.join(r['mineral'] for r in pri_rows[:5])}"
             + ((f"; the first {len(tied)} are tied within their sampling error, at {usd(min(r['expected_loss_usd_per_year'] for r in tied))}"
                 f" to {usd(max(r['expected_loss_usd_per_year'] for r in tied))} a year of expected consumer loss each." if len(tied) > 1 else
                 f"; {first['mineral']} alone carries {usd(first['expected_loss_usd_per_year'])} a year of expected consumer loss.") if first else "."))
    p_pri = [s_pri, _net_of_producers(risk, top), _by_participant(plan)]
    # review 21: listed minerals that have no ranking row of their own are named, not left out silently
    nr = (plan.get("metadata") or {}).get("not_ranked") or {}
    rows_missing = {j: v for j, v in (nr.get("listed_without_row") or {}).items() if v}
    elements = nr.get("us_listed_elements_in_rare_earths") or []
    if rows_missing or elements:
        rank_re = {r["commodity"]: int(r["rank"]) for r in plan.get("scenarios", []) if r.get("rank") is not None}.get("rare_earths")
        p_pri.append(" Not ranked on their own: "
                  + "; ".join(f"{', '.join(x.replace('_', ' ') for x in v)} ({j}'s list: no world output or price found)" for j, v in sorted(rows_missing.items()))
                  + ("; " if rows_missing and elements else "")
                  + (f"the U.S.-listed rare earths {', '.join(elements)}, which have no node and sit in the rare-earth remainder"
                     + (f" (ranked #{rank_re} as a whole, priced as lanthanum and cerium)" if rank_re else "")
                     + "; the USGS (OFR 2025-1047) ranks samarium and lutetium among the highest for the United States" if elements else "")
                  + ".")

    pf = plan["portfolio"]
    sel = pd.DataFrame(pf["selected"])
    # the projects the programme decided after the stocks does not keep (conditional on the stocks)
    cond = set((pf.get("selection_net_of_stocks") or {}).get("only_without_stocks") or [])
    fin_rows: list[dict[str, Any]] = []
    # review 35b M2: the table gives the projects funded in any case on the terms of the programme decided after the
    # stocks (as the lead does), and the conditional ones on the terms they are chosen with before the stocks
    net0 = pf.get("selection_net_of_stocks") or {}
    net_rows0 = pd.DataFrame(net0.get("selected_net_of_stocks") or [])
    table_sel = sel
    if len(net_rows0) and len(sel):
        keep0 = set(net0.get("both") or [])
        table_sel = pd.concat([net_rows0[net_rows0["project_id"].isin(keep0)], sel[~sel["project_id"].isin(keep0)]], ignore_index=True)
    if len(table_sel):
        g = table_sel.groupby(["participant", "agency"]).agg(projects=("project_id", "count"), face_amount_usd=("amount_usd", "sum"),
                                                       budget_cost_usd=("budget_cost_usd", "sum"),
                                                       # USD add up across materials; tonnes of different materials do not
                                                       avoided_usd_per_year=("expected_avoided_usd", "sum"))
        names = dict(zip(table_sel["project_id"], table_sel["name"].fillna("") if "name" in table_sel else table_sel["project_id"], strict=True))
        fin_rows = [{"country": k[0], "agency": k[1], **{c: (int(v) if c == "projects" else float(v)) for c, v in r.items()},
                     # review 22: which of the row's projects the programme decided after the stocks does not keep
                     "conditional_on_stocks": "; ".join(sorted(names[x] or x for x in set(table_sel.loc[(table_sel["participant"] == k[0])
                                                                                                          & (table_sel["agency"] == k[1]), "project_id"]) & cond))}
                    for k, r in g.iterrows()]
    basis = pf.get("budget_basis", {})
    by_basis = {"cost": 0.0, "amount": 0.0}
    for k, v in pf["budgets"].items():
        by_basis["cost" if basis.get(k) == COST_BASIS_LABEL else "amount"] += float(v)
    # review 24: the headline mixed the partners' money (Australia, Canada, the EU, Germany) with the participants'
    own = {"cost": 0.0, "amount": 0.0}
    country = pf.get("budget_country") or {}
    for k, v in pf["budgets"].items():
        if country.get(k, "") in ("USA", "JPN"):
            own["cost" if basis.get(k) == COST_BASIS_LABEL else "amount"] += float(v)
    avail = (f"{usd(by_basis['amount'])} of budgets counted in face amounts"
             + (f" and {usd(by_basis['cost'])} of credit-subsidy budgets (charged the cost, not the face)" if by_basis["cost"] else "")
             + " were available"
             + (f" (of them the United States' and Japan's own: {usd(own['amount'])} in face amounts"
                + (f" and {usd(own['cost'])} of credit subsidy" if own["cost"] else "") + "; the rest is partners' money)"
                if own["amount"] + own["cost"] < by_basis["amount"] + by_basis["cost"] - 1.0 else ""))
    funded = [f for f in pf.get("stock_funding") or [] if f.get("budget") and float(f.get("stocks_to_buy_usd") or 0.0) > 0]
    if funded:
        # review 23: the stockpile's own fund pays for the recommended stocks first
        avail += (", of which " + "; ".join(f"{usd(f['stocks_to_buy_usd'])} of {f['budget']} buys the recommended {f['participant']} stocks"
                                            for f in funded) + " (the rest is open to projects)")
    free = int((sel["amount_usd"].fillna(0.0) <= 0).sum()) if len(sel) else 0
    # a recommendation, not a commitment (review 8); permitting facilitation has no face amount and is counted apart
    # review 10: the portfolio's loss counts sourced demand in usable forms only; the ranking's total is larger
    total_loss = float(sum(float(r.get("avoidable_loss_usd") or 0.0) for r in pf.get("risk_reduction", [])))
    ranked_loss = float(risk["expected_loss_usd"].clip(lower=0.0).sum()) if len(risk) else 0.0
    ranked_io = float(risk["expected_loss_io_usd"].clip(lower=0.0).sum()) if len(risk) and "expected_loss_io_usd" in risk else 0.0
    net = pf.get("selection_net_of_stocks") or {}
    pname = {r["project_id"]: str(r.get("name") or r["project_id"]) for r in [*pf.get("projects", []), *pf.get("selected", [])]}
    lead, beyond, conditional = "", "", []
    if net and len(sel):
        # review 21: the headline was the gross benefit, most of it one project viable without support and the same
        # shortfalls the stocks cover; the answer now opens with the decision taken after the stocks
        keep, dropped = net.get("both", []), net.get("only_without_stocks", [])
        why = net.get("reason_net_of_stocks") or {}
        # review 35 L3: with the terms of the programme decided after the stocks where recorded (the benefit quoted is its)
        net_rows = pd.DataFrame(net.get("selected_net_of_stocks") or [])
        kept = net_rows[net_rows["project_id"].isin(keep)] if len(net_rows) else sel[sel["project_id"].isin(keep)]
        # review 34 H2: the lead gives each decision with its money and its owner (whose budget), participants first
        lead = _fund_lead(kept, pname) if keep else "No project is worth funding once the stocks are held."
        beyond_usd = usd(float(net.get("expected_avoided_usd_net_of_stocks") or 0.0))
        if keep:
            # review 34b K7: the lead said what the money costs, not what it buys; K4: and how much of it is the assumed
            # completion uplift (the same programme, checked with none)
            wu = net.get("without_completion_uplift") or {}
            # review 35b M5: "They avoid" followed the conditional project's name: it now follows the funded ones, and the
            # conditional projects come last
            lead += (f" They avoid {beyond_usd} a year of expected loss beyond the stocks"
                     + (_uplift_in_lead(wu, keep, pname) if wu else
                        ", counting the completion probability that support is assumed to add (completion_probability_uplift, an "
                        "assumption: validation.md §6, review 34b K4)")
                     + "." + _rests_on(kept, plan, pname))
            # review 36: most of the benefit was a project the finance model finds viable without support, said only in a note
            free_riders = [pname.get(str(x["project_id"]), str(x["project_id"])) for x in _viable_without_support(pf) if str(x["project_id"]) in keep]
            if free_riders:
                lead += (f" {' and '.join(free_riders)} {'is' if len(free_riders) == 1 else 'are'} viable without support in the finance "
                         "model: the support is additional only if it is what closes the financing.")
        if dropped:
            lead += " Conditional (chosen only without the stocks): " + ", ".join(pname.get(x, x) for x in dropped) + "."
        # review 34: the reason of each conditional decision is a note; the lead keeps the decision
        on_uplift = set((pf.get("selection_without_completion_uplift") or {}).get("only_with_uplift") or [])
        # review 35b M6: and whether it holds once the controls in force behind it are relaxed at the regime model's rate
        on_held = set((pf.get("selection_with_controls_relaxed") or {}).get("only_held") or [])
        conditional = [f"{pname.get(x, x)}: with the stocks in place it " + (why.get(x) or "is not chosen")
                       + ("; without the stocks it is chosen only with the assumed completion uplift" if x in on_uplift else "")
                       + ("; nor is it chosen, even without the stocks, if the controls in force behind it are relaxed at the regime "
                          "model's rate" if x in on_held else "") + "."
                       for x in dropped]
        wu_all = net.get("without_completion_uplift") or {}
        beyond = (f"Beyond the recommended stocks the programme avoids {beyond_usd} "
                  "a year (the two act on the same shortfalls, so their benefits do not add up)."
                  + (_without_uplift_clause(wu_all, keep, pname, float(net.get("expected_avoided_usd_net_of_stocks") or 0.0))
                     + "." if wu_all and keep else "")
                  + _relaxed_clause(net.get("with_controls_relaxed") or {}, keep, pname))
    viable = _viable_without_support(pf)
    viable_usd = sum(float(x.get("expected_avoided_usd") or 0.0) for x in viable)
    p_fin = [lead, *conditional, beyond, (f"{'In all, the programme supports' if lead else 'Recommended: support for'} {len(sel)} projects"
             + (f" ({len(sel) - free} with money, {free} by permitting facilitation at no budget cost)" if free else "")
             + f", {usd(float(sel['amount_usd'].sum()) if len(sel) else 0.0)} of face amount, "
             f"with an expected cost to governments of {usd(float(sel['budget_cost_usd'].sum()) if len(sel) else 0.0)} (credit-reform cost: "
             "subsidy cost of loans and guarantees, expected loss of equity, grants in full), "
             f"for {usd(float(pf['expected_avoided_usd']))} a year of expected loss avoided{' before the stocks' if lead else ''}"
             # review 9: the figure without its denominator read as large
             + (f" ({float(pf['expected_avoided_usd']) / total_loss:.1%} of the {usd(total_loss)} a year of expected loss that projects "
                "can act on in the portfolio's scenario sample: shortfalls of sourced demand, in forms the participant's plants use"
                + (f", after the recommended stocks at {len(pf['metadata']['stocks_netted_t'])} nodes (a project relieves only what they "
                   "leave)" if (pf.get("metadata") or {}).get("stocks_netted_t") else "")
                + (f"; the ranking's consumer loss over all materials is {usd(ranked_loss)} a year" if ranked_loss > total_loss else "")
                + ")" if total_loss > 0 else "")
             + f"; {avail}."),
             (f" {usd(viable_usd)} a year of it is {' and '.join(sorted({str(x.get('name') or x['project_id']) for x in viable}))}, which "
                "the finance model finds viable without support at every price case: support is additional only if the government "
                "instrument is what closes the financing (another lender's offer in hand would make it not additional)."
                + "".join(f" {x.get('name') or x['project_id']} has such an offer pending: "
                          + pend[0].removeprefix(PENDING_NOTE).split(":")[0].strip() + "."
                          for x in viable for pend in [[a for a in x.get("assumptions") or [] if str(a).startswith(PENDING_NOTE)]] if pend)
                if float(pf["expected_avoided_usd"]) > 0 and viable_usd >= ASSUMPTION_SHARE_STATED * float(pf["expected_avoided_usd"]) else "")]
    # review 35b M8: a funded project with another lender's capex offer pending says so, viable or not (Graphite Creek:
    # EXIM's letter of interest for up to US$325 M beside the DOE guarantee)
    said_viable = {str(x["project_id"]) for x in viable} if float(pf["expected_avoided_usd"]) > 0 and viable_usd >= ASSUMPTION_SHARE_STATED * float(pf["expected_avoided_usd"]) else set()
    pending = [(x, [a for a in x.get("assumptions") or [] if str(a).startswith(PENDING_NOTE)]) for x in pf.get("selected") or []
               if float(x.get("amount_usd") or 0.0) > 0 and str(x["project_id"]) not in said_viable]
    for x, pend in pending:
        if pend:
            p_fin.append(f" {x.get('name') or x['project_id']}: another capex offer is pending, not counted because it is not binding: "
                         + pend[0].removeprefix(PENDING_NOTE).split(":")[0].strip() + "; if it closes, the recommended "
                         f"{str(x['instrument']).replace('_', ' ')} may no longer be additional, or must shrink to keep public money "
                         "within its share of the capex (max_public_share_of_capex).")
    partner = [x for x in pf.get("selected") or [] if str(x.get("participant")) not in ("USA", "JPN")]
    if partner:
        # review 21: Mactung was funded from a Canadian budget line; the group can recommend it, only Canada can decide it
        p_fin.append(" " + "; ".join(f"{x.get('name') or x['project_id']} rests on a partner's budget ({x['agency']}, {x['participant']})"
                                  for x in partner)
                  + ": a recommendation to that partner, not a decision of the United States or Japan.")
    unspent = pf.get("unspent", {})
    if unspent:
        p_fin.append(f" {len(unspent)} budgets stay mostly unspent; the binding reason is given for each.")
    rob = pf.get("selection_under_input_output") or {}
    if rob and len(sel):
        # review 18: which choices rest on how a tonne given up at a higher price is valued
        both, only = rob.get("both", []), rob.get("only_ranked_valuation", [])
        extra = rob.get("only_input_output", [])
        io_avoided = float(rob.get("expected_avoided_usd_input_output") or 0.0)
        p_fin.append(" Checked with every tonne not consumed valued as output lost (the input-output convention), the same "
                  f"programme keeps {len(both)} of the {len(sel)}"
                  + (f" ({free} of them permitting support at no budget cost, which passes any test)" if free else "")
                  + (f", drops {', '.join(pname.get(x, x) for x in only)}" if only else "")
                  + (f", adds {', '.join(pname.get(x, x) for x in extra)}" if extra else "")
                  + f" and avoids {usd(io_avoided)} a year on that valuation.")
    if net and len(sel):
        # review 18b/20: the programme decided after the recommended stocks (the lead above); what a conditional
        # decision depends on, and what the net programme would add
        dropped, added = net.get("only_without_stocks", []), net.get("only_net_of_stocks", [])
        p_fin.append((" A conditional project is worth funding if the stocks cannot be bought back within a year at the simulated "
                   "price (a control that outlasts a year in a thin market), the case the programme before the stocks values by "
                   "counting every tonne short in full." if dropped else "")
                  + (f" Decided after the stocks, the programme would add {', '.join(pname.get(x, x) for x in added)}." if added else "")
                  + " Each stock row says what it falls to once the recommended projects produce.")

    st = pd.DataFrame(plan["stockpiles"]["stockpiles"])
    stock_rows = []
    to_buy = 0.0  # what is left to buy where today's holdings are published (a held stock is not bought again)
    few: list[float] = []  # USD of the stocks decided by fewer than FEW_DRAWS draws with a shortfall
    if len(st):
        own = st[st["participant"].isin(["USA", "JPN"]) & (st["optimal_stock_t"] > 0)]
        for r in own.sort_values("optimal_stock_usd", ascending=False).to_dict("records"):
            stock_rows.append({"participant": r["participant"], "node": r["node"], "bought_as": str(r.get("bought_as") or ""),
                               "stock_t": float(r["optimal_stock_t"]),
                               "stock_usd": float(r["optimal_stock_usd"]), "days_of_consumption": float(r["days_of_consumption"])
                               if r["days_of_consumption"] is not None and np.isfinite(r["days_of_consumption"]) else None,
                               "days_of_net_imports": float(r["days_of_net_imports"])
                               if r.get("days_of_net_imports") is not None and np.isfinite(r["days_of_net_imports"]) else None,
                               "expected_saving_usd_per_year": float(r["saving_usd"]),
                               "years_to_fill": float(r["years_to_fill"]) if r.get("years_to_fill") is not None and pd.notna(r.get("years_to_fill")) else None,
                               "purchase_price_ratio": float(r.get("purchase_price_ratio") or 1.0),
                               # review 23: bought at the latest observed benchmark, the simulated price the low case
                               "purchase_price_basis": str(r.get("purchase_price_basis") or ""),
                               **({"stock_t_at_simulated_price": float(r["optimal_stock_t_at_simulated_price"]),
                                   "stock_usd_at_simulated_price": float(r["optimal_stock_usd_at_simulated_price"]),
                                   "purchase_price_ratio_simulated": float(r["purchase_price_ratio_simulated"])}
                                  if pd.notna(r.get("optimal_stock_usd_at_simulated_price")) else {}),
                               # review 23: how the line compares with JOGMEC's base rule (60 days of consumption)
                               **_against_60_days(r),
                               "current_holding": (f"{float(r['current_holding_t']):,.0f} t" if pd.notna(r.get("current_holding_t")) else "not published")
                               + (f"; ordered {float(r['ordered_t']):,.0f} t" if pd.notna(r.get("ordered_t")) else "")
                               + (f"; plan or request {float(r['planned_acquisition_t']):,.0f} t (not stock)" if pd.notna(r.get("planned_acquisition_t")) else "")})
            t = r.get("to_buy_t")
            if 0 < (r.get("shortfall_draws") or 0) < FEW_DRAWS:
                few.append(float(r["optimal_stock_usd"]))
                stock_rows[-1]["few_draws"] = True
                stock_rows[-1]["basis"] = f"not firm: fewer than {FEW_DRAWS} simulated years with a shortfall, outside the totals"
            else:
                # review 10: the amount left to buy included the stocks the sentence keeps out of its totals
                to_buy += float(r["optimal_stock_usd"]) * (float(t) / float(r["optimal_stock_t"]) if t is not None and pd.notna(t) else 1.0)
                stock_rows[-1]["basis"] = "firm"
    stock_rows.sort(key=lambda x: bool(x.get("few_draws")))  # firm stocks first, in cost order
    # review 9: a recommendation does not total what it tells the reader not to buy yet
    firm = [x for x in stock_rows if not x.get("few_draws")]
    # review 10/11: DLA's plans and requests (cobalt, bismuth, tin) exceeded targets; they are named, not netted
    covered = [f"{r['participant']} {r['node']}" for r in (st.to_dict("records") if len(st) else [])
               if r["participant"] in ("USA", "JPN") and r["optimal_stock_t"] > 0 and pd.notna(r.get("planned_acquisition_t"))
               and float(r["planned_acquisition_t"]) >= float(r["optimal_stock_t"])]
    by_j = {j: sum(x["stock_usd"] for x in firm if x["participant"] == j) for j in ("USA", "JPN")}
    md = plan["stockpiles"]["metadata"]
    # review 34 H2: the lead names the lines, who pays and what limits their use; the totals sentence follows as a note
    funding = {str(f["participant"]): f for f in pf.get("stock_funding") or []}

    def _stock_lead(j: str) -> str:
        mine = sorted((x for x in firm if x["participant"] == j), key=lambda x: -float(x["stock_usd"]))
        if not mine:
            return f"No stock for {PARTICIPANT_NAMES.get(j, j)}."
        f = funding.get(j) or {}
        pay = (f"paid from {f['budget']}" + (f", whose stocks {f['release_limit']}" if f.get("release_limit") else "")
               if f.get("budget") else "no funding line" + (f" (carrying cost about {usd(float(f['carrying_cost_usd_per_year']))} a year)"
                                                             if f.get("carrying_cost_usd_per_year") else ""))
        return (f"Stock for {PARTICIPANT_NAMES.get(j, j)} ({usd(by_j[j])}, {len(mine)} line{'s' if len(mine) > 1 else ''}): "
                + ", ".join(f"{x['node']} {x['stock_t']:,.0f} t" for x in mine[:4])
                + (f" and {len(mine) - 4} smaller" if len(mine) > 4 else "") + f"; {pay}.")

    p_stock = [" ".join(_stock_lead(j) for j in ("USA", "JPN")),
               (f"In all {sum(1 for x in firm if x['participant'] == 'USA')} nodes (material and stage) for the United States ({usd(by_j['USA'])}) and "
               f"{sum(1 for x in firm if x['participant'] == 'JPN')} for Japan ({usd(by_j['JPN'])}), from each participant's critical-mineral "
               f"list, stockable stages {', '.join(md.get('stockable_stages', []))}"
               + (f", at most {md['max_days']:g} days of net imports each." if md.get("max_days") else ".")),
               (f" Today's government holdings, orders or acquisition plans are published for {sum(1 for x in stock_rows if x['current_holding'] != 'not published')} of "
               f"these materials (net of holdings and orders, {usd(to_buy)} is left to buy"
               + (f"; published plans, requests or contract ceilings, which are not stock, would cover the targets for {', '.join(covered)} if bought"
                  if covered else "")
               + "); the U.S. National Defense Stockpile stopped publishing holdings by material in 2023 and JOGMEC's are "
               "confidential (its target is 60 days of consumption, up to 180 days for minerals at high risk: stockpile_parameters.csv), "
               "so the other stocks are targets, not purchases net of holdings."),
               *((f" {f['participant']}'s stocks ({usd(f['stocks_to_buy_usd'])} to buy) are paid from {f['budget']}, {f['funds']}: "
                          f"{f['stocks_share_of_budget']:.0%} of its {usd(f['budget_usd'])}, leaving {usd(f['left_for_projects_usd'])} for projects."
                          + (f" {f['other_holders']}" if f.get("other_holders") else "")
                          if f.get("budget") else
                          f" {f['participant']}'s stocks ({usd(f['stocks_to_buy_usd'])} to buy) have no funding line: {f['funds']}"
                          + (f": about {usd(float(f['carrying_cost_usd_per_year']))} a year (capital, storage and the lines' fixed costs)."
                             if f.get("carrying_cost_usd_per_year") else "."))
                         # review 25: the balance-sheet side beside the budget line
                         + (f" Beside that, their value is expected to fall by about {usd(float(f['expected_value_loss_usd_per_year']))} a year "
                            f"(a write-down of about {usd(float(f['write_down_if_relaxed_usd']))} if the controls behind their prices are relaxed)."
                            if float(f.get("expected_value_loss_usd_per_year") or 0.0) > 0 else "")
                         for f in pf.get("stock_funding") or [] if float(f.get("stocks_to_buy_usd") or 0.0) > 0),
               ((f" {_nodes(md.get('not_stocked_proxy_demand', []), 'listed ')} not stocked because the participant's consumption there "
                  "is a proxy, not a published figure." if md.get("not_stocked_proxy_demand") else "")
               + (f" {_nodes(md['not_stocked_same_consumption'])} not stocked because the same consumption figure is "
                  "stocked at another stage of the material, where its need is largest (ore and refined metal would hold one need twice)."
                  if md.get("not_stocked_same_consumption") else "")
               + (f" {_nodes(md['not_stocked_net_exporter'])} not stocked because the participant is a net exporter there "
                  "(its own output covers its use)." if md.get("not_stocked_net_exporter") else "")
               + (f" {_nodes(md['not_stocked_unusable_form'], 'ore ')} not stocked because no plant of the participant could use "
                  "them (" + "; ".join(f"{x['participant']} {x['node']}" for x in md["not_stocked_unusable_form"]) + ")."
                  if md.get("not_stocked_unusable_form") else "")
               + (f" {_nodes(md['not_stocked_basket'])} not stocked because each would be "
                  + "; ".join(sorted({x["reason"] for x in md["not_stocked_basket"]})) + " ("
                  + "; ".join(f"{x['participant']} {x['node']}" for x in md["not_stocked_basket"]) + ")."
                  if md.get("not_stocked_basket") else "")
               + (f" {_nodes(md['not_held_fixed_cost'])} not held because each would save less a year than the fixed cost of a stock line "
                  f"({usd(md.get('fixed_cost_usd_per_line_year', 0.0))} a year: "
                  + "; ".join(f"{x['participant']} {x['node']} {x['stock_t']:,.0f} t saving {usd(x['saving_usd'])}" for x in md["not_held_fixed_cost"])
                  + ")." if md.get("not_held_fixed_cost") else "")
               + (" Shortfalls of ore that no plant of the participant takes are met by the stock of the next stage ("
                  + "; ".join(sorted({f"{x['participant']} {x['from']} at {x['node']}" for x in md["ore_shortfall_met_downstream"]}))
                  + ")." if md.get("ore_shortfall_met_downstream") else ""))]
    ahead_note = _year_ahead_note(st, pf, buyers)
    if ahead_note:
        p_stock.append(ahead_note)
    after = [r for r in (st.to_dict("records") if len(st) else []) if r["participant"] in ("USA", "JPN") and r["optimal_stock_t"] > 0
             and r.get("stock_after_projects_t") is not None and pd.notna(r.get("stock_after_projects_t"))
             and float(r["stock_after_projects_t"]) < float(r["optimal_stock_t"]) - 0.5]
    if after:
        # review 22: the fall rested on a project the answer calls conditional (Stibnite) and on a permitting-only pick
        # at 0.40 completion (White Mesa Phase 2); each fall names its projects, and a conditional one says so

        def _expected(x: dict[str, Any]) -> str:
            # review 28 F4: the model's month (as in the deliveries), the sponsor's date beside it
            when = x.get("first_output_expected")
            sponsor = x.get("first_output") or "not dated"
            if not when:
                return str(sponsor)
            if x.get("status_class") == "operating":
                return f"now (producing since {sponsor})"  # review 34 H7: new since the node's base year
            if x.get("status_class") == "commissioning" and x.get("sponsor_date_passed"):
                # review 33b G2: a plant in commissioning since a past date produces now; "expected ... passed" read as a delay
                return f"now (in commissioning since {sponsor})"
            # review 34 H12: a sponsor's year that the model moves later says why (the class's typical slip, an assumption)
            later = (not x.get("sponsor_date_passed") and re.match(r"\d{4}", str(sponsor)) is not None
                     and str(when)[:4] > str(sponsor)[:4])
            return (f"{when} (sponsor: {sponsor}{', passed' if x.get('sponsor_date_passed') else ''}"
                    + ("; later by the typical slip of its status class, an assumption" if later else "") + ")")

        described: set[str] = set()
        buyer_rows = buyers.to_dict("records") if buyers is not None and len(buyers) else []

        def _on(node: str, j: str) -> str:
            ps = [x for x in pf.get("selected") or [] if (x.get("node") == node or node in (x.get("co_product_output_once_producing_t_per_year") or {}))
                  and not contracted_elsewhere(str(x["project_id"]), j, buyer_rows)]
            # review 26: and the projects already financed whose output is ahead (Stibnite after EXIM's approval)
            fin = [x for x in pf.get("financed_pipeline") or [] if (x.get("node") == node or node in (x.get("co_product_nameplate_t_per_year") or {}))
                   and not contracted_elsewhere(str(x.get("project_id") or ""), j, buyer_rows)]
            # review 34: a project already described (Stibnite's smelter caveat ran twice) is named once in full
            out = []
            for x in ps:
                key = str(x["project_id"])
                t_o = x.get("months_to_output")
                out.append(f"{x.get('name') or key}" + ("" if key in described else
                           f" ({'conditional, ' if key in cond else ''}completion {float(x.get('completion_probability') or 0.0):.2f}"
                           + (f", first output in about {float(t_o):.0f} months" if t_o is not None and np.isfinite(float(t_o)) else "") + ")"))
                described.add(key)
            for x in fin:
                key = str(x.get("project_id") or x["name"])
                out.append(f"{x['name']}" + ("" if key in described else
                           f" ({'already financed' if str(x.get('financed_basis') or '').startswith('counted') else 'new since the base year of the node' if str(x.get('financed_basis') or '').startswith('producing since') else 'coming with or without support'}, "
                           f"{x['status_class']}, {'output' if _expected(x).startswith('now') else 'first output expected'} {_expected(x)}, completion "
                           f"{float(x['completion_probability']):.2f}" + (f"; {x['output_caveat']}" if x.get("output_caveat") else "") + ")"))
                described.add(key)
            return ", ".join(out)
        # review 34: one note per line (the falls were one note of over 500 words)
        p_stock.append("Once the recommended projects and those already financed or being built produce, the stocks at their nodes can "
                       "fall: each participant receives its share of a project's output, not all of it (its demand over the market the "
                       "disruption rations outside the dominant supplier, or what its buyers' contracts hold), and a stock is drawn down "
                       "as that output arrives, not on its expectation"
                       + (", and one resting on a conditional project stays if that project is not funded" if any(
                           x["project_id"] in cond for x in pf.get("selected") or []) else "") + ".")
        for r in sorted(after, key=lambda r: float(r["stock_after_projects_t"]) - float(r["optimal_stock_t"])):
            share = r.get("share_of_projects_supply")
            p_stock.append(f"{r['participant']} {r['node']}: {float(r['optimal_stock_t']):,.0f} t to {float(r['stock_after_projects_t']):,.0f} t"
                           + (f" on {o}" if (o := _on(r["node"], r["participant"])) else "")
                           + (f"; its share of the projects' open output {float(share):.0%}" if share is not None and pd.notna(share) else "") + ".")
    pools = [r for r in (st.to_dict("records") if len(st) else []) if str(r["participant"]).startswith("POOL(")
             and float(r.get("optimal_stock_t") or 0.0) > 0 and "pool_recommended" in r]
    if pools:
        # review 21: pool rows restated their members' stocks for almost no gain; the answer says where sharing is worth
        # an agreement and where the members keep their own lines
        yes = sorted((r for r in pools if r["pool_recommended"] is True), key=lambda r: -float(r["pooling_saving_usd"]))
        no = [r for r in pools if r["pool_recommended"] is not True]
        cost = usd(float(md.get("pool_agreement_cost_usd_per_year") or 0.0))
        p_stock.append(" A joint stock of the participants instead of their own lines "
                    + ("is worth an agreement at " + "; ".join(f"{r['node']} (saves {usd(float(r['pooling_saving_net_usd']))} a year net of it)"
                                                                for r in yes)
                       if yes else "is worth an agreement at no node")
                    + (f"; at {len(no)} {'more ' if yes else ''}node{'s' if len(no) > 1 else ''} the saving is less than the {cost} a year an "
                       f"agreement is assumed to cost, or not clear of twice its sampling error (at most {usd(max(float(r['pooling_saving_usd']) for r in no))} "
                       "before that cost): the members hold their own lines; their shortfalls come from the same disruptions, so "
                       "sharing saves little" if no else "")
                    + ".")
    if few:
        p_stock.append(f" A further {len(few)} stocks ({usd(sum(few))}, not in the totals above) rest on fewer than {FEW_DRAWS} simulated "
                    "years with a shortfall; rerun with more draws before buying them.")
    # review 18b: a stock on a control in force is drawn in most simulated years and counted full again the next
    # year; the buy-back is charged its premium while the control holds (docs/stockpile.md §2), and where the saving
    # a year still exceeds the stock's cost, the reader is told what that rests on
    ruled = [x for x in firm if x.get("extra_cost_of_60_days_usd_per_year") is not None]
    if ruled:
        # review 23: the optimum is flat; a ministry asks how far its own rule is from it
        extra = sum(float(x["extra_cost_of_60_days_usd_per_year"]) for x in ruled)
        usd60 = sum(float(x["stock_usd_at_60_days"]) for x in ruled)
        worst = max(ruled, key=lambda x: float(x["extra_cost_of_60_days_usd_per_year"]))
        saving = sum(float(x.get("expected_saving_usd_per_year") or 0.0) for x in ruled)
        p_stock.append(f" Holding the same {len(ruled)} lines at 60 days of consumption instead (JOGMEC's base rule, each capped as "
                    f"above) would cost {usd(extra)} a year more in expected cost, for {usd(usd60)} of stock instead of "
                    f"{usd(sum(float(x['stock_usd']) for x in ruled))}"
                    + (f"; most at {worst['participant']} {worst['node']} ({usd(float(worst['extra_cost_of_60_days_usd_per_year']))} a year)"
                       if float(worst["extra_cost_of_60_days_usd_per_year"]) > 0 else "")
                    + (f": the rule keeps {1.0 - extra / saving:.0%} of the optimum's saving of {usd(saving)} a year (the optimum is flat)"
                       if saving > 0 else "") + ".")
    quick = [x for x in firm if float(x.get("expected_saving_usd_per_year") or 0.0) > float(x.get("stock_usd") or 0.0) > 0]
    if quick:
        top_q = max(quick, key=lambda x: float(x["expected_saving_usd_per_year"]) / float(x["stock_usd"]))
        p_stock.append(" Every stock listed saves more a year than it costs to hold (holding and the fixed cost of a line); "
                    f"{len(quick)} {'save' if len(quick) > 1 else 'saves'} more a year than "
                    f"{'their purchase price' if len(quick) > 1 else 'its purchase price'} (at most {top_q['participant']} {top_q['node']}, "
                    f"{float(top_q['expected_saving_usd_per_year']) / float(top_q['stock_usd']):.1f} times): each release is bought "
                    "back within a year, at the simulated price while the control still holds (1 minus its annual chance of "
                    "relaxation) and at the baseline price after it; a dearer buy-back saves less, and waiting for the "
                    "control to lapse before buying back pays less but leaves the stock empty meanwhile.")
    # review 23: DLA's plans and requests for materials the plan does not stock, and why
    h = read_holdings()
    live = h[(h["country_iso3"] == "USA") & (h["kind"] == "acquisition_plan") & (h["commodity_id"] != "*")
             & ~h.get("status", pd.Series("", index=h.index)).astype(str).str.startswith("cancelled")]
    not_held = sorted(set(live["commodity_id"]) - {str(x["node"]).split("/")[0] for x in firm if x["participant"] == "USA"})
    if not_held:
        p_stock.append(f" DLA is buying or has asked for offers of {', '.join(c.replace('_', ' ') for c in not_held)} (holdings.csv), which "
                    "the plan does not stock for the United States: its stocks rest on the economy-wide loss the model simulates, "
                    "not on the National Defense Stockpile's requirements.")
    # review 24: lines sized on an estimated or stale consumption figure are named (their size is as uncertain)
    rows_by = {(r["participant"], r["node"]): r for r in (st.to_dict("records") if len(st) else [])}
    shaky = [x for x in firm if any(("an estimate" in f or "stale" in f) and f.startswith(x["participant"] + " ")
                                    for f in rows_by.get((x["participant"], x["node"]), {}).get("flags") or [])]
    if shaky:
        p_stock.append(f" {len(shaky)} line{'s rest' if len(shaky) > 1 else ' rests'} on a consumption figure that is an estimate or "
                    "older than five years (" + "; ".join(f"{x['participant']} {x['node']}" for x in shaky)
                    + "): the size is as uncertain as that figure (each row's flags).")
    share = md.get("purchase_share_of_market_per_year")
    # review 25: both participants buy the same market at once; the years to fill are the bloc's at each node (the
    # participants' lines summed over the same market), each line's own years in its row
    bloc_years: dict[str, float] = {}
    for x in firm:
        if x.get("years_to_fill") is not None:
            bloc_years[x["node"]] = bloc_years.get(x["node"], 0.0) + float(x["years_to_fill"])
    slow = sorted(((n, y) for n, y in bloc_years.items() if round(y, 1) > 1.0), key=lambda t: -t[1])
    if share and slow:
        # review 24: some stocks were larger than a year's market outside China; each node says how long the bloc's
        # lines take to fill at a buying rate that does not move the price much
        p_stock.append(f" Bought at {share:.0%} of a year's market outside the dominant supplier's home use (an assumption: "
                    "buying faster moves the price, which the stock's cost does not include), the bloc's lines take more than a "
                    f"year to fill at {len(slow)} node{'s' if len(slow) > 1 else ''} ("
                    + "; ".join(f"{n} {y:.1f} years" for n, y in slow) + ").")
    bought_at: dict[str, float] = {}
    for x in firm:
        bought_at[x["node"]] = max(bought_at.get(x["node"], 1.0), float(x.get("purchase_price_ratio", 1.0)))
    dearer = _dearer_since_baseline(plan, bought_at)
    # review 23: antimony and tungsten stocks were bought at the simulated price, below the observed benchmarks; every
    # participant line with an observed benchmark (held today or not) carries the simulated price as its low case
    all_rows = st[st["participant"].isin(["USA", "JPN"])].to_dict("records") if len(st) else []
    with_low = [r for r in all_rows if pd.notna(r.get("optimal_stock_usd_at_simulated_price"))
                and float(r.get("optimal_stock_t") or 0.0) + float(r.get("optimal_stock_t_at_simulated_price") or 0.0) > 0]
    seen_obs = {r["node"] for r in with_low}
    squeezed = sorted({(x["node"], x.get("purchase_price_ratio", 1.0)) for x in firm if x.get("purchase_price_ratio", 1.0) > 1.005
                       and x["node"] not in seen_obs}, key=lambda t: -t[1])
    obs = sorted({(r["node"], float(r["purchase_price_ratio"]), float(r["purchase_price_ratio_simulated"]),
                   str(r.get("purchase_price_basis", ""))) for r in with_low}, key=lambda t: -t[1])
    if obs:
        now_usd = sum(float(r["optimal_stock_usd"]) for r in with_low)
        low_usd = sum(float(r["optimal_stock_usd_at_simulated_price"]) for r in with_low)
        tot = sum(float(x["stock_usd"]) for x in firm)
        dropped = [r for r in with_low if float(r["optimal_stock_t"]) <= 0 < float(r["optimal_stock_t_at_simulated_price"])]

        def _as_of(basis: str) -> str:
            m = re.search(r", (\d{4}-\d{2}): ", basis)
            return f", {m.group(1)}" if m else ""
        p_stock.append(" Where a benchmark price has been observed since the controls, a stock is bought at it ("
                    + "; ".join(f"{n} x{r:.2f}{_as_of(b)} against x{r_s:.2f} simulated" for n, r, r_s, b in obs)
                    + ": purchase_prices.csv), and a stock bought above the baseline price is charged the expected fall of its "
                    "value, down to the restrictor's home price where it is observed (else to the baseline), if the control behind it "
                    "is relaxed for every buyer (the regime model's annual chance: "
                    + ", ".join(f"{w} {p_:.1%}" for w, p_ in sorted({(str(r.get("relaxation_of") or ""), round(float(r.get("relaxation_probability") or 0.0), 4))
                                                                      for r in all_rows if r.get("relaxation_of") and float(r.get("purchase_price_ratio") or 1.0) > 1.005}))
                    + "; a relaxation for one destination's end users alone, such as China's November 2025 general licences for "
                    "U.S. end users, is not counted, as in the risk ranking"
                    + "); sized "
                    f"and bought at the simulated price instead, these {len(with_low)} lines would cost {usd(low_usd)} instead of "
                    f"{usd(now_usd)}, the firm stocks about {usd(tot - now_usd + low_usd)} instead of {usd(tot)}"
                    + (". Not held at today's price: " + "; ".join(
                        f"{r['participant']} {r['node']} ({float(r['optimal_stock_t_at_simulated_price']):,.0f} t at the simulated price)"
                        for r in dropped) + ": at the observed price its holding cost, the expected fall in its value included, "
                       "exceeds what a tonne released saves" if dropped else "")
                    + ". The savings are valued at the simulated prices, which under-predict these moves (validation.md §3): "
                    "a dearer market would raise both what a released tonne saves and what its buy-back costs.")
    if squeezed or dearer:
        # review 9/10: stocks were valued at the baseline price while controlled materials cost several times more;
        # review 19b: they are now bought at the simulated price under the controls in force since the baseline
        p_stock.append(f" The {'other ' if obs else ''}costs are at the model's baseline node prices (mostly 2024)"
                    + (", except where a control in force since then raises today's price: those stocks are bought at the "
                       "simulated mean price under it (" + "; ".join(f"{n} x{r:.2f}" for n, r in squeezed) + ")" if squeezed else "")
                    + (". Quoted spot prices outside China rose further after those controls (" + "; ".join(dearer)
                       + ", observed in the back-test, whose moves the model under-predicts: validation.md §3); "
                       "the largest rises are thin-market quotes (most yttrium oxide traded in 2025 near US$6.50/kg while Rotterdam "
                       "asked US$220-320/kg: validation.md §4), not the price of a stockpile's volume." if dearer else "."))

    dl = plan["deliveries"]
    al = pd.DataFrame(dl["allocation"])
    del_rows = []
    if len(al) and buyers is not None and len(buyers):
        b = buyers.set_index("buyer_id")
        al = al.assign(country=al["buyer_id"].map(b["country_iso3"]), commodity=al["buyer_id"].map(b["commodity_id"] + "/" + b["stage"]))
        g2 = al.groupby(["country", "commodity"])["tonnes"].sum()
        # review 21: what comes from plants producing before the plan is trade the buyers already have
        g_new = (al[al["supply"] == "new"].groupby(["country", "commodity"])["tonnes"].sum() if "supply" in al.columns
                 else pd.Series(np.nan, index=g2.index))
        # review 27: tonnes into a government stockpile (the NDS releases only for defence) are not supply to industry
        kinds = b["kind"].astype(str) if "kind" in b.columns else pd.Series("", index=b.index)
        g_stock = al[al["buyer_id"].map(kinds) == "stockpile"].groupby(["country", "commodity"])["tonnes"].sum()
        del_rows = [{"receiving_country": k[0], "node": k[1], "tonnes": float(v), "tonnes_from_new_supply": float(g_new.get(k, 0.0))
                     if "supply" in al.columns else None, "tonnes_into_stockpiles": float(g_stock.get(k, 0.0))} for k, v in g2.items() if v > 0]
    countries = sorted({r["receiving_country"] for r in del_rows})

    def _new(r: dict[str, Any]) -> str:
        n = r.get("tonnes_from_new_supply")
        if n is None:
            return ""
        into = float(r.get("tonnes_into_stockpiles") or 0.0)
        return ((" (all from plants producing before the plan: trade the buyers already have" if n < 0.5 else
                 " (all new supply" if n > r["tonnes"] - 0.5 else f" ({n:,.0f} t new supply, the rest from plants already producing")
                + (f"; {into:,.0f} t of it into a government stockpile, not supply to industry" if into >= 0.5 else "") + ")")
    p_del = [(f"In the next {plan['metadata'].get('delivery_months', 6)} months allied projects deliver to buyers in {', '.join(countries) or 'no country'}: "
             + "; ".join(f"{r['receiving_country']} {r['tonnes']:,.0f} t of {r['node']}{_new(r)}" for r in sorted(del_rows, key=lambda x: -x["tonnes"])[:6]) + ".")]
    new_total = sum(float(r.get("tonnes_from_new_supply") or 0.0) for r in del_rows)
    # review 26: a plant producing before the plan delivers only on the contracts that name it (deliver.plan); the rest
    # of its output is existing trade, on terms the plan does not see
    kept_out = sorted(((str(x.get("name") or x["project_id"]), str(x.get("node") or ""), float(x.get("capacity_t") or 0.0) - float(x.get("delivered_t") or 0.0))
                       for x in dl.get("projects", []) if x.get("supply") == "existing"
                       and float(x.get("capacity_t") or 0.0) - float(x.get("delivered_t") or 0.0) >= 0.5), key=lambda x: -x[2])
    if kept_out:
        p_del.append(" Plants producing before the plan deliver only on contracts that name them; the rest of their output in the window is "
                  "trade the buyers already have, on terms the plan does not see, and is not allocated here ("
                  + "; ".join(f"{n} {t:,.0f} t" + (f" of {node}" if node else "") for n, node, t in kept_out[:5])
                  + (f"; {len(kept_out) - 5} more" if len(kept_out) > 5 else "") + ").")
    if del_rows and all(r.get("tonnes_from_new_supply") is not None for r in del_rows) and new_total < 0.5:
        p_del.insert(1, "None of it is new supply: every delivering plant was producing before the plan.")
    # named buyers (offtakers, stockpiles, users) left short are unmet needs; a national aggregate is the whole
    # apparent consumption, mostly met by trade outside the register: its coverage is reported, not a shortfall
    kind = dict(zip(buyers["buyer_id"], buyers["kind"].astype(str), strict=True)) if buyers is not None and len(buyers) else {}
    short = [r for r in dl["buyers"] if (r.get("shortfall_t") or 0) > 0 and kind.get(r["buyer_id"]) != "aggregate"]
    # review 21: the unmet needs were led by offtakes bound to plants not yet built (SK On's 5,000 t from Westwater's
    # Kellyton, Caremag's heavy oxides for Japan); such a buyer is waiting for its plant, which no other supply fills
    supplying = {str(x["project_id"]) for x in dl.get("projects", []) if float(x.get("capacity_t") or 0.0) > 0}
    # review 22: Vidalia is built (its offtaker Tesla disputes qualification); "produces nothing" is not "not built"
    idle_built = {str(x["project_id"]) for x in dl.get("projects", []) if float(x.get("capacity_t") or 0.0) <= 0
                  and x.get("supply") == "existing"}
    contract = {str(b["buyer_id"]): contract_of(b) for b in (buyers.to_dict("records") if buyers is not None and len(buyers) else [])}
    waiting = {str(r["buyer_id"]) for r in short if contract.get(str(r["buyer_id"])) and not contract[str(r["buyer_id"])] & supplying}
    short = sorted(short, key=lambda x: (str(x["buyer_id"]) in waiting, -float(x["shortfall_t"])))
    unmet_rows = [{"buyer": r["name"], "node": r["node"], "need_t": float(r["demand_t"]), "delivered_t": float(r["delivered_t"]),
                   "short_t": float(r["shortfall_t"]),
                   "why": ("offtake bound to " + ", ".join(sorted(contract[str(r["buyer_id"])]))
                           + (", which produce" if len(contract[str(r["buyer_id"])]) > 1 else ", which produces") + " nothing in the window"
                           + "".join(f" ({pid} is built but reports no output)" for pid in sorted(contract[str(r["buyer_id"])] & idle_built))
                           if str(r["buyer_id"]) in waiting else "short: the allied plants producing in the window do not cover it")}
                  for r in short]
    open_short = [u for r, u in zip(short, unmet_rows, strict=True) if str(r["buyer_id"]) not in waiting]
    waits = [u for r, u in zip(short, unmet_rows, strict=True) if str(r["buyer_id"]) in waiting]
    agg = [r for r in dl["buyers"] if kind.get(r["buyer_id"]) == "aggregate" and float(r.get("demand_t") or 0) > 0]
    # an aggregate filled by an element node (NdPr for rare earths) without an element split of its own: the share
    # says how much of the aggregate's tonnage that element supplied (the U.S. rare-earth users are mostly
    # catalyst and glass makers, docs/deliver.md)
    def node_of(node: str) -> str:
        return str(node).split("/")[0]

    by_elem = (al[al["buyer_id"].isin([r["buyer_id"] for r in agg]) & al["project_node"].fillna("").str.split("/").str[0]
                  .map(lambda c: c in AGGREGATE_OF)].groupby(["buyer_id", "project_node"])["tonnes"].sum()
               if len(al) and "project_node" in al.columns else pd.Series(dtype=float))

    def _elements(r: dict[str, Any]) -> str:
        """Which element nodes supplied an aggregate row: on a row that names its elements (a split aggregate),
        what actually came (review 7: "[heavy (Dy/Tb), light (NdPr)] 100%" was all NdPr); on one that names
        none, the warning that not every user of the aggregate can take it."""
        if node_of(r["node"]) in AGGREGATE_OF:
            return ""  # an element's own row
        parts = [f"{v / float(r['delivered_t']):.0%} of it {node_of(node)}" for (bid, node), v in by_elem.items()
                 if bid == r["buyer_id"] and v > 0 and float(r["delivered_t"]) > 0]
        wanted = form_tags(str(r["name"]), node_of(r["node"])).get("rare-earth group", set())
        missing = sorted(wanted - _groups_came(r["buyer_id"]))
        if missing and float(r["delivered_t"]) > 0:
            # review 9: "USA ... [heavy (Dy/Tb), light (NdPr), medium (Sm/Eu/Gd)] 100 %" named groups none of whose
            # tonnes came: the groups the row is for that no delivery states are named
            parts.append(f"no delivery stated as {' or '.join(missing)}")
        if not parts:
            return ""
        named = any(form_tags(str(r["name"]), node_of(r["node"])).values())
        return f" ({'; '.join(parts) if missing else ', '.join(parts)}" + ("" if named else ", which not every user of the aggregate can take") + ")"

    def _groups_came(buyer_id: str) -> set[str]:
        """Rare-earth groups the deliveries to a buyer state: an element node's own group, else the groups the
        project's name states (an unlabeled project states none)."""
        if not len(al) or "project_node" not in al.columns:
            return set()
        came: set[str] = set()
        for a in al[al["buyer_id"] == buyer_id].to_dict("records"):
            c = str(a.get("project_node") or "").split("/")[0]
            came |= form_tags(str(a.get("project") or ""), c, "rare_earths").get("rare-earth group", set())
        return came

    def _label(r: dict[str, Any]) -> str:
        """Country and node, and the element groups when the row names them (an aggregate split by element)."""
        groups = sorted(form_tags(str(r["name"]), node_of(r["node"])).get("rare-earth group", set()))
        # no ';' inside a label: the sentence separates its entries with '; '
        est = " (estimated split)" if "estimated split" in str(r["name"]) else ""
        return f"{r['name'].split(' ')[0]} {r['node']}" + (f" [{', '.join(groups)}]{est}" if groups else "")

    shown = [r for r in sorted(agg, key=lambda x: -float(x["delivered_t"]) / float(x["demand_t"])) if float(r["delivered_t"]) > 0][:5]
    # the rows of the same country and node that got nothing are shown beside them (review 8: the U.S. La + Ce row,
    # 0 %, was left out beside "USA rare_earths/refine ... 100 %")
    keys = {(str(r["name"]).split(" ")[0], r["node"]) for r in shown}
    shown += [r for r in agg if float(r["delivered_t"]) <= 0 and (str(r["name"]).split(" ")[0], r["node"]) in keys]
    new_by_buyer = (al[al["supply"] == "new"].groupby("buyer_id")["tonnes"].sum() if len(al) and "supply" in al.columns else None)

    def _existing(r: dict[str, Any]) -> str:
        """Review 21: Japan's NdPr 'covered 100 %' was Lynas' existing trade, not new supply."""
        if new_by_buyer is None or float(r["delivered_t"]) <= 0:
            return ""
        n = float(new_by_buyer.get(r["buyer_id"], 0.0))
        return " from plants already producing (existing trade)" if n < 0.5 else "" if n > float(r["delivered_t"]) - 0.5 else (
            f" ({n / float(r['delivered_t']):.0%} of it new supply)")
    def _share(x: float) -> str:
        """A share for the sentence; a positive share that rounds to 0 % reads "under 1%" (review 36)."""
        return "under 1%" if 0 < x < 0.005 else f"{x:.0%}"

    coverage = "; ".join(f"{_label(r)} {_share(float(r['delivered_t']) / float(r['demand_t']))}{_existing(r)}{_elements(r)}" for r in shown)
    p_unmet = [(f"{len(open_short)} named buyers stay short over the window, the largest {open_short[0]['buyer']} "
                f"({open_short[0]['short_t']:,.0f} t of {open_short[0]['node']})." if open_short else
                "No named buyer stays short over the window" + (" other than offtakes waiting for their plant." if waits else ".")),
               (f" {len(waits)} {'more ' if open_short else ''}named buyers are offtakes bound to plants that produce nothing in the window (the largest "
                  f"{waits[0]['buyer']}, {waits[0]['short_t']:,.0f} t of {waits[0]['node']}): they wait for their plant, and no other "
                  "supply can fill their contract." if waits else ""),
               f" {len(dl.get('buyers_not_planned', []))} buyers publish no volume and are not planned.",
               (f" Allied projects cover these shares of national consumption: {coverage}." if coverage else "")]
    # review 36 (N11): "no named buyer stays short" hid that most national consumption rows get nothing in the window
    nothing = [r for r in agg if float(r["delivered_t"]) <= 0]
    if nothing:
        p_unmet.append(f" {len(nothing)} of the {len(agg)} national consumption rows receive nothing from allied projects in the window ("
                       + ", ".join(_label(r) for r in nothing[:8]) + (f" and {len(nothing) - 8} more" if len(nothing) > 8 else "")
                       + "): their supply is today's trade.")
    # review 34 H11: the coverage counted the national aggregates only; the tonnes to named buyers (GTP's tungsten, GM's
    # magnets) are a participant's supply too
    country_of = dict(zip(buyers["buyer_id"], buyers["country_iso3"].astype(str), strict=True)) if buyers is not None and len(buyers) else {}
    use: dict[tuple[str, str], float] = {}
    for r in agg:
        k = (country_of.get(r["buyer_id"], ""), str(r["node"]))
        use[k] = use.get(k, 0.0) + float(r["demand_t"])
    total = [(r["receiving_country"], r["node"], float(r["tonnes"]) / use[(r["receiving_country"], r["node"])])
             for r in del_rows if use.get((r["receiving_country"], r["node"]), 0.0) > 0]
    if total:
        p_unmet.append("Counting every delivery, named buyers' included, allied projects cover "
                       + "; ".join(f"{c} {n} {_share(x)}" for c, n, x in sorted(total, key=lambda t: -t[2]))
                       + " of national consumption in the window.")

    val = plan.get("validation", {}).get("summary", {}).get("holdout", {})
    changes = []
    moved = _moved_by_valuation(risk, top)
    if val:
        share = val.get("median_move_share")
        changes.append(f"The disruption model reproduces {val.get('within_2x', 0):.0%} of held-out real price responses within a factor of two "
                       f"(target 80 %) and gets {val.get('direction_right', 0):.0%} of directions right"
                       + (f", but only a median {share:.0%} of the observed price moves" if share is not None and pd.notna(share) else "")
                       + ": thin markets (bismuth, tungsten, yttrium) spike beyond it, so the input-cost part of the losses is understated. "
                       "A tonne buyers give up at a higher price is valued at their surplus on it (half the price rise), a tonne rationed "
                       "at the choke price at the mean value of the uses that would pay it (at most the output it enables)"
                       + (f"; valued as output lost, as in the USGS input-output convention, the bloc's loss would be {usd(ranked_io)} a "
                          f"year instead of {usd(ranked_loss)}" if ranked_io > ranked_loss else "")
                       + (f", and {moved}" if moved else "")
                       + " (docs/simulation.md §7, docs/validation.md).")
    for key, why in list(unspent.items())[:3]:
        changes.append(f"Budget {key}: {why}. More projects with capex and capacity in the register would change the portfolio.")
    # a suspended control (status unknown after its suspension) weighs in at the assumed probability: say what
    # the priority would be if it lapsed and if it returned (its contribution scaled to probability 0 and 1)
    # review 32: also each participant's top five (U.S. nickel-based cathode, 5th for the USA and 7th for the bloc,
    # rests for 94 % on E023's suspended precursor licence)
    said: set[str] = set()
    said_events: set[str] = set()
    ranked = [("", r) for r in plan["scenarios"][:5]] + [
        (f"{PARTICIPANT_NAMES.get(j, j)}, ", r) for j, rows in (plan.get("participant_risk") or {}).items() for r in (rows or [])[:5]]
    for who, r in ranked:
        if r.get("name") in said or not r.get("expected_loss_usd") or not pd.notna(r.get("expected_loss_usd")):
            continue
        susp = [x for x in (r.get("top_scenarios") or []) if x.get("status") == "suspended" and 0 < float(x["probability"]) < 1]
        # an outcome on top of a control in force adds P (L_k - L_C) (simulation.md section 11): lapsed, its probability
        # falls back to the control; back in force, the control's probability moves to it
        extra = [float(x["expected_loss_usd"]) - float(x.get("base_loss_usd", 0.0)) for x in susp]
        part = sum(float(x["probability"]) * e for x, e in zip(susp, extra, strict=True))
        if part > 0.25 * float(r["expected_loss_usd"]):
            said.add(str(r.get("name")))
            said_events.update(str(x["scenario"]).split(".")[1] for x in susp if str(x["scenario"]).startswith("ev."))
            back = sum((1.0 - float(x["probability"])) * e for x, e in zip(susp, extra, strict=True))
            on_input = any(x.get("on_input") for x in susp)
            changes.append(
                f"{r['name']} ({who}rank {int(r['rank'])}) rests for {part / float(r['expected_loss_usd']):.0%} of its expected loss on a suspended "
                f"control ({', '.join(x['scenario'] for x in susp)}) counted at probability {float(susp[0]['probability']):g} (an assumption): "
                f"{usd(float(r['expected_loss_usd']) - part)} a year if it has lapsed, {usd(float(r['expected_loss_usd']) + back)} if it "
                "is back in force. " + _suspension_status(susp, plan)
                + ("The control acts on an input of the node: what it stops is the output made from that input elsewhere, and "
                   "its size turns on whether the restrictors' own output can replace it (for E023's precursors, from a "
                   "quarter to three times the figure here: docs/validation.md §6). " if on_input else "")
                + "Check its status before acting on this rank.")
    changes += _suspended_not_simulated(plan)
    aimed = (plan.get("metadata") or {}).get("in_force_not_simulated") or []
    if aimed:
        # review 34 H9: China's 2026 measures against Japanese users were not named
        changes.append("In force, aimed at a participant, and not simulated (they raise the regime model's rates of tightening and of "
                       "bans on a participant, docs/simulation.md §10): "
                       + "; ".join(f"{x['event_id']} ({x['measure']}; {x['targets']}; {x['commodities']})" for x in aimed)
                       + ". No volume they stop is published; at the nodes they reach, the licences in force for every destination "
                         "already withhold most exports in the model, so a row of their own "
                         "would count the same tonnes twice (docs/validation.md §6, review 21).")
    # review 34 H9: the other suspensions that ended before the plan's month (E015, the U.S.-specific ban on gallium,
    # germanium and antimony, on 2026-11-27) were not named, though a reader looks for them first
    md_ = plan.get("metadata") or {}
    until, as_of = md_.get("suspended_until") or {}, str(md_.get("as_of") or "")[:7]
    not_sim = {str(x.get("event_id")) for x in md_.get("suspended_not_simulated") or []}
    lapsed = sorted(e for e, d in until.items() if as_of and str(d)[:7] < as_of and e not in said_events and e not in not_sim)
    if lapsed:
        changes.append("Also suspended until before the plan's month, with no later status recorded, and counted at their assumed "
                       "probability: " + "; ".join(f"{e} (until {until[e]})" for e in lapsed)
                       + ". None carries a quarter of any top-five loss of the bloc or a participant. A measure aimed at one "
                         "participant costs it little in the model, because the withheld exports go to third countries whose other "
                         "suppliers then sell to it (after China's December 2024 gallium ban on the USA, U.S. import unit values rose "
                         "32 % over the year: docs/validation.md §5). Check their status.")
    # review 32 F6: use that starts after the base year (U.S. LFP cathode: nil in 2024, the plants of 2025-2026 at their
    # nameplate) is not in the ranking; say so where the data hold a higher figure
    later = [(str(r["name"]), str(f)) for r in plan["scenarios"] for f in (r.get("flags") or [])
             if "consumption nil in" in str(f) and "not simulated" in str(f)]
    if later:
        changes.append("Not in the ranking: use that began after the base year. "
                       + "; ".join(f"{name}: {flag.split(': that use')[0]}" for name, flag in later)
                       + ". The simulation uses the base year's nil, so these materials rank low; rerun with the newer "
                         "figure as consumption to rank them (docs/validation.md §6).")
    changes += _portfolio_assumptions(plan.get("portfolio", {}))
    # review 9: the caveat named commodities by a word in their flags (rare earths, 0.05 % of its loss on proxies) and
    # missed those whose loss rests mostly on them (battery cathode, 100 %); the risk rows carry the share
    flagged = [(r["name"], float(r.get("proxy_share_of_loss") or 0.0)) for r in plan["scenarios"][:top]
               if float(r.get("proxy_share_of_loss") or 0.0) >= PROXY_SHARE_STATED]
    if flagged:
        changes.append("Figures for " + ", ".join(f"{n} ({s:.0%} of its loss)" for n, s in flagged)
                       + " rest on flagged proxies, stale figures or assumptions (proxy_share_of_loss); sourced figures could move their rank.")
    parts = {k: [x.strip() for x in v if x and x.strip()] for k, v in
             (("priorities", p_pri), ("financing", p_fin), ("stocks", p_stock), ("deliveries", p_del), ("unmet_needs", p_unmet))}
    return {
        "as_of": plan["metadata"].get("as_of"),
        # review 34: each part is its lead (the decision) and notes (what qualifies it); "sentences" keeps the whole text
        "sentences": {k: " ".join(v) for k, v in parts.items()},
        "parts": {k: {"lead": v[0], "notes": v[1:]} for k, v in parts.items()},
        "what_would_change": changes,
        "tables": {"priorities": pri_rows, "financing": fin_rows, "unspent_budgets": [{"budget": k, "why": v} for k, v in unspent.items()],
                   "stocks": stock_rows, "deliveries": del_rows, "unmet_needs": unmet_rows},
        "units": {"expected_loss_usd_per_year": "USD/yr, consumer loss of the participants (BLOC)", "face_amount_usd": "USD, face amount recommended",
                  "budget_cost_usd": "USD, credit-reform cost (negative: fees exceed expected losses)", "stock_t": "t on the node's basis",
                  "tonnes": "t on the node's basis, never added across nodes"},
    }
