"""End-to-end tests of the command line, run as a user would (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "critmin", *args], capture_output=True, text=True, timeout=300)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


@pytest.mark.parametrize("perspective", ["USA", "JPN", "BLOC"])
def test_assess_json_interface(perspective: str) -> None:
    data = json.loads(run("assess", "--perspective", perspective, "--format", "json").stdout)
    assert isinstance(data, list) and len(data) > 60
    for key in ("commodity", "name", "rank", "score", "method", "perspective", "stages", "top_country", "import_reliance", "chokepoint_stage", "source_ids"):
        assert key in data[0], key
    first = data[0]
    assert first["rank"] == 1 and first["perspective"] == perspective
    stage = first["stages"][first["chokepoint_stage"]]
    for key in ("hhi", "top_country", "top_share", "concern_share"):
        assert key in stage
    assert len({r["commodity"] for r in data}) == len(data)


def test_assess_table_and_methods() -> None:
    out = run("assess", "--method", "eu", "--top", "5").stdout
    assert "Priority minerals" in out and "rank" in out
    assert "geopolrisk" in run("methods").stdout


def test_assess_csv_and_xlsx(tmp_path: Path) -> None:
    csv_text = run("assess", "--format", "csv").stdout
    assert csv_text.splitlines()[0].startswith("rank,commodity")
    x = tmp_path / "a.xlsx"
    run("assess", "-p", "JPN", "--format", "xlsx", "--out", str(x))
    wb = openpyxl.load_workbook(x)
    assert "assessment" in wb.sheetnames and "about" in wb.sheetnames
    assert wb["assessment"].max_row > 60


def test_chain_and_audit() -> None:
    out = run("chain", "rare_earths").stdout
    assert "chokepoint: refine" in out
    data = json.loads(run("chain", "lithium", "--format", "json").stdout)
    assert {s["stage"] for s in data["stages"]} >= {"mine", "refine", "cathode", "cell"}
    audit = json.loads(run("data", "audit", "--format", "json").stdout)
    assert audit["rows_without_source"] == 0
    assert audit["commodities"] > 60
    assert "stage_nodes_without_data" in audit["gaps"]


def test_bad_input_gives_clear_error(tmp_path: Path) -> None:
    p = run("assess", "--perspective", "MARS", ok=False)
    assert p.returncode == 2 and "unknown perspective" in p.stderr
    p = run("assess", "--format", "yaml", ok=False)
    assert p.returncode == 2 and "unknown format" in p.stderr
    p = run("assess", "--format", "xlsx", ok=False)
    assert p.returncode == 2 and "needs --out" in p.stderr
    p = run("assess", "--atlas", str(tmp_path), ok=False)
    assert p.returncode == 2 and "table file is missing" in p.stderr


def test_data_build_roundtrip(tmp_path: Path) -> None:
    raw = Path(__file__).resolve().parents[1] / "data" / "raw"
    out = tmp_path / "atlas"
    run("data", "build", "--raw", str(raw), "--out", str(out))
    data = json.loads(run("assess", "--atlas", str(out), "--format", "json").stdout)
    assert len(data) > 60


@pytest.mark.parametrize("command", [["deliver"], ["match"], ["portfolio", "--draws", "20"]])
def test_a_month_13_is_refused_everywhere(command: list[str]) -> None:
    """Issue 13: `critmin deliver --as-of 2026-13` planned without complaint. One month check (critmin._dates)
    serves the CLI, the study file, the web API and the library, before any work starts."""
    p = run(*command, "--as-of", "2026-13", ok=False)
    assert p.returncode == 2 and "'2026-13' is not a month YYYY-MM (01-12)" in p.stderr


def test_the_library_checks_its_options_too(atlas) -> None:
    import pandas as pd

    from critmin.deliver.match import match
    from critmin.deliver.plan import MAX_MONTHS, delivery_plan
    from critmin.errors import CritminError
    from critmin.web.jobs import DeliverParams

    with pytest.raises(CritminError, match="as_of: '2026-13' is not a month"):
        delivery_plan(atlas, pd.DataFrame(), pd.DataFrame(), 6, "2026-13")
    with pytest.raises(CritminError, match="as_of: '2026-00' is not a month"):
        match(atlas, pd.DataFrame(), pd.DataFrame(), "2026-00")
    with pytest.raises(CritminError, match=f"months: Input should be less than or equal to {MAX_MONTHS}"):
        delivery_plan(atlas, pd.DataFrame(), pd.DataFrame(), MAX_MONTHS + 1, "2026-12")
    # the web API takes the same horizon bound as the CLI and the library
    assert DeliverParams.model_validate({"months": MAX_MONTHS}).months == MAX_MONTHS
