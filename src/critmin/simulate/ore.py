"""Ore and concentrate: which participant can use them (a plant at the next stage) and how much its plants take.

Shared by the stock plan (an ore stock must feed a plant the holder has) and the portfolio (a participant's
simulated shortfall of ore it cannot process is not a need a mine fills for it)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: a participant missing from the producers of a node counts as producing nothing there only when the listed
#: producers cover at least this share of world output (IEA and USGS tables list the main countries and leave
#: the rest as "other"; Japan's nickel refining, about 5 % of the world's, hid in IEA's 18 % remainder until it was
#: named out of it (``production_in_remainder``, review 16), while
#: IEA's cobalt refiners cover 90.6 % and the USGS salient table for cobalt has mine and secondary output but no
#: U.S. refinery line). Plausible range 0.85-0.95.
ABSENCE_COVERAGE = 0.9


def ore_links(sim: Any, node: Any) -> list[tuple[int, float, float]] | None:
    """The chain links of an ore or concentrate node that carry most of its use, or None when the ore rules do not
    apply: refined forms are traded and tolled (and national stockpiles hold them for plants being built), and a
    mine node whose known use shares sum to under half mostly feeds what the chain does not model (titanium
    concentrate goes to pigment; magnesite's use is not linked)."""
    if node.stage != "mine":
        return None
    links = sim.chain.links[sim.nodes.index[node.key]]
    return links if sum(u for _, u, _ in links if np.isfinite(u)) >= 0.5 else None


def unusable_ore_reason(sim: Any, node: Any, participant: str) -> str | None:
    """Why a participant could not use ore or concentrate of ``node`` (a stock of it, or a mine's added output), or
    None when it could.

    Ore and concentrate (the mine stage) are usable only where the participant can process them: when the
    node's chain links carry most of its use (known use share at least 0.5) to next stages, the participant must
    have output at one of them (a plant the stock can feed). Other stages, and mine nodes whose use the chain
    does not carry, are usable. Japan has no lithium refinery, so a stock of lithium concentrate would sit where no Japanese plant
    can use it; it has cobalt refining (Sumitomo Metal Mining), so a cobalt intermediate stock can be used.
    Review 5 found Japanese spodumene and U.S. cobalt and tin concentrate stocks chosen before this rule.
    """
    links = ore_links(sim, node)
    if links is None:
        return None
    feed = captive_feed_reason(sim, node, participant)
    if feed:
        return feed
    nxt = [sim.nodes.nodes[v] for v, _, _ in links]
    if any(n.shares.get(participant, 0.0) > 0.0 for n in nxt):
        return None
    # absence from a table that lists only the main producers is no evidence: the rule needs the listed
    # countries to cover at least ABSENCE_COVERAGE of the next stage's output
    covered = min(sum(n.shares.values()) for n in nxt)
    if covered < ABSENCE_COVERAGE:
        return None
    names = ", ".join(sorted({n.key for n in nxt}))
    return (f"no {participant} output at the next stage ({names}, whose listed producers cover {covered:.0%} of world "
            "output): no plant of its own takes this form")


#: A plant whose captive feed is at least this share of its intake (``captive_feed.csv``, central value) "runs mainly"
#: on it: the participant does not buy this ore on the market the restriction rations.
CAPTIVE_MAJORITY = 0.5


def captive_feed_reason(sim: Any, node: Any, participant: str) -> str | None:
    """Why the participant's plants do not buy ``node``'s ore on the open market, or None: they run mainly on feed
    from the participant's own mines in another country (``Simulator.captive_feed``, ``captive_feed.csv``; share of
    intake at least :data:`CAPTIVE_MAJORITY`), so a restriction of the node's traded ore reaches the participant
    through the refined form it imports, and its need is counted there. Review 23: Japan's cobalt-ore stock was
    2,428 t of DRC hydroxide, against a quota on DRC exports, although Sumitomo Metal Mining's Niihama refinery runs
    on mixed sulphide from its own Philippine HPAL plants."""
    r = (getattr(sim, "captive_feed", None) or {}).get((participant, node.key))
    if r is None or not float(r["share_of_intake"]) >= CAPTIVE_MAJORITY:
        return None
    return (f"{participant}'s plant at the next stage ({r['plant']}) runs mainly on captive feed ({r['feed_form']}, {r['feed_country']}; "
            f"about {float(r['share_of_intake']):.0%} of its intake, captive_feed.csv): it does not buy this ore on the market a "
            "restriction rations, and its need is met in the refined form it imports")


def need_not_counted(sim: Any, node: Any, participant: str, sourced_only: bool = True) -> str | None:
    """Why a participant's shortfall at ``node`` does not count as a need a stock or a project can answer, or None:
    ``"proxy"`` where its demand there is a proxy (scaled from the other participant's, or a median share of world
    output: a volume nobody measured; only with ``sourced_only``), ``"unusable"`` where it is ore or concentrate no
    plant of its own takes (:func:`unusable_ore_reason`). The portfolio's sample and the stock plan's sizing after
    the projects use the same rule."""
    if sourced_only and str(node.demand_basis.get(participant, "")).startswith("proxy"):
        return "proxy"
    if unusable_ore_reason(sim, node, participant):
        return "unusable"
    return None


def plant_intake_t(sim: Any, node: Any, participant: str) -> float | None:
    """Tonnes a year of ``node`` the participant's own plants can take in, or None when not bounded here.

    For ore and concentrate whose chain links carry most of their use (as :func:`unusable_ore_reason`): the
    participant's output at the linked next stages, ``Σ_v s_jv Q0_v c_uv`` (share of world output times world
    output times the tonnes of input per tonne of output). Japan's cobalt: Sumitomo Metal Mining's refining, 2.3 %
    of world refined output, takes about 5,700 t of intermediate a year; a stock sized on Japan's refined
    consumption (16,385 t) held 17 months of that plant's feed (review 6).
    """
    links = ore_links(sim, node)
    if links is None:
        return None
    total = 0.0
    for v, _, c_uv in links:
        nxt = sim.nodes.nodes[v]
        if not (np.isfinite(nxt.q0_t) and np.isfinite(c_uv)):
            return None
        total += nxt.shares.get(participant, 0.0) * nxt.q0_t * c_uv
    return total if total > 0 else None
