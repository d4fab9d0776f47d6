"""The ASGI app: the REST API (OpenAPI at ``/openapi.json``, self-hosted docs at ``/docs``) and the dashboard
(``/``), a thin face over critmin's core (docs/web.md).

Every asset the pages load (plotly.js, the world topology, Swagger UI, fonts) is served by the app itself.
"""

from __future__ import annotations

import hmac
import json
from contextlib import asynccontextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as FPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from critmin.inputs import printable
from critmin.web import reads as rd
from critmin.web import schemas as sc
from critmin.web.access import Actor
from critmin.web.db import Database
from critmin.web.jobs import MAX_ACTIVE_RUNS, JobRunner
from critmin.web.security import CSRF_COOKIE, CSRF_HEADER, SECURITY_HEADERS, SESSION_COOKIE, LoginLimiter
from critmin.web.worker import WorkerSetup
from critmin.web.workspace import Workspace, WorkspaceError

STATIC = Path(__file__).parent / "static"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
PLURAL = {"project": "projects", "need": "needs", "offer": "offers", "scenario": "scenarios"}


class Problem(sc.BaseModel):
    """An error answer: what went wrong and, for invalid input, each field with its message."""

    detail: str
    problems: list[dict[str, Any]] = []


def _printable(x: Any) -> Any:
    """An error answer whose texts quote user input escaped where the input broke the text rules (a lone
    surrogate quoted in a message made the error answer itself fail: 500 instead of 422; issue 14)."""
    if isinstance(x, str):
        return printable(x)
    if isinstance(x, dict):
        return {_printable(k): _printable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_printable(v) for v in x]
    return x


def _err(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


#: Answers to a malformed or invalid request (documented with critmin's error shape, not FastAPI's default 422 schema).
INVALID: dict[int | str, dict[str, Any]] = {400: _err("Malformed request body (not JSON text)"), 422: _err("Invalid input (fields named)")}
#: A run refused because its organisation has as many runs queued or running as its quota allows.
BUSY: dict[int | str, dict[str, Any]] = {429: _err("Your organisation's runs queued or running are at its quota (critmin serve --max-runs)")}
ERRORS: dict[int | str, dict[str, Any]] = {401: _err("Not signed in"), 403: _err("Not allowed for this role or organisation, or past its quota"),
                                           404: _err("No such record, or not visible to you"), **INVALID}


class SecurityHeaders:
    """Pure ASGI middleware adding the security headers to every response (and no-store to API answers)."""

    def __init__(self, app: Any):
        self.app = app
        self.extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                add = [(k, v) for k, v in self.extra if k not in have]
                if api and b"cache-control" not in have:
                    add.append((b"cache-control", b"no-store"))
                message["headers"] = list(message.get("headers", [])) + add
            await send(message)

        await self.app(scope, receive, send_with_headers)


#: Largest request body the API reads (the register import's limit plus room for its envelope).
MAX_BODY_BYTES = 12 * 2**20
#: API paths that may be called without a session (everything else needs a bearer token or the cookie).
PUBLIC_API = ("/api/auth/login", "/api/health")


class BodyGuard:
    """Pure ASGI middleware: before any body is read, a request to the API without credentials answers 401
    and one whose declared size exceeds :data:`MAX_BODY_BYTES` answers 413; a body sent without a declared
    size is cut off at the limit. Four parallel 512 MiB bodies were read whole before their 401 (issue 14)."""

    def __init__(self, app: Any):
        self.app = app

    @staticmethod
    async def _answer(send: Any, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []  # as the app's own 401 answers
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close"),
                                *extra]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        path = scope["path"]
        if path.startswith("/api/") and path not in PUBLIC_API:
            has_cookie = SESSION_COOKIE.encode() + b"=" in headers.get(b"cookie", b"")
            if b"authorization" not in headers and not has_cookie:
                await self._answer(send, 401, "sign in first: POST /api/auth/login, then send the token or the session cookie")
                return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            await self._answer(send, 413, f"the request body is larger than {MAX_BODY_BYTES // 2**20} MiB")
            return
        seen = 0

        async def bounded_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_BODY_BYTES:  # HTTPException passes FastAPI's body parsing unchanged
                    raise HTTPException(413, f"the request body is larger than {MAX_BODY_BYTES // 2**20} MiB")
            return message

        await self.app(scope, bounded_receive, send)


async def _uploaded(request: Request, empty_message: str) -> bytes:
    """An uploaded file sent as the request body, read up to :data:`IMPORT_MAX_BYTES` (413 beyond, never a
    whole oversized body; 422 when empty)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > IMPORT_MAX_BYTES:
            raise WorkspaceError(413, f"the file is larger than {IMPORT_MAX_BYTES // 2**20} MiB")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise WorkspaceError(422, empty_message, [{"field": "body", "message": "empty"}])
    return body


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for d in dependant.dependencies:
        names |= _query_names(d)
    return names


async def no_unknown_query(request: Request) -> None:
    """A query parameter the operation does not declare is refused (422), not silently ignored: a typo such
    as ``?perspectiv=USA`` would otherwise answer for the default perspective."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    allowed = _query_names(dependant)
    bad = sorted({k for k in request.query_params.keys() if k not in allowed})
    if bad:
        raise WorkspaceError(422, "unknown query parameter", [{"field": f"query.{k}", "message": f"not a parameter of this operation (it takes: {', '.join(sorted(allowed)) or 'none'})"}
                                                             for k in bad])


#: Declares bearer authentication in the OpenAPI spec (the "Authorize" button of /docs); the token is read below.
BEARER = HTTPBearer(auto_error=False, description="access_token from POST /api/auth/login")


async def current_actor(request: Request, _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)] = None) -> Actor:
    """The signed-in user: bearer token, else session cookie (with the CSRF header on changes). A session
    known to this process is answered from memory; otherwise the database is read in a worker thread."""
    ws: Workspace = request.app.state.ws
    token = _session_token(request)
    by_cookie = not request.headers.get("authorization", "").lower().startswith("bearer ")
    found = None
    if token:
        found = ws.cached_actor(token)
        if found is None:
            found = await run_in_threadpool(ws.actor_for, token)
    if found is None:
        raise WorkspaceError(401, "sign in first (POST /api/auth/login)")
    who, csrf = found
    if by_cookie and request.method in UNSAFE:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent, csrf):
            raise WorkspaceError(403, f"missing or wrong {CSRF_HEADER} header (cookie sessions must send it)")
    return who

Who = Annotated[Actor, Depends(current_actor)]
#: Largest register file accepted by POST /projects/import (a workbook of thousands of projects is well under it).
IMPORT_MAX_BYTES = 10 * 2**20
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: A record or run id in a path (bounded: the database's integer columns; larger numbers are no id).
Id = Annotated[int, FPath(ge=1, le=sc.INT_MAX)]


def create_app(database_url: str | None = None, seed: bool = True, db: Database | None = None, workspace: Workspace | None = None,
               limiter: LoginLimiter | None = None, workers: int = 1, jobs: str = "thread", setup: WorkerSetup | None = None,
               dask_address: str | None = None, max_runs: int = MAX_ACTIVE_RUNS, max_records: int | None = None) -> FastAPI:
    """The app on one database (``database_url``, else $CRITMIN_DATABASE_URL, else a SQLite file); ``seed``
    loads the bundled registers into a new workspace; ``workers`` runs execute at the same time, in this
    process's threads (``jobs="thread"``), in worker processes (``"process"``, what ``critmin serve`` uses) or on
    a Dask cluster (``"dask"``, ``dask_address``). ``setup`` tells workers how to build the definitions
    (default: the bundled atlas and parameters on this database). ``max_runs``: runs one organisation may
    have queued or running; ``max_records``: records of one kind one organisation may hold (default: the
    workspace's own, ``MAX_RECORDS`` unless it was built with another)."""
    db = db or Database(database_url)
    ws = workspace or Workspace(db)
    if max_records is not None:
        ws.max_records = max_records
    reads = ws.reads
    if jobs != "thread" and setup is None:
        setup = WorkerSetup(db.url)
    runner = JobRunner(ws, workers=workers, jobs=jobs, setup=setup, dask_address=dask_address, max_active=max_runs)
    limiter = limiter or LoginLimiter()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        runner.recover()
        await run_in_threadpool(lambda: ws.sim)  # build the definitions before the first request
        await run_in_threadpool(runner.start)  # worker processes build theirs meanwhile
        if seed:
            await run_in_threadpool(ws.seed_bundled)
        yield
        runner.shutdown()

    app = FastAPI(title="critmin workspace API", version=_version(), docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Critical-minerals supply security: the shared workspace of the US-Japan framework (docs/web.md). "
                              "Sign in with POST /api/auth/login, then send `Authorization: Bearer <access_token>`.")
    app.state.ws, app.state.runner, app.state.limiter = ws, runner, limiter
    app.add_middleware(BodyGuard)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(WorkspaceError)
    async def _ws_error(request: Request, exc: WorkspaceError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(_printable({"detail": exc.message, "problems": exc.problems}), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        probs = [{"field": ".".join(str(x) for x in e.get("loc", ())), "message": str(e.get("msg", ""))} for e in exc.errors()]
        return JSONResponse(_printable({"detail": "invalid request", "problems": probs}), status_code=422)

    api = APIRouter(prefix="/api", dependencies=[Depends(no_unknown_query)])

    # ---------------------------------------------------------------------------------------- auth

    @api.get("/health", tags=["system"])
    async def health() -> dict[str, Any]:
        """Liveness and the database it uses (no login)."""
        return {"status": "ok", "version": _version(), "database": db.backend}

    @api.post("/auth/login", tags=["auth"], responses={**INVALID, 401: {"model": Problem}, 429: {"model": Problem}})
    def login(body: sc.LoginIn, request: Request, response: Response) -> sc.LoginOut:
        """Sign in with email and password: a bearer token in the body, and the same session as a Secure,
        HttpOnly cookie (cookie requests that change anything must send X-CSRF-Token)."""
        ip = request.client.host if request.client else "?"
        # per address, per (address, account) and, with a higher bound, per account (security.py)
        user_key, ip_key = f"u:{ip}|{body.username.strip().lower()}", "ip:" + ip
        acct_key = "acct:" + body.username.strip().lower()
        wait, stamp = limiter.attempt(user_key, ip_key, acct_key)
        if wait > 0:
            return _too_many(wait, "failed logins")  # type: ignore[return-value]
        got = ws.login(body.username, body.password)
        if got is None:
            raise WorkspaceError(401, "wrong username or password")  # the attempt stays counted
        limiter.forgive(stamp, ip_key)
        limiter.succeeded(user_key)
        token, sess, who = got
        age = int((sess.expires_at - sess.created_at).total_seconds())
        response.set_cookie(SESSION_COOKIE, token, max_age=age, httponly=True, secure=True, samesite="strict", path="/")
        response.set_cookie(CSRF_COOKIE, sess.csrf_token, max_age=age, httponly=False, secure=True, samesite="strict", path="/")
        return sc.LoginOut(access_token=token, csrf_token=sess.csrf_token, expires_at=sess.expires_at.isoformat(),
                           user=sc.UserOut(id=who.user_id, email=who.email, org=who.org_name, role=who.role))

    @api.post("/auth/logout", tags=["auth"], responses=ERRORS)
    def logout(request: Request, response: Response, who: Who) -> dict[str, str]:
        """End this session (the token stops working)."""
        ws.logout(_session_token(request))
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        response.delete_cookie(CSRF_COOKIE, path="/", secure=True, samesite="strict")
        return {"status": "signed out"}

    @api.post("/auth/password", tags=["auth"], responses={**ERRORS, 429: {"model": Problem}})
    def change_password(body: sc.PasswordChangeIn, request: Request, who: Who) -> dict[str, Any]:
        """Change your own password: the current one must be right (403 otherwise; wrong answers count as failed
        logins for the rate limit). Every other session of yours ends; this one stays signed in."""
        ip = request.client.host if request.client else "?"
        user_key, ip_key, acct_key = f"u:{ip}|{who.email}", "ip:" + ip, "acct:" + who.email
        wait, stamp = limiter.attempt(user_key, ip_key, acct_key)
        if wait > 0:
            return _too_many(wait, "failed attempts")  # type: ignore[return-value]
        try:
            ended = ws.change_password(who, _session_token(request), body.current_password, body.new_password)
        except WorkspaceError as e:
            if e.status != 403:  # only a wrong current password is a failed guess
                limiter.forgive(stamp, user_key, ip_key, acct_key)
            raise
        limiter.forgive(stamp, ip_key)
        limiter.succeeded(user_key)
        return {"status": "password changed", "other_sessions_ended": ended}

    @api.get("/users", tags=["auth"], responses=ERRORS)
    def users(who: Who) -> list[sc.ColleagueOut]:
        """The users of your organisation (email, role, active). Users are added, disabled and given roles with
        ``critmin user`` on the server."""
        return [sc.ColleagueOut(**{k: u[k] for k in ("email", "role", "active", "created_at")}) for u in ws.users(org=who.org_name)]

    @api.get("/auth/me", tags=["auth"], responses=ERRORS)
    def me(who: Who) -> sc.UserOut:
        return sc.UserOut(id=who.user_id, email=who.email, org=who.org_name, role=who.role)

    @api.get("/orgs", tags=["auth"], responses=ERRORS)
    def orgs(who: Who) -> list[dict[str, Any]]:
        """Organisations of the workspace (to share confidential records with)."""
        return ws.organisations()

    # ---------------------------------------------------------------------------------------- atlas reads
    @api.get("/methods", tags=["assess"], responses=ERRORS, response_model=list[dict[str, Any]])
    async def methods(who: Who) -> Response:
        """Criticality methods that rank minerals (docs/methods.md)."""
        return await reads.answer(("methods",), rd.methods)

    @api.get("/minerals/priority", tags=["assess"], responses=ERRORS, response_model=list[dict[str, Any]])
    async def priority(who: Who, method: Annotated[str, Query(max_length=40)] = "critmin",
                 perspective: Annotated[str, Query(pattern="^(USA|JPN|BLOC)$")] = "BLOC",
                 top: Annotated[int, Query(ge=1, le=200)] = 25) -> Response:
        """Priority minerals ranked by one method from one participant's perspective (cached)."""
        if method not in {m["name"] for m in rd.methods()}:
            raise WorkspaceError(422, f"unknown method '{method}'", [{"field": "query.method", "message": f"use one of {', '.join(m['name'] for m in rd.methods())}"}])
        return await reads.answer(("priority", method, perspective, top), lambda: reads.priority(method, perspective)[:top])

    @api.get("/atlas/nodes", tags=["assess"], responses=ERRORS, response_model=list[dict[str, Any]])
    async def nodes(who: Who) -> Response:
        """Commodity-stage nodes with country shares (for the map and the scenario builder)."""
        return await reads.answer(("nodes",), reads.nodes)

    @api.get("/atlas/supply", tags=["assess"], responses=ERRORS, response_model=dict[str, Any])
    async def supply(who: Who, commodity: Annotated[str, Query(max_length=60)], stage: Annotated[str, Query(max_length=40)]) -> Response:
        """Country shares of world supply at one node, with their sources (cached)."""
        def build() -> dict[str, Any]:
            if (commodity, stage) not in {(n["commodity"], n["stage"]) for n in reads.nodes()}:
                raise WorkspaceError(404, f"no country shares for {commodity}/{stage}")
            return {"commodity": commodity, "stage": stage, "rows": reads.supply(commodity, stage)}
        return await reads.answer(("supply", commodity, stage), build)

    @api.get("/atlas/vulnerabilities", tags=["assess"], responses=ERRORS, response_model=list[dict[str, Any]])
    async def vulnerabilities(who: Who, commodity: Annotated[str, Query(max_length=60)] = "") -> Response:
        """Vulnerabilities by stage: concentration of supply at each commodity-stage node (HHI 0-10,000, HHI_WGI 0-10, top
        country and shares of world supply 0-1: top, top 3, concern, bloc, participants, coverage), with ``chokepoint`` true
        at the stage critmin's method (BLOC perspective) names the commodity's chokepoint; one commodity, or all (cached)."""
        def build() -> list[dict[str, Any]]:
            rows = reads.vulnerabilities()
            if not commodity:
                return rows
            if commodity not in reads.commodity_names():
                raise WorkspaceError(404, f"no commodity '{commodity}'")
            return [r for r in rows if r["commodity_id"] == commodity]
        return await reads.answer(("vulnerabilities", commodity), build)

    @api.get("/chains", tags=["assess"], responses=ERRORS, response_model=list[str])
    async def chains(who: Who) -> Response:
        """Supply chains of the atlas."""
        return await reads.answer(("chains",), reads.chains)

    @api.get("/chains/{chain_id}/sankey", tags=["assess"], responses=ERRORS, response_model=dict[str, Any])
    async def sankey(who: Who, chain_id: Annotated[str, FPath(max_length=60)]) -> Response:
        """A plotly Sankey figure of one chain by stage and country (flows drawn in proportion to shares)."""
        def build() -> dict[str, Any]:
            fig = reads.sankey(chain_id)
            if fig is None:
                raise WorkspaceError(404, f"no chain '{chain_id}' with shares")
            return fig
        return await reads.answer(("sankey", chain_id), build)

    @api.get("/chains/{chain_id}/nodes", tags=["assess"], responses=ERRORS, response_model=list[dict[str, Any]])
    async def chain_nodes(who: Who, chain_id: Annotated[str, FPath(max_length=60)]) -> Response:
        """The commodity-stage nodes of one chain (from its links), upstream first: ``step`` 0 has no supplier in the chain."""
        def build() -> list[dict[str, Any]]:
            found = reads.chain_nodes(chain_id)
            if not found:
                raise WorkspaceError(404, f"no chain '{chain_id}'")
            return found
        return await reads.answer(("chain_nodes", chain_id), build)

    @api.get("/scenarios/library", tags=["scenarios"], responses=ERRORS, response_model=sc.Page)
    async def library(who: Who, q: Annotated[str, Query(max_length=100)] = "", family: Annotated[str, Query(pattern="^(|event|generated)$")] = "",
                limit: Annotated[int, Query(ge=1, le=1000)] = 50, offset: Annotated[int, Query(ge=0, le=sc.INT_MAX)] = 0) -> Response:
        """The scenario library (real events and generated scenarios), searchable."""
        def build() -> dict[str, Any]:
            items = reads.library()
            if family:
                items = [s for s in items if (s["family"] == "event") == (family == "event")]  # generated families are "gen.<country>.<node>"
            if q:
                ql = q.lower()
                items = [s for s in items if ql in s["id"].lower() or ql in s["title"].lower()]
            return {"total": len(items), "items": items[offset: offset + limit]}
        return await reads.answer(("library", q, family, limit, offset), build)

    @api.get("/parameters", tags=["scenarios"], responses=ERRORS, response_model=dict[str, Any])
    async def parameters(who: Who) -> Response:
        """The simulator's model parameters with their sources (rows of critmin's parameter table) and each
        name's admissible range; a run's ``params.parameters`` overrides rows by (name, scope)."""
        return await reads.answer(("parameters",), reads.parameters)

    @api.get("/blocs", tags=["assess"], responses=ERRORS, response_model=dict[str, Any])
    async def blocs(who: Who) -> Response:
        """Bloc membership (participants, like-minded partners, countries of concern); a run's ``params.blocs``
        replaces the members of ``concern`` and/or ``like_minded`` for that run."""
        return await reads.answer(("blocs",), reads.blocs)

    @api.get("/agencies", tags=["portfolio"], responses=ERRORS, response_model=list[dict[str, Any]])
    async def agencies(who: Who) -> Response:
        """Finance agencies, their instruments and bundled budgets (USD; blank where none is published)."""
        return await reads.answer(("agencies",), rd.agencies)

    @api.get("/buyers", tags=["records"], responses=ERRORS)
    def buyers(who: Who) -> list[dict[str, Any]]:
        """Buyers: the needs you may read, grouped by buyer name and country."""
        rows, _, _ = ws.visible_rows(who, "need")
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for d in rows:
            b = out.setdefault((d["name"], d["country_iso3"]), {"name": d["name"], "country_iso3": d["country_iso3"], "needs": 0, "demand_t_per_year": 0.0})
            b["needs"] += 1
            b["demand_t_per_year"] += float(d.get("demand_t_per_year") or 0.0)
        return sorted(out.values(), key=lambda b: (b["country_iso3"], b["name"]))

    # ---------------------------------------------------------------------------------------- records
    @api.get("/projects/export.xlsx", tags=["records"], responses=ERRORS, response_class=Response)
    def export_projects(who: Who) -> Response:
        """The projects you may read, with their support actions, as the register's Excel template (sheets
        projects, support and README; drop-down lists): fill it in and send it back to POST /projects/import."""
        return Response(ws.export_projects(who), media_type=XLSX, headers={"Content-Disposition": 'attachment; filename="projects.xlsx"'})

    @api.post("/projects/import", tags=["records"], responses={**ERRORS, 413: {"model": Problem}},
              openapi_extra={"requestBody": {"required": True, "description": "The bytes of the .xlsx workbook or .csv table (any content type)",
                                             "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def import_projects(request: Request, who: Who, filename: Annotated[str, Query(min_length=1, max_length=200, pattern=sc.TEXT)],
                              confidential: bool = False, shared_with: Annotated[list[sc.OrgName] | None, Query(max_length=50)] = None) -> dict[str, Any]:
        """Import a register workbook (.xlsx, as from GET /projects/export.xlsx) or a projects CSV, sent as the
        request body: every row checked as `critmin projects import` checks it (422 lists each problem by sheet,
        cell and field), then merged by project id in one transaction (new ids created as yours, with
        ``confidential`` and ``shared_with``; ids you may edit updated; any id you may not edit: 409, nothing
        written)."""
        body = await _uploaded(request, "send the file as the request body")
        return await run_in_threadpool(ws.import_projects, who, body, filename, confidential, shared_with)

    # ---------------------------------------------------------------------------------------- studies
    @api.get("/study.zip", tags=["runs"], responses=ERRORS, response_class=Response)
    def export_study(who: Who) -> Response:
        """The workspace as a study (`critmin study init` layout, zipped): study.yaml, the projects, support
        actions and needs you may read, the bundled budgets, blocs and lists. Run it with
        `critmin plan --study study.yaml`, or edit it and send it back to POST /study/plan."""
        from critmin._dates import current_month
        from critmin.web.study_io import study_zip

        body = study_zip(ws.frames(who), current_month())
        return Response(body, media_type="application/zip", headers={"Content-Disposition": 'attachment; filename="study.zip"'})

    @api.post("/study/plan", tags=["runs"], status_code=202, responses={**ERRORS, **BUSY, 413: {"model": Problem}},
              openapi_extra={"requestBody": {"required": True, "description": "The bytes of a zipped study folder (study.yaml and its inputs; any content type)",
                                             "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def plan_from_study(request: Request, who: Who,
                              filename: Annotated[str, Query(min_length=1, max_length=200, pattern=sc.TEXT)] = "study.zip") -> sc.RunOut:
        """Run the coordinated plan on an uploaded study (its register, buyers, budgets, parameters, blocs,
        critical-mineral lists and stock policy): every input is checked first (422 names the file, row and
        field); the run is confidential to your organisation. Poll GET /api/runs/{id}."""
        from critmin.web.study_io import study_from_zip

        body = await _uploaded(request, "send the zipped study as the request body")
        study, sha = await run_in_threadpool(study_from_zip, body, filename)
        return sc.RunOut(**runner.submit_study(who, study, filename, sha, body))

    for kind, plural in PLURAL.items():
        _record_routes(api, ws, kind, plural)

    # ---------------------------------------------------------------------------------------- runs
    @api.post("/runs", tags=["runs"], status_code=202, responses={**ERRORS, **BUSY})
    def start_run(body: sc.RunIn, who: Who) -> sc.RunOut:
        """Start a background job (simulate, risk, portfolio, stockpile, deliver, match, plan, respond); poll GET /api/runs/{id}."""
        return sc.RunOut(**runner.submit(who, body.kind, body.params))

    @api.get("/runs", tags=["runs"], responses=ERRORS)
    def list_runs(who: Who, kind: Annotated[str, Query(pattern="^(|simulate|risk|portfolio|stockpile|deliver|match|plan|respond)$")] = "",
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0, le=sc.INT_MAX)] = 0) -> sc.Page:
        return sc.Page(**runner.list_runs(who, kind or None, limit, offset))

    @api.get("/runs/{run_id}", tags=["runs"], responses=ERRORS)
    def get_run(run_id: Id, who: Who) -> sc.RunOut:
        return sc.RunOut(**runner.get(who, run_id))

    @api.post("/runs/{run_id}/cancel", tags=["runs"], responses=ERRORS)
    def cancel_run(run_id: Id, who: Who) -> sc.RunOut:
        return sc.RunOut(**runner.cancel(who, run_id))

    @api.delete("/runs/{run_id}", tags=["runs"], status_code=204, responses={**ERRORS, 409: _err("Still queued or running")})
    def delete_run(run_id: Id, who: Who) -> Response:
        """Delete a finished run of your organisation, with its result and files (audited)."""
        runner.delete(who, run_id)
        return Response(status_code=204)

    @api.get("/runs/{run_id}/result", tags=["runs"], responses={**ERRORS, 409: _err("Not finished"), 410: _err("The result is no longer stored")})
    def run_result(run_id: Id, who: Who) -> dict[str, Any]:
        """The stored result with the run's parameters, inputs digest and data version."""
        return runner.result(who, run_id)

    @api.get("/runs/{run_id}/files/{name}", tags=["runs"], responses=ERRORS, response_class=Response)
    def run_file(run_id: Id, name: Annotated[str, FPath(max_length=100)], who: Who) -> Response:
        """A file the run wrote (plan.pdf, plan.xlsx, plan.html, plan.json)."""
        content, media = runner.file(who, run_id, name)
        return Response(content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @api.get("/audit", tags=["auth"], responses=ERRORS)
    def audit(who: Who, limit: Annotated[int, Query(ge=1, le=1000)] = 200, offset: Annotated[int, Query(ge=0, le=sc.INT_MAX)] = 0) -> sc.Page:
        """Your organisation's audit log: who changed what, when (newest first)."""
        return sc.Page(**ws.audit(who, limit, offset))

    app.include_router(api)

    # ---------------------------------------------------------------------------------------- pages and assets
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/assets/plotly.min.js", include_in_schema=False)
    def plotly_js() -> Response:
        return Response(rd.plotly_js(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/assets/topojson/world_110m.json", include_in_schema=False)
    def topojson() -> Response:
        return Response(rd.topojson(), media_type="application/json", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse((STATIC / "docs.html").read_text(encoding="utf-8"))

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app


def _record_routes(api: APIRouter, ws: Workspace, kind: str, plural: str) -> None:
    tag: list[str | Enum] = [plural]

    @api.get(f"/{plural}", tags=tag, responses=ERRORS, name=f"list_{plural}", response_model=sc.Page)
    async def list_records(who: Who, q: Annotated[str, Query(max_length=100)] = "", limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
                           offset: Annotated[int, Query(ge=0, le=sc.INT_MAX)] = 0) -> Response:
        """The records you may read (cached in memory until one changes)."""
        body = ws.cached_list(who, kind, q, limit, offset) or await run_in_threadpool(ws.list_records_json, who, kind, q, limit, offset)
        return Response(body, media_type="application/json")

    @api.post(f"/{plural}", tags=tag, status_code=201, responses={**ERRORS, 409: {"description": "The id exists"}}, name=f"create_{kind}")
    def create(body: sc.RecordIn, who: Who) -> sc.RecordOut:
        return sc.RecordOut(**ws.create_record(who, kind, body.data, body.confidential, body.shared_with))

    @api.get(f"/{plural}/{{record_id}}", tags=tag, responses=ERRORS, name=f"get_{kind}")
    def get(record_id: Id, who: Who) -> sc.RecordOut:
        return sc.RecordOut(**ws.get_record(who, kind, record_id))

    @api.put(f"/{plural}/{{record_id}}", tags=tag, responses={**ERRORS, 409: {"description": "Changed by someone else since your version"}},
             name=f"update_{kind}")
    def update(record_id: Id, body: sc.RecordUpdate, who: Who) -> sc.RecordOut:
        return sc.RecordOut(**ws.update_record(who, kind, record_id, body.version, body.data, body.confidential, body.shared_with))

    @api.delete(f"/{plural}/{{record_id}}", tags=tag, status_code=204, responses={**ERRORS, 409: {"description": "Changed by someone else"}},
                name=f"delete_{kind}", response_class=Response)
    def delete(record_id: Id, who: Who, version: Annotated[int, Query(ge=1, le=sc.INT_MAX)]) -> Response:
        ws.delete_record(who, kind, record_id, version)
        return Response(status_code=204)

    @api.get(f"/{plural}/{{record_id}}/comments", tags=tag, responses=ERRORS, name=f"comments_{kind}")
    def comments(record_id: Id, who: Who) -> list[sc.CommentOut]:
        return [sc.CommentOut(**c) for c in ws.comments(who, kind, record_id)]

    @api.post(f"/{plural}/{{record_id}}/comments", tags=tag, status_code=201, responses=ERRORS, name=f"comment_{kind}")
    def comment(record_id: Id, body: sc.CommentIn, who: Who) -> sc.CommentOut:
        return sc.CommentOut(**ws.add_comment(who, kind, record_id, body.body))



# -------------------------------------------------------------------------------------------- helpers
def _too_many(wait: float, what: str) -> JSONResponse:
    """429 with Retry-After (whole seconds, rounded up) for a rate-limited login or password change."""
    seconds = int(wait) + 1
    return JSONResponse({"detail": f"too many {what}; retry in {seconds} s", "problems": []}, status_code=429, headers={"Retry-After": str(seconds)})


def _session_token(request: Request) -> str:
    """The session token of a request: the bearer token, else the session cookie."""
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else request.cookies.get(SESSION_COOKIE, "")


def _version() -> str:
    from critmin.version import __version__

    return __version__
