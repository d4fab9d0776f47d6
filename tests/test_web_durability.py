"""A workspace server killed (SIGKILL) in the middle of writes loses no committed data and leaves nothing
half-written; runs it was working on are marked interrupted when it starts again. Real server processes,
real databases (SQLite file and, when configured, PostgreSQL)."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from critmin.web.process import ServerProcess, add_user, critmin_command
from tests.conftest import PASSWORD


def _critmin(*args: str, stdin: str | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    return critmin_command(*args, stdin=stdin, cwd=cwd)


def _critmin_each(calls: list[tuple[tuple[str, ...], str | None]], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """Independent ``critmin`` commands (arguments, stdin) run side by side: each is a fresh interpreter that
    loads the package, so running the refused ones together halves their wall time on two cores."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(lambda c: _critmin(*c[0], stdin=c[1], cwd=cwd), calls))


def _offer(key: str) -> dict:
    return {"data": {"offer_id": key, "supplier": "Durability Test Co", "country_iso3": "AUS", "commodity_id": "lithium",
                     "stage": "refine", "volume_t_per_year": 1000.0}}


def test_kill_during_writes_loses_nothing_committed(db_url: str, tmp_path: Path) -> None:
    email = "writer@durability.example"
    add_user(db_url, email, "Durability Org", "company", PASSWORD, cwd=tmp_path)
    srv = ServerProcess(db_url, cwd=tmp_path, log=tmp_path / "server.log").start()
    tok = httpx.post(srv.base + "/api/auth/login", json={"username": email, "password": PASSWORD}).json()["access_token"]
    h = {"Authorization": f"Bearer {tok}"}
    # one record edited over and over, concurrently with creations
    target = httpx.post(srv.base + "/api/offers", json=_offer("edited"), headers=h).json()
    run = httpx.post(srv.base + "/api/runs", json={"kind": "risk", "params": {"draws": 5000}}, headers=h).json()

    acked: list[str] = []
    acked_updates = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def create(worker: int) -> None:
        with httpx.Client(base_url=srv.base, headers=h, timeout=10) as c:
            for i in range(100_000):
                if stop.is_set():
                    return
                key = f"w{worker}-{i}"
                try:
                    resp = c.post("/api/offers", json=_offer(key))
                except httpx.HTTPError:
                    return  # the server died mid-request: this write may or may not be committed
                if resp.status_code == 201:
                    with lock:
                        acked.append(key)

    def update() -> None:
        with httpx.Client(base_url=srv.base, headers=h, timeout=10) as c:
            version = target["version"]
            while not stop.is_set():
                body = {"version": version, "data": {**_offer("edited")["data"], "volume_t_per_year": 1000.0 + version}}
                try:
                    resp = c.put(f"/api/offers/{target['id']}", json=body)
                except httpx.HTTPError:
                    return
                assert resp.status_code == 200, resp.text
                version = resp.json()["version"]
                acked_updates[0] += 1

    threads = [threading.Thread(target=create, args=(w,)) for w in range(3)] + [threading.Thread(target=update)]
    for t in threads:
        t.start()
    time.sleep(2.5)
    srv.kill()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acked) > 10 and acked_updates[0] > 3, "too few writes before the kill to test anything"

    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    srv2 = ServerProcess(db_url, cwd=tmp_path, log=tmp_path / "server2.log").start()
    try:
        tok = httpx.post(srv2.base + "/api/auth/login", json={"username": email, "password": PASSWORD}).json()["access_token"]
        h = {"Authorization": f"Bearer {tok}"}
        offers = httpx.get(srv2.base + "/api/offers?limit=5000", headers=h).json()["items"]
        keys = {o["key"] for o in offers}
        missing = set(acked) - keys
        assert not missing, f"{len(missing)} acknowledged writes lost"
        # nothing half-written: every stored offer is complete and has its audit entry (same transaction)
        audit = httpx.get(srv2.base + "/api/audit?limit=1000", headers=h).json()["items"]
        while len(audit) < httpx.get(srv2.base + "/api/audit?limit=1", headers=h).json()["total"]:
            audit += httpx.get(srv2.base + f"/api/audit?limit=1000&offset={len(audit)}", headers=h).json()["items"]
        created = {a["target_key"] for a in audit if a["action"] == "create" and a["target_kind"] == "offer"}
        assert keys == created
        for o in offers:
            assert o["data"]["supplier"] == "Durability Test Co" and o["data"]["volume_t_per_year"] > 0
        edited = next(o for o in offers if o["key"] == "edited")
        updates = [a for a in audit if a["action"] == "update" and a["target_key"] == "edited"]
        # an update whose answer was lost in the kill may still be committed, never the other way round
        assert edited["version"] - 1 == len(updates) >= acked_updates[0]
        assert edited["data"]["volume_t_per_year"] == 1000.0 + edited["version"] - 1
        # the run the server was working on is marked interrupted, not left running
        got = httpx.get(srv2.base + f"/api/runs/{run['id']}", headers=h).json()
        assert got["status"] == "interrupted", got
    finally:
        # killed while its worker may still be starting: the worker must not outlive it (it once did, when the
        # server died before the worker had noted its parent)
        import psutil

        assert srv2.proc is not None
        children = psutil.Process(srv2.proc.pid).children(recursive=True)
        srv2.kill()
        _, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, [" ".join(p.cmdline()) for p in alive]


def test_user_add_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    ok = _critmin("user", "add", "Ann@Example.org", "--org", "New Org", "--role", "observer", "--password-stdin", "--database", url,
                  stdin="long enough password\n", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "created user ann@example.org (observer) of organisation 'New Org'" in " ".join(ok.stderr.split())
    # refused additions change nothing, so they run side by side
    again, bad, nopw, short = _critmin_each([
        (("user", "add", "ann@example.org", "--org", "New Org", "--role", "observer", "--password-stdin", "--database", url), "long enough password\n"),
        (("user", "add", "bob@example.org", "--org", "X", "--role", "admin", "--password-stdin", "--database", url), "long enough password\n"),
        (("user", "add", "bob@example.org", "--org", "X", "--role", "company", "--database", url), None),
        (("user", "add", "bob@example.org", "--org", "X", "--role", "company", "--password-stdin", "--database", url), "short\n"),
    ], tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert bad.returncode == 2 and "unknown role 'admin'" in bad.stderr
    assert nopw.returncode == 2 and "--password-stdin" in nopw.stderr
    assert short.returncode == 2 and "at least 8" in short.stderr
    # the password is stored only as an argon2 hash
    with sqlite3.connect(tmp_path / "w.db") as con:
        (h,) = con.execute("SELECT password_hash FROM users WHERE email='ann@example.org'").fetchone()
    assert h.startswith("$argon2id$") and "long enough password" not in h


def test_user_admin_commands(tmp_path: Path) -> None:
    """critmin user list / passwd / disable / enable / role on a workspace file, as an operator runs them."""
    import json

    url = f"sqlite:///{tmp_path / 'w.db'}"
    add_user(url, "ann@example.org", "New Org", "company", "long enough password", cwd=tmp_path)
    add_user(url, "bob@other.example", "Other Org", "agency", "long enough password", cwd=tmp_path)
    listed = _critmin("user", "list", "--format", "json", "--database", url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(u["email"], u["org"], u["role"], u["active"], u["sessions"]) for u in rows] == [
        ("ann@example.org", "New Org", "company", True, 0), ("bob@other.example", "Other Org", "agency", True, 0)]
    table = _critmin("user", "list", "--org", "Other Org", "--database", url, cwd=tmp_path)
    assert table.returncode == 0 and "bob@other.example" in table.stdout and "ann@example.org" not in table.stdout
    r = _critmin("user", "role", "ANN@example.org", "observer", "--database", url, cwd=tmp_path)
    assert r.returncode == 0 and "user ann@example.org (observer, active) of organisation 'New Org': changed" in " ".join(r.stderr.split())
    r = _critmin("user", "disable", "ann@example.org", "--database", url, cwd=tmp_path)
    assert r.returncode == 0 and "(observer, disabled)" in r.stderr
    r = _critmin("user", "passwd", "bob@other.example", "--password-stdin", "--database", url, stdin="a new long password\n", cwd=tmp_path)
    assert r.returncode == 0 and "password of bob@other.example changed; 0 session(s) ended" in " ".join(r.stderr.split())
    refused = ((("role", "ann@example.org", "admin"), None, "unknown role 'admin'"),
               (("disable", "nobody@example.org"), None, "no user 'nobody@example.org'"),
               (("passwd", "bob@other.example"), None, "--password-stdin"),
               (("passwd", "bob@other.example", "--password-stdin"), "short\n", "at least 8"),
               (("list", "--format", "xml"), None, "unknown format 'xml'"))
    outs = _critmin_each([(("user", *args, "--database", url), stdin) for args, stdin, _ in refused], tmp_path)
    for (args, _, message), bad in zip(refused, outs, strict=True):
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
    with sqlite3.connect(tmp_path / "w.db") as con:
        users = dict(con.execute("SELECT email, active FROM users").fetchall())
        log = con.execute("SELECT user_email, action, target_key FROM audit_log WHERE target_kind='user' ORDER BY id").fetchall()
    assert users == {"ann@example.org": 0, "bob@other.example": 1}
    assert [a for _, a, _ in log] == ["create", "create", "update", "update", "password"] and {u for u, _, _ in log} == {"command line"}
    with ServerProcess(url, cwd=tmp_path, extra_args=("--jobs", "thread")) as srv:  # no run: no worker to start
        login = {"ann@example.org": "long enough password", "bob@other.example": "a new long password"}
        codes = {e: httpx.post(srv.base + "/api/auth/login", json={"username": e, "password": pw}).status_code for e, pw in login.items()}
    assert codes == {"ann@example.org": 401, "bob@other.example": 200}


def test_serve_with_its_own_definitions(tmp_path: Path) -> None:
    """critmin serve --params/--blocs/--workers: the files are checked before the server listens (bad ones:
    exit 2 naming the file and line), and every run of the server uses them."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    bad = tmp_path / "bad.csv"
    bad.write_text("name,scope,value\nleakage,*,7\n")
    r = _critmin("serve", "--port", "1", "--database", url, "--params", str(bad), cwd=tmp_path)
    assert r.returncode == 2 and "bad.csv, line 2, field 'value'" in " ".join(r.stderr.split())
    good = tmp_path / "p.csv"
    good.write_text("name,scope,value\nmax_price_ratio,*,1\n")
    blocs = tmp_path / "blocs.csv"
    blocs.write_text("bloc_id,iso3\nconcern,CHN\nconcern,RUS\nconcern,BRA\n")
    add_user(url, "ann@example.org", "New Org", "government", "long enough password", cwd=tmp_path)
    with ServerProcess(url, cwd=tmp_path, extra_args=("--params", str(good), "--blocs", str(blocs), "--workers", "2")) as srv:
        h = {"Authorization": "Bearer " + httpx.post(srv.base + "/api/auth/login", json={"username": "ann@example.org",
                                                                                         "password": "long enough password"}).json()["access_token"]}
        assert httpx.get(srv.base + "/api/parameters", headers=h).json()["origin"] == "bundled + p.csv"
        assert httpx.get(srv.base + "/api/blocs", headers=h).json()["blocs"]["concern"] == ["BRA", "CHN", "RUS"]
        ids = [httpx.post(srv.base + "/api/runs", headers=h, json={"kind": "simulate", "params": {"scenario_ids": ["ev.E001.rare_earths.refine"],
                                                                                                   "draws": 50, "seed": s}}).json()["id"] for s in (1, 2)]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = [httpx.get(srv.base + f"/api/runs/{i}", headers=h).json() for i in ids]
            if all(x["status"] not in ("queued", "running") for x in runs):
                break
            time.sleep(0.3)
        assert [x["status"] for x in runs] == ["done", "done"], runs
        for i in ids:
            res = httpx.get(srv.base + f"/api/runs/{i}/result", headers=h).json()["result"]
            assert res["metadata"]["parameters"] == "bundled + p.csv" and {p["price_t_p95"] for p in res["paths"]} == {1.0}


@pytest.mark.parametrize("trusted", [True, False])
def test_login_limit_per_client_behind_a_trusted_proxy(tmp_path: Path, trusted: bool) -> None:
    """With --trusted-proxy the login limiter counts per X-Forwarded-For client: five failures from one client
    lock that client only. Without it the header is ignored (anyone could forge it) and the limit is per
    connecting address: everyone behind the proxy is locked together."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    add_user(url, "ann@example.org", "New Org", "government", "long enough password", cwd=tmp_path)
    # no run here: runs in the server's thread spare starting a worker process
    extra = ("--trusted-proxy", "127.0.0.1", "--no-seed", "--jobs", "thread") if trusted else ("--no-seed", "--jobs", "thread")
    with ServerProcess(url, cwd=tmp_path, extra_args=extra) as srv:
        def login(user: str, client: str) -> int:
            return httpx.post(srv.base + "/api/auth/login", json={"username": user, "password": "wrong password"},
                              headers={"X-Forwarded-For": client}).status_code

        assert [login(f"u{i}@example.org", "203.0.113.5") for i in range(5)] == [401] * 5
        assert login("u9@example.org", "203.0.113.5") == 429
        assert login("v1@example.org", "198.51.100.7") == (401 if trusted else 429)


def test_migrations_match_models(db_url: str) -> None:
    """The Alembic migrations create exactly the schema the models declare (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from critmin.web.db import Database
    from critmin.web.models import Base

    db = Database(db_url)
    try:
        with db.engine.connect() as c:
            diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
        assert diff == []
    finally:
        db.dispose()


@pytest.mark.parametrize("url", ["postgres://u:p@h/db", "postgresql://u:p@h/db"])
def test_postgres_urls_use_psycopg(url: str) -> None:
    from critmin.web.db import database_url

    assert database_url(url) == "postgresql+psycopg://u:p@h/db"


def test_upgrade_keeps_data(db_url: str) -> None:
    """A workspace created at revision 0001 keeps its rows when upgraded to the newest revision."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    from critmin.web import db as webdb
    from critmin.web.db import database_url, migrate

    eng = create_engine(database_url(db_url))
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(webdb.__file__).parent / "migrations"))
    with eng.begin() as c:
        cfg.attributes["connection"] = c
        command.upgrade(cfg, "0001")
    with eng.begin() as c:
        c.execute(text("INSERT INTO organisations (id, name, created_at) VALUES (1, 'Old Org', CURRENT_TIMESTAMP)"))
        c.execute(text("INSERT INTO audit_log (at, user_email, org_id, action, target_kind, target_key, detail) "
                       "VALUES (CURRENT_TIMESTAMP, 'old@example.org', 1, 'create', 'project', 'p1', '{}')"))
    migrate(eng)
    with eng.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
        row = c.execute(text("SELECT user_email, target_key, owner_org_id FROM audit_log")).one()
    assert tuple(row) == ("old@example.org", "p1", None)
    eng.dispose()


def _wait_status(base: str, h: dict[str, str], rid: int, want: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        j = httpx.get(f"{base}/api/runs/{rid}", headers=h, timeout=30).json()
        if j["status"] in want:
            return j
        time.sleep(0.2)
    raise AssertionError(f"run {rid} never reached {want}: {j}")


def test_runs_execute_in_worker_processes(one_db_url: str, tmp_path: Path) -> None:
    """Issue 14 finding 7: a run computing in the server process held the GIL and starved every read. Now
    `critmin serve` hands runs to a worker process (the default `--jobs process`): the run's work is done by
    a child of the server, a cancellation reaches it through the database, a worker killed under a run fails
    that run with the reason (the next run gets a new worker), and the workers die with the server (SIGKILL
    included: nothing runs on unobserved)."""
    import psutil

    email = "runner@workers.example"
    add_user(one_db_url, email, "Worker Org", "government", PASSWORD, cwd=tmp_path)
    srv = ServerProcess(one_db_url, cwd=tmp_path, log=tmp_path / "server.log", extra_args=("--no-seed",)).start()
    try:
        base = srv.base
        h = {"Authorization": "Bearer " + httpx.post(base + "/api/auth/login", json={"username": email, "password": PASSWORD}).json()["access_token"]}
        assert srv.proc is not None
        server = psutil.Process(srv.proc.pid)
        server_cpu = server.cpu_times()

        def workers() -> list[psutil.Process]:
            return [p for p in server.children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]

        long = {"kind": "risk", "params": {"draws": 5000, "seed": 1}}
        rid = httpx.post(base + "/api/runs", json=long, headers=h).json()["id"]
        _wait_status(base, h, rid, {"running"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and httpx.get(f"{base}/api/runs/{rid}", headers=h).json()["progress"] < 0.05:
            time.sleep(0.2)
        ws = workers()
        assert len(ws) == 1, [p.cmdline() for p in server.children(recursive=True)]
        # the run's CPU time is spent in the worker, not in the server
        assert sum(ws[0].cpu_times()[:2]) > 2 * (sum(server.cpu_times()[:2]) - sum(server_cpu[:2]))
        assert httpx.get(base + "/api/projects?limit=1", headers=h).status_code == 200
        httpx.post(f"{base}/api/runs/{rid}/cancel", headers=h).raise_for_status()
        assert _wait_status(base, h, rid, {"cancelled", "done", "failed"})["status"] == "cancelled"

        rid = httpx.post(base + "/api/runs", json={"kind": "risk", "params": {"draws": 5000, "seed": 2}}, headers=h).json()["id"]
        _wait_status(base, h, rid, {"running"})
        ws[0].kill()
        j = _wait_status(base, h, rid, {"cancelled", "done", "failed"})
        assert j["status"] == "failed" and "worker" in j["error"], j
        ok = httpx.post(base + "/api/runs", json={"kind": "simulate", "params": {"scenario_ids": ["ev.E001.rare_earths.refine"], "draws": 20}},
                        headers=h).json()["id"]
        assert _wait_status(base, h, ok, {"cancelled", "done", "failed"})["status"] == "done"
        # the server killed outright: its worker notices and exits within a few seconds
        left = server.children(recursive=True)  # the worker and multiprocessing's resource tracker
        assert workers()
        srv.kill()
        gone, alive = psutil.wait_procs(left, timeout=15)
        assert not alive, [p.pid for p in alive]
    finally:
        srv.stop()
