"""The ASGI app: the REST API (OpenAPI at ``/openapi.json``, self-hosted docs at ``/docs``) and the dashboard
(``/``), a thin face over critmin's core (docs/web.md).

Every asset the pages load (plotly.js, the world topology, Swagger UI, fonts) is served by the app itself.
"""

from __future__ import annotations

import hmac
import json
from contextlib import asynccontextmanager
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi import Path as FPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from critmin.web import schemas as sc
from critmin.web.access import Actor
from critmin.web.db import Database
from critmin.web.jobs import JobRunner
from critmin.web.security import CSRF_COOKIE, CSRF_HEADER, SECURITY_HEADERS, SESSION_COOKIE, LoginLimiter
from critmin.web.workspace import CACHE_MAX_ENTRIES, Workspace, WorkspaceError

STATIC = Path(__file__).parent / "static"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
PLURAL = {"project": "projects", "need": "needs", "offer": "offers", "scenario": "scenarios"}


class Problem(sc.BaseModel):
    """An error answer: what went wrong and, for invalid input, each field with its message."""

    detail: str
    problems: list[dict[str, Any]] = []


def _err(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


#: Answers to a malformed or invalid request (documented with critmin's error shape, not FastAPI's default 422 schema).
INVALID: dict[int | str, dict[str, Any]] = {400: _err("Malformed request body (not JSON text)"), 422: _err("Invalid input (fields named)")}
ERRORS: dict[int | str, dict[str, Any]] = {401: _err("Not signed in"), 403: _err("Not allowed for this role or organisation"),
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
    auth = request.headers.get("authorization", "")
    token, by_cookie = None, False
    if auth.lower().startswith("bearer "):
        token = auth[7:].strip()
    elif request.cookies.get(SESSION_COOKIE):
        token, by_cookie = request.cookies[SESSION_COOKIE], True
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
#: A record or run id in a path (bounded: the database's integer columns; larger numbers are no id).
Id = Annotated[int, FPath(ge=1, le=sc.INT_MAX)]


def create_app(database_url: str | None = None, seed: bool = True, db: Database | None = None, workspace: Workspace | None = None,
               limiter: LoginLimiter | None = None) -> FastAPI:
    """The app on one database (``database_url``, else $CRITMIN_DATABASE_URL, else a SQLite file); ``seed``
    loads the bundled registers into a new workspace."""
    db = db or Database(database_url)
    ws = workspace or Workspace(db)
    runner = JobRunner(ws)
    limiter = limiter or LoginLimiter()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        runner.recover()
        await run_in_threadpool(lambda: ws.sim)  # build the definitions before the first request
        if seed:
            await run_in_threadpool(ws.seed_bundled)
        yield
        runner.shutdown()

    app = FastAPI(title="critmin workspace API", version=_version(), docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Critical-minerals supply security: the shared workspace of the US-Japan framework (docs/web.md). "
                              "Sign in with POST /api/auth/login, then send `Authorization: Bearer <access_token>`.")
    app.state.ws, app.state.runner, app.state.limiter = ws, runner, limiter
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(WorkspaceError)
    async def _ws_error(request: Request, exc: WorkspaceError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.message, "problems": exc.problems}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        probs = [{"field": ".".join(str(x) for x in e.get("loc", ())), "message": str(e.get("msg", ""))} for e in exc.errors()]
        return JSONResponse({"detail": "invalid request", "problems": probs}, status_code=422)

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
        user_key = "u:" + body.username.strip().lower()
        ip_key = "ip:" + (request.client.host if request.client else "?")
        wait = limiter.retry_after(user_key, ip_key)
        if wait > 0:
            return JSONResponse({"detail": f"too many failed logins; retry in {int(wait) + 1} s", "problems": []}, status_code=429,  # type: ignore[return-value]
                                headers={"Retry-After": str(int(wait) + 1)})
        got = ws.login(body.username, body.password)
        if got is None:
            limiter.failed(user_key, ip_key)
            raise WorkspaceError(401, "wrong username or password")
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
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else request.cookies.get(SESSION_COOKIE, "")
        ws.logout(token)
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        response.delete_cookie(CSRF_COOKIE, path="/", secure=True, samesite="strict")
        return {"status": "signed out"}

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
        return await _json_async(("methods",), _methods)

    @api.get("/minerals/priority", tags=["assess"], responses=ERRORS, response_model=list[dict[str, Any]])
    async def priority(who: Who, method: Annotated[str, Query(max_length=40)] = "critmin",
                 perspective: Annotated[str, Query(pattern="^(USA|JPN|BLOC)$")] = "BLOC",
                 top: Annotated[int, Query(ge=1, le=200)] = 25) -> Response:
        """Priority minerals ranked by one method from one participant's perspective (cached)."""
        if method not in {m["name"] for m in _methods()}:
            raise WorkspaceError(422, f"unknown method '{method}'", [{"field": "query.method", "message": f"use one of {', '.join(m['name'] for m in _methods())}"}])
        return await _json_async(("priority", id(ws.atlas), method, perspective, top), lambda: _priority(ws, method, perspective)[:top])

    @api.get("/atlas/nodes", tags=["assess"], responses=ERRORS, response_model=list[dict[str, Any]])
    async def nodes(who: Who) -> Response:
        """Commodity-stage nodes with country shares (for the map and the scenario builder)."""
        return await _json_async(("nodes", id(ws.atlas)), lambda: _nodes(ws))

    @api.get("/atlas/supply", tags=["assess"], responses=ERRORS, response_model=dict[str, Any])
    async def supply(who: Who, commodity: Annotated[str, Query(max_length=60)], stage: Annotated[str, Query(max_length=40)]) -> Response:
        """Country shares of world supply at one node, with their sources (cached)."""
        def build() -> dict[str, Any]:
            if (commodity, stage) not in {(n["commodity"], n["stage"]) for n in _nodes(ws)}:
                raise WorkspaceError(404, f"no country shares for {commodity}/{stage}")
            return {"commodity": commodity, "stage": stage, "rows": _supply(ws, commodity, stage)}
        return await _json_async(("supply", id(ws.atlas), commodity, stage), build)

    @api.get("/atlas/vulnerabilities", tags=["assess"], responses=ERRORS, response_model=list[dict[str, Any]])
    async def vulnerabilities(who: Who, commodity: Annotated[str, Query(max_length=60)] = "") -> Response:
        """Vulnerabilities by stage: concentration of supply at each commodity-stage node (HHI 0-10,000, HHI_WGI 0-10, top
        country and shares of world supply 0-1: top, top 3, concern, bloc, participants, coverage), with ``chokepoint`` true
        at the stage critmin's method (BLOC perspective) names the commodity's chokepoint; one commodity, or all (cached)."""
        def build() -> list[dict[str, Any]]:
            rows = _vulnerabilities(ws)
            if not commodity:
                return rows
            if commodity not in set(ws.atlas.commodity_ids()):
                raise WorkspaceError(404, f"no commodity '{commodity}'")
            return [r for r in rows if r["commodity_id"] == commodity]
        return await _json_async(("vulnerabilities", id(ws.atlas), commodity), build)

    @api.get("/chains", tags=["assess"], responses=ERRORS, response_model=list[str])
    async def chains(who: Who) -> Response:
        """Supply chains of the atlas."""
        return await _json_async(("chains", id(ws.atlas)), lambda: sorted(str(c) for c in ws.atlas.chain_links["chain_id"].unique()))

    @api.get("/chains/{chain_id}/sankey", tags=["assess"], responses=ERRORS, response_model=dict[str, Any])
    async def sankey(who: Who, chain_id: Annotated[str, FPath(max_length=60)]) -> Response:
        """A plotly Sankey figure of one chain by stage and country (flows drawn in proportion to shares)."""
        def build() -> dict[str, Any]:
            fig = _sankey(ws, chain_id)
            if fig is None:
                raise WorkspaceError(404, f"no chain '{chain_id}' with shares")
            return fig
        return await _json_async(("sankey", id(ws.atlas), chain_id), build)

    @api.get("/chains/{chain_id}/nodes", tags=["assess"], responses=ERRORS, response_model=list[dict[str, Any]])
    async def chain_nodes(who: Who, chain_id: Annotated[str, FPath(max_length=60)]) -> Response:
        """The commodity-stage nodes of one chain (from its links), upstream first: ``step`` 0 has no supplier in the chain."""
        def build() -> list[dict[str, Any]]:
            found = _chain_nodes(ws, chain_id)
            if not found:
                raise WorkspaceError(404, f"no chain '{chain_id}'")
            return found
        return await _json_async(("chain_nodes", id(ws.atlas), chain_id), build)

    @api.get("/scenarios/library", tags=["scenarios"], responses=ERRORS, response_model=sc.Page)
    async def library(who: Who, q: Annotated[str, Query(max_length=100)] = "", family: Annotated[str, Query(pattern="^(|event|generated)$")] = "",
                limit: Annotated[int, Query(ge=1, le=1000)] = 50, offset: Annotated[int, Query(ge=0)] = 0) -> Response:
        """The scenario library (real events and generated scenarios), searchable."""
        def build() -> dict[str, Any]:
            items = _library(ws)
            if family:
                items = [s for s in items if (s["family"] == "event") == (family == "event")]  # generated families are "gen.<country>.<node>"
            if q:
                ql = q.lower()
                items = [s for s in items if ql in s["id"].lower() or ql in s["title"].lower()]
            return {"total": len(items), "items": items[offset: offset + limit]}
        return await _json_async(("library", id(ws.atlas), q, family, limit, offset), build)

    @api.get("/agencies", tags=["portfolio"], responses=ERRORS, response_model=list[dict[str, Any]])
    async def agencies(who: Who) -> Response:
        """Finance agencies, their instruments and bundled budgets (USD; blank where none is published)."""
        return await _json_async(("agencies",), _agencies)

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
    for kind, plural in PLURAL.items():
        _record_routes(api, ws, kind, plural)

    # ---------------------------------------------------------------------------------------- runs
    @api.post("/runs", tags=["runs"], status_code=202, responses=ERRORS)
    def start_run(body: sc.RunIn, who: Who) -> sc.RunOut:
        """Start a background job (simulate, risk, portfolio, stockpile, deliver, match, plan); poll GET /api/runs/{id}."""
        return sc.RunOut(**runner.submit(who, body.kind, body.params))

    @api.get("/runs", tags=["runs"], responses=ERRORS)
    def list_runs(who: Who, kind: Annotated[str, Query(pattern="^(|simulate|risk|portfolio|stockpile|deliver|match|plan)$")] = "",
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0)] = 0) -> sc.Page:
        return sc.Page(**runner.list_runs(who, kind or None, limit, offset))

    @api.get("/runs/{run_id}", tags=["runs"], responses=ERRORS)
    def get_run(run_id: Id, who: Who) -> sc.RunOut:
        return sc.RunOut(**runner.get(who, run_id))

    @api.post("/runs/{run_id}/cancel", tags=["runs"], responses=ERRORS)
    def cancel_run(run_id: Id, who: Who) -> sc.RunOut:
        return sc.RunOut(**runner.cancel(who, run_id))

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
    def audit(who: Who, limit: Annotated[int, Query(ge=1, le=1000)] = 200, offset: Annotated[int, Query(ge=0)] = 0) -> sc.Page:
        """Your organisation's audit log: who changed what, when (newest first)."""
        return sc.Page(**ws.audit(who, limit, offset))

    app.include_router(api)

    # ---------------------------------------------------------------------------------------- pages and assets
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/assets/plotly.min.js", include_in_schema=False)
    def plotly_js() -> Response:
        return Response(_plotly_js(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/assets/topojson/world_110m.json", include_in_schema=False)
    def topojson() -> Response:
        return Response(_topojson(), media_type="application/json", headers={"Cache-Control": "public, max-age=86400"})

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
                           offset: Annotated[int, Query(ge=0)] = 0) -> Response:
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



# -------------------------------------------------------------------------------------------- cached reads
def _version() -> str:
    from critmin import __version__

    return __version__


@lru_cache(maxsize=1)
def _methods() -> list[dict[str, Any]]:
    from critmin.assess.methods.base import METHODS

    return [{"name": k, "title": getattr(v, "title", k), "citation": getattr(v, "citation", "")} for k, v in sorted(METHODS.items())]


_CACHE: dict[tuple[Any, ...], Any] = {}
#: Serialised answers of the cached reads (bounded: cleared when it holds more than _JSON_MAX entries).
_JSON: dict[tuple[Any, ...], bytes] = {}
_JSON_MAX = CACHE_MAX_ENTRIES


async def _json_async(key: tuple[Any, ...], build: Any) -> Response:
    """As :func:`_json`; a cache miss is built in a worker thread, never on the event loop."""
    body = _JSON.get(key)
    if body is not None:
        return Response(body, media_type="application/json")
    return await run_in_threadpool(_json, key, build)


def _json(key: tuple[Any, ...], build: Any) -> Response:
    """A cached read answered from its serialised JSON (built once per key and server process)."""
    body = _JSON.get(key)
    if body is None:
        if len(_JSON) > _JSON_MAX:
            _JSON.clear()
        body = _JSON[key] = json.dumps(build(), ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, media_type="application/json")


def _cached(key: tuple[Any, ...], fn: Any) -> Any:
    if key not in _CACHE:
        _CACHE[key] = fn()
    return _CACHE[key]


def _priority(ws: Workspace, method: str, perspective: str) -> list[dict[str, Any]]:
    from critmin.assess import assess
    from critmin.web.workspace import jsonable

    return _cached((id(ws.atlas), "priority", method, perspective), lambda: jsonable(assess(ws.atlas, perspective, method).to_dict("records")))


def _shares(ws: Workspace) -> Any:
    from critmin.assess.supply import stage_shares_table

    return _cached((id(ws.atlas), "shares"), lambda: stage_shares_table(ws.atlas))


def _nodes(ws: Workspace) -> list[dict[str, Any]]:
    def build() -> list[dict[str, Any]]:
        sh = _shares(ws)
        g = sh.groupby(["commodity_id", "stage"], sort=True).size().reset_index(name="countries")
        names = dict(zip(ws.atlas.commodities["commodity_id"], ws.atlas.commodities["name"], strict=True))
        return [{"commodity": r.commodity_id, "stage": r.stage, "name": names.get(r.commodity_id, r.commodity_id), "countries": int(r.countries)}
                for r in g.itertuples()]
    return _cached((id(ws.atlas), "nodes"), build)


def _supply(ws: Workspace, commodity: str, stage: str) -> list[dict[str, Any]]:
    from critmin.web.workspace import jsonable

    def build() -> list[dict[str, Any]]:
        sh = _shares(ws)
        g = sh[(sh["commodity_id"] == commodity) & (sh["stage"] == stage)]
        return jsonable(g[["country_iso3", "share", "basis", "bound", "year", "source_id"]].to_dict("records"))
    return _cached((id(ws.atlas), "supply", commodity, stage), build)


def _sankey(ws: Workspace, chain_id: str) -> dict[str, Any] | None:
    from critmin.report.writers import _sankey as sankey_fig

    if chain_id not in set(ws.atlas.chain_links["chain_id"]):  # before the cache: it keeps only the atlas's chains
        return None

    def build() -> dict[str, Any] | None:
        fig = sankey_fig(ws.atlas, chain_id)
        return None if fig is None else json.loads(fig.to_json())
    return _cached((id(ws.atlas), "sankey", chain_id), build)


def _vulnerabilities(ws: Workspace) -> list[dict[str, Any]]:
    """``stage_metrics`` of every node (the shares table the other reads use), with the commodity's name and chokepoint."""
    from critmin.assess.supply import stage_metrics
    from critmin.web.workspace import jsonable

    def build() -> list[dict[str, Any]]:
        choke = {r["commodity"]: r["chokepoint_stage"] for r in _priority(ws, "critmin", "BLOC")}
        names = dict(zip(ws.atlas.commodities["commodity_id"], ws.atlas.commodities["name"], strict=True))
        rows = jsonable(stage_metrics(ws.atlas, shares=_shares(ws)).to_dict("records"))
        return [{**r, "name": names.get(r["commodity_id"], r["commodity_id"]), "chokepoint": choke.get(r["commodity_id"]) == r["stage"]} for r in rows]
    return _cached((id(ws.atlas), "vulnerabilities"), build)


def _chain_nodes(ws: Workspace, chain_id: str) -> list[dict[str, Any]]:
    """Nodes of one chain ordered by ``step``, the longest path of links leading to the node (then commodity, stage)."""
    links = ws.atlas.chain_links
    if chain_id not in set(links["chain_id"]):  # before the cache: it keeps only the atlas's chains
        return []

    def build() -> list[dict[str, Any]]:
        from critmin.atlas.schema import STAGE_ORDER

        edges = [((str(r.from_commodity), str(r.from_stage)), (str(r.to_commodity), str(r.to_stage)))
                 for r in links[links["chain_id"] == chain_id].itertuples()]
        step = {n: 0 for e in edges for n in e}
        for _ in range(len(step)):  # longest path in a DAG by relaxation (bounded: a cycle cannot loop forever)
            changed = False
            for a, b in edges:
                if step[b] < step[a] + 1:
                    step[b], changed = step[a] + 1, True
            if not changed:
                break
        names = dict(zip(ws.atlas.commodities["commodity_id"], ws.atlas.commodities["name"], strict=True))
        order = sorted(step, key=lambda n: (step[n], n[0], STAGE_ORDER.get(n[1], 99), n[1]))
        return [{"commodity": c, "stage": st, "name": names.get(c, c), "step": step[(c, st)]} for c, st in order]
    return _cached((id(ws.atlas), "chain_nodes", chain_id), build)


def _library(ws: Workspace) -> list[dict[str, Any]]:
    def build() -> list[dict[str, Any]]:
        return [{"id": s.id, "title": s.title, "commodity": s.commodity, "stage": s.stage, "restrictors": s.restrictors, "targets": s.targets,
                 "regime": s.regime, "duration_months": s.duration_months, "family": s.family, "status": s.status} for s in ws.sim.library()]
    return _cached((id(ws.atlas), "library"), build)


@lru_cache(maxsize=1)
def _agencies() -> list[dict[str, Any]]:
    from critmin.portfolio.model import read_agencies
    from critmin.web.workspace import jsonable

    return jsonable(read_agencies().to_dict("records"))


@lru_cache(maxsize=1)
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


@lru_cache(maxsize=1)
def _topojson() -> bytes:
    from critmin.report.writers import world_topojson

    return world_topojson().encode("utf-8")
