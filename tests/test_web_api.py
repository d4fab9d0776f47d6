"""The workspace REST API end to end, endpoint by endpoint, on SQLite and PostgreSQL (the ``web`` fixture):
sign-in and sessions, the atlas reads, records (create, versioned update, delete, comments), the audit
log, background runs of every kind with their stored results, files and cache, cancellation, security
headers, CSRF, login rate limiting, the self-hosted docs and concurrent edits."""

from __future__ import annotations

import io
import json
import re
import threading
import time
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from critmin.web import security
from critmin.web.workspace import WorkspaceError
from tests.conftest import PASSWORD, cheap_argon2

GOV, GOV_JP, AGENCY, ACME, BETA, OBSERVER = "gov@us.example", "gov@jp.example", "fin@dfc.example", "co@acme.example", "co@beta.example", "obs@oecd.example"
PLURAL = {"project": "projects", "need": "needs", "offer": "offers", "scenario": "scenarios"}
#: The bundled registers loaded into a new workspace.
BUNDLED_PROJECTS, BUNDLED_NEEDS = 71, 53
LIBRARY_EVENT = "ev.E001.rare_earths.refine"


@pytest.fixture(autouse=True)
def _cheap_argon2(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test creates eight users on a fresh database: argon2 at its lowest cost (conftest.cheap_argon2),
    except in the test that checks the production cost (it asks for ``default_argon2``)."""
    if "default_argon2" not in request.fixturenames:
        cheap_argon2(monkeypatch)


@pytest.fixture()
def default_argon2() -> None:
    """Marks a test that needs the production argon2 cost (see ``_cheap_argon2``)."""


def record(kind: str, key: str, **over: Any) -> dict[str, Any]:
    """Valid ``data`` of one record of each kind (graphite mining in Australia for Japan; a ban on dysprosium oxide to the bloc:
    since review 33b Lynas and MP hold 9.65 % of NdPr oxide, enough to replace a ban on NdPr to the bloc alone)."""
    base: dict[str, dict[str, Any]] = {
        "project": {"project_id": key, "name": "Test graphite mine", "sponsor": "Acme Rare Earths", "country_iso3": "AUS", "commodity_id": "graphite",
                    "stage": "mine", "status_class": "operating", "capacity_t": 1000.0, "sources": "test fixture"},
        "need": {"buyer_id": key, "name": "Test buyer", "country_iso3": "JPN", "commodity_id": "graphite", "stage": "mine", "demand_t_per_year": 500.0},
        "offer": {"offer_id": key, "supplier": "Acme Rare Earths", "country_iso3": "AUS", "commodity_id": "graphite", "stage": "mine",
                  "volume_t_per_year": 800.0},
        "scenario": {"id": key, "title": "Test ban", "commodity": "dysprosium", "stage": "refine", "restrictors": ["CHN"], "targets": ["BLOC"],
                     "duration_months": 6},
    }
    return {**base[kind], **over}


def create(web: Any, who: str, kind: str, key: str, confidential: bool = False, shared_with: list[str] | None = None, **over: Any) -> dict[str, Any]:
    r = web.client.post(f"/api/{PLURAL[kind]}", json={"data": record(kind, key, **over), "confidential": confidential, "shared_with": shared_with or []},
                        headers=web.h(who))
    assert r.status_code == 201, r.text
    return r.json()


def run(web: Any, who: str, kind: str, params: dict[str, Any] | None = None, wait: bool = True) -> dict[str, Any]:
    r = web.client.post("/api/runs", json={"kind": kind, "params": params or {}}, headers=web.h(who))
    assert r.status_code == 202, r.text
    j = r.json()
    return web.wait(who, j["id"]) if wait else j


def audit(web: Any, who: str) -> list[dict[str, Any]]:
    r = web.client.get("/api/audit", params={"limit": 1000}, headers=web.h(who))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def fields(r: Any) -> list[str]:
    return [p["field"] for p in r.json()["problems"]]


# ------------------------------------------------------------------------------------------------ register import / export
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _export(web: Any, who: str) -> Any:
    import openpyxl

    web.client.cookies.clear()
    r = web.client.get("/api/projects/export.xlsx", headers=web.h(who))
    assert r.status_code == 200 and r.headers["content-type"] == XLSX_TYPE, r.text[:200]
    assert r.headers["content-disposition"] == 'attachment; filename="projects.xlsx"'
    return openpyxl.load_workbook(io.BytesIO(r.content))


def _import(web: Any, who: str, book: Any, filename: str = "pipeline.xlsx", **query: Any) -> Any:
    buf = io.BytesIO()
    book.save(buf)
    web.client.cookies.clear()
    return web.client.post("/api/projects/import", params={"filename": filename, **query}, content=buf.getvalue(),
                           headers={**web.h(who), "content-type": XLSX_TYPE})


def _add_project(book: Any, pid: str, **over: Any) -> None:
    """A copy of the workbook's first project under a new id (and its first support action, renamed)."""
    ws = book["projects"]
    header = [c.value for c in ws[1]]
    row = dict(zip(header, [c.value for c in ws[2]], strict=True)) | {"project_id": pid, "name": f"Imported {pid}", **over}
    ws.append([row[h] for h in header])


def test_export_then_import_the_same_file_changes_nothing(web):
    book = _export(web, ACME)
    assert book.sheetnames == ["projects", "support", "README"] and book["projects"].max_row == BUNDLED_PROJECTS + 1
    r = _import(web, ACME, book)
    assert r.status_code == 200, r.text
    assert r.json() == {"file": "pipeline.xlsx", "projects": BUNDLED_PROJECTS, "created": 0, "updated": 0, "unchanged": BUNDLED_PROJECTS,
                        "support_actions": 121}
    assert not any(a["target_kind"] == "project" for a in audit(web, ACME))


def test_import_creates_confidential_projects_and_updates_ones_own(web):
    book = _export(web, ACME)
    _add_project(book, "ACME-IMP-1", capacity_t=1234.0)
    r = _import(web, ACME, book, confidential="true", shared_with="DFC")
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["updated"], r.json()["unchanged"]) == (1, 0, BUNDLED_PROJECTS)
    mine = next(p for p in web.client.get("/api/projects", params={"q": "ACME-IMP-1"}, headers=web.h(ACME)).json()["items"] if p["key"] == "ACME-IMP-1")
    assert mine["confidential"] and mine["shared_with"] == ["DFC"] and mine["org"] == "Acme Rare Earths" and mine["data"]["capacity_t"] == 1234.0
    assert web.client.get("/api/projects", params={"q": "ACME-IMP-1"}, headers=web.h(BETA)).json()["total"] == 0
    assert web.client.get("/api/projects", params={"q": "ACME-IMP-1"}, headers=web.h(AGENCY)).json()["total"] == 1
    # the same file with the new project changed: an update of one project, version 2
    ws = book["projects"]
    col = [c.value for c in ws[1]].index("capacity_t") + 1
    ws.cell(row=ws.max_row, column=col, value=2000.0)
    r = _import(web, ACME, book)
    assert r.status_code == 200 and (r.json()["created"], r.json()["updated"]) == (0, 1), r.text
    got = web.client.get(f"/api/projects/{mine['id']}", headers=web.h(ACME)).json()
    assert got["version"] == 2 and got["data"]["capacity_t"] == 2000.0 and got["confidential"]  # confidentiality kept on update
    entries = [a for a in audit(web, ACME) if a["target_key"] == "ACME-IMP-1"]
    assert [(a["action"], a["detail"]["via"], a["detail"]["file"]) for a in entries] == [("update", "import", "pipeline.xlsx"), ("create", "import", "pipeline.xlsx")]
    assert entries[0]["detail"]["fields"] == ["capacity_t"]


def test_import_problems_name_sheet_cell_and_field_and_write_nothing(web):
    book = _export(web, ACME)
    _add_project(book, "ACME-IMP-2")
    ws = book["projects"]
    col = [c.value for c in ws[1]].index("completion_probability") + 1
    ws.cell(row=ws.max_row, column=col, value=2)
    r = _import(web, ACME, book)
    assert r.status_code == 422, r.text
    assert "nothing was imported" in r.json()["detail"]
    (msg,) = [q["message"] for q in r.json()["problems"]]
    letter = ws.cell(row=ws.max_row, column=col).column_letter
    assert f"pipeline.xlsx, sheet projects, cell {letter}{ws.max_row}, field 'completion_probability'" in msg
    assert web.client.get("/api/projects", params={"q": "ACME-IMP"}, headers=web.h(ACME)).json()["total"] == 0


def test_import_refuses_the_whole_file_when_one_project_is_not_yours(web):
    book = _export(web, ACME)
    _add_project(book, "ACME-IMP-3")
    ws = book["projects"]
    col = [c.value for c in ws[1]].index("capacity_t") + 1
    ws.cell(row=2, column=col, value=99.0)  # a bundled project Acme may read but not change
    r = _import(web, ACME, book)
    assert r.status_code == 409 and "nothing was imported" in r.json()["detail"], r.text
    assert [q["field"] for q in r.json()["problems"]] == [f"body.projects.{ws.cell(row=2, column=1).value}"]
    assert web.client.get("/api/projects", params={"q": "ACME-IMP-3"}, headers=web.h(ACME)).json()["total"] == 0


def test_import_refusals(web):
    book = _export(web, ACME)
    assert _import(web, OBSERVER, book).status_code == 403
    assert fields(_import(web, ACME, book, filename="pipeline.pdf")) == ["query.filename"]
    web.client.cookies.clear()
    h = {**web.h(ACME), "content-type": XLSX_TYPE}
    assert web.client.post("/api/projects/import", params={"filename": "a.xlsx"}, content=b"", headers=h).status_code == 422
    r = web.client.post("/api/projects/import", params={"filename": "a.xlsx"}, content=b"not a workbook", headers=h)
    assert r.status_code == 422 and "a.xlsx" in r.json()["problems"][0]["message"]
    big = web.client.post("/api/projects/import", params={"filename": "a.xlsx"}, content=b"x" * (10 * 2**20 + 1), headers=h)
    assert big.status_code == 413
    assert web.client.post("/api/projects/import", params={"filename": "a.xlsx"}, content=b"x").status_code == 401


# ------------------------------------------------------------------------------------------------ sign-in and sessions
def test_health_answers_without_login(web):
    web.client.cookies.clear()
    r = web.client.get("/api/health")
    assert r.status_code == 200
    j = r.json()
    assert j["status"] == "ok" and j["database"] in ("sqlite", "postgresql") and j["version"]
    assert j["database"] == web.app.state.ws.db.backend


def test_passwords_are_stored_as_argon2id_hashes(default_argon2, web):
    from sqlalchemy import select

    from critmin.web import models as m

    with web.app.state.ws.db.session() as s:
        hashes = list(s.scalars(select(m.User.password_hash)))
    assert len(hashes) == 8 and len(set(hashes)) == 8  # salted
    assert all(h.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and PASSWORD not in h for h in hashes)
    assert security.verify_password(hashes[0], PASSWORD) and not security.verify_password(hashes[0], PASSWORD + "x")
    assert not security.verify_password(None, PASSWORD) and not security.verify_password("not a hash", PASSWORD)


def test_login_returns_token_and_secure_cookies(web):
    r = web.client.post("/api/auth/login", json={"username": GOV, "password": PASSWORD})
    assert r.status_code == 200, r.text
    j = r.json()
    assert len(j["access_token"]) >= 40 and j["token_type"] == "bearer" and j["csrf_token"]
    assert j["user"] == {"id": j["user"]["id"], "email": GOV, "org": "US Department of Energy", "role": "government"}
    expires = datetime.fromisoformat(j["expires_at"])
    assert timedelta(hours=11) < expires - datetime.now(UTC) <= timedelta(hours=12)
    cookies = {c.split("=", 1)[0]: [a.strip().lower() for a in c.split(";")] for c in r.headers.get_list("set-cookie")}
    session, csrf = cookies["critmin_session"], cookies["critmin_csrf"]
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= set(session)
    assert {"secure", "samesite=strict"} <= set(csrf) and "httponly" not in csrf  # the page reads it to send X-CSRF-Token
    assert r.cookies["critmin_session"] == j["access_token"] and r.cookies["critmin_csrf"] == j["csrf_token"]
    # the email is matched case-insensitively and without surrounding blanks
    assert web.client.post("/api/auth/login", json={"username": "  GOV@US.Example ", "password": PASSWORD}).status_code == 200


def test_login_refuses_wrong_credentials(web):
    for username, password in ((GOV, "wrong password"), ("nobody@nowhere.example", PASSWORD), (GOV, PASSWORD.upper())):
        r = web.client.post("/api/auth/login", json={"username": username, "password": password})
        assert r.status_code == 401, (username, password)
        assert r.json()["detail"] == "wrong username or password"  # same answer whether or not the user exists
        assert "access_token" not in r.text and "set-cookie" not in r.headers


def test_login_malformed_body_is_422_naming_the_field(web):
    for body, field in (({"username": GOV}, "body.password"), ({"password": PASSWORD}, "body.username"),
                        ({"username": "", "password": PASSWORD}, "body.username"),
                        ({"username": GOV, "password": PASSWORD, "role": "government"}, "body.role"),
                        ({"username": "a\x00b", "password": PASSWORD}, "body.username"), ([GOV, PASSWORD], "body")):
        r = web.client.post("/api/auth/login", json=body)
        assert r.status_code == 422, body
        assert field in fields(r), (body, r.json())
    r = web.client.post("/api/auth/login", content=b"not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    # seven malformed requests are no failed logins (five lock the address out)
    assert web.client.post("/api/auth/login", json={"username": GOV, "password": PASSWORD}).status_code == 200


def test_reads_need_credentials(web):
    web.client.cookies.clear()
    for path in ("/api/projects", "/api/auth/me", "/api/runs", "/api/audit", "/api/minerals/priority"):
        r = web.client.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == "Bearer"
    assert web.client.get("/api/projects", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    assert web.client.get("/api/projects", headers={"Authorization": "Basic Zm9vOmJhcg=="}).status_code == 401
    r = web.client.get("/api/projects", headers=web.h(GOV))
    assert r.status_code == 200 and r.json()["total"] == BUNDLED_PROJECTS


def test_logout_invalidates_the_token(web):
    web.client.cookies.clear()
    token = web.client.post("/api/auth/login", json={"username": ACME, "password": PASSWORD}).json()["access_token"]
    other = web.h(ACME)  # a second session of the same user
    web.client.cookies.clear()
    h = {"Authorization": f"Bearer {token}"}
    assert web.client.get("/api/auth/me", headers=h).json()["email"] == ACME
    r = web.client.post("/api/auth/logout", headers=h)
    assert r.status_code == 200 and r.json() == {"status": "signed out"}
    assert web.client.get("/api/auth/me", headers=h).status_code == 401
    assert web.client.post("/api/auth/logout", headers=h).status_code == 401
    assert web.client.get("/api/auth/me", headers=other).status_code == 200  # only that session ended
    assert any(a["action"] == "login" and a["user"] == ACME for a in audit(web, ACME))


def test_change_own_password_ends_the_other_sessions(web):
    """POST /api/auth/password: the current password must be right; the session that asked stays signed in,
    every other session of the user ends, the old password stops working, the change is audited."""
    web.client.cookies.clear()
    mine = web.h(ACME)
    login = web.client.post("/api/auth/login", json={"username": ACME, "password": PASSWORD}).json()
    other = {"Authorization": f"Bearer {login['access_token']}"}
    colleague = web.h("co2@acme.example")
    web.client.cookies.clear()
    new = "a brand new passphrase"
    r = web.client.post("/api/auth/password", json={"current_password": "not it", "new_password": new}, headers=mine)
    assert r.status_code == 403 and "current password is wrong" in r.json()["detail"]
    for body, field in (({"current_password": PASSWORD, "new_password": "short"}, "body.new_password"),
                        ({"current_password": PASSWORD, "new_password": "x" * 1001}, "body.new_password"),
                        ({"current_password": PASSWORD}, "body.new_password"),
                        ({"current_password": PASSWORD, "new_password": new, "email": BETA}, "body.email")):
        r = web.client.post("/api/auth/password", json=body, headers=mine)
        assert r.status_code == 422 and field in fields(r), (body, r.json())
    r = web.client.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": PASSWORD}, headers=mine)
    assert r.status_code == 422 and "body.new_password" in fields(r)
    r = web.client.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": new}, headers=mine)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "password changed", "other_sessions_ended": 1}
    assert web.client.get("/api/auth/me", headers=mine).status_code == 200
    assert web.client.get("/api/auth/me", headers=other).status_code == 401
    assert web.client.get("/api/auth/me", headers=colleague).status_code == 200  # another user of the organisation: untouched
    assert web.client.post("/api/auth/login", json={"username": ACME, "password": PASSWORD}).status_code == 401
    assert web.client.post("/api/auth/login", json={"username": ACME, "password": new}).status_code == 200
    entry = next(a for a in audit(web, ACME) if a["action"] == "password")
    assert (entry["user"], entry["target_kind"], entry["target_key"], entry["detail"]) == (ACME, "user", ACME, {"sessions_ended": 1})
    assert not any(a["action"] == "password" for a in audit(web, BETA))  # another organisation does not see it
    r = web.client.post("/api/auth/password", json={"current_password": new, "new_password": PASSWORD})
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"]  # the login above left a cookie session: no CSRF header
    web.client.cookies.clear()
    assert web.client.post("/api/auth/password", json={"current_password": new, "new_password": PASSWORD}).status_code == 401


def test_wrong_current_passwords_count_as_failed_logins(web):
    mine = web.h(BETA)
    for _ in range(5):
        r = web.client.post("/api/auth/password", json={"current_password": "guess", "new_password": "new enough pass"}, headers=mine)
        assert r.status_code == 403
    r = web.client.post("/api/auth/password", json={"current_password": PASSWORD, "new_password": "new enough pass"}, headers=mine)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert web.client.post("/api/auth/login", json={"username": BETA, "password": PASSWORD}).status_code == 429


def test_users_of_my_organisation(web):
    j = web.client.get("/api/users", headers=web.h(ACME)).json()
    assert [(u["email"], u["role"], u["active"]) for u in j] == [("co2@acme.example", "company", True), (ACME, "company", True)]
    assert set(j[0]) == {"email", "role", "active", "created_at"}  # no session counts, no hashes
    assert [u["email"] for u in web.client.get("/api/users", headers=web.h(OBSERVER)).json()] == [OBSERVER]
    web.client.cookies.clear()  # the logins above left a cookie session
    assert web.client.get("/api/users").status_code == 401


def test_disabled_user_and_new_role_take_effect_at_the_next_request(web):
    """What `critmin user disable/role/passwd` do (Workspace.set_user / set_password): a disabled user's
    sessions end and logins are refused; a new role applies to the open session; a reset ends every session."""
    ws = web.app.state.ws
    h = web.h(ACME)
    assert web.client.post("/api/offers", json={"data": record("offer", "ROLE-1")}, headers=h).status_code == 201
    assert ws.set_user(ACME, role="observer")["changed"] == ["role"]
    assert web.client.get("/api/auth/me", headers=h).json()["role"] == "observer"
    assert web.client.post("/api/offers", json={"data": record("offer", "ROLE-2")}, headers=h).status_code == 403
    assert ws.set_user(ACME, role="observer")["changed"] == []
    assert ws.set_user(ACME, active=False)["changed"] == ["active"]
    assert web.client.get("/api/auth/me", headers=h).status_code == 401
    assert web.client.post("/api/auth/login", json={"username": ACME, "password": PASSWORD}).status_code == 401
    assert ws.users("Acme Rare Earths")[1]["sessions"] == 0 and ws.users("Acme Rare Earths")[1]["active"] is False
    ws.set_user(ACME, role="company", active=True)
    r = web.client.post("/api/auth/login", json={"username": ACME, "password": PASSWORD})
    assert r.status_code == 200 and r.json()["user"]["role"] == "company"
    h = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert [u["sessions"] for u in ws.users("Acme Rare Earths") if u["email"] == ACME] == [1]
    assert ws.set_password(ACME, "reset by the operator") == 1
    assert web.client.get("/api/auth/me", headers=h).status_code == 401
    assert web.client.post("/api/auth/login", json={"username": ACME, "password": "reset by the operator"}).status_code == 200
    changes = [(a["action"], a["user"], a["detail"]) for a in audit(web, "co2@acme.example") if a["target_kind"] == "user" and a["action"] != "login"]
    assert changes[:4] == [("password", "command line", {"sessions_ended": 1}),
                           ("update", "command line", {"role": ["observer", "company"], "active": [False, True], "sessions_ended": 0}),
                           ("update", "command line", {"active": [True, False], "sessions_ended": 1}),
                           ("update", "command line", {"role": ["company", "observer"], "sessions_ended": 0})]
    with pytest.raises(WorkspaceError, match="no user 'nobody@x.example'"):
        ws.set_user("nobody@x.example", active=False)
    with pytest.raises(WorkspaceError, match="unknown role 'admin'"):
        ws.set_user(ACME, role="admin")


def test_me_and_orgs(web):
    for email, org, role in (("gov@jp.example", "METI Japan", "government"), (OBSERVER, "OECD Secretariat", "observer"), (ACME, "Acme Rare Earths", "company")):
        j = web.client.get("/api/auth/me", headers=web.h(email)).json()
        assert (j["email"], j["org"], j["role"]) == (email, org, role)
    orgs = web.client.get("/api/orgs", headers=web.h(OBSERVER)).json()
    assert [o["name"] for o in orgs] == sorted(["Acme Rare Earths", "Australia DISR", "Beta Graphite", "DFC", "METI Japan", "OECD Secretariat",
                                                "US Department of Energy", "critmin bundled data"])
    assert len({o["id"] for o in orgs}) == len(orgs)


# ------------------------------------------------------------------------------------------------ atlas reads
def test_methods(web):
    j = web.client.get("/api/methods", headers=web.h(OBSERVER)).json()
    assert [m["name"] for m in j] == ["critmin", "eu", "geopolrisk", "usgs2021", "usgs2021-product"]
    assert all(m["title"] and m["citation"] for m in j)


def test_priority_minerals_switch_with_method_and_perspective(web):
    h = web.h(OBSERVER)

    def ranking(method: str, perspective: str, top: int = 10) -> list[dict[str, Any]]:
        r = web.client.get("/api/minerals/priority", params={"method": method, "perspective": perspective, "top": top}, headers=h)
        assert r.status_code == 200, r.text
        return r.json()

    bloc = ranking("critmin", "BLOC")
    assert len(bloc) == 10 and [r["rank"] for r in bloc] == list(range(1, 11))
    assert all(r["method"] == "critmin" and r["perspective"] == "BLOC" for r in bloc)
    assert [r["score"] for r in bloc] == sorted((r["score"] for r in bloc), reverse=True)
    # the API serves the core's ranking (critmin.assess on the same atlas), not a copy of its own
    from critmin.assess import assess
    from critmin.atlas import load_atlas

    core = assess(load_atlas(), "BLOC", "critmin")
    assert [r["commodity"] for r in bloc] == list(core["commodity"].head(10))
    usa = ranking("critmin", "USA")
    assert usa[0]["commodity"] == assess(load_atlas(), "USA", "critmin")["commodity"].iloc[0] and usa[0]["perspective"] == "USA"
    assert [r["commodity"] for r in usa] != [r["commodity"] for r in bloc]
    eu = ranking("eu", "BLOC")
    assert eu[0]["method"] == "eu" and [r["commodity"] for r in eu] != [r["commodity"] for r in bloc]
    assert eu[0]["score"] > 1 >= bloc[0]["score"]  # different scales: EU supply risk vs the critmin score in [0, 1]
    assert len(ranking("critmin", "BLOC", top=3)) == 3
    assert ranking("critmin", "BLOC", top=3) == bloc[:3]
    r = web.client.get("/api/minerals/priority", params={"method": "astrology"}, headers=h)
    assert r.status_code == 422 and fields(r) == ["query.method"]
    for bad in ({"perspective": "CHN"}, {"top": 0}, {"top": 201}):
        r = web.client.get("/api/minerals/priority", params=bad, headers=h)
        assert r.status_code == 422 and fields(r) == [f"query.{next(iter(bad))}"]


def test_atlas_nodes_and_supply(web):
    h = web.h(OBSERVER)
    nodes = web.client.get("/api/atlas/nodes", headers=h).json()
    from critmin.assess.supply import stage_shares_table

    shares = stage_shares_table(web.app.state.ws.atlas)
    assert len(nodes) == len(shares.drop_duplicates(["commodity_id", "stage"]))  # every node with country shares
    keys = {(n["commodity"], n["stage"]) for n in nodes}
    assert ("rare_earths", "refine") in keys and ("graphite", "mine") in keys
    for n in nodes[::10] + [n for n in nodes if (n["commodity"], n["stage"]) == ("rare_earths", "refine")]:
        r = web.client.get("/api/atlas/supply", params={"commodity": n["commodity"], "stage": n["stage"]}, headers=h)
        assert r.status_code == 200, r.text
        rows = r.json()["rows"]
        assert len(rows) == n["countries"]
        assert all(0 <= x["share"] <= 1 for x in rows)
        assert sum(x["share"] for x in rows) <= 1 + 1e-6
        assert len({x["country_iso3"] for x in rows}) == len(rows)
    ree = web.client.get("/api/atlas/supply", params={"commodity": "rare_earths", "stage": "refine"}, headers=h).json()
    top = max(ree["rows"], key=lambda x: x["share"])
    assert top["country_iso3"] == "CHN" and top["share"] == pytest.approx(0.9128, abs=1e-4) and top["source_id"] == "iea_cmd_2025"
    # the dashboard cites a title and a link, not the opaque id (issue 12)
    assert "IEA" in top["source"]["title"] and top["source"]["url"].startswith("http") and "iea_cmd_2025" not in top["source"]["title"]
    vul = web.client.get("/api/atlas/vulnerabilities", params={"commodity": "gallium"}, headers=h).json()
    assert vul and all(s["title"] and not s["title"].startswith("src_") for v in vul for s in v["sources"])
    for params in ({"commodity": "unobtainium", "stage": "mine"}, {"commodity": "rare_earths", "stage": "magnet"}):
        assert web.client.get("/api/atlas/supply", params=params, headers=h).status_code == 404
    assert web.client.get("/api/atlas/supply", params={"commodity": "rare_earths"}, headers=h).status_code == 422


def test_chains_and_sankey(web):
    h = web.h(OBSERVER)
    chains = web.client.get("/api/chains", headers=h).json()
    assert chains == sorted(set(web.app.state.ws.atlas.chain_links["chain_id"]))
    assert {"batteries", "rare_earth_magnets", "aluminum", "iron_steel"} <= set(chains)
    fig = web.client.get("/api/chains/rare_earth_magnets/sankey", headers=h).json()
    assert fig["data"][0]["type"] == "sankey"
    labels, link = fig["data"][0]["node"]["label"], fig["data"][0]["link"]
    assert any("CHN" in str(x) for x in labels)
    assert len(link["source"]) == len(link["target"]) == len(link["value"]) > 0 and min(link["value"]) >= 0
    assert web.client.get("/api/chains/no_such_chain/sankey", headers=h).status_code == 404


def test_scenario_library_search_family_and_paging(web):
    h = web.h(OBSERVER)
    core = web.app.state.ws.sim.library()
    n_events = sum(s.family == "event" for s in core)
    lib = web.client.get("/api/scenarios/library", headers=h).json()
    assert lib["total"] == len(core) > 10_000 and len(lib["items"]) == 50
    events = web.client.get("/api/scenarios/library", params={"family": "event", "limit": 1000}, headers=h).json()
    assert events["total"] == n_events >= 46 and all(s["family"] == "event" for s in events["items"])
    generated = web.client.get("/api/scenarios/library", params={"family": "generated", "limit": 5}, headers=h).json()
    assert generated["total"] == len(core) - n_events and all(s["family"].startswith("gen.") for s in generated["items"])
    q = web.client.get("/api/scenarios/library", params={"q": "e001"}, headers=h).json()
    assert q["total"] == 1 and q["items"][0]["id"] == LIBRARY_EVENT
    assert q["items"][0]["restrictors"] == ["CHN"] and q["items"][0]["regime"] == "quota"
    page1 = web.client.get("/api/scenarios/library", params={"family": "event", "limit": 20, "offset": 0}, headers=h).json()["items"]
    page3 = web.client.get("/api/scenarios/library", params={"family": "event", "limit": 20, "offset": 40}, headers=h).json()["items"]
    assert [s["id"] for s in page1] == [s["id"] for s in events["items"][:20]] and len(page3) == n_events - 40
    assert web.client.get("/api/scenarios/library", params={"q": "no such scenario anywhere"}, headers=h).json() == {"total": 0, "items": []}
    assert web.client.get("/api/scenarios/library", params={"family": "user"}, headers=h).status_code == 422
    assert web.client.get("/api/scenarios/library", params={"limit": 0}, headers=h).status_code == 422


def test_agencies_and_buyers(web):
    h = web.h(OBSERVER)
    ag = web.client.get("/api/agencies", headers=h).json()
    assert len(ag) == 45  # review 11: per-instrument rows of three shared envelopes (EFA, Canada, RESourceEU)
    ids = {a["agency_id"] for a in ag}
    assert {"US_DFC", "JPN_JBIC", "JPN_JOGMEC", "US_DOE_LPO"} <= ids
    assert all(a["budget_usd"] is None or a["budget_usd"] >= 0 for a in ag)
    buyers = web.client.get("/api/buyers", headers=h).json()
    assert sum(b["needs"] for b in buyers) == BUNDLED_NEEDS
    assert buyers == sorted(buyers, key=lambda b: (b["country_iso3"], b["name"]))
    create(web, GOV, "need", "BX-1", name="PowerCo SE (Volkswagen Group; synthetic graphite from Novonix)", country_iso3="DEU", demand_t_per_year=100.0)
    after = {(b["name"], b["country_iso3"]): b for b in web.client.get("/api/buyers", headers=h).json()}
    pco = after[("PowerCo SE (Volkswagen Group; synthetic graphite from Novonix)", "DEU")]
    assert pco["needs"] == 2 and pco["demand_t_per_year"] == pytest.approx(6500.0)


# ------------------------------------------------------------------------------------------------ records
@pytest.mark.parametrize("kind", list(PLURAL))
def test_record_create_read_update_delete(web, kind):
    base = f"/api/{PLURAL[kind]}"
    h = web.h(ACME)
    before = web.client.get(base, headers=h).json()["total"]
    r = web.client.post(base, json={"data": record(kind, "QZ-1")}, headers=h)
    assert r.status_code == 201, r.text
    rec = r.json()
    assert (rec["kind"], rec["key"], rec["org"], rec["version"], rec["confidential"], rec["can_edit"]) == (kind, "QZ-1", "Acme Rare Earths", 1, False, True)
    assert rec["created_at"] and rec["updated_at"]
    rid = rec["id"]
    assert web.client.get(f"{base}/{rid}", headers=h).json() == rec
    assert web.client.get(base, headers=h).json()["total"] == before + 1
    found = web.client.get(base, params={"q": "qz-1"}, headers=h).json()
    assert [x["key"] for x in found["items"]] == ["QZ-1"]
    # duplicate id
    r = web.client.post(base, json={"data": record(kind, "QZ-1")}, headers=web.h(BETA))
    assert r.status_code == 409 and "QZ-1" in r.json()["detail"]
    # update with the version read: version goes up, the changed field is stored
    field, value = {"project": ("capacity_t", 2500.0), "need": ("demand_t_per_year", 750.0), "offer": ("volume_t_per_year", 900.0),
                    "scenario": ("duration_months", 9)}[kind]
    r = web.client.put(f"{base}/{rid}", json={"version": 1, "data": record(kind, "QZ-1", **{field: value})}, headers=h)
    assert r.status_code == 200, r.text
    upd = r.json()
    assert upd["version"] == 2 and upd["data"][field] == value and upd["id"] == rid
    assert datetime.fromisoformat(upd["updated_at"]) >= datetime.fromisoformat(rec["updated_at"])
    assert web.client.get(f"{base}/{rid}", headers=h).json()["data"][field] == value
    # a stale version changes nothing
    r = web.client.put(f"{base}/{rid}", json={"version": 1, "data": record(kind, "QZ-1", **{field: 1.0})}, headers=h)
    assert r.status_code == 409 and "version 2" in r.json()["detail"]
    assert web.client.get(f"{base}/{rid}", headers=h).json() == upd
    # the id cannot change
    r = web.client.put(f"{base}/{rid}", json={"version": 2, "data": record(kind, "X-2")}, headers=h)
    assert r.status_code == 422
    # delete needs the current version
    assert web.client.delete(f"{base}/{rid}", headers=h).status_code == 422
    r = web.client.delete(f"{base}/{rid}", params={"version": 1}, headers=h)
    assert r.status_code == 409
    assert web.client.get(f"{base}/{rid}", headers=h).status_code == 200
    r = web.client.delete(f"{base}/{rid}", params={"version": 2}, headers=h)
    assert r.status_code == 204 and r.content == b""
    assert web.client.get(f"{base}/{rid}", headers=h).status_code == 404
    assert web.client.get(base, headers=h).json()["total"] == before
    assert web.client.delete(f"{base}/{rid}", params={"version": 2}, headers=h).status_code == 404
    # the id is free again
    assert web.client.post(base, json={"data": record(kind, "QZ-1")}, headers=h).status_code == 201


INVALID_RECORDS = [
    ("project", {"country_iso3": "ZZZ"}, "data.country_iso3"),
    ("project", {"status_class": "dreaming"}, "data.status_class"),
    ("project", {"capacity_t": -1}, "data.capacity_t"),
    ("project", {"colour": "blue"}, "data.colour"),
    ("project", {"support": [{"support_id": "SX", "agency": "DFC", "participant_iso3": "USA", "instrument": "gift", "url": "https://x"}]},
     "data.support.0.instrument"),
    ("project", {"support": 5}, "data.support"),
    ("project", {"project_id": "P" * 121}, "data.project_id"),
    ("need", {"country_iso3": "ZZZ"}, "data.country_iso3"),
    ("need", {"country_iso3": "CHN"}, "data.country_iso3"),
    ("need", {"stage": "magnet"}, "data.stage"),
    ("need", {"priority": 7}, "data.priority"),
    ("need", {"buyer_id": "has space"}, "data.buyer_id"),
    ("offer", {"country_iso3": "ZZZ"}, "data.country_iso3"),
    ("offer", {"volume_t_per_year": 0}, "data.volume_t_per_year"),
    ("offer", {"available_from": "next year"}, "data.available_from"),
    ("scenario", {"regime": "embargo"}, "data.regime"),
    ("scenario", {"duration_months": 0}, "data.duration_months"),
    ("scenario", {"commodity": "unobtainium"}, "data"),
    ("scenario", {"id": "S" * 121}, "data.id"),
]


def test_invalid_record_is_422_naming_the_field(web):
    h = web.h(GOV)
    for kind, over, field in INVALID_RECORDS:
        r = web.client.post(f"/api/{PLURAL[kind]}", json={"data": record(kind, "BAD-1", **over)}, headers=h)
        assert r.status_code == 422, (kind, over, r.text)
        assert field in fields(r), (kind, over, r.json())
    # on update too, and nothing is written
    for kind in PLURAL:
        rec = create(web, GOV, kind, "GOOD-1")
        over, field = next((o, f) for k, o, f in INVALID_RECORDS if k == kind)
        r = web.client.put(f"/api/{PLURAL[kind]}/{rec['id']}", json={"version": 1, "data": record(kind, "GOOD-1", **over)}, headers=h)
        assert r.status_code == 422 and field in fields(r), (kind, r.text)
        assert web.client.get(f"/api/{PLURAL[kind]}/{rec['id']}", headers=h).json() == rec
    for kind in PLURAL:
        assert web.client.get(f"/api/{PLURAL[kind]}", params={"q": "BAD-1"}, headers=h).json()["total"] == 0


def test_record_body_rules(web):
    h = web.h(GOV)
    # numbers JSON has not (Python's parser accepts them) and NUL characters are refused, naming where
    r = web.client.post("/api/scenarios", content=json.dumps({"data": record("scenario", "S-INF", response={"stockpile": {"holdings_t": float("inf")}})}),
                        headers={**h, "content-type": "application/json"})
    assert r.status_code == 422 and "response.stockpile.holdings_t" in r.json()["problems"][0]["message"]
    r = web.client.post("/api/offers", json={"data": record("offer", "O-NUL", note="a\x00b")}, headers=h)
    assert r.status_code == 422 and "note" in r.json()["problems"][0]["message"]
    r = web.client.post("/api/needs", json={"data": record("need", "B-1"), "owner": "someone"}, headers=h)
    assert r.status_code == 422 and fields(r) == ["body.owner"]
    r = web.client.post("/api/needs", json={"data": record("need", "B-1"), "shared_with": ["No Such Org"]}, headers=h)
    assert r.status_code == 422 and fields(r) == ["shared_with"]
    assert web.client.get("/api/needs", params={"q": "B-1"}, headers=h).json()["total"] == 0  # nothing half-written
    r = web.client.post("/api/scenarios", json={"data": record("scenario", LIBRARY_EVENT)}, headers=h)
    assert r.status_code == 409 and "library" in r.json()["detail"]
    for path in ("/api/projects/0", f"/api/projects/{2**31}", f"/api/runs/{2**40}", "/api/needs/abc"):
        assert web.client.get(path, headers=h).status_code == 422, path
    assert web.client.get("/api/projects/999999", headers=h).status_code == 404
    assert web.client.put("/api/projects/1", json={"version": 2**40}, headers=h).status_code == 422
    assert web.client.delete("/api/projects/1", params={"version": 2**40}, headers=h).status_code == 422


def test_project_with_support_actions_round_trips(web):
    support = [{"support_id": "SX-1", "agency": "DFC", "participant_iso3": "USA", "instrument": "loan", "amount_usd": 5e7, "url": "https://example.org/x"}]
    rec = create(web, GOV, "project", "PX-S", support=support, status_class="financing", capex_usd=2e8)
    assert rec["data"]["support"][0]["project_id"] == "PX-S" and rec["data"]["support"][0]["amount_usd"] == 5e7
    assert rec["data"]["capex_usd"] == 2e8 and rec["data"]["status_class"] == "financing"
    bundled = web.client.get("/api/projects", params={"q": "P001"}, headers=web.h(GOV)).json()["items"]
    p001 = next(p for p in bundled if p["key"] == "P001")
    assert p001["org"] == "critmin bundled data" and p001["data"]["country_iso3"] == "USA" and len(p001["data"]["support"]) >= 1


def test_comments(web):
    rec = create(web, ACME, "offer", "OC-1")
    url = f"/api/offers/{rec['id']}/comments"
    assert web.client.get(url, headers=web.h(ACME)).json() == []
    r = web.client.post(url, json={"body": "Volumes confirmed for 2027."}, headers=web.h(GOV_JP))
    assert r.status_code == 201
    c = r.json()
    assert (c["user"], c["org"], c["body"]) == (GOV_JP, "METI Japan", "Volumes confirmed for 2027.")
    web.client.post(url, json={"body": "Thanks"}, headers=web.h(ACME))
    got = web.client.get(url, headers=web.h(BETA)).json()
    assert [(x["user"], x["body"]) for x in got] == [(GOV_JP, "Volumes confirmed for 2027."), (ACME, "Thanks")]
    for bad in ({"body": ""}, {"body": "x" * 10001}, {}, {"body": "a\x00"}):
        assert web.client.post(url, json=bad, headers=web.h(ACME)).status_code == 422
    assert web.client.get("/api/offers/999999/comments", headers=web.h(ACME)).status_code == 404
    assert web.client.post("/api/offers/999999/comments", json={"body": "x"}, headers=web.h(ACME)).status_code == 404
    entry = next(a for a in audit(web, GOV_JP) if a["action"] == "comment")
    assert (entry["user"], entry["target_kind"], entry["target_key"]) == (GOV_JP, "offer", "OC-1")


def test_deleting_a_record_deletes_its_comments(web):
    """SQLite gives a new row the id of a deleted last row: a new record must not inherit the old one's comments."""
    rec = create(web, ACME, "need", "BC-1", confidential=True)
    web.client.post(f"/api/needs/{rec['id']}/comments", json={"body": "internal: price ceiling 12 USD/kg"}, headers=web.h(ACME))
    assert web.client.delete(f"/api/needs/{rec['id']}", params={"version": 1}, headers=web.h(ACME)).status_code == 204
    new = create(web, BETA, "need", "BC-2")
    if web.app.state.ws.db.backend == "sqlite":
        assert new["id"] == rec["id"]  # the case this guards against
    assert web.client.get(f"/api/needs/{new['id']}/comments", headers=web.h(BETA)).json() == []


def test_audit_records_who_when_what(web):
    t0 = datetime.now(UTC) - timedelta(seconds=5)
    rec = create(web, ACME, "project", "PA-1")
    web.client.put(f"/api/projects/{rec['id']}", json={"version": 1, "data": record("project", "PA-1", capacity_t=3000.0), "confidential": True},
                   headers=web.h("co2@acme.example"))
    web.client.delete(f"/api/projects/{rec['id']}", params={"version": 2}, headers=web.h(ACME))
    rid = run(web, ACME, "deliver")["id"]
    items = audit(web, "co2@acme.example")
    assert [a["id"] for a in items] == sorted((a["id"] for a in items), reverse=True)  # newest first
    got = [(a["user"], a["action"], a["target_kind"], a["target_key"]) for a in items]
    for want in [(ACME, "create", "project", "PA-1"), ("co2@acme.example", "update", "project", "PA-1"), (ACME, "delete", "project", "PA-1"),
                 (ACME, "run", "run", str(rid)), (ACME, "login", "user", ACME), ("co2@acme.example", "login", "user", "co2@acme.example")]:
        assert want in got, want
    assert got.index((ACME, "delete", "project", "PA-1")) < got.index(("co2@acme.example", "update", "project", "PA-1")) < got.index(
        (ACME, "create", "project", "PA-1"))
    upd = next(a for a in items if a["action"] == "update")
    assert upd["detail"]["version"] == 2 and upd["detail"]["fields"] == ["capacity_t"] and upd["detail"]["confidential"] is True
    assert next(a for a in items if a["action"] == "run")["detail"]["kind"] == "deliver"
    for a in items:
        assert t0 <= datetime.fromisoformat(a["at"]) <= datetime.now(UTC) + timedelta(seconds=5)
    assert web.client.get("/api/audit", params={"limit": 2}, headers=web.h(ACME)).json()["items"] == items[:2]
    assert web.client.get("/api/audit", params={"limit": 2, "offset": 2}, headers=web.h(ACME)).json()["items"] == items[2:4]


# ------------------------------------------------------------------------------------------------ concurrent edits
def test_concurrent_updates_one_wins_one_conflicts(web):
    rec = create(web, GOV, "need", "BV-1")
    url = f"/api/needs/{rec['id']}"
    a = web.client.put(url, json={"version": 1, "data": record("need", "BV-1", demand_t_per_year=111.0)}, headers=web.h(GOV))
    b = web.client.put(url, json={"version": 1, "data": record("need", "BV-1", demand_t_per_year=222.0)}, headers=web.h(GOV_JP))
    assert (a.status_code, b.status_code) == (200, 409)
    now = web.client.get(url, headers=web.h(GOV)).json()
    assert now["version"] == 2 and now["data"]["demand_t_per_year"] == 111.0


def test_concurrent_updates_in_threads(web):
    users = (GOV, GOV_JP)
    hs = {u: web.h(u) for u in users}
    for round_ in range(4):
        key = f"BT-{round_}"
        rec = create(web, GOV, "need", key)
        url = f"/api/needs/{rec['id']}"
        barrier = threading.Barrier(2)
        out: dict[str, Any] = {}

        def put(user: str, demand: float, url: str = url, key: str = key, barrier: threading.Barrier = barrier, out: dict[str, Any] = out) -> None:
            assert web.client.get(url, headers=hs[user]).json()["version"] == 1
            barrier.wait()
            out[user] = web.client.put(url, json={"version": 1, "data": record("need", key, demand_t_per_year=demand)}, headers=hs[user])

        threads = [threading.Thread(target=put, args=(u, 100.0 * (i + 1))) for i, u in enumerate(users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        codes = sorted(out[u].status_code for u in users)
        assert codes == [200, 409], {u: out[u].text for u in users}
        winner = next(u for u in users if out[u].status_code == 200)
        now = web.client.get(url, headers=hs[GOV]).json()
        assert now["version"] == 2 and now["data"]["demand_t_per_year"] == out[winner].json()["data"]["demand_t_per_year"]
        updates = [a for a in audit(web, winner) if a["action"] == "update" and a["target_key"] == key]
        assert len(updates) == 1


def test_concurrent_creates_of_one_id_one_wins_one_conflicts(web):
    users = (GOV, GOV_JP)
    hs = {u: web.h(u) for u in users}
    for round_ in range(5):
        key = f"BR-{round_}"
        barrier = threading.Barrier(2)
        out: dict[str, Any] = {}

        def post(user: str, key: str = key, barrier: threading.Barrier = barrier, out: dict[str, Any] = out) -> None:
            barrier.wait()
            out[user] = web.client.post("/api/needs", json={"data": record("need", key, name=f"buyer of {user}")}, headers=hs[user])

        threads = [threading.Thread(target=post, args=(u,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(out[u].status_code for u in users) == [201, 409], {u: out[u].text for u in users}
        winner = next(u for u in users if out[u].status_code == 201)
        found = web.client.get("/api/needs", params={"q": key}, headers=hs[GOV]).json()["items"]
        assert [(x["key"], x["data"]["name"]) for x in found] == [(key, f"buyer of {winner}")]


# ------------------------------------------------------------------------------------------------ runs
RESULT_KEYS = {
    "simulate": {"scenarios", "paths", "definitions", "metadata"},
    "risk": {"ranking", "metadata", "evaluations"},
    "stockpile": {"metadata", "stockpiles", "budget_plans"},
    "deliver": {"metadata", "allocation", "buyers", "projects", "not_supplying", "buyers_not_planned"},
    "match": {"metadata", "matches", "candidates", "unmatched_needs"},
    "portfolio": {"metadata", "status", "selected", "budgets", "projects", "expected_avoided_usd", "finance"},
    "plan": {"metadata", "priority_minerals", "vulnerabilities", "scenarios", "portfolio", "stockpiles", "deliveries", "matches", "sources"},
    "respond": {"metadata", "events"},
}
DRAWS = 30


def _result(web: Any, who: str, rid: int) -> dict[str, Any]:
    r = web.client.get(f"/api/runs/{rid}/result", headers=web.h(who))
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("kind,params", [
    ("simulate", {"scenario_ids": [LIBRARY_EVENT], "draws": DRAWS, "seed": 7}),
    ("simulate", {"scenario": record("scenario", "inline-1"), "draws": DRAWS}),
    ("risk", {"draws": DRAWS, "perspective": "JPN"}),
    ("stockpile", {"draws": DRAWS}),
    ("deliver", {"months": 3, "as_of": "2026-01"}),
    ("match", {"as_of": "2026-01"}),
    ("respond", {"scenario": record("scenario", "inline-2"), "draws": DRAWS, "as_of": "2026-01"}),
])
def test_runs_reach_done_with_their_results(web, kind, params):
    j = run(web, GOV, kind, params)
    assert j["status"] == "done", j
    assert j["progress"] == 1.0 and j["error"] is None and j["cached_from"] is None and j["user"] == GOV and j["org"] == "US Department of Energy"
    assert j["started_at"] and j["finished_at"] and datetime.fromisoformat(j["finished_at"]) >= datetime.fromisoformat(j["started_at"])
    assert re.fullmatch(r"[0-9a-f]{64}", j["inputs_sha256"]) and j["data_version"].startswith("mcs") and j["critmin_version"]
    res = _result(web, GOV, j["id"])
    assert res["run"]["id"] == j["id"] and RESULT_KEYS[kind] <= set(res["result"]), sorted(res["result"])
    for k, v in params.items():
        assert res["run"]["params"][k] == v
    meta = res["result"]["metadata"]
    if kind in ("simulate", "risk", "stockpile"):
        assert meta["data_version"] == j["data_version"] and meta["seed"] == params.get("seed", 0) and meta["draws"] == DRAWS
        assert re.fullmatch(r"[0-9a-f]{64}", meta["parameters_sha256"])
    else:
        assert meta["as_of"] == "2026-01"
    if kind == "simulate":
        sid, months = (LIBRARY_EVENT, 54) if "scenario_ids" in params else ("inline-1", 6)
        rows = res["result"]["scenarios"]
        assert sorted(r["perspective"] for r in rows) == ["BLOC", "JPN", "USA"] and {r["scenario"] for r in rows} == {sid}
        assert all(r["expected_loss_usd"] > 0 and r["cvar95_usd"] >= r["var95_usd"] for r in rows)
        assert [d["id"] for d in res["result"]["definitions"]] == [sid]
        assert max(p["month"] for p in res["result"]["paths"]) == months
    if kind == "risk":
        assert res["run"]["params"]["perspective"] == "JPN" and len(res["result"]["ranking"]) > 10
    if kind == "deliver":
        assert meta["months"] == 3 and meta["status"] == "Optimal"
    if kind == "respond":
        ev = res["result"]["events"][0]
        assert ev["scenario"] == "inline-2" and {r["perspective"] for r in ev["impact"]} == {"USA", "JPN", "BLOC"}
        pdf = web.client.get(f"/api/runs/{j['id']}/files/brief.pdf", headers=web.h(GOV))
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert web.client.get(f"/api/runs/{j['id']}/files/plan.pdf", headers=web.h(GOV)).status_code == 404
    listed = web.client.get("/api/runs", params={"kind": kind}, headers=web.h(GOV)).json()
    assert [x["id"] for x in listed["items"]] == [j["id"]]


def test_portfolio_and_plan_runs(web):
    if web.app.state.ws.db.backend != "sqlite":
        pytest.skip("the two heaviest jobs run on SQLite only (their database work is that of the lighter kinds)")
    p = run(web, AGENCY, "portfolio", {"draws": DRAWS, "as_of": "2026-01"})
    assert p["status"] == "done", p
    res = _result(web, AGENCY, p["id"])["result"]
    assert RESULT_KEYS["portfolio"] <= set(res) and res["status"] in ("Optimal", "optimal")
    assert res["metadata"]["workspace_records"] == {"projects": BUNDLED_PROJECTS, "needs": BUNDLED_NEEDS, "offers": 0}
    assert res["metadata"]["draws"] == DRAWS and res["metadata"]["data_version"] == p["data_version"]
    plan = run(web, AGENCY, "plan", {"draws": DRAWS, "as_of": "2026-01", "top": 10})
    assert plan["status"] == "done", plan
    assert plan["files"] == ["plan.html", "plan.json", "plan.pdf", "plan.xlsx"]
    res = _result(web, AGENCY, plan["id"])["result"]
    assert RESULT_KEYS["plan"] <= set(res) and res["metadata"]["workspace_records"]["projects"] == BUNDLED_PROJECTS
    assert res["metadata"]["seed"] == 0 and res["metadata"]["draws"] == DRAWS and res["metadata"]["as_of"] == "2026-01"
    h = web.h(AGENCY)
    pdf = web.client.get(f"/api/runs/{plan['id']}/files/plan.pdf", headers=h)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF") and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == 'attachment; filename="plan.pdf"'
    xlsx = web.client.get(f"/api/runs/{plan['id']}/files/plan.xlsx", headers=h)
    assert xlsx.status_code == 200 and "spreadsheetml" in xlsx.headers["content-type"]
    assert "xl/workbook.xml" in zipfile.ZipFile(io.BytesIO(xlsx.content)).namelist()
    html = web.client.get(f"/api/runs/{plan['id']}/files/plan.html", headers=h)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html") and b"<html" in html.content[:2000].lower()
    pj = web.client.get(f"/api/runs/{plan['id']}/files/plan.json", headers=h)
    assert pj.status_code == 200 and json.loads(pj.content)["metadata"]["draws"] == DRAWS
    assert web.client.get(f"/api/runs/{plan['id']}/files/other.txt", headers=h).status_code == 404
    assert web.client.get(f"/api/runs/{plan['id']}/files/..%2Fplan.pdf", headers=h).status_code == 404
    # the same inputs again: the stored result and files are served
    again = run(web, GOV, "plan", {"draws": DRAWS, "as_of": "2026-01", "top": 10}, wait=False)
    assert again["status"] == "done" and again["cached_from"] == plan["id"] and again["files"] == plan["files"]
    assert web.client.get(f"/api/runs/{again['id']}/files/plan.pdf", headers=web.h(GOV)).content == pdf.content


def test_second_identical_run_is_served_from_cache(web):
    first = run(web, GOV, "simulate", {"scenario_ids": [LIBRARY_EVENT], "draws": DRAWS})
    second = run(web, GOV, "simulate", {"scenario_ids": [LIBRARY_EVENT], "draws": DRAWS}, wait=False)
    assert second["status"] == "done" and second["cached_from"] == first["id"] and second["inputs_sha256"] == first["inputs_sha256"]
    assert "run " + str(first["id"]) in second["message"]
    assert _result(web, GOV, second["id"])["result"] == _result(web, GOV, first["id"])["result"]
    # another organisation reading the same (public) inputs gets the stored result too
    third = run(web, GOV_JP, "simulate", {"scenario_ids": [LIBRARY_EVENT], "draws": DRAWS}, wait=False)
    assert third["cached_from"] == first["id"]
    # different parameters are a new run
    other = run(web, GOV, "simulate", {"scenario_ids": [LIBRARY_EVENT], "draws": DRAWS, "seed": 1})
    assert other["cached_from"] is None and other["inputs_sha256"] != first["inputs_sha256"]
    assert _result(web, GOV, other["id"])["result"]["metadata"]["seed"] == 1
    assert any(a["action"] == "run" and a["detail"]["cached_from"] == first["id"] for a in audit(web, GOV))


def test_parameter_table_is_served_with_sources(web):
    j = web.client.get("/api/parameters", headers=web.h(OBSERVER)).json()
    assert j["origin"] == "bundled" and len(j["rows"]) >= 20
    names = {n["name"]: n for n in j["names"]}
    assert names["max_price_ratio"] == {"name": "max_price_ratio", "role": "sampled", "min": 1.0, "max": 1000.0}
    assert names["licence_denial"]["role"] == "setting"
    assert {r["name"] for r in j["rows"]} <= set(names)
    assert all(r["source"] and r["kind"] in ("sourced", "assumption", "computed") for r in j["rows"])


def test_parameter_overrides_reach_the_model(web):
    """A run's params.parameters replace the bundled rows: with the price cap fixed at 1x (max_price_ratio = 1)
    no price in the paths rises above the reference price; the result records the parameters used."""
    base = run(web, GOV, "simulate", {"scenario_ids": [LIBRARY_EVENT], "draws": DRAWS})
    capped = run(web, GOV, "simulate", {"scenario_ids": [LIBRARY_EVENT], "draws": DRAWS,
                                        "parameters": [{"name": "max_price_ratio", "value": 1.0}]})
    assert capped["status"] == "done", capped
    assert capped["inputs_sha256"] != base["inputs_sha256"] and capped["cached_from"] is None
    b, c = _result(web, GOV, base["id"])["result"], _result(web, GOV, capped["id"])["result"]
    assert max(p["price_t_p95"] for p in b["paths"]) > 1.5
    assert all(p[k] == pytest.approx(1.0) for p in c["paths"] for k in ("price_t_p05", "price_t_p50", "price_t_p95", "price_t_mean"))
    assert c["metadata"]["parameters"] == "bundled + run parameters"
    assert c["metadata"]["parameters_sha256"] != b["metadata"]["parameters_sha256"]
    loss = {r["perspective"]: r["expected_loss_usd"] for r in c["scenarios"]}
    # the cap changes the losses (buyers are rationed instead of paying more); which way depends on the node's
    # lost-output multiple, so only the change is asserted
    assert all(0 < loss[r["perspective"]] != pytest.approx(r["expected_loss_usd"], rel=1e-6) for r in b["scenarios"])
    stored = _result(web, GOV, capped["id"])["run"]["params"]["parameters"]
    assert stored == [{"name": "max_price_ratio", "scope": "*", "value": 1.0, "low": None, "high": None, "distribution": "fixed"}]
    # the same overrides again: the stored result; a scoped, uncertain override: a new run
    again = run(web, GOV, "simulate", {"scenario_ids": [LIBRARY_EVENT], "draws": DRAWS, "parameters": [{"name": "max_price_ratio", "value": 1.0}]}, wait=False)
    assert again["cached_from"] == capped["id"]
    scoped = run(web, GOV, "risk", {"draws": DRAWS, "parameters": [
        {"name": "elasticity_demand", "scope": "commodity:rare_earths", "value": -0.3, "low": -0.6, "high": -0.1, "distribution": "triangular"}]})
    assert scoped["status"] == "done", scoped
    assert _result(web, GOV, scoped["id"])["result"]["metadata"]["parameters"] == "bundled + run parameters"


def test_library_scenarios_follow_the_runs_settings(web):
    """An event without an end date lasts in_force_horizon_months: a simulate run that overrides it simulates
    the longer scenario (found in review: library ids were resolved with the workspace's simulator)."""
    sid = "ev.E005.nickel.mine"
    base = run(web, GOV, "simulate", {"scenario_ids": [sid], "draws": 20})
    longer = run(web, GOV, "simulate", {"scenario_ids": [sid], "draws": 20, "parameters": [{"name": "in_force_horizon_months", "value": 24}]})
    durations = [_result(web, GOV, r["id"])["result"]["definitions"][0]["duration_months"] for r in (base, longer)]
    assert durations == [12, 24]


def test_blank_padded_scope_is_checked_before_the_run_is_queued(web):
    r = web.client.post("/api/runs", json={"kind": "risk", "params": {"parameters": [{"name": "max_price_ratio", "scope": " commodity:nope ", "value": 2}]}},
                        headers=web.h(GOV))
    assert r.status_code == 422 and "params.parameters.0.scope" in fields(r)


@pytest.mark.parametrize("override,field,message", [
    ({"name": "no_such_parameter", "value": 1.0}, "params.parameters.0.name", "unknown parameter 'no_such_parameter'"),
    ({"name": "max_price_ratio", "value": 0.5}, "params.parameters.0.value", "max_price_ratio = 0.5 is outside [1, 1000]"),
    ({"name": "leakage", "scope": "commodity:unobtanium", "value": 0.5}, "params.parameters.0.scope", "unknown commodity 'unobtanium'"),
    ({"name": "leakage", "scope": "planet:mars", "value": 0.5}, "params.parameters.0.scope", "is not *, group:"),
    ({"name": "leakage", "value": 0.5, "distribution": "uniform"}, "params.parameters.0.low", "needs low and high"),
    ({"name": "leakage", "value": 0.9, "low": 0.1, "high": 0.5, "distribution": "uniform"}, "params.parameters.0.value", "low <= value <= high"),
    ({"name": "leakage", "value": 0.5, "distribution": "lognormal"}, "params.parameters.0.distribution", "Input should be"),
    ({"name": "leakage"}, "params.parameters.0.value", "required"),
])
def test_bad_parameter_overrides_are_refused_naming_the_row(web, override, field, message):
    r = web.client.post("/api/runs", json={"kind": "simulate", "params": {"scenario_ids": [LIBRARY_EVENT], "draws": DRAWS, "parameters": [override]}},
                        headers=web.h(GOV))
    assert r.status_code == 422, r.text
    got = {q["field"]: q["message"] for q in r.json()["problems"]}
    assert field in got and message in got[field], got
    assert web.client.get("/api/runs", headers=web.h(GOV)).json()["total"] == 0  # nothing queued


def test_duplicate_parameter_rows_are_refused(web):
    rows = [{"name": "leakage", "value": 0.5}, {"name": "leakage", "value": 0.6}]
    r = web.client.post("/api/runs", json={"kind": "stockpile", "params": {"draws": DRAWS, "parameters": rows}}, headers=web.h(GOV))
    assert r.status_code == 422 and any(q["field"] == "params.parameters.1.scope" and "duplicate" in q["message"] for q in r.json()["problems"])
    r = web.client.post("/api/runs", json={"kind": "deliver", "params": {"parameters": rows[:1]}}, headers=web.h(GOV))
    assert r.status_code == 422 and "params.parameters" in fields(r)  # deliveries do not simulate: no parameters


def test_inputs_digest_follows_the_records(web):
    def digest(kind: str) -> dict[str, Any]:
        params = {"draws": DRAWS, "as_of": "2026-01"} if kind == "portfolio" else {"as_of": "2026-01"}
        j = run(web, GOV, kind, params, wait=kind != "portfolio")
        if kind == "portfolio":  # the digest is fixed when the run is submitted; no need to solve
            web.client.post(f"/api/runs/{j['id']}/cancel", headers=web.h(GOV))
            web.wait(GOV, j["id"])
        return j

    d1, p1 = digest("deliver"), digest("portfolio")
    p001 = next(p for p in web.client.get("/api/projects", params={"q": "P001"}, headers=web.h(GOV)).json()["items"] if p["key"] == "P001")
    r = web.client.put(f"/api/projects/{p001['id']}", json={"version": 1, "data": {**p001["data"], "capacity_t": 70000.0}}, headers=web.h(GOV))
    assert r.status_code == 200, r.text
    d2, p2 = digest("deliver"), digest("portfolio")
    assert d2["inputs_sha256"] != d1["inputs_sha256"] and d2["cached_from"] is None
    assert p2["inputs_sha256"] != p1["inputs_sha256"] and p2["cached_from"] is None
    # a need deleted and created again under its id starts at version 1 again: the data still tells them apart
    n = create(web, GOV, "need", "BD-1")
    d3 = digest("deliver")
    assert web.client.delete(f"/api/needs/{n['id']}", params={"version": 1}, headers=web.h(GOV)).status_code == 204
    create(web, GOV, "need", "BD-1", demand_t_per_year=9999.0)
    d4 = digest("deliver")
    assert d4["inputs_sha256"] != d3["inputs_sha256"] and d4["cached_from"] is None
    # records a run does not read leave its digest alone
    s1 = run(web, GOV, "risk", {"draws": 5}, wait=False)
    create(web, GOV, "offer", "OD-1")
    s2 = run(web, GOV, "risk", {"draws": 5}, wait=False)
    assert s2["inputs_sha256"] == s1["inputs_sha256"]


def test_deliver_and_match_use_workspace_needs_and_offers(web):
    create(web, ACME, "offer", "OFFER-AUS-1", volume_t_per_year=800.0)
    create(web, BETA, "need", "NEED-JPN-1", demand_t_per_year=500.0, origin_rule="any", priority=1)
    m = run(web, GOV, "match", {"as_of": "2026-01"})
    assert m["status"] == "done", m
    res = _result(web, GOV, m["id"])["result"]
    pairs = {(x.get("buyer_id"), x.get("project_id")) for x in res["matches"]}
    assert ("NEED-JPN-1", "OFFER-AUS-1") in pairs, res["matches"][:5]
    d = run(web, GOV, "deliver", {"as_of": "2026-01", "months": 2})
    assert d["status"] == "done", d
    alloc = [a for a in _result(web, GOV, d["id"])["result"]["allocation"] if a.get("buyer_id") == "NEED-JPN-1"]
    assert alloc and all(a.get("project_id") == "OFFER-AUS-1" for a in alloc)


def test_bloc_membership_of_a_run(web):
    """params.blocs replaces the countries of concern for one run: an offer from a country made a country of
    concern leaves the supply (deliveries exclude concern origins), and the result records the membership."""
    j = web.client.get("/api/blocs", headers=web.h(OBSERVER)).json()
    assert j["blocs"]["participants"] == ["JPN", "USA"] and "CHN" in j["blocs"]["concern"] and "AUS" in j["blocs"]["like_minded"]
    assert j["run_blocs"] == ["concern", "like_minded"] and {"iso3": "BRA", "name": "Brazil"} in j["countries"]
    create(web, ACME, "offer", "OFFER-BRA-1", country_iso3="BRA", volume_t_per_year=800.0)
    create(web, BETA, "need", "NEED-JPN-2", demand_t_per_year=500.0, origin_rule="any", priority=1)
    supplying = {}
    concern = [*j["blocs"]["concern"], "BRA"]
    for label, blocs in (("atlas", {}), ("BRA of concern", {"concern": concern})):
        d = run(web, GOV, "deliver", {"as_of": "2026-01", "months": 2, "blocs": blocs})
        assert d["status"] == "done", d
        res = _result(web, GOV, d["id"])["result"]
        supplying[label] = {x["project_id"] for x in res["projects"]} | {x["project_id"] for x in res["allocation"]}
        if blocs:
            assert res["metadata"]["blocs"]["concern"] == sorted(concern) and res["metadata"]["blocs"]["participants"] == ["JPN", "USA"]
            assert _result(web, GOV, d["id"])["run"]["params"]["blocs"] == {"concern": sorted(concern)}
        else:
            assert res["metadata"]["blocs"] == j["blocs"]  # the atlas's membership, recorded all the same
    assert "OFFER-BRA-1" in supplying["atlas"] and "OFFER-BRA-1" not in supplying["BRA of concern"]


def test_digest_follows_the_servers_bloc_membership(web, simulator):
    """A server started with --blocs has the atlas's data version but other blocs: its runs must not reuse
    results computed with the bundled membership (found in review: the digest left the membership out)."""
    from critmin.simulate.run import Simulator

    ws = web.app.state.ws
    first = run(web, GOV, "match", {"as_of": "2026-01"})
    assert run(web, GOV, "match", {"as_of": "2026-01"}, wait=False)["cached_from"] == first["id"]
    atlas = simulator.atlas.with_blocs({"concern": sorted(simulator.atlas.concern | {"BRA"})})
    assert atlas.data_version == simulator.atlas.data_version
    ws._sim = Simulator.build(atlas, simulator.params)
    try:
        other = run(web, GOV, "match", {"as_of": "2026-01"}, wait=False)
        assert other["cached_from"] is None and other["inputs_sha256"] != first["inputs_sha256"]
    finally:
        ws._sim = simulator


@pytest.mark.parametrize("blocs,field,message", [
    ({"concern": ["CHN", "XXX"]}, "params.blocs.concern.1", "unknown country 'XXX'"),
    ({"concern": ["CHN", "AUS"]}, "params.blocs.concern.1", "would be a country of concern and a participant or like-minded partner"),
    ({"like_minded": ["RUS"]}, "params.blocs.like_minded.0", "would be a country of concern"),
    ({"participants": ["USA", "JPN", "AUS"]}, "params.blocs.participants", "Input should be"),
    ({"concern": ["chn"]}, "params.blocs.concern.0", "String should match pattern"),
])
def test_bad_bloc_membership_is_refused(web, blocs, field, message):
    r = web.client.post("/api/runs", json={"kind": "match", "params": {"blocs": blocs}}, headers=web.h(GOV))
    assert r.status_code == 422, r.text
    got = {q["field"]: q["message"] for q in r.json()["problems"]}
    assert field in got and message in got[field], got
    assert web.client.get("/api/runs", headers=web.h(GOV)).json()["total"] == 0


INVALID_RUNS = [
    ({"kind": "simulate", "params": {"draws": 0, "scenario_ids": [LIBRARY_EVENT]}}, "params.draws"),
    ({"kind": "risk", "params": {"draws": 5001}}, "params.draws"),
    ({"kind": "risk", "params": {"perspective": "CHN"}}, "params.perspective"),
    ({"kind": "deliver", "params": {"as_of": "2026-13"}}, "params.as_of"),
    ({"kind": "deliver", "params": {"draws": 10}}, "params.draws"),
    ({"kind": "simulate", "params": {}}, "params"),
    ({"kind": "simulate", "params": {"scenario_ids": ["no.such.scenario"]}}, "params.scenario_ids"),
    ({"kind": "simulate", "params": {"scenario": {"id": "x", "commodity": "rare_earths", "stage": "refine", "restrictors": []}}},
     "params.scenario.restrictors"),
    ({"kind": "forecast", "params": {}}, "body.kind"),
    ({"kind": "portfolio", "params": {"budgets": {"US_DFC": float("inf")}}}, "body.params"),
    ({"kind": "portfolio", "params": {"budgets": {"US_DFC": -1e9}}}, "params.budgets.US_DFC"),
]


def test_invalid_run_parameters_are_422(web):
    h = {**web.h(GOV), "content-type": "application/json"}
    for params, field in INVALID_RUNS:
        r = web.client.post("/api/runs", content=json.dumps(params), headers=h)
        assert r.status_code == 422, (params, r.text)
        assert field in fields(r), (params, r.json())
    assert web.client.get("/api/runs", headers=h).json()["total"] == 0


def test_cancel_running_and_queued_runs(web):
    h = web.h(GOV)
    long = run(web, GOV, "risk", {"draws": 1000, "seed": 3}, wait=False)
    queued = run(web, GOV, "simulate", {"scenario_ids": [LIBRARY_EVENT], "draws": 100, "seed": 3}, wait=False)
    t0 = time.monotonic()
    while web.client.get(f"/api/runs/{long['id']}", headers=h).json()["status"] == "queued" and time.monotonic() - t0 < 30:
        time.sleep(0.05)
    assert web.client.get(f"/api/runs/{queued['id']}", headers=h).json()["status"] == "queued"  # one job at a time
    r = web.client.post(f"/api/runs/{queued['id']}/cancel", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["message"] == "cancelled before it started"
    assert web.client.get(f"/api/runs/{long['id']}/result", headers=h).status_code == 409  # not finished
    r = web.client.post(f"/api/runs/{long['id']}/cancel", headers=h)
    assert r.status_code == 200 and r.json()["status"] in ("running", "cancelled")
    end = web.wait(GOV, long["id"], timeout=60)
    assert end["status"] == "cancelled" and end["message"] == "cancelled while running" and end["finished_at"]
    assert web.wait(GOV, queued["id"])["status"] == "cancelled"
    for rid in (long["id"], queued["id"]):
        r = web.client.get(f"/api/runs/{rid}/result", headers=h)
        assert r.status_code == 409 and "cancelled" in r.json()["detail"]
    # a cancelled run is no cache entry: the same inputs run again
    again = run(web, GOV, "simulate", {"scenario_ids": [LIBRARY_EVENT], "draws": 100, "seed": 3})
    assert again["status"] == "done" and again["cached_from"] is None
    assert web.app.state.runner.cancel_flags == {}  # no flag left behind by the run cancelled while queued
    # cancelling a finished run changes nothing; other organisations cannot cancel
    assert web.client.post(f"/api/runs/{again['id']}/cancel", headers=h).json()["status"] == "done"
    assert web.client.post(f"/api/runs/{again['id']}/cancel", headers=web.h(GOV_JP)).status_code == 403
    assert web.client.post("/api/runs/999999/cancel", headers=h).status_code == 404
    actions = [(a["action"], a["target_key"]) for a in audit(web, GOV)]
    assert ("cancel", str(queued["id"])) in actions and ("cancel", str(long["id"])) in actions


def test_run_listing_and_unknown_runs(web):
    a = run(web, GOV, "deliver", {"as_of": "2026-01"})
    b = run(web, GOV, "match", {"as_of": "2026-01"})
    items = web.client.get("/api/runs", headers=web.h(GOV_JP)).json()
    assert [x["id"] for x in items["items"]] == [b["id"], a["id"]] and items["total"] == 2
    assert web.client.get("/api/runs", params={"kind": "match"}, headers=web.h(GOV)).json()["total"] == 1
    assert web.client.get("/api/runs", params={"limit": 1, "offset": 1}, headers=web.h(GOV)).json()["items"][0]["id"] == a["id"]
    assert web.client.get("/api/runs", params={"kind": "forecast"}, headers=web.h(GOV)).status_code == 422
    for path in ("/api/runs/999999", "/api/runs/999999/result", "/api/runs/999999/files/plan.pdf"):
        assert web.client.get(path, headers=web.h(GOV)).status_code == 404


# ------------------------------------------------------------------------------------------------ browser security
def test_security_headers(web):
    for path, h in (("/api/health", {}), ("/api/projects", web.h(GOV)), ("/docs", {}), ("/openapi.json", {}), ("/api/nothing-here", {})):
        r = web.client.get(path, headers=h)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, path
        assert "unsafe-eval" not in csp and "script-src 'self';" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        if path.startswith("/api/"):
            assert r.headers["cache-control"] == "no-store"
    assert web.client.post("/api/auth/login", json={"username": "x", "password": "y"}).headers["x-frame-options"] == "DENY"


def test_cookie_session_needs_the_csrf_header_for_changes(web):
    web.client.cookies.clear()
    login = web.client.post("/api/auth/login", json={"username": ACME, "password": PASSWORD}).json()
    csrf = web.client.cookies.get("critmin_csrf")
    assert csrf == login["csrf_token"]
    assert web.client.get("/api/auth/me").json()["email"] == ACME  # the cookie alone signs reads in
    body = {"data": record("offer", "OCSRF-1")}
    r = web.client.post("/api/offers", json=body)
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"]
    assert web.client.post("/api/offers", json=body, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert web.client.post("/api/runs", json={"kind": "deliver"}).status_code == 403
    assert web.client.get("/api/offers", params={"q": "OCSRF-1"}).json()["total"] == 0
    r = web.client.post("/api/offers", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201 and r.json()["org"] == "Acme Rare Earths"
    rid = r.json()["id"]
    assert web.client.delete(f"/api/offers/{rid}", params={"version": 1}).status_code == 403
    assert web.client.delete(f"/api/offers/{rid}", params={"version": 1}, headers={"X-CSRF-Token": csrf}).status_code == 204
    # another session's CSRF token does not fit this session
    other = web.client.post("/api/auth/login", json={"username": ACME, "password": PASSWORD}).json()  # replaces the cookies
    assert web.client.post("/api/offers", json=body, headers={"X-CSRF-Token": login["csrf_token"]}).status_code == 403
    assert web.client.post("/api/offers", json=body, headers={"X-CSRF-Token": other["csrf_token"]}).status_code == 201
    # logout by cookie (a change: needs the header) ends the session
    assert web.client.post("/api/auth/logout").status_code == 403
    assert web.client.post("/api/auth/logout", headers={"X-CSRF-Token": other["csrf_token"]}).status_code == 200
    web.client.cookies.set("critmin_session", other["access_token"], domain="testserver")
    assert web.client.get("/api/auth/me").status_code == 401
    # bearer requests need no CSRF header (a browser never adds that header on its own)
    web.client.cookies.clear()
    assert web.client.post("/api/offers", json={"data": record("offer", "OCSRF-2")}, headers={"Authorization": f"Bearer {login['access_token']}"}).status_code == 201


def test_login_rate_limit(web):
    limiter = web.app.state.limiter
    assert limiter.failures == 5
    web.h(GOV)  # signed in before the address is locked out
    for _ in range(5):
        assert web.client.post("/api/auth/login", json={"username": ACME, "password": "guess"}).status_code == 401
    r = web.client.post("/api/auth/login", json={"username": ACME, "password": "guess"})
    assert r.status_code == 429
    wait = int(r.headers["retry-after"])
    assert 1 <= wait <= 301 and f"{wait} s" in r.json()["detail"]
    # even the right password waits; so does another user from the same address
    assert web.client.post("/api/auth/login", json={"username": ACME, "password": PASSWORD}).status_code == 429
    assert web.client.post("/api/auth/login", json={"username": BETA, "password": PASSWORD}).status_code == 429
    assert web.client.get("/api/auth/me", headers=web.h(GOV)).status_code == 200  # sessions already open go on
    # after the window the user may sign in again; a success clears the user's count
    limiter.window_s = 0.05
    time.sleep(0.1)
    assert web.client.post("/api/auth/login", json={"username": ACME, "password": PASSWORD}).status_code == 200


def test_rate_limit_counts_per_user_and_per_address():
    from critmin.web.security import LoginLimiter

    lim = LoginLimiter(failures=3, window_s=60)
    for _ in range(3):
        assert lim.retry_after("u:a", "ip:1") == 0
        lim.failed("u:a", "ip:1")
    assert 59 < lim.retry_after("u:a", "ip:2") <= 60  # the user, from anywhere
    assert 59 < lim.retry_after("u:b", "ip:1") <= 60  # anyone, from that address
    assert lim.retry_after("u:b", "ip:2") == 0
    lim.succeeded("u:a")
    assert lim.retry_after("u:a", "ip:2") == 0


def test_parallel_guesses_cannot_pass_the_limit_together():
    """attempt() counts an attempt before the password is checked (found in review: check, verify, then
    count let parallel guesses all pass the check); forgive() takes back the attempts that succeeded."""
    from concurrent.futures import ThreadPoolExecutor

    from critmin.web.security import LoginLimiter

    lim = LoginLimiter(failures=5, window_s=60)
    with ThreadPoolExecutor(8) as ex:
        waits = list(ex.map(lambda _: lim.attempt("u:a", "ip:1")[0], range(40)))
    assert sum(w == 0 for w in waits) == 5 and all(59 < w <= 60 for w in waits if w)
    ok = LoginLimiter(failures=3, window_s=60)
    for _ in range(10):  # successful sign-ins from one address never lock it
        wait, stamp = ok.attempt("u:b", "ip:2")
        assert wait == 0
        ok.forgive(stamp, "ip:2")
        ok.succeeded("u:b")


def test_docs_are_self_hosted_and_openapi_is_valid(web):
    r = web.client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", r.text)
    assert refs and not re.search(r"https?://", r.text)
    for ref in refs:
        if ref.startswith("data:"):
            continue
        assert ref.startswith("/static/"), ref
        assert web.client.get(ref).status_code == 200, ref
    init = web.client.get("/static/docs-init.js").text
    assert "/openapi.json" in init and not re.search(r"https?://", init)
    spec = web.client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.") and spec["info"]["title"] == "critmin workspace API"
    ops = [(p, m, op) for p, item in spec["paths"].items() for m, op in item.items()]
    assert len(ops) >= 40 and all(p.startswith("/api/") for p, _, _ in ops)
    assert len({op["operationId"] for _, _, op in ops}) == len(ops)
    for p, m, op in ops:
        assert op["responses"], (p, m)
        for name in re.findall(r"\{(\w+)\}", p):
            assert any(x["name"] == name and x["in"] == "path" for x in op.get("parameters", [])), (p, name)

    def refs_in(x: Any) -> list[str]:
        if isinstance(x, dict):
            return ([x["$ref"]] if isinstance(x.get("$ref"), str) else []) + [r for v in x.values() for r in refs_in(v)]
        return [r for v in x for r in refs_in(v)] if isinstance(x, list) else []

    for ref in refs_in(spec):
        assert ref.startswith("#/components/schemas/") and ref.split("/")[-1] in spec["components"]["schemas"], ref
    assert spec["paths"]["/api/auth/login"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/LoginIn")


def test_page_assets(web):
    js = web.client.get("/assets/plotly.min.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"] and len(js.content) > 1_000_000
    assert b"plotly" in js.content[:5000].lower()
    topo = web.client.get("/assets/topojson/world_110m.json")
    assert topo.status_code == 200 and topo.headers["content-type"] == "application/json"
    world = topo.json()
    assert world["type"] == "Topology" and world["objects"]
    index = web.client.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")


def test_unknown_query_parameters_are_refused(web) -> None:
    """A typo in a query parameter answers 422 naming it, instead of silently answering for the default."""
    h = web.h("gov@us.example")
    r = web.client.get("/api/minerals/priority?perspectiv=USA", headers=h)
    assert r.status_code == 422
    assert r.json()["problems"][0]["field"] == "query.perspectiv" and "perspective" in r.json()["problems"][0]["message"]
    assert web.client.get("/api/minerals/priority?perspective=USA&top=3", headers=h).status_code == 200
    assert web.client.get("/api/health?verbose=1").status_code == 422


def test_cancel_recorded_by_another_server_process_stops_the_run(web) -> None:
    """A cancel written to the database by another server process (the run's message set to 'cancelling')
    stops the run at its next progress point."""
    import time

    from critmin.web import models as m
    from critmin.web.jobs import CANCELLING

    h = web.h("gov@us.example")
    run = web.client.post("/api/runs", json={"kind": "risk", "params": {"draws": 5000}}, headers=h).json()
    t0 = time.monotonic()
    while web.client.get(f"/api/runs/{run['id']}", headers=h).json()["status"] != "running":
        assert time.monotonic() - t0 < 60
        time.sleep(0.05)
    with web.app.state.ws.db.session() as s:
        s.get(m.Run, run["id"]).message = CANCELLING
    done = web.wait("gov@us.example", run["id"])
    assert done["status"] == "cancelled" and done["progress"] < 1.0


VULN_COLUMNS = {"commodity_id", "stage", "name", "hhi", "hhi_wgi", "top_country", "top_share", "top3_share", "concern_share", "bloc_share",
                "participants_share", "coverage", "n_countries", "basis", "bound", "wgi_imputed", "year", "source_ids", "sources", "chokepoint"}
SHARE_COLUMNS = ("top_share", "top3_share", "concern_share", "bloc_share", "participants_share", "coverage")


def test_vulnerabilities_by_stage(web) -> None:
    """GET /api/atlas/vulnerabilities: stage_metrics of every node or of one commodity, with its chokepoint."""
    web.client.cookies.clear()
    r = web.client.get("/api/atlas/vulnerabilities", params={"commodity": "rare_earths"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    h = web.h(OBSERVER)
    r = web.client.get("/api/atlas/vulnerabilities", params={"commodity": "rare_earths"}, headers=h)
    assert r.status_code == 200, r.text
    rows = r.json()
    assert [x["stage"] for x in rows] == ["mine", "refine", "metal"][: len(rows)] and len(rows) >= 2
    for x in rows:
        assert set(x) == VULN_COLUMNS
        assert x["commodity_id"] == "rare_earths" and x["name"] == "Rare earths"
        assert all(0 <= x[k] <= 1 for k in SHARE_COLUMNS), x
        assert 0 < x["hhi"] <= 10_000 and 0 <= x["hhi_wgi"] <= 10 and x["n_countries"] >= 1
        assert x["top_share"] <= x["top3_share"] <= x["coverage"] + 1e-9
    refine = next(x for x in rows if x["stage"] == "refine")
    assert refine["top_country"] == "CHN" and refine["top_share"] == pytest.approx(0.9128, abs=1e-4)
    # the chokepoint is the stage the priority ranking (critmin method, BLOC) names
    ranked = web.client.get("/api/minerals/priority", params={"top": 200}, headers=h).json()
    choke = next(m["chokepoint_stage"] for m in ranked if m["commodity"] == "rare_earths")
    # (always one of the commodity's own stages: the magnets downstream are a commodity of their own)
    assert choke == "refine" and [x["stage"] for x in rows if x["chokepoint"]] == [choke]
    # all nodes: one row per node with country shares
    every = web.client.get("/api/atlas/vulnerabilities", headers=h).json()
    nodes = web.client.get("/api/atlas/nodes", headers=h).json()
    assert {(x["commodity_id"], x["stage"]) for x in every} == {(n["commodity"], n["stage"]) for n in nodes}
    assert all(0 <= x[k] <= 1 for x in every for k in SHARE_COLUMNS)
    # a commodity of the atlas without country shares has no rows; one the atlas does not know is 404
    assert web.client.get("/api/atlas/vulnerabilities", params={"commodity": "thorium"}, headers=h).json() == []
    r = web.client.get("/api/atlas/vulnerabilities", params={"commodity": "unobtainium"}, headers=h)
    assert r.status_code == 404 and "unobtainium" in r.json()["detail"]
    r = web.client.get("/api/atlas/vulnerabilities", params={"commodity": "x" * 61}, headers=h)
    assert r.status_code == 422 and fields(r) == ["query.commodity"]
    r = web.client.get("/api/atlas/vulnerabilities", params={"comodity": "rare_earths"}, headers=h)
    assert r.status_code == 422 and fields(r) == ["query.comodity"]


def test_chain_nodes(web) -> None:
    """GET /api/chains/{id}/nodes: the chain's (commodity, stage) nodes from its links, upstream first."""
    web.client.cookies.clear()
    assert web.client.get("/api/chains/rare_earth_magnets/nodes").status_code == 401
    h = web.h(OBSERVER)
    r = web.client.get("/api/chains/rare_earth_magnets/nodes", headers=h)
    assert r.status_code == 200, r.text
    got = [(n["commodity"], n["stage"], n["step"]) for n in r.json()]
    assert ("rare_earths", "mine", 0) in got and ("rare_earths", "refine", 1) in got and got[-1] == ("ndfeb_magnets", "magnet", 3)
    assert [x[2] for x in got] == sorted(x[2] for x in got) and ("dysprosium", "refine", 1) in got
    batteries = web.client.get("/api/chains/batteries/nodes", headers=h).json()
    assert batteries[-1]["commodity"] == "battery_cells" and [n["step"] for n in batteries] == sorted(n["step"] for n in batteries)
    links = web.app.state.ws.atlas.chain_links
    links = links[links["chain_id"] == "batteries"]
    assert {(n["commodity"], n["stage"]) for n in batteries} == (set(zip(links["from_commodity"], links["from_stage"], strict=True))
                                                                 | set(zip(links["to_commodity"], links["to_stage"], strict=True)))
    assert web.client.get("/api/chains/no_such_chain/nodes", headers=h).status_code == 404
    r = web.client.get("/api/chains/batteries/nodes", params={"step": 1}, headers=h)
    assert r.status_code == 422 and fields(r) == ["query.step"]


def test_a_run_reads_the_records_as_they_were_when_it_was_started(web) -> None:
    """Records created while a run waits in the queue are not in it: its digest, its confidentiality and its
    result describe the same snapshot (a confidential need created afterwards cannot leak into a public run)."""
    import json
    import time

    h = web.h(ACME)
    blocker = web.client.post("/api/runs", json={"kind": "risk", "params": {"draws": 5000}}, headers=h).json()
    t0 = time.monotonic()
    while web.client.get(f"/api/runs/{blocker['id']}", headers=h).json()["status"] != "running":
        assert time.monotonic() - t0 < 60
        time.sleep(0.05)
    queued = web.client.post("/api/runs", json={"kind": "deliver", "params": {"as_of": "2026-01"}}, headers=h).json()
    assert queued["status"] == "queued" and queued["confidential"] is False
    secret = web.client.post("/api/needs", json={"data": record("need", "SECRET-NEED-1"), "confidential": True}, headers=h)
    assert secret.status_code == 201
    web.client.post(f"/api/runs/{blocker['id']}/cancel", headers=h)
    assert web.wait(ACME, queued["id"])["status"] == "done"
    seen_by_beta = web.client.get(f"/api/runs/{queued['id']}/result", headers=web.h(BETA))
    assert seen_by_beta.status_code == 200 and "SECRET-NEED-1" not in json.dumps(seen_by_beta.json())


def test_an_offer_delivers_from_its_stated_month(web) -> None:
    """An offer available from a later month delivers from that month on (no construction delay added)."""
    h = web.h(ACME)
    offer = record("offer", "LATER-OFFER-1", volume_t_per_year=1200.0, available_from="2026-04")
    assert web.client.post("/api/offers", json={"data": offer}, headers=h).status_code == 201
    need = record("need", "BIG-NEED-1", demand_t_per_year=1e6)
    assert web.client.post("/api/needs", json={"data": need}, headers=h).status_code == 201
    run = web.client.post("/api/runs", json={"kind": "deliver", "params": {"as_of": "2026-01", "months": 6}}, headers=h).json()
    assert web.wait(ACME, run["id"])["status"] == "done"
    alloc = [a for a in web.client.get(f"/api/runs/{run['id']}/result", headers=h).json()["result"]["allocation"] if a["project_id"] == "LATER-OFFER-1"]
    assert alloc and min(a["month"] for a in alloc) == 4  # 2026-01 is month 1, 2026-04 month 4
    assert sum(a["tonnes"] for a in alloc) == pytest.approx(1200.0 / 12 * 3)


def test_atlas_reads_belong_to_their_workspace() -> None:
    """Two workspaces with different atlases in one process answer from their own atlas (the caches were
    module-level, keyed by id(atlas), which a new atlas can reuse)."""
    import asyncio
    import json
    from types import SimpleNamespace

    import pandas as pd

    from critmin.web.reads import AtlasReads

    def sim_with(chains: list[str]) -> SimpleNamespace:
        return SimpleNamespace(atlas=SimpleNamespace(chain_links=pd.DataFrame({"chain_id": chains})))

    sim_one, sim_two = sim_with(["magnets", "batteries"]), sim_with(["catalysts"])
    one, two = AtlasReads(lambda: sim_one), AtlasReads(lambda: sim_two)
    answers = [json.loads(bytes(asyncio.run(r.answer(("chains",), r.chains)).body)) for r in (one, two, one)]
    assert answers == [["batteries", "magnets"], ["catalysts"], ["batteries", "magnets"]]
    assert one.chain_nodes("catalysts") == [] and one.sankey("catalysts") is None  # not a chain of the first atlas


def test_study_download_edit_upload_and_plan(web):
    """Issue 12: the workspace downloads and uploads the same study as `critmin study init` writes; an uploaded
    study runs the plan on its own inputs, and a bad one is refused before anything is queued."""
    import io
    import zipfile

    import yaml

    if web.app.state.ws.db.backend != "sqlite":
        pytest.skip("the plan is the heaviest job; its database work is that of the lighter kinds")
    r = web.client.get("/api/study.zip", headers=web.h(GOV))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(z.namelist())
    assert {"study.yaml", "register/projects.csv", "register/support.csv", "buyers.csv", "budgets.csv", "blocs.csv", "params.csv"} <= names
    assert z.read("register/projects.csv").decode().count("\n") == BUNDLED_PROJECTS + 1
    spec = yaml.safe_load(z.read("study.yaml"))
    spec.update({"draws": 60, "seed": 5, "critical_lists": {"USA": ["antimony", "gallium"]}})

    def zipped(study: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as out:
            for n in names:
                out.writestr(n, yaml.safe_dump(study) if n == "study.yaml" else z.read(n))
        return buf.getvalue()

    r = web.client.post("/api/study/plan", params={"filename": "mine.zip"}, content=zipped(spec), headers=web.h(GOV))
    assert r.status_code == 202, r.text
    j = web.wait(GOV, r.json()["id"], 300)
    assert j["status"] == "done", j
    assert j["confidential"] is True and j["params"]["study"] == "mine.zip"
    res = _result(web, GOV, j["id"])["result"]
    assert res["metadata"]["study"]["critical_lists"]["USA"] == ["antimony", "gallium"] and res["metadata"]["seed"] == 5
    assert res["summary"]["sentences"]["priorities"]
    assert {r["commodity"] for r in res["stockpiles"]["stockpiles"] if r["participant"] == "USA"} <= {"antimony", "gallium"}
    pdf = web.client.get(f"/api/runs/{j['id']}/files/plan.pdf", headers=web.h(GOV))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    # refused at once, naming the field: nothing queued
    before = web.client.get("/api/runs", headers=web.h(GOV)).json()["total"]
    bad = web.client.post("/api/study/plan", params={"filename": "bad.zip"}, content=zipped({**spec, "draws": 3}), headers=web.h(GOV))
    assert bad.status_code == 422 and "draws" in bad.text
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as out:
        out.writestr("../study.yaml", "draws: 60\n")
    assert web.client.post("/api/study/plan", content=evil.getvalue(), headers=web.h(GOV)).status_code == 422
    assert web.client.post("/api/study/plan", content=b"not a zip", headers=web.h(GOV)).status_code == 422
    assert web.client.get("/api/runs", headers=web.h(GOV)).json()["total"] == before


# ------------------------------------------------------------------------------------------------ input rules (issue 14)
HOSTILE = {
    "lone surrogate": '"x\\ud800y"',
    "control character": '"a\\u0001b"',
    "NUL": '"a\\u0000b"',
    "integer 2^63": "9223372036854775808",
}


@pytest.mark.parametrize("kind", list(PLURAL))
@pytest.mark.parametrize("what", list(HOSTILE))
def test_hostile_values_are_refused_at_the_boundary_and_nothing_is_stored(web, kind, what):
    """Issue 14 findings 1, 3 and 5: a lone surrogate, a control character or an integer beyond int64 was
    stored and then broke list endpoints and exports for every organisation. Now 422 naming the field,
    nothing stored, every list and export still answering."""
    h = {**web.h(ACME), "content-type": "application/json"}
    base = record(kind, "HOSTILE-1")
    field = {"project": "name", "need": "name", "offer": "product", "scenario": "title"}[kind]
    body = json.dumps({"data": base})
    value = HOSTILE[what]
    # put the raw JSON token in place of the field's value (a lone surrogate cannot pass through json.dumps)
    raw = body.replace(json.dumps(base[field]) if field in base else '"@@"', value, 1) if field in base else \
        body[:-2] + f', "{field}": {value}' + "}}"
    before = web.client.get(f"/api/{PLURAL[kind]}", headers=web.h(ACME)).json()["total"]
    r = web.client.post(f"/api/{PLURAL[kind]}", content=raw.encode(), headers=h)
    assert r.status_code == 422, (what, r.status_code, r.text)
    assert field in r.text or "data" in r.text
    for who in (ACME, BETA, GOV):
        assert web.client.get(f"/api/{PLURAL[kind]}", headers=web.h(who)).status_code == 200
    assert web.client.get(f"/api/{PLURAL[kind]}", headers=web.h(ACME)).json()["total"] == before
    assert web.client.get("/api/projects/export.xlsx", headers=web.h(GOV)).status_code == 200
    # the same value in a run's inline scenario title is refused before anything is queued
    r = web.client.post("/api/runs", content=('{"kind": "simulate", "params": {"scenario": {"id": "h", "title": ' + value +
                                              ', "commodity": "gallium", "stage": "refine", "restrictors": ["CHN"], "targets": ["JPN"],'
                                              ' "duration_months": 3}}}').encode(), headers=h)
    assert r.status_code == 422, r.text
    assert web.client.get("/api/runs", headers=web.h(GOV)).status_code == 200
    assert web.client.get("/api/audit", headers=web.h(GOV)).status_code == 200


def test_offsets_beyond_int64_and_hostile_imports_answer_422(web):
    for path in ("/api/runs", "/api/audit", "/api/projects", "/api/scenarios/library"):
        r = web.client.get(path, params={"offset": 2**63}, headers=web.h(GOV))
        assert r.status_code == 422, (path, r.text)
    import csv
    import io

    from critmin.portfolio.register_schema import PROJECT_COLUMNS

    cols = [c.name for c in PROJECT_COLUMNS]
    for over, what in (({"name": "a\x00b"}, "U+0000"), ({"name": "a\x01b"}, "U+0001"), ({"ramp_up_months": "9223372036854775808"}, "outside the range")):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        w.writerow({c: "" for c in cols} | {"project_id": "HX-1", "name": "n", "sponsor": "s", "country_iso3": "AUS", "commodity_id": "graphite",
                                            "stage": "mine", "status_class": "operating", "capacity_t": "10", "sources": "src"} | over)
        r = web.client.post("/api/projects/import", params={"filename": "p.csv"}, content=buf.getvalue().encode(), headers=web.h(ACME))
        assert r.status_code == 422 and what in r.text, r.text
    assert web.client.get("/api/projects/export.xlsx", headers=web.h(GOV)).status_code == 200


def test_other_organisations_see_the_organisation_not_the_person(web):
    """Issue 14: GET /api/runs showed other organisations' user emails."""
    j = run(web, GOV, "deliver", {"months": 2, "as_of": "2026-01"})
    mine = web.client.get(f"/api/runs/{j['id']}", headers=web.h(GOV)).json()
    theirs = web.client.get(f"/api/runs/{j['id']}", headers=web.h(ACME)).json()
    assert mine["user"] == GOV and theirs["user"] == "" and theirs["org"] == "US Department of Energy"
    listed = {x["id"]: x for x in web.client.get("/api/runs", headers=web.h(ACME)).json()["items"]}
    assert listed[j["id"]]["user"] == ""
    assert GOV not in web.client.get(f"/api/runs/{j['id']}/result", headers=web.h(ACME)).text.split('"result"')[0]


def test_login_limiter_cannot_lock_the_owner_out_and_stays_bounded():
    """Issue 14 finding 6: five wrong passwords from one address locked the account for its owner elsewhere,
    and 300 k unique names grew the limiter without bound."""
    from critmin.web.security import ACCOUNT_FAILURES, LoginLimiter

    lim = LoginLimiter(failures=5, window_s=60, max_keys=1000)

    def keys(ip: str, user: str) -> tuple[str, str, str]:
        return f"u:{ip}|{user}", f"ip:{ip}", f"acct:{user}"

    for _ in range(5):
        assert lim.attempt(*keys("203.0.113.5", "ann@x.org"))[0] == 0
    assert lim.retry_after(*keys("203.0.113.5", "ann@x.org")) > 0  # the guesser is throttled
    assert lim.retry_after(*keys("198.51.100.7", "ann@x.org")) == 0  # the owner elsewhere is not locked out
    # guesses spread over many addresses are throttled per account, at a higher bound
    for i in range(ACCOUNT_FAILURES):
        lim.attempt(*keys(f"10.0.{i // 250}.{i % 250}", "bob@x.org"))
    assert lim.retry_after(*keys("192.0.2.1", "bob@x.org")) > 0
    for i in range(5000):
        lim.attempt(*keys("192.0.2.9", f"user{i}@x.org"))
    assert len(lim) <= 1000


def test_bodies_are_not_read_before_authentication_and_are_bounded(web):
    """Issue 14 finding 6: bodies were read whole before the 401 (four 512 MiB bodies took 3.5 GB)."""
    from critmin.web.app import MAX_BODY_BYTES

    big = b"x" * (MAX_BODY_BYTES + 1)
    r = web.client.post("/api/projects", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 401 and "sign in" in r.json()["detail"]
    r = web.client.post("/api/projects/import", params={"filename": "p.csv"}, content=big, headers=web.h(ACME))
    assert r.status_code == 413
    assert web.client.post("/api/auth/login", json={"username": ACME, "password": PASSWORD}).status_code == 200
    assert web.client.get("/api/health").status_code == 200


def test_delete_own_finished_runs(web):
    """Issue 14: a way to delete one's own runs, audited."""
    j = run(web, GOV, "deliver", {"months": 2, "as_of": "2026-02"})
    assert web.client.delete(f"/api/runs/{j['id']}", headers=web.h(ACME)).status_code in (403, 404)  # not theirs
    assert web.client.delete(f"/api/runs/{j['id']}", headers=web.h(GOV)).status_code == 204
    assert web.client.get(f"/api/runs/{j['id']}", headers=web.h(GOV)).status_code == 404
    assert web.client.delete(f"/api/runs/{j['id']}", headers=web.h(GOV)).status_code == 404
    assert any(a["action"] == "delete" and a["target_kind"] == "run" and a["target_key"] == str(j["id"]) for a in audit(web, GOV))
    assert web.client.get("/api/runs", headers=web.h(GOV)).status_code == 200


# ------------------------------------------------------------------------------------------------ quotas (issue 14)
def test_quotas_on_records_comments_and_runs(web):
    """Issue 14 finding 7: one company imported ~32 k projects and started a plan that held the server for
    20 minutes. Each organisation now holds at most ``max_records`` records of a kind (and comments) and has
    at most ``max_active`` runs queued or running: past them 403 / 429 naming the quota, nothing stored or
    queued; other organisations are not affected."""
    import csv

    from critmin.portfolio.register_schema import PROJECT_COLUMNS

    ws, runner = web.app.state.ws, web.app.state.runner
    held = len([p for p in web.client.get("/api/projects?limit=1000", headers=web.h(ACME)).json()["items"] if p["org"] == "Acme Rare Earths"])
    ws.max_records = held + 2
    create(web, ACME, "project", "Q-1")
    before = web.client.get("/api/projects", headers=web.h(ACME)).json()["total"]
    # a file of two new projects would pass the quota: refused whole
    cols = [c.name for c in PROJECT_COLUMNS]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for key in ("Q-2", "Q-3"):
        w.writerow({c: "" for c in cols} | {"project_id": key, "name": "n", "sponsor": "s", "country_iso3": "AUS", "commodity_id": "graphite",
                                            "stage": "mine", "status_class": "operating", "capacity_t": "10", "sources": "src"})
    r = web.client.post("/api/projects/import", params={"filename": "p.csv"}, content=buf.getvalue().encode(), headers=web.h(ACME))
    assert r.status_code == 403 and "quota" in r.text and "--max-records" in r.text, r.text
    assert web.client.get("/api/projects", headers=web.h(ACME)).json()["total"] == before
    create(web, ACME, "project", "Q-2")  # the last one allowed
    r = web.client.post("/api/projects", json={"data": record("project", "Q-4")}, headers=web.h(ACME))
    assert r.status_code == 403 and "quota" in r.text
    create(web, BETA, "project", "QB-1")  # another organisation is not held by Acme's quota
    # comments: the quota counts the organisation's comments
    ws.max_records = 1
    offer = create(web, ACME, "offer", "QO-1")
    url = f"/api/offers/{offer['id']}/comments"
    assert web.client.post(url, json={"body": "first"}, headers=web.h(ACME)).status_code == 201
    r = web.client.post(url, json={"body": "second"}, headers=web.h(ACME))
    assert r.status_code == 403 and "comments" in r.text
    assert len(web.client.get(url, headers=web.h(ACME)).json()) == 1
    ws.max_records = 5000

    runner.max_active = 1
    first = run(web, GOV, "risk", {"draws": 5000, "seed": 11}, wait=False)
    r = web.client.post("/api/runs", json={"kind": "risk", "params": {"draws": 20, "seed": 12}}, headers=web.h(GOV))
    assert r.status_code == 429 and "--max-runs" in r.text, r.text
    assert web.client.get("/api/runs", headers=web.h(GOV)).json()["total"] == 1
    other = run(web, GOV_JP, "deliver", {"months": 2, "as_of": "2026-01"}, wait=False)  # another organisation: its own quota
    web.client.post(f"/api/runs/{first['id']}/cancel", headers=web.h(GOV))
    assert web.wait(GOV, first["id"])["status"] == "cancelled"
    assert web.wait(GOV_JP, other["id"])["status"] == "done"
    assert run(web, GOV, "risk", {"draws": 20, "seed": 12})["status"] == "done"


def test_runs_on_a_dask_cluster(one_db_url, tmp_path):
    """`critmin serve --jobs dask --dask ADDRESS`: runs execute on the cluster's workers, which build the
    definitions from the WorkerSetup and write the run's outcome to the database themselves."""
    distributed = pytest.importorskip("distributed")
    from fastapi.testclient import TestClient

    from critmin.web.app import create_app
    from critmin.web.db import Database
    from critmin.web.worker import WorkerSetup

    db = Database(one_db_url)
    from critmin.web.workspace import Workspace

    ws = Workspace(db)
    ws.add_user(GOV, "US Department of Energy", "government", PASSWORD)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        app = create_app(db=db, workspace=ws, seed=False, jobs="dask", setup=WorkerSetup(db.url), dask_address=cluster.scheduler_address)
        with TestClient(app, base_url="https://testserver") as client:
            tok = client.post("/api/auth/login", json={"username": GOV, "password": PASSWORD}).json()["access_token"]
            h = {"Authorization": f"Bearer {tok}"}
            r = client.post("/api/runs", json={"kind": "simulate", "params": {"scenario_ids": [LIBRARY_EVENT], "draws": 20, "blocs": {"concern": ["CHN", "RUS"]}}},
                            headers=h)
            assert r.status_code == 202, r.text
            rid = r.json()["id"]
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                j = client.get(f"/api/runs/{rid}", headers=h).json()
                if j["status"] not in ("queued", "running"):
                    break
                time.sleep(0.3)
            assert j["status"] == "done", j
            res = client.get(f"/api/runs/{rid}/result", headers=h).json()["result"]
            assert res["metadata"]["blocs"]["concern"] == ["CHN", "RUS"] and res["scenarios"]
    db.dispose()


class _PicklingExecutor:
    """Executes a job at once in the calling thread after a pickle round trip of its arguments: exactly what
    a worker process receives (tests the hand-over without a process's start-up cost)."""

    def submit(self, fn: Any, *args: Any) -> Any:
        import pickle
        from concurrent.futures import Future

        f: Future[Any] = Future()
        try:
            f.set_result(fn(*pickle.loads(pickle.dumps(args))))
        except BaseException as exc:  # the runner's done-callback reports it
            f.set_exception(exc)
        return f


def test_runs_handed_to_a_worker_give_the_same_results(web, db_url):
    """Issue 14 finding 7: what a run needs travels to a worker (records read at submission, scenarios) or is
    rebuilt there (parameter and bloc overrides, an uploaded study) and gives the result the server's own
    thread gives, for every kind."""
    import io
    import zipfile

    import yaml

    from critmin.web.worker import WorkerSetup

    if web.app.state.ws.db.backend != "sqlite":
        pytest.skip("the hand-over does not depend on the database (workers on PostgreSQL: test_runs_execute_in_worker_processes)")
    runner = web.app.state.runner
    create(web, ACME, "project", "W-1", confidential=True)
    params = {
        "simulate": {"scenario_ids": [LIBRARY_EVENT], "draws": 20, "seed": 3, "blocs": {"concern": ["CHN", "RUS"]},
                     "parameters": [{"name": "max_price_ratio", "value": 2.0}]},
        "respond": {"scenario": record("scenario", "inline-w"), "draws": 20, "as_of": "2026-01"},
        "portfolio": {"draws": 20, "as_of": "2026-01", "budgets": {"US_DFC:any": 5e8}},
        "deliver": {"months": 2, "as_of": "2026-01"},
        "match": {"as_of": "2026-01"},
    }
    here = {k: _result(web, ACME, run(web, ACME, k, p)["id"])["result"] for k, p in params.items()}
    runner.jobs, runner.setup, runner._executor = "process", WorkerSetup(db_url), _PicklingExecutor()
    try:
        # changed seeds would be a new digest; the same parameters would reuse the result: delete those first
        for item in web.client.get("/api/runs", headers=web.h(ACME)).json()["items"]:
            assert web.client.delete(f"/api/runs/{item['id']}", headers=web.h(ACME)).status_code == 204
        there = {k: _result(web, ACME, run(web, ACME, k, p)["id"])["result"] for k, p in params.items()}
        def timeless(x: Any) -> Any:  # the same result but for how long it took
            if isinstance(x, dict):
                return {k: timeless(v) for k, v in x.items() if k not in ("seconds", "solve_seconds", "elapsed_s")}
            return [timeless(v) for v in x] if isinstance(x, list) else x

        for k in params:
            assert timeless(here[k]) == timeless(there[k]), k
        assert there["simulate"]["metadata"]["blocs"]["concern"] == ["CHN", "RUS"]
        # an uploaded study travels as its bytes and is read again by the worker
        z = zipfile.ZipFile(io.BytesIO(web.client.get("/api/study.zip", headers=web.h(GOV)).content))
        spec = yaml.safe_load(z.read("study.yaml"))
        spec.update({"draws": 50, "seed": 5, "critical_lists": {"USA": ["antimony", "gallium"]}})
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as out:
            for n in z.namelist():
                out.writestr(n, yaml.safe_dump(spec) if n == "study.yaml" else z.read(n))
        r = web.client.post("/api/study/plan", params={"filename": "w.zip"}, content=buf.getvalue(), headers=web.h(GOV))
        assert r.status_code == 202, r.text
        res = _result(web, GOV, web.wait(GOV, r.json()["id"])["id"])["result"]
        assert res["metadata"]["study"]["critical_lists"]["USA"] == ["antimony", "gallium"] and res["metadata"]["seed"] == 5
    finally:
        runner.jobs, runner.setup, runner._executor = "thread", None, None
