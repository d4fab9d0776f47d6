"""The project register in and out of the workspace (Excel import and export, the bundled registers) and the
frames of records a run reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import select

from critmin.web import access
from critmin.web import models as m
from critmin.web.access import Actor
from critmin.web.records import RecordStore
from critmin.web.store import BUNDLED_ORG, WorkspaceError
from critmin.web.values import jsonable


class RegisterExchange(RecordStore):
    """The register in and out of the workspace: Excel import and export, the bundled registers, the frames a run reads."""

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

        from critmin.portfolio.register import read_register
        from critmin.portfolio.register_schema import RegisterError

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
        from critmin.portfolio.register import Register
        from critmin.portfolio.register_files import xlsx_template

        fr = self.frames(actor)
        return xlsx_template(Register(fr["projects"], fr["support"]))

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
        from critmin.portfolio.register import models_frame
        from critmin.portfolio.register_schema import Project, SupportAction

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
    offered volume, operating when available now, else producing from ``available_from``; an offered volume is
    what the supplier states, so it does not ramp up (``ramp_up_months`` 0)."""
    rows = []
    for o in offers:
        later = bool(o.get("available_from"))
        rows.append({"project_id": o["offer_id"], "name": f"{o['supplier']} (offer)", "sponsor": o["supplier"], "country_iso3": o["country_iso3"],
                     "commodity_id": o["commodity_id"], "stage": o["stage"], "product": o.get("product", ""), "capacity_t": float(o["volume_t_per_year"]),
                     "status_class": "construction" if later else "operating", "first_output": o.get("available_from", ""), "ramp_up_months": 0,
                     "sources": o.get("source") or "offer in the critmin workspace", "note": o.get("note", "")})
    df = pd.DataFrame(rows)
    return df.reindex(columns=list(columns))


