"""End-to-end tests of the browser dashboard (``/``): a real ``critmin serve`` process on a fresh SQLite
workspace, driven by Debian's Chromium through Playwright.

The browser is never downloaded: the module skips when no ``chromium`` binary is installed. The tests
share one signed-in page and run in file order (sign in first, the offline and console checks last).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
if CHROMIUM is None:
    pytest.skip("no chromium binary (the dashboard tests use Debian's chromium, never a downloaded browser)", allow_module_level=True)
pytest.importorskip("playwright.sync_api")

from playwright.sync_api import Page, sync_playwright  # noqa: E402

from critmin.web.process import ServerProcess, add_user  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "correct horse battery"
EMAIL = "analyst@us.example"
COLLEAGUE = "colleague@us.example"
ORG = "US Department of Energy"
#: Browser console errors the tests provoke on purpose: the failed login (401), the wrong current password (403),
#: the edit conflict (409) and the refused import (422).
EXPECTED_HTTP_ERRORS = re.compile(r"Failed to load resource: the server responded with a status of (401|403|409|422)")


# ------------------------------------------------------------------------------------------------ server
@dataclass
class Server:
    base: str
    tokens: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, body: Any = None, email: str | None = EMAIL) -> tuple[int, Any]:
        """One API request with a bearer token (the test's side channel: another user, another tab)."""
        headers = {"Accept": "application/json"}
        if email is not None:
            headers["Authorization"] = f"Bearer {self.token(email)}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            e.close()
            return e.code, json.loads(raw) if raw else None

    def token(self, email: str) -> str:
        if email not in self.tokens:
            status, body = self.call("POST", "/api/auth/login", {"username": email, "password": PASSWORD}, email=None)
            assert status == 200, body
            self.tokens[email] = body["access_token"]
        return self.tokens[email]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("web-e2e")
    url = f"sqlite:///{d / 'w.db'}"
    for email in (EMAIL, COLLEAGUE):
        add_user(url, email, ORG, "government", PASSWORD)
    with ServerProcess(url, cwd=d, log=d / "server.log") as proc:
        yield Server(proc.base)


# ------------------------------------------------------------------------------------------------ browser
@dataclass
class Browser:
    page: Page
    base: str
    srv: Server
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def tab(self, name: str) -> None:
        self.page.click(f"#tab-btn-{name}")
        self.page.wait_for_selector(f"#tab-{name}:not([hidden])")

    def count(self, selector: str) -> int:
        return int(self.page.locator(selector).count())

    def wait_count(self, selector: str, at_least: int, timeout_s: float = 30.0) -> int:
        """Wait until ``selector`` matches at least ``at_least`` elements (polled from Python: the page's CSP
        forbids the eval that string predicates of wait_for_function would need)."""
        t0 = time.monotonic()
        while True:
            n = self.count(selector)
            if n >= at_least:
                return n
            if time.monotonic() - t0 > timeout_s:
                raise AssertionError(f"{selector}: {n} elements after {timeout_s} s, expected >= {at_least}")
            self.page.wait_for_timeout(100)

    def wait_run(self, box: str, timeout_s: float = 60.0) -> str:
        """Wait for the run shown in the status box ``box`` to end; its final status."""
        self.page.wait_for_selector(f"#{box}[data-status='done'], #{box}[data-status='failed'], #{box}[data-status='cancelled']",
                                    timeout=timeout_s * 1000)
        return str(self.page.get_attribute(f"#{box}", "data-status"))


@pytest.fixture(scope="module")
def ui(server: Server) -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        b = Browser(page, server.base, server)
        page.on("request", lambda r: b.requests.append(r.url))
        page.on("console", lambda m: b.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: b.errors.append(f"pageerror: {e}"))
        try:
            yield b
        finally:
            context.close()
            browser.close()


# ------------------------------------------------------------------------------------------------ tests
def test_sign_in_through_the_form(ui: Browser) -> None:
    page = ui.page
    page.goto(ui.base + "/")
    page.wait_for_selector("#login-form")
    assert page.is_hidden("#app-view")
    page.fill("#login-username", EMAIL)
    page.fill("#login-password", "not the password")
    page.click("#login-submit")
    page.wait_for_selector("#login-error:not([hidden])")
    assert "Wrong email or password" in page.text_content("#login-error")
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#app-view:not([hidden])")
    assert page.text_content("#user-email") == EMAIL
    assert page.text_content("#user-org") == ORG
    assert page.text_content("#user-role") == "government"
    assert page.is_visible("#logout-button")
    # the session cookie is HttpOnly: the page sees only the CSRF cookie
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["critmin_session"]["httpOnly"] and cookies["critmin_session"]["secure"]
    assert "critmin_session" not in page.evaluate("() => document.cookie")


def test_priority_table_and_world_map(ui: Browser) -> None:
    page = ui.page
    ui.tab("priority")
    assert ui.wait_count("#priority-table tbody tr", 10) >= 10
    assert ui.count("#priority-method option") >= 3
    # a plotly geo trace with the world's country paths drawn from the served topology
    ui.wait_count("#supply-map .geo", 1)
    assert ui.wait_count("#supply-map path.choroplethlocation", 51) > 50
    # plotly and the world topology come from this server
    assert ui.base + "/assets/plotly.min.js" in ui.requests
    assert ui.base + "/assets/topojson/world_110m.json" in ui.requests
    ui.wait_count("#supply-table tbody tr", 1)
    # no "share chart" button: it would upload the data to Plotly's cloud
    assert ui.count("#supply-map .modebar-btn") >= 1
    assert ui.count(".modebar-btn[data-title^='Share']") == 0
    # a ranking row sets the map to its commodity and chokepoint stage
    page.click("#priority-table tbody tr[data-commodity='gallium']")
    page.wait_for_selector("#supply-map .gtitle:has-text('Gallium')")
    assert page.input_value("#map-node") == "gallium|refine"
    assert page.text_content("#supply-table tbody tr td") == "CHN"
    # another perspective and method re-rank
    with page.expect_response(lambda r: "/api/minerals/priority" in r.url and "perspective=JPN" in r.url and "method=eu" in r.url) as resp:
        page.select_option("#priority-method", "eu")
        page.select_option("#priority-perspective", "JPN")
    assert resp.value.ok
    page.wait_for_selector("#priority-method-note:has-text('EU CRM')")
    ui.wait_count("#priority-table tbody tr", 10)


def test_sankey_of_a_chain(ui: Browser) -> None:
    page = ui.page
    ui.tab("chains")
    assert ui.wait_count("#chain-select option", 5) >= 5
    assert ui.wait_count("#sankey-chart .sankey .sankey-node", 4) >= 4
    page.select_option("#chain-select", "gallium")
    page.wait_for_selector("#sankey-chart .gtitle:has-text('gallium')")
    assert ui.count("#sankey-chart .sankey-node") >= 2


def test_chain_vulnerabilities_by_stage(ui: Browser) -> None:
    page = ui.page
    ui.tab("chains")
    page.select_option("#chain-select", "rare_earth_magnets")
    page.wait_for_selector("#chain-vuln-title:has-text('rare earth magnets')")
    assert ui.wait_count("#chain-vuln-table tbody tr[data-vuln]", 3) >= 3
    # upstream first, one row per node of the chain (as the core orders them), with its concentration
    stages = page.locator("#chain-vuln-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.commodity + '/' + r.dataset.stage)")
    nodes = page.request.get(ui.base + "/api/chains/rare_earth_magnets/nodes").json()
    assert stages == [f"{n['commodity']}/{n['stage']}" for n in nodes]
    assert stages[-1] == "ndfeb_magnets/magnet" and {n["step"] for n in nodes if n["commodity"] == "rare_earths" and n["stage"] == "mine"} == {0}
    assert {"rare_earths/refine", "dysprosium/refine", "terbium/refine", "ndpr/refine"} <= set(stages)
    refine = page.locator("#chain-vuln-table tbody tr[data-commodity='rare_earths'][data-stage='refine'] td").all_text_contents()
    assert refine[5].startswith("CHN") and "91.3 %" in refine[5]
    assert ui.count("#chain-vuln-table tbody tr.choke .badge-choke") >= 1
    # a node without country shares is listed as such
    page.select_option("#chain-select", "gallium")
    page.wait_for_selector("#chain-vuln-table tbody tr.nodata[data-commodity='gaas_semiconductors']")
    assert ui.count("#chain-vuln-table tbody tr[data-vuln][data-commodity='gallium']") == 1


def test_scenario_run_draws_price_and_shortfall_bands(ui: Browser) -> None:
    page = ui.page
    ui.tab("scenarios")
    ui.wait_count("#scenario-library tbody tr button", 1)
    ui.wait_count("#sb-node option", 10)
    page.fill("#scenario-q", "ev.E001.rare_earths")
    page.click("#scenario-search")
    page.wait_for_selector("#scenario-count:has-text('1 of 1 ')")
    page.click("#scenario-library button[data-add='ev.E001.rare_earths.refine']")
    assert page.text_content("#sim-selected").startswith("ev.E001.rare_earths.refine")
    page.fill("#sim-draws", "200")
    page.click("#sim-run")
    assert ui.wait_run("sim-run-status") == "done"
    page.wait_for_selector("#sim-results:not([hidden])")
    # p05-p95 bands (filled areas) and median lines of price and of both participants' shortfall
    assert ui.wait_count("#sim-price-chart .scatterlayer .trace", 4) >= 4
    assert ui.count("#sim-price-chart .scatterlayer path.js-fill") >= 1
    assert ui.wait_count("#sim-shortfall-chart .scatterlayer .trace", 6) >= 6
    assert ui.count("#sim-shortfall-chart .scatterlayer path.js-fill") >= 2
    perspectives = page.locator("#sim-table tbody tr td:nth-child(2)").all_text_contents()
    assert sorted(perspectives) == ["BLOC", "JPN", "USA"]


def test_parameter_override_applies_to_the_run(ui: Browser) -> None:
    """Model assumptions: the parameter table with sources; an override (price cap fixed at 1x) goes with the
    next simulation, whose price band is then flat at 1; removed again, runs use the bundled table."""
    page = ui.page
    ui.tab("assumptions")
    ui.wait_count("#parameter-table tbody tr", 20)
    row = page.locator("#parameter-table tbody tr[data-name='max_price_ratio'][data-scope='*']")
    assert row.locator("td").nth(7).text_content()  # a source for every row
    row.locator("button").click()
    assert page.input_value("#ov-name") == "max_price_ratio" and page.input_value("#ov-scope") == "*"
    page.fill("#ov-value", "1")
    page.select_option("#ov-distribution", "fixed")
    page.click("#ov-add")
    page.wait_for_selector("#override-list li[data-name='max_price_ratio']")
    assert "max_price_ratio [*] = 1 (fixed)" in (page.text_content("#override-list") or "")
    ui.tab("scenarios")
    assert page.text_content("#sim-selected").startswith("ev.E001.rare_earths.refine")  # selected by the test above
    page.click("#sim-run")
    page.wait_for_selector("#sim-run-status:has-text('1 parameter override')")
    assert ui.wait_run("sim-run-status") == "done"
    status, runs = ui.srv.call("GET", "/api/runs?kind=simulate&limit=1")
    assert status == 200
    run = runs["items"][0]
    assert run["params"]["parameters"] == [{"name": "max_price_ratio", "scope": "*", "value": 1.0, "low": None, "high": None, "distribution": "fixed"}]
    status, res = ui.srv.call("GET", f"/api/runs/{run['id']}/result")
    assert status == 200 and {p["price_t_p95"] for p in res["result"]["paths"]} == {1.0}
    ui.tab("assumptions")
    page.click("#override-list li[data-name='max_price_ratio'] button")
    page.wait_for_selector("#override-list li.empty")


def test_blocs_of_my_runs(ui: Browser) -> None:
    """Countries of concern changed in the Assumptions tab go with the next run of any kind, and back."""
    page = ui.page
    ui.tab("assumptions")
    page.wait_for_selector("#blocs-msg:has-text(\"Your runs use the atlas's blocs.\")")
    concern = page.input_value("#bloc-concern")
    assert "CHN" in concern and "AUS" in page.input_value("#bloc-like_minded")
    page.fill("#bloc-concern", concern + ", bra")
    page.click("#blocs-apply")
    page.wait_for_selector("#blocs-msg:has-text('Your runs use your concern list')")
    ui.tab("delivery")
    page.click("#dl-run")
    page.wait_for_selector("#dl-run-status:has-text('blocs changed')")
    assert ui.wait_run("dl-run-status") == "done"
    status, runs = ui.srv.call("GET", "/api/runs?kind=deliver&limit=1")
    assert status == 200 and "BRA" in runs["items"][0]["params"]["blocs"]["concern"]
    assert "like_minded" not in runs["items"][0]["params"]["blocs"]  # only what differs from the atlas
    ui.tab("assumptions")
    page.click("#blocs-reset")
    page.wait_for_selector("#blocs-msg:has-text(\"Your runs use the atlas's blocs.\")")
    assert "BRA" not in page.input_value("#bloc-concern")


def test_build_and_run_a_scenario(ui: Browser) -> None:
    page = ui.page
    ui.tab("scenarios")
    ui.wait_count("#sb-node option", 10)
    page.select_option("#sb-node", "gallium|refine")
    page.fill("#sb-id", "e2e.gallium.ban")
    page.fill("#sb-restrictors", "chn")
    page.select_option("#sb-targets", "BLOC")
    page.select_option("#sb-regime", "ban")
    page.fill("#sb-withheld", "0.8")
    page.fill("#sb-duration", "6")
    page.click("#sb-run")
    assert ui.wait_run("sim-run-status") == "done"
    ui.wait_count("#sim-price-chart .scatterlayer path.js-fill", 1)
    assert page.input_value("#sim-path-scenario") == "e2e.gallium.ban"
    # the run's parameters are the scenario as built
    status, runs = ui.srv.call("GET", "/api/runs?kind=simulate&limit=1")
    assert status == 200
    scen = runs["items"][0]["params"]["scenario"]
    assert scen["restrictors"] == ["CHN"] and scen["targets"] == ["BLOC"] and scen["withheld_share"] == 0.8 and scen["duration_months"] == 6
    # saved to the workspace: listed, and added to the scenarios to simulate
    page.fill("#sb-id", "e2e.gallium.saved")
    page.click("#sb-save")
    page.wait_for_selector("#scenario-form-msg.msg-ok")
    page.wait_for_selector("#scenario-saved button[data-add='e2e.gallium.saved']")
    page.wait_for_selector("#sim-selected li[data-id='e2e.gallium.saved']")
    status, saved = ui.srv.call("GET", "/api/scenarios")
    assert status == 200 and [r["key"] for r in saved["items"]] == ["e2e.gallium.saved"]
    assert saved["items"][0]["data"]["withheld_share"] == 0.8


def test_project_register_add_edit_conflict_and_escaping(ui: Browser) -> None:
    page = ui.page
    srv = ui.srv
    # a record from another user whose name is markup: shown as text, never parsed
    evil = '<img src=x id="injected">Evil & co'
    status, body = srv.call("POST", "/api/projects", {"data": {"project_id": "E2E-X", "name": evil, "sponsor": "<b>bold</b>", "country_iso3": "AUS",
                                                                "commodity_id": "gallium", "stage": "refine", "status_class": "feasibility",
                                                                "sources": "test"}}, email=COLLEAGUE)
    assert status == 201, body
    ui.tab("projects")
    page.fill("#project-q", "E2E")
    page.click("#project-search-form button[type=submit]")
    page.wait_for_selector("#projects-table tbody tr[data-key='E2E-X']")
    assert ui.count("#injected") == 0 and ui.count("#projects-table img") == 0
    assert evil in page.text_content("#projects-table tbody tr[data-key='E2E-X']")

    # add a confidential project through the form
    page.click("#project-new")
    page.fill("#pf-project_id", "E2E-1")
    page.fill("#pf-name", "E2E gallium recovery plant")
    page.fill("#pf-sponsor", "E2E Metals")
    page.fill("#pf-country_iso3", "usa")
    page.fill("#pf-commodity_id", "gallium")
    page.fill("#pf-stage", "refine")
    page.select_option("#pf-status_class", "construction")
    page.fill("#pf-capacity_t", "50")
    page.fill("#pf-first_output", "2027-06")
    page.fill("#pf-sources", "https://example.org/e2e")
    page.check("#pf-confidential")
    page.click("#project-save")
    page.wait_for_selector("#project-msg.msg-ok")
    row = "#projects-table tbody tr[data-key='E2E-1']"
    page.wait_for_selector(row)
    assert "confidential" in page.text_content(row)
    rid = int(page.get_attribute(row, "data-id") or 0)
    status, rec = srv.call("GET", f"/api/projects/{rid}")
    assert status == 200 and rec["confidential"] and rec["data"]["country_iso3"] == "USA" and rec["data"]["capacity_t"] == 50

    # edit: version 1 -> 2
    page.fill("#pf-name", "E2E gallium recovery plant, phase 1")
    page.click("#project-save")
    page.wait_for_selector("#project-msg.msg-ok:has-text('version 2')")
    # a colleague changes it meanwhile; saving the stale version answers 409 with a clear message
    status, rec = srv.call("PUT", f"/api/projects/{rid}", {"version": 2, "data": {**rec["data"], "capacity_t": 75}}, email=COLLEAGUE)
    assert status == 200 and rec["version"] == 3
    page.fill("#pf-capex_usd", "120000000")
    page.click("#project-save")
    page.wait_for_selector("#project-msg.msg-warn")
    assert "someone else changed this project" in page.text_content("#project-msg")
    page.click("[data-testid=project-reload]")
    page.wait_for_selector("#project-msg.msg-ok:has-text('version 3')")
    assert page.input_value("#pf-capacity_t") == "75"
    page.fill("#pf-capex_usd", "120000000")
    page.click("#project-save")
    page.wait_for_selector("#project-msg.msg-ok:has-text('version 4')")

    # comments: markup stays text
    page.click(f"{row} button[data-comments]")
    page.wait_for_selector("#comments-card:not([hidden])")
    page.fill("#comment-body", "<script>alert(1)</script> looks fine")
    page.click("#comment-form button[type=submit]")
    page.wait_for_selector("#comments-list li .body:has-text('looks fine')")
    assert ui.count("#comments-list script") == 0
    assert page.text_content("#comments-list li .body") == "<script>alert(1)</script> looks fine"


def test_project_register_download_and_import(ui: Browser, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Download the register as Excel, add a project in the workbook, import it (confidential); a bad cell is
    refused with its sheet and cell named."""
    import openpyxl

    page = ui.page
    ui.tab("projects")
    with page.expect_download() as dl:
        page.click("#project-export")
    d = tmp_path_factory.mktemp("register")
    path = d / "projects.xlsx"
    dl.value.save_as(path)
    book = openpyxl.load_workbook(path)
    ws = book["projects"]
    header = [c.value for c in ws[1]]
    row = dict(zip(header, [c.value for c in ws[2]], strict=True)) | {"project_id": "E2E-IMPORT-1", "name": "Imported in the browser"}
    ws.append([row[h] for h in header])
    good = d / "pipeline.xlsx"
    book.save(good)
    page.set_input_files("#project-import-file", str(good))
    page.check("#project-import-confidential")
    page.click("#project-import")
    page.wait_for_selector("#project-import-msg.msg-ok:has-text('1 created')")
    ui.wait_count("#projects-table tbody tr:has-text('E2E-IMPORT-1')", 1)
    status, found = ui.srv.call("GET", "/api/projects?q=E2E-IMPORT-1")
    assert status == 200 and found["items"][0]["confidential"] is True
    ws.cell(row=ws.max_row, column=header.index("capacity_t") + 1, value="lots")
    bad = d / "bad.xlsx"
    book.save(bad)
    page.set_input_files("#project-import-file", str(bad))
    page.click("#project-import")
    page.wait_for_selector("#project-import-msg.msg-error:has-text('nothing was imported')")
    assert "sheet projects, cell" in (page.text_content("#project-import-msg") or "")


def test_portfolio_with_budgets_selects_projects_and_draws_the_frontier(ui: Browser) -> None:
    page = ui.page
    ui.tab("portfolio")
    ui.wait_count("#budget-table tbody tr", 10)
    key = "JPN_JOGMEC:equity"
    page.fill(f"#budget-table input[data-key='{key}']", "900000000")
    page.fill("#pf-draws", "100")
    page.fill("#pf-frontier", "4")
    page.click("#pf-run")
    assert ui.wait_run("pf-run-status", 90) == "done"
    assert ui.wait_count("#pf-selected tbody tr[data-project]", 1) >= 1
    first = page.locator("#pf-selected tbody tr[data-project]").first.locator("td").all_text_contents()
    assert first[2] and first[3] and first[4].startswith("$")  # instrument, agency, cost
    assert ui.count("#pf-money tbody tr") >= 1
    assert ui.wait_count("#pf-frontier-chart .scatterlayer .trace", 2) >= 2
    assert ui.count("#pf-frontier-chart .scatterlayer .point") >= 4
    assert "Optimal" in page.text_content("#pf-summary")
    status, runs = ui.srv.call("GET", "/api/runs?kind=portfolio&limit=1")
    params = runs["items"][0]["params"]
    assert params["budgets"] == {key: 900000000.0} and params["draws"] == 100 and params["frontier_points"] == 4


def test_stockpiles_deliveries_and_matches(ui: Browser) -> None:
    page = ui.page
    ui.tab("stockpiles")
    page.fill("#sp-draws", "100")
    page.fill("#sp-budget", "500000000")
    page.select_option("#sp-perspective", "USA")
    page.click("#sp-run")
    assert ui.wait_run("sp-run-status", 60) == "done"
    assert ui.wait_count("#sp-table tbody tr", 5) >= 5
    ui.wait_count("#sp-chart .barlayer .point", 1)
    assert "Value per USD" in page.text_content("#sp-budget-plans")

    ui.tab("delivery")
    page.click("#dl-run")
    assert ui.wait_run("dl-run-status") == "done"
    assert ui.wait_count("#dl-chart .barlayer .trace", 1) >= 1
    assert ui.count("#dl-buyers tbody tr") >= 1

    ui.tab("matches")
    page.click("#mt-run")
    assert ui.wait_run("mt-run-status") == "done"
    assert ui.wait_count("#mt-table tbody tr", 1) >= 1
    score = page.locator("#mt-table tbody tr").first.locator("td").nth(5).text_content() or ""
    assert 0 < float(score) <= 1


def test_plan_files_runs_list_and_cancel(ui: Browser) -> None:
    page = ui.page
    ui.tab("reports")
    page.fill("#pl-draws", "100")
    page.click("#pl-run")
    # the plan is accepted (it has an id) and occupies the worker
    page.wait_for_selector("#pl-run-status[data-run-id][data-status='running'], #pl-run-status[data-run-id][data-status='queued']", timeout=30_000)
    # a simulation started while the plan runs waits in the queue: cancel it from its progress box
    ui.tab("scenarios")
    ui.wait_count("#sb-node option", 10)
    page.fill("#sb-id", "e2e.cancelled")
    page.fill("#sb-duration", "7")
    page.click("#sb-run")
    page.wait_for_selector("#sim-run-status[data-run-id][data-status='queued'] [data-testid=run-cancel]:visible").click()
    assert ui.wait_run("sim-run-status") == "cancelled"
    ui.tab("reports")
    assert ui.wait_run("pl-run-status", 120) == "done"
    # the status box turns "done" before the result (and its file list) has been fetched and shown
    ui.wait_count("#pl-files a", 4)
    links = page.locator("#pl-files a")
    assert sorted(links.all_text_contents()) == ["plan.html", "plan.json", "plan.pdf", "plan.xlsx"]
    for a in links.all():
        href = a.get_attribute("href") or ""
        assert href.startswith("/api/runs/")
        r = page.request.get(ui.base + href)  # the browser's session cookie
        assert r.status == 200, href
        if href.endswith(".pdf"):
            assert r.body().startswith(b"%PDF")
    page.click("#runs-refresh")
    page.wait_for_selector("#runs-table tbody tr:has-text('plan')")
    kinds = page.locator("#runs-table tbody tr td:nth-child(2) .run-kind").all_text_contents()
    assert {"plan", "simulate"} <= set(kinds)
    summaries = page.locator("#runs-table [data-testid='run-summary']").all_text_contents()
    assert any("1 parameter override" in x for x in summaries) and any("own concern list" in x for x in summaries)
    assert "cancelled" in page.text_content("#runs-table")
    # a previous run shown again: its files listed anew
    plan_id = page.get_attribute("#pl-run-status", "data-run-id")
    page.evaluate("() => document.getElementById('pl-files').replaceChildren()")
    assert ui.count("#pl-files a") == 0
    page.click(f"#runs-table button[data-open='{plan_id}']")
    page.wait_for_selector(f"#pl-run-status:has-text('Run {plan_id} (plan)')")
    assert ui.wait_count("#pl-files a", 4) == 4


def test_risk_ranking_table_chart_and_reopen(ui: Browser) -> None:
    page = ui.page
    ui.tab("risk")
    page.select_option("#rk-perspective", "USA")
    page.fill("#rk-draws", "50")
    page.click("#rk-run")
    assert ui.wait_run("rk-run-status", 90) == "done"
    assert ui.wait_count("#rk-table tbody tr[data-commodity]", 10) >= 10
    first = page.locator("#rk-table tbody tr").first.locator("td").all_text_contents()
    assert first[0] == "1" and first[2].startswith("$") and first[5] in {"high", "elevated", "moderate", "limited", "negligible"}
    assert ui.count("#rk-table tbody tr:first-child td:nth-child(7) li") >= 1  # driving scenarios
    # the horizontal bars of the (at most 15) largest expected losses
    bars = ui.wait_count("#rk-chart .barlayer .point", 5)
    assert 5 <= bars <= 15
    assert "USA" in page.text_content("#rk-chart .gtitle")
    assert "USD per year of exposure" in page.text_content("#rk-basis")
    status, runs = ui.srv.call("GET", "/api/runs?kind=risk&limit=1")
    assert status == 200
    run = runs["items"][0]
    assert run["params"]["perspective"] == "USA" and run["params"]["draws"] == 50
    status, res = ui.srv.call("GET", f"/api/runs/{run['id']}/result")
    assert status == 200 and page.get_attribute("#rk-table tbody tr:first-child", "data-commodity") == res["result"]["ranking"][0]["commodity"]
    # "Show" in the runs list opens it again in this tab
    page.select_option("#rk-perspective", "JPN")
    page.evaluate("() => document.querySelector('#rk-table tbody').replaceChildren()")
    ui.tab("reports")
    page.click("#runs-refresh")
    page.click(f"#runs-table button[data-open='{run['id']}']")
    page.wait_for_selector(f"#rk-run-status:has-text('Run {run['id']} (risk)')")
    assert page.is_visible("#tab-risk")
    assert ui.wait_count("#rk-table tbody tr[data-commodity]", 10) >= 10
    assert page.input_value("#rk-perspective") == "USA"


def test_respond_to_an_event_form_writes_the_brief(ui: Browser) -> None:
    """Issue 12 item 8: the workspace's 'Respond to an event' form runs `critmin respond` on the workspace's
    records and offers the two-page brief."""
    page = ui.page
    ui.tab("respond")
    ui.wait_count("#rs-node option", 10)
    page.select_option("#rs-node", "gallium|refine")
    page.fill("#rs-restrictors", "CHN")
    page.select_option("#rs-targets", "JPN")
    page.fill("#rs-duration", "6")
    page.fill("#rs-draws", "100")
    page.click("#rs-run")
    assert ui.wait_run("rs-run-status", 120) == "done"
    page.wait_for_selector("#rs-result:visible")
    assert "gallium" in page.text_content("#rs-headline") and "Expected consumer loss" in page.text_content("#rs-headline")
    assert ui.count("#rs-impact tbody tr") == 3
    ui.wait_count("#rs-files a", 3)
    links = page.locator("#rs-files a")
    assert sorted(links.all_text_contents()) == ["brief.html", "brief.json", "brief.pdf"]
    for a in links.all():
        href = a.get_attribute("href") or ""
        r = page.request.get(ui.base + href)
        assert r.status == 200, href
        if href.endswith(".pdf"):
            assert r.body().startswith(b"%PDF")


def test_study_download_and_upload_runs_the_plan(ui: Browser) -> None:
    """Issue 12: the workspace downloads the study (`critmin study init` layout) and runs the plan on an
    uploaded one; a bad study is refused with the field named."""
    import io
    import zipfile

    import yaml

    page = ui.page
    ui.tab("reports")
    href = page.get_attribute("#study-download", "href") or ""
    r = page.request.get(ui.base + href)
    assert r.status == 200
    z = zipfile.ZipFile(io.BytesIO(r.body()))
    spec = yaml.safe_load(z.read("study.yaml"))

    def zipped(study: dict) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as out:
            for n in z.namelist():
                out.writestr(n, yaml.safe_dump(study) if n == "study.yaml" else z.read(n))
        return buf.getvalue()

    page.set_input_files("#study-file", files=[{"name": "bad.zip", "mimeType": "application/zip", "buffer": zipped({**spec, "draws": 3})}])
    page.click("#study-run")
    page.wait_for_selector("#pl-run-status[data-status='failed']")
    assert "draws" in page.text_content("#pl-run-status")
    page.set_input_files("#study-file", files=[{"name": "mine.zip", "mimeType": "application/zip", "buffer": zipped({**spec, "draws": 60})}])
    page.click("#study-run")
    assert ui.wait_run("pl-run-status", 180) == "done"
    assert ui.wait_count("#pl-files a", 4) == 4


def test_account_change_password_and_colleagues(ui: Browser) -> None:
    page = ui.page
    ui.tab("account")
    ui.wait_count("#colleagues-table tbody tr", 2)
    assert page.locator("#colleagues-table tbody tr td:nth-child(1)").all_text_contents() == sorted([EMAIL, COLLEAGUE])
    side = ui.srv.token(EMAIL)  # another session of the same user: it ends when the password changes

    page.fill("#password-current", PASSWORD)
    page.fill("#password-new", "a new passphrase")
    page.fill("#password-repeat", "a different one")
    page.click("#password-submit")
    page.wait_for_selector("#password-msg:has-text('The two new passwords differ.')")
    page.fill("#password-current", "not my password")
    page.fill("#password-new", "a new passphrase")
    page.fill("#password-repeat", "a new passphrase")
    page.click("#password-submit")
    page.wait_for_selector("#password-msg:has-text('The current password is wrong.')")
    page.fill("#password-current", PASSWORD)
    page.fill("#password-new", "a new passphrase")
    page.fill("#password-repeat", "a new passphrase")
    page.click("#password-submit")
    page.wait_for_selector("#password-msg:has-text('Password changed; 1 other session ended.')")
    assert page.input_value("#password-current") == "" and page.input_value("#password-new") == ""
    status, _ = ui.srv.call("GET", "/api/auth/me", email=EMAIL)
    assert status == 401 and ui.srv.tokens[EMAIL] == side  # the side channel's session ended ...
    ui.tab("priority")  # ... the page's own session goes on
    ui.tab("account")
    # back to the first password (the other tests sign in with it)
    page.fill("#password-current", "a new passphrase")
    page.fill("#password-new", PASSWORD)
    page.fill("#password-repeat", PASSWORD)
    page.click("#password-submit")
    page.wait_for_selector("#password-msg:has-text('Password changed; 0 other sessions ended.')")
    del ui.srv.tokens[EMAIL]
    assert ui.srv.call("GET", "/api/auth/me", email=EMAIL)[0] == 200


def test_audit_log_and_sign_out(ui: Browser) -> None:
    page = ui.page
    ui.srv.token(EMAIL)  # any login of the side channel happens before the page reads the log
    ui.tab("audit")
    page.click("#audit-refresh")
    ui.wait_count("#audit-table tbody tr", 2)
    page.wait_for_timeout(300)
    status, log = ui.srv.call("GET", "/api/audit?limit=300")
    assert status == 200
    shown = page.locator("#audit-table tbody tr td:nth-child(3)").all_text_contents()
    assert shown == [a["action"] for a in log["items"]]
    assert "login" in shown
    session = next(c["value"] for c in page.context.cookies() if c["name"] == "critmin_session")
    page.click("#logout-button")
    page.wait_for_selector("#login-form:visible")
    assert page.is_hidden("#app-view")
    page.reload()
    page.wait_for_selector("#login-form:visible")
    assert not any(c["name"] == "critmin_session" for c in page.context.cookies())
    # the signed-out session's token no longer works
    ui.srv.tokens["old session"] = session
    status, _ = ui.srv.call("GET", "/api/auth/me", email="old session")
    assert status == 401


def test_everything_stayed_on_the_server_without_errors(ui: Browser) -> None:
    assert len(ui.requests) > 10
    outside = [u for u in ui.requests if not u.startswith(ui.base + "/")]
    assert outside == [], outside
    errors = [e for e in ui.errors if not EXPECTED_HTTP_ERRORS.search(e)]
    assert errors == [], errors

