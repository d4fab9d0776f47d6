"""Disruption simulator: closed forms, hand-computed goldens, invariants, reproducibility, reference, errors.

The goldens are worked by hand from the equations of docs/simulation.md §4-7 (the arithmetic is in the
comments); none is a snapshot of the code's output.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from critmin.simulate.engine import (
    ChainFactors,
    NodeDraws,
    chain_factors,
    compile_batch,
    demand_scaled,
    evaluate_chunk,
)
from critmin.simulate.market import clear_month, closed_form_price, stock_demand
from critmin.simulate.nodes import PARTICIPANTS, Node, NodeTable, price_to_usd_per_t
from critmin.simulate.parameters import DEMAND_SETTINGS, VALUATION_SETTINGS, ParameterError, Parameters
from critmin.simulate.probability import fit_probability_model
from critmin.simulate.reference import scalar_losses
from critmin.simulate.run import Simulator, run, weighted_tail
from critmin.simulate.scenario import Response, Scenario, ScenarioError, StockpileRelease, load_scenario_file

#: A frictionless market: no commercial stocks, no hoarding, no substitution, everything exported by the
#: restrictor, no transmission into its market. The engine then reproduces the single-market closed form.
FIXED = {
    "elasticity_demand": -0.5,
    "elasticity_demand_long": -0.5,
    "substitution_months": 12.0,
    "elasticity_supply": 0.5,
    "spare_capacity": 0.25,  # of the other producers' output: 0.25 x 0.4 = 0.1 of world output
    "ramp_months": 0.0,
    "leakage": 0.0,
    "leakage_world": 0.0,
    "restrictor_export_share": 1.0,
    "inventory_months": 0.0,
    "stock_adjustment": 0.5,
    "stock_half_cover_months": 1.2,
    "hoarding_targeted": 0.0,
    "hoarding_restrictor": 0.0,
    "price_transmission": 0.0,
    "downstream_value_multiple": 2.0,
    "max_price_ratio": 10.0,
}


def toy_node(s_r: float = 0.6, usa: float = 0.1) -> Node:
    """One node: CHN s_r, USA ``usa``, AUS the rest; Q0 = 1000 t, P0 = 1000 USD/t; USA demand 0.1, JPN 0.05."""
    return Node(
        commodity="toy", stage="refine", group="minor_metals",
        shares={"CHN": s_r, "USA": usa, "AUS": 1.0 - s_r - usa}, share_basis="test",
        q0_t=1000.0, q0_basis="test", p0_usd_per_t=1000.0, p0_basis="test",
        demand_share={"USA": 0.1, "JPN": 0.05}, demand_basis={}, nir={"USA": 1.0, "JPN": 1.0},
        import_shares={"USA": {"CHN": 0.5}, "JPN": {}},
    )


def toy_sim(atlas, node: Node | None = None, fixed: dict[str, float] | None = None) -> Simulator:
    nodes = NodeTable([node or toy_node()])
    params = Parameters.load(fixed=fixed if fixed is not None else FIXED)
    chain = ChainFactors(np.ones(1), np.zeros(1), [[]], [[]])
    prob = fit_probability_model(atlas, nodes, params)
    keys = (*VALUATION_SETTINGS, *DEMAND_SETTINGS, "in_force_horizon_months")
    return Simulator(atlas, nodes, params, chain, prob, {k: params.setting(k) for k in keys})


def ban(**kw) -> Scenario:
    base = {"id": "t", "commodity": "toy", "stage": "refine", "restrictors": ["CHN"], "targets": ["WORLD"], "duration_months": 12}
    base.update(kw)
    return Scenario(**base)


# ------------------------------------------------------------------ closed forms ------------------------------------


def test_closed_form_golden():
    # D = 0.6, X = 0.1 (0.25 of the others' 0.4), εd - εs = -1: P1/P0 = 0.5^-1 = 2
    assert closed_form_price(1.0, 0.6, 0.1, -0.5, 0.5) == pytest.approx(2.0)
    assert closed_form_price(1.0, 0.05, 0.1, -0.5, 0.5) == 1.0  # spare covers the loss


def test_clear_month_solves_its_equation_and_rations_at_the_cap():
    s, d, a, k = np.array([0.5, 0.5, 0.9, 0.5]), np.array([1.0, 1.0, 1.0, 1.0]), np.array([0.0, -0.25, 0.3, 0.0]), np.zeros(4)
    c = clear_month(s, d, a, k, 0.5, -0.5, 0.1, 10.0)
    # S p^εs = (D + A - k) p^ε: (1/0.5)^1 = 2; (0.75/0.5) = 1.5; (1.3/0.9) = 1.444; (1/0.5) = 2
    assert c.price == pytest.approx([2.0, 1.5, 1.3 / 0.9, 2.0])
    assert np.allclose(c.supplied, c.consumed + c.stock_flow - c.release)
    # the cap: at p_hi = 1.5 buyers get what producers make (0.5 x 1.5^0.5), holders who want to buy get nothing
    cap = clear_month(np.array([0.5]), np.array([1.0]), np.array([0.2]), np.zeros(1), 0.5, -0.5, 0.1, 1.5)
    assert cap.capped[0] and cap.price[0] == pytest.approx(1.5)
    assert cap.consumed[0] == pytest.approx(0.5 * 1.5**0.5) and cap.stock_flow[0] == pytest.approx(0.0)
    # a glut: the price stops at the floor and the surplus idles
    glut = clear_month(np.array([3.0]), np.array([1.0]), np.array([-0.5]), np.zeros(1), 0.5, -0.5, 0.5, 10.0)
    assert glut.price[0] == pytest.approx(0.5) and glut.consumed[0] == pytest.approx(0.5**-0.5)


def test_stock_demand_golden():
    # I = 0.1, hoarding still to buy H = 0.05, θ = 0.5, gap X = 0.2, consumption 1, h = 1.2 months: cover = 0.5
    # A = 0.5·12·0.05 - 0.5·0.2 = 0.3 - 0.1 = 0.2
    assert stock_demand(np.array(0.1), np.array(0.05), np.array(0.2), np.array(1.0), 0.5, 1.2) == pytest.approx(0.2)
    # holders never release more than they hold in a month: A >= -12 I
    assert stock_demand(np.array(0.01), np.array(0.0), np.array(5.0), np.array(1.0), 0.5, 0.0001) == pytest.approx(-0.12)
    # no stock, no cover
    assert stock_demand(np.array(0.0), np.array(0.0), np.array(0.5), np.array(1.0), 0.5, 1.2) == 0.0


def test_engine_reproduces_single_market_closed_form_and_hand_golden(atlas):
    sim = toy_sim(atlas)
    res = run(sim, [ban(withheld_share=1.0)], draws=4, seed=1)
    usa = res.scenarios.set_index("perspective").loc["USA"]
    assert usa["peak_price_ratio_mean"] == pytest.approx(2.0, rel=1e-12)
    # hand computation (docs/simulation.md §7): σ = 2^-0.5; USA d = 0.1, s = 0.1; P0·Q0 = 1e6 USD/yr; 12 months
    sigma = 2**-0.5
    assert usa["shortfall_t"] == pytest.approx(0.1 * (1 - sigma) * 1000.0, rel=1e-12)  # 29.289 t
    assert usa["input_cost_usd"] == pytest.approx(0.1 * sigma * 1e6, rel=1e-12)  # 70,711 USD
    # p = 2 is the clearing price, below the choke (not above it): the 1 - σ buyers give up is a price cut, worth the
    # triangle ½(p - 1) = 0.5 per unit of the old price (price_cut_output_fraction 0), not the multiple M = 2
    assert usa["rationed_t"] == 0.0
    assert usa["lost_output_usd"] == pytest.approx(0.1 * (1 - sigma) * 0.5 * 1e6, rel=1e-12)  # 14,645 USD
    # the input-output convention (every tonne not consumed at M) is reported beside it
    assert usa["lost_output_io_usd"] == pytest.approx(0.1 * (1 - sigma) * 2.0 * 1e6, rel=1e-12)  # 58,579 USD
    assert usa["producer_gain_usd"] == pytest.approx(0.1 * 2**0.5 * 1e6, rel=1e-12)  # 141,421 USD, reported apart
    # the ranking figure is the consumer loss; the net is beside it
    assert usa["expected_loss_usd"] == pytest.approx(0.1 * sigma * 1e6 + 0.1 * (1 - sigma) * 0.5e6, rel=1e-12)
    assert usa["net_loss_usd"] == pytest.approx(usa["expected_loss_usd"] - 0.1 * 2**0.5 * 1e6, rel=1e-12)
    assert usa["unrestricted_price_ratio"] == 1.0  # the restrictor exports everything: no home market
    assert 0 < usa["loss_share_of_output_at_risk"] <= 1


def test_rationing_at_the_choke_price_loses_output_and_a_price_cut_loses_the_triangle(atlas):
    # CHN 0.8 withheld, spare 0.25 x 0.2 = 0.05: supply 0.25, clearing price (1/0.25)^1 = 4 above the choke
    # p_hi = M = 2. At p = 2 producers make 0.25 x 2^0.5 = 0.35355, buyers want 2^-0.5 = 0.70711 and get 0.35355:
    # rationed at the choke 0.35355 (valued at M = 2), given up at the price 1 - 0.70711 = 0.29289 (valued at
    # ½(2 - 1) = 0.5). USA d = 0.1, V = 1e6 USD/yr, 12 months.
    sim = toy_sim(atlas, toy_node(s_r=0.8))
    usa = run(sim, [ban(withheld_share=1.0)], draws=2, seed=0).scenarios.set_index("perspective").loc["USA"]
    made, want = 0.25 * 2**0.5, 2**-0.5
    assert usa["peak_price_ratio_mean"] == pytest.approx(2.0, rel=1e-12)
    assert usa["input_cost_usd"] == pytest.approx(0.1 * 1.0 * made * 1e6, rel=1e-12)  # 35,355 USD
    assert usa["rationed_t"] == pytest.approx(0.1 * (want - made) * 1000.0, rel=1e-12)  # 35.355 t
    assert usa["shortfall_t"] == pytest.approx(0.1 * (1 - made) * 1000.0, rel=1e-12)  # 64.645 t
    assert usa["lost_output_usd"] == pytest.approx(0.1 * ((want - made) * 2.0 + (1 - want) * 0.5) * 1e6, rel=1e-12)  # 85,355
    assert usa["lost_output_io_usd"] == pytest.approx(0.1 * (1 - made) * 2.0 * 1e6, rel=1e-12)  # 129,289 USD
    # with price_cut_output_fraction 1 the ranked figure is the input-output one
    io = toy_sim(atlas, toy_node(s_r=0.8))
    io.settings = {**io.settings, "price_cut_output_fraction": 1.0}
    r1 = run(io, [ban(withheld_share=1.0)], draws=2, seed=0).scenarios.set_index("perspective").loc["USA"]
    assert r1["lost_output_usd"] == pytest.approx(usa["lost_output_io_usd"], rel=1e-12)


def test_a_tonne_rationed_below_the_top_of_the_demand_curve_is_worth_the_mean_use_above_the_cap(atlas):
    """Review 18, finding 3: the choke price is not a valuation line. Toy of the test above with M = 4 and the cap
    max_price_ratio = 2 (below M): the price stops at 2, the same 0.35355 are rationed and 0.29289 given up. On
    q(v) = v^-0.5 truncated at T = 4 (a mass 4^-0.5 = 0.5 of uses worth 4), the uses at or above 2 are worth on
    average [(4^0.5 - 2^0.5) + 4^0.5] / 2^-0.5 = 4√2 - 2 = 3.657 (not 4): by hand, ∫_2^4 v · 0.5 v^-1.5 dv =
    4^0.5 - 2^0.5 = 0.586, plus 4 x 0.5 = 2, over the 2^-0.5 = 0.707 of uses at or above 2."""
    from critmin.simulate.engine import rationed_value_share

    sim = toy_sim(atlas, toy_node(s_r=0.8), fixed={**FIXED, "downstream_value_multiple": 4.0, "max_price_ratio": 2.0})
    usa = run(sim, [ban(withheld_share=1.0)], draws=2, seed=0).scenarios.set_index("perspective").loc["USA"]
    made, want = 0.25 * 2**0.5, 2**-0.5
    assert usa["peak_price_ratio_mean"] == pytest.approx(2.0, rel=1e-12)
    assert usa["rationed_t"] == pytest.approx(0.1 * (want - made) * 1000.0, rel=1e-12)  # 35.355 t, as before
    mean_use = 4.0 * 2**0.5 - 2.0
    assert usa["lost_output_usd"] == pytest.approx(0.1 * ((want - made) * mean_use + (1 - want) * 0.5) * 1e6, rel=1e-12)
    # the input-output convention keeps every tonne not consumed at M
    assert usa["lost_output_io_usd"] == pytest.approx(0.1 * (1 - made) * 4.0 * 1e6, rel=1e-12)
    # the share: 1 at the top, at least c / T, rising with the cap; ε = -1 has its own closed form c (ln(T/c) + 1)
    caps = np.array([1.0, 2.0, 3.0, 3.99, 4.0, 6.0])
    r = rationed_value_share(caps, np.full(6, 4.0), np.full(6, -0.5))
    assert r[1] == pytest.approx(mean_use / 4.0, rel=1e-12) and r[4] == 1.0 and r[5] == 1.0
    assert np.all(np.diff(r) >= 0) and np.all(r >= np.minimum(caps, 4.0) / 4.0)
    assert rationed_value_share(np.array([2.0]), np.array([4.0]), np.array([-1.0]))[0] == pytest.approx(2.0 * (np.log(2.0) + 1.0) / 4.0)


def test_derived_demand_shrinks_the_response_with_the_cost_share_and_rations_at_the_choke(atlas):
    """Hicks-Marshall rule (docs/simulation.md §4.2): ε_i = κ_i ε, κ_i = κ_s + (1 - κ_s) min(1, M_ref / M_eff).

    Toy, M_eff = 2, with M_ref = 1 and κ_s = 0.5: κ = 0.75, ε = -0.375 (the long-run elasticity set equal to it).
    Supply 0.5 p^0.5 = p^-0.375 clears at p = 2^(8/7) = 2.21, above the choke p_hi = M = 2. At p = 2 producers make
    0.5 x 2^0.5 = 0.70711 and buyers want 2^-0.375 = 0.77111: rationed at the choke 0.06400 (valued at M = 2),
    given up at the price 0.22889 (½(2 - 1)). With M_ref = 10 (the bundled value) the same market clears at
    exactly 2 and rations nothing."""
    assert demand_scaled(np.array([-0.148]), np.array([715.0]), 0.15, 10.0)[0] == pytest.approx(
        -0.148 * (0.15 + 0.85 * 10.0 / 715.0), rel=1e-12)
    assert demand_scaled(np.array([-0.148]), np.array([9.9]), 0.15, 10.0)[0] == -0.148
    fixed = {**FIXED, "demand_substitution_share": 0.5, "elasticity_demand_long": -0.375}
    sim = toy_sim(atlas, fixed=fixed)
    assert run(sim, [ban(withheld_share=1.0)], draws=2, seed=0).scenarios.set_index("perspective").loc["USA", "rationed_t"] == 0.0
    sim.settings = {**sim.settings, "derived_demand_reference_multiple": 1.0}
    usa = run(sim, [ban(withheld_share=1.0)], draws=2, seed=0).scenarios.set_index("perspective").loc["USA"]
    made, want = 0.5 * 2**0.5, 2**-0.375
    assert usa["peak_price_ratio_mean"] == pytest.approx(2.0, rel=1e-12)
    assert usa["rationed_t"] == pytest.approx(0.1 * (want - made) * 1000.0, rel=1e-12)  # 6.400 t
    assert usa["lost_output_usd"] == pytest.approx(0.1 * ((want - made) * 2.0 + (1 - want) * 0.5) * 1e6, rel=1e-12)


def engine_matches_reference(simulator, sample: list[Scenario]):
    """Evaluate ``sample`` (16 draws, seed 9) with the engine and check draws 0, 7 and 15 of every scenario against
    the scalar reference; returns the batch, the draws and the engine's result."""
    b = compile_batch(sample, simulator.nodes, simulator.chain, simulator.params)
    nd = NodeDraws.sample(simulator.nodes, simulator.params, 16, 9)
    vec = evaluate_chunk(b, nd, simulator.settings, 9)
    for i, s in enumerate(sample):
        for d in (0, 7, 15):
            ref = scalar_losses(s, simulator.nodes, simulator.chain, simulator.params, simulator.settings, 9, 16, d)
            assert np.allclose(vec.loss_rel[i, :, d], ref, rtol=1e-9, atol=1e-15), s.id
    return b, nd, vec


def test_derived_demand_engine_equals_scalar_reference(simulator):
    """The derived-demand rule in the engine and in the scalar reference, on the nodes whose output multiple exceeds
    M_ref (gallium 715, cobalt and graphite through their chains) and one below it; switched off (κ_s = 1) it
    leaves every node at the calibrated elasticity."""
    sample = [
        Scenario(id="ga", commodity="gallium", stage="refine", restrictors=["CHN"], duration_months=12),
        Scenario(id="ga.licence", commodity="gallium", stage="refine", restrictors=["CHN"], regime="licence", duration_months=8),
        Scenario(id="co", commodity="cobalt", stage="mine", restrictors=["COD"], duration_months=6),
        Scenario(id="gr", commodity="graphite", stage="refine", restrictors=["CHN"], duration_months=9),
        Scenario(id="sb", commodity="antimony", stage="mine", restrictors=["CHN"], duration_months=5),
        # restraint raises the value of the uses still wanted at the cap (rationed_value_share's floor)
        Scenario(id="ga.restrained", commodity="gallium", stage="refine", restrictors=["CHN"], duration_months=12,
                 response=Response(demand_restraint=0.3)),
    ]
    b, nd, vec = engine_matches_reference(simulator, sample)
    # the checked draws ration at a choke price below the top of the demand curve (gallium: cap 10, top ~715), so the
    # value of a rationed tonne (rationed_value_share) is compared too
    assert (vec.rationed_t[0][:, [0, 7, 15]] > 0).all() and (vec.rationed_t[5][:, [0, 7, 15]] > 0).any()
    off = dataclasses.replace(nd, values={**nd.values, "demand_substitution_share": np.ones_like(nd.values["demand_substitution_share"])})
    base = evaluate_chunk(b, off, simulator.settings, 9)
    assert not np.allclose(vec.loss_rel[0], base.loss_rel[0])
    assert np.array_equal(vec.loss_rel[4], base.loss_rel[4])  # antimony: M_eff 3 < M_ref


def test_a_tonne_supplied_is_worth_its_premium_and_the_price_fall_it_brings(atlas):
    # the toy ban with M = 4 (choke 4 above the clearing price 2): buyers give up 1 - σ = 1 - 2^-0.5 of d_T at p = 2.
    # Each tonne short, supplied, is worth its premium (p - 1) P0 = 1,000 USD/t plus the fall of the price it brings
    # on the USA's purchases: P0 d_j σ p / (supplied (ε_s - ε)) = 1000 x 0.1 x 2^-0.5 x 2 / (0.5 x 2^0.5 x 1) = 200 USD/t
    # (supplied = S p^ε_s with S = 0.5). Over 12 months USA is short 0.1 (1 - σ) 1000 = 29.289 t.
    sim = toy_sim(atlas, fixed={**FIXED, "downstream_value_multiple": 4.0})
    sc = ban(withheld_share=1.0)
    b = compile_batch([sc], sim.nodes, sim.chain, sim.params)
    r = evaluate_chunk(b, NodeDraws.sample(sim.nodes, sim.params, 2, 0), sim.settings, 0)
    short = 0.1 * (1 - 2**-0.5) * 1000.0
    assert r.shortfall_t[0, 0] == pytest.approx([short, short], rel=1e-12)
    assert r.supply_value[0, 0] == pytest.approx([short * 1200.0] * 2, rel=1e-12)  # 35,147 USD
    # the ranked lost output keeps the triangle: 0.5 x 1000 USD/t
    assert r.lost_output[0, 0] == pytest.approx([short * 500.0] * 2, rel=1e-12)


def test_the_value_of_supply_is_bounded_by_what_the_shortfall_costs(simulator):
    # supply value = lost output + the triangle again (premium p - 1 instead of ½(p - 1)) + the price effect capped at
    # the input cost, so it never exceeds input cost + 2 x lost output; library scenarios, every participant and draw
    lib = [s for s in simulator.library() if f"{s.commodity}/{s.stage}" in simulator.nodes.index][:300]
    b = compile_batch(lib, simulator.nodes, simulator.chain, simulator.params)
    r = evaluate_chunk(b, NodeDraws.sample(simulator.nodes, simulator.params, 30, 4), simulator.settings, 4)
    sv, ic, lo = (np.nan_to_num(x) for x in (r.supply_value, r.input_cost, r.lost_output))
    assert np.all(sv >= lo - 1e-6)
    assert np.all(sv <= np.maximum(ic, 0.0) + 2.0 * lo + 1e-6 * (1.0 + np.abs(sv)))
    assert (sv > lo + 1.0).any()  # the premium and the price effect count somewhere


def test_commercial_stocks_buffer_the_first_month(atlas):
    # I0 = 1.2/12 x d_T = 0.1; gap X = 1 - 0.5 = 0.5; cover = 0.1/(0.1 + 1.2/12) = 0.5; A = 0 - 0.25
    # p1 = ((1 - 0.25)/0.5)^(1/(0.5 + 0.5)) = 1.5 < 2 (the closed form without stocks)
    sim = toy_sim(atlas, fixed={**FIXED, "inventory_months": 1.2})
    res = run(sim, [ban(id="one", duration_months=1), ban(id="long", duration_months=24)], draws=2, seed=0, keep_paths=True)
    one = res.scenarios[(res.scenarios["scenario"] == "one") & (res.scenarios["perspective"] == "USA")].iloc[0]
    assert one["peak_price_ratio_mean"] == pytest.approx(1.5, rel=1e-12)
    sigma = 1.5**-0.5
    assert one["input_cost_usd"] == pytest.approx(0.5 * sigma * 0.1 * 1e6 / 12, rel=1e-12)  # 3,402 USD
    # a price cut at p = 1.5: the triangle ½ x 0.5 per unit (the input-output convention: M = 2, 3,059 USD)
    assert one["lost_output_usd"] == pytest.approx((1 - sigma) * 0.1 * 0.25 * 1e6 / 12, rel=1e-12)  # 382 USD
    assert one["lost_output_io_usd"] == pytest.approx((1 - sigma) * 0.1 * 2.0 * 1e6 / 12, rel=1e-12)  # 3,059 USD
    # the stocks run down: prices rise month after month toward the flow equilibrium (2)
    p = res.paths[res.paths["scenario"] == "long"]["price_t_p50"].to_numpy()
    assert np.all(np.diff(p) >= -1e-12) and p[0] == pytest.approx(1.5) and p[-1] == pytest.approx(2.0, rel=0.02)


def test_hoarding_raises_the_price_although_spare_capacity_fills_the_gap(atlas):
    # s_R = 0.05 withheld, spare 0.25 x 0.95 at once: no physical gap. Hoarding χ = 1.2 months at a full shock
    # raises the stock target to 0.1 + 1.2 x 0.05 / 12 = 0.105: A = 0.5·12·0.005 = 0.03, so p1 = 1.03; then the
    # target is approached and p falls back
    sim = toy_sim(atlas, toy_node(s_r=0.05), {**FIXED, "inventory_months": 1.2, "hoarding_targeted": 1.2})
    res = run(sim, [ban(duration_months=6)], draws=2, seed=0, keep_paths=True)
    p = res.paths["price_t_p50"].to_numpy()
    assert p[0] == pytest.approx(1.03, rel=1e-12)
    # month 2: stock 0.1 + 0.03 x 1.03^-0.5 / 12; A = 6 x (0.105 - stock)
    s2 = 0.1 + 0.03 * 1.03**-0.5 / 12
    assert p[1] == pytest.approx(1.0 + 6 * (0.105 - s2), rel=1e-12)
    assert p[-1] < p[0]


def test_stocks_held_in_the_restricting_country_do_not_buffer_its_targets(atlas):
    # the toy ban (CHN 0.6, exports everything, spare 0.1 at once): p1 = 1/0.5 = 2 without stocks. A stock of 1.2
    # months of world use located in a targeted country (AUS) buffers T like working stock: I0 = 0.1, cover =
    # 0.1/(0.1 + 1.2/12) = 0.5, A = -0.25, p1 = 0.75/0.5 = 1.5. Located in the restrictor (CHN), it sits in the
    # restrictor's market and T pays 2.
    for holder, want in (("CHN", 2.0), ("AUS", 1.5)):
        node = dataclasses.replace(toy_node(), located_stocks={holder: (1.2, 1.2, 1.2)})
        r = run(toy_sim(atlas, node), [ban(duration_months=1)], draws=2, seed=0).scenarios.set_index("perspective").loc["USA"]
        assert r["peak_price_ratio_mean"] == pytest.approx(want, rel=1e-12), holder
    # a stock stated by the scenario (months of the targeted buyers' consumption) replaces the parameters
    r = run(toy_sim(atlas), [ban(duration_months=1, stock_months=1.2)], draws=2, seed=0).scenarios.set_index("perspective").loc["USA"]
    assert r["peak_price_ratio_mean"] == pytest.approx(1.5, rel=1e-12)


def test_holders_build_a_precautionary_stock_only_up_to_their_target(atlas):
    # CHN 0.3 withheld, spare 0.25 x 0.7 = 0.175 at once: supply 0.875, gap X = 0.125, shock g = 0.3. Normal stock
    # 1.2 months (0.1 of Q0), hoarding 1.2 months at a full shock: target 0.1 + 1.2 x 0.3 / 12 = 0.13.
    # Holding the normal stock they buy 0.03: A = 0.5 x 12 x 0.03 - 0.5 x 0.125 = 0.1175, p1 = 1.1175/0.875.
    # Holding 2.4 months (0.2 > 0.13) they buy nothing and cover 2/3 of the gap: A = -1/12, p1 = (11/12)/0.875.
    sim = toy_sim(atlas, toy_node(s_r=0.3), {**FIXED, "inventory_months": 1.2, "hoarding_targeted": 1.2})
    for months, want in ((None, 1.1175 / 0.875), (1.2, 1.1175 / 0.875), (2.4, (11 / 12) / 0.875)):
        r = run(sim, [ban(duration_months=1, stock_months=months)], draws=2, seed=0).scenarios.set_index("perspective").loc["USA"]
        assert r["peak_price_ratio_mean"] == pytest.approx(want, rel=1e-12), months


def test_a_response_draws_the_same_disruption_as_its_base(simulator):
    # common random numbers: the withheld share of a licence (a range) is drawn from a stream keyed without the
    # response, so a release can only lower the price and the shortfall draw by draw
    base = Scenario(id="b", commodity="cobalt", stage="mine", restrictors=["COD"], regime="quota", withheld_share=0.5,
                    withheld_low=0.4, withheld_high=0.6)
    stocked = base.model_copy(update={"id": "s", "response": Response(stockpile=StockpileRelease(holdings_t=4000, max_release_t_per_month=300))})
    b = compile_batch([base, stocked], simulator.nodes, simulator.chain, simulator.params)
    assert b.rkey[0] == b.rkey[1] and b.path[0] != b.path[1]
    r = evaluate_chunk(b, NodeDraws.sample(simulator.nodes, simulator.params, 20, 3), simulator.settings, 3)
    assert np.all(r.peak_price[1] <= r.peak_price[0] + 1e-12)
    assert np.all(r.shortfall_t[1] <= r.shortfall_t[0] + 1e-9)


def test_withheld_share_stated_by_month_and_front_loading(atlas):
    # the toy ban (CHN 0.6 exports everything, spare 0.1 at once, no stocks). Month 1 withholds half: lost 0.3,
    # supply 1 - 0.3 + 0.1 = 0.8, p1 = 1/0.8 = 1.25; month 2 on takes the ban's share 1: p = 1/0.5 = 2
    sim = toy_sim(atlas)
    res = run(sim, [ban(duration_months=3, withheld_by_month=[0.5])], draws=2, seed=0, keep_paths=True)
    p = res.paths[res.paths["scenario"] == "t"]["price_t_p50"].to_numpy()
    assert p == pytest.approx([1.25, 2.0, 2.0], rel=1e-12)
    # a stated share equal to the drawn one changes nothing
    a = run(sim, [ban(duration_months=4, withheld_by_month=[1.0, 1.0])], draws=2, seed=0).scenarios
    b = run(sim, [ban(duration_months=4)], draws=2, seed=0).scenarios
    assert a["expected_loss_usd"].to_numpy() == pytest.approx(b["expected_loss_usd"].to_numpy(), rel=1e-12)
    # front-loading 0.2 of a year's exports (0.6): the buyers start with 0.12 of Q0, cover = 0.12/(0.12 + 0.1) = 6/11
    # of the gap 0.5, A = -3/11, p1 = (1 - 3/11)/0.5 = 16/11
    r = run(sim, [ban(duration_months=1, front_loaded_share=0.2)], draws=2, seed=0).scenarios.set_index("perspective").loc["USA"]
    assert r["peak_price_ratio_mean"] == pytest.approx(16 / 11, rel=1e-12)
    with pytest.raises(ValueError, match=r"withheld_by_month must lie in \[0, 1\]; months \[2\]"):
        ban(withheld_by_month=[0.5, 1.5])


def test_stated_stock_range_is_checked():
    with pytest.raises(ValueError, match="stock_months_low/stock_months_high need stock_months"):
        ban(stock_months_low=1.0)
    with pytest.raises(ValueError, match="stock_months_low <= stock_months"):
        ban(stock_months=1.0, stock_months_low=2.0)


def test_located_stock_file_errors_name_the_line(tmp_path: Path):
    from critmin.errors import CritminError
    from critmin.simulate.run import read_table

    f = tmp_path / "located_stocks.csv"
    f.write_text("commodity_id,holder_iso3,months,low,high,source\ngallium,CHN,2,0,4,x\ntungsten,CHN,5,0,4,x\n", encoding="utf-8")
    with pytest.raises(CritminError, match="line 3, field 'months'"):
        read_table("located_stocks.csv", f)


def test_an_oversupplied_market_can_fall(atlas):
    # market surplus 0.2 and nothing withheld: p = (1/1.2)^(1/(0.5 + 0.5)) = 0.8333
    sim = toy_sim(atlas)
    r = run(sim, [ban(withheld_share=0.0, market_surplus=0.2)], draws=2, seed=0, keep_paths=True)
    assert r.paths["price_t_p50"].iloc[0] == pytest.approx(1 / 1.2, rel=1e-12)
    usa = r.scenarios.set_index("perspective").loc["USA"]
    assert usa["expected_loss_usd"] < 0 and usa["shortfall_t"] == 0  # buyers save; nobody goes short


def test_restrictor_market_moves_with_transmission(atlas):
    # export share 0.5: home 0.3, d_T = 0.7, lost 0.3, spare 0.1: p_T = 0.7/0.5 = 1.4; home: d_U 0.3, s_U 0.6: 0.5
    # transmission ψ: p_U = 1.4^ψ 0.5^(1-ψ)
    for psi, want in ((0.0, 0.5), (0.5, (1.4 * 0.5) ** 0.5), (1.0, 1.4)):
        sim = toy_sim(atlas, fixed={**FIXED, "restrictor_export_share": 0.5, "price_transmission": psi})
        r = run(sim, [ban(duration_months=1)], draws=2, seed=0).scenarios.set_index("perspective").loc["USA"]
        assert r["peak_price_ratio_mean"] == pytest.approx(1.4, rel=1e-12)
        assert r["unrestricted_price_ratio"] == pytest.approx(want, rel=1e-12)


def test_price_units():
    assert price_to_usd_per_t(1.0, "USD/kg") == 1000.0
    assert price_to_usd_per_t(100.0, "US cents/lb") == pytest.approx(2204.62262, rel=1e-9)
    assert price_to_usd_per_t(1.0, "USD/troy oz") == pytest.approx(32150.7466, rel=1e-9)
    assert price_to_usd_per_t(1.0, "carats") is None


def test_weighted_tail_golden():
    # atoms 0 (p 0.9), 10 (p 0.06), 100 (p 0.04): mean 4.6; VaR95 = 10; CVaR95 = (0.01 x 10 + 0.04 x 100)/0.05 = 82
    mean, var, cvar = weighted_tail(np.array([0.0, 10.0, 100.0]), np.array([0.9, 0.06, 0.04]))
    assert (mean, var, cvar) == pytest.approx((4.6, 10.0, 82.0))


# ------------------------------------------------------------------ invariants --------------------------------------

BUFFERED = {**FIXED, "inventory_months": 1.5, "hoarding_targeted": 0.5, "hoarding_restrictor": 0.5, "restrictor_export_share": 0.6,
            "price_transmission": 0.3, "elasticity_demand_long": -0.9, "ramp_months": 6.0}


@settings(max_examples=40, deadline=None)
@given(s_r=st.floats(0.05, 0.85), w1=st.floats(0.0, 1.0), w2=st.floats(0.0, 1.0), target=st.sampled_from(["WORLD", "USA", "JPN", "BLOC"]),
       buffered=st.booleans())
def test_larger_disruption_never_lowers_price_or_shortfall(atlas, s_r, w1, w2, target, buffered):
    lo, hi = sorted((w1, w2))
    fixed = BUFFERED if buffered else {**FIXED, "spare_capacity": 0.02}
    sim = toy_sim(atlas, toy_node(s_r=s_r, usa=0.05), fixed)
    res = run(sim, [ban(id="a", withheld_share=lo, targets=[target]), ban(id="b", withheld_share=hi, targets=[target])], draws=3, seed=2).scenarios
    a, b = res[res["scenario"] == "a"].set_index("perspective"), res[res["scenario"] == "b"].set_index("perspective")
    assert (b["peak_price_ratio_mean"] >= a["peak_price_ratio_mean"] - 1e-12).all()
    assert (b["shortfall_t"] >= a["shortfall_t"] - 1e-9).all()


@settings(max_examples=30, deadline=None)
@given(h1=st.floats(0.0, 500.0), h2=st.floats(0.0, 500.0), rate=st.floats(1.0, 100.0))
def test_more_stock_never_raises_shortfall(atlas, h1, h2, rate):
    lo, hi = sorted((h1, h2))
    sim = toy_sim(atlas, fixed=BUFFERED)

    def sc(i: str, h: float) -> Scenario:
        return ban(id=i, response=Response(stockpile=StockpileRelease(holdings_t=h, max_release_t_per_month=rate)))
    res = run(sim, [sc("a", lo), sc("b", hi)], draws=2, seed=0).scenarios.set_index(["scenario", "perspective"])
    for per in ("USA", "JPN", "BLOC"):
        # a strategic release lowers the price while it lasts; commercial holders then sell more at the lower
        # price and the peak can come later and very slightly higher, but buyers never end up worse off
        assert res.loc[("b", per), "shortfall_t"] <= res.loc[("a", per), "shortfall_t"] + 1e-9
        assert res.loc[("b", per), "expected_loss_usd"] <= res.loc[("a", per), "expected_loss_usd"] + 1e-6


def test_no_disruption_no_loss(simulator):
    lib = [s for s in simulator.library() if s.family != "event"][::97]
    nothing = [s.model_copy(update={"withheld_share": 0.0, "id": s.id + ".zero"}) for s in lib]
    res = run(simulator, nothing, draws=20, seed=3).scenarios
    assert np.nanmax(np.abs(res["expected_loss_usd"].to_numpy())) == 0.0
    assert (res["shortfall_t"].fillna(0) == 0).all()
    assert (res["peak_price_ratio_mean"] == 1.0).all()


def test_consumers_never_gain_from_a_ban_on_their_inputs_and_loss_is_bounded(simulator):
    """A participant among the targets of a ban never shows a consumer gain, and its loss never exceeds the
    value of its output that uses the node over the disruption (docs/simulation.md §7)."""
    lib = [s for s in simulator.library() if s.family != "event" and s.targets == ["WORLD"]][::23]
    res = run(simulator, lib, draws=30, seed=5).scenarios
    own = res.apply(lambda r: r["perspective"] in r["restrictors"].split(";") or (r["perspective"] == "BLOC" and bool(set(r["restrictors"].split(";")) & {"USA", "JPN"})), axis=1)
    valued = res[res["expected_loss_usd"].notna() & ~own]
    assert (valued["expected_loss_usd"] >= -1e-6).all()
    assert (valued["loss_share_of_output_at_risk"] <= 1.0 + 1e-9).all()
    assert ((valued["probability_of_shortfall"] >= 0) & (valued["probability_of_shortfall"] <= 1)).all()


def test_tonnes_conserved_down_the_chain(simulator):
    res = run(simulator, [s for s in simulator.library() if s.id.startswith("gen.CHN.ndpr.refine.WORLD.12m")], draws=20, seed=0).scenarios
    row = res[res["perspective"] == "JPN"].iloc[0]
    down = row["downstream_shortfall_t"]
    assert "ndfeb_magnets/magnet" in down
    u = simulator.nodes.index["ndpr/refine"]
    embodied = sum(c * down[simulator.nodes.nodes[v].key] for v, _, c in simulator.chain.links[u])
    share = sum(a for _, a, _ in simulator.chain.links[u])
    assert embodied == pytest.approx(share * row["shortfall_t"], rel=1e-9, abs=1e-5)  # products rounded to 1e-6 t
    assert embodied <= row["shortfall_t"] + 1e-9


def test_targeted_ban_reroutes_when_others_can_supply(atlas):
    # USA buys 0.1 of world output; non-restrictors produce 0.4: a ban on the USA alone just reroutes trade
    r = run(toy_sim(atlas, fixed=BUFFERED), [ban(targets=["USA"])], draws=2, seed=0).scenarios.set_index("perspective")
    assert (r["peak_price_ratio_mean"] == 1.0).all()
    assert np.allclose(r["expected_loss_usd"], 0.0)


def test_durations_share_one_path(simulator):
    """The 3-, 6-, 12- and 24-month scenarios of a generated family are the first months of one path."""
    fam = [s for s in simulator.library() if s.family == "gen.CHN.gallium.refine" and s.targets == ["WORLD"]]
    res = run(simulator, fam, draws=16, seed=4, keep_paths=True)
    bands = res.paths.pivot_table(index="month", columns="scenario", values="price_t_p50")
    long = next(s.id for s in fam if s.duration_months == 24)
    for s in fam:
        got = bands[s.id].dropna().to_numpy()
        assert np.array_equal(got, bands[long].to_numpy()[: s.duration_months])


# ------------------------------------------------------------------ reproducibility and reference ------------------


def test_same_seed_same_results_any_chunking(simulator):
    lib = [s for s in simulator.library() if s.family != "event"][::41]
    probs = [simulator.probability.scenario_probability(s, s.commodity) for s in lib]
    a = run(simulator, lib, draws=64, seed=11, probabilities=probs, threads=1)
    b = run(simulator, lib, draws=64, seed=11, probabilities=probs, threads=2, chunk_elements=500)
    c = run(simulator, lib, draws=64, seed=12, probabilities=probs, threads=1)
    cols = ["expected_loss_usd", "var95_usd", "shortfall_t", "peak_price_ratio_p95"]
    assert a.scenarios[cols].equals(b.scenarios[cols])
    assert set(a.totals) == set(b.totals) and all(np.array_equal(a.totals[k], b.totals[k]) for k in a.totals)
    assert not a.scenarios[cols].equals(c.scenarios[cols])
    assert a.metadata["seed"] == 11 and a.metadata["data_version"] == simulator.atlas.data_version


def test_vectorised_equals_scalar_reference(simulator):
    """The scalar reference recomputes each scenario and draw from its definitions (scenario, node table,
    parameter table), with root finding, so it also checks the compilation into arrays."""
    lib = simulator.library()
    rng = np.random.default_rng(5)
    sample = [lib[i] for i in rng.choice(len(lib), 60, replace=False)]
    sample += [
        Scenario(id="stock", commodity="cobalt", stage="refine", restrictors=["CHN"], duration_months=9,
                 response=Response(stockpile=StockpileRelease(holdings_t=4000, max_release_t_per_month=500, price_cap=1.3), demand_restraint=0.1)),
        Scenario(id="licence", commodity="graphite", stage="refine", restrictors=["CHN"], regime="licence", targets=["BLOC"]),
        Scenario(id="restraint", commodity="antimony", stage="mine", restrictors=["CHN"], duration_months=5,
                 response=Response(demand_restraint=0.5)),
        Scenario(id="glut", commodity="antimony", stage="mine", restrictors=["CHN"], duration_months=7, market_surplus=0.3, withheld_share=0.1),
        Scenario(id="named", commodity="terbium", stage="mine", restrictors=["MMR"], targets=["CHN"], duration_months=4),
        # stocks located in the restrictor (Fanya's in China) and a stock stated by the scenario
        Scenario(id="located", commodity="tungsten", stage="mine", restrictors=["CHN"], regime="licence", duration_months=6),
        Scenario(id="located.third", commodity="gallium", stage="refine", restrictors=["RUS"], duration_months=6),
        Scenario(id="stated", commodity="bismuth", stage="refine", restrictors=["CHN"], duration_months=6,
                 stock_months=2.0, stock_months_low=1.0, stock_months_high=6.0),
        # a withheld share stated month by month (a recorded export series), with front-loading and a scope range
        Scenario(id="monthly", commodity="gallium", stage="refine", restrictors=["CHN"], regime="licence", duration_months=8,
                 withheld_by_month=[1.0, 0.9, 0.4], front_loaded_share=0.15, scope_low=0.6, scope_high=0.9),
        Scenario(id="monthly.named", commodity="antimony", stage="mine", restrictors=["CHN"], targets=["USA"], duration_months=5,
                 withheld_by_month=[1.0, 1.0, 0.0, 1.0], withheld_share=0.5, withheld_low=0.2, withheld_high=0.8),
    ]
    engine_matches_reference(simulator, sample)


def test_dask_local_cluster_equals_single_process(simulator):
    distributed = pytest.importorskip("distributed")
    lib = [s for s in simulator.library() if s.family != "event"][::211]
    probs = [simulator.probability.scenario_probability(s, s.commodity) for s in lib]
    single = run(simulator, lib, draws=32, seed=4, probabilities=probs)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        dist = run(simulator, lib, draws=32, seed=4, probabilities=probs, client=client, chunk_elements=256)
    cols = ["expected_loss_usd", "cvar95_usd", "shortfall_t", "peak_price_ratio_p50"]
    assert single.scenarios[cols].equals(dist.scenarios[cols])
    assert all(np.array_equal(single.totals[k], dist.totals[k]) for k in single.totals)


# ------------------------------------------------------------------ library, probability, validation --------------


def test_library_contents(simulator):
    lib = simulator.library()
    ev = [s for s in lib if s.family == "event"]
    gen = [s for s in lib if s.family != "event"]
    assert {"E010", "E014", "E017", "E019"} <= {s.event_id for s in ev}
    ga = next(s for s in ev if s.id == "ev.E010.gallium.refine")
    assert ga.status == "in_force" and ga.source_ids == ["event_E010"]
    assert all(s.restrictors[0] not in ("USA", "JPN") or s.targets == ["WORLD"] or s.targets[0] not in (s.restrictors[0], "BLOC") for s in gen)
    assert {s.duration_months for s in gen} == {3, 6, 12, 24}
    assert len(gen) * 1000 > 10_000_000  # the benchmark sweep exceeds ten million evaluations


def test_probability_model(simulator):
    pm = simulator.probability
    assert 0 < pm.base_rate < 0.05
    assert pm.country_rate["CHN"] > pm.base_rate  # China's record lifts its rate above the prior
    assert sum(pm.duration_weights.values()) == pytest.approx(1.0)
    ga = next(s for s in simulator.library() if s.id == "ev.E010.gallium.refine")
    assert pm.scenario_probability(ga, "gallium") == 1.0


def test_scenario_file_errors_name_the_field(tmp_path: Path):
    f = tmp_path / "bad.yaml"
    f.write_text("id: x\ncommodity: gallium\nstage: refine\nrestrictors: [CHN]\nwithheld_share: 1.7\nduration_months: 0\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario_file(f)
    msg = str(e.value)
    assert "bad.yaml" in msg and "withheld_share" in msg and "duration_months" in msg
    g = tmp_path / "self.json"
    g.write_text(json.dumps({"id": "y", "commodity": "gallium", "stage": "refine", "restrictors": ["USA"], "targets": ["USA"]}))
    with pytest.raises(ScenarioError, match="cannot target itself"):
        load_scenario_file(g)
    h = tmp_path / "typo.yaml"
    h.write_text("id: z\ncommodity: gallium\nstage: refine\nrestrictor: [CHN]\n")
    with pytest.raises(ScenarioError, match="restrictor"):
        load_scenario_file(h)


def test_parameter_override_errors(tmp_path: Path):
    f = tmp_path / "p.csv"
    f.write_text("name,scope,value,low,high,distribution\nelasticity_demand,*,0.4,,,fixed\n")
    with pytest.raises(ParameterError, match=r"p.csv, line 2, field 'value'"):
        Parameters.load(f)
    with pytest.raises(ParameterError, match="unknown parameter"):
        Parameters.load(fixed={"elasticity": 1.0})


def test_chain_factor_formula(simulator):
    f = chain_factors(simulator.nodes, [{"from_commodity": "rare_earths", "from_stage": "refine", "to_commodity": "ndfeb_magnets",
                                          "to_stage": "magnet", "use_share": 0.5, "input_t_per_t": 0.25}])
    u, v = simulator.nodes.get("rare_earths", "refine"), simulator.nodes.get("ndfeb_magnets", "magnet")
    i = simulator.nodes.index["rare_earths/refine"]
    assert f.factor[i] == pytest.approx(0.5 + 0.5 * v.p0_usd_per_t / (0.25 * u.p0_usd_per_t))
    # with the magnet makers' value added share (0.4), the magnets not made cost 0.4 of their value
    g = chain_factors(simulator.nodes, [{"from_commodity": "rare_earths", "from_stage": "refine", "to_commodity": "ndfeb_magnets",
                                          "to_stage": "magnet", "use_share": 0.5, "input_t_per_t": 0.25}],
                      value_added={"ndfeb_magnets/magnet": 0.4})
    assert g.factor[i] == pytest.approx(0.5 + 0.5 * v.p0_usd_per_t / (0.25 * u.p0_usd_per_t) * 0.4)
    assert g.unlinked[i] == pytest.approx(0.5)


def test_bundled_chain_values_products_at_value_added(simulator):
    # graphite/refine: 1 t makes 1 t of anode (va 0.5462), 0.2 t of which makes 1 t of cells (va 0.3536):
    # B = (P_anode / P_graphite) (0.5462 + (1 / 0.2)(P_cell / P_anode) 0.3536) by hand from the node prices
    n = {k: simulator.nodes.get(*k.split("/")).p0_usd_per_t for k in ("graphite/refine", "battery_anode/anode", "battery_cells/cell")}
    i = simulator.nodes.index["graphite/refine"]
    want = n["battery_anode/anode"] / n["graphite/refine"] * (0.5462 + 5.0 * n["battery_cells/cell"] / n["battery_anode/anode"] * 0.3536)
    assert simulator.chain.linked_value[i] == pytest.approx(want, rel=1e-9)


# ------------------------------------------------------------------ review fixes -----------------------------------


def test_restraint_never_exceeds_the_gap(atlas):
    # world ban of a 12 % producer, no spare: gap 0.12 of world demand; restraint 0.5 only sheds the gap
    sim = toy_sim(atlas, toy_node(s_r=0.12, usa=0.0), {**FIXED, "spare_capacity": 0.0})
    res = run(sim, [ban(id="r0"), ban(id="r50", response=Response(demand_restraint=0.5))], draws=2, seed=0).scenarios
    r50 = res[(res["scenario"] == "r50") & (res["perspective"] == "USA")].iloc[0]
    assert r50["peak_price_ratio_mean"] == 1.0
    assert r50["shortfall_t"] == pytest.approx(0.1 * 0.12 * 1000.0)  # USA's share of the gap, 12 t
    # the 12 % restrained are the lowest-valued uses: on the demand curve the last is worth p_x = 0.88^(1/-0.5) =
    # 1.2910 of the old price, so the buyers' surplus lost is ½ (p_x - 1) x 0.12 of USA's 0.1 of P0 Q0 (the
    # input-output convention, φ_r M = 0.3 x 2 per tonne, is beside it)
    p_x = 0.88**-2
    assert r50["expected_loss_usd"] == pytest.approx(0.5 * (p_x - 1.0) * 0.1 * 0.12 * 1e6)  # 1,746 USD
    assert r50["lost_output_io_usd"] == pytest.approx(0.3 * 0.1 * 0.12 * 2.0 * 1e6)  # φ x restrained x M x P0 Q0
    r0 = res[(res["scenario"] == "r0") & (res["perspective"] == "USA")].iloc[0]
    assert r50["expected_loss_usd"] < r0["expected_loss_usd"]


def test_participant_demand_never_exceeds_the_targeted_segment(atlas):
    # USA + JPN demand 0.95 of world output but the WORLD segment is 1 - 0.5 x 0.6 = 0.7 (export share 0.5)
    node = toy_node()
    node.demand_share = {"USA": 0.6, "JPN": 0.35}
    sim = toy_sim(atlas, node, {**FIXED, "restrictor_export_share": 0.5, "spare_capacity": 0.0})
    r = run(sim, [ban()], draws=2, seed=0).scenarios.set_index("perspective")
    # physical gap: exports 0.3 withheld, over 12 months, on Q0 = 1000 t
    assert r.loc["BLOC", "shortfall_t"] <= 0.3 * 1000.0 + 1e-9


def test_no_nan_or_warning_at_zero_supply_and_extreme_parameters(atlas):
    sim = toy_sim(atlas, toy_node(s_r=1.0, usa=0.0), {**BUFFERED, "spare_capacity": 0.0, "elasticity_supply": 0.0, "elasticity_demand": -1e-6,
                                                       "elasticity_demand_long": -1e-6})
    res = run(sim, [ban(id="s", response=Response(stockpile=StockpileRelease(holdings_t=50, max_release_t_per_month=5))), ban(id="n"),
                    ban(id="g", targets=["GBR"])], draws=2, seed=0).scenarios
    assert np.isfinite(res[["expected_loss_usd", "shortfall_t", "peak_price_ratio_mean", "unrestricted_price_ratio"]].to_numpy()).all()
    assert (res["unrestricted_price_ratio"] >= 1 / 10 - 1e-12).all()


def test_parameter_rows_override_like_a_file(tmp_path: Path) -> None:
    """Parameters.with_rows (the web runs' overrides) gives the same table as the same rows in an override file."""
    import pandas as pd

    rows = pd.DataFrame([{"name": "leakage", "scope": "*", "value": "0.4"},
                         {"name": "elasticity_demand", "scope": "commodity:gallium", "value": "-0.3", "low": "-0.5", "high": "-0.1",
                          "distribution": "triangular"}])
    f = tmp_path / "o.csv"
    rows.to_csv(f, index=False)
    by_rows, by_file = Parameters.load().with_rows(rows, "rows"), Parameters.load(f)
    key = ["name", "scope"]
    assert by_rows.table.sort_values(key).reset_index(drop=True).equals(by_file.table.sort_values(key).reset_index(drop=True))
    assert by_rows.origin == "bundled + rows" and by_rows.resolve("leakage").value == 0.4
    assert by_rows.resolve("elasticity_demand", "gallium", "refine").distribution == "triangular"
    with pytest.raises(ParameterError, match=r"rows, line 1, field 'value'"):  # rows counted from 0
        Parameters.load().with_rows(pd.DataFrame([{"name": "leakage", "scope": "*", "value": "0.1"}, {"name": "leakage", "scope": "*", "value": "x"}]), "rows")


def test_parameter_file_problems(tmp_path: Path, atlas):
    f = tmp_path / "p.csv"
    f.write_text("name,scope,value,kind\nelasticity_demand,*,,computed\nleakage,*,0.2,assumption\nleakage,*,0.3,assumption\n")
    with pytest.raises(ParameterError) as e:
        Parameters.load(f)
    assert "line 2, field 'value'" in str(e.value) and "duplicate row for (leakage, *), first on line 3" in str(e.value)
    g = tmp_path / "q.csv"
    g.write_text("name,scope,value\nleakage,commodity:galium,0.2\n")
    with pytest.raises(ParameterError, match="unknown commodity 'galium'"):
        Simulator.build(atlas, Parameters.load(g))
    with pytest.raises(ParameterError, match="not a file"):
        Parameters.load(tmp_path)


def test_magnet_ban_is_valued(simulator):
    res = run(simulator, [s for s in simulator.library() if s.id == "ev.E019.ndfeb_magnets.magnet"], draws=20, seed=0).scenarios
    bloc = res[res["perspective"] == "BLOC"].iloc[0]
    assert bloc["expected_loss_usd"] > 0 and bloc["shortfall_t"] > 0


def test_concurrent_runs_on_one_simulator_equal_sequential_ones(simulator) -> None:
    """The web workspace may run jobs in several threads on one Simulator (`critmin serve --workers`): runs
    in parallel give exactly the results of the same runs one after the other (no shared mutable state)."""
    from concurrent.futures import ThreadPoolExecutor

    from critmin.simulate.library import find_scenario

    scen = [find_scenario(simulator.library(), "ev.E001.rare_earths.refine")]
    sequential = [run(simulator, scen, draws=200, seed=k).scenarios for k in (1, 2, 1)]
    with ThreadPoolExecutor(3) as ex:
        parallel = [f.result().scenarios for f in [ex.submit(run, simulator, scen, draws=200, seed=k) for k in (1, 2, 1)]]
    for a, b in zip(sequential, parallel, strict=True):
        assert a.equals(b)
    assert not sequential[0].equals(sequential[1])  # the seeds differ: so do the results


def test_backtest_monthly_withheld_field_is_parsed_or_refused():
    from critmin.errors import CritminError
    from critmin.simulate.backtest import _monthly

    assert _monthly("1;1;0.25", "X") == (1.0, 1.0, 0.25) and _monthly("", "X") is None and _monthly(float("nan"), "X") is None
    with pytest.raises(CritminError, match="case X, field withheld_by_month"):
        _monthly("1;none", "X")


def test_a_restriction_start_counts_only_where_the_country_produces(simulator):
    """Review 10: Namibia's one 2023 decree on lithium, cobalt, manganese, graphite and rare-earth ore counted five
    starts against its three producer pairs, making it the world's most likely restrictor (0.036 a pair-year against
    China's 0.022). Only lithium is a Namibian producer pair, so the decree is one start."""
    pm = simulator.probability
    pairs = {c for (i, c) in pm.stages_per_pair if i == "NAM"}
    assert "lithium" in pairs and not pairs & {"cobalt", "manganese", "graphite", "rare_earths"}
    assert pm.country_rate["CHN"] > pm.country_rate["NAM"]
    # review 11: a start is the producer's own measure: China's closure of the Myanmar border (E008) and the capture
    # of Myanmar's mines by an armed group (E009) are not Myanmar's restrictions
    from critmin.simulate.probability import imposed_by_producer

    ev = simulator.atlas.tables["events"].set_index("event_id")
    assert not imposed_by_producer(ev.loc["E008"].to_dict() | {"country_iso3": "MMR"})
    assert not imposed_by_producer(ev.loc["E009"].to_dict() | {"country_iso3": "MMR"})
    assert imposed_by_producer(ev.loc["E007"].to_dict() | {"country_iso3": "MMR"})
    assert max(pm.country_rate, key=pm.country_rate.get) == "CHN"
    # the base rate counts the same pairs it divides by
    n = int(pm.base_rate_basis.split(": ")[1].split(" ")[0])
    assert pm.base_rate == pytest.approx(n / (16 * len(pm.stages_per_pair)))


def test_a_rank_is_a_range_within_twice_the_sampling_error_by_hand():
    """Review 23: close neighbours swapped between the plan (500 draws) and the CSV (1,000 draws). best_i = 1 + #{k:
    EL_k - EL_i > 2 s_ik}, worst_i = n - #{k: EL_i - EL_k > 2 s_ik}, s_ik = sqrt(se_i² + se_k²): 100 and 95 with SE 2
    (s = 2.83, 2 s = 5.66 > 5) tie for ranks 1-2; 50 is 3rd; an unvalued row is last."""
    from critmin.simulate.risk import rank_range

    best, worst = rank_range(np.array([100.0, 95.0, 50.0, np.nan]), np.array([2.0, 2.0, 1.0, np.nan]))
    assert best.tolist() == [1, 1, 3, 4] and worst.tolist() == [2, 2, 3, 4]
    best, worst = rank_range(np.array([100.0, 90.0]), np.array([2.0, 2.0]))  # 10 > 5.66: told apart
    assert best.tolist() == [1, 2] and worst.tolist() == [1, 2]


def test_producers_gain_is_credited_on_the_inputs_the_same_event_leaves_them(simulator):
    """Reviews 28-29 (F1): E019's magnet scenario credited Japan's magnet makers full output at the higher magnet price
    while E019's dysprosium and terbium scenarios cut their inputs; zeroing that gain (the first mend) then charged
    buyers of U.S.-made cells twice under E023. The gain is credited on the share of their inputs the makers still
    get in the same run's scenarios of the event, a_j = 1 - max_u (tonnes short at u / use at u), flagged; the same
    measure outside any event keeps the whole gain; an input no scenario of the run covers is named an upper bound."""
    lib = {s.id: s for s in simulator.library()}
    ids = ["ev.E019.ndfeb_magnets.magnet", "ev.E019.dysprosium.refine", "ev.E019.terbium.refine"]
    alone = lib[ids[0]].model_copy(update={"id": "user.magnets", "event_id": None, "family": "user"})
    res = run(simulator, [*(lib[k] for k in ids), alone], draws=60, seed=0)
    t = res.scenarios.set_index(["scenario", "perspective"])
    jpn_use = {k: simulator.nodes.get(*k.split("/")).demand_share["JPN"] * simulator.nodes.get(*k.split("/")).q0_t
               for k in ("dysprosium/refine", "terbium/refine")}
    # review 30 F3: the output a shortfall stops is what the ranking counts as output lost, the tonnes rationed at the
    # choke price plus f_p of those given up at the higher price (f_p = price_cut_output_fraction)
    f_p = simulator.settings["price_cut_output_fraction"]

    def stopped(k: str) -> float:
        r = t.loc[(f"ev.E019.{k.split('/')[0]}.refine", "JPN")]
        return (r["rationed_t"] + f_p * (r["shortfall_t"] - r["rationed_t"])) / jpn_use[k]

    a = 1.0 - max(stopped(k) for k in jpn_use)
    full = t.loc[("user.magnets", "JPN"), "producer_gain_usd"]
    got = t.loc[("ev.E019.ndfeb_magnets.magnet", "JPN"), "producer_gain_usd"]
    assert 0.0 < a < 1.0 and full > 0.0
    assert got == pytest.approx(a * full, rel=1e-9)
    bloc = t.loc[("ev.E019.ndfeb_magnets.magnet", "BLOC"), "producer_gain_usd"]
    assert bloc == pytest.approx(got + t.loc[("ev.E019.ndfeb_magnets.magnet", "USA"), "producer_gain_usd"])
    flags = t.loc[("ev.E019.ndfeb_magnets.magnet", "JPN"), "flags"]
    assert "producers' gain on the inputs left (dysprosium/refine (E019), terbium/refine (E019)" in flags
    assert "restricted by the same event): credited on USA" in flags  # one flag: no '; ' inside it (review 30 F7)
    # the consumer side is untouched
    assert t.loc[("user.magnets", "JPN"), "expected_loss_usd"] == pytest.approx(t.loc[("ev.E019.ndfeb_magnets.magnet", "JPN"), "expected_loss_usd"])
    # run alone, the inputs are not simulated: the whole gain, named an upper bound
    one = run(simulator, [lib[ids[0]]], draws=60, seed=0).scenarios.set_index("perspective")
    assert one.at["JPN", "producer_gain_usd"] == pytest.approx(full)
    assert "not simulated in this run: the gain is an upper bound" in one.at["JPN", "flags"]


def test_a_scenario_composed_on_a_control_in_force_counts_its_restrictions(simulator):
    """Review 29 F1: the E021 magnet scenario is composed on E019 (in force) in the risk run, so E019's cut of dysprosium
    and terbium is part of it; its makers' gain is scaled by them too (E021's own nodes feed no magnet link)."""
    from critmin.simulate.risk import risk_run

    res = risk_run(simulator, 40, 0)
    t = res.scenarios[res.scenarios["perspective"] == "JPN"].set_index("scenario")
    e21 = t.loc["ev.E021.ndfeb_magnets.magnet"]
    assert e21["family"].startswith("ctl.") and "dysprosium/refine (E019)" in e21["flags"]
    assert "dysprosium/refine (E019)" in t.loc["ev.E019.ndfeb_magnets.magnet", "flags"]


def test_an_outcome_is_paired_with_the_same_outcome_of_its_event_at_the_input():
    """Review 30 F4: a tightening at the magnet node was scaled by the in-force dysprosium scenario, not by the
    tightening at dysprosium. Outcomes are named by the id's tail after the node."""
    from critmin.simulate.run import outcome_kind

    assert outcome_kind("ev.E019.dysprosium.refine", "dysprosium", "refine") == "ev"
    assert outcome_kind("evo.E019.dysprosium.refine.tighten", "dysprosium", "refine") == "evo:tighten"
    assert outcome_kind("evo.E019.ndfeb_magnets.magnet.tighten", "ndfeb_magnets", "magnet") == "evo:tighten"
    assert outcome_kind("evo.E010.gallium.refine.ban.JPN", "gallium", "refine") == "evo:ban.JPN"
    assert outcome_kind("ev.E015.gallium.refine.USA", "gallium", "refine") == "ev:USA"


def test_an_upper_bound_share_makes_the_gain_at_its_midpoint(simulator):
    """Review 29 F6: the reliance values a share that is an upper bound (``le``: Japan's anode makers by nationality,
    plants in China included; U.S. cathode at most 0.7 %) at the midpoint of [0, bound], but the gain used the bound.
    Both now use the midpoint, and the flag says so."""
    from critmin.simulate.engine import compile_batch

    UPPER_BOUND_SHARE_POINT = simulator.params.setting("upper_bound_share_point")  # the parameter, bundled 0.5

    lib = {s.id: s for s in simulator.library()}
    sc = lib["ev.E023.battery_anode.anode"]
    n = simulator.nodes.get("battery_anode", "anode")
    assert n.share_bounds.get("JPN") == "le"
    b = compile_batch([sc], simulator.nodes, simulator.chain, simulator.params)
    j = PARTICIPANTS.index("JPN")
    assert b.s_j[0, j] == pytest.approx(UPPER_BOUND_SHARE_POINT * n.shares["JPN"]) and UPPER_BOUND_SHARE_POINT == 0.5
    assert any(f.startswith("JPN producers' share 1.1% is an upper bound") for f in b.flags[0])
    # a share that is not a bound is credited whole
    c = compile_batch([lib["ev.E023.battery_cells.cell"]], simulator.nodes, simulator.chain, simulator.params)
    assert c.s_j[0, PARTICIPANTS.index("USA")] == pytest.approx(simulator.nodes.get("battery_cells", "cell").shares["USA"])
