"""The study file in the workspace: download the workspace as a study (zip of study.yaml and its inputs, the
same layout `critmin study init` writes) and read an uploaded one (checked as `critmin study check` checks it)."""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from critmin.web.workspace import WorkspaceError

#: An uploaded study's limits: members and their total uncompressed size.
MAX_MEMBERS = 50
MAX_UNCOMPRESSED = 50 * 2**20


def study_zip(frames: dict[str, Any], as_of: str) -> bytes:
    """The workspace's records the user may read (projects and support, needs) with the bundled budgets, blocs,
    lists and an empty parameter file, as a study folder in a zip."""
    from critmin.study.template import init_study

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "study"
        init_study(d, as_of)
        frames["projects"].to_csv(d / "register" / "projects.csv", index=False)
        frames["support"].to_csv(d / "register" / "support.csv", index=False)
        frames["buyers"].to_csv(d / "buyers.csv", index=False)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(d.rglob("*")):
                if p.is_file():
                    z.write(p, p.relative_to(d).as_posix())
        return buf.getvalue()


def study_from_zip(body: bytes, name: str) -> tuple[Any, str]:
    """A :class:`critmin.study.Study` from an uploaded zip (study.yaml at the top or in one folder), every input
    checked now; 422 names the file, row and field. Returns the study and the upload's SHA-256."""
    from critmin.errors import CritminError
    from critmin.study import Study

    sha = hashlib.sha256(body).hexdigest()
    try:
        z = zipfile.ZipFile(io.BytesIO(body))
    except zipfile.BadZipFile as exc:
        raise WorkspaceError(422, f"{name}: not a zip file (zip the folder `critmin study init` wrote)") from exc
    infos = [i for i in z.infolist() if not i.is_dir()]
    if len(infos) > MAX_MEMBERS or sum(i.file_size for i in infos) > MAX_UNCOMPRESSED:
        raise WorkspaceError(413, f"{name}: more than {MAX_MEMBERS} files or {MAX_UNCOMPRESSED // 2**20} MiB uncompressed")
    for i in infos:
        parts = PurePosixPath(i.filename).parts
        if i.filename.startswith("/") or ".." in parts or "\\" in i.filename:
            raise WorkspaceError(422, f"{name}: unsafe path '{i.filename}' in the zip")
    from critmin.workbooks import WorkbookTooLarge, check_csv, check_workbook

    for i in infos:  # every table bounded before anything reads it (the readers check again; this answers 413 at once)
        suffix = PurePosixPath(i.filename).suffix.lower()
        try:
            if suffix == ".csv":
                check_csv(z.read(i), i.filename)
            elif suffix == ".xlsx":
                try:
                    check_workbook(z.read(i))
                except WorkbookTooLarge as exc:
                    raise WorkbookTooLarge(f"{i.filename}: {exc}") from exc
        except WorkbookTooLarge as exc:
            raise WorkspaceError(413, f"{name}: {exc}") from exc
        except ValueError:
            pass  # a broken workbook: its reader names the problem
    studies = [i.filename for i in infos if PurePosixPath(i.filename).name == "study.yaml"]
    if len(studies) != 1:
        raise WorkspaceError(422, f"{name}: the zip must hold exactly one study.yaml (found {len(studies)})")
    with tempfile.TemporaryDirectory() as tmp:
        for i in infos:
            target = Path(tmp) / i.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(i))
        try:
            # every input is read here, inside the folder's lifetime (Study.check)
            study = Study.from_file(Path(tmp) / studies[0])
        except (CritminError, ValueError) as exc:
            # name the files as they are in the zip, never by this server's temporary folder
            msg = str(exc).replace(str(Path(tmp).resolve()) + "/", "").replace(tmp + "/", "")
            raise WorkspaceError(422, f"{name}: {msg}", [{"field": "study", "message": msg}]) from exc
    return study, sha
