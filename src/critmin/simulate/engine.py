"""Vectorised disruption engine: scenarios × draws × months for many nodes at once.

``compile_batch`` turns scenarios into arrays; ``NodeDraws`` samples the uncertain parameters per node and
draw; ``evaluate_chunk`` steps a block of scenarios through their months and returns losses per participant.
Randomness is keyed by node, scenario and family identifiers (never by position), so any split of the work
(chunks, threads, Dask workers) gives identical numbers for the same seed. Equations: docs/simulation.md.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from critmin.simulate.market import price_with_release, release_to_cap
from critmin.simulate.nodes import PARTICIPANTS, NodeTable
from critmin.simulate.parameters import SAMPLED, Parameters
from critmin.simulate.scenario import Scenario

NP = len(PARTICIPANTS)
SAMPLED_NAMES = tuple(SAMPLED)


def stable_key(text: str) -> int:
    """A stable 32-bit key of an identifier (CRC-32), used to seed its random stream."""
    return zlib.crc32(text.encode("utf-8"))


def keyed_uniforms(seed: int, key: str, stream: int, shape: tuple[int, ...]) -> np.ndarray:
    """Uniforms on [0, 1) from the stream (seed, key, stream): independent of how work is split."""
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(stable_key(key), stream))
    return np.random.Generator(np.random.PCG64(ss)).random(shape)


@dataclass
class NodeDraws:
    """Sampled parameters: ``values[name]`` has shape (nodes, draws)."""

    values: dict[str, np.ndarray]
    draws: int
    seed: int

    @classmethod
    def sample(cls, nodes: NodeTable, params: Parameters, draws: int, seed: int) -> NodeDraws:
        out = {name: np.empty((len(nodes), draws)) for name in SAMPLED_NAMES}
        for i, n in enumerate(nodes.nodes):
            u = keyed_uniforms(seed, "node:" + n.key, 0, (len(SAMPLED_NAMES), draws))
            for j, name in enumerate(SAMPLED_NAMES):
                out[name][i] = params.resolve(name, n.commodity, n.stage, n.group).quantile(u[j])
        return cls(out, draws, seed)


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

    @property
    def factor(self) -> np.ndarray:
        return self.unlinked + self.linked_value


def chain_factors(nodes: NodeTable, coefficients: list[dict[str, object]], params: Parameters | None = None) -> ChainFactors:
    """Valuation of a tonne short along the chain (docs/simulation.md §6): ``M_u · A_u + B_u`` in units of P0_u.

    - The share of u's use that leaves the modelled chain (``a_u = 1 - Σ_v α_uv``) costs its users' lost output,
      ``M`` per USD of material (the ``downstream_value_multiple`` parameter).
    - A link to a later stage of the **same commodity** (mine -> refine) carries the tonnes on: the tonne is
      valued as the downstream stage values it, ``(α_uv / c_uv)(P0_v / P0_u)(M A_v + B_v)``.
    - A link into a **derivative product** (oxide -> magnet, graphite -> anode -> cells) is valued at the product
      not made, ``(α_uv / c_uv)(P0_v / P0_u) G_v`` with ``G_v = a_v + Σ_w (α_vw / c_vw)(P0_w / P0_v) G_w``: the
      product value, without M (a direct shortage of the product itself is valued at M × its value).

    ``unlinked`` = A (multiplies M), ``linked_value`` = B. ``α_uv`` = share of u's use that makes v, ``c_uv`` = t
    of u per t of v. A link whose product has no price stays in the unlinked share (flagged). A node whose
    ``downstream_value_multiple`` is specific to it (not the ``*`` default) already covers its whole chain:
    A = 1, B = 0.
    """
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

    def usable(i: int) -> list[tuple[int, float, float]]:
        return [(v, a, c) for v, a, c in links[i] if price_ok(v) and price_ok(i)]

    g_memo: dict[int, float] = {}

    def product_value(i: int, depth: int = 0) -> float:
        if i not in g_memo:
            use = usable(i) if depth < 10 else []
            g_memo[i] = max(1.0 - sum(a for _, a, _ in use), 0.0) + sum(
                a / c * nodes.nodes[v].p0_usd_per_t / nodes.nodes[i].p0_usd_per_t * product_value(v, depth + 1) for v, a, c in use)
        return g_memo[i]

    ab_memo: dict[int, tuple[float, float]] = {}

    def value(i: int, depth: int = 0) -> tuple[float, float]:
        if i in fixed:
            return 1.0, 0.0
        if i not in ab_memo:
            use = usable(i) if depth < 10 else []
            if depth == 0:
                flags[i].extend(f"no price for {nodes.nodes[lk[0]].key}: its use valued like the unlinked share"
                                for lk in links[i] if lk not in use)
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

    unlinked = np.empty(n)
    linked = np.empty(n)
    for i in range(n):
        unlinked[i], linked[i] = value(i)
    return ChainFactors(unlinked, linked, links, flags)


@dataclass
class Batch:
    """Scenarios compiled to arrays (length S, or S × participants)."""

    ids: list[str]
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
    hold: np.ndarray
    rate: np.ndarray
    cap: np.ndarray
    rho: np.ndarray
    value_usd: np.ndarray
    q0_t: np.ndarray
    chain_a: np.ndarray
    chain_b: np.ndarray
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
    a = {k: np.zeros(S) for k in ("s_r", "d_t_named", "x_rt_named", "w_lo", "w_hi", "hold", "rho", "value_usd", "q0_t", "chain_a", "chain_b", "prob_lo", "prob_hi")}
    node = np.zeros(S, dtype=np.int64)
    duration = np.zeros(S, dtype=np.int64)
    world = np.zeros(S, dtype=bool)
    in_t = np.zeros((S, NP), dtype=bool)
    d_j = np.zeros((S, NP))
    s_j = np.zeros((S, NP))
    j_restricts = np.zeros((S, NP), dtype=bool)
    leak = np.full(S, np.nan)
    spare = np.full(S, np.nan)
    rate = np.full(S, np.inf)
    cap = np.ones(S)
    flags: list[list[str]] = []
    families: list[str] = []
    probs = probabilities if probabilities is not None else [0.0] * S
    fam_cum: dict[str, float] = {}
    for i, sc in enumerate(scenarios):
        ni = nodes.index[f"{sc.commodity}/{sc.stage}"]
        n = nodes.nodes[ni]
        fl: list[str] = []
        node[i] = ni
        duration[i] = sc.duration_months
        rs = set(sc.restrictors)
        sr = sum(n.shares.get(r, 0.0) for r in rs)
        if sr <= 0:
            fl.append(f"restrictors {sorted(rs)} have no listed share of {n.key}: no effect")
        a["s_r"][i] = sr
        world[i] = sc.targets == ["WORLD"]
        members = set(PARTICIPANTS) - rs if world[i] else _target_members(sc.targets)
        d_named = x_named = 0.0
        for j, iso in enumerate(PARTICIPANTS):
            in_t[i, j] = iso in members
            d_j[i, j] = n.demand_share[iso]
            s_j[i, j] = n.shares.get(iso, 0.0)
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
                    d = _downstream_share(nodes, chain, ni, iso)
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
        rng = sc.withheld_range()
        if rng is None:
            if sc.regime in ("licence", "quota"):
                spec = params.resolve("licence_denial", n.commodity, n.stage, n.group)
                rng = (spec.low, spec.high)
                fl.append(f"withheld share: licence_denial {spec.low:g}-{spec.high:g} ({spec.kind}, {spec.scope})")
            else:
                rng = (1.0, 1.0)
        a["w_lo"][i], a["w_hi"][i] = rng
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
        fam = sc.family if sc.family.startswith("gen.") else sc.id
        families.append(fam)
        c0 = fam_cum.get(fam, 0.0)
        a["prob_lo"][i], a["prob_hi"][i] = c0, c0 + probs[i]
        fam_cum[fam] = c0 + probs[i]
        flags.append(fl + n.flags + chain.flags[ni])
    return Batch(
        ids=[s.id for s in scenarios], node=node, duration=duration, world=world, in_t=in_t, d_j=d_j, s_j=s_j,
        j_restricts=j_restricts, leak=leak, spare_data=spare, rate=rate, cap=cap, family=families, flags=flags, **a,
    )


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


def _downstream_share(nodes: NodeTable, chain: ChainFactors, ni: int, iso: str) -> float:
    for v, _, _ in chain.links[ni]:
        s = nodes.nodes[v].shares.get(iso)
        if s:
            return s
    return nodes.nodes[ni].shares.get(iso, 0.0)


@dataclass
class ChunkResult:
    """Per scenario and draw (S × D): loss components per participant (USD; NaN when the node has no value)."""

    loss: np.ndarray  # (S, P, D) total loss USD
    input_cost: np.ndarray  # (S, P, D)
    lost_output: np.ndarray  # (S, P, D)
    producer_gain: np.ndarray  # (S, P, D)
    loss_rel: np.ndarray  # (S, P, D) loss in units of the node's annual world value P0*Q0
    shortfall_t: np.ndarray  # (S, P, D) tonnes not consumed over the disruption
    peak_price: np.ndarray  # (S, D) peak price ratio in the targeted segment
    price_u: np.ndarray  # (S, D) price ratio in the unrestricted segment (disrupted months)
    stock_used_t: np.ndarray  # (S, D)
    paths: dict[str, np.ndarray] | None = None  # (S, D, months) when requested


def evaluate_chunk(
    b: Batch,
    draws: NodeDraws,
    settings: dict[str, float],
    seed: int,
    keep_paths: bool = False,
) -> ChunkResult:
    """Step the scenarios of ``b`` month by month over ``draws.draws`` draws (equations: docs/simulation.md)."""
    S, D = len(b), draws.draws
    g = {k: v[b.node] for k, v in draws.values.items()}  # (S, D) each
    ed, es = g["elasticity_demand"], g["elasticity_supply"]
    inv = 1.0 / (es - ed)
    h = g["restrictor_domestic_share"]
    # withheld share: uniform on [w_lo, w_hi] per scenario and draw (keyed by scenario id)
    w = np.broadcast_to(b.w_lo[:, None], (S, D)).copy()
    for i in np.flatnonzero(b.w_hi > b.w_lo):
        w[i] = b.w_lo[i] + keyed_uniforms(seed, "scenario:" + b.ids[i], 1, (D,)) * (b.w_hi[i] - b.w_lo[i])
    lam = np.where(np.isnan(b.leak)[:, None], np.where(b.world[:, None], g["leakage_world"], g["leakage"]), b.leak[:, None])
    sr = b.s_r[:, None]
    sn = 1.0 - sr
    exports = (1.0 - h) * sr
    d_t = np.where(b.world[:, None], 1.0 - h * sr, b.d_t_named[:, None])
    x_rt = np.where(b.world[:, None], exports, np.minimum(b.x_rt_named[:, None], exports))
    allowed = x_rt * (1.0 - w * (1.0 - lam))
    s0 = np.maximum(sn, d_t - x_rt) + allowed
    x_full = np.where(np.isnan(b.spare_data)[:, None], g["spare_capacity"] * sn, b.spare_data[:, None])
    ramp = g["ramp_months"]
    d_u = 1.0 - d_t
    r_u = sr - allowed
    ln_pmax = np.log(g["max_price_ratio"])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # the unrestricted price falls at most to 1/max_price_ratio (the choke cap mirrored)
        ln_pu = np.clip(np.log(d_u / r_u) * inv, -ln_pmax, 0.0)
    p_u = np.where((d_u > 0) & (r_u > 0), np.exp(ln_pu), 1.0)
    pu_ed, pu_es = np.power(p_u, ed), np.power(p_u, es)
    rho = b.rho[:, None]
    with np.errstate(divide="ignore"):
        ln_d = np.log(d_t)  # -inf where the targets have no demand: never short
    ln_dr = ln_d  # restraint is applied per month (it never exceeds the month's gap)
    # lost output per tonne short, in units of P0: M (unlinked use) and the chain's downstream product value
    m_eff = g["downstream_value_multiple"] * b.chain_a[:, None] + b.chain_b[:, None]
    # participants in T cannot demand more than T's whole demand (a data inconsistency, e.g. demand proxies)
    dem_t = (b.d_j * b.in_t).sum(axis=1)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(dem_t > d_t, d_t / dem_t, 1.0)  # (S, D)
    has_stock = bool(np.any(b.hold > 0))
    stock = np.broadcast_to(b.hold[:, None], (S, D)).copy()
    rate = b.rate[:, None]
    cap = b.cap[:, None]

    months = int(b.duration.max()) if S else 0
    # Per-segment accumulators over months (S, D); participants are linear in them (see docs/simulation.md):
    #   targeted segment T:  A = (p-1) σ, B = 1 - σ - C, C = ρ_t p^εd, G = (p-1) p^εs, where σ is the served
    #   share of baseline demand: (1-ρ_t) p^εd, or the available supply when the price is capped
    #   unrestricted U (months in shortage only): A_U = (p_U - 1) p_U^εd, G_U = (p_U - 1) p_U^εs
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(ramp > 0, 1.0 / ramp, np.inf)
    # Only scenarios short of supply in month 1 of some draw (supply never falls later) need the month loop.
    rows = np.arange(S) if keep_paths else np.flatnonzero((s0 + x_full * np.minimum(1.0, frac) < d_t).any(axis=1))
    acc_a, acc_b, acc_c, acc_g = (np.zeros((S, D)) for _ in range(4))
    n_short = np.zeros((S, D))
    peak = np.ones((S, D))
    used = np.zeros((S, D))
    paths = None
    if rows.size:
        sub = _month_loop(
            rows, s0, x_full, frac, d_t, ln_dr, ln_d, inv, ed, es, ln_pmax, rho, stock, rate, cap, b.duration[:, None],
            has_stock, keep_paths, months, int(np.ceil(np.nanmax(draws.values["ramp_months"]))), p_u, b, scale,
        )
        for arr, val in zip((acc_a, acc_b, acc_c, acc_g, n_short, peak, used), sub[:7], strict=True):
            arr[rows] = val
        paths = sub[7]
    a_u = n_short * (p_u - 1.0) * pu_ed
    g_u = n_short * (p_u - 1.0) * pu_es
    in_t = b.in_t[:, :, None]
    d_j, s_j = b.d_j[:, :, None] * np.where(in_t, scale[:, None, :], 1.0), b.s_j[:, :, None]
    cost = d_j * np.where(in_t, acc_a[:, None, :], a_u[:, None, :])
    short_q = d_j * np.where(in_t, (acc_b + acc_c)[:, None, :], 0.0)
    lost = d_j * np.where(in_t, (acc_b + settings["restraint_loss_fraction"] * acc_c)[:, None, :], 0.0) * m_eff[:, None, :]
    gain = s_j * np.where(b.j_restricts[:, :, None], g_u[:, None, :], acc_g[:, None, :])
    pu_seen = np.where(n_short > 0, p_u, 1.0)
    v = (b.value_usd / 12.0)[:, None, None]
    rel = (cost + lost - gain) / 12.0
    return ChunkResult(
        loss=rel * 12.0 * v,
        input_cost=cost * v,
        lost_output=lost * v,
        producer_gain=gain * v,
        loss_rel=rel,
        shortfall_t=short_q * (b.q0_t / 12.0)[:, None, None],
        peak_price=peak,
        price_u=pu_seen,
        stock_used_t=used * b.q0_t[:, None],
        paths=paths,
    )


def _month_loop(
    rows: np.ndarray, s0: np.ndarray, x_full: np.ndarray, frac: np.ndarray, d_t: np.ndarray, ln_dr: np.ndarray,
    ln_d: np.ndarray, inv: np.ndarray, ed: np.ndarray, es: np.ndarray, ln_pmax: np.ndarray, rho: np.ndarray,
    stock: np.ndarray, rate: np.ndarray, cap: np.ndarray, dur: np.ndarray, has_stock: bool, keep_paths: bool,
    months: int, ramp_end: int, p_u: np.ndarray, b: Batch, scale: np.ndarray,
) -> tuple[Any, ...]:
    """The month loop of :func:`evaluate_chunk` on the scenario rows ``rows`` (arrays are the full chunk's)."""
    n_all = len(b)
    S, D = len(rows), ed.shape[1]
    s0, x_full, frac, d_t, ln_dr, ln_d, inv, ed, es, ln_pmax = (
        np.broadcast_to(x, (n_all, D))[rows] for x in (s0, x_full, frac, d_t, ln_dr, ln_d, inv, ed, es, ln_pmax)
    )
    rho, rate, cap, dur = rho[rows], rate[rows], cap[rows], dur[rows]
    scale_rows = scale[rows]
    stock = stock[rows]
    p_u = p_u[rows]
    acc_a, acc_b, acc_c, acc_g = (np.zeros((S, D)) for _ in range(4))
    n_short = np.zeros((S, D))
    peak = np.ones((S, D))
    used = np.zeros((S, D))
    paths = {k: np.full((S, D, months), np.nan) for k in ("price_t", "price_u", "shortfall_usa", "shortfall_jpn", "stock_left")} if keep_paths else None
    # without stockpiles every month from the last ramp-up month on repeats: step to there, then multiply
    # (ramp_end is the maximum over all nodes and draws, the same for every chunk: bitwise-stable results)
    last = months if (has_stock or keep_paths) else max(1, min(months, ramp_end))
    k: Any = 0.0
    for t in range(1, last + 1):
        reps = (np.maximum(dur - t + 1, 0) if t == last else (t <= dur)).astype(float)  # (S, 1) weight of month t
        supply = np.maximum(s0 + x_full * np.minimum(1.0, t * frac), 1e-12)
        short = supply < d_t
        # restraint cuts targeted demand by ρ, but never by more than the month's gap 1 - S/d_T
        rho_t = np.where(short, np.minimum(rho, 1.0 - supply / d_t), 0.0)
        lnd_t = np.where(short, ln_d + np.log1p(-rho_t), ln_d)
        if has_stock:
            demand = np.exp(lnd_t)
            k_req = release_to_cap(supply, demand, cap, ed, es)
            k = np.where(short, np.minimum(np.minimum(k_req, rate), stock * 12.0), 0.0)
            p = price_with_release(supply, demand, k, ed, es, np.exp(ln_pmax))
            on = (t <= dur).astype(float)
            stock -= k * on / 12.0
            used += k * on / 12.0
            lnp = np.log(p)
        else:
            k = 0.0
            lnp = np.where(short, np.maximum((lnd_t - np.log(supply)) * inv, 0.0), 0.0)  # restraint may end the shortage
        capped = lnp >= ln_pmax - 1e-12  # at the cap (the stock branch returns prices already capped)
        lnp = np.minimum(lnp, ln_pmax)
        p = np.exp(lnp)
        p_ed, p_es = np.exp(ed * lnp), np.exp(es * lnp)
        c_t = rho_t * p_ed
        served = (1.0 - rho_t) * p_ed
        if capped.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                avail = (supply * p_es + k) / d_t
            served = np.where(capped, np.minimum(served, avail), served)
        acc_a += reps * ((p - 1.0) * served)
        acc_b += reps * np.maximum(1.0 - served - c_t, 0.0)
        acc_c += reps * c_t
        acc_g += reps * ((p - 1.0) * p_es)
        n_short += reps * short
        np.maximum(peak, np.where(reps > 0, p, 1.0), out=peak)
        if paths is not None:
            on_b = np.broadcast_to(t <= dur, (S, D))
            q0 = b.q0_t[rows, None]
            paths["price_t"][:, :, t - 1] = np.where(on_b, p, np.nan)
            paths["price_u"][:, :, t - 1] = np.where(on_b, np.where(short, p_u, 1.0), np.nan)
            for j, key in enumerate(("shortfall_usa", "shortfall_jpn")):
                sj = np.where(b.in_t[rows, j, None], b.d_j[rows, j, None] * scale_rows * np.maximum(1.0 - served, 0.0), 0.0)
                paths[key][:, :, t - 1] = np.where(on_b, sj * q0 / 12.0, np.nan)
            paths["stock_left"][:, :, t - 1] = np.where(on_b, stock * q0, np.nan)

    return acc_a, acc_b, acc_c, acc_g, n_short, peak, used, paths
