"""Shared records of the workspace: validation, access control, versioned updates, lists, comments and the audit view."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from critmin.errors import CritminError
from critmin.web import access
from critmin.web import models as m
from critmin.web.access import Actor
from critmin.web.store import (
    CACHE_MAX_ENTRIES,
    KEY_FIELD,
    KEY_MAX,
    LIST_CACHE_MAX_BYTES,
    RECORDS_CACHE_S,
    WorkspaceError,
    WorkspaceState,
    library_ids,
    problems_of,
)
from critmin.web.values import iso_time, jsonable


class RecordStore(WorkspaceState):
    """Shared records (projects, needs, offers, scenarios): validation, access, versioned updates, lists, comments
    and the audit log view."""

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
                from critmin.portfolio.register_schema import Project, Refs, SupportAction

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
                from critmin.deliver.buyers import Buyer, share_problems

                b = Buyer.model_validate({k: v for k, v in data.items() if v is not None and v != ""})
                self._check_node("need", b.country_iso3, b.commodity_id, b.stage)
                bad = share_problems(b)
                if bad:
                    raise WorkspaceError(422, "invalid need", [{"field": f"data.{f}", "message": msg} for f, msg in bad])
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
        from critmin.portfolio.register_schema import Refs

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

