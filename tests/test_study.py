"""Issue 12: one study from the group's own inputs (critmin study init + critmin plan --study), checked before
any work, and the executive answer that agrees with the plan's parts."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from tests.test_cli import run


@pytest.fixture(scope="module")
def study_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("study")
    run("study", "init", str(d), "--as-of", "2026-12")
    for f in ("study.yaml", "blocs.csv", "buyers.csv", "budgets.csv", "params.csv", "register/projects.csv", "register/support.csv"):
        assert (d / f).is_file(), f
    spec = yaml.safe_load((d / "study.yaml").read_text())
    # the group's decisions: a short U.S. list, a 90-day cap, one more budget line, few draws
    spec.update({"draws": 60, "seed": 3, "critical_lists": {"USA": ["antimony", "gallium", "rare_earths"]}})
    spec["stockpile"]["max_days"] = 90
    (d / "study.yaml").write_text(yaml.safe_dump(spec))
    with (d / "budgets.csv").open("a") as fh:
        fh.write("US_DOE_LPO,loan_guarantee,250000000\n")
    run("plan", "--study", str(d / "study.yaml"), "--out", str(d / "out"))
    return d, json.loads((d / "out" / "plan.json").read_text())


def test_plan_runs_on_the_study_and_records_it(study_run: tuple[Path, dict]):
    d, plan = study_run
    md = plan["metadata"]
    assert md["seed"] == 3 and md["draws"] == 60 and md["as_of"] == "2026-12"
    assert md["study"]["critical_lists"]["USA"] == ["antimony", "gallium", "rare_earths"]
    assert plan["portfolio"]["budgets"]["US_DOE_LPO:loan_guarantee"] == 250e6


def test_stocks_follow_the_study_policy(study_run: tuple[Path, dict]):
    _, plan = study_run
    rows = plan["stockpiles"]["stockpiles"]
    usa = [r for r in rows if r["participant"] == "USA"]
    assert usa, "the U.S. list still yields stocks"
    # only listed materials (rare earths covers NdPr, Dy, Tb and magnets), never cells, cathode or anode
    assert {r["commodity"] for r in usa} <= {"antimony", "gallium", "rare_earths", "ndpr", "dysprosium", "terbium", "yttrium",
                                              "lanthanum_cerium", "ndfeb_magnets"}
    assert all(r["stage"] in ("mine", "refine", "metal", "magnet") for r in rows)
    assert all(r["days_of_consumption"] <= 90 + 1e-6 for r in rows if r["participant"] in ("USA", "JPN") and r["days_of_consumption"] is not None)
    assert any("capped" in f for r in rows for f in r["flags"])


def test_executive_answer_agrees_with_the_plan(study_run: tuple[Path, dict]):
    d, plan = study_run
    s = plan["summary"]
    for k in ("priorities", "financing", "stocks", "deliveries", "unmet_needs"):
        assert s["sentences"][k], k
    sel = plan["portfolio"]["selected"]
    fin = s["tables"]["financing"]
    # review 35b M2: the table gives the projects funded in any case on the terms decided after the stocks and the
    # conditional ones on theirs before the stocks
    net = plan["portfolio"]["selection_net_of_stocks"]
    decided = ([x for x in net["selected_net_of_stocks"] if x["project_id"] in set(net["both"])]
               + [x for x in sel if x["project_id"] not in set(net["both"])])
    # face amounts and budget costs are summed apart, never together
    assert sum(r["face_amount_usd"] for r in fin) == pytest.approx(sum(x["amount_usd"] for x in decided))
    assert sum(r["budget_cost_usd"] for r in fin) == pytest.approx(sum(x["budget_cost_usd"] for x in decided))
    assert sum(plan["portfolio"]["money_by_agency"].values()) == pytest.approx(sum(x["budget_cost_usd"] for x in sel))
    # the financing table adds USD avoided, never tonnes of different materials; budgets are stated by basis
    assert "capacity_t_per_year" not in fin[0] and sum(r["avoided_usd_per_year"] for r in fin) == pytest.approx(
        sum(x["expected_avoided_usd"] for x in decided))
    basis = plan["portfolio"]["budget_basis"]
    if any(str(v).startswith("budget cost") for v in basis.values()):
        assert "credit-subsidy budgets" in s["sentences"]["financing"]
    # deliveries: tonnes by receiving country and node add up to the allocation, never across nodes
    assert sum(r["tonnes"] for r in s["tables"]["deliveries"]) == pytest.approx(sum(a["tonnes"] for a in plan["deliveries"]["allocation"]))
    assert [r["mineral"] for r in s["tables"]["priorities"]] == [r["name"] for r in plan["scenarios"][: len(s["tables"]["priorities"])]]
    # first page of the PDF, first sheet of the workbook, first section of the HTML
    import openpyxl
    import pymupdf

    assert "Executive answer" in pymupdf.open(d / "out" / "plan.pdf")[0].get_text()
    wb = openpyxl.load_workbook(d / "out" / "plan.xlsx")
    assert wb.sheetnames[0] == "summary"
    text = " ".join(str(c) for row in wb["summary"].iter_rows(values_only=True) for c in row if c is not None)
    assert "nan" not in text.split() and "Executive answer" in text
    html = (d / "out" / "plan.html").read_text()
    assert html.index("Executive answer") < html.index("1. Priority minerals")


@pytest.mark.parametrize(("edit", "message"), [
    ({"draws": 3}, "field 'draws'"),
    ({"as_of": "2026-13"}, "field 'as_of'"),
    ({"buyers": "missing.csv"}, "missing.csv not found"),
    ({"critical_lists": {"USA": ["unobtainium"]}}, "unknown commodity ids unobtainium"),
    ({"critical_lists": {"MARS": ["gallium"]}}, "participants are USA, JPN"),
    ({"colour": "blue"}, "field 'colour'"),
])
def test_a_bad_study_fails_at_once_naming_the_field(tmp_path: Path, edit: dict, message: str):
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(edit))
    t0 = time.perf_counter()
    p = run("plan", "--study", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "out"), ok=False)
    assert p.returncode == 2 and message in p.stderr, p.stderr
    assert time.perf_counter() - t0 < 20  # before any simulation (the run itself takes longer)
    assert not (tmp_path / "out").exists()


def test_a_bad_input_file_fails_naming_file_row_and_field(tmp_path: Path):
    (tmp_path / "budgets.csv").write_text("agency_id,instrument,budget_usd\nUS_DOE_LPO,loan,lots\n")
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({"budgets": "budgets.csv"}))
    p = run("study", "check", str(tmp_path / "study.yaml"), ok=False)
    assert p.returncode == 2 and "budgets.csv" in p.stderr and "budget_usd" in p.stderr and "lots" in p.stderr


def test_plan_out_must_be_a_directory(tmp_path: Path):
    f = tmp_path / "plan.json"
    f.write_text("{}")
    p = run("plan", "--out", str(f), ok=False)
    assert p.returncode == 2 and "not a directory" in p.stderr


def test_study_api_equals_the_keywords(tmp_path: Path):
    import critmin.study as study

    st = study.Study(draws=50, as_of="2026-12", critical_lists={"JPN": ["gallium"]})
    assert st.critical_lists["JPN"] == {"gallium"} and "antimony" in st.critical_lists["USA"]
    with pytest.raises(study.StudyError, match="field 'delivery_months'"):
        study.Study(delivery_months=0)


def test_a_priority_that_rests_on_a_suspended_control_says_both_cases(study_run: tuple[Path, dict]):
    """Review of December 2026: the #1 priority rested for 94 % on China's suspended battery package, counted at
    probability 0.5 after its suspension ran out; the answer now gives the loss if it lapsed and if it is back."""
    import copy

    from critmin.report.summary import build_summary

    _, plan = study_run
    p = copy.deepcopy(plan)
    r = p["scenarios"][0]
    r["expected_loss_usd"] = 100e6
    r["top_scenarios"] = [{"scenario": "ev.X.suspended", "probability": 0.5, "expected_loss_usd": 160e6, "contribution_usd": 80e6,
                           "status": "suspended"}]
    text = " ".join(build_summary(p)["what_would_change"])
    # lapsed: 100 - 80 = 20; back in force: 20 + 80 / 0.5 = 180
    assert "80% of its expected loss on a suspended control (ev.X.suspended)" in text
    assert "$20 M a year if it has lapsed, $180 M if it is back in force" in text
    # review 5: an outcome on top of a control in force (China's October 2025 extension on its April licences) adds
    # P (L_k - L_C), not P L_k: L_k 160, L_C 120, P 0.5 -> 20 of 100; lapsed 100 - 20 = 80, back 100 + 0.5 x 40 = 120
    r["top_scenarios"][0]["base_loss_usd"] = 120e6
    text = " ".join(build_summary(p)["what_would_change"])
    assert "ev.X.suspended" not in text  # 20 % of the loss: under the 25 % that earns the sentence
    r["expected_loss_usd"] = 60e6  # now 20 of 60: lapsed 40, back 80
    text = " ".join(build_summary(p)["what_would_change"])
    assert "33% of its expected loss" in text and "$40 M a year if it has lapsed, $80 M if it is back in force" in text


def test_a_suspended_measure_without_a_scenario_is_named_with_the_gains_it_would_reach(study_run: tuple[Path, dict]):
    """Review 33 F2: China's October 2025 extraterritorial rare-earth rule (E022), suspended as E023 was, has no
    scenario; the answer credited Japan's magnet makers a gain that rule targets and never named it. The plan lists
    the suspended measures it does not simulate, and the answer names them with the participants' gains they reach."""
    import copy

    from critmin.report.summary import build_summary

    _, plan = study_run
    listed = {x["event_id"]: x for x in plan["metadata"]["suspended_not_simulated"]}
    assert "E022" in listed and "E023" not in listed and listed["E022"]["until"] == "2026-11-10"
    p = copy.deepcopy(plan)
    r = p["participant_risk"]["JPN"][0]
    r.update({"name": "NdFeB permanent magnets", "commodity": "ndfeb_magnets", "expected_loss_usd": 214e6,
              "producer_gain_usd": 174e6, "net_loss_usd": 40e6})
    text = " ".join(build_summary(p)["what_would_change"])
    assert "Not simulated: E022" in text and "suspended until 2026-11-10" in text
    assert "Japan's NdFeB permanent magnets (rank 1: consumer loss $214 M a year, its makers' gain $174 M, net $40 M)" in text
    # review 33b G7: a measure that reaches no ranked material is listed in one sentence
    assert "Also suspended and not simulated" in text and "E024 (licence requirement (dual-use) on superhard materials" in text
    # and the buyers' side: a participant's ranked row with no makers' gain is named as a loss that would rise
    u = p["participant_risk"]["USA"][0]
    u.update({"name": "NdFeB permanent magnets", "commodity": "ndfeb_magnets", "expected_loss_usd": 107e6, "producer_gain_usd": 0.0})
    text = " ".join(build_summary(p)["what_would_change"])
    assert "whose imports would need Chinese licences: the United States' NdFeB permanent magnets (rank 1, $107 M a year)" in text


def test_a_participants_priority_on_a_suspended_input_control_says_both_cases_and_what_is_cut(study_run: tuple[Path, dict]):
    """Review 32 F4: U.S. nickel-based cathode (5th for the USA, 7th for the bloc) rested for 94 % on E023's suspended
    precursor licence, yet the answer gave the both-cases sentence for the bloc's top five only, and named the
    cathode's Chinese share as what is cut, while the licence cuts the Korean output made from Chinese precursor."""
    import copy

    from critmin.report.summary import _driven_at, build_summary

    _, plan = study_run
    p = copy.deepcopy(plan)
    rows = p["participant_risk"]["USA"]
    r = rows[0]
    r["expected_loss_usd"] = 100e6
    top = [{"scenario": "ev.X.precursors", "probability": 0.5, "expected_loss_usd": 160e6, "contribution_usd": 80e6,
            "status": "suspended", "stage": "cathode", "restrictors": "CHN", "on_input": True}]
    r["top_scenarios"] = top
    for b in p["scenarios"][:5]:  # keep the bloc's sentence out of the way
        b["top_scenarios"] = [x for x in (b.get("top_scenarios") or []) if x.get("status") != "suspended"]
    text = " ".join(build_summary(p)["what_would_change"])
    assert f"{r['name']} (the United States, rank {int(r['rank'])}) rests for 80% of its expected loss" in text
    assert "acts on an input of the node" in text and "$20 M a year if it has lapsed" in text
    assert _driven_at(top) == "cathode (CHN licence on an input: output made from it elsewhere)"
    # review 32 F6: use that began after the base year is said where the ranking cannot see it
    p["scenarios"][-1]["flags"] = ["USA consumption nil in 2024, up to 93,000 t at the row's high end: that use is not simulated"]
    text = " ".join(build_summary(p)["what_would_change"])
    assert "Not in the ranking: use that began after the base year." in text
    assert f"{p['scenarios'][-1]['name']}: USA consumption nil in 2024, up to 93,000 t at the row's high end" in text


def test_coverage_says_what_came_to_a_split_aggregate(study_run: tuple[Path, dict]):
    """Review 7: "USA rare_earths/refine [heavy (Dy/Tb), light (NdPr)] 100 %" was all NdPr, and the estimate flag was
    lost. The sentence names the element node that supplied the split row and keeps "estimated split"."""
    import copy

    from critmin import Study
    from critmin.deliver.plan import delivery_plan
    from critmin.report.summary import build_summary

    d, plan = study_run
    # review 26: a plant producing before the plan delivers only on contracts that name it, and no Japanese buyer
    # records one with Silmet; the group records one here (Japan's aggregate with Silmet) to read the split row
    study = Study.from_file(d / "study.yaml")
    buyers = study.buyers.copy()
    buyers.loc[buyers["buyer_id"] == "B042", "contract_projects"] = "P021"
    p = copy.deepcopy(plan)
    p["deliveries"] = delivery_plan(study.atlas, study.supply, buyers, 6, plan["metadata"]["as_of"])
    text = build_summary(p, buyers)["sentences"]["unmet_needs"]
    # review 11/12: the U.S. split rows are gone (its NdPr is a proxy, no buyer; its aggregate the La + Ce
    # remainder); Japan's aggregate row still names its groups
    assert "USA ndpr/refine" not in text
    part = next(p for p in text.split("; ") if "JPN rare_earths/refine [" in p)
    # review 9: a group the row is for that no delivery states is named ("medium (Sm/Eu/Gd)": nothing labelled Sm, Eu
    # or Gd reaches Japan)
    assert "no delivery stated as medium (Sm/Eu/Gd)" in part


def test_the_executive_answer_states_its_denominators_and_keeps_unfirm_stocks_apart(study_run: tuple[Path, dict]):
    """Review 9: the loss avoided was given without the loss it is a share of; the stock total counted stocks the
    same sentence said not to buy yet; the proxy caveat named commodities by a word in their flags (rare earths, 0.05 %
    of its loss on proxies) and missed battery cathode (100 %)."""
    import copy

    from critmin.report.summary import PROXY_SHARE_STATED, build_summary

    _, plan = study_run
    s = plan["summary"]
    total = sum(r["avoidable_loss_usd"] for r in plan["portfolio"]["risk_reduction"])
    fin = s["sentences"]["financing"]
    assert total > 0 and "expected loss that projects can act on" in fin
    # review 10: the denominator is the loss projects can act on; the ranking's larger total is named beside it
    ranked = sum(max(r["expected_loss_usd"] or 0.0, 0.0) for r in plan["scenarios"])
    if ranked > total:
        assert "the ranking's consumer loss over all materials is" in fin
    few = [x for x in s["tables"]["stocks"] if x.get("few_draws")]
    # review 10: the table marks the unfirm stocks (firm first) and the amount left to buy leaves them out
    assert all(x["basis"] == "firm" for x in s["tables"]["stocks"] if not x.get("few_draws"))
    assert all(x["basis"].startswith("not firm") for x in few)
    flags = [bool(x.get("few_draws")) for x in s["tables"]["stocks"]]
    assert flags == sorted(flags)
    firm_total = sum(x["stock_usd"] for x in s["tables"]["stocks"] if not x.get("few_draws"))
    m = re.search(r"net of holdings and orders, \$([0-9.,]+) ([MB]) is left to buy", s["sentences"]["stocks"])
    assert m and float(m.group(1).replace(",", "")) * (1e9 if m.group(2) == "B" else 1e6) <= firm_total * 1.06
    firm_usa = sum(x["stock_usd"] for x in s["tables"]["stocks"] if x["participant"] == "USA" and not x.get("few_draws"))
    if few:
        assert "not in the totals above" in s["sentences"]["stocks"]
    assert f"for the United States (${firm_usa / 1e6:,.0f} M)" in s["sentences"]["stocks"] or firm_usa >= 1e9 or firm_usa < 1e6
    # the caveat follows proxy_share_of_loss: a commodity with a large share is named with it, one with a tiny share is not
    p = copy.deepcopy(plan)
    p["scenarios"][0]["proxy_share_of_loss"], p["scenarios"][0]["flags"] = 1.0, []
    p["scenarios"][1]["proxy_share_of_loss"], p["scenarios"][1]["flags"] = 0.0005, ["USA demand share is a proxy"]
    caveat = next(t for t in build_summary(p)["what_would_change"] if "proxy_share_of_loss" in t)
    assert f"{p['scenarios'][0]['name']} (100% of its loss)" in caveat and p["scenarios"][1]["name"] not in caveat
    assert PROXY_SHARE_STATED == 0.25


def test_stock_costs_say_they_are_at_baseline_prices_and_name_the_observed_rises(study_run: tuple[Path, dict]):
    """Review 9/10: stocks were valued at 2024 prices under a chart titled 'today's prices', while antimony, tungsten and
    bismuth cost several times more outside China after the 2024-2025 controls. The sentence names the observed rises
    of the stocked nodes, from the plan's own back-test, and says the largest are thin-market quotes."""
    import copy

    from critmin.report.summary import build_summary

    _, plan = study_run
    p = copy.deepcopy(plan)
    p["stockpiles"]["stockpiles"] = [r for r in p["stockpiles"]["stockpiles"] if r["participant"] in ("USA", "JPN")][:1]
    r = p["stockpiles"]["stockpiles"][0]
    r.update(node="antimony/mine", commodity="antimony", stage="mine", optimal_stock_t=1000.0, optimal_stock_usd=2e7, shortfall_draws=100,
             purchase_price_ratio=1.54, purchase_price_basis="simulated mean price under the control in force (x)")
    for k in ("optimal_stock_t_at_simulated_price", "optimal_stock_usd_at_simulated_price", "purchase_price_ratio_simulated"):
        r.pop(k, None)
    obs = next(o for o in p["validation"]["observations"] if o["case_id"] == "E014.antimony" and o["segment"] == "targeted")
    text = build_summary(p)["sentences"]["stocks"]
    # review 19b: bought at the simulated price under the control in force; the observed quotes rose further
    assert "baseline node prices" in text and "simulated mean price under it (antimony/mine x1.54)" in text
    assert f"antimony/mine x{obs['observed_ratio']:.1f} at its 12-month peak (E014.antimony)" in text
    assert "thin-market quotes" in text
    # a stock bought at a price above the observed rise names no further rise
    r["purchase_price_ratio"] = obs["observed_ratio"] + 0.5
    assert "(E014.antimony)" not in build_summary(p)["sentences"]["stocks"]


def test_stocks_bought_at_an_observed_benchmark_state_the_simulated_low_case(study_run: tuple[Path, dict]):
    """Reviews 23-24: the answer names the nodes bought at an observed benchmark with both ratios and the quote's
    month, and the firm total at the simulated price beside today's (summed by hand from the rows: every participant
    line with a low case, held today or not)."""
    from critmin._text import usd

    _, plan = study_run
    text = plan["summary"]["sentences"]["stocks"]
    firm = [x for x in plan["summary"]["tables"]["stocks"] if x.get("basis") == "firm"]
    rows = [r for r in plan["stockpiles"]["stockpiles"] if r["participant"] in ("USA", "JPN")
            and r.get("optimal_stock_usd_at_simulated_price") is not None
            and r["optimal_stock_t"] + r["optimal_stock_t_at_simulated_price"] > 0]
    assert rows and all(r["purchase_price_basis"].startswith("latest observed benchmark") for r in rows)
    tot = sum(x["stock_usd"] for x in firm)
    alt = tot - sum(r["optimal_stock_usd"] for r in rows) + sum(r["optimal_stock_usd_at_simulated_price"] for r in rows)
    assert f"the firm stocks about {usd(alt)} instead of {usd(tot)}" in text
    for r in rows:
        assert f"{r['node']} x{r['purchase_price_ratio']:.2f}, " in text
        assert f"against x{r['purchase_price_ratio_simulated']:.2f} simulated" in text
        if r["optimal_stock_t"] <= 0 < r["optimal_stock_t_at_simulated_price"]:
            assert f"{r['participant']} {r['node']} ({r['optimal_stock_t_at_simulated_price']:,.0f} t at the simulated price)" in text


def test_the_stockpile_fund_pays_for_the_us_stocks_first(study_run: tuple[Path, dict]):
    """Review 23: DLA's US$2 B showed as an unspent project budget while the recommended U.S. stocks named no funding
    line. The U.S. firm stocks (to buy, net of holdings and orders) are charged to US_DLA_SM:offtake first; the
    remainder is what the projects may use; Japan's stocks say that the study holds no stockpile budget."""
    from critmin.study.core import recommended_stocks

    _, plan = study_run
    pf = plan["portfolio"]
    f = {x["participant"]: x for x in pf["stock_funding"]}
    firm = recommended_stocks(plan["stockpiles"])
    want = 0.0
    for r in plan["stockpiles"]["stockpiles"]:
        if r["participant"] == "USA" and "USA" in firm.get(r["node"], {}):
            buy = r["to_buy_t"] if r.get("to_buy_t") is not None else r["optimal_stock_t"]
            want += buy * r["optimal_stock_usd"] / r["optimal_stock_t"]
    usa = f["USA"]
    assert usa["budget"] == "US_DLA_SM:offtake" and usa["stocks_to_buy_usd"] == pytest.approx(want)
    assert usa["left_for_projects_usd"] == pytest.approx(usa["budget_usd"] - want)
    assert pf["spent"].get("US_DLA_SM:offtake", 0.0) <= usa["left_for_projects_usd"] + 1.0
    assert "buys the recommended USA stocks" in pf["unspent"].get("US_DLA_SM:offtake", "buys the recommended USA stocks")
    assert f["JPN"]["budget"] is None and "no funding line" in plan["summary"]["sentences"]["stocks"]
    # review 24: JOGMEC borrows to buy; its budget line is the yearly carrying cost of the lines (cash: capital,
    # storage, fixed costs; not the expected fall in value)
    fixed = plan["stockpiles"]["metadata"]["fixed_cost_usd_per_line_year"]
    carry = sum(r["optimal_stock_t"] * (r["holding_cost_usd_per_t_year"] - r["expected_price_fall_usd_per_t_year"]) + fixed
                for r in plan["stockpiles"]["stockpiles"] if r["participant"] == "JPN" and "JPN" in firm.get(r["node"], {}))
    assert f["JPN"]["carrying_cost_usd_per_year"] == pytest.approx(carry)
    # review 25: the expected fall in value a year and the write-down if the controls are relaxed, beside it
    lines = [r for r in plan["stockpiles"]["stockpiles"] if r["participant"] == "JPN" and "JPN" in firm.get(r["node"], {})]
    assert f["JPN"]["expected_value_loss_usd_per_year"] == pytest.approx(sum(r["optimal_stock_t"] * r["expected_price_fall_usd_per_t_year"] for r in lines))
    assert f["JPN"]["write_down_if_relaxed_usd"] == pytest.approx(
        sum(max(r["optimal_stock_usd"] - r["optimal_stock_t"] * r["fall_back_usd_per_t"], 0.0) for r in lines if r["optimal_stock_t"] > 0))
    if carry > 0:
        assert "JOGMEC buys with borrowed funds" in plan["summary"]["sentences"]["stocks"]
    # review 26: Project Vault is named after the NDS line (a members' pool, not a government reserve), and the
    # sentence on the fund keeps its share and remainder
    text = plan["summary"]["sentences"]["stocks"]
    assert "Project Vault" in text and "not netted against it" in text
    assert text.index("leaving") < text.index("Project Vault")


def test_the_budgets_headline_separates_the_participants_money_from_the_partners(study_run: tuple[Path, dict]):
    """Review 24: "US$14.2 B of budgets available" included US$9.2 B of Australian, Canadian, EU and German money.
    The sentence gives the participants' own budgets apart (summed by hand from the agency table)."""
    from critmin._text import usd
    from critmin.portfolio.model import read_agencies
    from critmin.portfolio.plan import COST_BASIS_LABEL

    _, plan = study_run
    pf = plan["portfolio"]
    country = {str(r["agency_id"]): str(r["participant_iso3"]) for r in read_agencies().to_dict("records")}
    own = sum(v for k, v in pf["budgets"].items() if country.get(k.split(":")[0]) in ("USA", "JPN")
              and pf["budget_basis"].get(k) != COST_BASIS_LABEL)
    assert f"of them the United States' and Japan's own: {usd(own)} in face amounts" in plan["summary"]["sentences"]["financing"]


def test_the_answer_says_which_dla_plans_the_plan_does_not_stock_and_why(study_run: tuple[Path, dict]):
    """Review 23: DLA was buying or asking for offers of chromium, nickel, tin, lithium, rhenium and more, which the
    plan does not stock, and nothing said why; a cancelled solicitation still "covered" its target."""
    from critmin.stockpile.plan import read_holdings

    _, plan = study_run
    text = plan["summary"]["sentences"]["stocks"]
    h = read_holdings()
    live = h[(h["country_iso3"] == "USA") & (h["kind"] == "acquisition_plan") & (h["commodity_id"] != "*")
             & ~h["status"].astype(str).str.startswith("cancelled")]
    held = {x["node"].split("/")[0] for x in plan["summary"]["tables"]["stocks"] if x["participant"] == "USA" and x.get("basis") == "firm"}
    missing = sorted(set(live["commodity_id"]) - held)
    assert missing and f"DLA is buying or has asked for offers of {', '.join(c.replace('_', ' ') for c in missing)}" in text
    assert "not on the National Defense Stockpile's requirements" in text
    if "would cover the targets for " in text:
        assert "cobalt/refine" not in text.split("would cover the targets for ")[1].split(" if bought")[0]


def test_a_suspension_that_has_ended_is_named_with_its_date(study_run: tuple[Path, dict]):
    """Review 24: the bloc's #1 and #2 rest on China's October 2025 battery package (E023), suspended until
    10 November 2026, and the answer said only "check its status". The plan records each suspension's end from the
    events table, and a sentence on a suspended control names it and says whether it is before the plan's month."""
    import copy

    from critmin.report.summary import build_summary

    _, plan = study_run
    until = plan["metadata"]["suspended_until"]
    assert until["E023"] == "2026-11-10"
    p = copy.deepcopy(plan)
    p["metadata"]["as_of"] = "2026-12"
    r = p["scenarios"][0]
    r["expected_loss_usd"] = 100.0
    r["top_scenarios"] = [{"scenario": "ev.E023.battery_cathode.cathode", "probability": 0.5, "expected_loss_usd": 190.0,
                           "contribution_usd": 95.0, "status": "suspended", "base_loss_usd": 0.0}]
    text = " ".join(build_summary(p)["what_would_change"])
    assert "E023's suspension ran until 2026-11-10, before the plan's month (2026-12), and no later status is recorded" in text
    p["metadata"]["as_of"] = "2026-10"
    text = " ".join(build_summary(p)["what_would_change"])
    assert "E023's suspension ran until 2026-11-10." in text and "before the plan's month" not in text


def test_stock_lines_on_an_estimated_or_stale_consumption_are_named(study_run: tuple[Path, dict]):
    """Review 24: Japan's dysprosium, terbium and other lines rest on consumption figures flagged as estimates or
    older than five years, and the answer did not say so. The row carries its participant's flag and the answer names
    the line."""
    _, plan = study_run
    text = plan["summary"]["sentences"]["stocks"]
    rows = {(r["participant"], r["node"]): r for r in plan["stockpiles"]["stockpiles"]}
    firm = [x for x in plan["summary"]["tables"]["stocks"] if x.get("basis") == "firm"]
    shaky = [x for x in firm if any(("an estimate" in f or "stale" in f) and f.startswith(x["participant"] + " ")
                                    for f in rows[(x["participant"], x["node"])]["flags"])]
    for x in shaky:
        assert f"{x['participant']} {x['node']}" in text.split("on a consumption figure that is an estimate")[-1].split("): the size")[0]
    if shaky:
        assert "older than five years" in text


def test_the_years_to_fill_are_the_blocs_at_each_node(study_run: tuple[Path, dict]):
    """Review 25: both participants buy the same market at once (indium 2.1 years for the bloc, not 1.4 for the USA
    alone). The answer sums the participants' years at each node (each line's years are its stock over the same
    market) and names the nodes over a year."""
    _, plan = study_run
    text = plan["summary"]["sentences"]["stocks"]
    years: dict[str, float] = {}
    for x in plan["summary"]["tables"]["stocks"]:
        if x.get("basis") == "firm" and x.get("years_to_fill") is not None:
            years[x["node"]] = years.get(x["node"], 0.0) + x["years_to_fill"]
    for n, y in years.items():
        if round(y, 1) > 1.0:
            assert f"{n} {y:.1f} years" in text
        else:
            assert f"{n} {y:.1f} years" not in text


def test_stocks_and_projects_do_not_claim_the_same_loss_twice(study_run: tuple[Path, dict]):
    """Review 18b/20: the U.S. antimony stock and Stibnite each counted the same avoidable loss. The plan records the
    programme decided after the recommended stocks (net of them: it never avoids more), and every stock at a node the
    recommended projects supply says what it falls to once they produce (never more than now)."""
    _, plan = study_run
    pf = plan["portfolio"]
    net = pf["selection_net_of_stocks"]
    ids = {r["project_id"] for r in pf["selected"]}
    assert set(net["both"]) | set(net["only_without_stocks"]) == ids
    assert net["expected_avoided_usd_net_of_stocks"] <= pf["expected_avoided_usd"] + 1e-6
    supplied = {r["node"] for r in pf["selected"]}
    rows = [r for r in plan["stockpiles"]["stockpiles"] if r["participant"] in ("USA", "JPN") and r["node"] in supplied]
    from critmin.study.core import projects_supply

    # once producing: the nameplate (review 24: not times the completion probability, which the answer names beside
    # it), not the support's increment over the horizon
    supply = projects_supply(pf)
    for sel in pf["selected"]:
        assert sel["output_once_producing_t_per_year"] >= sel["added_capacity_t_per_year"] - 1e-9
        if sel["completion_probability"] > 0:
            assert sel["nameplate_t_per_year"] == pytest.approx(sel["output_once_producing_t_per_year"] / sel["completion_probability"])
    want: dict[str, float] = {}
    for sel in pf["selected"]:
        want[sel["node"]] = want.get(sel["node"], 0.0) + sel["nameplate_t_per_year"]
        for k, q in sel["co_product_nameplate_t_per_year"].items():
            want[k] = want.get(k, 0.0) + q
    assert supply == pytest.approx({k: v for k, v in want.items() if v > 0})
    # the stocks fall on the recommended projects and the pipeline coming anyway (review 26, review 33 F3: Sangdong)
    with_pipeline = projects_supply(pf, pf.get("financed_pipeline"))
    for r in rows:
        assert 0.0 <= r["stock_after_projects_t"] <= r["optimal_stock_t"] + 1e-9
        assert r["projects_supply_t_per_year"] == pytest.approx(with_pipeline[r["node"]])
    if ids:
        fin = plan["summary"]["sentences"]["financing"]
        # review 21: the sentence opens with the decision taken after the stocks
        assert fin.startswith(("Fund ", "No project is worth funding")) and "Beyond the recommended stocks the programme avoids" in fin
    # review 22: each stock that falls once the projects produce names them, and a conditional one is marked
    # (review 34: one note per line; a project whose output is contracted to another country's buyers is not named)
    from critmin.report.summary import contracted_elsewhere

    notes = plan["summary"]["parts"]["stocks"]["notes"]
    from critmin.deliver.buyers import read_buyers

    buyer_rows = read_buyers(study_run[0] / "buyers.csv").to_dict("records")
    cond = set(net["only_without_stocks"])
    for r in rows:
        if r["optimal_stock_t"] > 0 and r["stock_after_projects_t"] < r["optimal_stock_t"] - 0.5:
            mine = [x for x in pf["selected"] if x["node"] == r["node"] and not contracted_elsewhere(x["project_id"], r["participant"], buyer_rows)]
            part = next(n for n in notes if n.startswith(f"{r['participant']} {r['node']}: "))
            assert all(x["name"] in part for x in mine), part
            assert ("conditional, completion" in part) == any(x["project_id"] in cond for x in mine), part


def test_the_stock_table_lists_the_stocks_held(study_run: tuple[Path, dict]):
    """Review 20b: the HTML stock table listed pools of palladium and magnesium at 0 t beside the stocks to buy. It
    lists the stocks held, all of them, and says where the rows without a stock are."""
    d, plan = study_run
    html_text = (d / "out" / "plan.html").read_text()
    section = html_text.split("<h2>5. Stockpile targets</h2>", 1)[1].split("<h2>", 1)[0]
    rows = plan["stockpiles"]["stockpiles"]
    # review 21: a pool is shown only where it is recommended (it restates its members' stocks)
    held = [r for r in rows if r["optimal_stock_t"] > 0 and (not r["participant"].startswith("POOL(") or r["pool_recommended"])]
    assert section.count("<tr>") == len(held) + 1  # the header and one row per stock held
    if len(rows) > len(held):
        assert f"{len(rows) - len(held)} rows without a stock to recommend" in section


def test_the_answer_names_listed_minerals_it_cannot_rank(study_run: tuple[Path, dict]):
    """Review 21: samarium and lutetium, which the USGS ranks highest for the United States, had no row and the plan
    did not say so. Listed commodities without a ranking row and the U.S.-listed rare earths inside the remainder
    are named in the priorities sentence."""
    _, plan = study_run
    nr = plan["metadata"]["not_ranked"]
    assert {"samarium", "lutetium"} <= set(nr["us_listed_elements_in_rare_earths"])
    ranked = {r["commodity"] for r in plan["scenarios"]}
    for missing in nr["listed_without_row"].values():
        assert not set(missing) & ranked
    text = plan["summary"]["sentences"]["priorities"]
    assert "Not ranked on their own" in text and "samarium" in text and "lutetium" in text
    # every ranked material in the answer's table names its chokepoint, inside the assessment's top list or not
    assert all(r["chokepoint"] for r in plan["summary"]["tables"]["priorities"])


def test_ranks_closer_than_their_sampling_error_are_a_range(study_run: tuple[Path, dict]):
    """Review 23: each ranking row carries the best and worst rank within twice the sampling error, around its rank,
    and the answer's table shows the range."""
    _, plan = study_run
    rows = plan["scenarios"]
    assert all(r["rank_best"] <= r["rank"] <= r["rank_worst"] for r in rows)
    assert any(r["rank_worst"] > r["rank_best"] for r in rows)  # some neighbours cannot be told apart
    for t in plan["summary"]["tables"]["priorities"]:
        r = next(x for x in rows if x["rank"] == t["rank"])
        assert t["rank_range"] == (f"{r['rank_best']}-{r['rank_worst']}" if r["rank_worst"] > r["rank_best"] else str(r["rank"]))


def test_the_answer_states_the_loss_net_of_the_blocs_producers(study_run: tuple[Path, dict]):
    """Review 23: the bloc's headline was the consumer loss alone; the answer now gives the total net of the bloc's
    producers' gains (summed by hand from the ranking rows) and names the top materials where that gain offsets at
    least a quarter of the consumer loss."""
    from critmin._text import usd

    _, plan = study_run
    text = plan["summary"]["sentences"]["priorities"]
    rows = [r for r in plan["scenarios"] if r["expected_loss_usd"] is not None and r["net_loss_usd"] is not None]
    net = sum(float(r["net_loss_usd"]) for r in rows)
    gross = sum(max(float(r["expected_loss_usd"]), 0.0) for r in rows)
    assert f"the bloc's expected loss is {usd(net)} a year instead of {usd(gross)}" in text
    assert net < gross
    for r in plan["scenarios"][:10]:
        if r["producer_gain_usd"] is not None and float(r["producer_gain_usd"]) >= 0.25 * float(r["expected_loss_usd"]):
            assert f"{r['name']}: {usd(float(r['expected_loss_usd']))} consumer loss" in text


def test_the_summary_names_the_lines_too_small_to_pay_their_fixed_cost(study_run: tuple[Path, dict]):
    """Review 18b/20: a line saving less than the fixed cost of a stock line is not held; the stocks sentence names it
    with what it would have saved."""
    import copy

    from critmin.report.summary import build_summary

    _, plan = study_run
    p = copy.deepcopy(plan)
    md = p["stockpiles"]["metadata"]
    md["fixed_cost_usd_per_line_year"] = 250_000.0
    md["not_held_fixed_cost"] = [{"participant": "JPN", "node": "molybdenum/mine", "stock_t": 54.0, "saving_usd": 66_505.0}]
    text = build_summary(p)["sentences"]["stocks"]
    assert "1 node is not held because each would save less a year than the fixed cost of a stock line ($250 k a year: " in text
    assert "JPN molybdenum/mine 54 t saving $67 k)" in text
    md["not_held_fixed_cost"] = []
    assert "fixed cost of a stock line" not in build_summary(p)["sentences"]["stocks"]


def test_the_summary_checks_the_portfolio_and_the_stock_savings(study_run: tuple[Path, dict]):
    """Review 18b: the robustness statement named no figure and counted free permitting picks as passing a test; and
    stocks on controls in force "saved" up to 2.7 times their cost a year, refilled at the baseline price after every
    release, without saying so (the buy-back is now charged its premium while the control holds; the sentence says
    what the saving still rests on)."""
    import copy

    from critmin.report.summary import build_summary

    _, plan = study_run
    p = copy.deepcopy(plan)
    sel = [s["project_id"] for s in p["portfolio"]["selected"]]
    p["portfolio"]["selection_under_input_output"] = {"both": sel, "only_ranked_valuation": [], "only_input_output": ["PX"],
                                                      "expected_avoided_usd_input_output": 7.6e7}
    p["portfolio"]["projects"] = [*p["portfolio"]["projects"], {"project_id": "PX", "name": "Project X", "decision": "rejected", "reason": "r"}]
    fin = build_summary(p)["sentences"]["financing"]
    if sel:
        assert f"keeps {len(sel)} of the {len(sel)}" in fin and "adds Project X" in fin and "avoids $76 M a year on that valuation" in fin
    p["stockpiles"]["stockpiles"] = [r for r in p["stockpiles"]["stockpiles"] if r["participant"] in ("USA", "JPN")][:1]
    r = p["stockpiles"]["stockpiles"][0]
    r.update(node="antimony/mine", commodity="antimony", stage="mine", optimal_stock_t=1000.0, optimal_stock_usd=2e7, shortfall_draws=100,
             saving_usd=5e7)
    text = build_summary(p)["sentences"]["stocks"]
    assert "1 saves more a year than its purchase price" in text and "2.5 times" in text and "bought back within a year" in text
    assert "Every stock listed saves more a year than it costs to hold" in text


def test_the_answer_names_materials_the_input_output_convention_would_rank_high(study_run: tuple[Path, dict]):
    """Review 18b: gallium ranked 18th for the bloc and 4th valued as output lost, and the executive answer did not say
    so. A material outside the top ten that the input-output convention puts inside it is named with both ranks."""
    import copy

    from critmin.report.summary import build_summary

    _, plan = study_run
    p = copy.deepcopy(plan)
    rows = p["scenarios"]
    assert len(rows) > 12
    for i, r in enumerate(rows):  # ranked losses 100, 99, ...; the input-output figure equal, except row 12
        r["expected_loss_usd"] = r["expected_loss_io_usd"] = 100.0 - i
    rows[11]["expected_loss_io_usd"] = 1000.0
    text = build_summary(p, top=10)["what_would_change"][0]
    assert f"{rows[11]['name']} would be #1 instead of #12" in text
    assert "instead of #11" not in text  # a material the two valuations rank alike is not named


def test_the_financing_answer_opens_with_the_decision_after_the_stocks(study_run: tuple[Path, dict]):
    """Review 21: the headline was the programme's gross benefit (US$33 M a year), mostly one project the finance model
    finds viable without support and the same shortfalls the stocks cover (US$2.9 M a year beyond them). The sentence
    now opens with the decision taken after the stocks and says how much of the gross figure is not additional."""
    import copy

    from critmin.report.summary import build_summary

    _, plan = study_run
    p = copy.deepcopy(plan)
    pf = p["portfolio"]
    pf["selected"] = [
        {"project_id": "PA", "name": "Alpha mine", "participant": "USA", "agency": "US_EXIM", "instrument": "loan", "amount_usd": 1e8,
         "budget_cost_usd": 5e6, "expected_avoided_usd": 8e6},
        {"project_id": "PB", "name": "Beta refinery", "participant": "JPN", "agency": "JP_JBIC", "instrument": "equity", "amount_usd": 2e7,
         "budget_cost_usd": 4e6, "expected_avoided_usd": 2e6},
    ]
    pf["expected_avoided_usd"] = 10e6
    pf["finance"] = [{"project_id": "PA", "viability_gap_usd": {"low": -1e6, "base": -5e6}},
                     {"project_id": "PB", "viability_gap_usd": {"low": 3e6, "base": -1e6}}]
    pf["selection_net_of_stocks"] = {"both": ["PB"], "only_without_stocks": ["PA"], "only_net_of_stocks": [],
                                     "reason_net_of_stocks": {"PA": "would avoid $1 M a year against $5 M needed"},
                                     "expected_avoided_usd_net_of_stocks": 1.5e6}
    s = build_summary(p)
    fin = s["sentences"]["financing"]
    # review 34: the decision is the part's lead; the reason for the conditional one is its first note
    # review 34 H2: by whose money, with the instrument, agency and face amount of each
    assert s["parts"]["financing"]["lead"] == ("Fund in any case: with U.S. money, none; with Japanese money, Beta refinery (equity, JP_JBIC, "
                                               "$20 M). In all $20 M of face amount, $4 M expected cost to governments. "
                                               "They avoid $2 M a year of expected loss beyond the stocks, counting the completion "
                                               "probability that support is assumed to add (completion_probability_uplift, an assumption: "
                                               "validation.md §6, review 34b K4). Conditional (chosen only without the stocks): Alpha mine.")
    assert fin.startswith(s["parts"]["financing"]["lead"] + " Alpha mine: with the stocks in place it "
                          "would avoid $1 M a year against $5 M needed. Beyond the recommended stocks the programme avoids $2 M a year")
    # review 34b K4: with the same programme checked with no completion uplift, the lead says how much of the benefit
    # the uplift carries and whether each project still passes; a conditional project chosen only with it says so
    pf["selection_net_of_stocks"]["without_completion_uplift"] = {"only_with_uplift": ["PB"], "expected_avoided_usd_same_programme": 0.5e6}
    pf["selection_without_completion_uplift"] = {"only_with_uplift": ["PA"]}
    s2 = build_summary(p)
    assert s2["parts"]["financing"]["lead"].endswith(
        "They avoid $2 M a year of expected loss beyond the stocks, $500 k without the assumed completion "
        "uplift (Beta refinery then not chosen). Conditional (chosen only without the stocks): Alpha mine.")
    assert ("$1 M of it is the completion probability support is assumed to add (no causal estimate); without that, the projects "
            "avoid $500 k through the months support is assumed to save, and Beta refinery would not be chosen.") in s2["sentences"]["financing"]
    assert s2["parts"]["financing"]["notes"][0] == ("Alpha mine: with the stocks in place it would avoid $1 M a year against $5 M "
                                                    "needed; without the stocks it is chosen only with the assumed completion uplift.")
    # review 35b M6: a conditional project that the relaxed-controls check also drops says so
    pf["selection_with_controls_relaxed"] = {"only_held": ["PA"]}
    assert build_summary(p)["parts"]["financing"]["notes"][0].endswith(
        "chosen only with the assumed completion uplift; nor is it chosen, even without the stocks, if the controls in force "
        "behind it are relaxed at the regime model's rate.")
    del pf["selection_with_controls_relaxed"]
    pf["selection_net_of_stocks"]["without_completion_uplift"]["only_with_uplift"] = []
    assert "without the assumed completion uplift (each still chosen)." in build_summary(p)["parts"]["financing"]["lead"]
    # review 35 L2: a project kept only with another instrument says so
    pf["selection_net_of_stocks"]["without_completion_uplift"]["other_terms"] = {"PB": {"instrument": "loan", "agency": "JP_JBIC"}}
    assert "and each would still be chosen (Beta refinery with a loan from JP_JBIC instead)." in build_summary(p)["sentences"]["financing"]
    # review 35 L3: the lead gives the terms of the programme decided after the stocks (the benefit it quotes is its)
    pf["selection_net_of_stocks"]["selected_net_of_stocks"] = [
        {"project_id": "PB", "name": "Beta refinery", "participant": "JPN", "instrument": "loan_guarantee", "agency": "JP_JBIC",
         "amount_usd": 3e7, "budget_cost_usd": 1e6, "expected_avoided_usd": 1.5e6}]
    assert build_summary(p)["parts"]["financing"]["lead"].startswith(
        "Fund in any case: with U.S. money, none; with Japanese money, Beta refinery (loan guarantee, JP_JBIC, $30 M). In all $30 M "
        "of face amount, $1 M expected cost to governments.")
    # review 35b M2: and so does the financing table (the conditional Alpha mine on its terms before the stocks)
    rows = {r["agency"]: r for r in build_summary(p)["tables"]["financing"]}
    assert rows["JP_JBIC"]["face_amount_usd"] == 3e7 and rows["JP_JBIC"]["budget_cost_usd"] == 1e6
    assert rows["US_EXIM"]["face_amount_usd"] == 1e8 and rows["US_EXIM"]["conditional_on_stocks"] == "Alpha mine"
    # review 34b K5: the benefit with the controls in force relaxed at the regime model's rate, and who would not be chosen
    pf["selection_net_of_stocks"]["with_controls_relaxed"] = {
        "only_held": ["PB"], "expected_avoided_usd_same_programme": 1e6,
        "persistence": {"x/mine": {"in_force_share": 0.6, "relaxation_probability": 0.1}}}
    assert ("if the controls in force behind it were relaxed at the regime model's rate and not re-imposed (x/mine: 60% of the "
            "commodity's loss from controls in force, relaxed with probability 10% a year), the same programme would avoid $1 M a "
            "year, and Beta refinery would not be chosen.") in build_summary(p)["sentences"]["financing"]
    # review 35b M1: money whose benefit rests mostly on a suspended control says so in the lead
    p["scenarios"] = [*p["scenarios"], {"commodity": "beta_metal", "expected_loss_usd": 100.0, "top_scenarios": [
        {"scenario": "ev.E099.beta_metal.refine", "probability": 0.5, "contribution_usd": 80.0, "status": "suspended", "stage": "refine",
         "restrictors": "CHN"}]}]
    pf["selection_net_of_stocks"]["selected_net_of_stocks"][0]["node"] = "beta_metal/refine"
    assert build_summary(p)["parts"]["financing"]["lead"].endswith(
        "The Japanese money rests on China's suspended control E099 (80% of the beta metal loss), counted at an assumed 0.5 a "
        "year. Conditional (chosen only without the stocks): Alpha mine.")
    p["metadata"]["suspended_until"] = {**(p["metadata"].get("suspended_until") or {}), "E099": "2026-11-10"}
    assert build_summary(p)["parts"]["financing"]["lead"].endswith(
        "counted at an assumed 0.5 a year; suspended to 2026-11-10, no later status recorded. Conditional (chosen only without "
        "the stocks): Alpha mine.")
    p["scenarios"][-1]["top_scenarios"][0]["status"] = "in_force"
    assert "suspended control" not in build_summary(p)["parts"]["financing"]["lead"]
    p["scenarios"] = p["scenarios"][:-1]
    for k_ in ("without_completion_uplift", "selected_net_of_stocks", "with_controls_relaxed"):
        del pf["selection_net_of_stocks"][k_]
    del pf["selection_without_completion_uplift"]
    assert "$10 M a year of expected loss avoided before the stocks" in fin
    # review 22: the financing table says which of a row's projects are conditional on the stocks
    table = {r["agency"]: r["conditional_on_stocks"] for r in build_summary(p)["tables"]["financing"]}
    assert table == {"US_EXIM": "Alpha mine", "JP_JBIC": ""}
    # 8 of 10 is Alpha, viable at every price case (gaps <= 0); Beta has a gap at the low case and is not named
    assert "$8 M a year of it is Alpha mine, which the finance model finds viable without support" in fin
    assert "offer pending" not in fin
    pf["selected"][0]["assumptions"] = ["pending, not counted: Export-Import Bank loan of up to 1,800 M USD (letter of interest, S064): "
                                        "a new loan may duplicate it"]
    fin = build_summary(p)["sentences"]["financing"]
    assert ("would make it not additional). Alpha mine has such an offer pending: Export-Import Bank loan of up to 1,800 M USD "
            "(letter of interest, S064).") in fin
    # review 35b M8: a funded project that is not viable without support names its pending offer too
    pf["selected"][1]["assumptions"] = ["pending, not counted: Export-Import Bank loan of up to 300 M USD (letter of interest, S999): "
                                        "a new loan may duplicate it"]
    assert ("Beta refinery: another capex offer is pending, not counted because it is not binding: Export-Import Bank loan of up "
            "to 300 M USD (letter of interest, S999); if it closes, the recommended equity may no longer be additional") in \
        build_summary(p)["sentences"]["financing"]
    assert build_summary(p)["sentences"]["financing"].count("Alpha mine has such an offer pending") == 1
    pf["selected"][1]["assumptions"] = []
    # without the decision after the stocks, the old opening stays and nothing is said "before the stocks"
    del pf["selection_net_of_stocks"]
    fin = build_summary(p)["sentences"]["financing"]
    assert fin.startswith("Recommended: support for 2 projects") and "before the stocks" not in fin
    # review 21: Mactung was funded from a Canadian budget line; a partner's budget is a recommendation to the partner
    assert "partner's budget" not in fin
    pf["selected"][0].update(participant="CAN", agency="CAN_NRCAN_CMSF")
    fin = build_summary(p)["sentences"]["financing"]
    assert ("Alpha mine rests on a partner's budget (CAN_NRCAN_CMSF, CAN): a recommendation to that partner, not a decision of "
            "the United States or Japan.") in fin


def test_deliveries_name_existing_trade_and_offtakes_waiting_for_their_plant(study_run: tuple[Path, dict]):
    """Review 21: Japan's NdPr "covered 100 %" was Lynas' existing trade, and the unmet needs were led by offtakes
    bound to plants not yet built. The answer now says which tonnes are new supply and keeps the offtakes waiting for
    their plant apart from the buyers left short."""
    import copy

    import pandas as pd

    from critmin.report.summary import build_summary

    _, plan = study_run
    p = copy.deepcopy(plan)
    p["deliveries"] = {
        "allocation": [
            {"project_id": "P1", "buyer_id": "B1", "month": 0, "tonnes": 10.0, "supply": "existing", "project": "Old plant", "buyer": "JPN agg",
             "project_node": "ndpr/refine"},
            {"project_id": "P2", "buyer_id": "B2", "month": 0, "tonnes": 5.0, "supply": "new", "project": "New plant", "buyer": "US user",
             "project_node": "cobalt/refine"}],
        "buyers": [
            {"buyer_id": "B1", "name": "JPN industry (NdPr; aggregate)", "node": "ndpr/refine", "country_iso3": "JPN", "demand_t": 10.0,
             "delivered_t": 10.0, "shortfall_t": 0.0},
            {"buyer_id": "B2", "name": "US user", "node": "cobalt/refine", "country_iso3": "USA", "demand_t": 5.0, "delivered_t": 5.0,
             "shortfall_t": 0.0},
            {"buyer_id": "B3", "name": "Waiting offtaker", "node": "ndpr/refine", "country_iso3": "KOR", "demand_t": 100.0, "delivered_t": 0.0,
             "shortfall_t": 100.0},
            {"buyer_id": "B4", "name": "Short user", "node": "ndpr/refine", "country_iso3": "USA", "demand_t": 50.0, "delivered_t": 0.0,
             "shortfall_t": 50.0}],
        "projects": [{"project_id": "P1", "capacity_t": 10.0}, {"project_id": "P2", "capacity_t": 5.0}, {"project_id": "P9", "capacity_t": 0.0,
                      "supply": "existing", "ramp_basis": "reported output 0 t a year (period to 2025-12) held flat"}],
        "buyers_not_planned": [],
    }
    buyers = pd.DataFrame([
        {"buyer_id": "B1", "country_iso3": "JPN", "commodity_id": "ndpr", "stage": "refine", "kind": "aggregate", "contract_projects": ""},
        {"buyer_id": "B2", "country_iso3": "USA", "commodity_id": "cobalt", "stage": "refine", "kind": "user", "contract_projects": ""},
        {"buyer_id": "B3", "country_iso3": "KOR", "commodity_id": "ndpr", "stage": "refine", "kind": "offtaker", "contract_projects": "P9"},
        {"buyer_id": "B4", "country_iso3": "USA", "commodity_id": "ndpr", "stage": "refine", "kind": "offtaker", "contract_projects": "P1"},
    ])
    s = build_summary(p, buyers)
    d, u = s["sentences"]["deliveries"], s["sentences"]["unmet_needs"]
    assert "JPN 10 t of ndpr/refine (all from plants producing before the plan: trade the buyers already have)" in d
    assert "USA 5 t of cobalt/refine (all new supply)" in d
    # B4's contracted plant produces (it went to others): short; B3's plant makes nothing in the window: waiting
    assert u.startswith("1 named buyers stay short over the window, the largest Short user (50 t of ndpr/refine).")
    assert ("1 more named buyers are offtakes bound to plants that produce nothing in the window (the largest Waiting offtaker, "
            "100 t of ndpr/refine)") in u
    assert "JPN ndpr/refine 100% from plants already producing (existing trade)" in u
    rows = {r["buyer"]: r["why"] for r in s["tables"]["unmet_needs"]}
    assert rows == {"Short user": "short: the allied plants producing in the window do not cover it",
                    "Waiting offtaker": "offtake bound to P9, which produces nothing in the window (P9 is built but reports no output)"}
    assert [r["tonnes_from_new_supply"] for r in sorted(s["tables"]["deliveries"], key=lambda r: r["node"])] == [5.0, 0.0]
    assert "national consumption rows receive nothing" not in u
    # review 36 (N11): "no named buyer stays short" hid that national consumption rows got nothing in the window; a
    # share that rounds to 0 % reads "under 1%"
    p["deliveries"]["buyers"][0]["delivered_t"] = 0.0
    u0 = build_summary(p, buyers)["sentences"]["unmet_needs"]
    assert ("1 of the 1 national consumption rows receive nothing from allied projects in the window (JPN ndpr/refine): their "
            "supply is today's trade.") in u0
    p["deliveries"]["buyers"][0]["delivered_t"] = 0.04
    assert "JPN ndpr/refine under 1%" in build_summary(p, buyers)["sentences"]["unmet_needs"]


def test_the_answer_says_where_a_pool_is_worth_its_agreement(study_run: tuple[Path, dict]):
    """Review 21/22: pool rows restated their members' stocks for almost no gain, and a 'recommended' pool saved
    US$259 k against a US$250 k agreement. The answer quotes a recommended pool's saving net of the agreement and says
    why the others are not."""
    import copy

    from critmin.report.summary import build_summary

    _, plan = study_run
    p = copy.deepcopy(plan)
    p["stockpiles"]["metadata"]["pool_agreement_cost_usd_per_year"] = 250_000.0
    p["stockpiles"]["stockpiles"] = [r for r in p["stockpiles"]["stockpiles"] if not r["participant"].startswith("POOL(")] + [
        {"participant": "POOL(USA+JPN)", "node": "a/mine", "optimal_stock_t": 10.0, "optimal_stock_usd": 1e6, "pooling_saving_usd": 400_000.0,
         "pooling_saving_net_usd": 150_000.0, "pool_recommended": True},
        {"participant": "POOL(USA+JPN)", "node": "b/mine", "optimal_stock_t": 10.0, "optimal_stock_usd": 1e6, "pooling_saving_usd": 259_000.0,
         "pooling_saving_net_usd": 9_000.0, "pool_recommended": False}]
    text = build_summary(p)["sentences"]["stocks"]
    assert "is worth an agreement at a/mine (saves $150 k a year net of it); at 1 more node the saving is less than the $250 k" in text
    assert "not clear of twice its sampling error (at most $259 k before that cost)" in text


def test_each_stock_is_compared_with_jogmecs_60_day_rule(study_run: tuple[Path, dict]):
    """Review 23: the optimum is flat and a ministry asks how far its own rule is from it. Each firm stock carries the
    60-day rule's extra expected cost (C_rule - C_opt, from the row's own rules) and the rule's stock in USD; the
    sentence adds them up."""
    _, plan = study_run
    s = plan["summary"]
    rows = {(r["participant"], r["node"]): r for r in plan["stockpiles"]["stockpiles"]}
    firm = [x for x in s["tables"]["stocks"] if x["basis"] == "firm"]
    assert firm
    for x in firm:
        r = rows[(x["participant"], x["node"])]
        assert x["extra_cost_of_60_days_usd_per_year"] == pytest.approx(r["rules"]["60_days"]["expected_cost_usd"] - r["expected_cost_with_stock_usd"])
        assert x["extra_cost_of_60_days_usd_per_year"] >= -1e-6 * max(1.0, r["expected_cost_with_stock_usd"])  # the optimum minimises C
        assert x["stock_usd_at_60_days"] == pytest.approx(r["rules"]["60_days"]["stock_t"] * r["optimal_stock_usd"] / r["optimal_stock_t"])
    assert f"Holding the same {len(firm)} lines at 60 days of consumption instead" in s["sentences"]["stocks"]


def test_stocks_say_what_they_fall_to_once_the_financed_pipeline_produces(study_run: tuple[Path, dict]):
    """Review 26: once EXIM's approval (S121) made Stibnite already financed, it left the candidates and the U.S. antimony
    stock lost the project it bridges to. The projects already financed whose output is ahead are in the plan
    (``financed_pipeline``: node, nameplate, status, completion), each stock at their nodes says what it falls to
    once they produce, and the answer names them as already financed."""
    _, plan = study_run
    pf = plan["portfolio"]
    pipe = {x["project_id"]: x for x in pf["financed_pipeline"]}
    stib = pipe["P034"]
    assert stib["node"] == "antimony/mine" and stib["status_class"] == "construction" and stib["nameplate_t_per_year"] == pytest.approx(8346.1)
    assert stib["co_product_nameplate_t_per_year"] == {"gold/mine": pytest.approx(14.4)}
    reasons = {p["project_id"]: p["reason"] for p in pf["projects"]}
    flagged = {p["project_id"] for p in pf["projects"] if p["already_financed"]}
    # review 33 F3: with those whose counted money covers the capex, the pipeline holds the projects the portfolio
    # treats as financed by their status class (construction, commissioning: coming with or without support)
    for k, x in pipe.items():
        if x["financed_basis"].startswith("counted"):
            assert reasons[k].startswith("already financed") and k in flagged, k
        elif x["financed_basis"].startswith("producing since"):
            # review 34 H7: producing since after the node's base year (Lynas' Dy/Tb circuit): new supply to the model
            assert x["status_class"] == "operating" and x["months_to_output"] == 0 and x["completion_probability"] == 1.0, k
        else:
            assert reasons[k].startswith("treated as financed because its status class is") and x["status_class"] in ("construction", "commissioning"), k
    assert {"P067", "P017", "P072"} <= set(pipe)  # Sangdong, e-VAC Sumter, Mountain Pass's Dy/Tb circuit
    assert "P073" in pipe and "P040" not in pipe  # Lynas Dy/Tb (May 2025) is new since 2024; Vidalia (Feb 2024) is not
    assert not set(pipe) & {s["project_id"] for s in pf["selected"]}
    row = next(r for r in plan["stockpiles"]["stockpiles"] if r["participant"] == "USA" and r["node"] == "antimony/mine")
    assert row["projects_supply_t_per_year"] >= stib["nameplate_t_per_year"] - 1e-6
    if row["optimal_stock_t"] > 0:
        assert row["stock_after_projects_t"] < row["optimal_stock_t"]
        assert (f"Stibnite gold-antimony project (already financed, construction, first output expected {stib['first_output_expected']} "
                "(sponsor: 2028") in plan["summary"]["sentences"]["stocks"]
    # review 25 F6: the concentrate's missing smelter is said where the stock falls on it (output_caveats.csv)
    assert stib["output_caveat"].startswith("its antimony leaves the mine as a 55-65 % concentrate and no smelter is named")
    if row["optimal_stock_t"] > 0:
        assert "no smelter is named" in plan["summary"]["sentences"]["stocks"]
    # review 28 F4: the stocks printed the sponsor's year (Caremag "2026") while the deliveries of the same plan said
    # "first output in about 18 months": both now use the model's timing
    import re

    said = {x["project_id"]: x["reason"] for x in plan["deliveries"]["not_supplying"]}
    for pid, x in pipe.items():
        assert re.fullmatch(r"\d{4}-\d{2}", x["first_output_expected"])
        m = re.search(r"first output in about (\d+) months", said.get(pid, ""))
        if m:
            assert int(m.group(1)) == round(x["months_to_output"]), pid


def test_financed_pipeline_reads_the_portfolio_flag_not_its_reason_text(simulator):
    """Review 26 left the financed pipeline reading the reason text ("already financed ..."): a reworded reason would
    have emptied it silently. It reads the portfolio's ``already_financed`` flag; a project recommended (for
    regulatory help) is counted with the recommended projects, not again in the pipeline."""
    import pandas as pd

    from critmin.study.core import financed_pipeline

    projects = pd.DataFrame([
        {"project_id": "PA", "name": "A", "commodity_id": "antimony", "stage": "mine", "capacity_t": 1000.0,
         "status_class": "construction", "first_output": "2028", "completion_probability": 0.8},
        {"project_id": "PB", "name": "B", "commodity_id": "antimony", "stage": "mine", "capacity_t": 500.0,
         "status_class": "financing", "first_output": "2028", "completion_probability": 0.8},
        {"project_id": "PC", "name": "C", "commodity_id": "antimony", "stage": "mine", "capacity_t": 700.0,
         "status_class": "construction", "first_output": "2028", "completion_probability": 0.8},
    ])
    portfolio = {"projects": [
        {"project_id": "PA", "decision": "rejected", "reason": "a reworded reason", "already_financed": True},
        {"project_id": "PB", "decision": "rejected", "reason": "already financed (text only)", "already_financed": False},
        {"project_id": "PC", "decision": "selected", "reason": "funded with a regulatory ...", "already_financed": True},
    ]}
    got = financed_pipeline(portfolio, projects, simulator.nodes)
    assert [x["project_id"] for x in got] == ["PA"]
    assert got[0]["node"] == "antimony/mine" and got[0]["nameplate_t_per_year"] == 1000.0
    assert got[0]["financed_basis"] == "counted support covers its capex"
    # review 33 F3: a project in construction that the portfolio rejects is coming with or without support (its
    # status class), so it is in the pipeline too, said as such; a selected one is not
    projects = pd.concat([projects, pd.DataFrame([{"project_id": "PD", "name": "D", "commodity_id": "antimony", "stage": "mine",
                                                    "capacity_t": 300.0, "status_class": "commissioning", "first_output": "2025",
                                                    "completion_probability": 0.95}])], ignore_index=True)
    portfolio["projects"].append({"project_id": "PD", "decision": "rejected", "reason": "treated as financed ...", "already_financed": False})
    got = {x["project_id"]: x for x in financed_pipeline(portfolio, projects, simulator.nodes)}
    assert set(got) == {"PA", "PD"}
    assert got["PD"]["financed_basis"].startswith("status class commissioning") and got["PD"]["months_to_output"] == 0.0


def test_deliveries_into_a_government_stockpile_are_reported_apart(study_run: tuple[Path, dict]):
    """Review 27: the U.S. antimony delivered into the National Defense Stockpile (DLA's contract, B002), which releases
    only for defence, was counted as supply to U.S. buyers. Buyers of kind ``stockpile`` are reported apart, summed
    by hand from the allocation."""
    import csv

    d, plan = study_run
    with (d / "buyers.csv").open(encoding="utf-8", newline="") as fh:
        kind = {r["buyer_id"]: r["kind"] for r in csv.DictReader(fh)}
    assert kind["B002"] == "stockpile"
    into: dict[tuple[str, str], float] = {}
    nodes = {r["buyer_id"]: r["node"] for r in plan["deliveries"]["buyers"]}
    country = {r["buyer_id"]: r["country_iso3"] for r in plan["deliveries"]["buyers"]}
    for a in plan["deliveries"]["allocation"]:
        if kind.get(a["buyer_id"]) == "stockpile":
            k = (country[a["buyer_id"]], nodes[a["buyer_id"]])
            into[k] = into.get(k, 0.0) + float(a["tonnes"])
    rows = {(r["receiving_country"], r["node"]): r for r in plan["summary"]["tables"]["deliveries"]}
    for k, r in rows.items():
        assert r["tonnes_into_stockpiles"] == pytest.approx(into.get(k, 0.0))
    assert into.get(("USA", "antimony/mine"), 0.0) > 0.5  # US Antimony's smelters deliver DLA's order in the window
    assert "into a government stockpile, not supply to industry" in plan["summary"]["sentences"]["deliveries"]


def test_a_project_contracted_to_another_country_is_not_named_in_a_participants_stock_fall():
    """Review 34 H10: Japan's tungsten stock was said to fall on Sangdong, all of whose output GTP (USA) takes under a
    contract without a published volume; a buyer with a volume leaves the rest open, and a participant's own contract
    keeps the project in its list."""
    from critmin.report.summary import contracted_elsewhere

    gtp = {"buyer_id": "B059", "country_iso3": "USA", "contract_projects": "P067", "demand_t_per_year": float("nan")}
    assert contracted_elsewhere("P067", "JPN", [gtp])
    assert not contracted_elsewhere("P067", "USA", [gtp])
    assert not contracted_elsewhere("P066", "JPN", [gtp])  # no contract names it: open to every buyer
    with_volume = {**gtp, "demand_t_per_year": 500.0}
    assert not contracted_elsewhere("P067", "JPN", [with_volume])  # the rest of its output is open
    japanese = {"buyer_id": "B900", "country_iso3": "JPN", "contract_projects": "P067;P066", "demand_t_per_year": None}
    assert not contracted_elsewhere("P067", "JPN", [gtp, japanese])
    # review 35 L5: a share of output leaves the rest open unless the shares add up to all of it
    share = {**gtp, "contract_share": 0.65}
    assert not contracted_elsewhere("P067", "JPN", [share])
    assert contracted_elsewhere("P067", "JPN", [share, {**share, "buyer_id": "B901", "country_iso3": "KOR", "contract_share": 0.35}])


def test_a_contract_for_a_share_of_output_holds_that_share_by_hand():
    """Review 35 L5: JARE holds up to 65 % of Lynas' Dy/Tb, not all of it. Of a plant's 58 t a year, a 0.65 share holds
    37.7 t; a published volume of 10 t is held beside it; a holder with neither takes the rest, 58 - 37.7 - 10 = 10.3 t.
    Shares and volumes above the output are scaled down to it."""
    import pandas as pd

    from critmin.study.core import contracted_supply

    row = {"project_id": "P073", "node": "dysprosium/refine", "nameplate_t_per_year": 58.0}
    projects = pd.DataFrame([{"project_id": "P073", "capacity_t": 30.0}])
    jare = {"buyer_id": "B1", "country_iso3": "JPN", "contract_projects": "P073", "demand_t_per_year": None, "contract_share": 0.65}
    other = {"buyer_id": "B2", "country_iso3": "KOR", "contract_projects": "P073", "demand_t_per_year": 10.0, "contract_share": None}
    rest = {"buyer_id": "B3", "country_iso3": "USA", "contract_projects": "P073", "demand_t_per_year": None, "contract_share": None}
    held = contracted_supply({}, [row], pd.DataFrame([jare]), projects)
    assert held == {"dysprosium/refine": {"JPN": pytest.approx(37.7)}}
    held = contracted_supply({}, [row], pd.DataFrame([jare, other, rest]), projects)["dysprosium/refine"]
    assert held == {"JPN": pytest.approx(37.7), "KOR": pytest.approx(10.0), "USA": pytest.approx(10.3)}
    big = {**other, "demand_t_per_year": 40.0}  # 37.7 + 40 > 58: both scaled by 58 / 77.7
    held = contracted_supply({}, [row], pd.DataFrame([jare, big]), projects)["dysprosium/refine"]
    assert held["JPN"] == pytest.approx(37.7 * 58 / 77.7) and sum(held.values()) == pytest.approx(58.0)
    # review 36: a share of output covers the plant's co-products (JARE's right is to Dy and Tb); a volume does not
    with_tb = {**row, "co_product_nameplate_t_per_year": {"terbium/refine": 11.6}}
    held = contracted_supply({}, [with_tb], pd.DataFrame([jare, other]), projects)
    assert held["terbium/refine"] == {"JPN": pytest.approx(0.65 * 11.6)}
    # the bundled register: JARE (B009) holds 0.65 of Lynas' Dy/Tb circuit at its node
    from critmin.deliver.buyers import bundled_buyers

    b = bundled_buyers().set_index("buyer_id").loc["B009"]
    assert (b["commodity_id"], b["stage"], b["contract_projects"], b["contract_share"]) == ("dysprosium", "refine", "P073", 0.65)


def test_the_year_ahead_output_of_the_pipeline_by_hand():
    """Review 34 H7 / 34b K9: the stocks are sized net of what the plants producing or being built deliver in the twelve
    months ahead: nameplate x completion probability x the mean share of nameplate over those months on the plant's
    ramp (with the months already behind a plant producing since its date), or its latest reported output; a plant
    whose first output is a year away or more adds nothing."""
    import pandas as pd

    from critmin.portfolio.finance import mean_output_share
    from critmin.study.core import year_ahead

    projects = pd.DataFrame([
        {"project_id": "PA", "stage": "mine", "ramp_up_months": 24, "output_t": None},
        {"project_id": "PB", "stage": "refine", "ramp_up_months": 12, "output_t": None},
        {"project_id": "PC", "stage": "refine", "ramp_up_months": None, "output_t": 58.0},
        {"project_id": "PD", "stage": "mine", "ramp_up_months": 24, "output_t": None},
    ])
    pipe = [
        {"project_id": "PA", "name": "A", "node": "x/mine", "nameplate_t_per_year": 1200.0, "co_product_nameplate_t_per_year": {"y/mine": 12.0},
         "status_class": "commissioning", "first_output": "2026-10", "months_to_output": 0.0, "completion_probability": 0.95},
        {"project_id": "PB", "name": "B", "node": "x/refine", "nameplate_t_per_year": 600.0, "co_product_nameplate_t_per_year": {},
         "status_class": "operating", "first_output": "2026-06", "months_to_output": 0.0, "completion_probability": 1.0},
        {"project_id": "PC", "name": "C", "node": "z/refine", "nameplate_t_per_year": 30.0, "co_product_nameplate_t_per_year": {},
         "status_class": "operating", "first_output": "2025-05", "months_to_output": 0.0, "completion_probability": 1.0},
        {"project_id": "PD", "name": "D", "node": "x/mine", "nameplate_t_per_year": 900.0, "co_product_nameplate_t_per_year": {},
         "status_class": "construction", "first_output": "2028", "months_to_output": 12.0, "completion_probability": 0.85},
    ]
    got = {r["project_id"]: r for r in year_ahead(pipe, projects, "2026-12")}
    assert set(got) == {"PA", "PB", "PC"}
    # PA: in commissioning since October 2026 (review 35 L1: two months up its 24-month ramp, as the deliveries count it):
    # shares 3/24 ... 14/24, mean 8.5/24
    assert got["PA"]["expected_t_year_ahead"] == pytest.approx(0.95 * 1200.0 * 8.5 / 24.0)
    assert got["PA"]["nameplate_t_per_year"] == 1200.0
    assert got["PA"]["co_product_expected_t_year_ahead"]["y/mine"] == pytest.approx(0.95 * 12.0 * 8.5 / 24.0)
    assert mean_output_share(0, 12, 2.0, elapsed_months=2) == pytest.approx(8.5 / 24.0)
    # PB: producing since June 2026, six months behind it on a 12-month ramp: shares 7/12 ... 12/12 then 1
    assert got["PB"]["expected_t_year_ahead"] == pytest.approx(600.0 * (sum(range(7, 13)) / 12.0 + 6) / 12.0)
    # review 35b M4: a year alone in the plan's own year has not passed (financed_pipeline's flag): no months behind it
    late = {**pipe[0], "first_output": "2026", "sponsor_date_passed": False}
    assert year_ahead([late], projects, "2026-12")[0]["expected_t_year_ahead"] == pytest.approx(0.95 * 1200.0 * 6.5 / 24.0)
    # PC: its latest reported output, even above the register's capacity (review 35 L5: a lower bound for Lynas)
    assert got["PC"]["expected_t_year_ahead"] == pytest.approx(58.0) and got["PC"]["year_ahead_basis"].startswith("latest reported output")


def test_the_year_ahead_deliveries_are_drawn_plant_by_plant(simulator):
    """Review 35b M3: each plant of the year ahead delivers in a draw with its completion probability (keyed by the seed
    and the project: the stocks and the portfolio see the same draws); what a participant receives when it delivers is
    its contracts, then its market share of the rest (received_t), so the mean over many draws is π times that."""
    import numpy as np

    from critmin.stockpile.plan import received_t
    from critmin.study import Study

    st = Study()
    row = {"project_id": "PX", "name": "X", "node": "tungsten/mine", "nameplate_t_per_year": 1000.0, "co_product_nameplate_t_per_year": {},
           "status_class": "commissioning", "first_output": "2026-06", "months_to_output": 0.0, "completion_probability": 0.8,
           "expected_t_year_ahead": 400.0, "co_product_expected_t_year_ahead": {}}
    a = st.year_ahead_draws([row], 4000, 7)
    b = st.year_ahead_draws([row], 4000, 7)
    got = a["tungsten/mine"]["USA"]
    assert np.array_equal(got, b["tungsten/mine"]["USA"])
    each = received_t(simulator, "tungsten/mine", "USA", 500.0)
    assert set(np.round(np.unique(got), 6)) <= {0.0, round(each, 6)}
    assert float((got > 0).mean()) == pytest.approx(0.8, abs=0.03)
    assert float(got.mean()) == pytest.approx(0.8 * each, rel=0.05)


def test_the_year_ahead_draws_sample_the_ramp_by_hand(simulator):
    """Review 35b M3: a plant on its class's fitted ramp (a mine: 2 years, range 1-3) delivers in a draw the mean of
    its ramp over the year for a years-to-design Y drawn from the triangular (1, 2, 3). By hand for a mine six months
    into its ramp: h(Y) = mean over months m = 7..18 of min(1, m / 12Y); the participant receives its market share of
    Q h(Y) where the plant delivers. The mean over draws is E[h(Y)] by quadrature of the triangular density (y - 1 on
    [1, 2], 3 - y on [2, 3]); every draw lies between h(3) and h(1)."""
    import numpy as np

    from critmin.stockpile.plan import received_t
    from critmin.study import Study

    def h(y: float) -> float:
        m = np.arange(7.0, 19.0)
        return float(np.minimum(1.0, m / (12.0 * y)).mean())

    st = Study()
    q0 = 1000.0 * h(2.0)
    row = {"project_id": "PR", "name": "R", "node": "tungsten/mine", "nameplate_t_per_year": 1000.0, "co_product_nameplate_t_per_year": {},
           "status_class": "commissioning", "first_output": "2026-06", "months_to_output": 0.0, "completion_probability": 1.0,
           "expected_t_year_ahead": q0, "co_product_expected_t_year_ahead": {},
           "year_ahead_ramp": {"start_month": 0.0, "elapsed_months": 6.0, "years_to_design": [1.0, 2.0, 3.0]}}
    got = st.year_ahead_draws([row], 4000, 3)["tungsten/mine"]["USA"]
    per_t = received_t(simulator, "tungsten/mine", "USA", 1000.0) / 1000.0  # no contract names PR: a market share
    ys = np.linspace(1.0, 3.0, 4001)
    dens = np.where(ys <= 2.0, ys - 1.0, 3.0 - ys)
    mean_h = float(np.trapezoid([h(y) for y in ys] * dens, ys) / np.trapezoid(dens, ys))
    assert float(got.mean()) == pytest.approx(per_t * 1000.0 * mean_h, rel=0.01)
    assert got.min() >= per_t * 1000.0 * h(3.0) - 1e-6 and got.max() <= per_t * 1000.0 * h(1.0) + 1e-6
    assert got.std() > 0.05 * got.mean()  # the ramp is drawn, not fixed
    # the year_ahead rows carry the range of a class ramp, not of a reported output
    import pandas as pd

    from critmin.study.core import year_ahead

    projects = pd.DataFrame([{"project_id": "PR", "stage": "mine", "ramp_up_months": None, "output_t": None}])
    rows = year_ahead([{**row, "sponsor_date_passed": True}], projects, "2026-12")
    assert rows[0]["year_ahead_ramp"]["years_to_design"] == [1.0, 2.0, 3.0]


def test_the_lead_says_when_a_funded_project_needs_no_money(study_run: tuple[Path, dict]):
    """Review 36 (N8): 84 % of the benefit after the stocks was Mactung, which the finance model finds viable without
    support at every price case; only a note said so. The lead now says that such a project's support is additional only
    if it closes the financing; a project with a viability gap in some price case is not named."""
    import copy

    from critmin.report.summary import build_summary

    _, plan = study_run
    p = copy.deepcopy(plan)
    pf = p["portfolio"]
    pf["selected"] = [
        {"project_id": "PA", "name": "Alpha mine", "participant": "CAN", "agency": "CAN_NRCAN_CMSF", "instrument": "loan_guarantee",
         "amount_usd": 1e8, "budget_cost_usd": 5e6, "expected_avoided_usd": 8e6},
        {"project_id": "PB", "name": "Beta refinery", "participant": "JPN", "agency": "JP_JBIC", "instrument": "equity", "amount_usd": 2e7,
         "budget_cost_usd": 4e6, "expected_avoided_usd": 2e6},
    ]
    pf["expected_avoided_usd"] = 10e6
    pf["finance"] = [{"project_id": "PA", "viability_gap_usd": {"low": -1e6, "base": -5e6}},
                     {"project_id": "PB", "viability_gap_usd": {"low": 3e6, "base": -1e6}}]
    pf["selection_net_of_stocks"] = {"both": ["PA", "PB"], "only_without_stocks": [], "only_net_of_stocks": [],
                                     "reason_net_of_stocks": {}, "expected_avoided_usd_net_of_stocks": 9e6}
    lead = build_summary(p)["parts"]["financing"]["lead"]
    assert lead.endswith("Alpha mine is viable without support in the finance model: the support is additional only if it is "
                         "what closes the financing.")
    assert "Beta refinery is viable" not in lead and "Beta refinery and" not in lead.split("They avoid")[1]
