"""Load and validate an atlas directory, all or nothing."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import pandas as pd

from critmin.atlas.consistency import check_consistency
from critmin.atlas.model import Atlas
from critmin.atlas.schema import STAGES, TABLE_ORDER, read_csv_strict, validate_table
from critmin.errors import AtlasError, Problem

MANIFEST = "manifest.json"


def bundled_atlas_path() -> Path:
    """Directory of the atlas tables shipped inside the package."""
    return Path(str(resources.files("critmin.atlas").joinpath("data")))


def load_atlas(path: str | Path | None = None, *, blocs: str | Path | None = None) -> Atlas:
    """Read, validate and type every table of an atlas directory (default: the bundled atlas).

    Loading is all or nothing: any problem (missing file or column, unknown country, negative tonnage, share
    over 100 %, unit mismatch, truncated file...) raises :class:`~critmin.errors.AtlasError` naming file,
    line and field, and no Atlas is returned. ``blocs`` optionally names a CSV (``bloc_id,iso3``) that
    replaces the bundled bloc membership for the blocs it mentions.
    """
    root = Path(path) if path is not None else bundled_atlas_path()
    if not root.is_dir():
        raise AtlasError(Problem(str(root), None, None, "atlas directory not found"))
    problems: list[Problem] = []
    manifest: dict[str, object] = {}
    mpath = root / MANIFEST
    if mpath.exists():
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            problems.append(Problem(MANIFEST, exc.lineno, None, f"invalid JSON: {exc.msg}"))
    expected_rows = manifest.get("rows", {}) if isinstance(manifest.get("rows"), dict) else {}

    refs: dict[str, set[str]] = {"stage": set(STAGES)}
    tables: dict[str, pd.DataFrame] = {}
    digest = hashlib.sha256()
    for name in TABLE_ORDER:
        fname = f"{name}.csv"
        fpath = root / fname
        if not fpath.exists():
            problems.append(Problem(fname, None, None, "table file is missing"))
            continue
        raw = fpath.read_bytes()
        digest.update(name.encode() + b"\0" + raw)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            problems.append(Problem(fname, None, None, f"not UTF-8 text: {exc}"))
            continue
        header, records, p = read_csv_strict(text, fname)
        problems += p
        want = expected_rows.get(name) if isinstance(expected_rows, dict) else None
        if isinstance(want, int) and want != len(records) and not p:
            problems.append(
                Problem(fname, None, None, f"has {len(records)} rows but the manifest records {want}: truncated or edited")
            )
        frame, p = validate_table(name, header, records, fname, refs)
        problems += p
        tables[name] = frame
        if name == "sources" and not frame.empty:
            refs["source"] = set(frame["source_id"]) | {"user"}
        elif name == "countries" and not frame.empty:
            refs["iso3"] = set(frame["iso3"])
        elif name == "commodities" and not frame.empty:
            refs["commodity"] = set(frame["commodity_id"])
    if not problems:
        problems += check_consistency(tables)
    if problems:
        raise AtlasError(problems)
    version = str(manifest.get("data_version", ""))
    content = digest.hexdigest()[:12]
    data_version = version if version.endswith(content) else f"{version or 'atlas'}+modified.{content}"
    atlas = Atlas(tables=tables, data_version=data_version, path=str(root), manifest=manifest)
    if blocs is not None:
        atlas = atlas.with_blocs(read_bloc_file(blocs))
    return atlas


def read_bloc_file(path: str | Path) -> dict[str, list[str]]:
    """Read a user bloc file (CSV with columns ``bloc_id,iso3``); blank lines and ``#`` comments are skipped."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise AtlasError(Problem(str(p), None, None, f"cannot read bloc file: {exc}")) from exc
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    header, records, problems = read_csv_strict("\n".join(lines) + "\n", p.name)
    for col in ("bloc_id", "iso3"):
        if col not in header:
            problems.append(Problem(p.name, 1, col, "required column is missing"))
    if problems:
        raise AtlasError(problems)
    out: dict[str, list[str]] = {}
    bi, ii = header.index("bloc_id"), header.index("iso3")
    for rec in records:
        out.setdefault(rec[bi].strip(), []).append(rec[ii].strip().upper())
    return out
