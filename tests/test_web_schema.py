"""Property-based tests of the whole REST API from its OpenAPI spec (schemathesis): requests generated for every
operation, valid and invalid, signed in as a government user on a SQLite workspace, never get a server
error (5xx) and answer as the spec documents. Background runs submitted by the fuzzer are executed with at
most 5 Monte Carlo draws and must not crash."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation

from tests.conftest import PASSWORD, cheap_argon2, make_app

GOV = "gov@us.example"
#: Examples generated per operation (more in a local fuzzing session: CRITMIN_FUZZ_EXAMPLES=500).
MAX_EXAMPLES = int(os.environ.get("CRITMIN_FUZZ_EXAMPLES", "20"))
#: The same generated cases on every run (CI stays reproducible); CRITMIN_FUZZ_RANDOM=1 explores new ones.
DERANDOMIZE = os.environ.get("CRITMIN_FUZZ_RANDOM", "") != "1"
#: Draws a fuzzed run is executed with (its validated parameters may ask for up to MAX_DRAWS).
FUZZ_DRAWS = 5
#: Fuzzed runs executed per kind (later ones are cancelled at their first progress point: a plan takes seconds).
RUNS_PER_KIND = 2


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, simulator: Any) -> Any:
    """The app on a SQLite workspace, its lifespan started (bundled registers loaded)."""
    from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as mp:
        cheap_argon2(mp)
        app = make_app(f"sqlite:///{Path(tmp_path_factory.mktemp('fuzz')) / 'workspace.db'}", simulator)
        runner = app.state.runner
        execute = runner.execute

        executed: dict[str, int] = {}

        def small(rid: int, kind: str, p: Any, actor: Any, inputs: Any, ev: Any = None, rebuild: bool = False) -> None:
            if "draws" in type(p).model_fields:
                p = p.model_copy(update={"draws": min(p.draws, FUZZ_DRAWS)})
            executed[kind] = executed.get(kind, 0) + 1
            if executed[kind] > RUNS_PER_KIND:
                ev.set()  # cancelled at its first progress point
            execute(rid, kind, p, actor, inputs, ev=ev, rebuild=rebuild)

        mp.setattr(runner, "execute", small)
        with TestClient(app, base_url="https://testserver"):
            yield app
        app.state.ws.db.dispose()


@pytest.fixture(scope="module")
def asgi_session(fuzz_app: Any) -> Any:
    """A requests session on the app in process. Not entered: ``case.call(app=...)`` would start the app's lifespan
    again and end it after the test (shutting the job runner down under the module's later tests); the
    fixture's TestClient owns the lifespan."""
    from schemathesis.python import asgi

    return asgi.get_client(fuzz_app)


@pytest.fixture(scope="module")
def gov_headers(fuzz_app: Any) -> dict[str, str]:
    token, _, _ = fuzz_app.state.ws.login(GOV, PASSWORD)
    return {"Authorization": f"Bearer {token}"}


def _spec() -> dict[str, Any]:
    """The app's OpenAPI spec (it does not depend on the database: an in-memory one, never migrated, serves)."""
    from critmin.web.app import create_app
    from critmin.web.db import Database

    return create_app(db=Database("sqlite://", upgrade=False)).openapi()


# (schemathesis.pytest.from_fixture would load the spec from the fixture's app, but its lazy loader sets
# pytest's private Function._nodeid, which pytest 9 no longer has)
schema = schemathesis.openapi.from_dict(_spec())
#: Checks left out, and why:
#: - positive_data_acceptance: the spec's record ``data`` is any JSON object (its fields depend on the record kind
#:   and are validated with the atlas, answering 422 naming them), and generated ids mostly name no record (404);
#: - unsupported_method, allow_header_conformance: Starlette answers a method a path does not have from the first
#:   route of that path (e.g. PUT /api/scenarios/library is tried as PUT /api/scenarios/{record_id}: 422; the Allow
#:   header of GET /api/projects does not list POST, which is a route of its own).
#: - ignored_auth: its probes (the call again without credentials) go to the spec's server by name, not through
#:   the in-process session; test_every_secured_operation_refuses_missing_and_bogus_credentials checks the same.
NOT_CHECKED = [schemathesis.checks.positive_data_acceptance, schemathesis.checks.unsupported_method, schemathesis.checks.allow_header_conformance,
               schemathesis.checks.ignored_auth]


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any, fuzz_app: Any, asgi_session: Any, gov_headers: dict[str, str]) -> None:
    headers = gov_headers
    if case.operation.path == "/api/auth/logout":  # a session of its own to end (the shared one must live on)
        token, _, _ = fuzz_app.state.ws.login(GOV, PASSWORD)
        headers = {"Authorization": f"Bearer {token}"}
    response = case.call(session=asgi_session, base_url="http://testserver", headers=headers)
    assert response.status_code < 500, f"{case.operation.label}: {response.status_code} {response.text[:500]}"
    excluded = list(NOT_CHECKED)
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
        # the mutated header is the Authorization one, which the call above replaces with a valid token:
        # the request sent is valid, so its acceptance says nothing
        excluded.append(schemathesis.checks.negative_data_rejection)
    case.validate_response(response, headers=headers, excluded_checks=excluded)


def test_fuzzed_runs_did_not_crash(fuzz_app: Any, gov_headers: dict[str, str]) -> None:
    """Every run the fuzzer got accepted (valid parameters) finishes without an error (or is cancelled, see
    RUNS_PER_KIND)."""
    import time

    from sqlalchemy import select

    from critmin.web import models as m

    ws = fuzz_app.state.ws
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        with ws.db.session() as s:
            runs = list(s.scalars(select(m.Run)))
        if all(r.status not in ("queued", "running") for r in runs):
            break
        time.sleep(0.2)
    assert runs, "the fuzzer started no run"
    failed = [(r.kind, r.params, r.error) for r in runs if r.status == "failed"]
    assert not failed, failed
    assert {r.status for r in runs} <= {"done", "cancelled"}
    assert any(r.status == "done" and r.cached_from is None for r in runs)



def test_every_secured_operation_refuses_missing_and_bogus_credentials(asgi_session: Any) -> None:
    """Every operation the spec marks as needing the bearer token answers 401 without it and with a bogus one
    (before looking at the path or body: nothing is disclosed to an anonymous caller)."""
    spec = _spec()
    secured = [(path, method) for path, ops in spec["paths"].items() for method, op in ops.items() if op.get("security")]
    assert len(secured) >= 35
    open_ops = {(path, method) for path, ops in spec["paths"].items() for method, op in ops.items() if not op.get("security")}
    assert open_ops == {("/api/health", "get"), ("/api/auth/login", "post")}
    for path, method in secured:
        url = "http://testserver" + path.replace("{record_id}", "1").replace("{run_id}", "1").replace("{chain_id}", "x").replace("{name}", "plan.pdf")
        for headers in ({}, {"Authorization": "Bearer bogus"}):
            r = asgi_session.request(method.upper(), url, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
