"""Load test of the web workspace: `python benchmarks/load.py` (also run by `benchmarks/run.py`).

Starts `critmin serve` on loopback with a fresh SQLite workspace (bundled registers loaded), signs in one
user per client, warms the caches, then runs CLIENTS concurrent clients (each its own keep-alive
connection, one request at a time) for DURATION seconds over the main read endpoints. Prints per endpoint
the requests, errors, p50 and p95 latency (ms) and the ratio of p95 to the recorded baseline
(baseline.json, key "load_p95_ms"). Target (issue 6): p95 under 100 ms for cached reads, no errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from critmin.web.process import ServerProcess, add_user

BASELINE = Path(__file__).with_name("baseline.json")
PASSWORD = "load test password"
#: The main read endpoints (all but /api/projects and /api/runs are cached in the server process).
ENDPOINTS = {
    "health": "/api/health",
    "priority": "/api/minerals/priority?method=critmin&perspective=BLOC&top=25",
    "supply_map": "/api/atlas/supply?commodity=gallium&stage=refine",
    "nodes": "/api/atlas/nodes",
    "sankey": "/api/chains/rare_earth_magnets/sankey",
    "library": "/api/scenarios/library?limit=50",
    "projects": "/api/projects",
    "runs": "/api/runs",
}


async def _client(base: str, token: str, names: list[str], until: float, out: dict[str, list[float]], errors: dict[str, int], k: int) -> None:
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30,
                                 limits=httpx.Limits(max_connections=1)) as c:
        i = k
        while time.perf_counter() < until:
            name = names[i % len(names)]
            i += 1
            t0 = time.perf_counter()
            try:
                r = await c.get(ENDPOINTS[name])
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            dt = (time.perf_counter() - t0) * 1000
            if ok:
                out[name].append(dt)
            else:
                errors[name] += 1


async def _load(base: str, tokens: list[str], duration: float) -> tuple[dict[str, list[float]], dict[str, int], float]:
    names = list(ENDPOINTS)
    out: dict[str, list[float]] = {n: [] for n in names}
    errors = dict.fromkeys(names, 0)
    t0 = time.perf_counter()
    until = t0 + duration
    await asyncio.gather(*(_client(base, tok, names, until, out, errors, k) for k, tok in enumerate(tokens)))
    return out, errors, time.perf_counter() - t0


def run_load(clients: int = 50, duration: float = 20.0, database: str | None = None) -> dict[str, object]:
    """Start a server, load it, stop it; returns per-endpoint statistics. ``database``: an empty database
    URL (e.g. PostgreSQL) instead of a fresh SQLite file."""
    with tempfile.TemporaryDirectory(prefix="critmin-load-") as d:
        db = database or f"sqlite:///{Path(d) / 'w.db'}"
        email = "load@bench.example"
        add_user(db, email, "Bench", "government", PASSWORD, cwd=Path(d))
        with ServerProcess(db, cwd=Path(d)) as server:
            base = server.base
            # one session per client (logins are argon2-slow by design: done before the clock starts)
            tokens = [httpx.post(base + "/api/auth/login", json={"username": email, "password": PASSWORD}).json()["access_token"] for _ in range(clients)]
            h = {"Authorization": f"Bearer {tokens[0]}"}
            for path in ENDPOINTS.values():  # warm the caches
                httpx.get(base + path, headers=h, timeout=60).raise_for_status()
            out, errors, seconds = asyncio.run(_load(base, tokens, duration))
    rows = {}
    for name, lat in out.items():
        a = np.array(lat) if lat else np.array([np.nan])
        rows[name] = {"requests": len(lat), "errors": errors[name], "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95))}
    allv = np.concatenate([np.array(v) for v in out.values() if v])
    total = {"requests": int(allv.size), "errors": int(sum(errors.values())), "p50_ms": float(np.percentile(allv, 50)),
             "p95_ms": float(np.percentile(allv, 95)), "requests_per_s": float(allv.size / seconds)}
    return {"clients": clients, "duration_s": duration, "database": db.split(":", 1)[0], "endpoints": rows, "total": total}


def print_table(rec: dict[str, object], base: dict[str, float]) -> None:
    print(f"load test: {rec['clients']} concurrent clients, {rec['duration_s']:.0f} s on loopback ({rec.get('database', 'sqlite')} workspace)")
    print(f"{'endpoint':12} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p95 ms':>8} {'base p95':>9} {'ratio':>6}  target")
    eps: dict[str, dict[str, float]] = rec["endpoints"]  # type: ignore[assignment]
    for name, r in eps.items():
        b = base.get(name)
        ratio = f"{r['p95_ms'] / b:6.2f}" if b else "     -"
        target = "p95 < 100 ms" if name not in ("projects", "runs") else "reported (database read)"
        print(f"{name:12} {r['requests']:9d} {r['errors']:7d} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {b if b else float('nan'):9.1f} {ratio}  {target}")
    t: dict[str, float] = rec["total"]  # type: ignore[assignment]
    print(f"{'all':12} {int(t['requests']):9d} {int(t['errors']):7d} {t['p50_ms']:8.1f} {t['p95_ms']:8.1f}  ({t['requests_per_s']:.0f} requests/s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--database", help="an empty workspace database URL (default: a fresh SQLite file)")
    ap.add_argument("--update-baseline", action="store_true")
    args = ap.parse_args()
    rec = run_load(args.clients, args.duration, args.database)
    base_all = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    if args.json:
        print(json.dumps(rec, indent=2))
    else:
        print_table(rec, base_all.get("load_p95_ms", {}))
    if args.update_baseline:
        base_all["load_p95_ms"] = {k: round(v["p95_ms"], 2) for k, v in rec["endpoints"].items()}  # type: ignore[attr-defined]
        BASELINE.write_text(json.dumps(base_all, indent=2) + "\n")
        print("baseline written")


if __name__ == "__main__":
    main()
