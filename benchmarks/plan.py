"""The coordinated plan and the rapid-response brief, timed end to end: `python benchmarks/plan.py` (also run
by run.py). Targets (issue 12): `critmin respond` writes its brief in under a minute; the whole plan from a
study (500 draws, every report written) in under two minutes on 2 cores.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def bench_plan(draws: int = 500) -> dict[str, float]:
    from critmin.report.respond import respond, write_brief
    from critmin.report.writers import write_plan
    from critmin.study import Study
    from critmin.study.template import init_study

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="critmin-plan-bench-") as d:
        t0 = time.perf_counter()
        init_study(Path(d) / "study", "2026-12")
        st = Study.from_file(Path(d) / "study" / "study.yaml", draws=draws)
        out["study_init_and_check_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        plan = dict(st.plan().record)
        write_plan(plan, st.atlas, Path(d) / "out")
        out["plan_from_study_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        rec = respond(st.simulator, st.scenarios("gen.CHN.gallium.refine.JPN.6m"), st.projects, st.buyers, draws=1000, as_of="2026-12")
        write_brief(rec, Path(d) / "brief")
        out["respond_brief_seconds"] = time.perf_counter() - t0
    return out


if __name__ == "__main__":
    for k, v in bench_plan().items():
        print(f"{k:32} {v:8.2f}")
