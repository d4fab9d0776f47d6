"""Users, passwords and sessions of the workspace."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session as DbSession

from critmin.web import models as m
from critmin.web.access import Actor
from critmin.web.security import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    hash_password,
    new_token,
    session_expiry,
    token_digest,
    verify_password,
)
from critmin.web.store import CACHE_MAX_ENTRIES, SESSION_CACHE_S, WorkspaceError, WorkspaceState
from critmin.web.values import iso_time


def _check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise WorkspaceError(422, f"the password must have at least {PASSWORD_MIN} characters", [{"field": "password", "message": "too short"}])
    if len(password) > PASSWORD_MAX:
        raise WorkspaceError(422, f"the password must have at most {PASSWORD_MAX} characters", [{"field": "password", "message": "too long"}])


class UserAccounts(WorkspaceState):
    """Users, passwords and sessions (sign-in, sign-out, the session cache)."""

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

