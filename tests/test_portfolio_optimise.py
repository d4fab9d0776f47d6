"""Portfolio MIP and greedy baseline on portfolios solvable by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from critmin.portfolio.optimise import (
    PortfolioError,
    PortfolioProblem,
    frontier,
    greedy,
    marginal_values,
    solve,
)


def opts(rows: list[tuple]) -> pd.DataFrame:
    cols = ["project_id", "instrument", "agency", "budget_key", "participant", "node", "country", "commodity", "dq_t", "cost_usd", "amount_usd", "months_to_output", "bonus"]
    return pd.DataFrame(rows, columns=cols)


def toy(budget: float = 100.0, **kw) -> PortfolioProblem:
    # node 0 short 10 t (100 USD/t), node 1 short 5 t (50 USD/t) in each of 3 equally likely draws, 12 months
    o = opts([
        ("p1", "loan", "A", "A:loan", "USA", 0, "AUS", "x", 6.0, 40.0, 40.0, 12, 0.0),
        ("p2", "grant", "A", "A:loan", "USA", 0, "CAN", "x", 10.0, 70.0, 70.0, 24, 0.0),
        ("p3", "equity", "A", "A:loan", "JPN", 1, "USA", "y", 5.0, 30.0, 30.0, 6, 0.0),
    ])
    short = np.array([[10.0, 10.0, 10.0], [5.0, 5.0, 5.0]])
    return PortfolioProblem(o, short, np.full((2, 3), 12.0), np.array([100.0, 50.0]), np.full(3, 1 / 3), {"A:loan": budget}, ["a", "b"], **kw)


def test_hand_optimum_beats_greedy():
    p = toy()
    s = solve(p, gap=0.0)
    assert sorted(s.selected["project_id"]) == ["p2", "p3"]
    assert s.expected_avoided_usd == pytest.approx(1250.0)
    g = greedy(p)
    assert sorted(g.selected["project_id"]) == ["p1", "p3"]
    assert g.expected_avoided_usd == pytest.approx(850.0)
    assert s.spent["A:loan"] <= 100.0 + 1e-9


def test_projects_relieve_what_the_stocks_leave_then_spare_their_buy_back_by_hand():
    """docs/portfolio.md §5, "Net of the stocks": stocks cover 6 of node 0's 10 t in every draw, leaving 4 t at
    100 USD/t; a project's tonne beyond those 4 t spares buying a released tonne back at π = 20 USD/t. p1 (6 t):
    4 x 100 + 2 x 20 = 440; p2 (10 t): 4 x 100 + 6 x 20 = 520; p3 (node 1, 5 t): 250. Budget 100: p2 + p3 = 770
    (p1 + p3 = 690; p1 + p2 does not fit); the greedy baseline takes p1 (11 USD/yr per USD) then p3: 690. Without
    stocks the same options avoid 1,250 (test above)."""
    k = np.array([[6.0, 6.0, 6.0], [0.0, 0.0, 0.0]])
    pi = np.array([[20.0, 20.0, 20.0], [0.0, 0.0, 0.0]])
    base = toy()
    p = PortfolioProblem(base.options, base.shortfall - k, base.months, base.value_per_t, base.weights, base.budgets, base.node_names,
                         stocked=k, stocked_value=pi)
    s = solve(p, gap=0.0)
    assert sorted(s.selected["project_id"]) == ["p2", "p3"]
    assert s.expected_avoided_usd == pytest.approx(770.0)
    assert s.avoided_by_node == pytest.approx({"a": 520.0, "b": 250.0})
    g = greedy(p)
    assert sorted(g.selected["project_id"]) == ["p1", "p3"] and g.expected_avoided_usd == pytest.approx(690.0)
    assert p.loss_potential().sum(axis=0) == pytest.approx([4 * 100 + 6 * 20 + 5 * 50] * 3)
    # a premium above the value of a tonne is spared at most at that value
    hi = PortfolioProblem(base.options, base.shortfall - k, base.months, base.value_per_t, base.weights, base.budgets, base.node_names,
                          stocked=k, stocked_value=pi * 10.0)
    assert hi.layers()[1][0, 0] == 100.0
    # with a CVaR term the programme still solves and reports the same avoided loss for its choice
    c = solve(PortfolioProblem(base.options, base.shortfall - k, base.months, base.value_per_t, base.weights, base.budgets, base.node_names,
                               cvar_weight=0.5, stocked=k, stocked_value=pi), gap=0.0)
    assert sorted(c.selected["project_id"]) == ["p2", "p3"] and c.expected_avoided_usd == pytest.approx(770.0)
    # edge cases (review 20b): a node the stocks cover entirely (short 0, K 10): p2's 10 t spare 10 x 20 = 200; no
    # premium (π = 0): the stocked part is worth nothing to a project; no months of disruption: nothing is avoided
    full = PortfolioProblem(base.options, base.shortfall * np.array([[0.0], [1.0]]), base.months, base.value_per_t, base.weights, base.budgets,
                            base.node_names, stocked=np.array([[10.0] * 3, [0.0] * 3]), stocked_value=pi)
    f = solve(full, gap=0.0)
    assert f.avoided_by_node.get("a", 0.0) == pytest.approx(200.0) and f.expected_avoided_usd == pytest.approx(450.0)
    assert greedy(full).expected_avoided_usd == pytest.approx(370.0)  # p3 (8.3 USD/yr per USD), then p1 (3.0); p2 no longer fits
    free = PortfolioProblem(base.options, base.shortfall - k, base.months, base.value_per_t, base.weights, base.budgets, base.node_names,
                            stocked=k, stocked_value=np.zeros_like(pi))
    assert solve(free, gap=0.0).avoided_by_node.get("a", 0.0) == pytest.approx(400.0)
    idle = PortfolioProblem(base.options, base.shortfall - k, np.zeros_like(base.months), base.value_per_t, base.weights, base.budgets,
                            base.node_names, stocked=k, stocked_value=pi)
    assert solve(idle, gap=0.0).expected_avoided_usd == 0.0


def test_money_has_a_price_net_benefit_test():
    # ample budget: every option with a benefit is funded when money has no price: p2 (node 0 covered: 10 t x 100
    # = 1000 USD/yr) and p3 (5 t x 50 = 250 USD/yr); p1 adds nothing once p2 is in.
    rich = toy(budget=1000.0)
    assert sorted(solve(rich, gap=0.0).selected["project_id"]) == ["p2", "p3"]
    # a budget dollar must buy 9 USD/yr: p3 costs 30 -> needs 270 > 250, dropped; p2 needs 630 < 1000, kept
    # (p1 alone: 600 avoided against 360 needed, net 240 < p2's 370)
    s = solve(toy(budget=1000.0, cost_weight=9.0), gap=0.0)
    assert sorted(s.selected["project_id"]) == ["p2"]
    assert s.objective == pytest.approx(1000.0 - 9.0 * 70.0)
    # the greedy baseline takes the best ratio first (p1: 15 USD/yr per USD), then nothing passes the test
    g = greedy(toy(budget=1000.0, cost_weight=9.0))
    assert sorted(g.selected["project_id"]) == ["p1"] and g.objective == pytest.approx(600.0 - 9.0 * 40.0)
    # the test prices the expected cost to the government, not the face amount a budget is charged
    p = toy(budget=1000.0, cost_weight=9.0)
    p.options["economic_cost_usd"] = [4.0, 7.0, 3.0]
    assert sorted(solve(p, gap=0.0).selected["project_id"]) == ["p2", "p3"]


def test_deadline_removes_late_options():
    s = solve(toy(deadline_months=12), gap=0.0)
    assert sorted(s.selected["project_id"]) == ["p1", "p3"]


def test_budget_never_exceeded_and_frontier_monotone():
    p = toy()
    fr = frontier(p, points=5, gap=0.0)
    assert (fr["spent_usd"] <= fr["total_budget_usd"] + 1e-9).all()
    assert fr["expected_avoided_usd"].is_monotonic_increasing
    mv = marginal_values(p, solve(p, gap=0.0), step=0.5, gap=0.0)
    assert mv["A:loan"] >= 0


def test_infeasible_and_invalid_inputs_give_clear_messages():
    with pytest.raises(PortfolioError, match="must_include.*p2.*budget"):
        solve(toy(budget=60.0, must_include=["p2"]), gap=0.0)
    with pytest.raises(PortfolioError, match="p9.*no eligible option"):
        solve(toy(must_include=["p9"]), gap=0.0)
    with pytest.raises(PortfolioError, match="co-financing"):
        solve(toy(min_participant_share={"USA": 0.7, "JPN": 0.6}), gap=0.0)
    with pytest.raises(PortfolioError, match="negative or missing budget"):
        solve(toy(budget=-1.0), gap=0.0)


def test_cvar_objective_prefers_tail():
    # node 1 is short only in draw 0 (a bad year): mean prefers p1, CVaR of the residual loss prefers p3
    o = opts([
        ("p1", "loan", "A", "K", "USA", 0, "AUS", "x", 4.0, 40.0, 40.0, 12, 0.0),
        ("p3", "equity", "A", "K", "JPN", 1, "USA", "y", 20.0, 30.0, 30.0, 6, 0.0),
    ])
    short = np.array([[10.0, 10.0, 10.0], [30.0, 0.0, 0.0]])
    base = dict(options=o, shortfall=short, months=np.full((2, 3), 12.0), value_per_t=np.array([100.0, 50.0]),
                weights=np.full(3, 1 / 3), budgets={"K": 40.0})
    mean_only = solve(PortfolioProblem(**base), gap=0.0)
    tail = solve(PortfolioProblem(**base, cvar_weight=5.0, cvar_alpha=0.6), gap=0.0)
    assert list(mean_only.selected["project_id"]) == ["p1"] and mean_only.expected_avoided_usd == pytest.approx(400.0)
    assert list(tail.selected["project_id"]) == ["p3"]
    # hand: residual [1500, 1000, 1000] -> worst 40 % = (1500/3 + 1000 * (0.4 - 1/3)) / 0.4
    assert tail.cvar_residual_usd == pytest.approx((1500 / 3 + 1000 * (0.4 - 1 / 3)) / 0.4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mip_never_worse_than_greedy_on_badly_scaled_problems(seed):
    # loss per tonne spans six orders of magnitude and shortfalls four: the optimum must still beat greedy
    from critmin.portfolio.bench import generate_problem
    from critmin.portfolio.model import Sample

    rng = np.random.default_rng(seed)
    n_nodes, draws = 12, 200
    short = rng.lognormal(3, 2, size=(n_nodes, 1)) * (rng.random((n_nodes, draws)) < 0.3)
    months = np.where(short > 0, rng.choice([3, 6, 12, 24], size=(n_nodes, draws)), 0.0)
    v = 10.0 ** rng.uniform(2, 8, n_nodes)
    sample = Sample([f"c{i}/mine" for i in range(n_nodes)], short, months, v, short * v[:, None])
    p = generate_problem(sample, 300, seed)
    s, g = solve(p, gap=1e-4), greedy(p)
    assert s.objective >= g.objective * (1 - 1e-4)
    assert all(s.spent[k] <= p.budgets[k] * (1 + 1e-9) for k in s.spent)


def test_options_that_add_nothing_are_pruned_and_greedy_respects_rules():
    # node short 5 t; two options of 10 t each: one is enough, the optimum must not pay for both
    o = opts([
        ("p1", "loan", "A", "K", "USA", 0, "AUS", "x", 10.0, 60.0, 60.0, 12, 0.0),
        ("p2", "loan", "A", "K", "JPN", 0, "CAN", "x", 10.0, 80.0, 80.0, 12, 0.0),
    ])
    p = PortfolioProblem(o, np.array([[5.0]]), np.array([[12.0]]), np.array([100.0]), np.array([1.0]), {"K": 1000.0})
    s = solve(p, gap=0.01)
    assert list(s.selected["project_id"]) == ["p1"] and s.spent["K"] == pytest.approx(60.0)
    # greedy with a must-include that does not fit takes nothing beyond the budget
    g = greedy(PortfolioProblem(o, np.array([[5.0]]), np.array([[12.0]]), np.array([100.0]), np.array([1.0]), {"K": 50.0}, must_include=["p2"]))
    assert g.spent["K"] <= 50.0 and "could not meet" in g.status
    # greedy honours co-financing shares: JPN must pay everything
    g2 = greedy(PortfolioProblem(o, np.array([[5.0]]), np.array([[12.0]]), np.array([100.0]), np.array([1.0]), {"K": 1000.0},
                                 min_participant_share={"JPN": 1.0}))
    assert set(g2.selected["participant"]) <= {"JPN"}
    with pytest.raises(PortfolioError, match="cvar_alpha"):
        solve(PortfolioProblem(o, np.array([[5.0]]), np.array([[12.0]]), np.array([100.0]), np.array([1.0]), {"K": 1.0}, cvar_alpha=1.5))


def test_co_products_supply_their_own_nodes():
    """Review 13: co-products counted as revenue but relieved no node (NICO's bismuth, White Mesa's Dy and Tb). In the
    toy, p1 (6 t at node 0, worth 600 USD/yr) gets a co-product of 4 t at node 1 (4 x 50 = 200 USD/yr): at a budget
    of 40, p1 alone (800) beats p3 (30, 250) and p2 does not fit (70)."""
    from critmin.portfolio.optimise import CO_SUPPLY, added_avoided, added_supply, supply_pairs

    p = toy(budget=40.0)
    p.options[CO_SUPPLY] = [[(1, 4.0)], [], []]
    o, n, q = supply_pairs(p.options)
    assert list(zip(o.tolist(), n.tolist(), q.tolist(), strict=True)) == [(0, 0, 6.0), (1, 0, 10.0), (2, 1, 5.0), (0, 1, 4.0)]
    assert added_supply(p, p.options, np.array([1.0, 0.0, 1.0])).tolist() == [6.0, 9.0]
    for s in (solve(p, gap=0.0), greedy(p)):
        assert list(s.selected["project_id"]) == ["p1"] and s.expected_avoided_usd == pytest.approx(800.0)
        assert s.avoided_by_node == pytest.approx({"a": 600.0, "b": 200.0})
    # the marginal value of p3 next to p1 counts only the 1 t of node 1 still short
    sel = p.options.iloc[[0]]
    assert added_avoided(p, sel, 1, 5.0) == pytest.approx(50.0)
    assert added_avoided(p, p.options.iloc[0:0], 0, 6.0, [(1, 4.0)]) == pytest.approx(800.0)


def test_the_bloc_gets_its_share_of_a_projects_tonnes_and_the_whole_price_effect_by_hand():
    """docs/portfolio.md §5, "The bloc's share of a project's tonnes": avoided = (v - v^P) min(short, m g z)
    + v^P min(short, g z). Node 0 (v = 100, v^P = 40, m = 0.25) short 10, 0, 20 t in three draws of 12 months; p1
    adds 20 t: draw 1 60 x 5 + 40 x 10 = 700, draw 3 60 x 5 + 40 x 20 = 1,100, mean 600. p2 (node 1, m = 1: no
    share, v = 50, v^P ignored) adds 5 t of its 5 t shortfall: 250 a draw. Budget 100 takes one: p1 (600 > 250).
    Without the share p1 would avoid (10 + 0 + 20) x 100 / 3 = 1,000."""
    o = opts([
        ("p1", "loan", "A", "A:loan", "USA", 0, "AUS", "x", 20.0, 60.0, 60.0, 12, 0.0),
        ("p2", "loan", "A", "A:loan", "USA", 1, "CAN", "y", 5.0, 60.0, 60.0, 12, 0.0),
    ])
    short = np.array([[10.0, 0.0, 20.0], [5.0, 5.0, 5.0]])
    base = dict(options=o, shortfall=short, months=np.full((2, 3), 12.0), value_per_t=np.array([100.0, 50.0]),
                weights=np.full(3, 1 / 3), budgets={"A:loan": 100.0}, node_names=["a", "b"])
    p = PortfolioProblem(**base, supply_share=np.array([0.25, 1.0]), price_value_per_t=np.array([40.0, 30.0]))
    assert p.avoided_value(np.array([20.0, 0.0]))[0] == pytest.approx([700.0, 0.0, 1100.0])
    s = solve(p, gap=0.0)
    assert list(s.selected["project_id"]) == ["p1"]
    assert s.expected_avoided_usd == pytest.approx(600.0)
    assert greedy(p).expected_avoided_usd == pytest.approx(600.0)
    assert solve(PortfolioProblem(**base), gap=0.0).expected_avoided_usd == pytest.approx(1000.0)
    # the CVaR family reads the same split: with λ > 0 the solution and its avoided loss are unchanged
    assert solve(PortfolioProblem(**base, supply_share=np.array([0.25, 1.0]), price_value_per_t=np.array([40.0, 30.0]),
                                  cvar_weight=0.5), gap=0.0).expected_avoided_usd == pytest.approx(600.0)
