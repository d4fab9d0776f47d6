"""Vectorised disruption engine: scenarios × draws × months for many nodes at once.

``compile_batch`` turns scenarios into arrays; ``NodeDraws`` samples the uncertain parameters per node and
draw; ``evaluate_chunk`` steps a block of scenarios through their months and returns the loss components
per participant. Scenarios that differ only in their duration share one monthly path (their months are the
first months of the longest), so a generated family of 3, 6, 12 and 24 months costs one 24-month path.
Randomness is keyed by node and path identifiers (never by position), so any split of the work (chunks,
threads, Dask workers) gives identical numbers for the same seed. Equations: docs/simulation.md §4-7.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from critmin.simulate.market import clear_month, release_to_cap, stock_demand
from critmin.simulate.nodes import PARTICIPANTS, NodeTable, under_input_control
from critmin.simulate.parameters import SAMPLED, Parameters
from critmin.simulate.scenario import Response, Scenario

NP = len(PARTICIPANTS)
SAMPLED_NAMES = tuple(SAMPLED)
#: Monthly path quantities kept with ``keep_paths`` (per scenario, draw and month).
PATH_KEYS = ("price_t", "price_u", "shortfall_usa", "shortfall_jpn", "stock_left", "commercial_stock_t")


def stable_key(text: str) -> int:
    """A stable 32-bit key of an identifier (CRC-32), used to seed its random stream."""
    return zlib.crc32(text.encode("utf-8"))


def keyed_uniforms(seed: int, key: str, stream: int, shape: tuple[int, ...]) -> np.ndarray:
    """Uniforms on [0, 1) from the stream (seed, key, stream): independent of how work is split."""
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(stable_key(key), stream))
    return np.random.Generator(np.random.PCG64(ss)).random(shape)


def triangular_quantile(u: np.ndarray, lo: np.ndarray, mode: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Inverse CDF of the triangular distribution (lo, mode, hi) at ``u``; ``lo`` where ``hi <= lo``."""
    width = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(width > 0, (mode - lo) / width, 0.0)
        left = lo + np.sqrt(np.maximum(u * width * (mode - lo), 0.0))
        right = hi - np.sqrt(np.maximum((1.0 - u) * width * (hi - mode), 0.0))
    return np.where(width > 0, np.where(u < c, left, right), lo)


@dataclass
class NodeDraws:
    """Sampled parameters: ``values[name]`` has shape (nodes, draws); ``export_u`` the uniform that places
    each node's restrictor export share within its range (docs/simulation.md §3)."""

    values: dict[str, np.ndarray]
    export_u: np.ndarray
    draws: int
    seed: int

    @classmethod
    def sample(cls, nodes: NodeTable, params: Parameters, draws: int, seed: int) -> NodeDraws:
        out = {name: np.empty((len(nodes), draws)) for name in SAMPLED_NAMES}
        eu = np.empty((len(nodes), draws))
        for i, n in enumerate(nodes.nodes):
            u = keyed_uniforms(seed, "node:" + n.key, 0, (len(SAMPLED_NAMES) + 1, draws))
            for j, name in enumerate(SAMPLED_NAMES):
                out[name][i] = params.resolve(name, n.commodity, n.stage, n.group).quantile(u[j])
            eu[i] = u[-1]
        return cls(out, eu, draws, seed)


@dataclass
class ChainFactors:
    """Per node: how a tonne short is valued (docs/simulation.md §6) and the downstream links.

    Lost output per tonne short of node u, in units of its price P0_u: ``M_u · unlinked_u + linked_value_u``;
    ``factor`` = unlinked + linked_value (the value with M = 1).
    """

    unlinked: np.ndarray
    linked_value: np.ndarray
    links: list[list[tuple[int, float, float]]]  # per node: (downstream node index, use_share, input_t_per_t)
    flags: list[list[str]] = field(default_factory=list)
    #: per participant (PARTICIPANTS order) × node: the same factors with the participant's own use shares
    #: where ``participant_use_shares.csv`` gives them (the world factors elsewhere)
    unlinked_p: np.ndarray | None = None
    linked_value_p: np.ndarray | None = None
    #: per node: the share of its use that makes derivative products (priced links); a buyer pays at most the
    #: input's own price on that share plus the value added it enables (the choke price, docs/simulation.md §4.5)
    derivative_share: np.ndarray | None = None

    @property
    def factor(self) -> np.ndarray:
        return self.unlinked + self.linked_value


def chain_factors(nodes: NodeTable, coefficients: list[dict[str, object]], params: Parameters | None = None,
                  participant_shares: list[dict[str, object]] | None = None,
                  value_added: dict[str, float] | None = None) -> ChainFactors:
    """Valuation of a tonne short along the chain (docs/simulation.md §6): ``M_u · A_u + B_u`` in units of P0_u.

    - The share of u's use that leaves the modelled chain (``a_u = 1 - Σ_v α_uv``) costs its users' lost output,
      ``M`` per USD of material (the ``downstream_value_multiple`` parameter).
    - A link to a later stage of the **same commodity** (mine -> refine) carries the tonnes on: the tonne is
      valued as the downstream stage values it, ``(α_uv / c_uv)(P0_v / P0_u)(M A_v + B_v)``.
    - A link into a **derivative product** (oxide -> magnet, graphite -> anode -> cells) is valued at the product
      not made, ``(α_uv / c_uv)(P0_v / P0_u) G_v`` with ``G_v = a_v + Σ_w (α_vw / c_vw)(P0_w / P0_v) G_w``: the
      product value, without M (a direct shortage of the product itself is valued at M × its value).
      With ``value_added`` (node key -> value added / gross output of the product's industry), a product not made
      costs its maker's value added and what it stops downstream, ``G_v = va_v + Σ_w (α_vw / c_vw)(P0_w / P0_v) G_w``:
      the other inputs of a product not made are not bought, so its gross value overstates the loss (the GDP
      measure of the USGS estimates). Products without a ratio keep ``G_v = a_v + Σ_w ...`` (flagged).

    ``unlinked`` = A (multiplies M), ``linked_value`` = B. ``α_uv`` = share of u's use that makes v, ``c_uv`` = t
    of u per t of v. A link whose product has no price stays in the unlinked share (flagged). A node whose
    ``downstream_value_multiple`` is specific to it (not the ``*`` default) already covers its whole chain:
    A = 1, B = 0. ``participant_shares`` (rows participant, from/to node, use_share) replace ``α_uv`` for one
    participant (its own end uses: U.S. cobalt goes mostly to superalloys, not to battery cathodes); the
    factors per participant are ``unlinked_p``/``linked_value_p``.
    """
    va = dict(value_added or {})
    links: list[list[tuple[int, float, float]]] = [[] for _ in nodes.nodes]
    for r in coefficients:
        u = nodes.index.get(f"{r['from_commodity']}/{r['from_stage']}")
        v = nodes.index.get(f"{r['to_commodity']}/{r['to_stage']}")
        a, c = float(r.get("use_share") or np.nan), float(r.get("input_t_per_t") or np.nan)  # type: ignore[arg-type]
        if u is None or v is None or not (np.isfinite(a) and np.isfinite(c) and c > 0 and a > 0):
            continue
        links[u].append((v, a, c))
    n = len(nodes)
    flags: list[list[str]] = [[] for _ in nodes.nodes]
    fixed: set[int] = set()
    if params is not None:
        for i, node in enumerate(nodes.nodes):
            spec = params.resolve("downstream_value_multiple", node.commodity, node.stage, node.group)
            if spec.scope != "*":
                fixed.add(i)
                flags[i].append(f"downstream multiple {spec.value:g} ({spec.scope}) covers the whole chain")

    def price_ok(i: int) -> bool:
        p = nodes.nodes[i].p0_usd_per_t
        return bool(np.isfinite(p) and p > 0)

    own: dict[str, dict[tuple[int, int], float]] = {}
    for r in participant_shares or []:
        u = nodes.index.get(f"{r['from_commodity']}/{r['from_stage']}")
        v = nodes.index.get(f"{r['to_commodity']}/{r['to_stage']}")
        a = float(r.get("use_share") or np.nan)  # type: ignore[arg-type]
        if u is not None and v is not None and np.isfinite(a):
            own.setdefault(str(r["participant"]), {})[(u, v)] = a

    def factors(shares: dict[tuple[int, int], float], record: bool) -> tuple[np.ndarray, np.ndarray]:
        def usable(i: int) -> list[tuple[int, float, float]]:
            return [(v, shares.get((i, v), a), c) for v, a, c in links[i] if price_ok(v) and price_ok(i)]

        g_memo: dict[int, float] = {}

        def product_value(i: int, depth: int = 0) -> float:
            if i not in g_memo:
                use = usable(i) if depth < 10 else []
                own_part = va.get(nodes.nodes[i].key, max(1.0 - sum(a for _, a, _ in use), 0.0))
                g_memo[i] = own_part + sum(
                    a / c * nodes.nodes[v].p0_usd_per_t / nodes.nodes[i].p0_usd_per_t * product_value(v, depth + 1) for v, a, c in use)
            return g_memo[i]

        ab_memo: dict[int, tuple[float, float]] = {}

        def value(i: int, depth: int = 0) -> tuple[float, float]:
            if i in fixed:
                return 1.0, 0.0
            if i not in ab_memo:
                use = usable(i) if depth < 10 else []
                if depth == 0 and record:
                    flags[i].extend(f"no price for {nodes.nodes[lk[0]].key}: its use valued like the unlinked share"
                                    for lk in links[i] if not (price_ok(lk[0]) and price_ok(i)))
                    if va:
                        flags[i].extend(f"{nodes.nodes[v].key} not made is valued at its gross output (no value-added ratio)"
                                        for v, _, _ in use if nodes.nodes[v].commodity != nodes.nodes[i].commodity
                                        and nodes.nodes[v].key not in va)
                a_i = max(1.0 - sum(a for _, a, _ in use), 0.0)
                b_i = 0.0
                for v, a, c in use:
                    k = a / c * nodes.nodes[v].p0_usd_per_t / nodes.nodes[i].p0_usd_per_t
                    if nodes.nodes[v].commodity == nodes.nodes[i].commodity:
                        av, bv = value(v, depth + 1)
                        a_i += k * av
                        b_i += k * bv
                    else:
                        b_i += k * product_value(v, depth + 1)
                ab_memo[i] = (a_i, b_i)
            return ab_memo[i]

        ua, lb = np.empty(n), np.empty(n)
        for i in range(n):
            ua[i], lb[i] = value(i)
        return ua, lb

    unlinked, linked = factors({}, True)
    unlinked_p, linked_p = np.empty((len(PARTICIPANTS), n)), np.empty((len(PARTICIPANTS), n))
    for j, iso in enumerate(PARTICIPANTS):
        unlinked_p[j], linked_p[j] = factors(own[iso], False) if iso in own else (unlinked, linked)
        for (u, v), a in sorted(own.get(iso, {}).items()):
            flags[u].append(f"{iso} use share of {nodes.nodes[v].key}: {a:g} (its own end uses, participant_use_shares.csv)")
    deriv = np.array([sum(a for v, a, c in links[i] if nodes.nodes[v].commodity != nodes.nodes[i].commodity
                          and price_ok(v) and price_ok(i)) for i in range(n)])
    return ChainFactors(unlinked, linked, links, flags, unlinked_p, linked_p, np.minimum(deriv, 1.0) if va else np.zeros(n))


#: Scenario fields that do not change the monthly path (scenarios differing only in these share one path).
_NOT_PATH = {"id", "title", "note", "duration_months", "probability", "status", "family", "event_id", "source_ids",
             "start_date", "start_month"}


#: Fields added after the random streams were keyed: in the key only when set, so the draws of every scenario that
#: does not use them stay what they were.
_KEYED_WHEN_SET: dict[str, object] = {"withheld_by_month": None, "front_loaded_share": 0.0, "input_control": None}


def path_key(s: Scenario) -> str:
    """Identifier of the scenario's monthly path: every field that shapes it, without the duration.

    Generated families share one path per (producer, node, target); the withheld share's random stream is
    keyed by it, so the 3-month scenario is exactly the first three months of the 24-month one.
    """
    if s.family.startswith("gen.") and s.withheld_share == 1.0 and s.response.stockpile is None and not s.response.demand_restraint:
        return f"{s.family}.{'-'.join(s.targets)}"
    d = {k: v for k, v in s.model_dump(mode="json").items() if k not in _NOT_PATH and not (k in _KEYED_WHEN_SET and v == _KEYED_WHEN_SET[k])}
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def random_key(s: Scenario) -> str:
    """Key of the scenario's random streams (withheld share, stocks): its path key without the buyers' response,
    so a scenario with a stockpile release or demand restraint draws the same disruption as the one without
    (common random numbers: the response's effect is not blurred by a different draw of the shock)."""
    return path_key(s) if s.response == Response() else path_key(s.model_copy(update={"response": Response()}))


@dataclass
class Batch:
    """Scenarios compiled to arrays (length S, or S × participants).

    ``e_lo, e_mode, e_hi``: the restrictors' export share (share-weighted triangular, data where the atlas has
    trade figures); ``e_data``: the part of the restrictors' output whose export share comes from data (the
    rest takes the ``restrictor_export_share`` parameter, flagged).
    """

    ids: list[str]
    path: list[str]
    rkey: list[str]  # random_key of each scenario
    node: np.ndarray
    duration: np.ndarray
    s_r: np.ndarray
    world: np.ndarray
    d_t_named: np.ndarray
    x_rt_named: np.ndarray
    in_t: np.ndarray
    d_j: np.ndarray
    s_j: np.ndarray
    j_restricts: np.ndarray
    w_lo: np.ndarray
    w_hi: np.ndarray
    leak: np.ndarray
    spare_data: np.ndarray
    e_lo: np.ndarray
    e_mode: np.ndarray
    e_hi: np.ndarray
    e_data: np.ndarray
    surplus: np.ndarray
    #: the measure's scope (low, high), the exports front-loaded before the start (share of a year's exports to
    #: the targets) and the withheld share stated month by month ((S, months), NaN after a scenario's list ends)
    scope_lo: np.ndarray
    scope_hi: np.ndarray
    front: np.ndarray
    w_month: np.ndarray
    #: (S, 3) low, mode, high of commercial stocks at the start, fractions of Q0: located in targeted countries
    #: (``loc_t``), located in the restrictors (``loc_u``; both from ``located_stocks.csv``), and the targeted
    #: buyers' stock stated by the scenario in months of their consumption (``own_months``, NaN when not stated)
    loc_t: np.ndarray
    loc_u: np.ndarray
    own_months: np.ndarray
    hold: np.ndarray
    rate: np.ndarray
    cap: np.ndarray
    rho: np.ndarray
    value_usd: np.ndarray
    q0_t: np.ndarray
    chain_a: np.ndarray
    chain_b: np.ndarray
    chain_d: np.ndarray  # derivative share of the node's use (ChainFactors.derivative_share)
    chain_a_p: np.ndarray  # (S, participants): the chain factors with each participant's own use shares
    chain_b_p: np.ndarray
    family: list[str]
    prob_lo: np.ndarray
    prob_hi: np.ndarray
    flags: list[list[str]]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx: np.ndarray) -> Batch:
        kw = {}
        for k, v in self.__dict__.items():
            kw[k] = v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx]
        return Batch(**kw)  # type: ignore[arg-type]


def withheld_bounds(s: Scenario, params: Parameters, group: str, flags: list[str] | None = None) -> tuple[float, float]:
    """(low, high) of the share of the restrictors' exports at the node that ``s`` withholds: its own range, else
    1 for bans, suspensions, closures and sanctions and the node's ``licence_denial`` range for licences and
    quotas; times the share of the node's exports the measure covers (scope). Reasons go to ``flags``."""
    rng = s.withheld_range()
    if rng is None:
        if s.regime in ("licence", "quota"):
            spec = params.resolve("licence_denial", s.commodity, s.stage, group)
            rng = (spec.low, spec.high)
            if flags is not None:
                flags.append(f"withheld share: licence_denial {spec.low:g}-{spec.high:g} ({spec.kind}, {spec.scope})")
        else:
            rng = (1.0, 1.0)
    if (s.scope_high < 1.0 or s.scope_low < 1.0) and flags is not None:
        flags.append(f"measure covers {s.scope_low:g}-{s.scope_high:g} of the node's exports (scope)")
    return rng[0] * s.scope_low, rng[1] * s.scope_high


def _target_members(targets: list[str]) -> set[str]:
    out: set[str] = set()
    for t in targets:
        out |= set(PARTICIPANTS) if t == "BLOC" else {t}
    return out


def compile_batch(
    scenarios: list[Scenario],
    nodes: NodeTable,
    chain: ChainFactors,
    params: Parameters,
    probabilities: list[float] | None = None,
) -> Batch:
    """Arrays of the scenarios; each scenario's node must be in ``nodes`` (KeyError otherwise).

    Named targets: ``X_RT = Σ_j d_j · NIR_j · m_jR`` (``m_jR`` = j's import share from the restrictors, or
    the proxy ``s_R/(1 - s_j)``); non-participant targets use the proxy ``d_j`` = j's share of world output
    at the next stage down the chain (else at this node) and ``NIR_j = max(0, 1 - s_j/d_j)``.
    """
    S = len(scenarios)
    keys = ("s_r", "d_t_named", "x_rt_named", "w_lo", "w_hi", "hold", "rho", "value_usd", "q0_t", "chain_a", "chain_b", "chain_d",
            "prob_lo", "prob_hi", "e_lo", "e_mode", "e_hi", "e_data", "surplus", "scope_lo", "scope_hi", "front")
    a = {k: np.zeros(S) for k in keys}
    node = np.zeros(S, dtype=np.int64)
    duration = np.zeros(S, dtype=np.int64)
    world = np.zeros(S, dtype=bool)
    in_t = np.zeros((S, NP), dtype=bool)
    d_j = np.zeros((S, NP))
    s_j = np.zeros((S, NP))
    j_restricts = np.zeros((S, NP), dtype=bool)
    chain_a_p = np.zeros((S, NP))
    chain_b_p = np.zeros((S, NP))
    leak = np.full(S, np.nan)
    spare = np.full(S, np.nan)
    rate = np.full(S, np.inf)
    cap = np.ones(S)
    loc_t = np.zeros((S, 3))
    loc_u = np.zeros((S, 3))
    own_months = np.full((S, 3), np.nan)
    w_month = np.full((S, max((len(sc.withheld_by_month or ()) for sc in scenarios), default=0)), np.nan)
    flags: list[list[str]] = []
    families: list[str] = []
    paths: list[str] = []
    rkeys: list[str] = []
    probs = probabilities if probabilities is not None else [0.0] * S
    fam_cum: dict[str, float] = {}
    # where a participant's producer share is an upper bound, the point of [0, bound] its gain is credited at
    bound_point = params.setting("upper_bound_share_point")
    for i, sc in enumerate(scenarios):
        ni = nodes.index[f"{sc.commodity}/{sc.stage}"]
        n = under_input_control(nodes.nodes[ni], sc.restrictors, sc.input_control)
        fl: list[str] = []
        node[i] = ni
        duration[i] = sc.duration_months
        paths.append(path_key(sc))
        rkeys.append(random_key(sc))
        rs = set(sc.restrictors)
        sr = sum(n.shares.get(r, 0.0) for r in rs)
        if sr <= 0:
            fl.append(f"restrictors {sorted(rs)} have no listed share of {n.key}: no effect")
        a["s_r"][i] = sr
        # restrictors' export share: share-weighted over the restrictors with trade data
        known = [(n.shares.get(r, 0.0), n.export_share[r]) for r in sorted(rs) if r in n.export_share and n.shares.get(r, 0.0) > 0]
        wk = sum(s for s, _ in known)
        if wk > 0:
            for k_, pos in (("e_lo", 1), ("e_mode", 0), ("e_hi", 2)):
                a[k_][i] = sum(s * float(e[pos]) for s, e in known) / wk
            fl.extend(f"{r} export share {n.export_share[r][0]:.2f} ({n.export_share[r][3]})" for r in sorted(rs) if r in n.export_share)
        a["e_data"][i] = wk / sr if sr > 0 else 1.0
        if sr > 0 and wk < sr - 1e-12:
            fl.append("restrictor export share not in the trade data: restrictor_export_share parameter (an assumption) for "
                      + ", ".join(sorted(r for r in rs if r not in n.export_share and n.shares.get(r, 0.0) > 0)))
        a["surplus"][i] = sc.market_surplus
        a["scope_lo"][i], a["scope_hi"][i], a["front"][i] = sc.scope_low, sc.scope_high, sc.front_loaded_share
        if sc.withheld_by_month:
            w_month[i, : len(sc.withheld_by_month)] = sc.withheld_by_month
            fl.append(f"withheld share stated for months 1-{len(sc.withheld_by_month)}: "
                      + ", ".join(f"{x:.2f}" for x in sc.withheld_by_month[:6]) + (" ..." if len(sc.withheld_by_month) > 6 else ""))
        if sc.front_loaded_share > 0:
            fl.append(f"exports front-loaded before the start: {sc.front_loaded_share:g} of a year's exports to the targets")
        for holder, (mode, lo, hi) in sorted(n.located_stocks.items()):
            dest = loc_u if holder in rs else loc_t
            dest[i] += np.array([lo, mode, hi]) / 12.0
            fl.append(f"stocks located in {holder}: {lo:g}-{hi:g} months of world use, "
                      f"{'in the restrictors' if holder in rs else 'available to the targeted buyers'} (located_stocks.csv)")
        if sc.stock_months is not None:
            lo_m, hi_m = sc.stock_range()
            own_months[i] = (lo_m, sc.stock_months, hi_m)
            fl.append(f"targeted buyers' stocks at the start: {lo_m:g}-{hi_m:g} months (stated by the scenario)")
        world[i] = sc.targets == ["WORLD"]
        members = set(PARTICIPANTS) - rs if world[i] else _target_members(sc.targets)
        d_named = x_named = 0.0
        for j, iso in enumerate(PARTICIPANTS):
            in_t[i, j] = iso in members
            d_j[i, j] = n.demand_share[iso]
            # review 29 F6: a share that is an upper bound (``le``) makes the producers' gain at its midpoint, as the
            # reliance values the same censored share (docs/methods.md), not at the bound
            upper = n.share_bounds.get(iso) == "le" and iso not in rs
            s_j[i, j] = n.shares.get(iso, 0.0) * (bound_point if upper else 1.0)
            if upper and n.shares.get(iso, 0.0) > 0:
                fl.append(f"{iso} producers' share {n.shares[iso]:.1%} is an upper bound: their gain is credited at "
                          f"{bound_point:g} of it (upper_bound_share_point)")
            j_restricts[i, j] = iso in rs
        if not world[i]:
            for iso in sorted(_target_members(sc.targets)):
                if iso in PARTICIPANTS:
                    d = n.demand_share[iso]
                    nir = n.nir.get(iso, np.nan)
                    if not np.isfinite(nir):
                        nir = float(np.clip(1.0 - n.shares.get(iso, 0.0) / d, 0.0, 1.0)) if d > 0 else 1.0
                        fl.append(f"{iso} reliance proxy 1 - s/d = {nir:.2f}")
                    imp = n.import_shares.get(iso, {})
                else:
                    d = downstream_share_proxy(nodes, chain, ni, iso)
                    nir = float(np.clip(1.0 - n.shares.get(iso, 0.0) / d, 0.0, 1.0)) if d > 0 else 0.0
                    imp = {}
                    fl.append(f"{iso} demand share proxy {d:.3f} (production share downstream)")
                if imp:
                    m = sum(imp.get(r, 0.0) for r in rs)
                else:
                    m = sr / max(1.0 - n.shares.get(iso, 0.0), 1e-12)
                d_named += d
                x_named += d * nir * min(m, 1.0)
        a["d_t_named"][i] = d_named
        a["x_rt_named"][i] = x_named
        a["w_lo"][i], a["w_hi"][i] = withheld_bounds(sc, params, n.group, fl)
        if sc.leakage is not None:
            leak[i] = sc.leakage
        if n.spare_by_country and np.isfinite(n.q0_t) and n.q0_t > 0:
            spare[i] = sum(v for k, v in n.spare_by_country.items() if k not in rs) / n.q0_t
        resp = sc.response
        a["rho"][i] = resp.demand_restraint
        if resp.stockpile is not None and resp.stockpile.holdings_t > 0:
            if np.isfinite(n.q0_t) and n.q0_t > 0:
                a["hold"][i] = resp.stockpile.holdings_t / n.q0_t
                if resp.stockpile.max_release_t_per_month is not None:
                    rate[i] = 12.0 * resp.stockpile.max_release_t_per_month / n.q0_t
                cap[i] = resp.stockpile.price_cap
            else:
                fl.append("stockpile ignored: world output in tonnes unknown")
        a["value_usd"][i] = n.value_usd
        a["q0_t"][i] = n.q0_t
        a["chain_a"][i] = chain.unlinked[ni]
        a["chain_b"][i] = chain.linked_value[ni]
        a["chain_d"][i] = chain.derivative_share[ni] if chain.derivative_share is not None else 0.0
        chain_a_p[i] = chain.unlinked_p[:, ni] if chain.unlinked_p is not None else chain.unlinked[ni]
        chain_b_p[i] = chain.linked_value_p[:, ni] if chain.linked_value_p is not None else chain.linked_value[ni]
        fam = sc.family if sc.family.startswith(("gen.", "ctl.")) else sc.id
        families.append(fam)
        c0 = fam_cum.get(fam, 0.0)
        p_i = min(max(float(probs[i]), 0.0), 1.0)
        a["prob_lo"][i], a["prob_hi"][i] = c0, min(c0 + p_i, 1.0)
        fam_cum[fam] = c0 + p_i
        flags.append(fl + n.flags + chain.flags[ni])
    return Batch(
        ids=[s.id for s in scenarios], path=paths, rkey=rkeys, node=node, duration=duration, world=world, in_t=in_t, d_j=d_j, s_j=s_j,
        j_restricts=j_restricts, chain_a_p=chain_a_p, chain_b_p=chain_b_p, leak=leak, spare_data=spare, rate=rate, cap=cap, family=families, flags=flags,
        loc_t=loc_t, loc_u=loc_u, own_months=own_months, w_month=w_month, **a,
    )


def event_node_map(event_scenarios: Any) -> dict[str, set[str]]:
    """Event id -> the nodes (``commodity/stage``) its measure covers, from the atlas table ``event_scenarios``
    (empty when absent); :func:`input_availability` uses it to scale the producers' gain where the same event cuts a
    stage's inputs."""
    out: dict[str, set[str]] = {}
    if event_scenarios is None or not len(event_scenarios):
        return out
    for e, c, st in zip(event_scenarios["event_id"], event_scenarios["commodity_id"], event_scenarios["stage"], strict=True):
        out.setdefault(str(e), set()).add(f"{c}/{st}")
    return out


def feeding_nodes(chain: ChainFactors) -> dict[int, set[int]]:
    """Node -> the nodes whose output it uses (the chain's links, reversed)."""
    out: dict[int, set[int]] = {}
    for u, outs in enumerate(chain.links):
        for v, _, _ in outs:
            out.setdefault(v, set()).add(u)
    return out


def input_availability(node: int, events: set[str], event_nodes: dict[str, set[str]], feeds: dict[int, set[int]],
                       nodes: NodeTable, short_share: dict[tuple[str, str], np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Per perspective (USA, JPN, BLOC), the share of their output a node's makers can still make when ``events`` also
    restrict nodes feeding theirs, and those nodes:

        a_j = 1 - max_u σ_j(u, e),   u feeding the node and covered by an event e of ``events``

    with σ_j(u, e) the participant's tonnes at u that stop output (``short_share``, keyed (event, node); see
    ``run._gain_on_inputs_left``) over its consumption there in the same run. Output falls with the scarcest
    restricted input (fixed coefficients), so the makers' gain at the higher price is credited on ``a_j`` of their
    output (reviews 28-30: a magnet maker short of dysprosium cannot sell its whole output at the magnet price;
    zeroing the gain instead charged the U.S. cell makers' buyers twice). Inputs covered by no scenario of the run
    are not scaled (``a = 1``) and are named for the flag."""
    a = np.ones(3)
    cut: list[str] = []
    for u in sorted(feeds.get(node, ())):
        key = nodes.nodes[u].key
        for e in sorted(events):
            if key not in event_nodes.get(e, ()):
                continue
            sh = short_share.get((e, key))
            cut.append(f"{key} ({e}{'' if sh is not None else ', not simulated in this run: the gain is an upper bound'})")
            if sh is not None:
                a = np.minimum(a, 1.0 - np.clip(sh, 0.0, 1.0))
    return a, cut


def downstream_shortfall(nodes: NodeTable, chain: ChainFactors, node: int, tonnes: float, depth: int = 0) -> dict[str, float]:
    """Output lost downstream (t of each product) when ``tonnes`` of ``node`` are short: ``q_v = α_uv q_u / c_uv``.

    Conservation: ``Σ_v c_uv q_v = Σ_v α_uv q_u <= q_u`` (the upstream tonnes embodied in the lost products
    never exceed the upstream shortfall). Recursive down the chain.
    """
    out: dict[str, float] = {}
    if depth > 10 or not np.isfinite(tonnes):
        return out
    for v, a, c in chain.links[node]:
        q = a * tonnes / c
        key = nodes.nodes[v].key
        out[key] = out.get(key, 0.0) + q
        for k, x in downstream_shortfall(nodes, chain, v, q, depth + 1).items():
            out[k] = out.get(k, 0.0) + x
    return out


def downstream_share_proxy(nodes: NodeTable, chain: ChainFactors, ni: int, iso: str) -> float:
    """A non-participant target's demand proxy: its share of the next stage down the chain (a chain link, else
    the next stage of the same commodity), else its share of this node."""
    from critmin.atlas.schema import STAGE_ORDER

    for v, _, _ in chain.links[ni]:
        s = nodes.nodes[v].shares.get(iso)
        if s:
            return s
    here = nodes.nodes[ni]
    later = sorted((STAGE_ORDER.get(n.stage, 99), n.shares.get(iso, 0.0)) for n in nodes.nodes
                   if n.commodity == here.commodity and STAGE_ORDER.get(n.stage, 99) > STAGE_ORDER.get(here.stage, 99))
    for _, s in later:
        if s:
            return s
    return here.shares.get(iso, 0.0)


@dataclass
class ChunkResult:
    """Per scenario, participant and draw (S × P × D) loss components in USD (NaN when the node has no value).

    ``loss`` is the consumer loss (input cost + lost output); ``producer_gain`` is reported apart.
    """

    loss: np.ndarray
    input_cost: np.ndarray
    lost_output: np.ndarray
    lost_output_io: np.ndarray  # lost output with every price-driven cut valued at the output multiple (f_p = 1)
    # what supplying the tonnes short would have been worth: lost output with each tonne given up at the price valued at
    # its premium (p - 1), the marginal buyer's value less the old price, instead of the triangle ½(p - 1), plus the
    # fall of the targeted price those tonnes would have brought on the participant's purchases (at most its input cost)
    supply_value: np.ndarray
    supply_value_bloc: np.ndarray  # (S, D) the same for the bloc's tonnes short, whose supply lowers both members' price
    supply_value_io: np.ndarray  # both under the input-output convention (price_cut_output_fraction 1)
    supply_value_io_bloc: np.ndarray
    #: the part of each supply value that is the price effect (the fall of the targeted price, which every buyer in
    #: the segment pays whichever of them receives the tonne): (S, P, D) and (S, D), welfare and input-output
    supply_price: np.ndarray
    supply_price_bloc: np.ndarray
    supply_price_io: np.ndarray
    supply_price_io_bloc: np.ndarray
    producer_gain: np.ndarray
    loss_rel: np.ndarray  # consumer loss in units of the node's annual world value P0*Q0
    at_risk_usd: np.ndarray  # the participant's output that uses the node over the disruption (USD; loss <= it)
    shortfall_t: np.ndarray  # tonnes not consumed over the disruption
    rationed_t: np.ndarray  # of which rationed at the choke price (buyers who would pay it get nothing)
    peak_price: np.ndarray  # (S, D) peak price ratio in the targeted segment
    price_u: np.ndarray  # (S, D) mean price ratio in the unrestricted segment (the restrictor's market) over the months
    price_t: np.ndarray  # (S, D) mean price ratio in the targeted segment over the months (what a refill would pay)
    stock_used_t: np.ndarray  # (S, D) strategic stock released
    paths: dict[str, np.ndarray] | None = None  # (S, D, months) when requested


@dataclass
class _Statics:
    """Per path and draw (P × D): the segment quantities of docs/simulation.md §4."""

    d_t: np.ndarray
    s_t: np.ndarray  # targeted supply at the old price before the spare ramp
    gap_fill: np.ndarray  # lost supply that spare capacity can replace
    spare: np.ndarray
    d_u: np.ndarray
    s_u: np.ndarray
    g: np.ndarray  # shock intensity: lost supply / d_T (hoarding scales with it)
    shocked: np.ndarray  # (P,) any draw with a shock
    x_rt: np.ndarray  # the restrictors' exports to the targets (fraction of Q0)
    loc_t: np.ndarray | None = None  # stocks located in targeted countries (fraction of Q0)
    loc_u: np.ndarray | None = None  # stocks located in the restrictors (fraction of Q0)
    own_months: np.ndarray | None = None  # targeted buyers' stocks stated by the scenario (months; NaN: parameters)


def stock_draws(b: Batch, rep: np.ndarray, seed: int, draws: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per path and draw: stocks located in targeted countries and in the restrictors (fractions of Q0) and the
    targeted buyers' stated stock (months; NaN when not stated), each triangular on its (low, mode, high) with one
    uniform per path and draw (keyed by the scenario's random_key, stream 2)."""
    P = len(rep)
    out = [np.zeros((P, draws)), np.zeros((P, draws)), np.full((P, draws), np.nan)]
    arrs = (b.loc_t[rep], b.loc_u[rep], b.own_months[rep])
    need = np.flatnonzero((arrs[0][:, 2] > 0) | (arrs[1][:, 2] > 0) | np.isfinite(arrs[2][:, 1]))
    for p_ in need:
        u = keyed_uniforms(seed, "stock:" + b.rkey[rep[p_]], 2, (draws,))
        for k, arr in enumerate(arrs):
            lo, mode, hi = arr[p_]
            if np.isfinite(mode):
                out[k][p_] = triangular_quantile(u, np.full(draws, lo), np.full(draws, mode), np.full(draws, hi))
    return out[0], out[1], out[2]


def _statics(b: Batch, rep: np.ndarray, g: dict[str, np.ndarray], eu: np.ndarray, w: np.ndarray) -> _Statics:
    """Segment sizes of the paths (rows ``rep`` of the batch are the paths' representatives)."""
    sr = b.s_r[rep, None]
    e_param = g["restrictor_export_share"]
    e_known = triangular_quantile(eu, b.e_lo[rep, None], b.e_mode[rep, None], b.e_hi[rep, None])
    frac = b.e_data[rep, None]
    e_r = frac * e_known + (1.0 - frac) * e_param
    exports = e_r * sr
    home = sr - exports
    world = b.world[rep, None]
    lam = np.where(np.isnan(b.leak[rep])[:, None], np.where(world, g["leakage_world"], g["leakage"]), b.leak[rep, None])
    d_t = np.where(world, 1.0 - home, b.d_t_named[rep, None])
    x_rt = np.where(world, exports, np.minimum(b.x_rt_named[rep, None], exports))
    withheld = w * (1.0 - lam) * x_rt
    d_o = np.where(world, 0.0, np.maximum(1.0 - home - d_t, 0.0))
    diverted = np.minimum(withheld, np.maximum(d_o - (exports - x_rt), 0.0))
    lost = withheld - diverted
    s_t = d_t - lost + b.surplus[rep, None] * d_t
    spare = np.where(np.isnan(b.spare_data[rep])[:, None], g["spare_capacity"] * (1.0 - sr), b.spare_data[rep, None])
    d_u = home + np.where(world, 0.0, exports - x_rt + diverted)
    s_u = d_u + lost
    with np.errstate(divide="ignore", invalid="ignore"):
        intensity = np.where(d_t > 0, np.minimum(lost / d_t, 1.0), 0.0)
    shocked = ((lost > 0) | (b.surplus[rep, None] != 0)).any(axis=1) | (b.hold[rep] > 0)
    return _Statics(d_t, s_t, lost, spare, d_u, s_u, intensity, shocked, x_rt)


def evaluate_chunk(
    b: Batch,
    draws: NodeDraws,
    settings: dict[str, float],
    seed: int,
    keep_paths: bool = False,
) -> ChunkResult:
    """Step the scenarios of ``b`` month by month over ``draws.draws`` draws (equations: docs/simulation.md).

    Paths (scenarios that differ only in duration) are stepped once up to the longest duration; each
    scenario reads the accumulated sums at its own last month.
    """
    S, D = len(b), draws.draws
    uniq: dict[str, int] = {}
    pidx = np.array([uniq.setdefault(k, len(uniq)) for k in b.path], dtype=np.int64) if S else np.zeros(0, dtype=np.int64)
    P = len(uniq)
    rep = np.zeros(P, dtype=np.int64)
    rep[pidx[::-1]] = np.arange(S)[::-1]  # first scenario of each path
    path_dur = np.zeros(P, dtype=np.int64)
    np.maximum.at(path_dur, pidx, b.duration)
    g = {k: v[b.node[rep]] for k, v in draws.values.items()}  # (P, D) each
    eu = draws.export_u[b.node[rep]]
    # withheld share: uniform on [w_lo, w_hi] per path and draw (keyed by the path)
    uw = np.zeros((P, D))
    for p_ in np.flatnonzero(b.w_hi[rep] > b.w_lo[rep]):
        uw[p_] = keyed_uniforms(seed, "path:" + b.rkey[rep[p_]], 1, (D,))
    w = b.w_lo[rep, None] + uw * (b.w_hi - b.w_lo)[rep, None]
    st = _statics(b, rep, g, eu, w)
    st.loc_t, st.loc_u, st.own_months = stock_draws(b, rep, seed, D)
    # months with a stated withheld share (times the scope, drawn with the same uniform): their own segment sizes
    by_month: list[_Statics] = []
    if b.w_month.shape[1] and np.isfinite(b.w_month[rep]).any():
        scope = b.scope_lo[rep, None] + uw * (b.scope_hi - b.scope_lo)[rep, None]
        for t in range(b.w_month.shape[1]):
            stated = b.w_month[rep, t][:, None]
            by_month.append(_statics(b, rep, g, eu, np.where(np.isnan(stated), w, stated * scope)))
        st.shocked = st.shocked | np.any([m.shocked for m in by_month], axis=0)
    m_eff = g["downstream_value_multiple"] * b.chain_a[rep, None] + b.chain_b[rep, None]
    # nobody pays more than the input is worth to them: the output it enables, and on the share that makes derivative
    # products (valued at their value added) also the input's own price
    top = np.maximum(m_eff + b.chain_d[rep, None], 1.0)
    p_hi = np.minimum(g["max_price_ratio"], top)
    p_lo = 1.0 / g["max_price_ratio"]
    # derived demand (Hicks-Marshall): the scale part of the demand response shrinks with the input's cost share
    # 1/M_eff below 1/M_ref; the substitution part κ_s does not (docs/simulation.md §4.2)
    g = {**g, "elasticity_demand": demand_scaled(g["elasticity_demand"], m_eff, g["demand_substitution_share"],
                                                settings["derived_demand_reference_multiple"])}

    names = ("cost", "rationed", "rationed_value", "price_cut", "surplus_cut", "price_effect", "restrained", "substituted", "gain_t", "cost_u",
             "short_u", "surplus_u", "subst_u", "gain_u", "sum_pu", "sum_pt", "released")
    acc_s = {k: np.zeros((S, D)) for k in names}  # per scenario, at its last month
    peak_s = np.ones((S, D))
    months = int(path_dur.max()) if P else 0
    paths = {k: np.full((S, D, months), np.nan) for k in PATH_KEYS} if keep_paths else None
    rows = np.arange(P) if keep_paths else np.flatnonzero(st.shocked)
    if rows.size:
        _month_loop(rows, st, by_month, g, top, p_hi, p_lo, b, rep, pidx, path_dur, settings, acc_s, peak_s, paths)
    # unshocked paths: price 1 in both segments, nothing lost
    done = np.isin(pidx, rows)
    acc_s["sum_pu"][~done] = b.duration[~done, None].astype(float)
    acc_s["sum_pt"][~done] = b.duration[~done, None].astype(float)

    in_t = b.in_t[:, :, None]
    d_t_s = st.d_t[pidx]
    dem_t = (b.d_j * b.in_t).sum(axis=1)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(dem_t > d_t_s, d_t_s / dem_t, 1.0)  # participants in T never demand more than T
    d_j = b.d_j[:, :, None] * np.where(in_t, scale[:, None, :], 1.0)
    s_j = b.s_j[:, :, None]
    # each participant values a tonne short with its own use shares (the world factors set the choke price)
    m_s = g["downstream_value_multiple"][pidx][:, None, :] * b.chain_a_p[:, :, None] + b.chain_b_p[:, :, None]
    f_r, f_s = settings["restraint_loss_fraction"], settings["substitution_loss_fraction"]
    f_p = settings["price_cut_output_fraction"]
    short_t = acc_s["rationed"] + acc_s["price_cut"] + acc_s["restrained"] + acc_s["substituted"]
    # a tonne rationed at the choke price loses the value of its use: M_eff for the uses worth the whole output they
    # enable, less for the rest of the uses that would pay the choke price (the truncated demand curve,
    # rationed_value_share); a tonne given up at a higher price (at once, by substituting, or restrained by policy,
    # which sheds the lowest-value uses first) loses f_p of its input-output value (M_eff; φ_s M_eff substituted,
    # φ_r M_eff restrained) plus (1 - f_p) of the buyers' surplus on it (the triangle ½(p_x - 1), p_x the value of the
    # last use given up)
    lost_t = acc_s["rationed_value"] + f_p * (acc_s["price_cut"] + f_s * acc_s["substituted"] + f_r * acc_s["restrained"])
    lost_u = f_p * (acc_s["short_u"] + f_s * acc_s["subst_u"])
    surplus = (1.0 - f_p) * np.where(in_t, acc_s["surplus_cut"][:, None, :], acc_s["surplus_u"][:, None, :])
    io_t = acc_s["rationed"] + acc_s["price_cut"] + f_r * acc_s["restrained"] + f_s * acc_s["substituted"]
    io_u = acc_s["short_u"] + f_s * acc_s["subst_u"]
    cost = d_j * np.where(in_t, acc_s["cost"][:, None, :], acc_s["cost_u"][:, None, :])
    short_u = acc_s["short_u"] + acc_s["subst_u"]
    lost = d_j * (np.where(in_t, lost_t[:, None, :], lost_u[:, None, :]) * m_s + surplus)
    lost_io = d_j * np.where(in_t, io_t[:, None, :], io_u[:, None, :]) * m_s
    rationed_q = d_j * np.where(in_t, acc_s["rationed"][:, None, :], 0.0)
    # the targeted price a participant's tonnes short would have lowered had they been supplied (first order, at most
    # the premium it paid): d_j' (its purchases) x d_j' (its tonnes short) x Σ_t σ_t p_t short_t / (supplied_t (ε_s - ε_t))
    price_effect = d_j * d_j * np.where(in_t, acc_s["price_effect"][:, None, :], 0.0)
    sv = _supply_value(lost, d_j * surplus, price_effect, cost, cost)
    # the bloc's tonnes short lower the price both participants pay: (Σ_j d_j')² instead of Σ_j d_j'²
    d_bloc = (d_j * in_t).sum(axis=1)
    pe_bloc = d_bloc * d_bloc * acc_s["price_effect"]
    cost_b, cost_bt = cost.sum(axis=1), (cost * in_t).sum(axis=1)
    sv_bloc = _supply_value(lost.sum(axis=1), (d_j * surplus).sum(axis=1), pe_bloc, cost_bt, cost_b)
    # the same under the input-output convention (every tonne not consumed at the output multiple)
    sv_io = _supply_value(lost_io, 0.0, price_effect, cost, cost)
    sv_io_bloc = _supply_value(lost_io.sum(axis=1), 0.0, pe_bloc, cost_bt, cost_b)
    # the price-effect part of each: what is left of the supply value above the output and premium it saves
    pp = _price_part(sv, lost + d_j * surplus)
    pp_bloc = _price_part(sv_bloc, lost.sum(axis=1) + (d_j * surplus).sum(axis=1))
    pp_io, pp_io_bloc = _price_part(sv_io, lost_io), _price_part(sv_io_bloc, lost_io.sum(axis=1))
    short_q = d_j * np.where(in_t, short_t[:, None, :], short_u[:, None, :])
    gain = s_j * np.where(b.j_restricts[:, :, None], acc_s["gain_u"][:, None, :], acc_s["gain_t"][:, None, :])
    v = (b.value_usd / 12.0)[:, None, None]
    consumer = (cost + lost) / 12.0
    at_risk = d_j * m_s * b.duration[:, None, None] / 12.0  # the participant's output that uses the node
    return ChunkResult(
        loss=consumer * 12.0 * v,
        input_cost=cost * v,
        lost_output=lost * v,
        lost_output_io=lost_io * v,
        supply_value=sv * v,
        supply_value_bloc=sv_bloc * v[:, 0, :],
        supply_value_io=sv_io * v,
        supply_value_io_bloc=sv_io_bloc * v[:, 0, :],
        supply_price=pp * v,
        supply_price_bloc=pp_bloc * v[:, 0, :],
        supply_price_io=pp_io * v,
        supply_price_io_bloc=pp_io_bloc * v[:, 0, :],
        producer_gain=gain * v,
        loss_rel=consumer,
        at_risk_usd=at_risk * 12.0 * v,
        shortfall_t=short_q * (b.q0_t / 12.0)[:, None, None],
        rationed_t=rationed_q * (b.q0_t / 12.0)[:, None, None],
        peak_price=peak_s,
        price_u=acc_s["sum_pu"] / b.duration[:, None],
        price_t=acc_s["sum_pt"] / b.duration[:, None],
        stock_used_t=acc_s["released"] / 12.0 * b.q0_t[:, None],
        paths=paths,
    )


def demand_scaled(ed: np.ndarray, m_eff: np.ndarray, kappa_s: np.ndarray | float, m_ref: float) -> np.ndarray:
    """Short-run demand elasticity of a node whose input is a share 1/M_eff of the output it enables:

        ε_i = κ_i ε,   κ_i = κ_s + (1 - κ_s) min(1, M_ref / M_eff)

    Hicks-Marshall: the elasticity of derived demand is s η_Y + (1 - s) σ (s the cost share, η_Y the demand
    elasticity of the product, σ the elasticity of substitution). The calibrated ε applies to nodes whose cost
    share is at least 1/M_ref (the default multiple's range); below it the scale part of the first months'
    response falls with the cost share and only the substitution part κ_s stays (docs/simulation.md §4.2). The
    long-run elasticity (substitution and redesign) is not scaled."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(m_eff > m_ref, m_ref / m_eff, 1.0)
    return ed * (kappa_s + (1.0 - kappa_s) * ratio)


def rationed_value_share(cap: np.ndarray, top: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """Mean value of the uses rationed at the choke price ``c``, as a share of the top value ``T`` (``c <= T``):

        r = E[v | v >= c] / T,   E[v | v >= c] = [-ε/(1+ε) (T^(1+ε) - c^(1+ε)) + T^(1+ε)] / c^ε   (ε ≠ -1)
                                              = c (ln(T/c) + 1)                                    (ε = -1)

    on the demand curve ``q(v) = v^ε`` (units of P0, baseline demand 1) truncated at ``T``: the uses worth between
    c and T, with density ``-ε v^(ε-1)``, and a mass ``T^ε`` of uses worth the whole output they enable (T). Rationing
    at the cap falls on the buyers who would pay it at random (a licence queue or a supplier's allocation does not
    sort buyers by the value of their use), so a rationed tonne is worth the mean over all uses at or above c, not T:
    the choke price stops being a line above which every tonne is worth the whole output (review 18, finding 3).
    ``r = 1`` when the cap is the top (``c >= T``); ``c / T <= r <= 1``."""
    c = np.minimum(cap, top)
    e1 = 1.0 + eps
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        near = np.abs(e1) < 1e-9
        body = np.where(near, np.log(top / c), -eps / np.where(near, 1.0, e1) * (np.power(top, e1) - np.power(c, e1)))
        mean = (body + np.power(top, e1)) / np.power(c, eps)
        r = np.where(c < top, mean / top, 1.0)
    return np.clip(r, c / top, 1.0)  # the bounds hold exactly; the clip only removes rounding


def _supply_value(lost: np.ndarray, extra: np.ndarray | float, price_effect: np.ndarray, paid: np.ndarray,
                  cost: np.ndarray) -> np.ndarray:
    """``min(lost + extra + min(PE, paid⁺), max(cost + lost, lost))``: the value of supplying the tonnes short (the
    lost output, ``extra`` the premium above the triangle, the price effect at most the premium ``paid`` in the
    targeted segment), never more than the consumer loss ``cost + lost`` (docs/simulation.md §7)."""
    return np.minimum(lost + extra + np.minimum(price_effect, np.maximum(paid, 0.0)), np.maximum(cost + lost, lost))


def _price_part(supply_value: np.ndarray, saved: np.ndarray) -> np.ndarray:
    """``SV - min(saved, SV)``: the part of a supply value (:func:`_supply_value`) that is the price effect, ``saved``
    being the lost output and premium it counts first (0 where the consumer-loss cap leaves no room for it)."""
    return np.maximum(supply_value - np.minimum(saved, supply_value), 0.0)


def _month_loop(
    rows: np.ndarray, st: _Statics, by_month: list[_Statics], g: dict[str, np.ndarray], top: np.ndarray, p_hi: np.ndarray,
    p_lo: np.ndarray,
    b: Batch, rep: np.ndarray, pidx: np.ndarray, path_dur: np.ndarray, settings: dict[str, float],
    acc_s: dict[str, np.ndarray], peak_s: np.ndarray, paths: dict[str, np.ndarray] | None,
) -> None:
    """Months 1 … longest duration for the paths ``rows``; fills the scenarios' accumulators (in place).

    ``by_month[t - 1]`` (when given) holds the segment sizes of month t under a withheld share stated month by
    month; the precautionary target is set by the shock as first seen (month 1). ``top`` is the value of the
    highest use, ``max(M_eff + derivative share, 1)`` (units of P0), where the demand curve is truncated."""
    sel = rep[rows]

    def pr(x: np.ndarray) -> np.ndarray:
        return x[rows]

    d_t, s_t, lost, spare, d_u, s_u, gi = (pr(x) for x in (st.d_t, st.s_t, st.gap_fill, st.spare, st.d_u, st.s_u, st.g))
    monthly = [(pr(m.s_t), pr(m.gap_fill), pr(m.d_u), pr(m.s_u)) for m in by_month]
    d_u0, s_u0, s_t0, lost0 = d_u, s_u, s_t, lost
    if monthly:
        gi = pr(by_month[0].g)
    ed, ed_lr, tau_sub = pr(g["elasticity_demand"]), pr(g["elasticity_demand_long"]), pr(g["substitution_months"])
    es, ramp = pr(g["elasticity_supply"]), pr(g["ramp_months"])
    inv_m, theta, half = pr(g["inventory_months"]), pr(g["stock_adjustment"]), pr(g["stock_half_cover_months"])
    chi_t, chi_u = pr(g["hoarding_targeted"]), pr(g["hoarding_restrictor"])
    psi = pr(g["price_transmission"])
    hi, lo, top = pr(p_hi), pr(p_lo), pr(top)
    below_top = np.broadcast_to(hi < top, d_t.shape)  # where the cap binds below the top of the demand curve
    any_below = bool(below_top.any())
    ed_lr = np.minimum(ed_lr, ed)  # demand is never less elastic in the long run
    rho = b.rho[sel, None]
    hold = np.broadcast_to(b.hold[sel, None], d_t.shape).copy()
    rate, cap = b.rate[sel, None], b.cap[sel, None]
    has_stock = bool((b.hold[sel] > 0).any())
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(ramp > 0, 1.0 / ramp, np.inf)
    # commercial stocks (fractions of annual world output): the working stock (inventory_months of each segment's
    # consumption) plus stocks located in the segment's countries; the targeted buyers' stock stated by the
    # scenario replaces both in T
    loc_t = pr(st.loc_t) if st.loc_t is not None else 0.0
    loc_u = pr(st.loc_u) if st.loc_u is not None else 0.0
    normal_t = inv_m / 12.0 * d_t
    normal_u = inv_m / 12.0 * d_u
    stock_t = normal_t + loc_t
    if st.own_months is not None:
        own = pr(st.own_months)
        stock_t = np.where(np.isfinite(own), np.nan_to_num(own) / 12.0 * d_t, stock_t)
    stock_u = normal_u + loc_u
    # exports bought ahead of the start sit in the targeted buyers' stocks
    stock_t = stock_t + pr(b.front[rep, None] * st.x_rt)
    # precautionary stock: holders want their normal stock plus chi x (shock intensity) months of consumption
    # and buy what they lack (nothing when they already hold more)
    left_t = np.maximum(normal_t + chi_t * gi * d_t / 12.0 - stock_t, 0.0)
    left_u = np.maximum(normal_u + chi_u * gi * d_u / 12.0 - stock_u, 0.0)
    p_t = np.ones_like(d_t)
    acc = {k: np.zeros_like(d_t) for k in acc_s}
    peak = np.ones_like(d_t)
    # scenarios of these paths, grouped by their last month
    mine = np.flatnonzero(np.isin(pidx, rows))
    pos = np.searchsorted(rows, pidx[mine])
    last = int(path_dur[rows].max())
    for t in range(1, last + 1):
        eps = ed + (ed_lr - ed) * np.minimum(1.0, (t - 1) / tau_sub)
        s_t, lost, d_u, s_u = monthly[t - 1] if t <= len(monthly) else (s_t0, lost0, d_u0, s_u0)
        has_u = d_u > 0
        supply = s_t + np.minimum(spare * np.minimum(1.0, t * frac), lost)
        supply = np.maximum(supply, 1e-12)
        gap = np.maximum(1.0 - supply / d_t, 0.0)
        rho_t = np.minimum(rho, gap)
        demand = d_t * (1.0 - rho_t)
        a_t = stock_demand(stock_t, left_t, demand - supply, d_t, theta, half)
        if has_stock:
            k = np.minimum(np.minimum(release_to_cap(supply, demand, a_t, cap, es, eps), rate), 12.0 * hold)
        else:
            k = np.zeros_like(d_t)
        c = clear_month(supply, demand, a_t, k, es, eps, lo, hi)
        p_t = c.price
        stock_t = np.maximum(stock_t + c.stock_flow / 12.0, 0.0)
        left_t = np.maximum(left_t - np.clip(c.stock_flow, 0.0, theta * 12.0 * left_t * np.power(p_t, eps)) / 12.0, 0.0)
        hold = np.maximum(hold - c.release / 12.0, 0.0)
        # the restrictor's own market (and third countries it serves)
        a_u = stock_demand(stock_u, left_u, d_u - s_u, d_u, theta, half)
        cu = clear_month(np.maximum(s_u, 1e-12), d_u, a_u, np.zeros_like(d_u), es, eps, lo, hi)
        # licensed exports and leakage carry part of the export price into the restrictor's market
        p_u = np.where(has_u, np.exp(psi * np.log(p_t) + (1.0 - psi) * np.log(cu.price)), 1.0)
        stock_u = np.where(has_u, np.maximum(stock_u + cu.stock_flow / 12.0, 0.0), stock_u)
        left_u = np.maximum(left_u - np.clip(cu.stock_flow, 0.0, theta * 12.0 * left_u * np.power(cu.price, eps)) / 12.0, 0.0)
        # shares of baseline targeted demand: served, restrained by policy, substituted, price-rationed
        with np.errstate(divide="ignore", invalid="ignore"):
            served = np.where(d_t > 0, c.consumed / d_t, 1.0)
        pe_t = np.power(p_t, eps)
        restrained = rho_t * pe_t
        substituted = np.where(p_t > 1.0, (1.0 - rho_t) * (np.power(p_t, ed) - pe_t), 0.0)
        rationed = np.maximum(1.0 - served - restrained - substituted, 0.0)
        # of which rationed at the choke price (what buyers want at the price but do not get), the rest given up
        # by buyers at the higher price
        with np.errstate(divide="ignore", invalid="ignore"):
            at_cap = np.where(d_t > 0, np.maximum(demand * pe_t - c.consumed, 0.0) / d_t, 0.0)
        at_cap = np.minimum(at_cap, rationed)
        cut = rationed - at_cap
        # a tonne more supplied to T (below the choke) lowers its price by p / (supplied (ε_s - ε_t)): the saving on
        # the buyers' purchases σ_t, per tonne of their shortfall (scaled by each participant's shares at the end)
        with np.errstate(divide="ignore", invalid="ignore"):
            dp = np.where(~c.capped & (c.supplied > 0), served * p_t / (c.supplied * (es - eps)), 0.0)
        acc["price_effect"] += np.where(np.isfinite(dp), dp, 0.0) * (rationed + restrained + substituted)
        acc["cost"] += (p_t - 1.0) * served
        acc["rationed"] += at_cap
        # the buyers still wanting it at the cap value it at least the cap, raised by restraint (which sheds the
        # lowest-valued uses first, as a higher price would); computed only where the cap rations (rare)
        # (where the cap is the top of the curve, nearly everywhere, a rationed tonne is worth the whole output: r = 1)
        acc["rationed_value"] += at_cap
        on = (at_cap > 0) & below_top if any_below else None
        if on is not None and on.any():
            shape = at_cap.shape
            hi_on, top_on, eps_on = (np.broadcast_to(x, shape)[on] for x in (hi, top, eps))
            rho_on = np.broadcast_to(rho_t, shape)[on]
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                floor = np.minimum(hi_on * np.power(np.maximum(1.0 - rho_on, 1e-12), 1.0 / eps_on), top_on)
            acc["rationed_value"][on] += at_cap[on] * (rationed_value_share(floor, top_on, eps_on) - 1.0)
        acc["price_cut"] += cut
        # the uses given up (by price, substitution or restraint) are the lowest-valued: on the demand curve the last
        # one is worth p_x = p (1 - ρ_t)^(1/ε_t) (restraint acts as a higher price), at most the choke price
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            p_x = np.minimum(p_t * np.power(np.maximum(1.0 - rho_t, 1e-12), 1.0 / eps), hi)
        acc["surplus_cut"] += 0.5 * np.maximum(p_x - 1.0, 0.0) * (cut + substituted + restrained)
        acc["restrained"] += restrained
        acc["substituted"] += substituted
        acc["gain_t"] += (p_t - 1.0) * np.power(p_t, es)
        pe_u = np.power(p_u, eps)
        acc["cost_u"] += (p_u - 1.0) * pe_u
        # the same split in U: short-run demand destruction given up at the price (valued like a price cut in T), the
        # long-run part as substitution
        short_u = np.maximum(1.0 - np.power(p_u, ed), 0.0)
        subst_u = np.where(p_u > 1.0, np.power(p_u, ed) - pe_u, 0.0)
        acc["short_u"] += short_u
        acc["subst_u"] += subst_u
        acc["surplus_u"] += 0.5 * np.maximum(p_u - 1.0, 0.0) * (short_u + subst_u)
        acc["gain_u"] += (p_u - 1.0) * np.power(p_u, es)
        acc["sum_pu"] += p_u
        acc["sum_pt"] += p_t
        acc["released"] += c.release
        np.maximum(peak, p_t, out=peak)
        if paths is not None:
            live = b.duration[mine] >= t
            q0 = b.q0_t[mine, None]
            paths["price_t"][mine[live], :, t - 1] = p_t[pos[live]]
            paths["price_u"][mine[live], :, t - 1] = p_u[pos[live]]
            for j, key in enumerate(("shortfall_usa", "shortfall_jpn")):
                dj = np.where(b.in_t[mine, j, None], b.d_j[mine, j, None], 0.0)
                short_m = dj * np.maximum(1.0 - served[pos], 0.0) * q0 / 12.0
                paths[key][mine[live], :, t - 1] = short_m[live]
            paths["stock_left"][mine[live], :, t - 1] = (hold[pos] * q0)[live]
            paths["commercial_stock_t"][mine[live], :, t - 1] = (stock_t[pos] * q0)[live]
        ends = mine[b.duration[mine] == t]
        if ends.size:
            src = pos[b.duration[mine] == t]
            for k_, arr in acc.items():
                acc_s[k_][ends] = arr[src]
            peak_s[ends] = peak[src]
