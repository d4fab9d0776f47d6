"""``critmin bench simulate``: the full generated sweep timed in process against the scalar reference.

- sweep: every generated scenario (producer > 1 % × node × target × duration) with its probability, as
  ``critmin risk`` runs it, over ``draws`` draws; ``evaluations`` = scenarios × draws (node-scenario-draw).
- reference: :func:`critmin.simulate.reference.scalar_losses` on a sample of the same scenarios and draws,
  computed from the scenario definitions, the node table and the parameter table (not the compiled arrays);
  ``speedup_vs_scalar`` = scalar seconds per evaluation / vectorised seconds per evaluation;
  ``max_rel_diff`` = max |vectorised - scalar| / max(|scalar|, 1e-12) over the sample (loss per participant).
- ``peak_rss_mb``: peak resident memory of the process (includes the loaded atlas).
"""

from __future__ import annotations

import platform
import resource
import sys
import time
from typing import Any

import numpy as np

from critmin.simulate.engine import NodeDraws, compile_batch, evaluate_chunk
from critmin.simulate.reference import scalar_losses
from critmin.simulate.run import Simulator, run


def _peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(r) / (1024.0 * 1024.0) if sys.platform == "darwin" else float(r) / 1024.0


def bench_simulate(sim: Simulator, draws: int = 1000, seed: int = 0, sample: int = 200, threads: int = 2, client: Any = None) -> dict[str, Any]:
    """Run the benchmark and return the interface record (see module docstring)."""
    scenarios = [s for s in sim.library() if s.family != "event"]
    probs = [sim.probability.scenario_probability(s, s.commodity) for s in scenarios]
    t0 = time.perf_counter()
    res = run(sim, scenarios, draws=draws, seed=seed, probabilities=probs, threads=threads, client=client)
    seconds = time.perf_counter() - t0
    evaluations = res.evaluations
    # scalar reference on a sample of (scenario, draw) pairs of the same sweep
    rng = np.random.default_rng(12345)
    pick = np.sort(rng.choice(len(scenarios), size=min(sample, len(scenarios)), replace=False))
    sub = [scenarios[i] for i in pick]
    batch = compile_batch(sub, sim.nodes, sim.chain, sim.params, [probs[i] for i in pick])
    nd = NodeDraws.sample(sim.nodes, sim.params, draws, seed)
    vec = evaluate_chunk(batch, nd, sim.settings, seed)
    cols = rng.integers(0, draws, size=len(sub))
    t1 = time.perf_counter()
    ref = np.array([scalar_losses(sub[k], sim.nodes, sim.chain, sim.params, sim.settings, seed, draws, int(cols[k]))
                    for k in range(len(sub))])
    scalar_s = (time.perf_counter() - t1) / len(sub)
    got = vec.loss_rel[np.arange(len(sub)), :, cols]
    rel = np.abs(got - ref) / np.maximum(np.abs(ref), 1e-12)
    return {
        "evaluations": int(evaluations),
        "scenarios": len(scenarios),
        "draws": draws,
        "seconds": round(seconds, 4),
        "evaluations_per_s": round(evaluations / seconds, 1),
        "scalar_seconds_per_evaluation": scalar_s,
        "speedup_vs_scalar": round(scalar_s / (seconds / evaluations), 1),
        "max_rel_diff": float(np.max(rel)) if rel.size else 0.0,
        "sample": len(sub),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "threads": threads,
        "dask": client is not None,
        "machine": f"{platform.machine()} {platform.system()}, Python {platform.python_version()}",
        "data_version": sim.atlas.data_version,
        "seed": seed,
    }
