"""Register import into the web workspace: `python benchmarks/register_import.py` (also run by run.py).

Builds a workbook of the bundled register plus N generated projects (copies of the first under new ids),
imports it into a fresh SQLite workspace through ``Workspace.import_projects`` (every row read, checked and
created in one transaction), then imports the same file again (every row unchanged). Target: 2,000
projects in < 10 s each way.
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path


def with_generated_projects(xlsx: bytes, n: int, prefix: str) -> bytes:
    """An exported register workbook with ``n`` copies of its first project added under new ids
    (``{prefix}-00000``, ...) and names: a large pipeline for the benchmarks."""
    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(xlsx))
    sheet = book["projects"]
    header = [c.value for c in sheet[1]]
    first = dict(zip(header, [c.value for c in sheet[2]], strict=True))
    for i in range(n):
        row = first | {"project_id": f"{prefix}-{i:05d}", "name": f"Generated project {i}"}
        sheet.append([row[h] for h in header])
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def bench_import(n: int = 2000) -> dict[str, float]:
    from sqlalchemy import select

    from critmin.web import models as m
    from critmin.web.access import Actor
    from critmin.web.db import Database
    from critmin.web.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="critmin-import-bench-") as d:
        db = Database(f"sqlite:///{Path(d) / 'w.db'}")
        try:
            ws = Workspace(db)
            ws.seed_bundled()
            u = ws.add_user("bench@import.example", "Bench", "company", "bench password")
            with db.session() as s:
                org_id = s.scalar(select(m.User.org_id).where(m.User.id == u["id"]))
            actor = Actor(u["id"], u["email"], org_id, "Bench", "company")
            content = with_generated_projects(ws.export_projects(actor), n, "BENCH")
            t0 = time.perf_counter()
            created = ws.import_projects(actor, content, "bench.xlsx")
            t1 = time.perf_counter()
            again = ws.import_projects(actor, content, "bench.xlsx")
            t2 = time.perf_counter()
        finally:
            db.dispose()
    assert created["created"] == n and again["unchanged"] == created["projects"]
    return {"create_seconds": t1 - t0, "unchanged_seconds": t2 - t1, "projects": float(created["projects"]), "file_mb": len(content) / 1e6}


if __name__ == "__main__":
    r = bench_import()
    print(f"import of {r['projects']:.0f} projects ({r['file_mb']:.2f} MB): created in {r['create_seconds']:.2f} s, "
          f"unchanged re-import in {r['unchanged_seconds']:.2f} s (target < 10 s each)")
