"""Disruption simulation: scenarios, a segmented multi-stage market model, Monte Carlo and risk ranking.

    from critmin.simulate import Simulator, Scenario, run, risk_ranking
    sim = Simulator.build(critmin.load_atlas())
    res = run(sim, [Scenario(id="x", commodity="gallium", stage="refine", restrictors=["CHN"])], draws=1000)
    res.scenarios            # one row per scenario x perspective (USA, JPN, BLOC)

Equations, parameters and their sources: docs/simulation.md.
"""

from critmin.simulate.parameters import ParameterError, Parameters
from critmin.simulate.risk import risk_ranking, risk_scenarios
from critmin.simulate.run import PERSPECTIVES, RunResult, Simulator, run
from critmin.simulate.scenario import (
    Response,
    Scenario,
    ScenarioError,
    StockpileRelease,
    load_scenario_file,
    parse_scenarios,
)

__all__ = [
    "PERSPECTIVES",
    "ParameterError",
    "Parameters",
    "Response",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "Simulator",
    "StockpileRelease",
    "load_scenario_file",
    "parse_scenarios",
    "risk_ranking",
    "risk_scenarios",
    "run",
]
