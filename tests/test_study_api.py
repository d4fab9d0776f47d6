"""The Python API (issue 13): ``critmin.Study``'s methods return typed results, options are checked once, before
any work, with the same wording in the library, the CLI and the web API, and the tutorial runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

import critmin
from critmin.errors import OptionsError
from critmin.study.results import AssessmentResult, DeliveryResult, MatchResult, unit_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study() -> critmin.Study:
    return critmin.Study(draws=50, as_of="2026-12")


def test_the_tutorial_runs_the_whole_cycle(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-W", "error", str(ROOT / "docs" / "tutorial.py")], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    with pd.ExcelFile(tmp_path / "tutorial_plan.xlsx") as book:
        assert len(book.sheet_names) > 5
    assert "gallium" in p.stdout and "expected_loss_usd" in p.stdout


def test_bad_options_fail_before_any_work_with_one_wording(study: critmin.Study) -> None:
    from critmin.web.jobs import DeliverParams, PortfolioParams, StockpileParams

    t0 = time.perf_counter()
    with pytest.raises(OptionsError, match="co-financing minimum shares add up to 1.30 > 1"):
        study.portfolio(min_participant_share={"USA": 0.7, "JPN": 0.6})
    with pytest.raises(OptionsError, match="cvar_weight: Input should be less than or equal to 10"):
        study.portfolio(cvar_weight=11)
    with pytest.raises(OptionsError, match="budgets: 'NOPE:loan': unknown agency"):
        study.portfolio(budgets={"NOPE:loan": 1e9})
    with pytest.raises(OptionsError, match="perspective: Input should be 'USA', 'JPN' or 'BLOC'"):
        study.stockpile(perspective="MARS")
    with pytest.raises(OptionsError, match="stages: Value error, unknown stage|unknown stage"):
        study.stockpile(stages=["warehouse"])
    with pytest.raises(OptionsError, match="months: Input should be greater than or equal to 1"):
        study.deliver(months=0)
    with pytest.raises(OptionsError, match="as_of: '2026-13' is not a month"):
        study.match(as_of="2026-13")
    assert "_risk_runs" not in study.__dict__ and time.perf_counter() - t0 < 5  # nothing was simulated
    # the web API states the same bounds and messages (its models copy the core fields)
    for model, body, text in ((PortfolioParams, {"min_participant_share": {"USA": 0.7, "JPN": 0.6}}, "add up to 1.30 > 1"),
                              (PortfolioParams, {"cvar_weight": 11}, "less than or equal to 10"),
                              (StockpileParams, {"max_days": 0}, "greater than 0"),
                              (DeliverParams, {"months": 121}, "less than or equal to 120")):
        with pytest.raises(ValidationError, match=text):
            model.model_validate(body)


def test_results_are_typed_frames_with_units_metadata_and_exports(study: critmin.Study, tmp_path: Path) -> None:
    a = study.assess("JPN")
    assert isinstance(a, AssessmentResult) and isinstance(a.ranking, pd.DataFrame) and a.ranking["rank"].dropna().astype(int).is_monotonic_increasing
    assert a.metadata["data_version"] == study.atlas.data_version and a.metadata["perspective"] == "JPN"
    ch = study.chain("gallium")
    assert ch.chokepoint in set(ch.stages["stage"]) and {"stage", "iso3", "share"} <= set(ch.countries.columns)
    d = study.deliver(months=3)
    assert isinstance(d, DeliveryResult) and d.record["metadata"]["months"] == 3
    assert d.units("buyers")["shortfall_t"] == "t" and d.units("buyers")["buyer_id"] == ""
    m = study.match()
    assert isinstance(m, MatchResult) and len(m.matches) and m.metadata["as_of"] == "2026-12"
    json.dumps(m.to_dict())  # JSON-safe
    path = m.to_excel(tmp_path / "m.xlsx")
    sheets = pd.read_excel(path, sheet_name=None)
    assert {"matches", "about"} <= set(sheets) and len(sheets["matches"]) == len(m.matches)
    # results are frozen
    with pytest.raises(AttributeError):
        m.matches = pd.DataFrame()  # type: ignore[misc]


@pytest.mark.parametrize(("column", "unit"), [("expected_loss_usd", "USD"), ("optimal_stock_t", "t"), ("added_capacity_t_per_year", "t/yr"),
                                              ("days_of_consumption", "days"), ("marginal_value_usd_per_usd", "USD per USD"),
                                              ("proxy_share_of_loss", "fraction"), ("months_to_output", ""), ("commodity", "")])
def test_units_are_read_from_column_names(column: str, unit: str) -> None:
    assert unit_of(column) == unit


def test_a_study_from_parts_plans_on_the_records_it_is_given(study: critmin.Study) -> None:
    """The web workspace's path (Study.from_parts): the records it is given are what it plans on, and offers
    (supply rows outside the register) deliver from the month stated for them."""
    buyers = study.buyers[(study.buyers["commodity_id"] == "gallium") & study.buyers["demand_t_per_year"].notna()].head(1)
    offer = study.projects.iloc[:0].reindex(range(1))
    offer.loc[0, ["project_id", "name", "sponsor", "country_iso3", "commodity_id", "stage", "capacity_t", "status_class", "sources"]] = [
        "OFFER1", "an offer", "a supplier", "CAN", "gallium", buyers["stage"].iloc[0], 12.0, "operating", "offer"]
    st = critmin.Study.from_parts(study.atlas, study.simulator, projects=study.projects.iloc[:0], support=study.support.iloc[:0],
                                  buyers=buyers, supply=offer, first_month={"OFFER1": 2}, as_of="2026-12")
    d = st.deliver(months=6)
    assert list(d.buyers["buyer_id"]) == list(buyers["buyer_id"])
    got = d.allocation
    assert set(got["project_id"]) == {"OFFER1"}
    assert got.loc[got["tonnes"] > 0, "month"].min() == 3  # months are 1-based: the offer delivers from its month 2 (0-based)
    assert st.simulator is study.simulator and st.parameters is study.simulator.params


def test_the_simulator_inputs_of_the_cli_are_study_inputs(tmp_path: Path) -> None:
    st = critmin.Study(parameter_values={"elasticity_demand": -0.4})
    assert st.parameters.resolve("elasticity_demand").value == pytest.approx(-0.4)
    with pytest.raises(critmin.CritminError, match="chain: nope.csv not found"):
        critmin.Study(chain=tmp_path / "nope.csv")


def test_no_entry_point_hard_codes_the_reference_month() -> None:
    """A library call without ``as_of`` plans from this month (the reviews found "2026-11" written in three places)."""
    import inspect

    from critmin._dates import current_month
    from critmin.deliver.match import match
    from critmin.deliver.plan import delivery_plan
    from critmin.portfolio.model import build_problem
    from critmin.report.respond import respond

    for f in (match, delivery_plan, build_problem, respond):
        assert inspect.signature(f).parameters["as_of"].default is None, f.__name__
    st = critmin.Study()
    assert st.as_of == current_month()
    assert st.match().metadata["as_of"] == current_month()
