"""Monte Carlo runs: chunked, threaded or distributed, with labelled results.

``Simulator`` holds the definitions (atlas, nodes, parameters, chain factors, probability model) and runs
scenario lists. Work is cut into chunks of scenarios (same duration, bounded memory); each chunk returns
per-scenario statistics and, for risk, per-commodity per-draw loss totals of the scenarios that occur.
Chunks run on a thread pool (numpy releases the GIL) or on a Dask cluster; results are identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from critmin.atlas.model import Atlas
from critmin.simulate.engine import (
    NP,
    Batch,
    ChainFactors,
    NodeDraws,
    chain_factors,
    compile_batch,
    downstream_shortfall,
    evaluate_chunk,
    event_node_map,
    feeding_nodes,
    input_availability,
    keyed_uniforms,
)
from critmin.simulate.library import scenario_library
from critmin.simulate.nodes import (
    PARTICIPANTS,
    Node,
    NodeTable,
    build_nodes,
    market_outside_restrictor,
    share_of_added_supply,
    with_located_stocks,
)
from critmin.simulate.parameters import SETTINGS, Parameters
from critmin.simulate.probability import ProbabilityModel, fit_probability_model
from critmin.simulate.regimes import RegimeModel, fit_regime_model
from critmin.simulate.scenario import Scenario

PERSPECTIVES = (*PARTICIPANTS, "BLOC")
#: Rows of ``RunResult.node_draws`` per node: consumer loss (0-2: USA, JPN, BLOC), shortfall t (3-5), months of
#: disruption (6), value of the tonnes short to a supplier of them (7-9: ``ChunkResult.supply_value``, the lost output
#: with each tonne given up at the price valued at its premium p - 1), the same under the input-output convention
#: (10-12: ``ChunkResult.supply_value_io``), and what buying the tonnes short back would cost above the baseline
#: price while the disruption still holds (13-15: shortfall x P0 x (mean price ratio of the participant's segment -
#: 1) x the probability that the disruption still holds when a stock is refilled; docs/stockpile.md §2), then the
#: price-effect part of the supply value (16-18 welfare, 19-21 input-output: ``ChunkResult.supply_price``), which a
#: tonne supplied to any buyer of the segment brings the perspective (docs/portfolio.md §5).
NODE_ROWS = 22
#: First row of the refill premium in ``RunResult.node_draws``.
REFILL_ROW = 13
#: First row of the supply value in ``RunResult.node_draws``, by valuation.
SUPPLY_ROW = {"welfare": 7, "input_output": 10}
#: First row of the price-effect part of the supply value in ``RunResult.node_draws``, by valuation.
PRICE_ROW = {"welfare": 16, "input_output": 19}
#: Target number of (scenario × draw) elements per chunk: bounds memory (about 60 arrays of this size).
CHUNK_ELEMENTS = 1 << 17


def _data_file(name: str) -> Path:
    return Path(str(resources.files("critmin.simulate").joinpath(f"data/{name}")))


#: Required columns of the simulator's data tables (a user file replacing one must have them).
TABLE_COLUMNS = {
    "chain_coefficients.csv": ("from_commodity", "from_stage", "to_commodity", "to_stage", "input_t_per_t", "use_share"),
    "product_values.csv": ("commodity_id", "stage", "value_usd_per_t"),
    "participant_use_shares.csv": ("participant", "from_commodity", "from_stage", "to_commodity", "to_stage", "use_share"),
    "located_stocks.csv": ("commodity_id", "holder_iso3", "months", "low", "high", "source"),
    "product_value_added.csv": ("commodity_id", "stage", "va_go_ratio", "source"),
    "captive_feed.csv": ("participant", "commodity_id", "stage", "plant", "feed_country", "feed_form", "share_of_intake", "low", "high", "source"),
}


def read_table(name: str, path: str | Path | None = None) -> pd.DataFrame:
    """A simulator data table: the bundled one, or ``path`` (same columns) instead."""
    from critmin.errors import CritminError

    p = Path(path) if path is not None else _data_file(name)
    if path is not None and not p.is_file():
        raise CritminError(f"{p}: {'not a file' if p.exists() else 'file not found'}")
    if not p.exists():
        return pd.DataFrame()
    try:
        t = pd.read_csv(p, encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CritminError(f"{p}: not a readable UTF-8 CSV file: {exc}") from exc
    missing = [c for c in TABLE_COLUMNS.get(name, ()) if c not in t.columns]
    if missing:
        raise CritminError(f"{p}, line 1: missing column(s) {', '.join(missing)}")
    for c in ("input_t_per_t", "use_share", "value_usd_per_t", "world_output_t", "months", "low", "high", "va_go_ratio", "share_of_intake"):
        if c in t.columns:
            bad = [i + 2 for i, v in enumerate(pd.to_numeric(t[c], errors="coerce")) if pd.notna(t[c].iloc[i]) and (pd.isna(v) or v < 0)]
            if bad:
                raise CritminError(f"{p}, line {bad[0]}, field '{c}': not a non-negative number")
    if "va_go_ratio" in t.columns:
        bad = [i + 2 for i, v in enumerate(pd.to_numeric(t["va_go_ratio"], errors="coerce")) if not 0 < v <= 1]
        if bad:
            raise CritminError(f"{p}, line {bad[0]}, field 'va_go_ratio': not a share in (0, 1]")
    for mid in ("months", "share_of_intake"):
        if {mid, "low", "high"} <= set(t.columns):
            m, lo, hi = (pd.to_numeric(t[c], errors="coerce") for c in (mid, "low", "high"))
            bad = [i + 2 for i in range(len(t)) if not (lo.iloc[i] <= m.iloc[i] <= hi.iloc[i])]
            if bad:
                raise CritminError(f"{p}, line {bad[0]}, field '{mid}': low <= {mid} <= high fails")
    if "share_of_intake" in t.columns:
        bad = [i + 2 for i, v in enumerate(pd.to_numeric(t["high"], errors="coerce")) if not v <= 1]
        if bad:
            raise CritminError(f"{p}, line {bad[0]}, field 'high': a share of a plant's intake is at most 1")
        bad = [i + 2 for i, v in enumerate(t["participant"]) if v not in PARTICIPANTS]
        if bad:
            raise CritminError(f"{p}, line {bad[0]}, field 'participant': not one of {', '.join(PARTICIPANTS)}")
    return t


@dataclass
class Simulator:
    """Definitions shared by every run."""

    atlas: Atlas
    nodes: NodeTable
    params: Parameters
    chain: ChainFactors
    probability: ProbabilityModel
    settings: dict[str, float]
    data_files: dict[str, str] = field(default_factory=dict)
    regimes: RegimeModel | None = None
    #: (participant, node key) -> a participant's plant fed mainly from its own source, not the open market
    #: (``captive_feed.csv``; :func:`critmin.simulate.ore.unusable_ore_reason`)
    captive_feed: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(cls, atlas: Atlas, params: Parameters | None = None, chain_file: str | Path | None = None,
              product_values_file: str | Path | None = None) -> Simulator:
        """Definitions from the atlas; ``chain_file`` / ``product_values_file`` replace the bundled tables."""
        params = params or Parameters.load()
        pv = read_table("product_values.csv", product_values_file)
        nodes = build_nodes(atlas, product_values=pv if len(pv) else None)
        located = read_table("located_stocks.csv")
        nodes = with_located_stocks(nodes, located.to_dict("records") if len(located) else [])
        params.check_scopes(set(atlas.commodities["commodity_id"]), set(atlas.commodities["group"]), set(nodes.index))
        coeff = read_table("chain_coefficients.csv", chain_file)
        own = read_table("participant_use_shares.csv")
        va_t = read_table("product_value_added.csv")
        va = {f"{r['commodity_id']}/{r['stage']}": float(r["va_go_ratio"]) for r in va_t.to_dict("records")} if len(va_t) else None
        chain = chain_factors(nodes, coeff.to_dict("records") if len(coeff) else [], params,
                              own.to_dict("records") if len(own) else None, value_added=va)
        prob = fit_probability_model(atlas, nodes, params)
        settings = {k: params.setting(k) for k in SETTINGS if k != "base_rate_restriction"}
        files = {"chain_coefficients": str(chain_file) if chain_file else "bundled",
                 "product_values": str(product_values_file) if product_values_file else "bundled"}
        regimes = fit_regime_model(atlas, prior_regime_years=params.setting("prior_strength_regime_years"))
        captive = read_table("captive_feed.csv")
        feeds = {(str(r["participant"]), f"{r['commodity_id']}/{r['stage']}"): r for r in (captive.to_dict("records") if len(captive) else [])}
        unknown = [k for k in feeds if k[1] not in nodes.index]
        if unknown:
            from critmin.errors import CritminError

            raise CritminError(f"captive_feed.csv: node {unknown[0][1]} has no country shares (see `critmin assess`)")
        return with_captive_feed(cls(atlas, nodes, params, chain, prob, settings, files, regimes, feeds))

    def library(self, generated: bool = True) -> list[Scenario]:
        return scenario_library(self.atlas, self.nodes, int(self.settings["in_force_horizon_months"]), generated)

    def check(self, scenarios: Iterable[Scenario], origin: str = "") -> None:
        """Every scenario's node has data; restrictors and targets are known countries; no self-targeting."""
        from critmin.errors import CritminError

        iso = set(self.atlas.countries["iso3"])
        bad = []
        where = f"{origin}, " if origin else ""
        for s in scenarios:
            if f"{s.commodity}/{s.stage}" not in self.nodes.index:
                field = "commodity" if s.commodity not in set(self.atlas.commodities["commodity_id"]) else "stage"
                bad.append(f"{where}scenario '{s.id}', field '{field}': no country shares for node {s.commodity}/{s.stage} (see `critmin assess`)")
            for fld, codes in (("restrictors", s.restrictors), ("targets", [t for t in s.targets if t not in ("WORLD", "BLOC")])):
                for c in codes:
                    if c not in iso:
                        bad.append(f"{where}scenario '{s.id}', field '{fld}': unknown country code '{c}'")
            if "BLOC" in s.targets and set(s.restrictors) & set(PARTICIPANTS):
                bad.append(f"{where}scenario '{s.id}', field 'targets': a participant cannot target the BLOC it belongs to")
        if bad:
            raise CritminError("scenario cannot be simulated:\n  " + "\n  ".join(bad[:20]))

    def lost_output_per_t(self, draws: int, seed: int) -> np.ndarray:
        """Per node, the consuming industries' lost output per tonne short, ``P0 (E[M] A + B)`` (USD/t;
        docs/simulation.md §6-7), with M averaged over the run's draws; 0 where P0 is unknown. Price transfers
        (input cost, producers' gains) are left out: this is what a tonne of supply restored is worth."""
        nd = NodeDraws.sample(self.nodes, self.params, draws, seed)
        m = nd.values["downstream_value_multiple"].mean(axis=1)
        p0 = np.array([n.p0_usd_per_t for n in self.nodes.nodes])
        v = p0 * (m * self.chain.unlinked + self.chain.linked_value)
        return np.where(np.isfinite(v), v, 0.0)

    def _node_and_fallback_share(self, key: str) -> tuple[Node, float]:
        """Node ``key`` and its ``restrictor_export_share`` parameter (the export share where the trade data has none)."""
        node = self.nodes.nodes[self.nodes.index[key]]
        return node, float(self.params.resolve("restrictor_export_share", node.commodity, node.stage, node.group).value)

    def share_of_added_supply(self, key: str, members: tuple[str, ...] | list[str]) -> tuple[float, str]:
        """The share of a tonne added at node ``key`` outside its dominant supplier that reaches ``members``, and its
        basis (:func:`critmin.simulate.nodes.share_of_added_supply`)."""
        node, e = self._node_and_fallback_share(key)
        return share_of_added_supply(node, members, e)

    def rationed_market_t(self, key: str) -> float:
        """Tonnes a year of node ``key`` sold outside its dominant supplier's home use, ``d_T Q0``
        (:func:`critmin.simulate.nodes.market_outside_restrictor`): the market a stock is bought in."""
        node, e = self._node_and_fallback_share(key)
        return market_outside_restrictor(node, e)[0] * node.q0_t

    @staticmethod
    def value_per_t_supplied(node_draws: dict[str, np.ndarray], key: str, perspective: int, valuation: str = "welfare") -> float:
        """What one more tonne supplied to a perspective that is short at a node is worth (USD/t), over a risk run's
        draws: what a tonne short is worth to the buyers who go without it,

            v_jn = sum_s SV_jns / sum_s D_jns        (USD/t; 0 when the node never runs short)

        ``SV`` the supply value (``ChunkResult.supply_value``) and ``D`` the shortfall. A tonne released from a stock,
        or made by a project, fills a gap rationed at the choke price (saving the mean value of the uses rationed there, at
        most the output they enable, M_eff) or a use
        given up at the higher price (saving its premium p - 1 over the old price, which the choke price keeps below
        the output it enables), and below the choke it lowers the targeted price the participant pays on its other
        tonnes by its first-order effect (docs/simulation.md §7), at most the participant's input cost. The consumer
        loss per tonne short (``sum L / sum D``, the rule until December 2026) charged the whole market's price rise
        to each tonne short, so a cobalt stock of $102 M "saved" $1.9 B a year. ``v E[D] = E[SV]``.
        ``valuation="input_output"`` reads the supply value with every tonne not consumed at the output multiple
        (the portfolio's robustness check)."""
        nd = node_draws[key]
        short = float(nd[3 + perspective].sum())
        return float(nd[SUPPLY_ROW[valuation] + perspective].sum()) / short if short > 0 else 0.0

    @staticmethod
    def price_value_per_t_supplied(node_draws: dict[str, np.ndarray], key: str, perspective: int, valuation: str = "welfare") -> float:
        """The part of :meth:`value_per_t_supplied` that is the price effect (USD/t): the fall of the targeted price
        on the perspective's purchases, which a tonne brings whichever buyer of the segment receives it,
        ``Σ_s PE_jns / Σ_s D_jns``."""
        nd = node_draws[key]
        short = float(nd[3 + perspective].sum())
        return float(nd[PRICE_ROW[valuation] + perspective].sum()) / short if short > 0 else 0.0

    def metadata(self, draws: int, seed: int) -> dict[str, Any]:
        from critmin.version import __version__

        return {
            "critmin_version": __version__,
            "data_version": self.atlas.data_version,
            "draws": draws,
            "seed": seed,
            "parameters": self.params.origin,
            "data_files": self.data_files,
            "parameters_sha256": self.params.sha256,
            "probability_model": self.probability.summary(),
            "regime_model": self.regimes.summary() if self.regimes is not None else None,
        }


@dataclass
class RunResult:
    """Labelled results of a run.

    - ``scenarios``: one row per scenario × perspective (USA, JPN, BLOC): probability, expected loss and its
      decomposition (USD, conditional on the scenario happening), VaR/CVaR 95 %, shortfall (t), price ratios.
    - ``totals``: per commodity × perspective × draw, the loss of the scenarios that occur in that draw.
    - ``paths``: monthly bands (only for runs with ``keep_paths``).
    """

    scenarios: pd.DataFrame
    totals: dict[str, np.ndarray]
    paths: pd.DataFrame | None
    metadata: dict[str, Any]
    evaluations: int = 0
    flags: dict[str, list[str]] = field(default_factory=dict)
    #: per node, shape (NODE_ROWS, draws): loss USA, JPN, BLOC (USD), shortfall USA, JPN, BLOC (t), months of
    #: disruption (max over the scenarios that occur at the node in the draw), then the supply value (USD) per
    #: perspective, welfare valuation (rows 7-9) and input-output convention (10-12); only for runs with
    #: probabilities.
    #: ``totals`` and ``node_draws`` leave out, per perspective, the participant's own export restrictions.
    node_draws: dict[str, np.ndarray] = field(default_factory=dict)
    #: (scenarios, 3, draws) consumer loss per scenario, perspective (USA, JPN, BLOC) and draw, conditional on
    #: the scenario happening; only for runs with ``keep_draws`` (the risk ranking's tail estimator).
    draw_loss: np.ndarray | None = None


def _quantiles(x: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """VaR_q (the q-quantile over the last axis, linear interpolation) and CVaR_q of equally weighted draws.

    CVaR is the Rockafellar-Uryasev tail mean ``VaR + E[(x - VaR)+] / (1 - q)``, so ``VaR <= CVaR`` and
    ``mean <= CVaR`` hold by construction (up to rounding) for any number of draws.
    """
    var = np.quantile(x, q, axis=-1)
    cvar = var + np.maximum(x - var[..., None], 0.0).mean(axis=-1) / (1.0 - q)
    return var, np.maximum(cvar, var)


def weighted_tail(values: np.ndarray, weights: np.ndarray, q: float = 0.95) -> tuple[float, float, float]:
    """Mean, VaR_q and CVaR_q of a discrete distribution (``values`` with probabilities ``weights``, summing to 1).

    VaR is the smallest value whose cumulative probability reaches ``q``; CVaR the mean of the upper
    ``1 - q`` of the probability mass (the atom at VaR counted in part): ``mean <= CVaR`` and ``VaR <= CVaR``.
    """
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    w = w / w.sum()
    cum = np.cumsum(w)
    k = min(int(np.searchsorted(cum, q - 1e-12)), len(v) - 1)
    var = float(v[k])
    tail = float(np.sum(w[k + 1:] * v[k + 1:]) + (cum[k] - q) * var) if k + 1 <= len(v) else var
    cvar = tail / (1.0 - q)
    return float(np.dot(w, v)), var, max(cvar, var)


def run_chunk(
    b: Batch,
    draws: NodeDraws,
    settings: dict[str, float],
    seed: int,
    keep_paths: bool = False,
    keep_draws: bool = False,
) -> dict[str, Any]:
    """Evaluate one chunk and reduce it (module-level so Dask can ship it)."""
    r = evaluate_chunk(b, draws, settings, seed, keep_paths)
    D = draws.draws
    loss = np.concatenate([r.loss, r.loss.sum(axis=1, keepdims=True)], axis=1)  # (S, 3, D) consumer loss
    comp = {
        "input_cost": r.input_cost,
        "lost_output": r.lost_output,
        "lost_output_io": r.lost_output_io,
        "producer_gain": r.producer_gain,
        "rationed": r.rationed_t,
    }
    comp = {k: np.concatenate([v, v.sum(axis=1, keepdims=True)], axis=1).mean(axis=2) for k, v in comp.items()}
    short_d = np.concatenate([r.shortfall_t, r.shortfall_t.sum(axis=1, keepdims=True)], axis=1)  # (S, 3, D)
    lost_d = np.concatenate([r.supply_value, r.supply_value_bloc[:, None, :]], axis=1)
    io_d = np.concatenate([r.supply_value_io, r.supply_value_io_bloc[:, None, :]], axis=1)
    pp_d = np.concatenate([r.supply_price, r.supply_price_bloc[:, None, :]], axis=1)
    pp_io_d = np.concatenate([r.supply_price_io, r.supply_price_io_bloc[:, None, :]], axis=1)
    risk_usd = np.concatenate([r.at_risk_usd, r.at_risk_usd.sum(axis=1, keepdims=True)], axis=1)
    # a tonne drawn from a stock is bought back at the price of the participant's segment (before the chance that
    # the disruption still holds then, applied by the caller)
    p0 = np.where(b.q0_t > 0, b.value_usd / np.where(b.q0_t > 0, b.q0_t, 1.0), 0.0)
    prem = np.maximum(np.where(b.in_t[:, :, None], r.price_t[:, None, :], r.price_u[:, None, :]) - 1.0, 0.0) * p0[:, None, None]
    refill_j = r.shortfall_t * prem
    refill_d = np.concatenate([refill_j, refill_j.sum(axis=1, keepdims=True)], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        at_risk = np.where(risk_usd > 0, loss / risk_usd, 0.0)
    var, cvar = _quantiles(loss, 0.95)
    pk = np.quantile(r.peak_price, [0.05, 0.5, 0.95], axis=1)
    out: dict[str, Any] = {
        "ids": b.ids,
        "mean": loss.mean(axis=2),
        "se": loss.std(axis=2) / np.sqrt(D),
        "p05": np.quantile(loss, 0.05, axis=2),
        "p95": np.quantile(loss, 0.95, axis=2),
        "var95": var,
        "cvar95": cvar,
        "rel": at_risk.mean(axis=2),
        "short_p": (short_d > 0).mean(axis=2),
        "short": short_d.mean(axis=2),
        "peak": pk.T,
        "peak_mean": r.peak_price.mean(axis=1),
        "price_u": r.price_u.mean(axis=1),
        "price_t_mean": r.price_t.mean(axis=1),
        "stock": r.stock_used_t.mean(axis=1),
        **comp,
    }
    # occurrence: one uniform per family and draw; scenario k of a family occurs when u in [lo_k, hi_k).
    # Returned sparse (draw indices and losses per scenario) and summed in scenario order by the caller, so
    # totals do not depend on how scenarios were split into chunks.
    hits: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    occurs = b.prob_hi > b.prob_lo
    if occurs.any():
        fams = sorted({b.family[i] for i in np.flatnonzero(occurs)})
        u = {f: keyed_uniforms(seed, "family:" + f, 2, (D,)) for f in fams}
        for i in np.flatnonzero(occurs):
            uf = u[b.family[i]]
            idx = np.flatnonzero((uf >= b.prob_lo[i]) & (uf < b.prob_hi[i]))
            if idx.size:
                hits[int(i)] = (idx, np.nan_to_num(np.vstack([loss[i][:, idx], short_d[i][:, idx], lost_d[i][:, idx], io_d[i][:, idx],
                                                              refill_d[i][:, idx], pp_d[i][:, idx], pp_io_d[i][:, idx]]), nan=0.0))
    out["hits"] = hits
    if keep_paths and r.paths is not None:
        out["paths"] = r.paths
    if keep_draws:
        out["draws"] = loss
    return out


def with_captive_feed(sim: Simulator) -> Simulator:
    """The simulator with each participant's demand at an ore node net of its plants' captive feed
    (``captive_feed.csv``): ``d_j' = max(d_j - c_j I_j / Q0, 0)``, with ``I_j`` the participant's plant intake of the
    ore (:func:`critmin.simulate.ore.plant_intake_t`) and ``c_j`` the captive share of it. Review 24: Japan's cobalt
    loss charged Niihama's whole intake to the DRC's quota, although about 60 % of it is mixed sulphide from SMM's own
    Philippine plants; the rest of Japan's use (refined imports) stays exposed at the node."""
    from critmin.simulate.ore import plant_intake_t

    if not sim.captive_feed:
        return sim
    nodes = list(sim.nodes.nodes)
    for (j, key), r in sorted(sim.captive_feed.items()):
        i = sim.nodes.index[key]
        n = nodes[i]
        d = n.demand_share.get(j, np.nan)
        intake = plant_intake_t(sim, n, j)
        if intake is None or not (np.isfinite(d) and np.isfinite(n.q0_t) and n.q0_t > 0):
            continue
        captive = float(r["share_of_intake"]) * intake
        nodes[i] = replace(n, demand_share={**n.demand_share, j: max(d - captive / n.q0_t, 0.0)},
                           demand_basis={**n.demand_basis, j: f"{n.demand_basis.get(j, '')}; less {captive:,.0f} t of its plant's captive feed "
                                                              f"({r['feed_country']}, captive_feed.csv)"},
                           flags=[*n.flags, f"{j} demand net of {captive:,.0f} t of captive feed from {r['feed_country']} "
                                            f"({float(r['share_of_intake']):.0%} of its plant's intake, an estimate: captive_feed.csv)"])
    return replace(sim, nodes=NodeTable(nodes, sim.nodes.product_values))


def refill_persistence(sim: Simulator, scenario: Scenario) -> float:
    """Probability that the disruption of ``scenario`` still holds when a stock drawn against it is refilled, a year
    after the draw (docs/stockpile.md §2):

    - a control in force or one of its outcomes (family ``ctl.*``, open-ended) holds unless relaxed for every buyer:
      ``1 - P(relaxation)`` of its restrictor, counting only relaxations of the control for every destination (the
      regime model, docs/simulation.md §10.1), as in the risk family that sizes the draw (review 27: a U.S. row with
      0.906 of shortfalls and China's U.S.-only 0.265 of relaxation summed to 1.17);
    - a new event of ``d`` months: the share of its months whose tonnes are bought back before it ends,
      ``max(d - 12, 0) / d`` (0 for a year or less: refilled at the baseline price)."""
    if scenario.family.startswith("ctl.") and sim.regimes is not None:
        return 1.0 - max(sim.regimes.probability_for(r, "relaxation", "WORLD") for r in scenario.restrictors)
    d = float(scenario.duration_months)
    return max(d - 12.0, 0.0) / d if d > 0 else 0.0


def _chunks(b: Batch, draws: int, chunk_elements: int) -> list[np.ndarray]:
    """Scenario index blocks of at most about ``chunk_elements`` scenario-draws each; the scenarios of one path
    (equal but for their duration) stay in one block, and blocks hold paths of equal length."""
    per = max(1, chunk_elements // max(draws, 1))
    members: dict[str, list[int]] = {}
    for i, k in enumerate(b.path):
        members.setdefault(k, []).append(i)
    groups = sorted(members.values(), key=lambda ix: (int(max(b.duration[ix])), ix[0]))
    out: list[np.ndarray] = []
    cur: list[int] = []
    cur_len = -1
    for ix in groups:
        length = int(max(b.duration[ix]))
        if cur and (len(cur) + len(ix) > per or length != cur_len):
            out.append(np.array(cur, dtype=np.int64))
            cur = []
        cur.extend(ix)
        cur_len = length
    if cur:
        out.append(np.array(cur, dtype=np.int64))
    return out


def run(
    sim: Simulator,
    scenarios: list[Scenario],
    *args: Any,
    origin: str = "",
    **kwargs: Any,
) -> RunResult:
    """Simulate ``scenarios`` (see :func:`_run`); ``origin`` names the file they came from in errors."""
    sim.check(scenarios, origin)
    return _run(sim, scenarios, *args, **kwargs)


def _run(
    sim: Simulator,
    scenarios: list[Scenario],
    draws: int = 1000,
    seed: int = 0,
    probabilities: list[float] | None = None,
    keep_paths: bool = False,
    keep_draws: bool = False,
    threads: int = 2,
    client: Any = None,
    chunk_elements: int = CHUNK_ELEMENTS,
    progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Simulate ``scenarios`` over ``draws`` Monte Carlo draws (see module docstring)."""
    if draws < 1:
        raise ValueError("draws must be at least 1")
    batch = compile_batch(scenarios, sim.nodes, sim.chain, sim.params, probabilities)
    nd = NodeDraws.sample(sim.nodes, sim.params, draws, seed)
    blocks = _chunks(batch, draws, chunk_elements)
    parts: list[dict[str, Any]] = [{}] * len(blocks)
    done = 0
    if client is not None:
        nd_f = client.scatter(nd, broadcast=True)
        futures = [
            client.submit(run_chunk, batch.take(ix), nd_f, sim.settings, seed, keep_paths, keep_draws, pure=False)
            for ix in blocks
        ]
        from distributed import as_completed

        pos = {f.key: i for i, f in enumerate(futures)}
        try:
            for f in as_completed(futures):
                parts[pos[f.key]] = f.result()
                done += 1
                if progress:
                    progress(done, len(blocks))
        except BaseException:
            client.cancel(futures)
            raise
    else:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as ex:
            futs = [ex.submit(run_chunk, batch.take(ix), nd, sim.settings, seed, keep_paths, keep_draws) for ix in blocks]
            try:
                for i, f in enumerate(futs):
                    parts[i] = f.result()
                    done += 1
                    if progress:
                        progress(done, len(blocks))
            except BaseException:
                for f in futs:  # a progress callback that raises (a cancelled job) stops the chunks not yet started
                    f.cancel()
                raise
    return _assemble(sim, scenarios, batch, blocks, parts, draws, seed, probabilities, keep_paths, keep_draws)


def outcome_kind(scenario_id: str, commodity: str, stage: str) -> str:
    """The outcome a scenario stands for at its node, for pairing it with the same outcome of its event at another
    node: ``ev`` for the event as it is, else the id's tail after the node (``tighten``, ``ban.JPN``), prefixed by the
    family kind (``evo``)."""
    head, _, tail = scenario_id.partition(f".{commodity}.{stage}")
    kind = head.split(".")[0]
    tail = tail.lstrip(".")
    return "ev" if kind == "ev" and not tail else f"{kind}:{tail}"


def _gain_on_inputs_left(sim: Simulator, scenarios: list[Scenario], batch: Batch, short: np.ndarray, rationed: np.ndarray,
                         pg: np.ndarray) -> tuple[np.ndarray, dict[int, list[str]]]:
    """The producers' gain of each scenario scaled by the share of their output their inputs still allow where the
    scenario's event, or a control in force it is composed on (its ``ctl.*`` family), also restricts a node feeding
    theirs (:func:`critmin.simulate.engine.input_availability`; docs/simulation.md §7), and the flags saying so.

    The output a shortfall stops is what the ranked valuation counts as output lost: the tonnes rationed at the choke
    price and ``f_p`` (``price_cut_output_fraction``) of the tonnes given up at the higher price (review 30 F3: the
    tonnes given up, thrifted or substituted stop no output in the model). Each outcome is paired with the same
    outcome of its event at the input (review 30 F4: a tightening with the tightening), else with the event as it is;
    the bloc's gain is the sum of the participants'."""
    event_nodes = event_node_map(sim.atlas.tables.get("event_scenarios"))
    if not event_nodes:
        return pg, {}
    feeds = feeding_nodes(sim.chain)
    f_p = float(sim.settings.get("price_cut_output_fraction", 0.0))
    # the participants' consumption at each node (t/yr; BLOC the sum) and each event scenario's output-stopping tonnes
    use = {n.key: np.array([n.demand_share[p] * n.q0_t for p in PARTICIPANTS] + [sum(n.demand_share[p] * n.q0_t for p in PARTICIPANTS)])
           for n in sim.nodes.nodes}
    by_kind: dict[tuple[str, str, str], np.ndarray] = {}
    in_force: dict[str, set[str]] = {}
    for i, sc in enumerate(scenarios):
        if not sc.event_id:
            continue
        key = f"{sc.commodity}/{sc.stage}"
        u = use[key] * sc.duration_months / 12.0
        stopped = rationed[i] + f_p * np.maximum(short[i] - rationed[i], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            sh = np.where(u > 0, stopped / u, 0.0)
        by_kind.setdefault((sc.event_id, key, outcome_kind(sc.id, sc.commodity, sc.stage)), np.nan_to_num(sh))
        if sc.status == "in_force" and batch.family[i].startswith("ctl."):
            in_force.setdefault(batch.family[i], set()).add(sc.event_id)
    out = pg.copy()
    flags: dict[int, list[str]] = {}
    for i, sc in enumerate(scenarios):
        events = ({sc.event_id} if sc.event_id else set()) | in_force.get(batch.family[i], set())
        if not events or not (pg[i] != 0).any():
            continue
        kind = outcome_kind(sc.id, sc.commodity, sc.stage)
        # the same outcome of the scenario's own event at the input, else (and for the controls it is composed on) the
        # event as it is
        share = {(e, k): v for e, k in {(e, k) for (e, k, _) in by_kind if e in events}
                 if (v := by_kind.get((e, k, kind if e == sc.event_id else "ev"), by_kind.get((e, k, "ev")))) is not None}
        a, cut = input_availability(int(batch.node[i]), events, event_nodes, feeds, sim.nodes, share)
        if not cut:
            continue
        out[i, :2] = pg[i, :2] * a[:2]
        out[i, 2] = out[i, :2].sum()
        flags[i] = [f"producers' gain on the inputs left ({', '.join(cut)} restricted by the same event): credited on "
                    + ", ".join(f"{p} {x:.0%}" for p, x in zip(PARTICIPANTS, a[:2], strict=True)) + " of their output"]
    return out, flags


def _assemble(
    sim: Simulator,
    scenarios: list[Scenario],
    batch: Batch,
    blocks: list[np.ndarray],
    parts: list[dict[str, Any]],
    draws: int,
    seed: int,
    probabilities: list[float] | None,
    keep_paths: bool,
    keep_draws: bool = False,
) -> RunResult:
    S = len(batch)
    order = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int64)
    def cat(key: str) -> np.ndarray:
        arr = np.concatenate([p[key] for p in parts], axis=0)
        out = np.empty_like(arr)
        out[order] = arr
        return out
    mean, p05, p95, var, cvar = cat("mean"), cat("p05"), cat("p95"), cat("var95"), cat("cvar95")
    se = cat("se")
    rel, short, short_p = cat("rel"), cat("short"), cat("short_p")
    ic, lo, pg = cat("input_cost"), cat("lost_output"), cat("producer_gain")
    lo_io, rationed = cat("lost_output_io"), cat("rationed")
    peak, peak_mean, price_u, stock = cat("peak"), cat("peak_mean"), cat("price_u"), cat("stock")
    price_t_mean = cat("price_t_mean")
    probs = np.asarray(probabilities if probabilities is not None else [np.nan] * S, dtype=float)
    pg, gain_flags = _gain_on_inputs_left(sim, scenarios, batch, short, rationed, pg)
    rows = []
    for i, sc in enumerate(scenarios):
        n = sim.nodes.nodes[batch.node[i]]
        for j, per in enumerate(PERSPECTIVES):
            rows.append(
                {
                    "scenario": sc.id,
                    "commodity": sc.commodity,
                    "stage": sc.stage,
                    "restrictors": ";".join(sc.restrictors),
                    "targets": ";".join(sc.targets),
                    "family": batch.family[i],
                    "duration_months": sc.duration_months,
                    "status": sc.status,
                    "perspective": per,
                    "probability": probs[i],
                    "expected_loss_usd": mean[i, j],
                    "net_loss_usd": mean[i, j] - pg[i, j],
                    "loss_se_usd": se[i, j],
                    "input_cost_usd": ic[i, j],
                    "lost_output_usd": lo[i, j],
                    "lost_output_io_usd": lo_io[i, j],
                    "producer_gain_usd": pg[i, j],
                    "loss_p05_usd": p05[i, j],
                    "loss_p95_usd": p95[i, j],
                    "var95_usd": var[i, j],
                    "cvar95_usd": cvar[i, j],
                    "loss_share_of_output_at_risk": rel[i, j],
                    "shortfall_t": short[i, j],
                    "rationed_t": rationed[i, j],
                    "probability_of_shortfall": min(max(float(short_p[i, j]), 0.0), 1.0),
                    "downstream_shortfall_t": {k: round(v, 6) for k, v in downstream_shortfall(sim.nodes, sim.chain, int(batch.node[i]), float(short[i, j])).items()},
                    "peak_price_ratio_mean": peak_mean[i],
                    "peak_price_ratio_p05": peak[i, 0],
                    "peak_price_ratio_p50": peak[i, 1],
                    "peak_price_ratio_p95": peak[i, 2],
                    "unrestricted_price_ratio": price_u[i],
                    "targeted_price_ratio_mean": price_t_mean[i],
                    "stock_drawn_t": stock[i],
                    "world_output_t": n.q0_t,
                    "price_usd_per_t": n.p0_usd_per_t,
                    "flags": "; ".join(dict.fromkeys([*batch.flags[i], *gain_flags.get(i, [])])),
                }
            )
    df = pd.DataFrame(rows)
    totals: dict[str, np.ndarray] = {}
    hits: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for ix, p in zip(blocks, parts, strict=True):
        for k, h in p["hits"].items():
            hits[int(ix[k])] = h
    node_draws: dict[str, np.ndarray] = {}
    # a participant's own export restrictions are its policy, not a supply risk to it: left out of its totals
    own = [{p} for p in PARTICIPANTS] + [set(PARTICIPANTS)]
    for i in sorted(hits):
        c = scenarios[i].commodity
        keep = np.array([0.0 if own[j] & set(scenarios[i].restrictors) else 1.0 for j in range(3)])
        tot = totals.setdefault(c, np.zeros((3, draws)))
        idx, vals = hits[i]
        tot[:, idx] += vals[:3] * keep[:, None]
        nd = node_draws.setdefault(f"{c}/{scenarios[i].stage}", np.zeros((NODE_ROWS, draws)))
        k6 = np.concatenate([keep, keep])[:, None]
        nd[:6, idx] += vals[:6] * k6
        nd[6, idx] = np.maximum(nd[6, idx], np.where(vals[5] * keep[2] > 0, float(scenarios[i].duration_months), 0.0))
        nd[7:10, idx] += vals[6:9] * keep[:, None]
        nd[10:13, idx] += vals[9:12] * keep[:, None]
        nd[13:16, idx] += vals[12:15] * keep[:, None] * refill_persistence(sim, scenarios[i])
        nd[16:22, idx] += vals[15:21] * np.concatenate([keep, keep])[:, None]
    paths = None
    if keep_paths:
        paths = _path_bands(scenarios, batch, blocks, parts)
    return RunResult(df, totals, paths, sim.metadata(draws, seed), evaluations=S * draws, node_draws=node_draws,
                     draw_loss=cat("draws") if keep_draws else None)


def _path_bands(scenarios: list[Scenario], batch: Batch, blocks: list[np.ndarray], parts: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for ix, p in zip(blocks, parts, strict=True):
        for k, i in enumerate(ix):
            months = int(batch.duration[i])
            for t in range(months):
                rec: dict[str, Any] = {"scenario": scenarios[i].id, "month": t + 1}
                for name, arr in p["paths"].items():
                    col = arr[k, :, t]
                    if np.isnan(col).all():
                        q = np.full(3, np.nan)
                        rec[f"{name}_p05"] = rec[f"{name}_p50"] = rec[f"{name}_p95"] = rec[f"{name}_mean"] = np.nan
                        continue
                    q = np.nanquantile(col, [0.05, 0.5, 0.95])
                    rec[f"{name}_p05"], rec[f"{name}_p50"], rec[f"{name}_p95"] = (float(x) for x in q)
                    rec[f"{name}_mean"] = float(np.nanmean(col))
                rows.append(rec)
    return pd.DataFrame(rows)


__all__ = ["NP", "PERSPECTIVES", "RunResult", "Simulator", "run", "run_chunk"]
