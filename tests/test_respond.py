"""Issue 12 item 8: `critmin respond` writes the rapid-response brief (HTML, PDF, JSON) for a new event, fast."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from tests.test_cli import run


def test_respond_to_a_new_event_from_a_file(tmp_path: Path):
    # "China bans exports of gallium to Japan from next month, for six months"
    (tmp_path / "event.yaml").write_text(yaml.safe_dump({
        "id": "new.CHN.gallium.JPN", "title": "China bans gallium exports to Japan", "commodity": "gallium", "stage": "refine",
        "restrictors": ["CHN"], "targets": ["JPN"], "regime": "ban", "duration_months": 6, "start_month": 1}))
    t0 = time.perf_counter()
    run("respond", str(tmp_path / "event.yaml"), "--out", str(tmp_path / "brief"), "--draws", "400", "--as-of", "2026-12")
    assert time.perf_counter() - t0 < 60
    for f in ("brief.html", "brief.pdf", "brief.json"):
        assert (tmp_path / "brief" / f).is_file(), f
    rec = json.loads((tmp_path / "brief" / "brief.json").read_text())
    ev = rec["events"][0]
    assert ev["commodity"] == "gallium" and ev["targets"] == ["JPN"]
    imp = {r["perspective"]: r for r in ev["impact"]}
    # a ban on Japan hurts Japan; the U.S. is not targeted and loses less
    assert imp["JPN"]["expected_loss_usd"] > 0 and imp["JPN"]["expected_loss_usd"] >= imp["USA"]["expected_loss_usd"]
    assert imp["JPN"]["peak_price_ratio_p05"] <= imp["JPN"]["peak_price_ratio_p50"] <= imp["JPN"]["peak_price_ratio_p95"]
    assert len(ev["bands"]) == 6 and all(b["price_t_p05"] <= b["price_t_p95"] for b in ev["bands"])
    assert {r["participant"] for r in ev["exposure"]} == {"USA", "JPN"}
    assert all(c["commercial_stock_days"] > 0 for c in ev["cover"])
    # alternative suppliers are only participants and like-minded countries, never a country of concern
    assert all(a["country"] not in ("CHN", "RUS") for a in ev["alternatives"])
    # the targeted participant's own output is its domestic supply, not an alternative supplier to it
    assert all(a["country"] != "JPN" for a in ev["alternatives"])
    # the register's gallium projects (Wagerup, Gramercy) and buyers appear
    assert any(p["project_id"] == "P077" for p in ev["projects"]) and ev["buyers"]
    import pymupdf

    doc = pymupdf.open(tmp_path / "brief" / "brief.pdf")
    assert doc.page_count == 2 and "Rapid-response brief" in doc[0].get_text()
    # review 34: names and reasons wrap in their cells instead of being cut at 44 characters
    import re

    flat = re.sub(r"\s+", "", "".join(p.get_text() for p in doc))
    for p in ev["projects"][:4]:
        assert re.sub(r"\s+", "", p["name"]) in flat, p["name"]
    # each participant's own government stock: the sourced holding where published, else why not
    cover = {c["participant"]: c for c in ev["cover"]}
    assert "JOGMEC" in cover["JPN"]["government_stock"] and "JOGMEC" not in cover["USA"]["government_stock"]
    assert cover["USA"]["government_stock_t"] is None or "days of use" in cover["USA"]["government_stock"]
    page = (tmp_path / "brief" / "brief.html").read_text()
    assert "<script" not in page and "http" not in page.split("<body>")[1][:200] and "nan" not in page.split()


def test_respond_refuses_an_unknown_event_at_once(tmp_path: Path):
    p = run("respond", "ev.E999.unobtainium.mine", "--out", str(tmp_path / "b"), ok=False)
    assert p.returncode == 2 and "E999" in p.stderr
    assert not (tmp_path / "b").exists()


def test_respond_to_a_measure_on_an_input_names_what_it_cuts(tmp_path: Path):
    """Review 32 F2: E023's precursor licence cuts the Korean cathode made from Chinese precursor, so the brief's
    exposure shows that controlled share and Korea is no alternative supplier; Japan's makers (own precursor) are."""
    run("respond", "ev.E023.battery_cathode.cathode", "--out", str(tmp_path / "b"), "--draws", "100", "--as-of", "2026-12")
    ev = json.loads((tmp_path / "b" / "brief.json").read_text())["events"][0]
    assert {a["country"] for a in ev["alternatives"]} == {"JPN"}
    assert {round(e["restrictor_share_of_world"], 3) for e in ev["exposure"] if e["node"] == "battery_cathode/cathode"} == {0.245}
    assert any("input control" in f for f in ev["flags"])
