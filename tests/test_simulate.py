"""Disruption simulator: closed forms, hand-computed goldens, invariants, reproducibility, reference, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from critmin.simulate.engine import ChainFactors, NodeDraws, chain_factors, compile_batch, evaluate_chunk
from critmin.simulate.market import closed_form_price, price_with_release, segment_price
from critmin.simulate.nodes import Node, NodeTable, price_to_usd_per_t
from critmin.simulate.parameters import ParameterError, Parameters
from critmin.simulate.probability import fit_probability_model
from critmin.simulate.reference import scalar_losses
from critmin.simulate.run import Simulator, run
from critmin.simulate.scenario import Response, Scenario, ScenarioError, StockpileRelease, load_scenario_file

FIXED = {
    "elasticity_demand": -0.5,
    "elasticity_supply": 0.5,
    "spare_capacity": 0.25,  # of the other producers' output: 0.25 x 0.4 = 0.1 of world output
    "ramp_months": 0.0,
    "leakage": 0.0,
    "leakage_world": 0.0,
    "restrictor_domestic_share": 0.0,
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
    return Simulator(atlas, nodes, params, chain, prob, {k: params.setting(k) for k in ("restraint_loss_fraction", "in_force_horizon_months")})


def ban(**kw) -> Scenario:
    base = {"id": "t", "commodity": "toy", "stage": "refine", "restrictors": ["CHN"], "targets": ["WORLD"], "duration_months": 12}
    base.update(kw)
    return Scenario(**base)


# ------------------------------------------------------------------ closed forms ------------------------------------


def test_closed_form_golden():
    # D = 0.6, X = 0.1 (0.25 of the others' 0.4), εd - εs = -1: P1/P0 = 0.5^-1 = 2
    assert closed_form_price(1.0, 0.6, 0.1, -0.5, 0.5) == pytest.approx(2.0)
    assert closed_form_price(1.0, 0.05, 0.1, -0.5, 0.5) == 1.0  # spare covers the loss
    assert segment_price(np.array([0.5]), np.array([1.0]), np.array([-0.5]), np.array([0.5]))[0] == pytest.approx(2.0)


def test_price_with_release_solves_equation():
    s, d, k, ed, es = np.array([0.5, 0.5, 0.9]), np.array([1.0, 1.0, 1.0]), np.array([0.0, 0.2, 0.3]), -0.3, 0.2
    p = price_with_release(s, d, k, ed, es)
    resid = s * p**es + k - d * p**ed
    assert np.all(np.abs(resid[p > 1]) < 1e-12)
    assert p[0] == pytest.approx((1.0 / 0.5) ** (1 / 0.5))
    assert p[2] == 1.0  # supply plus release covers demand


def test_engine_reproduces_single_market_closed_form_and_hand_golden(atlas):
    sim = toy_sim(atlas)
    res = run(sim, [ban(withheld_share=1.0)], draws=4, seed=1)
    usa = res.scenarios.set_index("perspective").loc["USA"]
    assert usa["peak_price_ratio_mean"] == pytest.approx(2.0, rel=1e-12)
    # hand computation (docs/simulation.md): σ = 2^-0.5; USA d = 0.1, s = 0.1; P0·Q0 = 1e6 USD/yr; 12 months
    sigma = 2**-0.5
    assert usa["shortfall_t"] == pytest.approx(0.1 * (1 - sigma) * 1000.0, rel=1e-12)  # 29.289 t
    assert usa["input_cost_usd"] == pytest.approx(0.1 * sigma * 1e6, rel=1e-12)  # 70,711 USD
    assert usa["lost_output_usd"] == pytest.approx(0.1 * (1 - sigma) * 2.0 * 1e6, rel=1e-12)  # 58,579 USD
    assert usa["producer_gain_usd"] == pytest.approx(0.1 * 2**0.5 * 1e6, rel=1e-12)  # 141,421 USD
    assert usa["expected_loss_usd"] == pytest.approx(0.1 * sigma * 1e6 + 0.1 * (1 - sigma) * 2e6 - 0.1 * 2**0.5 * 1e6, rel=1e-12)


def test_choke_price_caps_and_rations(atlas):
    sim = toy_sim(atlas, toy_node(s_r=0.95, usa=0.0), {**FIXED, "spare_capacity": 0.0, "max_price_ratio": 3.0})
    r = run(sim, [ban()], draws=2, seed=0).scenarios.set_index("perspective").loc["USA"]
    assert r["peak_price_ratio_mean"] == pytest.approx(3.0)
    # served = available supply at the cap: 0.05 * 3^0.5 of world demand
    assert r["shortfall_t"] == pytest.approx(0.1 * (1 - 0.05 * 3**0.5) * 1000.0, rel=1e-12)


def test_price_units():
    assert price_to_usd_per_t(1.0, "USD/kg") == 1000.0
    assert price_to_usd_per_t(100.0, "US cents/lb") == pytest.approx(2204.62262, rel=1e-9)
    assert price_to_usd_per_t(1.0, "USD/troy oz") == pytest.approx(32150.7466, rel=1e-9)
    assert price_to_usd_per_t(1.0, "carats") is None


# ------------------------------------------------------------------ invariants --------------------------------------


@settings(max_examples=40, deadline=None)
@given(s_r=st.floats(0.05, 0.85), w1=st.floats(0.0, 1.0), w2=st.floats(0.0, 1.0), target=st.sampled_from(["WORLD", "USA", "JPN", "BLOC"]))
def test_larger_disruption_never_lowers_price_or_shortfall(atlas, s_r, w1, w2, target):
    lo, hi = sorted((w1, w2))
    sim = toy_sim(atlas, toy_node(s_r=s_r, usa=0.05), {k: v for k, v in FIXED.items() if k != "spare_capacity"} | {"spare_capacity": 0.02})
    res = run(sim, [ban(id="a", withheld_share=lo, targets=[target]), ban(id="b", withheld_share=hi, targets=[target])], draws=3, seed=2).scenarios
    a, b = res[res["scenario"] == "a"].set_index("perspective"), res[res["scenario"] == "b"].set_index("perspective")
    assert (b["peak_price_ratio_mean"] >= a["peak_price_ratio_mean"] - 1e-12).all()
    assert (b["shortfall_t"] >= a["shortfall_t"] - 1e-9).all()


@settings(max_examples=30, deadline=None)
@given(h1=st.floats(0.0, 500.0), h2=st.floats(0.0, 500.0), rate=st.floats(1.0, 100.0))
def test_more_stock_never_raises_shortfall(atlas, h1, h2, rate):
    lo, hi = sorted((h1, h2))
    sim = toy_sim(atlas)
    def sc(i: str, h: float) -> Scenario:
        return ban(id=i, response=Response(stockpile=StockpileRelease(holdings_t=h, max_release_t_per_month=rate)))
    res = run(sim, [sc("a", lo), sc("b", hi)], draws=2, seed=0).scenarios.set_index(["scenario", "perspective"])
    for per in ("USA", "JPN", "BLOC"):
        assert res.loc[("b", per), "shortfall_t"] <= res.loc[("a", per), "shortfall_t"] + 1e-9
        assert res.loc[("b", per), "peak_price_ratio_mean"] <= res.loc[("a", per), "peak_price_ratio_mean"] + 1e-12


def test_no_disruption_no_loss(simulator):
    lib = [s for s in simulator.library() if s.family != "event"][::97]
    nothing = [s.model_copy(update={"withheld_share": 0.0, "id": s.id + ".zero"}) for s in lib]
    res = run(simulator, nothing, draws=20, seed=3).scenarios
    assert np.nanmax(np.abs(res["expected_loss_usd"].to_numpy())) == 0.0
    assert (res["shortfall_t"].fillna(0) == 0).all()
    assert (res["peak_price_ratio_mean"] == 1.0).all()


def test_tonnes_conserved_down_the_chain(simulator):
    res = run(simulator, [s for s in simulator.library() if s.id.startswith("gen.CHN.rare_earths.refine.WORLD.12m")], draws=20, seed=0).scenarios
    row = res[res["perspective"] == "JPN"].iloc[0]
    down = row["downstream_shortfall_t"]
    assert "ndfeb_magnets/magnet" in down
    u = simulator.nodes.index["rare_earths/refine"]
    embodied = sum(c * down[simulator.nodes.nodes[v].key] for v, _, c in simulator.chain.links[u])
    share = sum(a for _, a, _ in simulator.chain.links[u])
    assert embodied == pytest.approx(share * row["shortfall_t"], rel=1e-9)
    assert embodied <= row["shortfall_t"] + 1e-9


def test_targeted_ban_reroutes_when_others_can_supply(atlas):
    # USA buys 0.1 of world output; non-restrictors produce 0.4: a ban on the USA alone just reroutes trade
    r = run(toy_sim(atlas), [ban(targets=["USA"])], draws=2, seed=0).scenarios.set_index("perspective")
    assert (r["peak_price_ratio_mean"] == 1.0).all()
    assert np.allclose(r["expected_loss_usd"], 0.0)


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
    lib = simulator.library()
    rng = np.random.default_rng(5)
    sample = [lib[i] for i in rng.choice(len(lib), 60, replace=False)]
    sample += [
        Scenario(id="stock", commodity="cobalt", stage="refine", restrictors=["CHN"], duration_months=9,
                 response=Response(stockpile=StockpileRelease(holdings_t=4000, max_release_t_per_month=500, price_cap=1.3), demand_restraint=0.1)),
        Scenario(id="licence", commodity="graphite", stage="refine", restrictors=["CHN"], regime="licence", targets=["BLOC"]),
        Scenario(id="restraint", commodity="antimony", stage="mine", restrictors=["CHN"], duration_months=5,
                 response=Response(demand_restraint=0.5)),
    ]
    b = compile_batch(sample, simulator.nodes, simulator.chain, simulator.params)
    nd = NodeDraws.sample(simulator.nodes, simulator.params, 16, 9)
    vec = evaluate_chunk(b, nd, simulator.settings, 9)
    for i in range(len(sample)):
        for d in (0, 7, 15):
            ref = scalar_losses(b, i, nd, d, simulator.settings, 9)
            assert np.allclose(vec.loss_rel[i, :, d], ref, rtol=1e-9, atol=1e-15), sample[i].id


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


# ------------------------------------------------------------------ review fixes -----------------------------------


def test_restraint_never_exceeds_the_gap(atlas):
    # world ban of a 12 % producer, no spare: gap 0.12 of world demand; restraint 0.5 only sheds the gap
    sim = toy_sim(atlas, toy_node(s_r=0.12, usa=0.0), {**FIXED, "spare_capacity": 0.0})
    res = run(sim, [ban(id="r0"), ban(id="r50", response=Response(demand_restraint=0.5))], draws=2, seed=0).scenarios
    r50 = res[(res["scenario"] == "r50") & (res["perspective"] == "USA")].iloc[0]
    assert r50["peak_price_ratio_mean"] == 1.0
    assert r50["shortfall_t"] == pytest.approx(0.1 * 0.12 * 1000.0)  # USA's share of the gap, 12 t
    assert r50["expected_loss_usd"] == pytest.approx(0.3 * 0.1 * 0.12 * 2.0 * 1e6)  # φ x restrained x M x P0 Q0
    r0 = res[(res["scenario"] == "r0") & (res["perspective"] == "USA")].iloc[0]
    assert r50["expected_loss_usd"] < r0["expected_loss_usd"]


def test_participant_demand_never_exceeds_the_targeted_segment(atlas):
    # USA + JPN demand 0.95 of world output but the WORLD segment is 1 - h s_R = 0.7 with h = 0.5, s_R = 0.6
    node = toy_node()
    node.demand_share = {"USA": 0.6, "JPN": 0.35}
    sim = toy_sim(atlas, node, {**FIXED, "restrictor_domestic_share": 0.5, "spare_capacity": 0.0})
    r = run(sim, [ban()], draws=2, seed=0).scenarios.set_index("perspective")
    # physical gap: exports 0.3 withheld, over 12 months, on Q0 = 1000 t
    assert r.loc["BLOC", "shortfall_t"] <= 0.3 * 1000.0 + 1e-9


def test_no_nan_or_warning_at_zero_supply_and_extreme_parameters(atlas):
    sim = toy_sim(atlas, toy_node(s_r=1.0, usa=0.0), {**FIXED, "spare_capacity": 0.0, "elasticity_supply": 0.0, "elasticity_demand": -1e-6})
    res = run(sim, [ban(id="s", response=Response(stockpile=StockpileRelease(holdings_t=50, max_release_t_per_month=5))), ban(id="n")],
              draws=2, seed=0).scenarios
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
    assert "low-tier" in bloc["flags"]


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
