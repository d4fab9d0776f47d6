"""The portfolio on the bundled pipeline: options, decisions with reasons, budgets, CLI interface."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from critmin.portfolio.model import (
    InstrumentParameters,
    build_problem,
    read_agencies,
    read_budgets,
    sample_from_simulator,
)
from critmin.portfolio.plan import run_portfolio
from critmin.portfolio.register import bundled_register
from tests.test_cli import run


@pytest.fixture(scope="module")
def plan(simulator):
    reg = bundled_register(simulator.atlas)
    return run_portfolio(simulator.atlas, simulator, reg.projects, draws=100, seed=0, as_of="2026-11", gap=1e-4)


def test_every_project_has_a_decision_and_budgets_hold(plan, simulator):
    reg = bundled_register(simulator.atlas)
    assert {p["project_id"] for p in plan["projects"]} == set(reg.projects["project_id"])
    assert all(p["reason"] for p in plan["projects"])
    chosen = {s["project_id"] for s in plan["selected"]}
    assert chosen == {p["project_id"] for p in plan["projects"] if p["decision"] == "selected"}
    for k, b in plan["budgets"].items():
        assert plan["spent"].get(k, 0.0) <= b * (1 + 1e-9)
    assert plan["objective"] >= plan["greedy_objective"] * (1 - 1e-4)
    assert plan["metadata"]["as_of"] == "2026-11" and plan["metadata"]["data_version"] == simulator.atlas.data_version
    # an operating project with nothing to gain is rejected for that reason
    p001 = next(p for p in plan["projects"] if p["project_id"] == "P001")
    # (review 11: the U.S. rare-earth ore demand is now the remainder after its elements, 0 t, so the reason can be
    # the ore rule for Japan's share, which comes first)
    assert p001["decision"] == "rejected" and ("already producing" in p001["reason"] or "no plant at the next stage" in p001["reason"])
    # project finance under the three price scenarios: NPV falls with the price, the gap rises
    fin = {f["project_id"]: f for f in plan["finance"]}
    assert fin, "no project finance records"
    for f in fin.values():
        assert f["npv_usd"]["0.7x"] <= f["npv_usd"]["1x"] <= f["npv_usd"]["1.3x"]
        assert f["viability_gap_usd"]["0.7x"] >= f["viability_gap_usd"]["1.3x"] >= 0


def test_the_selection_is_checked_under_the_input_output_convention(plan, simulator):
    """Review 18: the portfolio moved from 6 to 3 to 5 projects on two valuation switches. The same programme is
    solved with every tonne not consumed valued at the output multiple; the record says which choices hold under both."""
    rob = plan["selection_under_input_output"]
    chosen = {s["project_id"] for s in plan["selected"]}
    assert set(rob["both"]) | set(rob["only_ranked_valuation"]) == chosen
    assert not set(rob["only_input_output"]) & chosen
    assert rob["expected_avoided_usd_input_output"] >= 0.0
    sample = sample_from_simulator(simulator, draws=100, seed=0)
    assert sample.value_per_t_io is not None and len(sample.value_per_t_io) == len(sample.value_per_t)
    assert np.all(np.isfinite(sample.value_per_t_io)) and (sample.value_per_t_io > sample.value_per_t).any()


def test_the_selection_is_checked_without_the_completion_uplift(plan, simulator):
    """Review 34b K4: most of a funded project's benefit was the completion probability an instrument is assumed to add
    (no causal estimate). The same programme is checked with every uplift at 0: support then only brings output
    forward, so no project adds more capacity than with the uplift, the same projects avoid no more, and the record says
    which choices rest on the uplift."""
    wu = plan["selection_without_completion_uplift"]
    chosen = {s["project_id"] for s in plan["selected"]}
    assert set(wu["both"]) | set(wu["only_with_uplift"]) == chosen and not set(wu["only_without_uplift"]) & chosen
    assert set(wu["added_capacity_t_per_year"]) == chosen
    for pid, q in wu["added_capacity_t_per_year"].items():
        assert 0.0 <= q["without_uplift"] <= q["with_uplift"] * (1 + 1e-9), pid
    assert 0.0 <= wu["expected_avoided_usd_same_programme"] <= wu["expected_avoided_usd_with_uplift"] * (1 + 1e-9)
    assert wu["expected_avoided_usd_with_uplift"] == pytest.approx(plan["expected_avoided_usd"])
    ip = InstrumentParameters.load()
    ip0 = ip.without_completion_uplift()
    rows = ip.table[ip.table["parameter"] == "completion_probability_uplift"]
    assert len(rows) >= 5 and (rows["value"] > 0).all()
    for inst in rows["instrument"]:
        assert ip0.get(inst, "completion_probability_uplift") == 0.0 and ip0.kind(inst, "completion_probability_uplift") == "sensitivity"
        assert ip0.get(inst, "months_to_first_output_change", 0.0) == ip.get(inst, "months_to_first_output_change", 0.0)
    with pytest.raises(Exception, match="no row"):
        ip.with_values({("loan", "no_such_parameter"): 0.0}, "test")


def test_options_follow_eligibility_and_assumptions_are_listed(simulator):
    reg = bundled_register(simulator.atlas)
    sample = sample_from_simulator(simulator, draws=50, seed=0)
    bp = build_problem(reg.projects, simulator.atlas, sample, simulator.nodes, read_agencies(), InstrumentParameters.load(), None, "2026-11")
    o = bp.options_all
    # the U.S. Permitting Council only facilitates domestic projects
    reg_opts = o[o["instrument"] == "regulatory"]
    assert set(reg_opts["country"]) <= {"USA"}
    # every option of a project with blank completion probability lists the status default as an assumption
    for pid in set(o["project_id"]):
        assert any("completion probability" in a for a in bp.assumptions[pid])
    assert (o["dq_t"] >= -1e-9).all()  # support never lowers a project's expected capacity


def test_deadline_and_budget_file(tmp_path: Path, simulator):
    f = tmp_path / "b.csv"
    f.write_text("agency_id,instrument,budget_usd\nUS_EXIM,loan,2000000000\n")
    assert read_budgets(f) == {"US_EXIM:loan": 2e9}
    bad = tmp_path / "bad.csv"
    bad.write_text("agency_id,instrument,budget_usd\nUS_EXIM,loan,-5\n")
    with pytest.raises(Exception, match=r"bad.csv, line 2, field 'budget_usd'"):
        read_budgets(bad)
    reg = bundled_register(simulator.atlas)
    rec = run_portfolio(simulator.atlas, simulator, reg.projects, deadline_months=6, draws=60, as_of="2026-11")
    assert all(s["months_to_output"] <= 6 for s in rec["selected"])


def test_portfolio_cli_json_interface():
    d = json.loads(run("portfolio", "--format", "json", "--draws", "60", "--as-of", "2026-11").stdout)
    for key in ("selected", "budgets", "spent", "objective", "greedy_objective", "projects", "risk_reduction", "marginal_value_usd_per_usd"):
        assert key in d, key
    for s in d["selected"]:
        for key in ("project_id", "instrument", "agency", "cost_usd"):
            assert key in s
    p = run("portfolio", "--must", "P999", "--draws", "20", ok=False)
    assert p.returncode == 2 and "P999" in p.stderr


def test_bench_portfolio_json_interface():
    # the interface on small pipelines (the timed sizes are `make bench`'s business, not the test suite's)
    d = json.loads(run("bench", "portfolio", "--json", "--sizes", "50,200").stdout)
    for key in ("projects", "scenarios", "seconds", "gap", "objective_vs_greedy", "cases"):
        assert key in d
    assert d["projects"] == 50 and d["scenarios"] == 500 and d["gap"] <= 0.01
    assert [c["projects"] for c in d["cases"]] == [50, 200]
    assert all(c["objective_vs_greedy"] >= 1 - 1e-6 for c in d["cases"])
    assert run("bench", "portfolio", "--sizes", "5,x", ok=False).returncode == 2


def test_undated_projects_get_their_status_lead_time_and_instruments_act_only_on_their_bottleneck():
    """Issue 12: an undated project in financing delivered at once (Stibnite, 4,173 t in months 1-6) because a
    missing first-output date counted as zero months and permitting facilitation took 18 more months off."""
    from critmin.portfolio.model import ACCELERATED_STATUSES, InstrumentParameters, months_before_output

    ip = InstrumentParameters.load()
    notes: list[str] = []
    lead = ip.get("project", "lead_time_months:financing")
    assert months_before_output({"first_output": ""}, "financing", "2026-12", ip, notes) == lead >= 24
    assert "no first-output date" in notes[-1]
    assert months_before_output({"first_output": "2027-12", "delay_months": 0.0}, "construction", "2026-12", ip, []) == 12
    assert months_before_output({"first_output": ""}, "operating", "2026-12", ip, []) == 0.0
    # review 33 F3: a target passed by less than the class's slip is late, not unknown (Mountain Pass's Dy/Tb circuit,
    # "2026" in a plan of 2026-12, was put 18 months out): the target plus the slip; passed by more, the lead time
    slip = ip.get("project", "delay_months:construction")
    late: list[str] = []
    assert months_before_output({"first_output": "2026"}, "construction", "2026-12", ip, late) == pytest.approx(slip)
    assert "has passed without reported output" in late[0]
    # review 33b G6: the slip runs from now, so a project later against its target never comes sooner
    assert months_before_output({"first_output": "2026-06"}, "construction", "2026-12", ip, []) == pytest.approx(slip)
    assert months_before_output({"first_output": "2024"}, "construction", "2026-12", ip, []) == ip.get("project", "lead_time_months:construction")
    # a study's passed target is evidence of stalling: the class lead time, not the target plus its slip
    assert months_before_output({"first_output": "2026"}, "feasibility", "2026-12", ip, []) == ip.get("project", "lead_time_months:feasibility")
    # review 33b G2: a plant in commissioning with a passed date is producing now, as the deliveries say
    assert months_before_output({"first_output": "2026"}, "commissioning", "2026-12", ip, []) == 0.0
    # every status class of the register has a lead time
    from critmin.portfolio.register_schema import STATUS_CLASSES

    for status in STATUS_CLASSES:
        if status != "operating":
            assert np.isfinite(ip.get("project", f"lead_time_months:{status}", np.nan)), status
    # permitting help only before the permits; money only before financial close
    assert "permitted" not in ACCELERATED_STATUSES["regulatory"] and "financing" not in ACCELERATED_STATUSES["regulatory"]
    assert "construction" not in ACCELERATED_STATUSES["loan"]


def test_public_money_already_counted_limits_what_new_money_adds(simulator) -> None:
    """Review of 5 December 2026: projects whose financing the register already records were financed again.
    New money is additional only up to capex less the support already counted; a project whose counted support
    covers its capex gets no money option and says why."""
    from critmin.portfolio.model import (
        CAPEX_INSTRUMENTS,
        build_problem,
        counted_capex_support,
        sample_from_simulator,
    )
    from critmin.portfolio.register import bundled_register

    reg = bundled_register(simulator.atlas)
    sample = sample_from_simulator(simulator, draws=40, seed=2)
    without = build_problem(reg.projects, simulator.atlas, sample, simulator.nodes, as_of="2026-12")
    with_support = build_problem(reg.projects, simulator.atlas, sample, simulator.nodes, as_of="2026-12", support=reg.support)
    counted = counted_capex_support(reg.support)  # capex money only: an offtake buys output, it does not build the plant
    capex = reg.projects.set_index("project_id")["capex_usd"]
    private = reg.projects.set_index("project_id")["private_finance_usd"].fillna(0.0)
    covered = [p for p, v in counted.items() if v > 0 and capex.get(p, float("nan")) <= v + private.get(p, 0.0)]
    assert covered  # e.g. ReElement: the OSC loan it counts is its whole (estimated) capex
    # committed private finance counts (review 7): Vulcan's $550M and ATALCO's $300M close their gaps; review 8: MP's
    # July 2025 share offering (proceeds earmarked first for 10X) closes 10X's last $200M
    assert {"P015", "P077", "P003"} <= set(covered)
    for pid in covered:
        o_ = with_support.options_all
        money = o_[(o_["project_id"] == pid) & (o_["amount_usd"] > 0) & o_["instrument"].isin(CAPEX_INSTRUMENTS)]
        assert money.empty, pid
        reached = pid in set(with_support.options_all["project_id"]) or pid in set(without.options_all["project_id"])
        assert not reached or any(r.startswith("already financed") for r in with_support.reasons[pid]), pid
    # elsewhere no option's amount exceeds the gap left
    o = with_support.options_all
    for r in o[(o["amount_usd"] > 0) & o["instrument"].isin(CAPEX_INSTRUMENTS) & o["project_id"].map(capex).notna()].itertuples():
        assert r.amount_usd <= capex[r.project_id] - counted.get(r.project_id, 0.0) - private[r.project_id] + 1e-6
    assert without.options_all["amount_usd"].sum() > o["amount_usd"].sum()
    # committed private finance counts too (review 6: MP's 10X was offered USD 850 million of public money although
    # USD 650 million of its bank facility is earmarked for it; review 8: and USD 200 million of the July 2025
    # offering's proceeds, the gap left): capex 1,250 less DoD equity 400 less 850 = 0
    assert private["P003"] == 850e6
    p3 = o[(o["project_id"] == "P003") & o["instrument"].isin(CAPEX_INSTRUMENTS) & (o["amount_usd"] > 0)]
    assert p3.empty
    # USA Rare Earth's USD 1.5 billion placement finances its Stillwater expansion, whose capex is imputed (P076)
    assert private["P076"] == 1.5e9
    p76 = o[(o["project_id"] == "P076") & o["instrument"].isin(CAPEX_INSTRUMENTS) & (o["amount_usd"] > 0)]
    assert p76.empty


def test_a_project_on_a_node_the_simulator_lacks_is_a_data_gap_not_safe(plan, simulator):
    """Review 5: the scandium project (no node: no output by country on its basis) was rejected for 'no simulated
    shortfall', which reads as a finding that scandium is safe. Scandium is a node since review 16, with proxy
    demand: its reason says so. A project on an atlas stage the simulator has no baseline for (titanium/refine)
    says that its risk is not assessed."""
    reasons = {p["project_id"]: p["reason"] for p in plan["projects"]}
    assert "no simulated shortfall" not in reasons["P069"]
    assert "whose demand there is a proxy" in reasons["P069"] or "not a node of the simulator" in reasons["P069"]
    reg = bundled_register(simulator.atlas)
    moved = reg.projects[reg.projects["project_id"] == "P069"].copy()
    moved["commodity_id"], moved["stage"] = "titanium", "refine"
    assert "titanium/refine" not in simulator.nodes.index
    out = run_portfolio(simulator.atlas, simulator, moved, draws=40, seed=0, as_of="2026-11", gap=1e-4)
    why = {p["project_id"]: p["reason"] for p in out["projects"]}["P069"]
    assert "not a node of the simulator" in why and "data gap, not a finding of safety" in why


def test_a_funded_project_names_the_other_funded_projects_at_its_node(plan, simulator):
    """Review 5: three magnet projects were funded and each said 'no other project offered capacity at this node'.
    The bundled plan funds P084's permitting at ndpr/refine; Nolans (P008, same node) is forced in, so that two
    projects share a node whatever the bundled selection is."""
    from collections import defaultdict

    if len({s["node"] for s in plan["selected"]}) == len(plan["selected"]):
        reg = bundled_register(simulator.atlas)
        plan = run_portfolio(simulator.atlas, simulator, reg.projects, draws=100, seed=0, as_of="2026-11", gap=1e-4,
                             must_include=["P008", "P084"])
    by_node: dict[str, list[str]] = defaultdict(list)
    for s in plan["selected"]:
        by_node[s["node"]].append(s["project_id"])
    shared = {n: ps for n, ps in by_node.items() if len(ps) > 1}
    assert shared, "two projects funded at one node (forced where the bundled plan has none)"
    reasons = {p["project_id"]: p["reason"] for p in plan["projects"]}
    for ps in shared.values():
        for pid in ps:
            assert "no other project offered capacity" not in reasons[pid], reasons[pid]
            if "it beat" not in reasons[pid]:
                assert all(o in reasons[pid] for o in ps if o != pid), reasons[pid]


def test_a_funded_project_states_its_nameplate_its_output_once_producing_and_what_the_support_adds(plan):
    """Review 21: Mactung read as three capacities (31 t/yr in its reason, 2,142 t/yr in the stocks, a nameplate in the
    register) with nothing saying which is which. A funded project's reason names all three, from its own record."""
    from critmin._text import usd

    def t(x: float) -> str:  # the reasons' tonnes: thousands separated, two significant figures below 10
        return f"{x:,.0f}" if abs(x) >= 10 else f"{x:.2g}"

    reasons = {p["project_id"]: p["reason"] for p in plan["projects"]}
    money = [s for s in plan["selected"] if s["amount_usd"] > 0]
    assert money
    for s in money:
        why = reasons[s["project_id"]]
        once = s["output_once_producing_t_per_year"]
        nameplate = once / s["completion_probability"]
        assert f"nameplate {t(nameplate)} t/yr, expected to make {t(once)} t/yr once producing" in why, why
        assert f"the support adds {t(s['added_capacity_t_per_year'])} t/yr of expected output at {s['node']}" in why, why
        # review 23: face amount and expected cost in every reason, the tonnes per million on the expected cost
        econ = max(s.get("budget_cost_usd", s["cost_usd"]), 0.0)
        assert f"for {usd(s['amount_usd'])} of face amount and an expected cost to governments of {usd(econ)}" in why, why
        if abs(s["cost_usd"] - econ) > 0.5:
            assert f"charged {usd(s['cost_usd'])} to its budget" in why, why
        if econ > 0:
            assert f"{t(s['added_capacity_t_per_year'] / econ * 1e6)} t/yr per million USD of expected cost" in why, why
        assert not re.search(r"[0-9]{1,3}(,[0-9]{3}){2,} USD", why), why  # no raw USD figures to the dollar


def test_a_mine_is_not_credited_with_ore_no_participant_can_process_nor_with_proxy_demand(plan, simulator):
    """Reviews 7 and 8: Kings Mountain's free permitting action carried 20-37 % of the portfolio's benefit, all of it a
    lithium-ore shortfall of Japan (no lithium refinery) and of the USA (a proxy demand at the ore stage). The
    sample counts a participant at a node only where its demand is sourced and, for ore, where a plant of its own
    takes it (critmin.simulate.ore), as the stock plan does."""
    from critmin.portfolio.model import sample_from_simulator
    from critmin.simulate.ore import unusable_ore_reason

    reasons = {p["project_id"]: p for p in plan["projects"]}
    assert reasons["P051"]["decision"] != "selected"
    assert "no plant at the next stage" in reasons["P051"]["reason"] and "lithium/mine" in reasons["P051"]["reason"]
    node = simulator.nodes.get("lithium", "mine")
    # review 11: the U.S. lithium demand is now estimated from USGS trade (2,133 t), not a proxy; the ore rule drops it
    assert unusable_ore_reason(simulator, node, "JPN") and unusable_ore_reason(simulator, node, "USA")
    assert "estimated from trade" in str(node.demand_basis["USA"])
    s = sample_from_simulator(simulator, draws=40, seed=0)
    assert "lithium/mine" not in s.node_names
    assert {"USA", "JPN"} <= set(s.metadata["ore_not_usable"]["lithium/mine"])
    # the U.S. has no lithium refinery either: without the demand rule its shortfall is still not ore it can use
    s2 = sample_from_simulator(simulator, draws=40, seed=0, sourced_demand_only=False)
    assert "lithium/mine" not in s2.node_names and {"USA", "JPN"} <= set(s2.metadata["ore_not_usable"]["lithium/mine"])
    # a node where both participants' demand is sourced and no ore rule applies keeps the bloc's whole shortfall
    k = next(n for n in s.node_names if n not in s.metadata["proxy_demand_not_counted"] and n not in s.metadata["ore_not_usable"])
    assert s.shortfall[s.node_names.index(k)].sum() == pytest.approx(s2.shortfall[s2.node_names.index(k)].sum())
    # review 33 F4: "the need is counted where it is bought" was not so: the ore shortfall the sample drops is carried
    # to the refined stage (the stock plan's rule, simulate.carry.carry_unstockable_ore), where refining answers it
    from critmin.simulate.risk import risk_run

    assert {("USA", "lithium/mine", "lithium/refine"), ("JPN", "lithium/mine", "lithium/refine")} <= set(s.metadata["ore_carried"])
    raw = risk_run(simulator, 40, 0).node_draws.get("lithium/refine")
    own = 0.0 if raw is None else float((raw[3] + raw[4]).sum())  # the participants' shortfall there before the carry
    assert s.shortfall[s.node_names.index("lithium/refine")].sum() > own
    assert "counted where it is bought (lithium/refine)" in reasons["P051"]["reason"]


def test_a_project_treated_as_financed_shows_a_status_that_says_otherwise(plan):
    """Review 9: Kellyton was 'finance already in place (status construction)' while its published status reads
    'financing in progress'; the rule is the status class's assumption and the reason now says so and quotes it."""
    reasons = {p["project_id"]: p["reason"] for p in plan["projects"]}
    r = reasons["P045"]
    # review 34 H3: a class rule that overrode the status text kept Kellyton "coming with or without support"; its class
    # is now financing (decisions.csv), so an instrument can be credited with closing its finance
    assert "treated as financed" not in r
    from critmin.portfolio.register import bundled_register

    k = bundled_register().projects.set_index("project_id").loc["P045"]
    assert k["status_class"] == "financing" and "financing in progress" in str(k["status"])


@pytest.fixture(scope="module")
def supported(simulator):
    """The bundled register, its counted capex support and the problem built with that support (40 draws)."""
    from critmin.portfolio.model import build_problem, counted_capex_support, sample_from_simulator
    from critmin.portfolio.register import bundled_register

    reg = bundled_register(simulator.atlas)
    bp = build_problem(reg.projects, simulator.atlas, sample_from_simulator(simulator, draws=40, seed=2), simulator.nodes,
                       as_of="2026-12", support=reg.support)
    return reg, counted_capex_support(reg.support), bp


@pytest.fixture(scope="module")
def permits_unknown(simulator):
    """As ``supported``, with White Mesa Phase 2's federal permits unknown (blank) instead of none left: the register
    before review 27, to test what permitting help does to a project that could use it."""
    from critmin.portfolio.model import build_problem, sample_from_simulator
    from critmin.portfolio.register import bundled_register

    reg = bundled_register(simulator.atlas)
    projects = reg.projects.copy()
    projects.loc[projects["project_id"] == "P084", "federal_decision_pending"] = ""
    bp = build_problem(projects, simulator.atlas, sample_from_simulator(simulator, draws=40, seed=2), simulator.nodes,
                       as_of="2026-12", support=reg.support)
    return reg, projects, bp


def test_permitting_help_needs_a_federal_decision_left_to_take(supported, permits_unknown, simulator) -> None:
    """Review 27: White Mesa Phase 2, licensed by the State of Utah, was funded "in any case" by FAST-41 permitting
    facilitation, which speeds federal decisions. With ``federal_decision_pending`` no there is no regulatory option,
    and the project says why; unknown (blank), the option stays."""
    reg, _, bp = supported
    assert reg.projects.set_index("project_id").at["P084", "federal_decision_pending"] == "no"
    o = bp.options_all
    assert o[(o["project_id"] == "P084") & (o["instrument"] == "regulatory")].empty
    assert any("no U.S. federal permit or record of decision left to take" in r for r in bp.reasons["P084"])
    o2 = permits_unknown[2].options_all
    assert len(o2[(o2["project_id"] == "P084") & (o2["instrument"] == "regulatory")])
    # review 35 L8: the Upper Kobuk projects' permits are already facilitated (the U.S. government's commitment of
    # October 2025): no regulatory option; a project that would have one says why
    assert reg.projects.set_index("project_id").at["P064", "federal_decision_pending"] == "facilitated"
    assert o[(o["project_id"] == "P064") & (o["instrument"] == "regulatory")].empty
    from critmin.portfolio.model import build_problem, sample_from_simulator

    reg2, projects, _ = permits_unknown
    projects = projects.copy()
    projects.loc[projects["project_id"] == "P084", "federal_decision_pending"] = "facilitated"
    bp3 = build_problem(projects, simulator.atlas, sample_from_simulator(simulator, draws=40, seed=2), simulator.nodes,
                        as_of="2026-12", support=reg2.support)
    o3 = bp3.options_all
    assert o3[(o3["project_id"] == "P084") & (o3["instrument"] == "regulatory")].empty
    assert any("a federal commitment to advance its permits is already on record" in r for r in bp3.reasons["P084"])


def test_public_money_of_all_agencies_leaves_the_sponsor_its_share(supported) -> None:
    """Review 10: a USD 188.8M DOE guarantee was stacked on Novonix's USD 754.8M DOE loan (80.0 % of its eligible
    cost), making it 100 % public debt. Public money of all agencies, counted plus new, is at most
    max_public_share_of_capex of capex (0.8); a project already there gets no capex option and says why."""
    from critmin.portfolio.model import CAPEX_INSTRUMENTS

    reg, counted, bp = supported
    capex = reg.projects.set_index("project_id")["capex_usd"]
    assert counted["P043"] / capex["P043"] == pytest.approx(0.80, abs=0.005)
    o = bp.options_all
    assert o[(o["project_id"] == "P043") & (o["amount_usd"] > 0) & o["instrument"].isin(CAPEX_INSTRUMENTS)].empty
    assert any(r.startswith("already financed to the public share cap") for r in bp.reasons["P043"])
    # everywhere, counted public support plus a new capex instrument stays within 80 % of capex
    for r in o[(o["amount_usd"] > 0) & o["instrument"].isin(CAPEX_INSTRUMENTS) & o["project_id"].map(capex).notna()].itertuples():
        assert counted.get(r.project_id, 0.0) + r.amount_usd <= 0.8 * capex[r.project_id] + 1e-6, r.project_id


def test_unspent_budgets_name_their_real_constraint(plan):
    """Review 10: 'the remaining options' nodes are covered' while most of the avoidable loss sat at nodes where
    nothing was avoided. Review 11: offtake budgets were blamed on the projects' additionality, while the cause is
    that an offtake at market price had no value in the finance model; it is now valued as a hedge (review 12), and
    an offtake budget left unspent says which projects gained none. Each reason names its constraint."""
    unspent = plan["unspent"]
    assert unspent
    for key, why in unspent.items():
        if key.endswith(":offtake") and "additionality" not in why and "funded" not in why and "net-benefit" not in why:
            assert "hedge" in why and "by status" in why, (key, why)
        if "net-benefit test" in why:
            assert "the best, P" in why and "a year needed to justify its cost" in why, (key, why)
    assert any("none of its options adds capacity to" in w for w in unspent.values())
    # review 13: options that add nothing at a named node are named, not denied
    assert any("add no expected capacity" in w for w in unspent.values())


def test_support_above_capex_is_named_as_a_data_problem(supported) -> None:
    """Review 12: 'already financed to the public share cap' was printed where counted support exceeded the
    register's capex (Noveon 140 %), a stale capex rather than a financed project; the reason now says so."""
    reg, counted, bp = supported
    capex = reg.projects.set_index("project_id")["capex_usd"]
    over = [p for p, v in counted.items() if capex.get(p, float("inf")) < v and p in bp.reasons]
    # (a project whose node has no usable shortfall is rejected for that first, before its money is looked at)
    financed = {p: [r for r in bp.reasons[p] if r.startswith("already financed")] for p in over}
    assert "P018" in financed and financed["P018"]  # Noveon: US$35 M counted against a US$25 M capex
    for pid, rs in financed.items():
        assert all("suggests an out-of-date capex" in r for r in rs), (pid, rs)


def test_an_offtake_is_worth_its_hedge_and_costs_its_resale_loss(supported) -> None:
    """Review 12: offtakes were worth nothing to any project (offtake budgets never added capacity); valued as a hedge,
    an offtake at the market price was then free, and a USD 1.44 B DLA lithium offtake bought 1.7 t/yr. Now each
    offtake is worth the viability gap it closes in the low-price case (the finance record's hedge value) and costs
    its expected resale loss, (1 - resale share) of the contracted value, discounted."""
    _, _, bp = supported
    o = bp.options_all
    off = o[o["instrument"] == "offtake"]
    assert len(off) and (off["budget_cost_usd"] > 0.0).all()
    # the cost is the resale loss: between 0 and 10 % of the face amount (resale share 0.95, 10 discounted years)
    assert ((off["budget_cost_usd"] / off["amount_usd"]).between(0.0, 0.1)).all()
    hedges = {r["project_id"]: r["offtake_hedge_value_usd"] for r in bp.finance}
    assert any(v > 0 for v in hedges.values())
    for r in off.itertuples():
        assert r.value_to_project_usd == pytest.approx(hedges.get(r.project_id, 0.0)), r.project_id
    # a positive hedge earns an uplift where the project is still to be financed
    gained = off[(off["value_to_project_usd"] > 0) & (off["dq_t"] > 0)]
    assert len(gained)


def test_coproduct_revenue_and_uncovered_debt_enter_the_project_finance(supported, simulator) -> None:
    """Review 12: Stibnite's gold (most of its revenue) was not in the register, so its antimony-only cash flow covered
    its debt 0.32 times, yet its DOE guarantee was costed at the default-rate model; NICO's 0.18. Now the register's
    co-products enter the cash flow at their node prices, and a loan or guarantee is costed for the debt the project's
    cash cannot repay over the tenor in the low-price case."""
    _, _, bp = supported
    fin = {r["project_id"]: r for r in bp.finance}
    stib = fin["P034"]
    assert any(a.startswith("co-products a year at nameplate: gold 14.4 t") for a in stib["assumptions"])
    assert stib["min_dscr_commercial_loan"]["1x"] > 1.0  # with the gold, the mine services a commercial loan
    # review 13: the price cases stress the whole basket (gold too), not the antimony alone
    assert stib["price_scenarios"]["0.7x"] == pytest.approx(0.7 * stib["price_scenarios"]["1x"])
    assert stib["price_scenarios"]["1x"] > 5 * stib["node_price_usd_per_t"]
    # (gold held at today's price, a 30 % fall of the antimony alone would move the NPV by about a tenth)
    assert stib["npv_usd"]["0.7x"] < 0.75 * stib["npv_usd"]["1x"]
    # its published operating cost (the whole mine, gold included) replaces 70 % of the basket's price
    assert stib["unit_cost_usd_per_t"] == pytest.approx(41450.0)  # review 14: all-in (sustaining capex, royalties)
    # NICO (cobalt ore, Canada): neither participant's need counts at the cobalt ore node since review 23 (no U.S.
    # refinery; Japan's runs on captive Philippine feed), so it has no option and no finance record here; its finance
    # is read with Japan's refinery taken as buying its ore on the market
    import dataclasses

    from critmin.portfolio.model import build_problem, sample_from_simulator

    assert "P063" not in fin
    reg = supported[0]
    sim2 = dataclasses.replace(simulator, captive_feed={})
    bp2 = build_problem(reg.projects, sim2.atlas, sample_from_simulator(sim2, draws=40, seed=2), sim2.nodes, as_of="2026-12", support=reg.support)
    assert any("bismuth" in a for a in {r["project_id"]: r for r in bp2.finance}["P063"]["assumptions"])
    o = bp.options_all
    unpaid = o[o["terms"].str.contains("unpaid, added to the cost", regex=False)]
    assert len(unpaid) and (unpaid["instrument"].isin(["loan", "loan_guarantee"])).all()
    # a project whose cash repays the loan in every price case carries no such charge
    assert not o[(o["project_id"] == "P034") & o["terms"].str.contains("unpaid", regex=False)].shape[0]


def test_a_horizon_inside_its_documented_range_solves(tmp_path: Path) -> None:
    """Review 13: horizon_months 66, 72 or 120 (documented range 36-120) crashed HiGHS ('Error adding constraint ...
    kWarning'): added capacities of about 5e-15, rounding of equal output shares, became matrix coefficients."""
    from importlib import resources

    from critmin.portfolio.model import DQ_NOISE

    src = Path(str(resources.files("critmin.portfolio").joinpath("data/instrument_parameters.csv")))
    text = src.read_text(encoding="utf-8")
    assert "portfolio,horizon_months,180," in text
    f = tmp_path / "ip.csv"
    f.write_text(text.replace("portfolio,horizon_months,180,", "portfolio,horizon_months,132,"), encoding="utf-8")
    d = json.loads(run("portfolio", "--instrument-parameters", str(f), "--draws", "20", "--as-of", "2026-12", "--format", "json").stdout)
    assert d["status"] == "Optimal" and DQ_NOISE > 0


def test_uncovered_debt_is_charged_at_todays_price_and_worthless_instruments_earn_no_uplift(supported) -> None:
    """Review 13: the uncovered-debt term, averaged over the price cases, charged every loan for the 0.7x case (zero
    margin by the unit-cost assumption) on top of a default rate calibrated on realised losses; it is now taken at
    today's price (Mactung repays 2.98 times: no charge). And a DLA offtake worth nothing to Stibnite (no viability
    gap) was credited +0.10 completion."""
    _, _, bp = supported
    o = bp.options_all
    for pid in ("P066",):
        debt = o[(o["project_id"] == pid) & o["instrument"].isin(["loan", "loan_guarantee"])]
        assert len(debt) and not debt["terms"].str.contains("cannot repay", regex=False).any(), pid
    assert o[(o["project_id"] == "P009") & (o["instrument"] == "loan")]["terms"].str.contains("cannot repay", regex=False).all()
    worthless = o[o["instrument"].isin(["offtake", "price_floor"]) & (o["value_to_project_usd"] <= 0)]
    assert len(worthless) and (worthless["dq_t"] <= 0).all()


def test_a_published_unit_cost_and_life_replace_the_defaults(simulator) -> None:
    """Review 13: every project's unit cost was 70 % of today's price (so the 0.7x case had zero margin by
    construction) and every project ran 25 years at nameplate (Stibnite's first-four-year rates over 25 years gave
    more metal than its reserves). A published unit cost (the whole plant's, co-products included) and life replace
    them: the 0.7x case then has a margin, and a shorter life lowers the NPV."""
    from critmin.portfolio.model import build_problem, sample_from_simulator
    from critmin.portfolio.register import bundled_register

    reg = bundled_register(simulator.atlas)
    projects = reg.projects.copy()
    row = projects["project_id"] == "P066"
    # from the defaults: Mactung's 2009 study cost and life are in the register since review 22
    projects.loc[row, ["unit_cost_usd_per_t", "life_years"]] = np.nan
    sample = sample_from_simulator(simulator, draws=20, seed=2)
    base = build_problem(projects, simulator.atlas, sample, simulator.nodes, as_of="2026-12", support=reg.support)
    f0 = next(r for r in base.finance if r["project_id"] == "P066")
    price = f0["price_scenarios"]["1x"]
    projects.loc[row, "unit_cost_usd_per_t"] = 0.4 * price
    projects.loc[row, "life_years"] = 12.0
    got = build_problem(projects, simulator.atlas, sample, simulator.nodes, as_of="2026-12", support=reg.support)
    f1 = next(r for r in got.finance if r["project_id"] == "P066")
    assert f1["unit_cost_usd_per_t"] == pytest.approx(0.4 * price)
    assert any(a.startswith("life 12 years at nameplate") for a in f1["assumptions"])
    assert any("published" in a for a in f1["assumptions"] if a.startswith("unit cost"))
    assert f1["npv_usd"]["0.7x"] > f0["npv_usd"]["0.7x"]  # the low case has a margin now
    # with the default cost, a 12-year life is worth less than 25 years
    projects.loc[row, "unit_cost_usd_per_t"] = np.nan
    short = build_problem(projects, simulator.atlas, sample, simulator.nodes, as_of="2026-12", support=reg.support)
    f2 = next(r for r in short.finance if r["project_id"] == "P066")
    assert f2["npv_usd"]["1x"] < f0["npv_usd"]["1x"]


def test_a_grant_closes_the_gap_at_todays_price(supported) -> None:
    """Review 13: grants were sized to the mean gap over the price cases (P084 offered US$120 M with an NPV of
    +US$68 M at today's price); a grant closes the gap at today's price, and a project viable there gets none."""
    _, _, bp = supported
    fin = {r["project_id"]: r for r in bp.finance}
    o = bp.options_all
    grants = o[o["instrument"] == "grant"]
    assert len(grants)
    for r in grants.itertuples():
        assert r.amount_usd <= fin[r.project_id]["viability_gap_usd"]["1x"] * (1 + 1e-9), r.project_id
    viable = {p for p, f in fin.items() if f["viability_gap_usd"]["1x"] <= 0}
    assert viable and not set(grants["project_id"]) & viable


def test_permitting_help_adds_nothing_to_a_project_past_its_permits(permits_unknown) -> None:
    """Review 13: Rhyolite Ridge (permitted, Oct 2024) and Stibnite (in financing after its Jan 2025 record of
    decision) were credited with a permitting facilitation; only a project still waiting for its permits gains."""
    reg, projects, bp = permits_unknown
    status = projects.set_index("project_id")["status_class"]
    o = bp.options_all
    reg_opts = o[o["instrument"] == "regulatory"]
    assert len(reg_opts)
    late = reg_opts[reg_opts["project_id"].map(status) != "feasibility"]
    assert len(late) and (late["dq_t"] <= 0).all()
    assert (reg_opts[reg_opts["project_id"].map(status) == "feasibility"]["dq_t"] > 0).any()
    # review 14: its uplift does not depend on the viability gap (White Mesa Phase 2 has one and gained nothing)
    wm = reg_opts[reg_opts["project_id"] == "P084"]
    assert len(wm) == 1 and float(wm["viability_gap_usd"].iloc[0]) > 0 and float(wm["completion_probability"].iloc[0]) > 0.35 + 1e-9


def test_a_funded_project_names_the_support_in_its_pipeline(simulator) -> None:
    """Review 13: the plan recommended a DOE guarantee for Stibnite without saying that EXIM's letter of interest (up to
    US$1.8 B, a formal application in 2025) covers the same debt. Support in the pipeline is not counted as money in
    place, but a funded capex option names it. Review 26: EXIM's Board approved Stibnite's loan on 21 May 2026 (S121),
    seven months before the plan: counted, it finances the mine, which is no longer a candidate for new money."""
    import pandas as pd

    reg = bundled_register(simulator.atlas)
    s = reg.support.set_index("support_id")
    # a pending letter for the guaranteed project: named beside the option, not counted
    pending = s.loc[["S120"]].reset_index().assign(support_id="S999", project_id="P066", amount_usd=1e8)
    support = pd.concat([reg.support, pending], ignore_index=True)
    plan = run_portfolio(simulator.atlas, simulator, reg.projects, support=support, draws=40, seed=0, as_of="2026-12")
    reasons = {p["project_id"]: p["reason"] for p in plan["projects"]}
    sel = {x["project_id"]: x for x in plan["selected"]}
    assert "P034" not in sel and reasons["P034"].startswith("already financed")
    assert "2,474,900,000 USD" in reasons["P034"]  # DoD grants 74.9 M + EXIM 2.4 B
    assert "P066" in sel
    assert not any("S999" in a for a in sel["P066"]["assumptions"])  # a superseded letter is not pending
    pending = pending.assign(commitment_status="preliminary")
    support = pd.concat([reg.support, pending], ignore_index=True)
    plan = run_portfolio(simulator.atlas, simulator, reg.projects, support=support, draws=40, seed=0, as_of="2026-12")
    sel = {x["project_id"]: x for x in plan["selected"]}
    assert "pending, not counted: Export-Import Bank of the United States loan of up to 100 M USD (preliminary, S999)" in " ".join(
        sel["P066"]["assumptions"])


def test_co_products_add_supply_at_their_nodes(permits_unknown) -> None:
    """Review 13: White Mesa Phase 2's Dy and Tb oxides and NICO's bismuth were revenue but relieved no node. Each option
    of a project with co-products supplies them at their nodes, in proportion to its added capacity."""
    from critmin.portfolio.optimise import CO_SUPPLY

    _, _, bp = permits_unknown
    o = bp.options_all
    names = bp.problem.node_names
    wm = o[(o["project_id"] == "P084") & (o["dq_t"] > 0)]
    assert len(wm)
    for r in wm.itertuples():
        co = {names[n]: q for n, q in getattr(r, CO_SUPPLY)}
        assert set(co) == {"dysprosium/refine", "terbium/refine"}
        assert co["dysprosium/refine"] == pytest.approx(240.0 * r.dq_t / 5000.0)
    plain = o[o["project_id"] == "P066"]
    assert len(plain) and all(not c for c in plain[CO_SUPPLY])


def test_an_idle_operating_plant_says_so(plan) -> None:
    """Review 14: Vidalia (0 t in 2025, customer qualification) and White Mesa Phase 1 (35 of 850 t) were 'already
    producing'. The reason now says the reported output and that support for idle capacity is not modelled."""
    reasons = {p["project_id"]: p["reason"] for p in plan["projects"]}
    for pid in ("P040", "P011"):
        assert reasons[pid].startswith("treated as producing (status class operating)"), reasons[pid]
        assert "of its" in reasons[pid] and "nameplate" in reasons[pid] and "not modelled" in reasons[pid]
    assert any(r.startswith("already producing") for r in reasons.values())


def test_a_us_anode_project_is_financed_at_the_price_of_its_market(supported) -> None:
    """Review 14: U.S. anode projects were financed at China's domestic anode price (US$3,556/t) although U.S. buyers
    of Chinese material pay duties. Their finance uses the price in the market they sell to
    (price_ratio_in_market:USA:battery_anode/anode); a project elsewhere, or at another node, keeps the node price.
    Review 34b K6: the ratio was the preliminary anti-dumping and countervailing duties of 2025 (2.05), which never
    became orders (the ITC's negative vote of 12 March 2026); it is now the Section 301 tariff in force, 1.25."""
    reg, _, bp = supported
    fin = {r["project_id"]: r for r in bp.finance}
    vid = fin["P075"]
    assert vid["node_price_usd_per_t"] == pytest.approx(1.25 * 3556.0, rel=0.01)
    assert any(a.startswith("revenue at 1.25x the node price") for a in vid["assumptions"])
    # review 15: a duty raises what a plant is paid, not what it costs. Review 35b M1: the default, 70 % of the world
    # price (US$2,489/t), was below both published U.S. costs, so a U.S. anode plant without its own published cost
    # (Graphite Creek, Kellyton) is financed at a published cost of Vidalia, an analogue, and says so (review 36: at the
    # scale built, US$3,149/t); a plant with its own published cost keeps it (Novonix Riverside, P042)
    for pid in ("P044", "P045"):
        assert fin[pid]["unit_cost_usd_per_t"] == pytest.approx(3149.0)
        assert any("an analogue plant's published cost, not this plant's (unit_cost_analogue:USA:battery_anode/anode" in a
                   for a in fin[pid]["assumptions"])
    assert fin["P042"]["unit_cost_usd_per_t"] != pytest.approx(3023.0)
    assert not any("analogue" in a for a in fin["P042"]["assumptions"])
    assert not any("analogue" in a for a in fin["P066"]["assumptions"])  # tungsten in Canada keeps the default rule
    assert fin["P066"]["node_price_usd_per_t"] == pytest.approx(fin["P066"]["price_scenarios"]["1x"])  # tungsten, Canada
    assert not any("price in the market" in a for a in fin["P066"]["assumptions"])


def test_projects_relieve_only_the_shortfall_the_stocks_leave(simulator):
    """Review 18b: the U.S. antimony stock and Stibnite claimed the same avoidable loss. With stocks in place the
    sample's shortfall is Σ_i max(D_is - S_i, 0) over the members (by hand on the draws), the stocks cover
    Σ_i min(D_is, S_i) at the members' buy-back premium, the value of a tonne is unchanged, a stock as large as every
    shortfall leaves no shortfall, and the avoidable loss at the node falls."""
    from critmin.simulate.risk import risk_run

    res = risk_run(simulator, 40, 0)
    raw = sample_from_simulator(simulator, draws=40, seed=0, result=res)
    k = raw.node_names.index("antimony/mine")
    nd = res.node_draws["antimony/mine"]
    held = {"USA": 1000.0, "JPN": 200.0}
    net = sample_from_simulator(simulator, draws=40, seed=0, result=res, stocks_t={"antimony/mine": held})
    assert net.node_names == raw.node_names and np.array_equal(net.value_per_t, raw.value_per_t)
    want = np.maximum(nd[3] - 1000.0, 0.0) + np.maximum(nd[4] - 200.0, 0.0)
    assert np.allclose(net.shortfall[k], want) and np.allclose(raw.shortfall[k], nd[3] + nd[4])
    # what the stocks cover, and what sparing a covered tonne saves: the members' buy-back premium per tonne
    from critmin.simulate.run import REFILL_ROW

    cov_u, cov_j = np.minimum(nd[3], 1000.0), np.minimum(nd[4], 200.0)
    assert np.allclose(net.stocked[k], cov_u + cov_j) and raw.stocked is None
    with np.errstate(divide="ignore", invalid="ignore"):
        pi_u = np.where(nd[3] > 0, nd[REFILL_ROW] / nd[3], 0.0)
        pi_j = np.where(nd[4] > 0, nd[REFILL_ROW + 1] / nd[4], 0.0)
        want_pi = np.where(cov_u + cov_j > 0, (cov_u * pi_u + cov_j * pi_j) / (cov_u + cov_j), 0.0)
    assert np.allclose(net.stocked_value[k], want_pi) and (net.stocked_value[k] > 0).any()
    others = [i for i in range(len(raw.node_names)) if i != k]
    assert np.array_equal(net.shortfall[others], raw.shortfall[others])
    full = sample_from_simulator(simulator, draws=40, seed=0, result=res,
                                 stocks_t={"antimony/mine": {"USA": float(nd[3].max()), "JPN": float(nd[4].max())}})
    assert not full.shortfall[k].any()
    reg = bundled_register(simulator.atlas)
    a = run_portfolio(simulator.atlas, simulator, reg.projects, draws=40, seed=0, as_of="2026-11", risk_result=res)
    b = run_portfolio(simulator.atlas, simulator, reg.projects, draws=40, seed=0, as_of="2026-11", risk_result=res,
                      stocks_t={"antimony/mine": held})
    node = {r["node"]: r for r in b["risk_reduction"]}
    before = {r["node"]: r for r in a["risk_reduction"]}
    assert node["antimony/mine"]["avoidable_loss_usd"] < before["antimony/mine"]["avoidable_loss_usd"]
    assert b["metadata"]["stocks_netted_t"] == {"antimony/mine": held} and a["metadata"]["stocks_netted_t"] == {}


def test_the_price_part_of_a_supply_value_and_the_blocs_share_of_new_tonnes(simulator):
    """Review 23: the price-effect part of each supply value lies within [0, SV] (node-draw rows 16-21 against 7-12),
    the sample records it per node within [0, v], and the bloc's share of an added tonne is its counted members'
    demand over the market rationed outside the dominant supplier (antimony: China 58 % of output, exporting about
    half: the bloc gets a third, not all of it)."""
    from critmin.simulate.risk import risk_run
    from critmin.simulate.run import PRICE_ROW, SUPPLY_ROW

    res = risk_run(simulator, 40, 0)
    for nd in res.node_draws.values():
        for val in ("welfare", "input_output"):
            pp, sv = nd[PRICE_ROW[val]:PRICE_ROW[val] + 3], nd[SUPPLY_ROW[val]:SUPPLY_ROW[val] + 3]
            assert (pp >= 0).all() and (pp <= sv + 1e-6 * np.maximum(sv, 1.0)).all()
    smp = sample_from_simulator(simulator, draws=40, seed=0, result=res)
    assert smp.price_value_per_t is not None and smp.supply_share is not None
    assert (smp.price_value_per_t >= 0).all() and (smp.price_value_per_t <= smp.value_per_t + 1e-9).all()
    assert (smp.price_value_per_t > 0).any()
    k = smp.node_names.index("antimony/mine")
    node = simulator.nodes.nodes[simulator.nodes.index["antimony/mine"]]
    e = node.export_share["CHN"][0]
    want = (node.demand_share["USA"] + node.demand_share["JPN"]) / (1.0 - node.shares["CHN"] * (1.0 - e))
    assert smp.supply_share[k] == pytest.approx(want) and 0.2 < smp.supply_share[k] < 0.6
    assert smp.metadata["share_of_added_supply"]["antimony/mine"]["share"] == pytest.approx(want)


def test_an_eu_instrument_lends_in_the_eu_or_to_a_named_strategic_project_and_an_ended_budget_is_not_spent(simulator):
    """Review 34b K1: RESourceEU ("EU+partners (CRMA strategic projects)") was read as any country outside the countries
    of concern, so a Canadian and a Kazakh tungsten mine were sent to it; and its "12 months from 2025-12-03" had run
    out by a plan of December 2026."""
    from critmin.portfolio.model import budget_end, eligible_country

    rule = "EU+partners (CRMA strategic projects)"
    atlas = simulator.atlas
    assert eligible_country(rule, "FRA", "EUU", atlas) and eligible_country(rule, "EST", "EUU", atlas)
    assert not eligible_country(rule, "CAN", "EUU", atlas) and not eligible_country(rule, "KAZ", "EUU", atlas)
    assert eligible_country(rule, "KAZ", "EUU", atlas, "a CRMA Strategic Project (June 2025 list)")
    assert not eligible_country(rule, "CHN", "EUU", atlas, "CRMA strategic project")
    assert budget_end("12 months from 2025-12-03") == "2026-12-03"
    assert budget_end("until 2027-09-30 (OBBBA, 'Defense Production Act purposes')") == "2027-09-30"
    assert budget_end("FY2020 budget (latest per-instrument split found)") is None


def test_projects_relieve_only_the_shortfall_the_supply_in_place_leaves(simulator):
    """Review 35 L4: the stocks were sized net of the supply the pipeline delivers in the year ahead (Sangdong's tungsten)
    while the projects were not, so Mactung was credited with shortfalls Sangdong covers. With supply received in place,
    each member's shortfall is first what it leaves, max(D_is - (months_s / 12) r_i, 0) (by hand on the draws), then
    the stocks act on that."""
    from critmin.simulate.risk import risk_run

    res = risk_run(simulator, 40, 0)
    raw = sample_from_simulator(simulator, draws=40, seed=0, result=res)
    k = raw.node_names.index("antimony/mine")
    nd = res.node_draws["antimony/mine"]
    got = {"USA": 300.0, "JPN": 50.0}
    net = sample_from_simulator(simulator, draws=40, seed=0, result=res, supply_received_t={"antimony/mine": got},
                                stocks_t={"antimony/mine": {"USA": 100.0}})
    d_u = np.maximum(nd[3] - nd[6] / 12.0 * 300.0, 0.0)
    d_j = np.maximum(nd[4] - nd[6] / 12.0 * 50.0, 0.0)
    assert np.allclose(net.shortfall[k], np.maximum(d_u - 100.0, 0.0) + d_j)
    assert np.allclose(net.stocked[k], np.minimum(d_u, 100.0))
    assert net.metadata["supply_netted_t"] == {"antimony/mine": got}
    # review 35b M3: receipts given draw by draw replace the expectation
    r_u = np.where(np.arange(40) % 2 == 0, 0.0, 600.0)
    drawn = sample_from_simulator(simulator, draws=40, seed=0, result=res, supply_received_draws={"antimony/mine": {"USA": r_u}})
    assert np.allclose(drawn.shortfall[k], np.maximum(nd[3] - nd[6] / 12.0 * r_u, 0.0) + nd[4])
    with pytest.raises(Exception, match="values for 40 draws"):
        sample_from_simulator(simulator, draws=40, seed=0, result=res, supply_received_draws={"antimony/mine": {"USA": r_u[:5]}})
    others = [i for i in range(len(raw.node_names)) if i != k]
    assert np.array_equal(net.shortfall[others], raw.shortfall[others])


def test_the_programme_is_checked_with_the_controls_in_force_relaxed(simulator):
    """Review 34b K5: a project's benefit held today's expected loss over 15 years while the stocks are written down at
    the regime model's relaxation rate. Each month of added output is weighed by w_t = a (1 - ρ)^(t/12) + 1 - a (the
    in-force share a of the node's loss relaxed at ρ a year, not re-imposed; by hand), which never adds capacity; the
    record says which choices hold."""
    from critmin.portfolio.finance import mean_output_share
    from critmin.simulate.risk import risk_run
    from critmin.stockpile.plan import loss_persistence

    # by hand: 24 months, no discounting, nameplate from month 1, a = 0.5, ρ = 0.19: mean of 0.5 (0.81)^(t/12) + 0.5
    t = np.arange(24)
    assert mean_output_share(0, 24, 0.0, persistence=(0.5, 0.19)) == pytest.approx(float(np.mean(0.5 * 0.81 ** (t / 12) + 0.5)))
    assert mean_output_share(0, 24, 0.0, persistence=(0.0, 0.19)) == pytest.approx(1.0)
    assert mean_output_share(0, 24, 0.0, persistence=(1.0, 1.0)) == pytest.approx(1.0 / 24.0)  # only month 0 keeps its loss
    res = risk_run(simulator, 40, 0)
    per = loss_persistence(simulator, res.scenarios)
    assert per and all(0.0 <= a <= 1.0 and 0.0 <= r <= 1.0 for a, r in per.values())
    assert any(a > 0 for a, _ in per.values())
    reg = bundled_register(simulator.atlas)
    rec = run_portfolio(simulator.atlas, simulator, reg.projects, draws=40, seed=0, as_of="2026-11", risk_result=res, persistence=per)
    rc = rec["selection_with_controls_relaxed"]
    chosen = {s["project_id"] for s in rec["selected"]}
    assert set(rc["both"]) | set(rc["only_held"]) == chosen
    for pid, q in rc["added_capacity_t_per_year"].items():
        assert 0.0 <= q["relaxed"] <= q["held"] * (1 + 1e-9), pid
    assert rc["expected_avoided_usd_same_programme"] <= rc["expected_avoided_usd_held"] * (1 + 1e-9)
    assert set(rc["persistence"]) <= {s["node"] for s in rec["selected"]}
    assert run_portfolio(simulator.atlas, simulator, reg.projects, draws=40, seed=0, as_of="2026-11",
                         risk_result=res)["selection_with_controls_relaxed"] == {}


def test_a_close_comparison_is_not_printed_as_a_tie() -> None:
    """Review 36 (N11): Kellyton's reason read "$1 M a year against $1 M needed". Two figures that usd() prints alike get
    a decimal more; figures it tells apart are unchanged."""
    from critmin._text import usd_apart

    assert usd_apart(933_000.0, 1_440_000.0) == ("$933 k", "$1 M")
    assert usd_apart(1_250_000.0, 1_410_000.0) == ("$1.25 M", "$1.41 M")
    assert usd_apart(12_300.0, 12_400.0) == ("$12.30 k", "$12.40 k")
    assert usd_apart(5e6, 9e6) == ("$5 M", "$9 M")
