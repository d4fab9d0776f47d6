"""End-to-end tests of the simulator commands (subprocess, as a user runs them)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import run


def test_risk_json_interface() -> None:
    data = json.loads(run("risk", "--perspective", "USA", "--format", "json", "--draws", "60").stdout)
    assert isinstance(data, list) and len(data) > 50
    for key in ("commodity", "rank", "expected_loss_usd", "category", "top_scenarios", "var95_usd", "cvar95_usd"):
        assert key in data[0], key
    assert [r["rank"] for r in data] == list(range(1, len(data) + 1))
    valued = [r["expected_loss_usd"] for r in data if r["expected_loss_usd"] is not None]
    assert valued == sorted(valued, reverse=True)
    assert data[0]["category"] in ("high", "elevated") and data[0]["top_scenarios"]  # thresholds of CATEGORY_THRESHOLDS_USD
    assert {r["category"] for r in data} <= {"high", "elevated", "moderate", "limited", "negligible", "negative", "not valued"}
    ga = next(r for r in data if r["commodity"] == "gallium")
    # China's 2023 licence regime is in the 2024 baseline: flagged, not re-applied as a new shock
    assert not ga["in_force_controls"] and any("ev.E010.gallium.refine" in f for f in ga["flags"])
    co = next(r for r in data if r["commodity"] == "cobalt")
    assert "ev.E018.cobalt.mine" in co["in_force_controls"]  # DRC quotas of October 2025: after the baseline
    # the USA's own export bans are not risks to the USA
    assert not any(t["scenario"].startswith("gen.USA.") for r in data for t in r["top_scenarios"])
    assert all("draws" in r["basis"] and (r["expected_loss_se_usd"] is None or r["expected_loss_se_usd"] >= 0) for r in data)


def test_simulate_event_json_and_reproducible() -> None:
    args = ("simulate", "ev.E010.gallium.refine", "--draws", "40", "--seed", "7", "--format", "json", "--paths")
    a = json.loads(run(*args).stdout)
    b = json.loads(run(*args).stdout)
    assert a == b
    assert a["metadata"]["seed"] == 7 and a["metadata"]["draws"] == 40 and a["metadata"]["data_version"]
    per = {r["perspective"]: r for r in a["results"]}
    assert set(per) == {"USA", "JPN", "BLOC"}
    assert per["BLOC"]["expected_loss_usd"] > 0 and per["BLOC"]["peak_price_ratio_p50"] > 1
    assert len(a["paths"]) == 12 and a["paths"][0]["month"] == 1


def test_simulate_file_with_chart_and_table(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "id: cobalt-drc\ncommodity: cobalt\nstage: mine\nrestrictors: [COD]\ntargets: [WORLD]\nduration_months: 6\n"
        "response:\n  stockpile: {holdings_t: 3000, max_release_t_per_month: 400}\n  demand_restraint: 0.05\n"
    )
    html = tmp_path / "c.html"
    p = run("simulate", str(f), "--draws", "30", "--chart", str(html))
    assert "cobalt-drc" in p.stdout and "Monthly bands" in p.stdout
    text = html.read_text()
    assert len(text) > 1_000_000 and 'src="http' not in text  # plotly.js embedded, nothing loaded from the network
    png = tmp_path / "c.png"
    run("simulate", str(f), "--draws", "10", "--chart", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_bad_file_names_field(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("id: x\ncommodity: gallium\nstage: refine\nrestrictors: [CHN]\nwithheld_share: 2\n")
    p = run("simulate", str(f), ok=False)
    assert p.returncode == 2
    assert "bad.yaml" in p.stderr and "withheld_share" in p.stderr
    p = run("simulate", "no-such-scenario", ok=False)
    assert p.returncode == 2 and "scenarios list" in p.stderr


def test_scenarios_list_and_show() -> None:
    rows = json.loads(run("scenarios", "list", "--format", "json").stdout)
    assert any(r["id"] == "ev.E019.ndfeb_magnets.magnet" for r in rows)
    gen = json.loads(run("scenarios", "list", "--family", "generated", "--commodity", "gallium", "--format", "json").stdout)
    assert gen and all(r["id"].startswith("gen.") for r in gen)
    shown = run("scenarios", "show", "ev.E017.cobalt.mine").stdout
    assert "COD" in shown and "event_E017" in shown and "annual_probability" in shown


def test_bench_simulate_json_interface() -> None:
    rec = json.loads(run("bench", "simulate", "--json", "--draws", "8", "--sample", "20").stdout)
    for key in ("evaluations", "seconds", "evaluations_per_s", "speedup_vs_scalar", "max_rel_diff", "peak_rss_mb"):
        assert key in rec, key
    assert rec["evaluations"] == rec["scenarios"] * 8
    assert rec["max_rel_diff"] < 1e-6


def test_version() -> None:
    p = run("--version")
    assert p.stdout.strip()


def test_risk_on_dask_scheduler_address_equals_single_process() -> None:
    distributed = __import__("pytest").importorskip("distributed")
    args = ("risk", "--perspective", "JPN", "--format", "json", "--draws", "24", "--seed", "3")
    single = json.loads(run(*args).stdout)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dist = json.loads(run(*args, "--dask", cluster.scheduler_address).stdout)
    assert dist == single


def test_scenario_errors_name_file_and_field(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    f = tmp_path / "typo.yaml"
    f.write_text("id: x\ncommodity: galium\nstage: refine\nrestrictors: [CHN]\n")
    g = tmp_path / "bloc.yaml"
    g.write_text("id: y\ncommodity: gallium\nstage: refine\nrestrictors: [JPN]\ntargets: [BLOC]\n")
    # three independent refusals, run side by side (each is a fresh interpreter)
    with ThreadPoolExecutor(max_workers=3) as pool:
        typo, folder, bloc = pool.map(lambda path: run("simulate", str(path), ok=False), (f, tmp_path, g))
    assert typo.returncode == 2 and "typo.yaml" in typo.stderr and "'commodity'" in typo.stderr
    assert folder.returncode == 2 and "not a file" in folder.stderr
    assert bloc.returncode == 2 and "BLOC it belongs to" in bloc.stderr
