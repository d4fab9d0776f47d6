"""Instrument budget-cost formulas and project finance against hand calculations."""

from __future__ import annotations

import numpy as np
import pytest

from critmin.portfolio.finance import (
    ProjectCase,
    annuity_payment,
    cash_flows,
    dscr,
    irr,
    mean_output_share,
    npv,
    output_profile,
    ramp_share,
    viability_gap,
)
from critmin.portfolio.instruments import (
    guarantee_cost,
    insurance_cost,
    loan_cost,
    offtake_cost,
    price_floor_cost,
    project_default_probability,
    put_value,
)


def test_project_default_probability_carries_construction_risk():
    # operating project: the operating rate itself
    assert project_default_probability(0.0069, 15, 1.0) == pytest.approx(0.0069, rel=1e-12)
    # c = 0.85, d = 0.0069, n = 15: 0.9931^15 = exp(15 x -0.0069239) = 0.90135; x 0.85 = 0.76615;
    # ln 0.76615 = ln 0.75 + ln 1.021527 = -0.287682 + 0.021298 = -0.266384; /15 = -0.017759; 1 - exp(.) = 0.017602
    assert project_default_probability(0.0069, 15, 0.85) == pytest.approx(0.017602, abs=1e-5)
    # survival over the tenor equals c (1 - d)^n
    d = project_default_probability(0.01, 10, 0.7)
    assert (1 - d) ** 10 == pytest.approx(0.7 * 0.99**10, rel=1e-12)


def test_loan_cost_hand():
    assert loan_cost(100, 0.05, 2, 0.05, 0.0, 1.0) == pytest.approx(0.0, abs=1e-12)  # market terms, no default: free
    # annuity 53.7805; balances 100, 51.2195; inflows 48.40245 (t1), 0.9*0.9*53.7805 = 43.5622 (t2)
    a = 100 * 0.05 / (1 - 1.05**-2)
    pv = 0.9 * a / 1.05 + 0.81 * a / 1.05**2
    assert loan_cost(100, 0.05, 2, 0.05, 0.1, 1.0) == pytest.approx(100 - pv, rel=1e-12)
    assert loan_cost(100, 0.05, 2, 0.05, 0.1, 1.0) == pytest.approx(14.3902, abs=1e-4)
    assert loan_cost(100, 0.02, 10, 0.045, 0.0, 0.5) > 0  # a concessional rate costs the budget


def test_guarantee_cost_hand():
    b2 = 100 * 1.05 - 100 * 0.05 / (1 - 1.05**-2)
    expected = (4.0 - 0.8) / 1.05 + (0.9 * 0.1 * 0.8 * 0.5 * b2 - 0.9 * 0.01 * 0.8 * b2) / 1.05**2
    assert guarantee_cost(100, 0.05, 2, 0.8, 0.01, 0.05, 0.1, 0.5) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(4.3856, abs=1e-4)


def test_price_floor_and_other_instruments_hand():
    assert put_value(100, 100, 0.2) == pytest.approx(7.9656, abs=1e-4)  # 100 (N(0.1) - N(-0.1))
    assert price_floor_cost(1.0, 100, 100, 0.2, 1, 0.0) == pytest.approx(put_value(100, 100, 0.2))
    assert put_value(100, 50, 0.0) == 0.0 and put_value(40, 50, 0.0) == 10.0
    assert insurance_cost(1000, 0.01, 0.02, 2, 0.0) == pytest.approx(20.0)
    assert offtake_cost(10, 110, 100, 0.3, 2, 0.0) == pytest.approx(200.0)


def test_npv_irr_hand():
    f = np.array([-100.0, 60.0, 60.0])
    assert npv(f, 0.10) == pytest.approx(-100 + 60 / 1.1 + 60 / 1.21)
    x = (-60 + np.sqrt(3600 + 24000)) / 120
    assert irr(f) == pytest.approx(1 / x - 1, rel=1e-9)  # 13.07 %
    assert np.isnan(irr(np.array([10.0, 10.0])))


def test_cash_flows_viability_gap_dscr_hand():
    case = ProjectCase(capacity_t=10, capex_usd=100, unit_cost_usd_per_t=5, construction_years=1, ramp_years=0, life_years=2, tax_rate=0.5, hurdle_rate=0.1)
    # year 0: -100 capex; years 1-2: (20-5)*10*(1-0.5) + 0.5*50 depreciation shield = 100
    assert cash_flows(case, np.array(20.0)).tolist() == pytest.approx([-100.0, 100.0, 100.0])
    assert viability_gap(case, np.array(20.0)) == pytest.approx(0.0)
    low = np.array([[6.0] * 3, [20.0] * 3])  # two price scenarios
    gap = viability_gap(case, low)
    # at 6: margin 10 a year, taxable 10 - 50 = -40 (a loss carried forward, no refund; review 13: the shield of 25 was
    # paid out before), so FCF is the margin alone
    assert gap[0] == pytest.approx(100 - 10 / 1.1 - 10 / 1.21) and gap[1] == 0.0
    ds = annuity_payment(60, 0.05, 2)
    assert dscr(case, np.array([[20.0] * 3]), 60, 0.05, 2)[0] == pytest.approx(100 / ds)


def test_cost_weight_is_the_cost_of_public_funds_over_the_horizon_annuity():
    from critmin.portfolio.model import cost_weight

    # 1.0436^5 = exp(5 x 0.042676) = 1.23786; annuity (1 - 1/1.23786)/0.0436 = 4.4071; 1.25 / 4.4071 = 0.28363
    assert cost_weight(1.25, 0.0436, 60.0) == pytest.approx(0.28363, abs=2e-5)
    assert cost_weight(1.0, 0.0, 24.0) == pytest.approx(0.5)  # no discounting: 1 USD over two years


def test_output_ramps_up_linearly_from_first_output():
    # r(m) = min(1, m / (12 Y)): month 6 of a 3.75-year ramp is 6/45 of nameplate; none before the first month
    assert ramp_share([0, 6, 45, 60], 3.75).tolist() == pytest.approx([0.0, 6 / 45, 1.0, 1.0])
    # the horizon's mean share: output from month 0 with Y = 1 over 12 months is (1 + ... + 12) / 12 / 12
    assert mean_output_share(0, 12, 1.0) == pytest.approx(6.5 / 12)
    # first output in month 3 (months 3..11 produce: m = 1..9), Y = 1: (1 + ... + 9) / 12 / 12
    assert mean_output_share(3, 12, 1.0) == pytest.approx(45 / 144)
    # Y = 0 is nameplate at once: the share of the horizon with output, as before the ramp
    assert mean_output_share(3, 12, 0.0) == pytest.approx(9 / 12)
    # 30 months already behind a 2-year ramp: nameplate throughout
    assert mean_output_share(0, 12, 2.0, elapsed_months=30) == pytest.approx(1.0)
    # review 34: discounted at r a year, output from month 12 of a 24-month window (Y = 0) is worth the second year's
    # discount factor over the two years': v / (1 + v), v = 1 / 1.1, = 1 / 2.1; undiscounted it is one half
    assert mean_output_share(12, 24, 0.0, rate=0.10) == pytest.approx(1 / 2.1)
    assert mean_output_share(12, 24, 0.0, rate=0.0) == pytest.approx(0.5)
    assert mean_output_share(0, 24, 0.0, rate=0.10) == pytest.approx(1.0)  # nameplate throughout: the weights cancel
    # yearly output of a 2-year ramp: year 1 the mean of 1/24..12/24, year 2 of 13/24..24/24, then capacity
    case = ProjectCase(capacity_t=24, capex_usd=0, unit_cost_usd_per_t=0, construction_years=1, ramp_years=2, life_years=3,
                       tax_rate=0, hurdle_rate=0.1)
    assert output_profile(case).tolist() == pytest.approx([0.0, 6.5, 18.5, 24.0])


def test_ramp_parameters_are_the_fits_on_plants_quarterly_output():
    from critmin.portfolio.model import InstrumentParameters, years_to_design

    ip = InstrumentParameters.load()
    # data/raw/dynamics/ramp_up/fit_ramp.py: concentrators 2.0 years, separation and refining plants 6.65 (the four
    # plants, stalls included)
    assert years_to_design({"stage": "mine"}, ip)[0] == 2.0
    assert years_to_design({"stage": "refine"}, ip)[0] == 6.65
    # the register's own ramp-up wins
    assert years_to_design({"stage": "refine", "ramp_up_months": 18}, ip) == (1.5, "register ramp-up 18 months")


def test_offtake_hedge_closes_the_low_price_gap_only() -> None:
    """Review 12: an offtake at market price was worth nothing to a project, so offtake budgets never added capacity.
    Independent check: a project with one operating year, no tax, no construction, hurdle 0: NPV(P) = (P - c) Q - K.
    Prices 70, 100, 130; Q = 10, c = 60, K = 500: NPVs -400, -100, 200 -> gaps 400, 100, 0, mean 166.67.
    Half the output contracted at 100: realised prices 85, 100, 115 -> NPVs -250, -100, 50 -> gaps 250, 100, 0,
    mean 116.67; hedge value 50."""
    from critmin.portfolio.finance import ProjectCase, contracted_prices, hedge_value

    case = ProjectCase(10.0, 500.0, 60.0, 0, 0.0, 1, 0.0, 0.0)
    prices = np.array([[70.0], [100.0], [130.0]])
    assert contracted_prices(case, prices, 0.5, 100.0, 10)[:, 0] == pytest.approx([85.0, 100.0, 115.0])
    assert hedge_value(case, prices, 0.5, 100.0, 10) == pytest.approx(50.0)
    # a project viable even at the low price gains nothing from the hedge; a zero share gains nothing either
    assert hedge_value(ProjectCase(10.0, 50.0, 60.0, 0, 0.0, 1, 0.0, 0.0), prices, 0.5, 100.0, 10) == 0.0
    assert hedge_value(case, prices, 0.0, 100.0, 10) == 0.0


def test_uncovered_debt_service_is_the_loan_life_coverage_shortfall() -> None:
    """Review 12: guarantees were costed at the portfolio-wide default rate whatever the project's cover (NICO's
    cobalt-only cash covered 0.18 of its debt service). Independent check: no construction, 2 operating years, no tax,
    Q = 10, c = 0, capex 0 (so CFADS = P Q): prices 5, 10, 15 -> CFADS 50, 100, 150 a year. A loan of 200 at 0 %:
    cash over the tenor 100, 200, 300 -> shortfalls 100, 0, 0 -> mean 33.33. At 10 %: PV of cash
    50 (1/1.1 + 1/1.21) = 86.78 -> shortfall 113.22; 173.55 -> 26.45; 260.33 -> 0; mean 46.56."""
    from critmin.portfolio.finance import ProjectCase, uncovered_debt_service

    case = ProjectCase(10.0, 0.0, 0.0, 0, 0.0, 2, 0.0, 0.0)
    prices = np.array([[5.0, 5.0], [10.0, 10.0], [15.0, 15.0]])
    assert uncovered_debt_service(case, prices, 200.0, 0.0, 2) == pytest.approx(100.0 / 3)
    a = 1 / 1.1 + 1 / 1.21
    want = (max(0, 200 - 50 * a) + max(0, 200 - 100 * a) + max(0, 200 - 150 * a)) / 3
    assert uncovered_debt_service(case, prices, 200.0, 0.10, 2) == pytest.approx(want)
    assert want == pytest.approx(46.56, abs=0.01)
    # a loan the cash repays in every scenario costs nothing here; no loan, nothing
    assert uncovered_debt_service(case, prices, 50.0, 0.0, 2) == 0.0
    assert uncovered_debt_service(case, prices, 0.0, 0.0, 2) == 0.0


def test_coproducts_parse_and_reject_malformed_text() -> None:
    from critmin.portfolio.register_schema import parse_coproducts

    assert parse_coproducts("gold:14.40; bismuth:2336.7") == [("gold", 14.4), ("bismuth", 2336.7)]
    assert parse_coproducts("") == [] and parse_coproducts(None) == []
    for bad in ("gold", "gold:x", "gold:0", ":3"):
        with pytest.raises(ValueError, match="commodity:tonnes a year"):
            parse_coproducts(bad)


def test_income_tax_carries_losses_forward_and_refunds_nothing() -> None:
    """Review 13: the tax shield was paid at zero profit. Taxable -100, 60, 80 at 25 %: no tax in year 0 (loss 100
    carried), year 1 uses 60 of it (tax 0), year 2 uses the last 40 and pays 25 % of 40 = 10."""
    from critmin.portfolio.finance import income_tax

    assert income_tax(np.array([-100.0, 60.0, 80.0]), 0.25) == pytest.approx([0.0, 0.0, 10.0])
    # per scenario along a leading axis
    got = income_tax(np.array([[-100.0, 60.0, 80.0], [10.0, 10.0, -5.0]]), 0.25)
    assert got == pytest.approx(np.array([[0.0, 0.0, 10.0], [2.5, 2.5, 0.0]]))
