"""The workspace core the API calls: users and sessions, shared records with access control, versioned
updates and the audit log, and the cached reads of the atlas (priority minerals, supply maps, chains).

Every change and its audit entry are written in one transaction (:meth:`Database.session`): either both
are committed or neither is."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session as DbSession

from critmin.web.access import Actor
from critmin.web.db import Database
from critmin.web.reads import AtlasReads
from critmin.web.register_io import RegisterExchange, offer_first_months, offers_as_projects
from critmin.web.store import BUNDLED_ORG, KEY_FIELD, MAX_RECORDS, WorkspaceError, library_ids, problems_of
from critmin.web.users import UserAccounts

__all__ = ["BUNDLED_ORG", "KEY_FIELD", "MAX_RECORDS", "Workspace", "WorkspaceError", "library_ids", "offer_first_months", "offers_as_projects",
           "problems_of"]


class Workspace(RegisterExchange, UserAccounts):
    """One database and the definitions (atlas, simulator) every request shares: users and sessions
    (:class:`critmin.web.users.UserAccounts`), records (:class:`critmin.web.records.RecordStore`) and the
    register's exchange (:class:`critmin.web.register_io.RegisterExchange`); state in
    :class:`critmin.web.store.WorkspaceState`."""

    def __init__(self, db: Database, sim_factory: Callable[[], Any] | None = None, max_records: int = MAX_RECORDS):
        self.db = db
        self.max_records = max_records
        self._sim_factory = sim_factory
        self._sim: Any = None
        self._lock = threading.Lock()
        self._library_ids: frozenset[str] | None = None
        self._refs: Any = None  # the atlas's reference sets (countries, nodes), built at first use
        #: the cached atlas reads of the dashboard (priority minerals, supply, chains, library)
        self.reads = AtlasReads(lambda: self.sim)
        #: counts record changes made by this process (a change makes cached record lists stale)
        self.generation = 0
        self._list_cache: dict[tuple[Any, ...], tuple[int, float, bytes]] = {}
        self._list_bytes = 0

        def bump_after_commit(session: DbSession) -> None:
            if session.info.pop("bump_generation", False):
                self.generation += 1
            forget = session.info.pop("forget_users", None)
            if forget:  # after the commit: a request that read the old row meanwhile cannot keep it cached
                self._forget_sessions(forget)

        event.listen(db.sessions, "after_commit", bump_after_commit)
        #: token digest -> (actor, csrf token, expiry, time cached): saves a database read per request
        self._session_cache: dict[str, tuple[Actor, str, datetime, float]] = {}


