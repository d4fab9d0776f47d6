"""critmin benchmarks: run with `make bench` (or `python benchmarks/run.py [--update-baseline]`).

Times the atlas and assessment paths in process and prints a table of ratios against the recorded baseline
(`benchmarks/baseline.json`, measured on the machine named there). Targets are stated per case; a ratio
above 1 means slower than the baseline. Memory is the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

BASELINE = Path(__file__).with_name("baseline.json")


def timeit(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--update-baseline", action="store_true")
    ap.add_argument("--no-dask", action="store_true", help="skip the Dask scaling case (about 2 minutes)")
    ap.add_argument("--no-load", action="store_true", help="skip the web load tests (50 clients, 20 s; 10 clients, 60 s while a plan runs)")
    args = ap.parse_args()

    from critmin.assess import METHODS, AssessmentContext, assess, hhi
    from critmin.atlas import load_atlas

    atlas = load_atlas()
    rng = np.random.default_rng(0)
    draws = rng.dirichlet(np.ones(20), size=100_000)  # 100,000 share vectors x 20 countries

    def hhi_scalar() -> None:  # pure-Python reference of the same formula
        for row in draws[:10_000].tolist():
            sum((100 * x) ** 2 for x in row)

    cases: dict[str, tuple[Callable[[], object], str]] = {
        "load_atlas": (lambda: load_atlas(), "< 2 s"),
        "context_BLOC": (lambda: AssessmentContext(atlas, "BLOC"), "< 2 s"),
        "assess_all_methods_x3": (
            lambda: [assess(atlas, p, m) for p in ("USA", "JPN", "BLOC") for m in sorted(METHODS)],
            "< 30 s",
        ),
        "hhi_vectorised_100k_draws": (lambda: hhi(draws), "< 0.05 s"),
        "hhi_scalar_10k_draws": (hhi_scalar, "reference"),
    }
    results = {name: timeit(fn, 3 if "assess" in name else 5) for name, (fn, _) in cases.items()}

    # disruption simulator: the full generated sweep (issue 3 targets), in process and on Dask
    from critmin.simulate.bench import bench_simulate
    from critmin.simulate.run import Simulator

    sim = Simulator.build(atlas)
    sweep = bench_simulate(sim, draws=1000, seed=0, sample=300, threads=2)
    cases["simulate_sweep_1000_draws"] = (lambda: None, "< 10 s, < 4 GB, >= 100x scalar, rel diff < 1e-6")
    results["simulate_sweep_1000_draws"] = sweep["seconds"]
    # portfolio optimiser (issue 4 targets): generated pipelines on the real 500-draw scenario sample
    from critmin.portfolio.bench import bench_portfolio
    from critmin.portfolio.model import sample_from_simulator

    pf = bench_portfolio(sample_from_simulator(sim, draws=500, seed=0), frontier_points=20)
    for c in pf["cases"]:
        name = f"portfolio_{c['projects']}_projects_500_draws"
        cases[name] = (lambda: None, "< 60 s at a 1 % gap" if c["projects"] == 1000 else "reported")
        results[name] = c["seconds"]
    cases["portfolio_frontier_20_points_1000"] = (lambda: None, "< 300 s")
    results["portfolio_frontier_20_points_1000"] = pf["frontier_seconds"]
    # web workspace: a register workbook of 2,058 projects imported, then imported again unchanged
    from register_import import bench_import  # benchmarks/register_import.py

    imp = bench_import(2000)
    cases["register_import_2000_projects"] = (lambda: None, "< 10 s")
    results["register_import_2000_projects"] = imp["create_seconds"]
    cases["register_reimport_unchanged"] = (lambda: None, "< 10 s")
    results["register_reimport_unchanged"] = imp["unchanged_seconds"]
    # the coordinated plan from a study and the rapid-response brief (issue 12 targets)
    from plan import bench_plan  # benchmarks/plan.py

    pl = bench_plan(500)
    cases["plan_from_study_500_draws"] = (lambda: None, "< 120 s, every report written")
    results["plan_from_study_500_draws"] = pl["plan_from_study_seconds"]
    cases["respond_brief_1000_draws"] = (lambda: None, "< 60 s")
    results["respond_brief_1000_draws"] = pl["respond_brief_seconds"]
    if not args.no_dask:
        from critmin.simulate.distributed import dask_client

        for n in (1, 2):
            with dask_client(workers=n) as client:
                bench_simulate(sim, draws=50, seed=0, sample=1, client=client)  # warm the workers
                rec = bench_simulate(sim, draws=10_000, seed=0, sample=1, client=client)
            name = f"simulate_sweep_10x_dask_{n}_worker"
            cases[name] = (lambda: None, "2 workers >= 1.6x faster than 1")
            results[name] = rec["seconds"]
    results["hhi_speedup_per_draw"] = (results["hhi_scalar_10k_draws"] / 10_000) / (results["hhi_vectorised_100k_draws"] / 100_000)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    print(f"{'case':32} {'seconds':>10} {'baseline':>10} {'ratio':>7}  target")
    for name, (_, target) in cases.items():
        b = base.get("seconds", {}).get(name)
        ratio = f"{results[name] / b:7.2f}" if b else "      -"
        print(f"{name:32} {results[name]:10.4f} {b if b else float('nan'):10.4f} {ratio}  {target}")
    print(f"{'hhi vectorised speed-up/draw':32} {results['hhi_speedup_per_draw']:10.1f}x")
    print(f"{'simulate: evaluations':32} {sweep['evaluations']:10d}  ({sweep['evaluations_per_s']:,.0f}/s)")
    print(f"{'simulate: speed-up vs scalar':32} {sweep['speedup_vs_scalar']:10.1f}x  (target >= 100x)")
    print(f"{'simulate: max rel diff':32} {sweep['max_rel_diff']:10.2e}  (target < 1e-6)")
    for c in pf["cases"]:
        print(f"{'portfolio ' + str(c['projects']) + ': gap, opt/greedy':32} {c['gap']:10.4f}  {c['objective_vs_greedy']:.3f}x greedy")
    if "simulate_sweep_10x_dask_2_worker" in results:
        sp = results["simulate_sweep_10x_dask_1_worker"] / results["simulate_sweep_10x_dask_2_worker"]
        print(f"{'simulate: Dask 2 vs 1 worker':32} {sp:10.2f}x  (target >= 1.6x)")
    print(f"{'peak RSS (MB)':32} {peak_mb:10.1f}")
    # model validity (issue 11 targets): back-test holdout, rankings, own-basis prices
    from validity import measure, report  # benchmarks/validity.py

    print()
    print("\n".join(report(measure(200, 0))))
    load = during = None
    if not args.no_load:
        from load import print_table, run_load  # benchmarks/load.py

        load = run_load(50, 20.0)
        print()
        print_table(load, base.get("load_p95_ms", {}))
        # issue 14: reads while a plan on a 2,000-project register executes in a worker process
        during = run_load(10, 60.0, runs=1, projects=2000)
        print()
        print_table(during, base.get("load_during_runs_p95_ms", {}))
    if args.update_baseline or not BASELINE.exists():
        BASELINE.write_text(
            json.dumps(
                {"machine": f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip(),
                 "seconds": {k: round(v, 6) for k, v in results.items() if k in cases},
                 "peak_rss_mb": round(peak_mb, 1),
                 **({"load_p95_ms": {k: round(v["p95_ms"], 2) for k, v in load["endpoints"].items()}} if load else
                    {"load_p95_ms": base.get("load_p95_ms", {})}),
                 **({"load_during_runs_p95_ms": {k: round(v["p95_ms"], 2) for k, v in during["endpoints"].items()}} if during else
                    {"load_during_runs_p95_ms": base.get("load_during_runs_p95_ms", {})})},
                indent=2,
            )
            + "\n"
        )
        print(f"baseline written to {BASELINE.name}")


if __name__ == "__main__":
    main()
