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
