"""Matching upstream supply offers with downstream needs: an assignment model, each pair scored and explained.

Offers are the register's projects outside the countries of concern with a capacity on their node's basis
(volume t/yr, first month available); needs are the buyers with a demand. A pair is **compatible** when it is
the same node (or an element node for its aggregate's buyer: ``critmin.deliver.forms``), the buyer's origin rule
admits the project's country, the project is one of the buyer's contract (``contract_projects``) where it has
one, and the product forms agree (``FORM_FAMILIES``: light vs heavy rare earths, oxide vs metal vs concentrate,
natural vs synthetic graphite; a family only one side states does not bar the pair; refused pairs are listed
with the reason). Its score (0-1) is a weighted sum
(critmin convention, ``SCORE_WEIGHTS``):

* volume: ``min(V_offer, V_need) / V_need`` (share of the need the offer could cover);
* timing: 1 if the offer is available when the need starts, else ``max(0, 1 - delay_months / 12)``;
* specification: word overlap (Jaccard) of the project's product and the buyer's stated form (``form``
  column, else its note), 0.5 when the buyer states nothing;
* origin: 1 for a participant's own supply, 0.8 for a like-minded partner, 0.6 otherwise.

The assignment: ``max Σ score_on x_on`` with ``x_on ∈ {0, 1}``, each need matched to at most one offer and
each offer's matched needs within its volume (``Σ_n V_n x_on <= V_o``, needs larger than the offer may
still take it alone), solved by HiGHS.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from critmin._dates import month_offset
from critmin.atlas.model import Atlas
from critmin.deliver.buyers import contract_of
from critmin.deliver.forms import FORM_FAMILIES, FORM_NODES, form_tags, node_serves, serve_conflict
from critmin.deliver.plan import _origin_ok

__all__ = ["FORM_FAMILIES", "FORM_NODES", "NOT_SUPPLYING", "SCORE_WEIGHTS", "match"]

SCORE_WEIGHTS = {"volume": 0.4, "timing": 0.3, "specification": 0.2, "origin": 0.1}
_WORD = re.compile(r"[a-z0-9]+")
_STOP = {"the", "and", "of", "for", "per", "t", "year", "from", "with", "in", "to", "a", "plant", "project", "facility"}


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def one_offer_per_need(h: Any, x: Any, pairs: list[dict[str, Any]]) -> None:
    """``Σ_o x_on <= 1``: each need is matched to at most one offer."""
    for ids in _groups(pairs, "buyer_id"):
        h.addConstr(x[np.array(ids)].sum() <= 1.0)


def offer_volume(h: Any, x: Any, pairs: list[dict[str, Any]]) -> None:
    """``Σ_n min(V_n, V_o) / V_o x_on <= 1``: an offer's matched needs within its volume (a single need larger than
    the offer may still take it alone)."""
    for ids in _groups(pairs, "project_id"):
        if len(ids) > 1:
            cap = pairs[ids[0]]["offer_t_per_year"]
            h.addConstr((np.array([min(pairs[i]["need_t_per_year"], cap) / cap for i in ids]) * x[np.array(ids)]).sum() <= 1.0)


def _groups(pairs: list[dict[str, Any]], key: str) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(str(p[key]), []).append(i)
    return list(groups.values())


#: Status classes of projects that cannot be matched to a buyer (abandoned or stopped).
NOT_SUPPLYING = ("unlikely", "paused")


def match(atlas: Atlas, projects: pd.DataFrame, buyers: pd.DataFrame, as_of: str | None = None) -> dict[str, Any]:
    """Scored compatible pairs and the optimal assignment (see module docstring)."""
    from critmin._dates import month_or_now
    from critmin.deliver.options import DeliveryOptions
    from critmin.inputs import make_options
    from critmin.lp import quiet_highs

    make_options(DeliveryOptions, as_of=as_of)  # checked before any work
    as_of = month_or_now(as_of)
    from critmin.portfolio.model import InstrumentParameters, months_before_output, reported_output_t

    ip = InstrumentParameters.load()
    refused: list[dict[str, Any]] = []
    offers = projects[projects["capacity_t"].notna() & (projects["capacity_t"] > 0) & ~projects["country_iso3"].isin(list(atlas.concern))]
    needs = buyers[buyers["demand_t_per_year"].notna() & (buyers["demand_t_per_year"] > 0)]
    pairs: list[dict[str, Any]] = []
    for o in offers.to_dict("records"):
        status = str(o["status_class"])
        if status in NOT_SUPPLYING:
            # an abandoned or paused project makes nothing a buyer can contract (review of 5 December 2026: the
            # abandoned Tennessee Lithium plant was matched as a supplier)
            refused.extend({"project_id": o["project_id"], "buyer_id": n["buyer_id"], "reason": f"project status '{status}': it is not going to supply"}
                           for n in needs.to_dict("records") if node_serves(o["commodity_id"], o["stage"], n["commodity_id"], n["stage"]))
            continue
        # the delivery plan's rule for when output starts (operating and commissioning now)
        avail: int | None = 0 if status in ("operating", "commissioning") else int(round(months_before_output(o, status, as_of, ip, [])))
        offer_text = f"{o.get('product') or ''} {o['name']}"
        # a producing plant offers what it reports making, not its nameplate (review 8: Vidalia, making test material
        # only, "covered 100 %" of Tesla's need); other projects offer their capacity
        reported = reported_output_t(o) if avail == 0 else None
        producing = reported is not None
        offer_t = reported if reported is not None else float(o["capacity_t"])
        offer_basis = f" at its reported output ({offer_t:,.0f} t a year)" if producing else ""
        if not offer_t > 0:
            # a producing plant that reports no output offers nothing (Vidalia, in customer qualification): no pair
            refused.append({"project_id": o["project_id"], "buyer_id": "", "reason": f"offers nothing: reported output {offer_t:,.0f} t a year"})
            continue
        for n in needs.to_dict("records"):
            if not node_serves(o["commodity_id"], o["stage"], n["commodity_id"], n["stage"]):
                continue
            if not _origin_ok(str(n["origin_rule"]), str(o["country_iso3"]), atlas):
                continue
            contract = contract_of(n)
            if contract and o["project_id"] not in contract:
                continue
            need_text = f"{n.get('form') or ''} {n['name']}"
            offer_tags = form_tags(offer_text, str(o["commodity_id"]), str(n["commodity_id"]))
            need_tags = form_tags(need_text, str(n["commodity_id"]))
            conflict = serve_conflict(o, n, offer_text, need_text)
            if conflict:
                refused.append({"project_id": o["project_id"], "buyer_id": n["buyer_id"], "reason": conflict})
                continue
            need_start = month_offset(as_of, n.get("start")) or 0
            vol = min(offer_t, float(n["demand_t_per_year"])) / float(n["demand_t_per_year"])
            if avail is None:
                timing, t_txt = 0.0, "no first-output date"
            else:
                delay = max(0, avail - need_start)
                timing = 1.0 if delay == 0 else max(0.0, 1.0 - delay / 12.0)
                t_txt = "available when needed" if delay == 0 else f"available {delay} months after the need starts"
            bw = _words(str(n.get("form") or n.get("note") or ""))
            pw = _words(str(o.get("product") or ""))
            spec = 0.5 if not bw else (len(bw & pw) / len(bw | pw) if bw | pw else 0.0)
            origin = 1.0 if o["country_iso3"] == n["country_iso3"] or o["country_iso3"] in atlas.participants else (
                0.8 if o["country_iso3"] in atlas.like_minded else 0.6)
            score = (SCORE_WEIGHTS["volume"] * vol + SCORE_WEIGHTS["timing"] * timing
                     + SCORE_WEIGHTS["specification"] * spec + SCORE_WEIGHTS["origin"] * origin)
            shared = ", ".join(sorted(bw & pw)[:4])
            stated = [f"{fam} {'/'.join(sorted(need_tags[fam] & offer_tags.get(fam, set())))}" for fam in need_tags
                      if need_tags[fam] & offer_tags.get(fam, set())]
            pairs.append({
                "project_id": o["project_id"], "project": o["name"], "buyer_id": n["buyer_id"], "buyer": n["name"],
                "node": f"{o['commodity_id']}/{o['stage']}", "offer_t_per_year": offer_t, "need_t_per_year": float(n["demand_t_per_year"]),
                "score": round(score, 6),
                "reason": ((f"same node {o['commodity_id']}/{o['stage']}" if o["commodity_id"] == n["commodity_id"] else
                            f"element node {o['commodity_id']}/{o['stage']} fills the buyer's {n['commodity_id']}/{n['stage']} (same stage, REO basis)")
                           + f"; covers {vol:.0%} of the need{offer_basis}; {t_txt}; "
                           + (f"form matches ({'; '.join(stated)}); " if stated else "")
                           + ("under the buyer's contract; " if contract else "")
                           + f"specification overlap {spec:.2f}" + (f" ({shared})" if shared else "") + f"; origin {o['country_iso3']} admitted by rule '{n['origin_rule']}'"),
            })
    chosen: set[int] = set()
    status = "no compatible pair"
    if pairs:
        import highspy

        h = quiet_highs()
        x = h.addVariables(len(pairs), lb=0.0, ub=1.0, obj=[-p["score"] for p in pairs], type=highspy.HighsVarType.kInteger)
        one_offer_per_need(h, x, pairs)
        offer_volume(h, x, pairs)
        h.setOptionValue("mip_rel_gap", 0.0)
        h.run()
        status = h.modelStatusToString(h.getModelStatus())
        sol = np.asarray(h.getSolution().col_value)
        chosen = {i for i in range(len(pairs)) if sol[i] > 0.5}
    for i, p in enumerate(pairs):
        p["matched"] = i in chosen
    pairs.sort(key=lambda p: (not p["matched"], -p["score"], p["buyer_id"], p["project_id"]))
    matched_buyers = {p["buyer_id"] for p in pairs if p["matched"]}
    why_not: dict[str, str] = {}
    for r in refused:
        why_not.setdefault(r["buyer_id"], r["reason"])
    unmatched = [{"buyer_id": n["buyer_id"], "buyer": n["name"],
                  "reason": f"no compatible offer ({why_not[n['buyer_id']]})" if n["buyer_id"] in why_not else "no compatible offer (node, origin rule or contract)"}
                 for n in needs.to_dict("records") if n["buyer_id"] not in matched_buyers and not any(p["buyer_id"] == n["buyer_id"] for p in pairs)]
    unmatched += [{"buyer_id": b, "buyer": next(p["buyer"] for p in pairs if p["buyer_id"] == b), "reason": "compatible offers went to better-scoring needs"}
                  for b in sorted({p["buyer_id"] for p in pairs} - matched_buyers)]
    return {"metadata": {"as_of": as_of, "status": status, "weights": SCORE_WEIGHTS, "offers": int(len(offers)), "needs": int(len(needs))},
            "matches": [p for p in pairs if p["matched"]], "candidates": pairs, "unmatched_needs": unmatched, "refused_pairs": refused}
