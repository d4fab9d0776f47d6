"""Issue 14 acceptance ("Workspace hardening"): hostile values sent to every write endpoint and importer of the
workspace API answer 4xx, never 5xx; a refused request stores nothing; oversized files are refused quickly and
within bounded memory.

The operations come from the app's own route table: every POST/PUT/PATCH/DELETE operation must have a table of
hostile cases below (``test_every_write_operation_has_hostile_cases``) and every one is sent
(``test_every_write_operation_was_exercised``), so a new write endpoint without hostile cases fails the suite.

Each case starts from a request the endpoint accepts and changes one value at a time:

* text: a lone UTF-16 surrogate (a raw JSON escape, which ``json.dumps`` cannot produce, spliced into the body
  text), the control character U+0001 or NUL inserted in every string of the body (record data and its nested
  fields such as ``support``, ``shared_with``, comment text, updates, run parameters down to
  ``parameters[].name``/``scope``, ``blocs`` and ``scenario_ids``, sign-in and password bodies), in one new member
  name per JSON object, in every query and path parameter, in every field of a study file, in every cell of a
  CSV row and in a cell of each register sheet;
* integers: 2^63 and -2^63-1 in place of every number of those bodies and files and of every integer query or
  path parameter;
* importers (POST /api/projects/import as .xlsx and .csv, POST /api/study/plan with a register or buyers
  workbook): a workbook with one cell at XFD1048576, one of 200,000 rows and one of 300 columns (openpyxl), and
  a CSV of 1,500,000 rows: 413 or 422 within 5 s and 200 MB of memory growth each.

Every table of cases (one operation and one kind of hostile value) runs on one app per database backend and
checks afterwards that every table of the database holds exactly the rows it held before (compared row by row:
no table is exempt; the login limiter, which counts refused sign-ins, is in memory, and the app here gets a
generous one so that the cases do not lock each other out) and that every list endpoint answers 200 for three
users of different organisations; so does the Excel export, whenever the projects table it reads changed and
after all the cases.

Complements ``test_web_api.py`` (input rules, issue 14: one field per record kind on create, a run's inline
scenario title, CSV imports), ``test_register.py`` (the far-cell workbook in the register reader) and
``test_web_schema.py`` (schemathesis). Nine bugs it found when written were fixed at their causes (one text
rule on dict member names, comments, passwords, file names, organisation names and study files; error answers
that quote user text escape it; CSV inputs bounded like workbooks).
"""
from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import os
import resource
import threading
import time
import zipfile
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import PASSWORD, USERS, WebClient, cheap_argon2, module_db_url
from tests.test_web_api import ACME, BETA, GOV, LIBRARY_EVENT, PLURAL, record

# ------------------------------------------------------------------------------------------------ hostile values
#: Hostile characters, inserted in the middle of a value the field accepts (so that they alone make it invalid),
#: as JSON escapes spliced into the body text (a lone surrogate cannot pass json.dumps); the same escapes in the
#: double-quoted scalars of a YAML study file, which PyYAML decodes to the characters.
TEXT = {"lone surrogate": "\\ud800", "control character": "\\u0001", "NUL": "\\u0000"}
#: ... in a URL: U+0001 and NUL percent-encoded, the lone surrogate as the bytes of its CESU-8 form, which the ASGI
#: server decodes to U+FFFD (no surrogate can reach the app through a URL) ...
URL_TEXT = {"lone surrogate": "%ED%A0%80", "control character": "%01", "NUL": "%00"}
#: ... and as bytes of a CSV file or of a workbook's XML (the surrogate: bytes no UTF-8 decoder accepts).
BYTES_TEXT = {"lone surrogate": b"\xed\xa0\x80", "control character": b"\x01", "NUL": b"\x00"}
#: Integers beyond int64, in place of a number (JSON, YAML, CSV, a workbook cell) or of an integer parameter.
INTS = {"2^63": str(2**63), "-2^63-1": str(-(2**63) - 1)}
#: Oversized inputs of the importers.
FAR_CELL, MANY_ROWS, MANY_COLUMNS = "cell at XFD1048576", "200,000 rows", "300 columns"
HUGE_CSV_ROWS = 1_500_000
HUGE_CSV = f"CSV of {HUGE_CSV_ROWS:,} rows"
WORKBOOKS = (FAR_CELL, MANY_ROWS, MANY_COLUMNS)
#: Limits of one importer request: wall time and growth of the process's resident memory.
MAX_SECONDS, MAX_GROWTH_MB = 5.0, 200

PW_USER = "co2@acme.example"  # changes its password in the password cases (no other case signs in as it)
NEW_PASSWORD = "another horse battery"
PLACE = "HOSTILEVALUEPLACEHOLDER"  # where the hostile token goes (plain in JSON and YAML alike)
KEY = "(new name)"  # a path ending here: a new member name of that object, not a value
OTHER_ORG = "Beta Graphite"

#: Every case answers 4xx; a request whose hostile value cannot reach the app (the surrogate in a URL, decoded to
#: U+FFFD by the server) may also answer 2xx, and is built so that it then writes nothing either.
CLIENT_ERROR = range(400, 500)
NOT_5XX = range(200, 500)
TOO_LARGE = (413, 422)


def in_json(value: str, hostile: str) -> str:
    """The JSON string token of ``value`` with the hostile character in its middle."""
    mid = len(value) // 2
    return json.dumps(value[:mid])[:-1] + TEXT[hostile] + json.dumps(value[mid:])[1:]


def in_url(value: str, hostile: str) -> str:
    """``value`` percent-encoded with the hostile character (or the integer, replacing it) for a URL."""
    if hostile in INTS:
        return INTS[hostile]
    mid = len(value) // 2
    return quote(value[:mid], safe="") + URL_TEXT[hostile] + quote(value[mid:], safe="")


def in_bytes(value: str, hostile: str) -> bytes:
    mid = len(value) // 2
    return value[:mid].encode() + BYTES_TEXT[hostile] + value[mid:].encode()


# ------------------------------------------------------------------------------------------------ requests
@dataclass
class Req:
    """One request of a case: ``op`` is the route's "METHOD /path/template" (the coverage key)."""

    op: str
    label: str
    path: str
    query: str = ""
    body: bytes | None = None
    content_type: str = "application/json"
    who: str | None = ACME
    token: str | None = None
    allowed: Container[int] = CLIENT_ERROR
    mention: str | None = None  # a 422 answer must name this field
    bounded: bool = False  # an importer request: time and memory limits

    @property
    def method(self) -> str:
        return self.op.split(" ", 1)[0]


def slots(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(path, "text" | "number") of every value a hostile one can replace: every string, every number (not
    booleans) and one new member name per object."""
    if isinstance(obj, dict):
        yield (*path, KEY), "text"
        for k, v in obj.items():
            yield from slots(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from slots(v, (*path, i))
    elif isinstance(obj, str):
        yield path, "text"
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield path, "number"


def at(obj: Any, path: tuple[Any, ...]) -> Any:
    """The value at ``path`` ("name" for a new member name)."""
    if path[-1] == KEY:
        return "name"
    for p in path:
        obj = obj[p]
    return obj


def placed(obj: Any, path: tuple[Any, ...]) -> Any:
    """A copy of ``obj`` with :data:`PLACE` at ``path`` (as a new member name when the path ends in :data:`KEY`)."""
    out = copy.deepcopy(obj)
    *head, last = path
    parent = out
    for p in head:
        parent = parent[p]
    if last == KEY:
        parent[PLACE] = "v"
    else:
        parent[last] = PLACE
    return out


def token_for(obj: Any, path: tuple[Any, ...], hostile: str) -> str:
    return in_json(at(obj, path), hostile) if hostile in TEXT else INTS[hostile]


def splice_json(obj: Any, path: tuple[Any, ...], hostile: str) -> bytes:
    """``obj`` as JSON text with the hostile value at ``path``."""
    text = json.dumps(placed(obj, path))
    assert text.count(f'"{PLACE}"') == 1
    return text.replace(f'"{PLACE}"', token_for(obj, path, hostile)).encode()


def label_of(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


def named(path: tuple[Any, ...]) -> str | None:
    """The field a refusal should name: the last member name on the path (None for a top-level new name)."""
    names = [p for p in path if isinstance(p, str) and p != KEY]
    return names[-1] if names else None


def body_cases(op: str, base: dict[str, Any], hostile: str, url: str, who: str | None = ACME, prefix: str = "body",
               fresh: Callable[[], dict[str, Any]] | None = None, token: str | None = None) -> list[Req]:
    """One request per value of ``base`` that ``hostile`` can replace (``fresh`` renews the base per request, e.g.
    a new record id, so that a wrongly accepted request does not turn the next ones into conflicts)."""
    kind = "text" if hostile in TEXT else "number"
    out = []
    for path, k in slots(base):
        if k == kind:
            raw = splice_json(fresh() if fresh else base, path, hostile)
            out.append(Req(op, f"{prefix}.{label_of(path)}", url, body=raw, who=who, token=token, mention=named(path)))
    return out


# ------------------------------------------------------------------------------------------------ valid bases
def full_record(kind: str, key: str) -> dict[str, Any]:
    """``data`` of a record with every optional field given (each a value the record accepts)."""
    extra: dict[str, dict[str, Any]] = {
        "project": {"product": "graphite concentrate", "capacity_raw": "1 kt/yr", "capacity_conversion": "as published", "ramp_up_months": 12,
                    "capex_usd": 1.5e8, "capex_note": "estimate", "opex_usd_per_t": 500.0, "unit_cost_usd_per_t": 650.0, "status": "producing",
                    "first_output": "2027-06", "completion_probability": 0.8, "delay_months": 3.0, "feoc": "no", "esg_flags": "none",
                    "offtakes": "a Japanese buyer", "frameworks": "MSP", "japan_link": "JOGMEC", "source_tiers": "1", "verification": "checked",
                    "note": "fuzz base",
                    "support": [{"support_id": f"{key}-S1", "project_id": key, "agency": "JOGMEC", "participant_iso3": "JPN", "instrument": "equity",
                                 "instrument_detail": "equity stake", "amount_usd": 2.5e7, "date": "2025-03-01", "commitment_status": "committed",
                                 "counts": True, "source": "fuzz", "url": "https://example.org/s1", "source_tier": "1", "verification": "checked",
                                 "note": "fuzz"}]},
        "need": {"priority": 1, "min_contract_t": 10.0, "origin_rule": "no_concern", "contract_projects": "P1;P2", "start": "2026-01",
                 "end": "2028-12", "kind": "offtaker", "form": "concentrate", "source": "fuzz", "url": "https://example.org/n", "note": "fuzz"},
        "offer": {"available_from": "2026-06", "product": "flake graphite", "source": "fuzz", "note": "fuzz"},
        "scenario": {"title": "Test ban", "regime": "licence", "withheld_share": 0.5, "withheld_low": 0.3, "withheld_high": 0.7, "scope_low": 0.8,
                     "scope_high": 0.9, "start_month": 1, "start_date": "2026-02", "duration_months": 6, "leakage": 0.1, "market_surplus": 0.05,
                     "stock_months": 2.0, "stock_months_low": 1.0, "stock_months_high": 3.0, "withheld_by_month": [1.0, 0.5],
                     "front_loaded_share": 0.1, "response": {"stockpile": {"holdings_t": 100.0, "max_release_t_per_month": 10.0, "price_cap": 1.5},
                                                            "demand_restraint": 0.1},
                     "probability": 0.05, "status": "hypothetical", "source_ids": ["fuzz"], "note": "fuzz"},
    }
    return {**record(kind, key), **extra[kind]}


def run_bases() -> dict[str, dict[str, Any]]:
    """A body of POST /api/runs per kind with every parameter given (a few draws)."""
    common = {"draws": 5, "seed": 7, "parameters": [{"name": "licence_denial", "scope": "*", "value": 0.5, "low": 0.2, "high": 0.8,
                                                     "distribution": "triangular"}],
              "blocs": {"concern": ["CHN", "RUS"], "like_minded": ["AUS"]}}
    scenario = {k: v for k, v in full_record("scenario", "inline-1").items()}
    simulate = {**common, "scenario_ids": [LIBRARY_EVENT], "scenario": scenario}
    deliver = {"months": 6, "as_of": "2026-01", "blocs": {"concern": ["CHN"], "like_minded": ["AUS"]}}
    params = {"simulate": simulate, "risk": {**common, "perspective": "USA"},
              "portfolio": {**common, "budgets": {"US_DOD_OSC:loan": 1e8}, "deadline_months": 24.0, "frontier_points": 2, "cvar_weight": 0.5,
                            "concern_weight": 1.0, "as_of": "2026-01"},
              "stockpile": {**common, "perspective": "JPN", "budget_usd": 1e9, "pooled": False, "max_days": 90.0},
              "deliver": deliver, "match": deliver, "plan": {**common, "as_of": "2026-01", "top": 10},
              "respond": {**simulate, "as_of": "2026-01"}}
    return {k: {"kind": k, "params": p} for k, p in params.items()}


STUDY_BASE = {"name": "hostile study", "as_of": "2026-01", "draws": 50, "seed": 1, "delivery_months": 6, "register": "register",
              "buyers": "buyers.csv", "critical_lists": {"USA": ["gallium"]}, "stockpile": {"max_days": 90.0, "stages": ["refine"]}}


# ------------------------------------------------------------------------------------------------ the app
class Hostile:
    """One app on one database with the targets of the cases: a record of each kind (ACME's), the files the
    importers accept, the database's tables, and the operations each case sent."""

    def __init__(self, web: WebClient, backend: str):
        from sqlalchemy import MetaData

        self.web, self.backend = web, backend
        self.ws = web.app.state.ws
        self.exercised: set[str] = set()
        for who in (ACME, BETA, GOV, PW_USER):
            web.token(who)
        self.logout_token, _, _ = self.ws.login(BETA, PASSWORD)  # a session only the logout cases use
        self.targets: dict[str, dict[str, Any]] = {}
        for kind, plural in PLURAL.items():
            r = web.client.post(f"/api/{plural}", json={"data": full_record(kind, f"HOSTILE-TARGET-{kind}"), "shared_with": [OTHER_ORG]},
                                headers=web.h(ACME))
            assert r.status_code == 201, r.text  # every base is valid: a case's refusal is its hostile value's
            self.targets[kind] = r.json()
        self._serial = 0
        self._export = web.client.get("/api/projects/export.xlsx", headers=web.h(ACME)).content
        self._study = zipfile.ZipFile(io.BytesIO(web.client.get("/api/study.zip", headers=web.h(GOV)).content))
        self.meta = MetaData()
        self.meta.reflect(self.ws.db.engine)
        assert {"projects", "needs", "offers", "scenarios", "comments", "runs", "audit_log", "sessions", "shares"} <= set(self.meta.tables)
        self.check_reads()

    def fresh_key(self, prefix: str = "HOSTILE") -> str:
        self._serial += 1
        return f"{prefix}-{self._serial}"

    # -------------------------------------------------------------------------------------------- sending
    def send(self, q: Req) -> tuple[Any, float, float]:
        """The answer, the wall time and the peak growth of resident memory (MB) during the request."""
        self.exercised.add(q.op)
        c = self.web.client
        c.cookies.clear()
        headers = {"content-type": q.content_type} if q.body is not None else {}
        if q.token:
            headers["Authorization"] = f"Bearer {q.token}"
        elif q.who:
            headers |= self.web.h(q.who)
        url = q.path + (f"?{q.query}" if q.query else "")
        with RssPeak() as mem:
            t0 = time.perf_counter()
            r = c.request(q.method, url, content=q.body, headers=headers)
            dt = time.perf_counter() - t0
        return r, dt, mem.growth_mb

    def settle(self, timeout: float = 120.0) -> None:
        """Wait until no run is queued or running (a wrongly accepted run would change the rows meanwhile)."""
        from sqlalchemy import text

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            with self.ws.db.engine.connect() as c:
                if not c.execute(text("SELECT count(*) FROM runs WHERE status IN ('queued', 'running')")).scalar():
                    return
            time.sleep(0.05)
        raise AssertionError("runs still queued or running")

    def snapshot(self) -> dict[str, tuple[int, str]]:
        """Rows and a digest of the contents of every table."""
        from sqlalchemy import select

        out = {}
        with self.ws.db.engine.connect() as c:
            for name, t in sorted(self.meta.tables.items()):
                rows = sorted(repr(tuple(r)) for r in c.execute(select(t)))
                out[name] = (len(rows), hashlib.sha256("\n".join(rows).encode("utf-8", "backslashreplace")).hexdigest())
        return out

    def check_reads(self, export: bool = True) -> list[str]:
        """Every list endpoint (and the Excel export) answers 200 for three users of different organisations."""
        bad = []
        paths = ["/api/projects", "/api/needs", "/api/offers", "/api/scenarios", "/api/runs", "/api/audit"]
        for who in (ACME, GOV, BETA):
            for path in [*paths, "/api/projects/export.xlsx"] if export else paths:
                self.web.client.cookies.clear()
                r = self.web.client.get(path, headers=self.web.h(who))
                if r.status_code != 200:
                    bad.append(f"GET {path} as {who}: {r.status_code} {r.text[:200]}")
        return bad

    # -------------------------------------------------------------------------------------------- files
    def project_row(self, key: str) -> dict[str, Any]:
        """A new project's row (every column filled), as the register's CSV and workbook hold it."""
        from critmin.portfolio.register_schema import PROJECT_COLUMNS

        d = {k: v for k, v in full_record("project", key).items() if k != "support"}
        return {c.name: d.get(c.name, "") for c in PROJECT_COLUMNS}

    def support_row(self, key: str) -> dict[str, Any]:
        from critmin.portfolio.register_schema import SUPPORT_COLUMNS

        d = full_record("project", key)["support"][0]
        return {c.name: d.get(c.name, "") for c in SUPPORT_COLUMNS}

    def projects_csv(self, row: dict[str, Any], raw: dict[str, bytes] | None = None) -> bytes:
        """A projects CSV of one row; ``raw`` puts bytes in cells (hostile bytes no text can hold)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(row), lineterminator="\n")
        w.writeheader()
        w.writerow({k: (PLACE if raw and k in raw else v) for k, v in row.items()})
        data = buf.getvalue().encode()
        for v in (raw or {}).values():
            data = data.replace(PLACE.encode(), v, 1)
        return data

    def register_book(self, key: str, project: dict[str, Any] | None = None, support: dict[str, Any] | None = None) -> Any:
        """The register's Excel template as exported (every visible project) plus one new project and its
        support action."""
        import openpyxl

        wb = openpyxl.load_workbook(io.BytesIO(self._export))
        for sheet, row in (("projects", project or self.project_row(key)), ("support", support or self.support_row(key))):
            ws = wb[sheet]
            header = [c.value for c in ws[1]]
            ws.append([row.get(h, "") for h in header])
        return wb

    def exported_book(self) -> bytes:
        return self._export

    def study_members(self) -> dict[str, bytes]:
        """The workspace's study (GET /api/study.zip) with :data:`STUDY_BASE` as its study.yaml."""
        import yaml

        m = {n: self._study.read(n) for n in self._study.namelist()}
        m["study.yaml"] = yaml.safe_dump(STUDY_BASE, sort_keys=False).encode()
        return m


def save_book(wb: Any) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def replaced_in_xml(book: bytes, raw: bytes) -> bytes:
    """The workbook with :data:`PLACE` replaced by ``raw`` in its XML (wherever openpyxl stored the text)."""
    src = zipfile.ZipFile(io.BytesIO(book))
    out = io.BytesIO()
    n = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            data = src.read(info)
            n += data.count(PLACE.encode())
            z.writestr(info, data.replace(PLACE.encode(), raw))
    assert n == 1
    return out.getvalue()


def zipped(members: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


class RssPeak:
    """Peak growth of the process's resident memory during a block, sampled every few milliseconds from
    /proc/self/statm (elsewhere: the growth of ru_maxrss). tracemalloc would slow the workbook reader about
    sevenfold (measured), voiding the time limit, and does not see native allocations."""

    def __enter__(self) -> RssPeak:
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._proc = os.path.exists("/proc/self/statm")
        self._maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        if self._proc:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _rss(self) -> int:
        if not self._proc:
            return 0
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _sample(self) -> None:
        while not self._stop.wait(0.003):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._proc:
            self._thread.join()
            self.peak = max(self.peak, self._rss())
            self.growth_mb = (self.peak - self.base) / 2**20
        else:  # ru_maxrss: KiB on Linux, bytes on macOS
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._maxrss
            self.growth_mb = grown / (2**20 if os.uname().sysname == "Darwin" else 2**10)


# ------------------------------------------------------------------------------------------------ the cases
def _login(h: Hostile, hostile: str) -> list[Req]:
    return body_cases("POST /api/auth/login", {"username": GOV, "password": PASSWORD}, hostile, "/api/auth/login", who=None)


def _logout(h: Hostile, hostile: str) -> list[Req]:
    # the operation takes no input: a query parameter it does not declare, carrying the hostile value
    return [Req("POST /api/auth/logout", "query.x", "/api/auth/logout", query=f"x={in_url('value', hostile)}", token=h.logout_token,
                mention="query.x")]


def _password(h: Hostile, hostile: str) -> list[Req]:
    return body_cases("POST /api/auth/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, hostile, "/api/auth/password",
                      who=PW_USER)


def _record_create(kind: str) -> Callable[[Hostile, str], list[Req]]:
    plural = PLURAL[kind]

    def cases(h: Hostile, hostile: str) -> list[Req]:
        def fresh() -> dict[str, Any]:
            return {"data": full_record(kind, h.fresh_key()), "confidential": False, "shared_with": [OTHER_ORG]}

        return body_cases(f"POST /api/{plural}", fresh(), hostile, f"/api/{plural}", fresh=fresh)
    return cases


def _record_update(kind: str) -> Callable[[Hostile, str], list[Req]]:
    plural = PLURAL[kind]

    def cases(h: Hostile, hostile: str) -> list[Req]:
        t = h.targets[kind]
        base = {"version": t["version"], "data": full_record(kind, t["key"]), "confidential": False, "shared_with": [OTHER_ORG]}
        op = f"PUT /api/{plural}/{{record_id}}"
        return [*body_cases(op, base, hostile, f"/api/{plural}/{t['id']}"),
                Req(op, "path.record_id", f"/api/{plural}/{in_url(str(t['id']), hostile)}", body=json.dumps(base).encode(), mention="record_id")]
    return cases


def _record_delete(kind: str) -> Callable[[Hostile, str], list[Req]]:
    plural = PLURAL[kind]

    def cases(h: Hostile, hostile: str) -> list[Req]:
        t = h.targets[kind]
        op = f"DELETE /api/{plural}/{{record_id}}"
        return [Req(op, "path.record_id", f"/api/{plural}/{in_url(str(t['id']), hostile)}", query=f"version={t['version']}", mention="record_id"),
                Req(op, "query.version", f"/api/{plural}/{t['id']}", query=f"version={in_url(str(t['version']), hostile)}", mention="version")]
    return cases


def _comment(kind: str) -> Callable[[Hostile, str], list[Req]]:
    plural = PLURAL[kind]

    def cases(h: Hostile, hostile: str) -> list[Req]:
        t = h.targets[kind]
        op = f"POST /api/{plural}/{{record_id}}/comments"
        base = {"body": "a fine comment"}
        return [*body_cases(op, base, hostile, f"/api/{plural}/{t['id']}/comments"),
                Req(op, "path.record_id", f"/api/{plural}/{in_url(str(t['id']), hostile)}/comments", body=json.dumps(base).encode(),
                    mention="record_id")]
    return cases


def _runs(h: Hostile, hostile: str) -> list[Req]:
    return [q for kind, base in run_bases().items() for q in body_cases("POST /api/runs", base, hostile, "/api/runs", who=GOV, prefix=f"[{kind}]")]


def _run_path(op: str, template: str) -> Callable[[Hostile, str], list[Req]]:
    def cases(h: Hostile, hostile: str) -> list[Req]:
        return [Req(op, "path.run_id", template.format(in_url("1", hostile)), who=GOV, mention="run_id")]
    return cases


IMPORT = "POST /api/projects/import"
STUDY = "POST /api/study/plan"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _import(h: Hostile, hostile: str) -> list[Req]:
    """Query parameters (filename, shared_with, confidential) around a file that would create a project, every
    cell of a projects CSV row, a cell of each sheet of a register workbook, and every integer column of both."""
    from critmin.portfolio.register_schema import Project

    def imp(label: str, body: bytes, filename: str, query: str = "", mention: str | None = None, allowed: Container[int] = CLIENT_ERROR,
            ctype: str = "text/csv") -> Req:
        return Req(IMPORT, label, "/api/projects/import", query=f"filename={filename}{query}", body=body, content_type=ctype,
                   mention=mention, allowed=allowed, bounded=True)

    def new_csv() -> bytes:
        return h.projects_csv(h.project_row(h.fresh_key()))

    out: list[Req] = []
    if hostile == "lone surrogate":
        # decoded to U+FFFD before the app sees it (valid text): sent with the exported workbook unchanged, which
        # writes nothing when accepted
        out.append(imp("query.filename (.xlsx)", h.exported_book(), in_url("projects", hostile) + ".xlsx", allowed=NOT_5XX, ctype=XLSX))
    elif hostile in TEXT:
        out += [imp("query.filename (.csv)", new_csv(), in_url("pipeline", hostile) + ".csv", mention="filename"),
                imp("query.filename (.xlsx)", save_book(h.register_book(h.fresh_key())), in_url("pipeline", hostile) + ".xlsx",
                    mention="filename", ctype=XLSX)]
    out += [imp("query.shared_with", new_csv(), "p.csv", f"&shared_with={in_url(OTHER_ORG, hostile)}", mention="shared_with"),
            imp("query.confidential", new_csv(), "p.csv", f"&confidential={in_url('false', hostile)}", mention="confidential")]
    if hostile in TEXT:
        # every cell of a CSV row: the file's bytes (a surrogate: bytes that are not UTF-8, refused for the whole file)
        row = h.project_row(h.fresh_key())
        for col, v in row.items():
            out.append(imp(f"csv.{col}", h.projects_csv(row, {col: in_bytes(str(v), hostile)}), "p.csv",
                           mention=None if hostile == "lone surrogate" else col))
        # a cell of each sheet of a workbook: the characters in the sheet's XML (no valid XML holds them)
        for sheet, col in (("projects", "name"), ("support", "agency")):
            key = h.fresh_key()
            p, s = h.project_row(key), h.support_row(key)
            row = p if sheet == "projects" else s
            value, row[col] = str(row[col]), PLACE
            book = replaced_in_xml(save_book(h.register_book(key, p, s)), in_bytes(value, hostile))
            out.append(imp(f"xlsx.{sheet}.{col}", book, "p.xlsx", ctype=XLSX))
    else:
        ints = [n for n, f in Project.model_fields.items() if "int" in str(f.annotation)]
        assert ints, "the register has integer columns"
        for col in ints:
            key = h.fresh_key()
            row = h.project_row(key)
            out.append(imp(f"csv.{col}", h.projects_csv(row, {col: INTS[hostile].encode()}), "p.csv", mention=col))
            out.append(imp(f"xlsx.projects.{col}", save_book(h.register_book(key, {**row, col: int(INTS[hostile])})), "p.xlsx", mention=col,
                           ctype=XLSX))
    return out


def _study(h: Hostile, hostile: str) -> list[Req]:
    """The filename query parameter, every field of study.yaml, and a text and an integer cell of the register's
    and the buyers' CSV."""
    import yaml

    def plan(label: str, members: dict[str, bytes], filename: str = "s.zip", mention: str | None = None) -> Req:
        return Req(STUDY, label, "/api/study/plan", query=f"filename={filename}", body=zipped(members), content_type="application/zip",
                   who=GOV, mention=mention, bounded=True)

    base = h.study_members()
    out: list[Req] = []
    if hostile == "lone surrogate":
        # decoded to U+FFFD before the app sees it (valid text): sent with a study refused for its draws (the answer
        # names the file)
        out.append(plan("query.filename", {**base, "study.yaml": yaml.safe_dump({**STUDY_BASE, "draws": 3}).encode()},
                        in_url("study", hostile) + ".zip", mention="draws"))
    elif hostile in TEXT:
        out.append(plan("query.filename", base, in_url("study", hostile) + ".zip", mention="filename"))
    kind = "text" if hostile in TEXT else "number"
    for path, k in slots(STUDY_BASE):
        if k == kind:
            text = yaml.safe_dump(placed(STUDY_BASE, path), sort_keys=False)
            assert text.count(PLACE) == 1
            text = text.replace(PLACE, token_for(STUDY_BASE, path, hostile))
            out.append(plan(f"study.yaml.{label_of(path)}", {**base, "study.yaml": text.encode()}, mention=named(path)))
    # a cell of the register's and the buyers' first row
    for member, text_col, int_col in (("register/projects.csv", "name", "ramp_up_months"), ("buyers.csv", "name", "priority")):
        lines = base[member].split(b"\n")
        header = next(csv.reader([lines[0].decode()]))
        first = dict(zip(header, next(csv.reader([lines[1].decode()])), strict=True))
        col = text_col if hostile in TEXT else int_col
        new = in_bytes(first[col], hostile) if hostile in TEXT else INTS[hostile].encode()
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow([PLACE if c == col else first[c] for c in header])
        data = b"\n".join([lines[0], buf.getvalue().encode().replace(PLACE.encode(), new), *lines[2:]])
        out.append(plan(f"{member}.{col}", {**base, member: data}, mention=None if hostile == "lone surrogate" else col))
    return out


def _big_workbooks() -> dict[tuple[str, str], bytes]:
    """Workbooks of a register ("projects") and of buyers ("buyers"): a header and one cell at XFD1048576, a
    header and 200,000 rows, or a header of 300 columns (openpyxl, saved to a temporary file)."""
    import tempfile
    from pathlib import Path

    import openpyxl

    out = {}
    with tempfile.TemporaryDirectory() as d:
        for what in WORKBOOKS:
            wb = openpyxl.Workbook(write_only=True)
            ws = wb.create_sheet("projects")
            if what == MANY_COLUMNS:
                ws.append(["project_id", "name", *(f"c{i}" for i in range(298))])
            else:
                ws.append(["project_id", "name"])
                for i in range(200_000 if what == MANY_ROWS else 0):
                    ws.append([f"R{i}"])
            p = Path(d) / "book.xlsx"
            wb.save(p)
            if what == FAR_CELL:
                wb = openpyxl.load_workbook(p)
                wb["projects"]["XFD1048576"] = "x"
                wb.save(p)
            book = p.read_bytes()
            out[(what, "projects")] = book
            out[(what, "buyers")] = renamed_sheet(book, "projects", "buyers")
    return out


def renamed_sheet(book: bytes, old: str, new: str) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(book))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "xl/workbook.xml":
                assert f'name="{old}"'.encode() in data
                data = data.replace(f'name="{old}"'.encode(), f'name="{new}"'.encode())
            z.writestr(info, data)
    return out.getvalue()


@pytest.fixture(scope="module")
def big_workbooks() -> dict[tuple[str, str], bytes]:
    return _big_workbooks()


def huge_csv() -> bytes:
    """A projects CSV of a header and :data:`HUGE_CSV_ROWS` one-field rows (3 MB: well under the import's 10 MiB)."""
    return b"project_id,name\n" + b"x\n" * HUGE_CSV_ROWS


def _import_big(h: Hostile, what: str, books: dict[tuple[str, str], bytes]) -> list[Req]:
    if what == HUGE_CSV:
        return [Req(IMPORT, "body (.csv)", "/api/projects/import", query="filename=p.csv", body=huge_csv(), content_type="text/csv",
                    allowed=TOO_LARGE, bounded=True)]
    return [Req(IMPORT, "body (.xlsx)", "/api/projects/import", query="filename=p.xlsx", body=books[(what, "projects")], content_type=XLSX,
                allowed=TOO_LARGE, bounded=True)]


def _study_big(h: Hostile, what: str, books: dict[tuple[str, str], bytes]) -> list[Req]:
    """The study's register, and its buyers, as the oversized workbook (the register also as the huge CSV)."""
    import yaml

    base = h.study_members()
    if what == HUGE_CSV:
        members = {"register/projects.csv": {"register/projects.csv": huge_csv()}}
    else:
        members = {f"{field}.xlsx": {"study.yaml": yaml.safe_dump({**STUDY_BASE, field: f"{field}.xlsx"}).encode(),
                                     f"{field}.xlsx": books[(what, sheet)]}
                   for field, sheet in (("register", "projects"), ("buyers", "buyers"))}
    return [Req(STUDY, label, "/api/study/plan", query="filename=s.zip", body=zipped({**base, **m}), content_type="application/zip", who=GOV,
                allowed=TOO_LARGE, bounded=True) for label, m in members.items()]


ALL = (*TEXT, *INTS)
#: The hostile cases of every write operation: (kinds of hostile value, builder of its requests).
OPS: dict[str, tuple[tuple[str, ...], Callable[..., list[Req]]]] = {
    "POST /api/auth/login": (tuple(TEXT), _login),  # no number in its input
    "POST /api/auth/logout": (ALL, _logout),
    "POST /api/auth/password": (tuple(TEXT), _password),  # no number in its input
    IMPORT: (ALL, _import),
    STUDY: (ALL, _study),
    "POST /api/runs": (ALL, _runs),
    "DELETE /api/runs/{run_id}": (ALL, _run_path("DELETE /api/runs/{run_id}", "/api/runs/{}")),
    "POST /api/runs/{run_id}/cancel": (ALL, _run_path("POST /api/runs/{run_id}/cancel", "/api/runs/{}/cancel")),
}
for _kind, _plural in PLURAL.items():
    OPS[f"POST /api/{_plural}"] = (ALL, _record_create(_kind))
    OPS[f"PUT /api/{_plural}/{{record_id}}"] = (ALL, _record_update(_kind))
    OPS[f"DELETE /api/{_plural}/{{record_id}}"] = (ALL, _record_delete(_kind))
    OPS[f"POST /api/{_plural}/{{record_id}}/comments"] = (ALL, _comment(_kind))

#: Oversized inputs of the importers.
BIG: dict[str, tuple[tuple[str, ...], Callable[..., list[Req]]]] = {
    IMPORT: ((*WORKBOOKS, HUGE_CSV), _import_big),
    STUDY: ((*WORKBOOKS, HUGE_CSV), _study_big),
}

def _cases(table: dict[str, tuple[tuple[str, ...], Callable[..., list[Req]]]]) -> list[Any]:
    return [pytest.param(op, hostile, id=f"{op} <- {hostile}") for op, (kinds, _) in table.items() for hostile in kinds]


# ------------------------------------------------------------------------------------------------ fixtures
def hostile_app(url: str, simulator: Any) -> Any:
    """The workspace app (tests.conftest.make_app) with a login limiter that refused sign-ins cannot trip."""
    from critmin.web.app import create_app
    from critmin.web.db import Database
    from critmin.web.security import LoginLimiter
    from critmin.web.workspace import Workspace

    db = Database(url)
    ws = Workspace(db, sim_factory=lambda: simulator)
    for email, org, role in USERS:
        ws.add_user(email, org, role, PASSWORD)
    return create_app(db=db, workspace=ws, limiter=LoginLimiter(failures=10**6, limits={"acct:": 10**6}))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hostile(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, simulator: Any) -> Iterator[Hostile]:
    """One app per database backend for all the cases of this module (each case compares the rows itself)."""
    from fastapi.testclient import TestClient

    url = module_db_url(request.param, tmp_path_factory, "hostile")
    with pytest.MonkeyPatch.context() as mp:
        cheap_argon2(mp)
        app = hostile_app(url, simulator)
        runner = app.state.runner
        execute = runner.execute

        def cancelled(rid: int, kind: str, p: Any, actor: Any, *args: Any, **kwargs: Any) -> Any:
            runner.cancel(actor, rid)  # a run wrongly accepted is cancelled before it starts, not computed
            return execute(rid, kind, p, actor, *args, **kwargs)

        mp.setattr(runner, "execute", cancelled)
        with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
            yield Hostile(WebClient(client, app), request.param)
        app.state.ws.db.dispose()


# ------------------------------------------------------------------------------------------------ the tests
def run_case(h: Hostile, reqs: list[Req]) -> None:
    """Send the requests: each answer as allowed (a 422 naming the field), importers within their limits; then every
    table as it was and every list and export answering for three organisations."""
    assert reqs
    h.settle()
    before = h.snapshot()
    bad: list[str] = []
    for q in reqs:
        r, seconds, growth = h.send(q)
        what = f"{q.op} [{q.label}] {q.query[:80]}: {r.status_code}"
        if r.status_code not in q.allowed:
            bad.append(f"{what} (expected {describe(q.allowed)}) {r.text[:300]}")
        elif r.status_code == 422 and q.mention and q.mention not in r.text:
            bad.append(f"{what} does not name '{q.mention}': {r.text[:300]}")
        if q.bounded and seconds > MAX_SECONDS:
            bad.append(f"{what} took {seconds:.1f} s (limit {MAX_SECONDS} s)")
        if q.bounded and growth > MAX_GROWTH_MB:
            bad.append(f"{what} grew the process by {growth:.0f} MB (limit {MAX_GROWTH_MB} MB)")
    h.settle()
    after = h.snapshot()
    changed = sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
    if changed:
        bad.append("rows written by refused requests: " + ", ".join(f"{t} {before.get(t, (0,))[0]} -> {after.get(t, (0,))[0]} rows" for t in changed))
    # the export reads the projects table alone: with its rows unchanged it is the one already checked
    bad += h.check_reads(export="projects" in changed)
    assert not bad, f"{len(bad)} of {len(reqs)} requests went wrong:\n  " + "\n  ".join(bad)


def describe(allowed: Container[int]) -> str:
    return f"{allowed.start}-{allowed.stop - 1}" if isinstance(allowed, range) else " or ".join(map(str, allowed))  # type: ignore[attr-defined]


def restore_password(h: Hostile) -> None:
    """A wrongly accepted password change is undone (the other cases sign in with the test password)."""
    from sqlalchemy import select

    from critmin.web import models as m
    from critmin.web.security import verify_password

    with h.ws.db.session() as s:
        ok = verify_password(s.scalar(select(m.User.password_hash).where(m.User.email == PW_USER)), PASSWORD)
    if not ok:
        h.ws.set_password(PW_USER, PASSWORD, keep_session=h.web.token(PW_USER))


@pytest.mark.parametrize(("op", "hostile_value"), _cases(OPS))
def test_hostile_values_are_refused_and_nothing_is_stored(hostile: Hostile, op: str, hostile_value: str) -> None:
    try:
        run_case(hostile, OPS[op][1](hostile, hostile_value))
    finally:
        if op == "POST /api/auth/password":
            restore_password(hostile)


@pytest.mark.parametrize(("op", "hostile_value"), _cases(BIG))
def test_oversized_imports_are_refused_quickly_in_bounded_memory(hostile: Hostile, big_workbooks: dict[tuple[str, str], bytes], op: str,
                                                                  hostile_value: str) -> None:
    run_case(hostile, BIG[op][1](hostile, hostile_value, big_workbooks))


def test_the_bases_of_the_cases_are_valid() -> None:
    """A case's refusal is its hostile value's: the bodies it starts from are accepted (the records' are created
    by the fixture; the runs' and the study's are checked here against their models)."""
    from critmin.study.spec import spec_from_dict
    from critmin.web.jobs import PARAMS
    from critmin.web.schemas import RunIn

    for kind, body in run_bases().items():
        RunIn.model_validate(body)
        PARAMS[kind].model_validate(body["params"])
    spec_from_dict(STUDY_BASE)


def write_operations() -> set[str]:
    """Every POST, PUT, PATCH and DELETE operation of the app: its OpenAPI spec and its routes (which include any
    operation left out of the spec)."""
    from critmin.web.app import create_app
    from critmin.web.db import Database

    db = Database("sqlite://", upgrade=False)  # the routes do not depend on the database
    app = create_app(db=db)
    db.dispose()
    ops = {f"{m.upper()} {p}" for p, item in app.openapi()["paths"].items() for m in item if m in ("post", "put", "patch", "delete")}

    def walk(routes: list[Any]) -> Iterator[tuple[str, str]]:
        for r in routes:
            inner = getattr(r, "original_router", None) or getattr(r, "app", None)  # an included router (FastAPI >= 0.13x), a mount
            if isinstance(getattr(r, "methods", None), set):
                for m in r.methods:
                    yield m, r.path
            elif inner is not None and hasattr(inner, "routes"):
                yield from walk(inner.routes)

    ops |= {f"{m} {p}" for m, p in walk(app.routes) if m in ("POST", "PUT", "PATCH", "DELETE")}
    return ops


def test_every_write_operation_has_hostile_cases() -> None:
    """A new write endpoint needs its table of hostile cases in OPS (and BIG when it imports files)."""
    ops = write_operations()
    assert len(ops) >= 24
    assert ops - set(OPS) == set(), "write operations without hostile cases"
    assert set(OPS) - ops == set(), "hostile cases of operations the app no longer has"
    assert set(BIG) <= ops


def test_every_write_operation_was_exercised(hostile: Hostile, request: pytest.FixtureRequest) -> None:
    """Every write operation whose cases ran on this database was sent its hostile requests (runs last)."""
    ran = {item.callspec.params["op"] for item in request.session.items
           if item.module is request.module and hasattr(item, "callspec") and "op" in item.callspec.params
           and item.callspec.params.get("hostile") == hostile.backend}
    assert ran, "no case of this module ran"
    assert ran <= hostile.exercised, f"never sent: {sorted(ran - hostile.exercised)}"
    if ran >= set(OPS):
        assert write_operations() <= hostile.exercised
    assert not hostile.check_reads(export=True)
