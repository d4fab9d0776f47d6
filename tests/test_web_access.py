"""Who may read and change what, role by role and organisation by organisation, through the API: confidential
records (and the runs that read them) stay inside their organisation and the organisations they are shared
with; observers change nothing; only the owner sets confidentiality and sharing; government curates public
records of others; the run cache and the audit log leak nothing across organisations; ended sessions are
refused. One workspace per database for the module (SQLite and PostgreSQL), set up once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from critmin.web import security
from tests.conftest import PASSWORD, USERS, WebClient, cheap_argon2, make_app, module_db_url

GOV, GOV_JP, AGENCY, PARTNER, ACME, ACME2, BETA, OBSERVER = (u[0] for u in USERS)
ORG = {email: org for email, org, _ in USERS}
PLURAL = {"project": "projects", "need": "needs", "offer": "offers", "scenario": "scenarios"}
KINDS = list(PLURAL)
#: Acme's confidential records are shared with DFC (the agency): readable by these users ...
CAN_READ_CONF = [ACME, ACME2, AGENCY]
#: ... and by nobody else, government included.
CANNOT_READ_CONF = [GOV, GOV_JP, PARTNER, BETA, OBSERVER]
BUNDLED_PROJECTS = 71
DRAWS = 30


def record(kind: str, key: str, **over: Any) -> dict[str, Any]:
    base: dict[str, dict[str, Any]] = {
        "project": {"project_id": key, "name": f"{key} graphite mine", "sponsor": "Acme Rare Earths", "country_iso3": "AUS", "commodity_id": "graphite",
                    "stage": "mine", "status_class": "financing", "capacity_t": 20000.0, "capex_usd": 3e8, "sources": "company filing"},
        "need": {"buyer_id": key, "name": f"{key} buyer", "country_iso3": "JPN", "commodity_id": "graphite", "stage": "mine", "demand_t_per_year": 500.0},
        "offer": {"offer_id": key, "supplier": f"{key} supplier", "country_iso3": "AUS", "commodity_id": "graphite", "stage": "mine",
                  "volume_t_per_year": 800.0},
        "scenario": {"id": key, "title": f"{key} ban", "commodity": "rare_earths", "stage": "refine", "restrictors": ["CHN"], "targets": ["BLOC"],
                     "duration_months": 6},
    }
    return {**base[kind], **over}


@dataclass
class World:
    web: WebClient
    conf: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> Acme's confidential record (shared with DFC)
    public: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> Acme's public record

    def get(self, who: str, path: str, **params: Any) -> Any:
        return self.web.client.get(path, params=params, headers=self.web.h(who))

    def put(self, who: str, path: str, body: dict[str, Any]) -> Any:
        return self.web.client.put(path, json=body, headers=self.web.h(who))

    def post(self, who: str, path: str, body: dict[str, Any]) -> Any:
        return self.web.client.post(path, json=body, headers=self.web.h(who))

    def delete(self, who: str, path: str, version: int) -> Any:
        return self.web.client.delete(path, params={"version": version}, headers=self.web.h(who))

    def create(self, who: str, kind: str, key: str, confidential: bool = False, shared_with: list[str] | None = None, **over: Any) -> dict[str, Any]:
        r = self.post(who, f"/api/{PLURAL[kind]}", {"data": record(kind, key, **over), "confidential": confidential, "shared_with": shared_with or []})
        assert r.status_code == 201, r.text
        return r.json()

    def run(self, who: str, kind: str, params: dict[str, Any], wait: bool = True) -> dict[str, Any]:
        r = self.post(who, "/api/runs", {"kind": kind, "params": params})
        assert r.status_code == 202, r.text
        return self.web.wait(who, r.json()["id"]) if wait else r.json()

    def keys(self, who: str, kind: str) -> set[str]:
        r = self.get(who, f"/api/{PLURAL[kind]}", limit=5000)
        assert r.status_code == 200
        return {x["key"] for x in r.json()["items"]}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def acl(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, simulator: Any) -> Any:
    """A workspace with Acme's records of every kind: one confidential (shared with DFC) and one public each,
    the confidential ones with a comment."""
    from fastapi.testclient import TestClient

    url = module_db_url(request.param, tmp_path_factory, "acl")
    with pytest.MonkeyPatch.context() as mp:
        cheap_argon2(mp)
        app = make_app(url, simulator)
        with TestClient(app, base_url="https://testserver") as client:
            w = World(WebClient(client, app))
            for kind in KINDS:
                w.conf[kind] = w.create(ACME, kind, f"ACME-CONF-{kind[0].upper()}", confidential=True, shared_with=["DFC"])
                w.post(ACME, f"/api/{PLURAL[kind]}/{w.conf[kind]['id']}/comments", {"body": f"internal note on {kind}"})
                w.public[kind] = w.create(ACME, kind, f"ACME-PUB-{kind[0].upper()}")
            yield w
        app.state.ws.db.dispose()


def _url(w: World, kind: str, which: str = "conf") -> str:
    rec = (w.conf if which == "conf" else w.public)[kind]
    return f"/api/{PLURAL[kind]}/{rec['id']}"


# ------------------------------------------------------------------------------------------------ confidential records
@pytest.mark.parametrize("who", CANNOT_READ_CONF)
@pytest.mark.parametrize("kind", KINDS)
def test_confidential_record_is_invisible_to_other_organisations(acl, kind, who):
    rec, url = acl.conf[kind], _url(acl, kind)
    assert rec["key"] not in acl.keys(who, kind)
    assert acl.public[kind]["key"] in acl.keys(who, kind)  # Acme's public record is there
    assert acl.get(who, f"/api/{PLURAL[kind]}", q="ACME-CONF").json() == {"total": 0, "items": []}
    assert acl.get(who, f"/api/{PLURAL[kind]}", q=rec["data"].get("name") or rec["data"].get("title") or rec["data"].get("supplier")).json()["total"] == 0
    # answered exactly as for an id that does not exist: the record's existence is not disclosed
    missing = acl.get(who, f"/api/{PLURAL[kind]}/999999")
    r = acl.get(who, url)
    assert r.status_code == 404 and r.json()["detail"] == missing.json()["detail"].replace("999999", str(rec["id"]))
    assert "ACME" not in r.text
    assert acl.get(who, f"{url}/comments").status_code == 404
    assert acl.post(who, f"{url}/comments", {"body": "hello"}).status_code == (403 if who == OBSERVER else 404)
    assert acl.put(who, url, {"version": 1, "data": record(kind, rec["key"], note="x")}).status_code == 404
    assert acl.put(who, url, {"version": 1, "confidential": False}).status_code == 404
    assert acl.delete(who, url, 1).status_code == 404
    assert acl.get(ACME, url).json()["version"] == 1  # nothing changed
    if kind == "need":
        assert all("ACME-CONF" not in b["name"] for b in acl.get(who, "/api/buyers").json())


@pytest.mark.parametrize("who", CAN_READ_CONF)
@pytest.mark.parametrize("kind", KINDS)
def test_confidential_record_is_visible_to_its_organisation_and_those_it_is_shared_with(acl, kind, who):
    rec, url = acl.conf[kind], _url(acl, kind)
    assert rec["key"] in acl.keys(who, kind)
    got = acl.get(who, url).json()
    assert got["data"] == rec["data"] and got["confidential"] is True and got["org"] == "Acme Rare Earths"
    owner = ORG[who] == "Acme Rare Earths"
    assert got["shared_with"] == (["DFC"] if owner else [])  # whom a record is shared with is the owner's business
    assert got["can_edit"] is owner
    assert [c["body"] for c in acl.get(who, f"{url}/comments").json()] == [f"internal note on {kind}"]
    if not owner:  # DFC reads but does not change it
        assert acl.put(who, url, {"version": got["version"], "data": record(kind, rec["key"], note="x")}).status_code == 403
        assert acl.put(who, url, {"version": got["version"], "shared_with": ["DFC", "Beta Graphite"]}).status_code == 403
        assert acl.delete(who, url, got["version"]).status_code == 403
        assert acl.get(ACME, url).json()["version"] == got["version"]


@pytest.mark.parametrize("kind", KINDS)
def test_only_the_owner_sets_confidentiality_and_sharing(acl, kind):
    rec = acl.create(ACME, kind, f"ACME-SHARE-{kind[0].upper()}", confidential=True)
    url = f"/api/{PLURAL[kind]}/{rec['id']}"
    assert rec["key"] not in acl.keys(AGENCY, kind) and rec["key"] not in acl.keys(BETA, kind)
    # the owner's other user shares it with Beta: Beta now reads it, a third organisation still does not
    r = acl.put(ACME2, url, {"version": 1, "shared_with": ["Beta Graphite"]})
    assert r.status_code == 200 and r.json()["shared_with"] == ["Beta Graphite"] and r.json()["version"] == 2
    assert acl.get(BETA, url).status_code == 200 and rec["key"] in acl.keys(BETA, kind)
    for third in (AGENCY, GOV, PARTNER):
        assert acl.get(third, url).status_code == 404
    # Beta may not pass it on, nor make it public
    assert acl.put(BETA, url, {"version": 2, "shared_with": ["Beta Graphite", "DFC"]}).status_code == 403
    assert acl.put(BETA, url, {"version": 2, "confidential": False}).status_code == 403
    assert acl.get(AGENCY, url).status_code == 404
    # unsharing takes effect at once
    assert acl.put(ACME, url, {"version": 2, "shared_with": []}).status_code == 200
    assert acl.get(BETA, url).status_code == 404
    # made public: everyone reads it; government may now edit it but not make it confidential again
    assert acl.put(ACME, url, {"version": 3, "confidential": False}).status_code == 200
    assert acl.get(OBSERVER, url).status_code == 200
    assert acl.put(GOV, url, {"version": 4, "confidential": True}).status_code == 403
    assert acl.put(GOV, url, {"version": 4, "shared_with": ["METI Japan"]}).status_code == 403
    assert acl.get(ACME, url).json()["version"] == 4
    audit = [(a["action"], a["target_key"], a["detail"].get("shared_with"), a["detail"].get("confidential")) for a in acl.get(ACME, "/api/audit").json()["items"]]
    assert ("update", rec["key"], ["Beta Graphite"], None) in audit and ("update", rec["key"], None, False) in audit


@pytest.mark.parametrize("who,code", [(GOV, 200), (GOV_JP, 200), (AGENCY, 403), (PARTNER, 403), (BETA, 403), (OBSERVER, 403), (ACME2, 200)])
def test_editing_another_organisations_public_record(acl, who, code):
    """Government curates the shared register (edits public records of anyone); other organisations may not."""
    rec = acl.create(ACME, "need", f"ACME-EDIT-{who.split('@')[0]}-{who.split('@')[1][:3]}")
    url = f"/api/needs/{rec['id']}"
    r = acl.put(who, url, {"version": 1, "data": record("need", rec["key"], demand_t_per_year=999.0)})
    assert r.status_code == code, r.text
    now = acl.get(ACME, url).json()
    assert now["data"]["demand_t_per_year"] == (999.0 if code == 200 else 500.0) and now["version"] == (2 if code == 200 else 1)
    assert now["org"] == "Acme Rare Earths"  # an edit does not change the owner
    assert acl.get(who, url).json()["can_edit"] is (code == 200)
    if code == 403:
        assert acl.delete(who, url, now["version"]).status_code == 403
    else:
        entry = next(a for a in acl.get(who, "/api/audit").json()["items"] if a["action"] == "update" and a["target_key"] == rec["key"])
        assert entry["user"] == who and entry["detail"]["fields"] == ["demand_t_per_year"]


def test_government_cannot_edit_a_confidential_record_shared_with_it(acl):
    rec = acl.create(ACME, "project", "ACME-GOV-SHARED", confidential=True, shared_with=["US Department of Energy"])
    url = f"/api/projects/{rec['id']}"
    got = acl.get(GOV, url)
    assert got.status_code == 200 and got.json()["can_edit"] is False
    assert acl.put(GOV, url, {"version": 1, "data": record("project", "ACME-GOV-SHARED", capacity_t=1.0)}).status_code == 403
    assert acl.delete(GOV, url, 1).status_code == 403
    assert acl.get(GOV_JP, url).status_code == 404  # another government is a third organisation
    assert acl.get(ACME, url).json()["version"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_observer_reads_public_records_and_changes_nothing(acl, kind):
    pub, url = acl.public[kind], _url(acl, kind, "public")
    assert acl.get(OBSERVER, url).json()["data"] == pub["data"]
    assert acl.get(OBSERVER, url).json()["can_edit"] is False
    assert acl.get(OBSERVER, f"{url}/comments").status_code == 200
    assert pub["key"] in acl.keys(OBSERVER, kind)
    r = acl.post(OBSERVER, f"/api/{PLURAL[kind]}", {"data": record(kind, f"OBS-{kind}")})
    assert r.status_code == 403 and "observer" in r.json()["detail"]
    now = acl.get(ACME, url).json()
    assert acl.put(OBSERVER, url, {"version": now["version"], "data": record(kind, pub["key"], note="x")}).status_code == 403
    assert acl.put(OBSERVER, url, {"version": now["version"], "confidential": True}).status_code == 403
    assert acl.delete(OBSERVER, url, now["version"]).status_code == 403
    assert acl.post(OBSERVER, f"{url}/comments", {"body": "I was here"}).status_code == 403
    assert acl.get(ACME, url).json() == now
    assert f"OBS-{kind}" not in acl.keys(GOV, kind)
    assert all("I was here" != c["body"] for c in acl.get(ACME, f"{url}/comments").json())


@pytest.mark.parametrize("kind", ["simulate", "risk", "portfolio", "stockpile", "deliver", "match", "plan"])
def test_observer_cannot_run(acl, kind):
    params = {"scenario_ids": ["ev.E001.rare_earths.refine"]} if kind == "simulate" else {}
    before = acl.get(GOV, "/api/runs").json()["total"]
    r = acl.post(OBSERVER, "/api/runs", {"kind": kind, "params": params})
    assert r.status_code == 403 and "observer" in r.json()["detail"]
    assert acl.get(GOV, "/api/runs").json()["total"] == before


# ------------------------------------------------------------------------------------------------ runs
def test_runs_that_read_confidential_records_are_confidential(acl):
    mine = acl.run(ACME, "deliver", {"as_of": "2026-01"})
    assert mine["status"] == "done" and mine["confidential"] is True
    public = acl.run(GOV_JP, "deliver", {"as_of": "2026-01"})  # METI Japan reads no confidential record
    assert public["status"] == "done" and public["confidential"] is False
    assert public["inputs_sha256"] != mine["inputs_sha256"] and public["cached_from"] is None
    rid = mine["id"]
    for who in CANNOT_READ_CONF + [AGENCY]:  # a run belongs to the organisation that ran it, even for a reader it was shared with
        for path in (f"/api/runs/{rid}", f"/api/runs/{rid}/result", f"/api/runs/{rid}/files/plan.json"):
            assert acl.get(who, path).status_code == 404, (who, path)
        assert acl.post(who, f"/api/runs/{rid}/cancel", {}).status_code == 404
        ids = {x["id"] for x in acl.get(who, "/api/runs", limit=1000).json()["items"]}
        assert rid not in ids and public["id"] in ids
        assert "ACME-CONF" not in json.dumps(acl.get(who, f"/api/runs/{public['id']}/result").json())
    assert acl.get(ACME2, f"/api/runs/{rid}/result").status_code == 200
    res = json.dumps(acl.get(ACME, f"/api/runs/{rid}/result").json())
    assert "ACME-CONF-N" in res  # Acme's own run planned its confidential need
    # the observer reads public runs
    assert acl.get(OBSERVER, f"/api/runs/{public['id']}/result").status_code == 200


def test_confidential_simulation_is_confidential(acl):
    sid = acl.conf["scenario"]["key"]
    mine = acl.run(ACME, "simulate", {"scenario_ids": [sid], "draws": DRAWS})
    assert mine["status"] == "done" and mine["confidential"] is True
    lib = acl.run(ACME, "simulate", {"scenario_ids": ["ev.E001.rare_earths.refine"], "draws": DRAWS})
    assert lib["confidential"] is False  # a run of public scenarios only is public, whoever runs it
    assert acl.get(BETA, f"/api/runs/{lib['id']}").status_code == 200
    for who in CANNOT_READ_CONF:
        assert acl.get(who, f"/api/runs/{mine['id']}/result").status_code == 404
        r = acl.post(who, "/api/runs", {"kind": "simulate", "params": {"scenario_ids": [sid], "draws": DRAWS}})
        if who == OBSERVER:
            assert r.status_code == 403
        else:  # an unknown scenario to them
            assert r.status_code == 422
            assert r.json()["problems"] == [{"field": "params.scenario_ids", "message": f"unknown scenario '{sid}'"}]


def test_cache_never_serves_a_confidential_result_to_another_organisation(acl):
    sid = acl.conf["scenario"]["key"]  # shared with DFC: DFC may simulate it, with the same inputs as Acme
    first = acl.run(ACME, "simulate", {"scenario_ids": [sid], "draws": DRAWS, "seed": 11})
    assert first["status"] == "done" and first["confidential"] is True
    theirs = acl.run(AGENCY, "simulate", {"scenario_ids": [sid], "draws": DRAWS, "seed": 11}, wait=False)
    assert theirs["inputs_sha256"] == first["inputs_sha256"]
    assert theirs["cached_from"] is None and theirs["confidential"] is True
    theirs = acl.web.wait(AGENCY, theirs["id"])
    assert theirs["status"] == "done"
    assert acl.get(ACME, f"/api/runs/{theirs['id']}").status_code == 404  # DFC's run is DFC's
    # within the organisation the stored result is reused
    again = acl.run(ACME2, "simulate", {"scenario_ids": [sid], "draws": DRAWS, "seed": 11}, wait=False)
    assert again["cached_from"] == first["id"]
    # a deliver run: Acme's confidential run is no cache entry for anyone else either
    acme = acl.run(ACME, "deliver", {"as_of": "2026-02"})
    for who in (AGENCY, GOV, BETA):
        other = acl.run(who, "deliver", {"as_of": "2026-02"}, wait=False)
        assert other["cached_from"] != acme["id"]


def test_portfolio_of_another_organisation_leaves_out_confidential_projects(acl):
    if acl.web.app.state.ws.db.backend != "sqlite":
        pytest.skip("portfolio solves run on SQLite only (the database work is that of the deliver runs above)")
    theirs = acl.run(GOV_JP, "portfolio", {"draws": DRAWS, "as_of": "2026-01"})  # METI Japan reads no confidential record
    mine = acl.run(ACME, "portfolio", {"draws": DRAWS, "as_of": "2026-01"})
    assert theirs["status"] == mine["status"] == "done"
    assert (theirs["confidential"], mine["confidential"]) == (False, True)
    gov_res = acl.get(GOV_JP, f"/api/runs/{theirs['id']}/result").json()["result"]
    acme_res = acl.get(ACME, f"/api/runs/{mine['id']}/result").json()["result"]
    n_gov, n_acme = gov_res["metadata"]["workspace_records"]["projects"], acme_res["metadata"]["workspace_records"]["projects"]
    public_projects = acl.get(GOV_JP, "/api/projects").json()["total"]
    assert n_gov == public_projects and n_gov > BUNDLED_PROJECTS
    assert n_acme == acl.get(ACME, "/api/projects").json()["total"] > n_gov
    assert "ACME-CONF-P" not in json.dumps(gov_res)
    assert "ACME-CONF-P" in {p["project_id"] for p in acme_res["projects"]}
    assert "ACME-PUB-P" in {p["project_id"] for p in gov_res["projects"]}


def test_plan_files_of_a_confidential_run(acl):
    if acl.web.app.state.ws.db.backend != "sqlite":
        pytest.skip("plan runs on SQLite only (the heaviest job; its database work is that of the lighter kinds)")
    plan = acl.run(ACME, "plan", {"draws": DRAWS, "as_of": "2026-01", "top": 5})
    assert plan["status"] == "done" and plan["confidential"] is True and "plan.pdf" in plan["files"]
    assert acl.get(ACME2, f"/api/runs/{plan['id']}/files/plan.pdf").content.startswith(b"%PDF")
    for who in CANNOT_READ_CONF + [AGENCY]:
        for name in plan["files"]:
            assert acl.get(who, f"/api/runs/{plan['id']}/files/{name}").status_code == 404
    # the same plan by the government is computed afresh from what it may read
    gov = acl.run(GOV, "plan", {"draws": DRAWS, "as_of": "2026-01", "top": 5}, wait=False)
    assert gov["cached_from"] is None and gov["inputs_sha256"] != plan["inputs_sha256"]
    acl.post(GOV, f"/api/runs/{gov['id']}/cancel", {})
    acl.web.wait(GOV, gov["id"])


# ------------------------------------------------------------------------------------------------ audit and sessions
def test_audit_log_shows_only_the_organisations_own_entries(acl):
    acl.create(BETA, "offer", "BETA-AUDIT-1")
    for who in (GOV, AGENCY, ACME, BETA, OBSERVER):
        items = acl.get(who, "/api/audit", limit=1000).json()["items"]
        assert items, who
        own = {e for e, o in ORG.items() if o == ORG[who]}
        for a in items:  # other organisations' users appear only for what they did to this organisation's records
            if a["user"] not in own | {"command line"}:
                assert a["action"] in ("update", "delete", "comment") and a["org"] != ORG[who], (who, a)
        keys = {a["target_key"] for a in items}
        if ORG[who] != "Acme Rare Earths":
            assert not any(k.startswith("ACME-CONF") for k in keys), who  # (government's own edits of Acme's public records are its entries)
        if who != BETA:
            assert "BETA-AUDIT-1" not in keys
    acme = acl.get(ACME2, "/api/audit", limit=1000).json()["items"]
    assert {(a["user"], a["action"], a["target_key"]) for a in acme} >= {(ACME, "create", f"ACME-CONF-{k[0].upper()}") for k in KINDS}
    assert all(a["action"] != "seed" for a in acme)


def test_owner_sees_changes_others_made_to_its_records(acl):
    """A government user edits and comments on a company's shared record: the company's audit log shows who did it."""
    rec = acl.create(BETA, "offer", "BETA-AUDIT-OWNER")
    r = acl.put(GOV, f"/api/offers/{rec['id']}", {"version": rec["version"], "data": {**rec["data"], "note": "checked by the ministry"}})
    assert r.status_code == 200, r.text
    assert acl.post(GOV, f"/api/offers/{rec['id']}/comments", {"body": "volume confirmed?"}).status_code == 201
    beta = acl.get(BETA, "/api/audit", limit=1000).json()["items"]
    seen = {(a["user"], a["org"], a["action"]) for a in beta if a["target_key"] == "BETA-AUDIT-OWNER"}
    assert seen == {(BETA, ORG[BETA], "create"), (GOV, ORG[GOV], "update"), (GOV, ORG[GOV], "comment")}
    # a third organisation sees none of it
    assert not [a for a in acl.get(ACME, "/api/audit", limit=1000).json()["items"] if a["target_key"] == "BETA-AUDIT-OWNER"]


def test_bogus_expired_and_ended_sessions_are_refused(acl, monkeypatch):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import delete, select, update

    from critmin.web import models as m
    from critmin.web import users

    monkeypatch.setattr(users, "SESSION_CACHE_S", 0.0)  # no in-memory trust: every request asks the database
    ws, client = acl.web.app.state.ws, acl.web.client
    client.cookies.clear()  # no session cookie from the fixture's sign-ins
    for bad in ("Bearer not-a-token", "Bearer ", "Bearer " + "x" * 5000, "bearer\tx", "Token abc"):
        r = client.get("/api/auth/me", headers={"Authorization": bad})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", bad

    def login(email: str) -> dict[str, str]:
        client.cookies.clear()
        r = client.post("/api/auth/login", json={"username": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        client.cookies.clear()
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def digest(h: dict[str, str]) -> str:
        return security.token_digest(h["Authorization"][7:])

    ws.add_user("temp@gamma.example", "Gamma Metals", "company", PASSWORD)
    # a session deleted in the database (e.g. by an administrator)
    h = login("temp@gamma.example")
    assert client.get("/api/auth/me", headers=h).status_code == 200
    with ws.db.session() as s:
        s.execute(delete(m.Session).where(m.Session.token_sha256 == digest(h)))
    assert client.get("/api/auth/me", headers=h).status_code == 401
    # an expired session
    h = login("temp@gamma.example")
    with ws.db.session() as s:
        s.execute(update(m.Session).where(m.Session.token_sha256 == digest(h)).values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    assert client.get("/api/projects", headers=h).status_code == 401
    with ws.db.session() as s:
        assert s.get(m.Session, digest(h)) is None  # cleaned up
    # a deactivated user: the open session stops working and no new one is granted
    h = login("temp@gamma.example")
    with ws.db.session() as s:
        s.execute(update(m.User).where(m.User.email == "temp@gamma.example").values(active=False))
    assert client.get("/api/auth/me", headers=h).status_code == 401
    assert client.post("/api/auth/login", json={"username": "temp@gamma.example", "password": PASSWORD}).status_code == 401
    with ws.db.session() as s:
        assert s.scalar(select(m.User.active).where(m.User.email == "temp@gamma.example")) is False


@pytest.mark.parametrize("who", [BETA, GOV])
def test_import_cannot_reach_a_confidential_project(acl, who):
    """A register import naming another organisation's confidential project id is refused as a taken id (409),
    never merged into it, and tells nothing of its content; the exported workbook holds only what one may read."""
    import io

    import openpyxl

    w = acl
    w.web.client.cookies.clear()
    r = w.get(who, "/api/projects/export.xlsx")
    assert r.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(r.content))
    ws = book["projects"]
    ids = [c.value for c in ws["A"][1:]]
    assert w.conf["project"]["key"] not in ids and w.public["project"]["key"] in ids
    header = [c.value for c in ws[1]]
    row = dict(zip(header, [c.value for c in ws[2]], strict=True)) | {"project_id": w.conf["project"]["key"], "name": "overwrite attempt"}
    ws.append([row[h] for h in header])
    buf = io.BytesIO()
    book.save(buf)
    w.web.client.cookies.clear()
    r = w.web.client.post("/api/projects/import", params={"filename": "x.xlsx"}, content=buf.getvalue(), headers=w.web.h(who))
    assert r.status_code == 409 and [q["message"] for q in r.json()["problems"]] == [f"a project with id '{w.conf['project']['key']}' already exists"]
    assert "internal note" not in r.text and "Test graphite mine" not in r.text
    got = w.get(ACME, f"/api/projects/{w.conf['project']['id']}").json()
    assert got["version"] == w.conf["project"]["version"] and got["data"]["name"] != "overwrite attempt"
