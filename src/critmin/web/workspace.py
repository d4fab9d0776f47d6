"""The workspace core the API calls: users and sessions, shared records with access control, versioned
updates and the audit log, and the cached reads of the atlas (priority minerals, supply maps, chains).

Every change and its audit entry are written in one transaction (:meth:`Database.session`): either both
are committed or neither is.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from pydantic import ValidationError
from sqlalchemy import delete, event, func, or_, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from critmin.errors import CritminError
from critmin.web import access
from critmin.web import models as m
from critmin.web.access import Actor
from critmin.web.db import Database
from critmin.web.reads import AtlasReads
from critmin.web.security import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    hash_password,
    new_token,
    session_expiry,
    token_digest,
    verify_password,
)
from critmin.web.values import iso_time, jsonable

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


def _check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise WorkspaceError(422, f"the password must have at least {PASSWORD_MIN} characters", [{"field": "password", "message": "too short"}])
    if len(password) > PASSWORD_MAX:
        raise WorkspaceError(422, f"the password must have at most {PASSWORD_MAX} characters", [{"field": "password", "message": "too long"}])


def problems_of(exc: ValidationError, prefix: str = "data") -> list[dict[str, Any]]:
    """A pydantic error as the API's problem list, each field named from ``prefix`` (``data.country_iso3``; a
    bad key of a mapping is named by the key itself, without pydantic's ``[key]`` marker)."""
    from critmin.portfolio.register import error_message

    return [{"field": ".".join([prefix, *(str(x) for x in e["loc"] if x != "[key]")]), "message": error_message(e)} for e in exc.errors(include_url=False)]


#: Records of one kind (projects, needs, offers, scenarios) and comments one organisation may hold
#: (``critmin serve --max-records``): a bound on what one writer can make every run and list carry. The
#: bundled register holds 71 projects; a national agency's pipeline is in the hundreds.
MAX_RECORDS = 5000


class Workspace:
    """One database and the definitions (atlas, simulator) every request shares."""

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

    # ------------------------------------------------------------------------------------------ definitions
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

    # ------------------------------------------------------------------------------------------ users
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

    def add_user(self, email: str, org: str, role: str, password: str) -> dict[str, Any]:
        """Create a user (and the organisation when new); the password is stored as an argon2 hash."""
        email = email.strip().lower()
        if role not in m.ROLES:
            raise WorkspaceError(422, f"unknown role '{role}'; use one of {', '.join(m.ROLES)}")
        if "@" not in email or len(email) > 320:
            raise WorkspaceError(422, f"'{email}' is not an email address")
        _check_password(password)
        if not org.strip():
            raise WorkspaceError(422, "the organisation name is empty")
        with self.db.session() as s:
            if s.scalar(select(m.User).where(m.User.email == email)) is not None:
                raise WorkspaceError(409, f"user '{email}' already exists")
            o = self.org(s, org.strip(), create=True)
            u = m.User(email=email, org_id=o.id, role=role, password_hash=hash_password(password))
            s.add(u)
            s.flush()
            s.add(m.AuditEntry(user_id=None, user_email="command line", org_id=o.id, action="create", target_kind="user", target_key=email,
                               detail={"role": role, "org": o.name}))
            return {"id": u.id, "email": email, "org": o.name, "role": role}

    def users(self, org: str | None = None) -> list[dict[str, Any]]:
        """Users (of one organisation, or all): email, organisation, role, active, created, live sessions."""
        with self.db.session() as s:
            q = select(m.User, m.Organisation.name).join(m.Organisation, m.Organisation.id == m.User.org_id)
            if org is not None:
                q = q.where(m.Organisation.name == org)
            now = datetime.now(UTC)
            live = dict(s.execute(select(m.Session.user_id, func.count()).where(m.Session.expires_at > now).group_by(m.Session.user_id)).all())
            return [{"email": u.email, "org": name, "role": u.role, "active": bool(u.active), "created_at": iso_time(u.created_at),
                     "sessions": int(live.get(u.id, 0))} for u, name in s.execute(q.order_by(m.Organisation.name, m.User.email)).all()]

    def _user(self, s: DbSession, email: str) -> m.User:
        u = s.scalar(select(m.User).where(m.User.email == email.strip().lower()))
        if u is None:
            raise WorkspaceError(404, f"no user '{email.strip().lower()}'")
        return u

    def _end_sessions(self, s: DbSession, user_id: int, keep: str | None = None) -> int:
        """Delete the user's sessions (but the one whose token is ``keep``) and forget them in this process."""
        q = delete(m.Session).where(m.Session.user_id == user_id)
        if keep is not None:
            q = q.where(m.Session.token_sha256 != token_digest(keep))
        res = s.execute(q)
        n = res.rowcount if isinstance(res, CursorResult) else 0
        s.info.setdefault("forget_users", set()).add(user_id)
        return int(n)

    def _forget_sessions(self, user_ids: set[int]) -> None:
        """Drop the cached sessions of these users (read again from the database at their next request)."""
        for digest, hit in list(self._session_cache.items()):
            if hit[0].user_id in user_ids:
                self._session_cache.pop(digest, None)

    def set_password(self, email: str, password: str, by: Actor | None = None, keep_session: str | None = None) -> int:
        """Replace a user's password (argon2 hash) and end their sessions (all, or all but ``keep_session``,
        the token of the session that asked); returns the number of sessions ended. ``by`` None: the command line."""
        _check_password(password)
        with self.db.session() as s:
            u = self._user(s, email)
            u.password_hash = hash_password(password)
            ended = self._end_sessions(s, u.id, keep=keep_session)
            s.add(m.AuditEntry(user_id=by.user_id if by else None, user_email=by.email if by else "command line", org_id=u.org_id,
                               action="password", target_kind="user", target_key=u.email, detail={"sessions_ended": ended}))
            return ended

    def change_password(self, actor: Actor, token: str, current: str, new: str) -> int:
        """The signed-in user's own password change: ``current`` must be right (403 otherwise); every other
        session of the user ends, the one that asked stays signed in."""
        with self.db.session() as s:
            u = self._user(s, actor.email)
            ok = verify_password(u.password_hash, current)
        if not ok:
            raise WorkspaceError(403, "the current password is wrong", [{"field": "body.current_password", "message": "wrong password"}])
        if new == current:
            raise WorkspaceError(422, "the new password is the current one", [{"field": "body.new_password", "message": "choose a different password"}])
        return self.set_password(actor.email, new, by=actor, keep_session=token)

    def set_user(self, email: str, role: str | None = None, active: bool | None = None) -> dict[str, Any]:
        """Change a user's role and/or disable (ends their sessions, refuses logins) or enable them; audited
        as done from the command line."""
        if role is not None and role not in m.ROLES:
            raise WorkspaceError(422, f"unknown role '{role}'; use one of {', '.join(m.ROLES)}")
        with self.db.session() as s:
            u = self._user(s, email)
            detail: dict[str, Any] = {}
            if role is not None and role != u.role:
                detail["role"] = [u.role, role]
                u.role = role
            if active is not None and active != u.active:
                detail["active"] = [u.active, active]
                u.active = active
            if detail:
                # a new role or a disabled account takes effect at the next request: sessions end (disable) or are re-read (role)
                detail["sessions_ended"] = self._end_sessions(s, u.id) if active is False else 0
                s.info.setdefault("forget_users", set()).add(u.id)
                s.add(m.AuditEntry(user_id=None, user_email="command line", org_id=u.org_id, action="update", target_kind="user",
                                   target_key=u.email, detail=detail))
            o = s.get(m.Organisation, u.org_id)
            return {"email": u.email, "org": o.name if o else "", "role": u.role, "active": bool(u.active), "changed": sorted(k for k in detail if k != "sessions_ended")}

    def login(self, email: str, password: str) -> tuple[str, m.Session, Actor] | None:
        """A new session token for a valid email and password, else None (same work either way)."""
        email = email.strip().lower()
        with self.db.session() as s:
            u = s.scalar(select(m.User).where(m.User.email == email, m.User.active.is_(True)))
            if not verify_password(u.password_hash if u else None, password) or u is None:
                return None
            token = new_token()
            sess = m.Session(token_sha256=token_digest(token), user_id=u.id, csrf_token=new_token(), expires_at=session_expiry())
            s.add(sess)
            o = s.get(m.Organisation, u.org_id)
            assert o is not None
            s.add(m.AuditEntry(user_id=u.id, user_email=u.email, org_id=u.org_id, action="login", target_kind="user", target_key=u.email, detail={}))
            return token, sess, Actor(u.id, u.email, u.org_id, o.name, u.role)

    def logout(self, token: str) -> None:
        self._session_cache.pop(token_digest(token), None)
        with self.db.session() as s:
            sess = s.get(m.Session, token_digest(token))
            if sess is not None:
                s.delete(sess)

    def cached_actor(self, token: str) -> tuple[Actor, str] | None:
        """The session from memory when it was read less than ``SESSION_CACHE_S`` seconds ago, else None."""
        hit = self._session_cache.get(token_digest(token))
        if hit is not None and time.monotonic() - hit[3] < SESSION_CACHE_S and hit[2] > datetime.now(UTC):
            return hit[0], hit[1]
        return None

    def actor_for(self, token: str) -> tuple[Actor, str] | None:
        """The user of a live session and its CSRF token (kept in memory for ``SESSION_CACHE_S`` seconds)."""
        digest = token_digest(token)
        hit = self._session_cache.get(digest)
        now = time.monotonic()
        if hit is not None and now - hit[3] < SESSION_CACHE_S and hit[2] > datetime.now(UTC):
            return hit[0], hit[1]
        found = self._actor_from_db(digest)
        if found is None:
            self._session_cache.pop(digest, None)
        else:
            if len(self._session_cache) > CACHE_MAX_ENTRIES:
                self._session_cache.clear()
            self._session_cache[digest] = (*found, now)
        return None if found is None else (found[0], found[1])

    def _actor_from_db(self, digest: str) -> tuple[Actor, str, datetime] | None:
        with self.db.session() as s:
            sess = s.get(m.Session, digest)
            if sess is None:
                return None
            exp = sess.expires_at if sess.expires_at.tzinfo else sess.expires_at.replace(tzinfo=UTC)
            if exp < datetime.now(UTC):
                s.delete(sess)
                return None
            u = s.get(m.User, sess.user_id)
            if u is None or not u.active:
                return None
            o = s.get(m.Organisation, u.org_id)
            assert o is not None
            return Actor(u.id, u.email, u.org_id, o.name, u.role), sess.csrf_token, exp

    def organisations(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [{"id": o.id, "name": o.name} for o in s.scalars(select(m.Organisation).order_by(m.Organisation.name))]

    # ------------------------------------------------------------------------------------------ records
    def _validate(self, kind: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The record's key and its cleaned data; :class:`WorkspaceError` 422 naming each bad field."""
        key, clean = self._validate_kind(kind, data)
        if len(key) > KEY_MAX:  # the key column's width (PostgreSQL refuses longer values)
            raise WorkspaceError(422, f"invalid {kind}", [{"field": f"data.{KEY_FIELD[kind]}", "message": f"at most {KEY_MAX} characters"}])
        return key, clean

    def _validate_kind(self, kind: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        atlas = self.atlas
        try:
            if kind == "project":
                from critmin.portfolio.register import Project, Refs, SupportAction

                refs = Refs.of(atlas)
                body = {k: v for k, v in data.items() if k != "support" and v is not None and v != ""}
                p = Project.model_validate(body, context={"refs": refs})
                support = []
                if not isinstance(data.get("support") or [], list):
                    raise WorkspaceError(422, "invalid project", [{"field": "data.support", "message": "a list of support actions"}])
                for i, a in enumerate(data.get("support") or []):
                    if not isinstance(a, dict):
                        raise WorkspaceError(422, "invalid project", [{"field": f"data.support.{i}", "message": "not an object"}])
                    a = {k: v for k, v in a.items() if v is not None and v != ""}
                    a.setdefault("project_id", p.project_id)
                    try:
                        sa = SupportAction.model_validate(a, context={"refs": refs})
                    except ValidationError as exc:
                        raise WorkspaceError(422, "invalid support action", problems_of(exc, f"data.support.{i}")) from exc
                    if sa.project_id != p.project_id:
                        raise WorkspaceError(422, "invalid support action", [{"field": f"data.support.{i}.project_id", "message": "must be the project's id"}])
                    support.append(sa.model_dump())
                return p.project_id, {**p.model_dump(), "support": support}
            if kind == "need":
                from critmin.deliver.buyers import Buyer

                b = Buyer.model_validate({k: v for k, v in data.items() if v is not None and v != ""})
                self._check_node("need", b.country_iso3, b.commodity_id, b.stage)
                return b.buyer_id, b.model_dump()
            if kind == "offer":
                from critmin.web.schemas import OfferIn

                o = OfferIn.model_validate(data)
                self._check_node("offer", o.country_iso3, o.commodity_id, o.stage, concern_ok=True)
                return o.offer_id, o.model_dump()
            if kind == "scenario":
                sc = self.parse_scenario(data)
                if sc.id in library_ids(self):
                    raise WorkspaceError(409, f"scenario id '{sc.id}' is a library scenario; choose another id")
                return sc.id, sc.model_dump()
        except ValidationError as exc:
            raise WorkspaceError(422, f"invalid {kind}", problems_of(exc)) from exc
        raise WorkspaceError(404, f"unknown record kind '{kind}'")

    def _check_node(self, kind: str, country_iso3: str, commodity_id: str, stage: str, concern_ok: bool = False) -> None:
        from critmin.deliver.buyers import node_problems
        from critmin.portfolio.register import Refs

        if self._refs is None:
            self._refs = Refs.of(self.atlas)
        bad = node_problems(self._refs, self.atlas.concern, country_iso3, commodity_id, stage, concern_ok)
        if bad:
            raise WorkspaceError(422, f"invalid {kind}", [{"field": f"data.{f}", "message": msg} for f, msg in bad])

    def parse_scenario(self, data: dict[str, Any], prefix: str = "data") -> Any:
        """A user scenario (family ``user``) that the simulator can run; 422 naming the fields otherwise."""
        from critmin.simulate.scenario import Scenario

        try:
            sc = Scenario.model_validate({**data, "family": "user"})
        except ValidationError as exc:
            raise WorkspaceError(422, "invalid scenario", problems_of(exc, prefix)) from exc
        try:
            self.sim.check([sc])
        except CritminError as exc:
            raise WorkspaceError(422, "scenario cannot be simulated", [{"field": prefix, "message": str(exc)}]) from exc
        return sc

    def _visible(self, actor: Actor, kind: str) -> Any:
        t = m.RECORD_TABLES[kind]
        shared = select(m.Share.record_id).where(m.Share.record_kind == kind, m.Share.org_id == actor.org_id)
        return select(t).where(or_(t.confidential.is_(False), t.org_id == actor.org_id, t.id.in_(shared)))

    def _shares(self, s: DbSession, kind: str, ids: Iterable[int]) -> dict[int, list[int]]:
        ids = list(ids)
        out: dict[int, list[int]] = {i: [] for i in ids}
        if ids:
            for sh in s.scalars(select(m.Share).where(m.Share.record_kind == kind, m.Share.record_id.in_(ids))):
                out[sh.record_id].append(sh.org_id)
        return out

    def _out(self, actor: Actor, kind: str, r: Any, shares: list[int], orgs: dict[int, str]) -> dict[str, Any]:
        return {"id": r.id, "kind": kind, "key": r.key, "org": orgs.get(r.org_id, ""), "confidential": r.confidential,
                "shared_with": sorted(orgs.get(o, "") for o in shares) if actor.org_id == r.org_id else [],
                "version": r.version, "data": r.data, "created_at": iso_time(r.created_at), "updated_at": iso_time(r.updated_at),
                "can_edit": access.can_edit(actor, r.org_id, r.confidential)}

    def _orgs(self, s: DbSession) -> dict[int, str]:
        return {o.id: o.name for o in s.scalars(select(m.Organisation))}

    def cached_list(self, actor: Actor, kind: str, q: str = "", limit: int = 1000, offset: int = 0) -> bytes | None:
        hit = self._list_cache.get((kind, actor.org_id, actor.role, q, limit, offset))
        if hit is not None and hit[0] == self.generation and time.monotonic() - hit[1] < RECORDS_CACHE_S:
            return hit[2]
        return None

    def list_records_json(self, actor: Actor, kind: str, q: str = "", limit: int = 1000, offset: int = 0) -> bytes:
        """:meth:`list_records` as JSON, kept in memory until a record changes in this process (or for
        ``RECORDS_CACHE_S`` seconds, for changes made by another server process on the same database)."""
        hit = self.cached_list(actor, kind, q, limit, offset)
        if hit is not None:
            return hit
        key = (kind, actor.org_id, actor.role, q, limit, offset)
        now = time.monotonic()
        gen = self.generation
        body = json.dumps(self.list_records(actor, kind, q, limit, offset), ensure_ascii=False, separators=(",", ":")).encode()
        if len(self._list_cache) > CACHE_MAX_ENTRIES or self._list_bytes + len(body) > LIST_CACHE_MAX_BYTES:
            self._list_cache.clear()
            self._list_bytes = 0
        old = self._list_cache.get(key)
        self._list_bytes += len(body) - (len(old[2]) if old else 0)
        self._list_cache[key] = (gen, now, body)
        return body

    def list_records(self, actor: Actor, kind: str, q: str = "", limit: int = 1000, offset: int = 0) -> dict[str, Any]:
        t = m.RECORD_TABLES[kind]
        with self.db.session() as s:
            visible = self._visible(actor, kind)
            if q:  # a search reads every visible record (the text is matched in their data)
                ql = q.lower()
                rows = [r for r in s.scalars(visible.order_by(t.key)) if ql in r.key.lower() or ql in json.dumps(r.data).lower()]
                total = len(rows)
                rows = rows[offset: offset + limit]
            else:  # a page reads its rows only: GET ?limit=1 costs one row, not the table
                total = s.scalar(select(func.count()).select_from(visible.subquery())) or 0
                rows = list(s.scalars(visible.order_by(t.key).limit(limit).offset(offset)))
            sh = self._shares(s, kind, [r.id for r in rows])
            orgs = self._orgs(s)
            return {"total": total, "items": [self._out(actor, kind, r, sh[r.id], orgs) for r in rows]}

    def _get(self, s: DbSession, actor: Actor, kind: str, rid: int) -> Any:
        t = m.RECORD_TABLES[kind]
        r = s.scalar(self._visible(actor, kind).where(t.id == rid))
        if r is None:  # absent and not visible answer alike: a confidential record's existence is not disclosed
            raise WorkspaceError(404, f"no {kind} {rid}")
        return r

    def get_record(self, actor: Actor, kind: str, rid: int) -> dict[str, Any]:
        with self.db.session() as s:
            r = self._get(s, actor, kind, rid)
            return self._out(actor, kind, r, self._shares(s, kind, [r.id])[r.id], self._orgs(s))

    def _set_shares(self, s: DbSession, kind: str, rid: int, names: list[str]) -> list[str]:
        ids = sorted({self.org(s, n).id for n in names})
        for sh in s.scalars(select(m.Share).where(m.Share.record_kind == kind, m.Share.record_id == rid)):
            s.delete(sh)
        s.flush()
        for o in ids:
            s.add(m.Share(record_kind=kind, record_id=rid, org_id=o))
        return sorted(names)

    def _audit(self, s: DbSession, actor: Actor | None, action: str, kind: str, key: str, detail: dict[str, Any] | None = None,
               owner_org: int | None = None) -> None:
        self.generation += 1  # before and after the commit: a list read meanwhile is rebuilt next time
        s.info["bump_generation"] = True
        s.add(m.AuditEntry(user_id=actor.user_id if actor else None, user_email=actor.email if actor else "system",
                           org_id=actor.org_id if actor else None, owner_org_id=owner_org, action=action, target_kind=kind, target_key=key,
                           detail=jsonable(detail or {})))

    def create_record(self, actor: Actor, kind: str, data: dict[str, Any], confidential: bool = False, shared_with: list[str] | None = None) -> dict[str, Any]:
        if not access.can_create(actor):
            raise WorkspaceError(403, f"role '{actor.role}' cannot create records")
        key, clean = self._validate(kind, data)
        t = m.RECORD_TABLES[kind]
        with self.db.session() as s:
            if s.scalar(select(t.id).where(t.key == key)) is not None:
                raise WorkspaceError(409, f"a {kind} with id '{key}' already exists")
            self._within_quota(s, actor, kind, 1)
            r = self._insert(s, actor, kind, key, jsonable(clean), confidential, shared_with)
            s.flush()
            return self._out(actor, kind, r, self._shares(s, kind, [r.id])[r.id], self._orgs(s))

    def _within_quota(self, s: DbSession, actor: Actor, kind: str, new: int) -> None:
        """403 when ``new`` more records of ``kind`` (or comments) would take the actor's organisation past
        ``max_records``. Checked in the writing transaction; requests racing each other may pass it by their
        number, never by a file's worth."""
        t = m.Comment if kind == "comment" else m.RECORD_TABLES[kind]
        held = s.scalar(select(func.count()).select_from(t).where(t.org_id == actor.org_id)) or 0
        if held + new > self.max_records:
            what = "comments" if kind == "comment" else f"{kind}s"
            raise WorkspaceError(403, f"quota: '{actor.org_name}' holds {held} {what}; {new} more would pass the {self.max_records} one organisation "
                                      f"may hold (critmin serve --max-records)")

    def _insert(self, s: DbSession, actor: Actor, kind: str, key: str, data: dict[str, Any], confidential: bool,
                shared_with: list[str] | None, detail: dict[str, Any] | None = None) -> Any:
        """A new record owned by the actor's organisation, its shares and its audit entry (in ``s``'s transaction)."""
        t = m.RECORD_TABLES[kind]
        r = t(key=key, org_id=actor.org_id, confidential=confidential, data=data, version=1, created_by=actor.user_id)
        s.add(r)
        try:
            s.flush()
        except IntegrityError as exc:  # created by a concurrent request since the caller's check (the key is unique)
            raise WorkspaceError(409, f"a {kind} with id '{key}' already exists") from exc
        if shared_with:
            self._set_shares(s, kind, r.id, shared_with)
        self._audit(s, actor, "create", kind, key, {"confidential": confidential, "shared_with": sorted(shared_with or []), **(detail or {})},
                    owner_org=actor.org_id)
        return r

    def update_record(self, actor: Actor, kind: str, rid: int, version: int, data: dict[str, Any] | None = None,
                      confidential: bool | None = None, shared_with: list[str] | None = None) -> dict[str, Any]:
        t = m.RECORD_TABLES[kind]
        with self.db.session() as s:
            r = self._get(s, actor, kind, rid)
            if not access.can_edit(actor, r.org_id, r.confidential):
                raise WorkspaceError(403, f"role '{actor.role}' of '{actor.org_name}' cannot change this {kind}")
            if (confidential is not None or shared_with is not None) and not access.can_share(actor, r.org_id):
                raise WorkspaceError(403, "only the owning organisation sets confidentiality and sharing")
            changed: dict[str, Any] = {}
            new_data = r.data
            if data is not None:
                key, clean = self._validate(kind, data)
                if key != r.key:
                    raise WorkspaceError(422, "the id of a record cannot change", [{"field": "data", "message": f"id '{key}' differs from '{r.key}'"}])
                new_data = jsonable(clean)
                changed["fields"] = sorted(k for k in set(new_data) | set(r.data) if new_data.get(k) != r.data.get(k))
            values: dict[str, Any] = {"data": new_data}
            if confidential is not None:
                values["confidential"] = confidential
                changed["confidential"] = confidential
            if shared_with is not None:  # in the same transaction: undone if the version check below fails
                changed["shared_with"] = self._set_shares(s, kind, rid, shared_with)
            self._write_version(s, actor, kind, r, version, values, changed)
            s.expire_all()
            r = s.get(t, rid)
            return self._out(actor, kind, r, self._shares(s, kind, [rid])[rid], self._orgs(s))

    def _write_version(self, s: DbSession, actor: Actor, kind: str, r: Any, version: int, values: dict[str, Any], changed: dict[str, Any]) -> None:
        """Compare-and-set on the version: ``values`` are written and the version raised only if nobody changed
        the record since ``version`` was read (409 otherwise); the audit entry goes in the same transaction."""
        t = m.RECORD_TABLES[kind]
        res: Any = s.execute(t.__table__.update().where(t.id == r.id, t.version == version)
                             .values(version=version + 1, updated_at=datetime.now(UTC), **values))
        if res.rowcount != 1:
            raise WorkspaceError(409, f"{kind} '{r.key}' was changed by someone else (version {r.version}, you sent {version}); reload and retry")
        self._audit(s, actor, "update", kind, r.key, {"version": version + 1, **changed}, owner_org=r.org_id)

    def delete_record(self, actor: Actor, kind: str, rid: int, version: int) -> None:
        t = m.RECORD_TABLES[kind]
        with self.db.session() as s:
            r = self._get(s, actor, kind, rid)
            if not access.can_edit(actor, r.org_id, r.confidential):
                raise WorkspaceError(403, f"role '{actor.role}' of '{actor.org_name}' cannot delete this {kind}")
            for sh in s.scalars(select(m.Share).where(m.Share.record_kind == kind, m.Share.record_id == rid)):
                s.delete(sh)
            # its comments go with it: SQLite reuses the id of a deleted last row, and a new record must not show them
            for c in s.scalars(select(m.Comment).where(m.Comment.target_kind == kind, m.Comment.target_id == rid)):
                s.delete(c)
            res: Any = s.execute(t.__table__.delete().where(t.id == rid, t.version == version))
            if res.rowcount != 1:
                raise WorkspaceError(409, f"{kind} '{r.key}' was changed by someone else (version {r.version}, you sent {version}); reload and retry")
            self._audit(s, actor, "delete", kind, r.key, {"version": version}, owner_org=r.org_id)

    def import_projects(self, actor: Actor, content: bytes, filename: str, confidential: bool = False,
                        shared_with: list[str] | None = None) -> dict[str, Any]:
        """Projects and their support actions from a register workbook (.xlsx, the template of
        ``critmin projects export`` / ``GET /api/projects/export.xlsx``) or projects CSV, read and checked by
        the register's own reader (problems name the sheet, cell or row, and field), then merged by id in one
        transaction: a new id is created (owned by the actor's organisation, ``confidential`` and
        ``shared_with`` as given), a known id the actor may edit is updated (its version raised) unless
        unchanged, and an id the actor may not edit refuses the whole file. Nothing is written unless every
        row can be."""
        import tempfile
        from pathlib import Path

        from critmin.portfolio.register import RegisterError, read_register

        if not access.can_create(actor):
            raise WorkspaceError(403, f"role '{actor.role}' cannot create records")
        name = Path(filename.replace("\\", "/")).name or "upload"
        if Path(name).suffix.lower() not in (".xlsx", ".csv"):
            raise WorkspaceError(422, "import a register workbook (.xlsx) or a projects table (.csv)", [{"field": "query.filename", "message": f"'{name}' is not .xlsx or .csv"}])
        with tempfile.TemporaryDirectory(prefix="critmin-import-") as d:
            path = Path(d) / name
            path.write_bytes(content)
            try:
                reg = read_register(path, atlas=self.atlas)
            except RegisterError as exc:
                problems = [{"field": "body", "message": str(q)} for q in exc.problems[:200]]
                raise WorkspaceError(422, f"{name}: {len(exc.problems)} problem(s); nothing was imported", problems) from exc
        support = reg.support
        acts_of = {str(pid): g.to_dict("records") for pid, g in support.groupby("project_id", sort=False)}
        records = [self._validate("project", jsonable({**row, "support": acts_of.get(str(row["project_id"]), [])}))
                   for row in reg.projects.to_dict("records")]
        t = m.RECORD_TABLES["project"]
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        with self.db.session() as s:
            keys = [k for k, _ in records]
            existing: dict[str, Any] = {}
            visible: set[int] = set()
            for i in range(0, len(keys), 500):  # a few queries per 500 ids, not two per row
                chunk = keys[i:i + 500]
                existing |= {r.key: r for r in s.scalars(select(t).where(t.key.in_(chunk)))}
                visible |= set(s.scalars(self._visible(actor, "project").where(t.key.in_(chunk)).with_only_columns(t.id)))
            refused: list[dict[str, Any]] = []
            plan: list[tuple[str, dict[str, Any], Any]] = []
            for key, clean in records:
                r = existing.get(key)
                if r is not None and r.id not in visible:
                    refused.append({"field": f"body.projects.{key}", "message": f"a project with id '{key}' already exists"})
                elif r is not None and jsonable(clean) == r.data:
                    plan.append((key, r.data, r))  # unchanged: nothing to write, whoever owns it (an exported file sent back)
                elif r is not None and not access.can_edit(actor, r.org_id, r.confidential):
                    refused.append({"field": f"body.projects.{key}", "message": f"project '{key}' belongs to another organisation: you may not change it"})
                else:
                    plan.append((key, jsonable(clean), r))
            if refused:
                raise WorkspaceError(409, f"{name}: {len(refused)} project(s) cannot be written; nothing was imported", refused)
            self._within_quota(s, actor, "project", sum(r is None for _, _, r in plan))
            via = {"via": "import", "file": name}
            for key, data, r in plan:
                if r is None:
                    self._insert(s, actor, "project", key, data, confidential, shared_with, via)
                    counts["created"] += 1
                elif data == r.data:
                    counts["unchanged"] += 1
                else:
                    fields = sorted(k for k in set(data) | set(r.data) if data.get(k) != r.data.get(k))
                    self._write_version(s, actor, "project", r, r.version, {"data": data}, {"fields": fields, **via})
                    counts["updated"] += 1
        return {"file": name, "projects": len(records), **counts, "support_actions": int(len(support))}

    def export_projects(self, actor: Actor) -> bytes:
        """The projects the actor may read, with their support actions, as the register's Excel template
        (sheets projects, support, README; :meth:`import_projects` reads it back)."""
        from critmin.portfolio.register import Register, xlsx_template

        fr = self.frames(actor)
        return xlsx_template(Register(fr["projects"], fr["support"]))

    def visible_rows(self, actor: Actor, kind: str) -> tuple[list[dict[str, Any]], list[tuple[str, int]], bool]:
        """Data of every record the actor may read, their (key, version) and whether any is confidential."""
        t = m.RECORD_TABLES[kind]
        with self.db.session() as s:
            rows = list(s.scalars(self._visible(actor, kind).order_by(t.key)))
            return [r.data for r in rows], [(r.key, r.version) for r in rows], any(r.confidential for r in rows)

    # ------------------------------------------------------------------------------------------ comments, audit
    def add_comment(self, actor: Actor, kind: str, rid: int, body: str) -> dict[str, Any]:
        if not actor.can_write:
            raise WorkspaceError(403, "observers cannot comment")
        with self.db.session() as s:
            r = self._get(s, actor, kind, rid)
            self._within_quota(s, actor, "comment", 1)
            c = m.Comment(target_kind=kind, target_id=rid, org_id=actor.org_id, user_id=actor.user_id, body=body)
            s.add(c)
            s.flush()
            t = m.RECORD_TABLES[kind]
            if s.scalar(select(t.id).where(t.id == rid, t.key == r.key)) is None:  # deleted meanwhile: no orphan comment for a later record of this id
                raise WorkspaceError(404, f"no {kind} {rid}")
            self._audit(s, actor, "comment", kind, r.key, {"comment_id": c.id}, owner_org=r.org_id)
            return {"id": c.id, "user": actor.email, "org": actor.org_name, "body": body, "created_at": iso_time(c.created_at)}

    def comments(self, actor: Actor, kind: str, rid: int) -> list[dict[str, Any]]:
        with self.db.session() as s:
            self._get(s, actor, kind, rid)
            rows = list(s.scalars(select(m.Comment).where(m.Comment.target_kind == kind, m.Comment.target_id == rid).order_by(m.Comment.id)))
            users = {u.id: u.email for u in s.scalars(select(m.User).where(m.User.id.in_({c.user_id for c in rows})))}
            orgs = self._orgs(s)
            return [{"id": c.id, "user": users.get(c.user_id, ""), "org": orgs.get(c.org_id, ""), "body": c.body, "created_at": iso_time(c.created_at)}
                    for c in rows]

    def audit(self, actor: Actor, limit: int = 200, offset: int = 0) -> dict[str, Any]:
        """The audit entries of the actor's own organisation's users, and of changes others made to its
        records (who, when, what), newest first."""
        with self.db.session() as s:
            mine = or_(m.AuditEntry.org_id == actor.org_id, m.AuditEntry.owner_org_id == actor.org_id)
            total = s.scalar(select(func.count()).select_from(m.AuditEntry).where(mine)) or 0
            rows = list(s.scalars(select(m.AuditEntry).where(mine).order_by(m.AuditEntry.id.desc()).limit(limit).offset(offset)))
            orgs = self._orgs(s)
            return {"total": int(total), "items": [{"id": a.id, "at": iso_time(a.at), "user": a.user_email, "org": orgs.get(a.org_id or -1, ""),
                                                    "action": a.action, "target_kind": a.target_kind, "target_key": a.target_key, "detail": a.detail}
                                                   for a in rows]}

    # ------------------------------------------------------------------------------------------ seeding
    def seed_bundled(self) -> dict[str, int]:
        """Load the bundled project register and buyers into a new workspace (once; shared, not confidential)."""
        from critmin.deliver.buyers import bundled_buyers
        from critmin.portfolio.register import bundled_register

        with self.db.session() as s:
            if s.get(m.Setting, "bundled_loaded") is not None:
                return {"projects": 0, "needs": 0}
            o = self.org(s, BUNDLED_ORG, create=True)
            reg = bundled_register(self.atlas)
            sup = reg.support
            n_p = 0
            for p in reg.projects.to_dict("records"):
                acts = sup[sup["project_id"] == p["project_id"]].to_dict("records")
                s.add(m.Project(key=p["project_id"], org_id=o.id, confidential=False, data=jsonable({**p, "support": acts}), version=1))
                n_p += 1
            n_b = 0
            for b in bundled_buyers(self.atlas).to_dict("records"):
                s.add(m.Need(key=b["buyer_id"], org_id=o.id, confidential=False, data=jsonable(b), version=1))
                n_b += 1
            s.add(m.Setting(name="bundled_loaded", value=datetime.now(UTC).isoformat()))
            self._audit(s, None, "seed", "workspace", "bundled", {"projects": n_p, "needs": n_b})
            return {"projects": n_p, "needs": n_b}

    # ------------------------------------------------------------------------------------------ frames
    def frames(self, actor: Actor) -> dict[str, Any]:
        """The register, needs and offers the actor may read, as the core's frames, with an inputs digest."""
        from critmin.deliver.buyers import BUYER_COLUMNS
        from critmin.portfolio.register import Project, SupportAction, models_frame

        proj, pkeys, pc = self.visible_rows(actor, "project")
        needs, nkeys, nc = self.visible_rows(actor, "need")
        offers, okeys, oc = self.visible_rows(actor, "offer")
        projects = models_frame("projects", [Project.model_validate({k: v for k, v in d.items() if k != "support" and v is not None}) for d in proj])
        support = models_frame("support", [SupportAction.model_validate({k: v for k, v in a.items() if v is not None and k != "counts"} | {"counts": a.get("counts")})
                                     for d in proj for a in d.get("support", [])])
        buyers = pd.DataFrame([{c: d.get(c) for c in BUYER_COLUMNS} for d in needs], columns=list(BUYER_COLUMNS))
        supply = pd.concat([projects, offers_as_projects(offers, projects.columns)], ignore_index=True) if offers else projects
        # keys, versions and the data itself: a record deleted and created again under its key starts at version 1 again
        digest = hashlib.sha256(json.dumps({"project": pkeys, "need": nkeys, "offer": okeys, "data": [proj, needs, offers]},
                                           sort_keys=True).encode()).hexdigest()
        return {"projects": projects, "support": support, "buyers": buyers, "supply": supply, "offers": offers, "inputs": digest, "confidential": pc or nc or oc,
                "counts": {"projects": len(proj), "needs": len(needs), "offers": len(offers)}}


def offer_first_months(offers: list[dict[str, Any]], as_of: str) -> dict[str, int]:
    """Month (from ``as_of``) each offer can first deliver: 0 when available now or before, else its
    ``available_from`` (no construction delay: the supplier states the month)."""
    from critmin._dates import month_offset

    return {o["offer_id"]: max(0, month_offset(as_of, o.get("available_from") or None) or 0) for o in offers}


def offers_as_projects(offers: list[dict[str, Any]], columns: Iterable[str]) -> pd.DataFrame:
    """Offers as supply rows of the register's shape, for delivery planning and matching: capacity =
    offered volume, operating when available now, else producing from ``available_from``."""
    rows = []
    for o in offers:
        later = bool(o.get("available_from"))
        rows.append({"project_id": o["offer_id"], "name": f"{o['supplier']} (offer)", "sponsor": o["supplier"], "country_iso3": o["country_iso3"],
                     "commodity_id": o["commodity_id"], "stage": o["stage"], "product": o.get("product", ""), "capacity_t": float(o["volume_t_per_year"]),
                     "status_class": "construction" if later else "operating", "first_output": o.get("available_from", ""),
                     "sources": o.get("source") or "offer in the critmin workspace", "note": o.get("note", "")})
    df = pd.DataFrame(rows)
    return df.reindex(columns=list(columns))


def library_ids(ws: Workspace) -> frozenset[str]:
    """Ids of the scenario library, built once per workspace (the simulator is not hashable, so not an lru_cache key)."""
    with ws._lock:
        ids = ws._library_ids
    if ids is None:
        ids = frozenset(s.id for s in ws.sim.library())
        with ws._lock:
            ws._library_ids = ids
    return ids
