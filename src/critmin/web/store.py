"""The shared state of the workspace: its errors, limits and caches, the simulator, the organisation lookup
and the audit log (one transaction per change and its audit entry, :meth:`Database.session`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from critmin.errors import CritminError
from critmin.web import models as m
from critmin.web.access import Actor
from critmin.web.db import Database
from critmin.web.reads import AtlasReads
from critmin.web.values import jsonable

#: Seconds a signed-in session is trusted from memory before the database is asked again (a sign-out in
#: this process takes effect at once; a session deleted in the database directly, within this time).
SESSION_CACHE_S = 10.0
#: Seconds a record list is served from memory when no record changed in this process.
RECORDS_CACHE_S = 2.0
#: Bound on each in-memory cache (sessions, record lists); when exceeded the cache is emptied and refills.
#: A memory guard, not a tuning figure.
CACHE_MAX_ENTRIES = 2000
#: Bound on the bytes of record-list pages kept (a page of 5,000 records is a few MB).
LIST_CACHE_MAX_BYTES = 64 * 2**20
#: The organisation that owns the bundled registers loaded into a new workspace (shared, not confidential).
BUNDLED_ORG = "critmin bundled data"
#: Longest record id (the width of the ``key`` column) and the field of ``data`` that holds it, per kind.
KEY_MAX = 120
KEY_FIELD = {"project": "project_id", "need": "buyer_id", "offer": "offer_id", "scenario": "id"}


class WorkspaceError(CritminError):
    """A request the workspace refuses; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str, problems: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.message, self.problems = status, message, problems or []


def problems_of(exc: ValidationError, prefix: str = "data") -> list[dict[str, Any]]:
    """A pydantic error as the API's problem list, each field named from ``prefix`` (``data.country_iso3``; a
    bad key of a mapping is named by the key itself, without pydantic's ``[key]`` marker)."""
    from critmin.portfolio.register import error_message

    return [{"field": ".".join([prefix, *(str(x) for x in e["loc"] if x != "[key]")]), "message": error_message(e)} for e in exc.errors(include_url=False)]


#: Records of one kind (projects, needs, offers, scenarios) and comments one organisation may hold
#: (``critmin serve --max-records``): a bound on what one writer can make every run and list carry. The
#: bundled register holds 71 projects; a national agency's pipeline is in the hundreds.
MAX_RECORDS = 5000


class WorkspaceState:
    """What every part of the workspace shares: the database, the caches and their counters (set by
    :class:`critmin.web.workspace.Workspace`), the organisation lookup and the audit log."""

    db: Database
    max_records: int
    generation: int
    _lock: threading.Lock
    _sim: Any
    _sim_factory: Callable[[], Any] | None
    _library_ids: frozenset[str] | None
    _refs: Any
    _list_cache: dict[tuple[Any, ...], tuple[int, float, bytes]]
    _list_bytes: int
    _session_cache: dict[str, tuple[Actor, str, datetime, float]]
    reads: AtlasReads

    @property
    def sim(self) -> Any:
        """The simulator (atlas, nodes, parameters), built once."""
        with self._lock:
            if self._sim is None:
                if self._sim_factory is not None:
                    self._sim = self._sim_factory()
                else:
                    from critmin.atlas import load_atlas
                    from critmin.simulate.run import Simulator

                    self._sim = Simulator.build(load_atlas())
            return self._sim

    @property
    def atlas(self) -> Any:
        return self.sim.atlas

    def org(self, s: DbSession, name: str, create: bool = False) -> m.Organisation:
        from critmin.inputs import printable, text_problem

        why = text_problem(name)  # every caller (API bodies, import queries, the CLI): never sent to the database
        if why:
            raise WorkspaceError(422, f"organisation name '{printable(name)}' {why}", [{"field": "shared_with", "message": why}])
        o = s.scalar(select(m.Organisation).where(m.Organisation.name == name))
        if o is None:
            if not create:
                raise WorkspaceError(422, f"unknown organisation '{name}'", [{"field": "shared_with", "message": f"unknown organisation '{name}'"}])
            o = m.Organisation(name=name)
            s.add(o)
            s.flush()
        return o

    def _audit(self, s: DbSession, actor: Actor | None, action: str, kind: str, key: str, detail: dict[str, Any] | None = None,
               owner_org: int | None = None) -> None:
        self.generation += 1  # before and after the commit: a list read meanwhile is rebuilt next time
        s.info["bump_generation"] = True
        s.add(m.AuditEntry(user_id=actor.user_id if actor else None, user_email=actor.email if actor else "system",
                           org_id=actor.org_id if actor else None, owner_org_id=owner_org, action=action, target_kind=kind, target_key=key,
                           detail=jsonable(detail or {})))


def library_ids(ws: WorkspaceState) -> frozenset[str]:
    """Ids of the scenario library, built once per workspace (the simulator is not hashable, so not an lru_cache key)."""
    with ws._lock:
        ids = ws._library_ids
    if ids is None:
        ids = frozenset(s.id for s in ws.sim.library())
        with ws._lock:
            ws._library_ids = ids
    return ids

