"""Writing, importing and exporting a register: deterministic CSV files, an all-or-nothing import into a register
folder, and the Excel workbook and template (a README sheet documenting every column)."""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from critmin.output import write_atomic

if TYPE_CHECKING:
    from critmin.atlas.model import Atlas

from critmin.portfolio.register import (
    Register,
    _atlas_refs,
    _blank,
    _cross_check,
    _read_source,
    _validate,
    _validate_rows,
    models_frame,
)
from critmin.portfolio.register_schema import (
    _ID,
    INSTRUMENTS,
    REGISTER_SCHEMAS,
    STATUS_CLASSES,
    TABLES,
    RegisterError,
    RegisterProblem,
    _Valid,
)

# ------------------------------------------------------------------------------------------------ writing


def _fmt_float(v: float) -> str:
    if math.isnan(v):
        return ""
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.6f}".rstrip("0").rstrip(".")


def _csv_bytes(kind: str, frame: pd.DataFrame) -> bytes:
    cols = TABLES[kind]
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    w.writerow([c.name for c in cols])
    for rec in frame.to_dict("records"):
        row = []
        for c in cols:
            v = rec[c.name]
            if c.kind == "bool":
                row.append("yes" if bool(v) else "no")
            elif _blank(v):
                row.append("")
            elif c.kind == "float":
                row.append(_fmt_float(float(v)))
            elif c.kind == "int":
                row.append(str(int(v)))
            else:
                row.append(str(v))
        w.writerow(row)
    return buf.getvalue().encode("utf-8")


def write_register(register: Register, directory: str | Path) -> None:
    """Write ``projects.csv`` and ``support.csv`` into ``directory``, all or nothing.

    Both files are first written to a temporary folder inside ``directory``, then moved into place; if a move
    fails, the files already replaced are restored from a backup, so a failure leaves the old files untouched.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    payload = {f"{kind}.csv": _csv_bytes(kind, getattr(register, kind)) for kind in TABLES}
    tmp = Path(tempfile.mkdtemp(prefix=".register-", dir=root))
    try:
        for name, data in payload.items():
            (tmp / name).write_bytes(data)
            if (root / name).exists():
                shutil.copy2(root / name, tmp / f"{name}.bak")
        done: list[str] = []
        try:
            for name in payload:
                os.replace(tmp / name, root / name)
                done.append(name)
        except BaseException:
            for name in done:
                bak = tmp / f"{name}.bak"
                if bak.exists():
                    os.replace(bak, root / name)
                else:
                    (root / name).unlink(missing_ok=True)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def import_register(source_file: str | Path, directory: str | Path, replace: bool = False, atlas: Atlas | None = None) -> dict[str, int]:
    """Import a .csv (projects or support table) or .xlsx workbook into the register in ``directory``.

    The whole file is validated first; then its rows are merged by id into the register already in the
    directory (a row with a known id replaces it, a new id is added) or, with ``replace``, the tables present
    in the file replace those of the directory. The result is validated as a whole (duplicate ids, support for
    missing projects) and written atomically. If any row is bad nothing is written and :class:`RegisterError`
    lists every problem. Returns counts: ``added``/``updated`` projects and support rows, and the totals.
    """
    src = Path(source_file)
    root = Path(directory)
    refs = _atlas_refs(atlas)
    if src.is_dir():
        raise RegisterError(RegisterProblem(src.name, None, None, "import a .csv or .xlsx file, not a directory"))
    tables, problems = _read_source(src)
    if not problems and not tables:
        problems.append(RegisterProblem(src.name, None, None, "no register table found in the file"))
    new_p, p1 = _validate_rows("projects", tables.get("projects", []), refs)
    new_s, p2 = _validate_rows("support", tables.get("support", []), refs)
    problems += p1 + p2
    if problems:
        raise RegisterError(problems)
    # the register already in the directory (empty when there is none yet)
    if (root / "projects.csv").exists():
        old_tables, p3 = _read_source(root)
        old_p, old_s, p4 = _validate(old_tables, refs)
        if p3 + p4:
            raise RegisterError(p3 + p4)
    else:
        old_p, old_s = [], []
    counts: dict[str, int] = {}
    merged: dict[str, _Valid] = {}
    for kind, old, new in (("projects", old_p, new_p), ("support", old_s, new_s)):
        key = _ID[kind]
        present = kind in tables
        old_ids = {getattr(m, key) for _, m in old}
        new_ids = {getattr(m, key) for _, m in new}
        if replace and present:
            rows = list(new)
        else:
            rows = [(loc, m) for loc, m in old if getattr(m, key) not in new_ids] + list(new)
        merged[kind] = rows
        counts[f"{kind}_added"] = len(new_ids - old_ids)
        counts[f"{kind}_updated"] = len(new_ids & old_ids)
        counts[f"{kind}_removed"] = len(old_ids - new_ids) if replace and present else 0
        counts[kind] = len({getattr(m, key) for _, m in rows})
    problems = _cross_check(merged["projects"], merged["support"])
    if problems:
        raise RegisterError(problems)
    register = Register(models_frame("projects", (m for _, m in merged["projects"])), models_frame("support", (m for _, m in merged["support"])))
    write_register(register, root)
    return counts


# ------------------------------------------------------------------------------------------------ export


def vocabulary_rows() -> list[dict[str, str]]:
    """The README rows that explain the register's vocabularies: status classes and instruments."""
    return ([{"sheet": "status_class", "column": k, "description": v} for k, v in STATUS_CLASSES.items()]
            + [{"sheet": "instrument", "column": k, "description": v} for k, v in INSTRUMENTS.items()])


def readme_frame() -> pd.DataFrame:
    """One row per register column: sheet, column, required, kind, unit, allowed values, description."""
    rows = [
        {"sheet": kind, "column": c.name, "required": "yes" if c.required else "no", "type": c.kind, "unit": c.unit, "allowed": c.allowed, "description": c.description}
        for kind, cols in TABLES.items()
        for c in cols
    ]
    rows += [{"required": "", "type": "", "unit": "", "allowed": "", **r} for r in vocabulary_rows()]
    return pd.DataFrame(rows)


def xlsx_template(register: Register) -> bytes:
    """The register as the Excel template (critmin.atlas.schema.template_workbook on the register's schema)."""
    from critmin.atlas.schema import template_workbook

    return template_workbook(REGISTER_SCHEMAS, {"projects": register.projects, "support": register.support}, vocabulary_rows())


def export_register(register: Register, path: str | Path) -> None:
    """Write the register to ``path``: ``.csv`` writes the projects table; ``.xlsx`` writes a template workbook
    (sheets ``projects``, ``support`` and ``README`` describing every column, with drop-down lists for
    ``status_class``, ``instrument``, ``feoc`` and ``counts``) that :func:`import_register` reads back."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        write_atomic(p, _csv_bytes("projects", register.projects))
    elif suffix == ".xlsx":
        write_atomic(p, xlsx_template(register))
    else:
        raise RegisterError(RegisterProblem(p.name, None, None, "export to a .csv or .xlsx file"))


