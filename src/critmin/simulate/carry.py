"""An ore shortfall no plant of the participant takes, carried to the refined stage where it buys (shared by the stock
plan and the portfolio's sample; :mod:`critmin.simulate.ore` says which ore a participant can use)."""

from __future__ import annotations

from typing import Any

import numpy as np

from critmin.simulate.nodes import PARTICIPANTS
from critmin.simulate.ore import unusable_ore_reason
from critmin.simulate.run import REFILL_ROW


def carry_unstockable_ore(sim: Any, node_draws: dict[str, np.ndarray], members: list[str],
                          sourced_only: bool = True) -> tuple[dict[str, np.ndarray], list[dict[str, str]]]:
    """Node draws in which a participant's ore shortfall that no plant of its own can take is carried to the
    next stage of the same commodity, where a stock can answer it.

    For a mine node u whose ore participant j cannot process (:func:`unusable_ore_reason`), and each chain link to
    a later stage v of the same commodity (use share ``a_uv``, ``c_uv`` t of u per t of v), in every draw:
    ``D_jv += a_uv D_ju / c_uv``, ``LO_jv += a_uv LO_ju`` and ``L_jv += a_uv L_ju`` (the lost output and consumer
    loss of those tonnes, so the value of a tonne supplied at v stays ``Σ LO / Σ D`` and a stock never saves more
    than the loss it insures), the bloc's rows by the members' sums, the months the larger. The
    ore node itself stays unstocked for j. Review 16: the DRC's cobalt quota gave the USA a refined-cobalt
    shortfall in about 73 % of years, but the U.S. refined-cobalt stock was sized on the refined node's own
    scenarios alone (a shortfall in 2.4 % of draws), and Japan's lithium got no stock for the same reason. The
    carried tonnes leave the ore node's bloc rows (a pooled stock there does not count them again); with
    ``sourced_only`` an ore node whose demand for j is a proxy carries nothing. Returns the new draws and one
    record per carried (participant, ore node, node). The stock plan and the portfolio's sample use it (review 33 F4)."""
    out = {k: v.copy() for k, v in node_draws.items()}
    carried: list[dict[str, str]] = []
    for key, nd in node_draws.items():
        node = sim.nodes.nodes[sim.nodes.index[key]]
        if node.stage != "mine":
            continue
        links = [(v, a, c) for v, a, c in sim.chain.links[sim.nodes.index[key]]
                 if sim.nodes.nodes[v].commodity == node.commodity and np.isfinite(a) and np.isfinite(c) and c > 0]
        n_p = len(PARTICIPANTS)
        for j in members:
            k = PARTICIPANTS.index(j)
            if not (nd[3 + k] > 0).any() or unusable_ore_reason(sim, node, j) is None:
                continue
            if sourced_only and node.demand_basis.get(j, "").startswith("proxy"):
                continue  # a shortfall of a demand nobody measured is not carried into a stock (sourced_demand_only)
            short = nd[3 + k] > 0
            for v, a, c in links:
                vkey = sim.nodes.nodes[v].key
                dst = out.setdefault(vkey, np.zeros_like(nd))  # a node no scenario of the sample reached
                add_d, add_lo, add_l = a * nd[3 + k] / c, a * nd[7 + k], a * nd[k]
                add_r = a * nd[REFILL_ROW + k]  # what buying the carried tonnes back would cost above the baseline price
                for row, add in ((3 + k, add_d), (7 + k, add_lo), (k, add_l), (REFILL_ROW + k, add_r), (3 + n_p, add_d),
                                 (7 + n_p, add_lo), (n_p, add_l), (REFILL_ROW + n_p, add_r)):
                    dst[row] += add
                dst[6] = np.where(short, np.maximum(dst[6], nd[6]), dst[6])
                # review 17: the carried tonnes leave the ore node's bloc rows, so a pooled ore stock and a pooled
                # stock at the next stage never count the same shortfall
                src = out[key]
                for row, add in ((3 + n_p, a * nd[3 + k]), (7 + n_p, add_lo), (n_p, add_l), (REFILL_ROW + n_p, add_r)):
                    src[row] = np.maximum(src[row] - add, 0.0)
                carried.append({"participant": j, "node": vkey, "from": key,
                                "reason": f"{j}'s shortfall of {key}, which no plant of its own takes, is met at {vkey}"})
    return out, carried
