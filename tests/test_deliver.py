"""Delivery plan: the transportation LP on hand-solvable cases, eligibility, the buyers register."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from critmin.deliver.buyers import BuyerError, read_buyers
from critmin.deliver.transport import solve_transport


def test_priority_and_capacity_by_hand():
    # one project, 10 t/month; buyer A needs 8 (priority 1), B needs 6 (priority 2): A gets 8, B 2, B short 4/month
    r = solve_transport(np.array([[10.0, 10.0]]), np.array([[8.0, 8.0], [6.0, 6.0]]), np.ones((1, 2), bool),
                        np.array([1, 2]), np.zeros(2), ["p"], ["A", "B"])
    b = r.buyers.set_index("buyer_id")
    assert b.loc["A", "delivered_t"] == pytest.approx(16.0) and b.loc["B", "delivered_t"] == pytest.approx(4.0)
    assert b.loc["B", "shortfall_t"] == pytest.approx(8.0)
    assert r.projects["utilisation"].iloc[0] == pytest.approx(1.0)


def test_equal_priority_buyers_are_rationed_by_their_demand_by_hand():
    """Review 27: with a flat shortfall cost, all of Nyrstar's new antimony went to Japan and none to the USA (a corner of
    a tie). Each further hundredth of a buyer's demand left short costs more, so buyers of one priority share a scarce
    supply in proportion to demand, to within 1 %: 10 t a month for needs of 5 and 15 gives 2.5 and 7.5; a higher priority still comes
    first (the example above)."""
    r = solve_transport(np.array([[10.0]]), np.array([[5.0], [15.0]]), np.ones((1, 2), bool), np.array([2, 2]), np.zeros(2),
                        ["p"], ["A", "B"])
    b = r.buyers.set_index("buyer_id")
    assert b.loc["A", "delivered_t"] == pytest.approx(2.5) and b.loc["B", "delivered_t"] == pytest.approx(7.5)
    assert b.loc["A", "share_met"] == pytest.approx(b.loc["B", "share_met"])


def test_contract_minimum_by_hand():
    # B's 10 t minimum over two months outranks A's priority: A 10, B 10 (cost 6 x 100 + 2 x 10 = 620)
    r = solve_transport(np.array([[10.0, 10.0]]), np.array([[8.0, 8.0], [6.0, 6.0]]), np.ones((1, 2), bool),
                        np.array([1, 2]), np.array([0.0, 10.0]), ["p"], ["A", "B"])
    b = r.buyers.set_index("buyer_id")
    assert b.loc["B", "delivered_t"] == pytest.approx(10.0) and b.loc["A", "delivered_t"] == pytest.approx(10.0)
    assert r.objective == pytest.approx(620.0)
    assert b.loc["B", "minimum_unmet_t"] == pytest.approx(0.0, abs=1e-9)


def test_a_market_share_caps_a_pair_by_hand():
    """Review 33 F5: the programme held only the bloc's buyers, so a new plant's whole output went to them, while the
    stocks credit them with their market's share of an added tonne. A pair capped at 30 % of a 10 t/month project
    takes 3 t a month, the rest of the project stays unallocated (the other buyers), an uncapped pair is unchanged."""
    r = solve_transport(np.array([[10.0, 10.0]]), np.array([[8.0, 8.0], [6.0, 6.0]]), np.ones((1, 2), bool),
                        np.array([2, 2]), np.zeros(2), ["p"], ["A", "B"], np.array([[0.3, np.nan]]))
    b = r.buyers.set_index("buyer_id")
    assert b.loc["A", "delivered_t"] == pytest.approx(6.0) and b.loc["B", "delivered_t"] == pytest.approx(12.0)


def test_aggregate_buyers_take_their_market_share_of_new_output(atlas):
    """Review 33 F5: an aggregate buyer (a country's whole industry) takes at most its market share of a new
    project's uncontracted output; a named offtaker under contract is not capped."""
    from critmin.deliver.plan import delivery_plan

    projects, buyers = _frames()
    projects = projects[projects["project_id"] == "A"].assign(status_class="commissioning", output_t=np.nan, first_output="2026-12")
    buyers = buyers.assign(kind="aggregate", demand_t_per_year=10_000.0)
    share = {"cobalt/refine": {"USA": 0.25, "JPN": 0.10}}
    r = delivery_plan(atlas, projects, buyers, months=6, as_of="2026-12", market_share=share)
    cap = r["projects"][0]["capacity_t"]
    b = {x["buyer_id"]: x["delivered_t"] for x in r["buyers"]}
    assert b["N1"] == pytest.approx(0.25 * cap) and b["N2"] == pytest.approx(0.10 * cap)
    # without the shares (the old rule) the two bloc buyers took it all
    r = delivery_plan(atlas, projects, buyers, months=6, as_of="2026-12")
    assert sum(x["delivered_t"] for x in r["buyers"]) == pytest.approx(cap)
    # a contract naming the project lifts the cap for that buyer only
    r = delivery_plan(atlas, projects, buyers.assign(contract_projects=["A", None]), months=6, as_of="2026-12", market_share=share)
    b = {x["buyer_id"]: x["delivered_t"] for x in r["buyers"]}
    assert b["N1"] + b["N2"] == pytest.approx(cap) and b["N2"] <= 0.10 * cap + 1e-6


def test_a_contract_without_a_volume_takes_the_new_output_of_its_plants(atlas):
    """Review 33b G4: GM's contracts with e-VAC and MP publish no volume, so the plants' new magnets were reserved for GM
    and delivered to nobody (322 t in six months). Such a holder now takes its plants' new output, and says so; a plant
    producing before the plan stays trade the buyer already has (Sojitz and Lynas)."""
    from critmin.deliver.plan import delivery_plan

    projects, buyers = _frames()
    projects = projects[projects["project_id"] == "A"].assign(status_class="commissioning", output_t=np.nan, first_output="2026-12")
    buyers = buyers.assign(kind=["offtaker", "aggregate"], demand_t_per_year=[np.nan, 10_000.0], contract_projects=["A", None])
    r = delivery_plan(atlas, projects, buyers, months=6, as_of="2026-12")
    cap = r["projects"][0]["capacity_t"]
    b = {x["buyer_id"]: x for x in r["buyers"]}
    assert b["N1"]["delivered_t"] == pytest.approx(cap) and b["N2"]["delivered_t"] == pytest.approx(0.0, abs=1e-9)
    assert b["N1"]["volume_basis"].startswith("volume not published: takes the new output of the plants its contract names (A)")
    # an operating plant (existing trade) is not planned for a holder without a volume
    r = delivery_plan(atlas, projects.assign(status_class="operating", output_t=100.0, output_period="2026-06"), buyers, months=6, as_of="2026-12")
    assert {x["buyer_id"] for x in r["buyers_not_planned"]} == {"N1"}
    # review 35 L5: a contract for a share of the output takes that share; the rest is open to the other buyers
    r = delivery_plan(atlas, projects, buyers.assign(contract_share=[0.65, None]), months=6, as_of="2026-12")
    b = {x["buyer_id"]: x for x in r["buyers"]}
    assert b["N1"]["delivered_t"] == pytest.approx(0.65 * cap) and b["N2"]["delivered_t"] == pytest.approx(0.35 * cap)
    assert b["N1"]["volume_basis"].startswith("volume not published: 65% of the output of the plants its contract names (A)")


def test_ineligible_pairs_get_nothing():
    r = solve_transport(np.array([[10.0]]), np.array([[5.0]]), np.zeros((1, 1), bool), np.array([1]), np.zeros(1), ["p"], ["A"])
    assert r.allocation.empty and r.buyers["shortfall_t"].iloc[0] == pytest.approx(5.0)


def test_buyers_register_rejects_bad_rows(tmp_path: Path, atlas):
    f = tmp_path / "b.csv"
    f.write_text(
        "buyer_id,name,country_iso3,commodity_id,stage,demand_t_per_year,priority,origin_rule\n"
        "B1,Good,USA,cobalt,refine,100,1,no_concern\n"
        "B2,To concern,CHN,cobalt,refine,100,2,any\n"
        "B3,Bad node,USA,cobalt,magnet,100,2,any\n"
        "B1,Dup,JPN,cobalt,refine,-5,4,elsewhere\n"
    )
    with pytest.raises(BuyerError) as e:
        read_buyers(f, atlas)
    msg = str(e.value)
    for needle in ("line 3, field 'country_iso3'", "line 4, field 'stage'", "line 5, field 'demand_t_per_year'", "line 5, field 'priority'",
                   "line 5, field 'origin_rule'"):
        assert needle in msg, needle


def test_a_contract_share_needs_its_projects_and_no_volume(tmp_path: Path, atlas):
    """Review 35 L5: a contract for a share of output names the projects it is a share of, and holds a share or a
    volume, not both; a share outside (0, 1] is refused; errors name the line and the field."""
    f = tmp_path / "b.csv"
    f.write_text(
        "buyer_id,name,country_iso3,commodity_id,stage,demand_t_per_year,contract_projects,contract_share\n"
        "B1,Good,JPN,dysprosium,refine,,P073,0.65\n"
        "B2,No projects,JPN,dysprosium,refine,,,0.65\n"
        "B3,Both,JPN,dysprosium,refine,10,P073,0.65\n"
        "B4,Too large,JPN,dysprosium,refine,,P073,1.5\n"
    )
    with pytest.raises(BuyerError) as e:
        read_buyers(f, atlas)
    msg = str(e.value)
    for needle in ("line 3, field 'contract_share'", "line 4, field 'contract_share'", "line 5, field 'contract_share'"):
        assert needle in msg, needle
    assert "line 2," not in msg


def _frames():
    import pandas as pd

    projects = pd.DataFrame([
        {"project_id": "A", "name": "A mine", "country_iso3": "AUS", "commodity_id": "cobalt", "stage": "refine", "capacity_t": 100.0,
         "status_class": "operating", "first_output": None, "product": "cobalt sulphate", "output_t": 100.0, "output_period": "2026-06"},
        {"project_id": "B", "name": "B plant", "country_iso3": "USA", "commodity_id": "cobalt", "stage": "refine", "capacity_t": 50.0,
         "status_class": "operating", "first_output": None, "product": "cobalt metal", "output_t": 50.0, "output_period": "2026-06"},
        {"project_id": "C", "name": "C plant", "country_iso3": "CHN", "commodity_id": "cobalt", "stage": "refine", "capacity_t": 500.0,
         "status_class": "operating", "first_output": None, "product": "cobalt"},
    ])
    buyers = pd.DataFrame([
        {"buyer_id": "N1", "name": "N1", "country_iso3": "USA", "commodity_id": "cobalt", "stage": "refine", "demand_t_per_year": 100.0,
         "priority": 2, "min_contract_t": None, "origin_rule": "no_concern", "start": None, "end": None, "note": ""},
        {"buyer_id": "N2", "name": "N2", "country_iso3": "JPN", "commodity_id": "cobalt", "stage": "refine", "demand_t_per_year": 50.0,
         "priority": 1, "min_contract_t": None, "origin_rule": "no_concern", "start": None, "end": None, "note": ""},
    ])
    return projects, buyers


def test_matching_by_hand(atlas):
    from critmin.deliver.match import match

    projects, buyers = _frames()
    r = match(atlas, projects, buyers)
    got = {(m["buyer_id"], m["project_id"]) for m in r["matches"]}
    # N1-A 0.88 + N2-B 0.90 beats N1-B 0.70 + N2-A 0.88; A cannot serve both (150 t > 100 t); C is in a country of concern
    assert got == {("N1", "A"), ("N2", "B")}
    assert all(c["project_id"] != "C" for c in r["candidates"])
    n1a = next(c for c in r["candidates"] if (c["buyer_id"], c["project_id"]) == ("N1", "A"))
    assert n1a["score"] == pytest.approx(0.4 + 0.3 + 0.1 + 0.08) and "covers 100% of the need" in n1a["reason"]


def test_delivery_plan_on_frames(atlas):
    from critmin.deliver.plan import delivery_plan

    projects, buyers = _frames()
    # review 26: plants producing before the plan (A and B) deliver only on contracts that name them
    r = delivery_plan(atlas, projects, buyers, months=6, as_of="2026-11")
    assert not r["allocation"] and all(x["delivered_t"] == 0 for x in r["buyers"])
    buyers["contract_projects"] = "A;B;C"
    r = delivery_plan(atlas, projects, buyers, months=6, as_of="2026-11")
    b = {x["buyer_id"]: x for x in r["buyers"]}
    # 150 t/yr allied supply = 75 t over six months; demand 75 t: everything delivered, nothing from CHN
    assert b["N1"]["delivered_t"] + b["N2"]["delivered_t"] == pytest.approx(75.0)
    assert all(a["project_id"] != "C" for a in r["allocation"])


def test_new_plants_deliver_on_their_ramp_up_not_at_nameplate(atlas):
    from critmin.deliver.plan import delivery_plan

    projects, buyers = _frames()
    projects["output_t"] = np.nan  # no reported output: the ramp from first output decides
    # B (a refinery, 6.65-year ramp: 79.8 months) started in 2026-09: in 2026-12 it has 3 months of output behind
    # it, so months 1-6 of the plan are its months 4-9 of output: 50 t/yr / 12 x (4 + ... + 9) / 79.8
    projects.loc[projects["project_id"] == "B", "first_output"] = "2026-09"
    # A: construction with first output in 2027-02 and no delay: its months 1-4 of output in plan months 3-6
    projects["delay_months"] = np.nan
    projects.loc[projects["project_id"] == "A", ["status_class", "first_output", "delay_months"]] = ["construction", "2027-02", 0.0]
    buyers["demand_t_per_year"] = 10_000.0  # demand never binds
    r = delivery_plan(atlas, projects, buyers, months=6, as_of="2026-12")
    p = {x["project_id"]: x for x in r["projects"]}
    assert p["B"]["capacity_t"] == pytest.approx(50 / 12 * sum(range(4, 10)) / 79.8)
    assert p["B"]["share_of_nameplate_first_month"] == pytest.approx(4 / 79.8) and "3 months of output since 2026-09" in p["B"]["ramp_basis"]
    assert p["A"]["capacity_t"] == pytest.approx(100 / 12 * (1 + 2 + 3 + 4) / 79.8)
    assert p["A"]["share_of_nameplate_first_month"] == pytest.approx(1 / 79.8)
    # an operating plant with neither a date nor a reported output runs at the register's median reported run-rate
    # (0.42 of nameplate, instrument_parameters.csv), and says so
    projects.loc[projects["project_id"] == "B", "first_output"] = None
    r = delivery_plan(atlas, projects, buyers, months=6, as_of="2026-12")
    p = {x["project_id"]: x for x in r["projects"]}
    assert p["B"]["capacity_t"] == pytest.approx(0.42 * 25.0) and "42% of nameplate, the median" in p["B"]["ramp_basis"]
    # a reported output wins over the ramp: held flat at its run-rate (20 of 50 t a year)
    projects.loc[projects["project_id"] == "B", ["first_output", "output_t", "output_period"]] = ["2026-09", 20.0, "2026-09"]
    r = delivery_plan(atlas, projects, buyers, months=6, as_of="2026-12")
    p = {x["project_id"]: x for x in r["projects"]}
    assert p["B"]["capacity_t"] == pytest.approx(20.0 / 2) and p["B"]["ramp_basis"].startswith("reported output 20 t a year")
    # a report above the register's capacity (a capacity read off one early quarter) supersedes it (review 9)
    projects.loc[projects["project_id"] == "B", "output_t"] = 80.0
    r = delivery_plan(atlas, projects, buyers, months=6, as_of="2026-12")
    b = {x["project_id"]: x for x in r["projects"]}["B"]
    assert b["capacity_t"] == pytest.approx(40.0) and "the report supersedes" in b["ramp_basis"]


def test_bundled_buyers_and_cli(atlas):
    import json

    from critmin.deliver.buyers import bundled_buyers
    from tests.test_cli import run

    b = bundled_buyers(atlas)
    assert len(b) > 10 and (b["source"].str.len() > 0).all()
    assert not b["country_iso3"].isin(list(atlas.concern)).any()
    d = json.loads(run("deliver", "--months", "6", "--as-of", "2026-11", "--format", "json").stdout)
    assert d["metadata"]["months"] == 6 and d["buyers"] and d["allocation"]
    for r in d["buyers"]:
        assert r["delivered_t"] <= r["demand_t"] + 1e-6
    m = json.loads(run("match", "--as-of", "2026-11", "--format", "json").stdout)
    assert m["matches"] and all(x["reason"] and 0 <= x["score"] <= 1 for x in m["candidates"])
    assert len({x["buyer_id"] for x in m["matches"]}) == len(m["matches"])  # a need gets at most one offer


def test_contracts_stale_dates_and_one_stage_per_national_demand(atlas):
    """Issue 12 review: Tesla's Vidalia contract was filled from Novonix and Nidec's from MP; a paused mine with a
    2017 first output delivered at once; national demand stood at both mine and refine (counted twice)."""
    import pandas as pd

    from critmin.deliver.buyers import bundled_buyers
    from critmin.deliver.plan import delivery_plan
    from critmin.portfolio.register import bundled_register

    reg = bundled_register(atlas).projects
    buyers = bundled_buyers(atlas)
    r = delivery_plan(atlas, reg, buyers, months=6, as_of="2026-12")
    contract = buyers.set_index("buyer_id")["contract_projects"]
    for a in r["allocation"]:
        allowed = {c for c in str(contract[a["buyer_id"]]).split(";") if c}
        assert not allowed or a["project_id"] in allowed, a
    # a paused project whose first output is long past does not deliver in the window
    paused = set(reg.loc[reg["status_class"].isin(["paused", "unlikely", "exploration", "feasibility"]), "project_id"])
    assert not paused & {a["project_id"] for a in r["allocation"]}
    assert any(x["project_id"] == "P041" and "first output in about" in x["reason"] for x in r["not_supplying"])
    # a national aggregate stands at one stage per country and commodity (the stage its consumption statistic
    # measures); the U.S. rare-earth aggregate is two rows there (La + Ce and the rest)
    agg = buyers[buyers["kind"] == "aggregate"]
    assert agg.groupby(["country_iso3", "commodity_id"])["stage"].nunique().max() == 1
    # a contract naming an unknown project is refused by the validator's pattern only when malformed
    bad = pd.DataFrame([{**buyers.iloc[0].to_dict(), "contract_projects": "P003;;P004"}])
    from critmin.deliver.buyers import Buyer

    with pytest.raises(ValueError):
        Buyer.model_validate(bad.iloc[0].to_dict())


def test_a_stale_first_output_date_counts_as_unknown():
    from critmin.portfolio.model import InstrumentParameters, months_before_output

    ip = InstrumentParameters.load()
    notes: list[str] = []
    t = months_before_output({"first_output": "2017"}, "paused", "2026-12", ip, notes)
    assert t == ip.get("project", "lead_time_months:paused") and "has passed" in notes[0]


def test_matching_respects_element_and_form(atlas):
    """Issue 12: a Dy/Tb oxide buyer was matched to an NdPr producer and a natural-graphite buyer to a synthetic
    plant; both pairs are now refused with the reason, and a compatible pair says which forms agree."""
    import pandas as pd

    from critmin.deliver.match import match

    def proj(pid: str, commodity: str, stage: str, product: str) -> dict:
        return {"project_id": pid, "name": f"{pid} plant", "country_iso3": "AUS", "commodity_id": commodity, "stage": stage,
                "capacity_t": 1000.0, "status_class": "operating", "first_output": None, "product": product}

    def need(bid: str, commodity: str, stage: str, form: str) -> dict:
        return {"buyer_id": bid, "name": bid, "country_iso3": "JPN", "commodity_id": commodity, "stage": stage, "demand_t_per_year": 100.0,
                "priority": 2, "min_contract_t": None, "origin_rule": "no_concern", "contract_projects": "", "start": None, "end": None,
                "form": form, "note": ""}

    projects = pd.DataFrame([proj("L", "rare_earths", "refine", "separated NdPr oxide"), proj("H", "rare_earths", "refine", "dysprosium and terbium oxides"),
                             proj("S", "battery_anode", "anode", "synthetic graphite anode material"),
                             proj("N", "battery_anode", "anode", "coated spherical natural graphite anode material")])
    buyers = pd.DataFrame([need("DYTB", "rare_earths", "refine", "Dy/Tb oxide"), need("NAT", "battery_anode", "anode", "natural graphite anode"),
                           need("ANY", "rare_earths", "refine", "")])
    r = match(atlas, projects, buyers)
    got = {(m["buyer_id"], m["project_id"]) for m in r["matches"]}
    assert ("DYTB", "H") in got and ("NAT", "N") in got
    refused = {(x["buyer_id"], x["project_id"]): x["reason"] for x in r["refused_pairs"]}
    assert "heavy (Dy/Tb)" in refused[("DYTB", "L")] and "light (NdPr)" in refused[("DYTB", "L")]
    assert "synthetic" in refused[("NAT", "S")]
    # a buyer stating no form may take either rare-earth product
    assert {c["project_id"] for c in r["candidates"] if c["buyer_id"] == "ANY"} == {"L", "H"}
    dytb = next(m for m in r["matches"] if m["buyer_id"] == "DYTB")
    assert "form matches" in dytb["reason"] and "oxide" in dytb["reason"]


def test_element_output_fills_its_aggregate_buyers_in_matching_and_delivery_alike(atlas):
    """Issue 12 review: buyers sat on the rare-earth aggregate while the register's Dy and NdPr projects sat on element
    nodes, so no Dy tonne reached a Dy/Tb buyer. An element node fills its aggregate's need at the same stage (a
    tonne of Dy oxide is a tonne of REO), never the reverse, never across stages, and the group must agree; the
    delivery plan uses the same rule as the matching."""
    import pandas as pd

    from critmin.deliver.forms import node_serves
    from critmin.deliver.match import match
    from critmin.deliver.plan import delivery_plan

    assert node_serves("dysprosium", "refine", "rare_earths", "refine") and not node_serves("rare_earths", "refine", "dysprosium", "refine")
    assert not node_serves("ndpr", "mine", "rare_earths", "refine") and not node_serves("ndfeb_magnets", "magnet", "rare_earths", "magnet")

    def proj(pid: str, commodity: str, product: str) -> dict:
        return {"project_id": pid, "name": f"{pid} plant", "country_iso3": "AUS", "commodity_id": commodity, "stage": "refine",
                "capacity_t": 120.0, "status_class": "operating", "first_output": None, "product": product, "output_t": 120.0}

    def need(bid: str, commodity: str, form: str) -> dict:
        return {"buyer_id": bid, "name": bid, "country_iso3": "JPN", "commodity_id": commodity, "stage": "refine", "demand_t_per_year": 120.0,
                "priority": 2, "min_contract_t": None, "origin_rule": "no_concern", "contract_projects": "", "start": None, "end": None,
                "form": form, "note": ""}

    projects = pd.DataFrame([proj("DY", "dysprosium", "oxide"), proj("REO", "rare_earths", "mixed separated oxides")])
    buyers = pd.DataFrame([need("HEAVY", "rare_earths", "Dy/Tb oxide"), need("LIGHT", "rare_earths", "NdPr oxide"), need("DYB", "dysprosium", "oxide")])
    buyers["contract_projects"] = "DY;REO"  # producing plants deliver on contracts that name them (review 26)
    r = match(atlas, projects, buyers)
    cand = {(c["buyer_id"], c["project_id"]) for c in r["candidates"]}
    assert ("HEAVY", "DY") in cand and ("DYB", "DY") in cand and ("DYB", "REO") not in cand
    refused = {(x["buyer_id"], x["project_id"]): x["reason"] for x in r["refused_pairs"]}
    assert "light (NdPr)" in refused[("LIGHT", "DY")]
    heavy = next(c for c in r["candidates"] if (c["buyer_id"], c["project_id"]) == ("HEAVY", "DY"))
    assert "element node dysprosium/refine fills the buyer's rare_earths/refine" in heavy["reason"]
    d = delivery_plan(atlas, projects, buyers, months=6, as_of="2026-12")
    got = {(a["buyer_id"], a["project_id"]) for a in d["allocation"]}
    assert ("LIGHT", "DY") not in got and ("DYB", "REO") not in got
    assert sum(a["tonnes"] for a in d["allocation"] if a["project_id"] == "DY") == pytest.approx(60.0)  # 6 months of 120 t/yr


def test_delivery_totals_by_receiving_country_never_add_across_nodes(atlas):
    from critmin.deliver.buyers import bundled_buyers
    from critmin.deliver.plan import delivery_plan
    from critmin.portfolio.register import bundled_register

    r = delivery_plan(atlas, bundled_register(atlas).projects, bundled_buyers(atlas), months=6, as_of="2026-12")
    assert r["totals"] and all(set(t) == {"receiving_country", "node", "tonnes", "tonnes_from_new_supply"} for t in r["totals"])
    assert sum(t["tonnes"] for t in r["totals"]) == pytest.approx(sum(a["tonnes"] for a in r["allocation"]))
    assert len({(t["receiving_country"], t["node"]) for t in r["totals"]}) == len(r["totals"])
    # review 21: the new supply is the tonnes of plants not producing before the plan, never more than the total
    assert sum(t["tonnes_from_new_supply"] for t in r["totals"]) == pytest.approx(
        sum(a["tonnes"] for a in r["allocation"] if a["supply"] == "new"))
    assert all(0 <= t["tonnes_from_new_supply"] <= t["tonnes"] + 1e-9 for t in r["totals"])
    # review 26: a plant producing before the plan delivers only on the contracts that name it. Lynas' Malaysian plants
    # (P005 NdPr, P073 Dy/Tb) and Silmet (P021) went to Japan's aggregate buyers, breaking JARE's 65 % right to the Dy/Tb
    # and with no Japanese contract on record for Silmet; their output is existing trade the plan does not allocate
    buyers = bundled_buyers(atlas).set_index("buyer_id")
    existing = [a for a in r["allocation"] if a["supply"] == "existing"]
    assert existing and all(a["project_id"] in str(buyers.loc[a["buyer_id"], "contract_projects"]).split(";") for a in existing)
    assert not [a for a in r["allocation"] if a["project_id"] in ("P005", "P021")]
    # review 36: JARE's contract is 65 % of the Dy/Tb circuit's output (contract_share), a stated quantity delivered from
    # the plant producing before the plan; the rest of its output stays existing trade
    lynas = [a for a in r["allocation"] if a["project_id"] == "P073"]
    made = next(x["capacity_t"] for x in r["projects"] if x["project_id"] == "P073")
    assert lynas and {a["buyer_id"] for a in lynas} == {"B009"}
    assert sum(a["tonnes"] for a in lynas) == pytest.approx(0.65 * made, rel=1e-6)
    assert {x["supply"] for x in r["projects"] if x["project_id"] == "P005"} == {"existing"}


def test_deliveries_say_which_tonnes_are_new_supply(atlas):
    """Review 21: Japan's NdPr was "covered 100 %" by Lynas' existing trade. A plant operating before the plan is
    existing supply; a commissioning plant, or one whose first output is ahead, is new."""
    from critmin.deliver.plan import delivery_plan

    projects, buyers = _frames()
    projects.loc[projects["project_id"] == "B", ["status_class", "output_t"]] = ["commissioning", np.nan]
    buyers["demand_t_per_year"] = 10_000.0
    r = delivery_plan(atlas, projects, buyers, months=6, as_of="2026-12")
    kind = {x["project_id"]: x["supply"] for x in r["projects"]}
    assert kind == {"A": "existing", "B": "new"}
    by = {(t["receiving_country"], t["node"]): t for t in r["totals"]}
    new = sum(a["tonnes"] for a in r["allocation"] if a["project_id"] == "B")
    assert new > 0 and sum(t["tonnes_from_new_supply"] for t in by.values()) == pytest.approx(new)
    # a plant the portfolio brings forward (first_month) is new supply even if the register calls it operating
    r = delivery_plan(atlas, projects, buyers, months=6, as_of="2026-12", first_month={"A": 0})
    assert {x["project_id"]: x["supply"] for x in r["projects"]}["A"] == "new"


def test_an_abandoned_project_is_not_matched(atlas):
    """Review of 5 December 2026: the abandoned Tennessee Lithium plant was matched as a supplier to Japan."""
    from critmin.deliver.match import match

    projects, buyers = _frames()
    projects = projects.copy()
    projects.loc[projects["project_id"] == "B", "status_class"] = "unlikely"
    r = match(atlas, projects, buyers)
    assert all(m["project_id"] != "B" for m in r["matches"]) and all(c["project_id"] != "B" for c in r["candidates"])
    assert any(x["project_id"] == "B" and "status 'unlikely'" in x["reason"] for x in r["refused_pairs"])


def test_aggregate_buyers_are_the_consumption_the_simulator_uses(simulator):
    """Review of 5 December 2026: Japan's cobalt was 16,385 t in the stocks and 9,413 t in the deliveries. Every
    aggregate buyer is the participant's consumption at the node as the simulator has it (BUYERS.md), so a change
    in the atlas must be carried into the register."""
    from critmin.deliver.buyers import bundled_buyers
    b = bundled_buyers(simulator.atlas)
    agg = b[b["kind"] == "aggregate"]
    assert len(agg) >= 10
    # one participant's rows at one node add up to its demand there (the U.S. rare-earth aggregate is two rows)
    for (j, c, st), rows in agg.groupby(["country_iso3", "commodity_id", "stage"]):
        n = simulator.nodes.get(c, st)
        assert rows["demand_t_per_year"].sum() == pytest.approx(n.demand_share[j] * n.q0_t, abs=0.5), list(rows["buyer_id"])
        assert (rows["source"] == "computed from the critmin atlas: " + n.demand_basis[j]).all(), list(rows["buyer_id"])
    assert agg.groupby(["country_iso3", "commodity_id", "stage"]).size().max() == 1
    # Japan's NdPr: its own row, and NdPr supply cannot fill the rest of the aggregate, which is net of the element
    # nodes (the simulator's demand there: 18,835 t less NdPr 5,500, Y 1,160, Dy 120 and Tb 23 t)
    from critmin.deliver.forms import serve_conflict

    rest = agg[(agg["country_iso3"] == "JPN") & (agg["commodity_id"] == "rare_earths")].iloc[0].to_dict()
    assert rest["demand_t_per_year"] == pytest.approx(18835 - 5500 - 1160 - 120 - 22.8, abs=0.5)
    lamp = {"commodity_id": "ndpr", "stage": "refine"}
    assert serve_conflict(lamp, rest, "separated NdPr oxide", rest["name"]) is not None
    # the U.S. aggregate (review 6: Lynas' NdPr made 86-94 % of what U.S. catalyst and glass makers received; review
    # 11: the element proxies sat beside the whole aggregate): La + Ce 4,435 t at the aggregate; review 12: the U.S.
    # NdPr demand is a proxy, so it is no buyer (as every proxy: BUYERS.md), and NdPr does not fill the La + Ce row
    us = agg[agg["country_iso3"] == "USA"].set_index("buyer_id")
    assert us.loc["B041", "demand_t_per_year"] == 4435 and us.loc["B041", "commodity_id"] == "rare_earths"
    assert "B044" not in set(b["buyer_id"])
    la_ce = us.loc["B041"].to_dict()
    assert serve_conflict(lamp, la_ce, "separated NdPr oxide", la_ce["name"]) is not None
    assert serve_conflict({"commodity_id": "rare_earths", "stage": "refine"}, la_ce, "lanthanum carbonate and cerium oxide", la_ce["name"]) is None
    # review 7: oxides "for permanent magnets" are NdPr and Dy/Tb, never La/Ce (Solvay's La Rochelle magnet line filled
    # La/Ce rows); Sm and Gd are a middle group, so Dy/Tb does not fill Japan's row that names Sm and Gd but nets Dy and Tb
    magnet_oxides = {"commodity_id": "rare_earths", "stage": "refine"}
    assert serve_conflict(magnet_oxides, la_ce, "separated rare earth oxides for permanent magnets", la_ce["name"]) is not None
    assert serve_conflict({"commodity_id": "dysprosium", "stage": "refine"}, rest, "dysprosium oxide", rest["name"]) is not None


def test_a_producing_plant_is_matched_on_what_it_reports_making(atlas):
    """Review 8: Vidalia, making test material only, 'covered 100 %' of Tesla's need in the matches, at nameplate."""
    from critmin.deliver.match import match

    projects, buyers = _frames()
    projects.loc[projects["project_id"] == "A", "output_t"] = 20.0  # of 100 t a year of capacity
    r = match(atlas, projects, buyers)
    n1a = next(c for c in r["candidates"] if (c["buyer_id"], c["project_id"]) == ("N1", "A"))
    assert n1a["offer_t_per_year"] == 20.0 and "covers 20% of the need at its reported output (20 t a year)" in n1a["reason"]
    # a project not yet producing offers its capacity
    projects.loc[projects["project_id"] == "A", ["status_class", "first_output"]] = ["construction", "2027-01"]
    r = match(atlas, projects, buyers, as_of="2026-12")
    n1a = next(c for c in r["candidates"] if (c["buyer_id"], c["project_id"]) == ("N1", "A"))
    assert n1a["offer_t_per_year"] == 100.0 and "reported output" not in n1a["reason"]


def test_no_buyer_row_carries_a_program_object_for_text(atlas):
    """Review of the session's change: ten generated buyer notes printed a pandas method object ("<bound method
    IndexOpsMixin.item ...>") for the consumption figure's name. Every text field of the bundled buyers is text."""
    from critmin.deliver.buyers import bundled_buyers

    b = bundled_buyers(atlas)
    for col in ("name", "source", "note"):
        text = b[col].fillna("").astype(str)
        assert not text.str.contains("<bound method|dtype: object|Name: \\d+,", regex=True).any(), col


def test_add_months_is_the_inverse_of_month_offset():
    """``add_months(as_of, T)`` names the month ``month_offset`` counts T months to (review 28 F4: the stocks and the
    deliveries print the same expected first output)."""
    from critmin._dates import add_months, month_offset

    assert add_months("2026-12", 31) == "2029-07"
    assert add_months("2026-12", 0.4) == "2026-12" and add_months("2026-01", -1) == "2025-12"
    for t in (0, 1, 11, 12, 13, 18, 120):
        assert month_offset("2026-12", add_months("2026-12", t)) == t


def test_a_year_only_date_in_the_plans_year_has_no_months_behind_it(atlas):
    """Review 36 (the stocks' rule of review 35b M4): Port Pirie's year-only "2026" gave it five months of output behind
    it in a December 2026 plan (a year alone counts as July), while the stocks' year ahead counted none. A year-only
    date in the plan's own year has not passed; a dated month has."""
    from critmin.deliver.plan import delivery_plan

    projects, buyers = _frames()
    one = projects[projects["project_id"] == "A"].assign(status_class="commissioning", output_t=np.nan)
    buyers = buyers.assign(demand_t_per_year=10_000.0)
    year = delivery_plan(atlas, one.assign(first_output="2026"), buyers, months=6, as_of="2026-12")
    month = delivery_plan(atlas, one.assign(first_output="2026-07"), buyers, months=6, as_of="2026-12")
    assert year["projects"][0]["ramp_basis"].startswith("0 months of output since 2026")
    assert month["projects"][0]["ramp_basis"].startswith("5 months of output since 2026-07")
    assert year["projects"][0]["capacity_t"] < month["projects"][0]["capacity_t"]
