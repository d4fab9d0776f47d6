"""The project register (issue 4, section 1): bundled data, conversions, validation, import/export, CLI."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

from critmin.atlas import Atlas
from critmin.cli_projects import projects_app
from critmin.portfolio.build_register import build_bundled_register
from critmin.portfolio.register import (
    Register,
    bundled_register,
    bundled_register_path,
    read_register,
    support_summary,
)
from critmin.portfolio.register_files import export_register, import_register, write_register
from critmin.portfolio.register_schema import (
    PROJECT_FIELDS,
    SUPPORT_FIELDS,
    RegisterError,
    RegisterProblem,
    default_counts,
)

from .conftest import RAW

runner = CliRunner()


@pytest.fixture(scope="module")
def reg(atlas: Atlas) -> Register:
    return bundled_register(atlas)


@pytest.fixture()
def regdir(tmp_path: Path) -> Path:
    """A writable copy of the bundled register (projects.csv, support.csv)."""
    dst = tmp_path / "register"
    dst.mkdir()
    for name in ("projects.csv", "support.csv"):
        shutil.copy2(bundled_register_path() / name, dst / name)
    return dst


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as fh:
        r = csv.DictReader(fh)
        return list(r.fieldnames or []), list(r)


def _write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def _edit(path: Path, row: int, **values: str) -> int:
    """Set fields of data row ``row`` (0-based); returns the file line of that row (header = line 1)."""
    header, rows = _rows(path)
    rows[row].update(values)
    _write_rows(path, header, rows)
    return row + 2


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# ------------------------------------------------------------------------------------------------ bundled data


def test_bundled_register_loads(reg: Register) -> None:
    assert len(reg.projects) == 71 and len(reg.support) == 121
    assert list(reg.projects.columns) == list(PROJECT_FIELDS)
    assert list(reg.support.columns) == list(SUPPORT_FIELDS)
    assert (reg.projects["sources"].str.startswith("http")).all()
    assert reg.projects["project_id"].is_unique and reg.support["support_id"].is_unique
    assert set(reg.support["project_id"]) <= set(reg.projects["project_id"])
    # nothing estimated: no source gives these, so they stay blank
    for col in ("completion_probability", "delay_months", "opex_usd_per_t"):
        assert reg.projects[col].isna().all(), col
    # review 13: unit costs and lives only where a study publishes them, each explained in the note
    for col, word in (("unit_cost_usd_per_t", "Unit cost: "), ("life_years", "Life: ")):
        have = reg.projects[reg.projects[col].notna()]
        assert len(have) and have["note"].str.contains(word, regex=False).all(), col
    assert reg.projects["unit_cost_usd_per_t"].notna().sum() == 9 and reg.projects["life_years"].notna().sum() == 6
    assert (reg.projects["feoc"] == "").all()
    # every filled capacity is explained by a published capacity
    filled = reg.projects[reg.projects["capacity_t"].notna()]
    assert (filled["capacity_raw"] != "").all()
    assert len(filled) == 64 and reg.projects["capex_usd"].notna().sum() == 64  # 90 % of 71 (issue 12)


def test_bundled_register_is_the_build_of_the_raw_files(tmp_path: Path, atlas: Atlas) -> None:
    first, again = tmp_path / "first", tmp_path / "again"
    build_bundled_register(RAW, first, atlas=atlas)
    for name in ("projects.csv", "support.csv", "REGISTER.md"):
        assert (first / name).read_bytes() == (bundled_register_path() / name).read_bytes(), name
    # deterministic: a second build (from the projects folder itself) is byte-identical
    build_bundled_register(RAW / "projects", again, atlas=atlas)
    assert _snapshot(again) == _snapshot(first)
    # the curated decisions are data with their sources (issue 13: they were a Python literal in build_register.py)
    from critmin.portfolio.build_register import curated_dir

    with (curated_dir() / "decisions.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 71 and all(r["source"] and r["node_why"] and r["cap_why"] for r in rows)


@pytest.mark.parametrize(
    ("project_id", "expected", "conversion"),
    [
        # 40,000 t Li2CO3; Li2CO3/2Li = 73.89/13.882 = 5.323 -> 40,000/5.323 = 7,514.56 t Li
        ("P050", 7514.6, "40,000 t Li2CO3 / 5.323 = 7,514.6 t Li"),
        # 8,250 t Li2CO3 output of the Li-Cycle hub -> 8,250/5.323 = 1,549.88 t Li
        ("P055", 1549.9, "8,250 t Li2CO3 / 5.323 = 1,549.9 t Li"),
        # 18.4 million lb Sb x 0.45359237 kg/lb = 8,346,099.6 kg = 8,346.1 t Sb
        ("P034", 8346.1, "18,400,000 lb Sb x 0.00045359237 t/lb = 8,346.1 t Sb"),
        # Caremag: 600 t Dy+Tb oxides + 800 t NdPr oxide = 1,400 t REO
        ("P024", 600.0, "600 t Dy+Tb oxides = 600 t Dy+Tb oxide"),
        # 30,000 t LiOH.H2O; LiOH.H2O/Li = 41.96/6.941 = 6.046 -> 4,961.96 t Li
        ("P052", 4962.0, "30,000 t LiOH.H2O / 6.046 = 4,962 t Li"),
        # 752,000 MTU WO3 x 10 kg = 7,520 t WO3; WO3/W = 231.837/183.84 = 1.26108 -> 5,963.1 t W
        ("P066", 5963.1, "7,520 t WO3 / 1.26108 = 5,963.1 t W"),
        # 7,450 t ferroniobium at the 65 % Nb specification = 4,842.5 t Nb (a product grade, named in FACTORS)
        ("P080", 4842.5, "7,450 t FeNb x 0.65 = 4,842.5 t Nb"),
        # 100 GWh x 1.259 kg CAM/kWh (BatPaC 5.2, NMC811) = 125,900 t CAM
        ("P054", 125900.0, "100 GWh x 1259.0 = 125,900 t CAM"),
        # 27,000 t pCAM x 97.3/92.3 (LiMO2/M(OH)2, NMC811) = 28,439.1 t
        ("P056", 28439.1, "27,000 t pCAM x 1.0533 = 28,439.1 t CAM-equivalent"),
        # 1,200 t WO3 x 183.84/231.837 = 951.6 t W
        ("P068", 951.6, "1,200 t WO3 / 1.26108 = 951.6 t W"),
        # 353,208 oz 4E x 472/744 Pd x 31.1034768 g/oz = 6.97 t Pd (rounded to 0.1 t)
        ("P071", 7.0, "353,208 oz 4E x 1.9732e-05 = 7 t Pd (low end of the published range)"),
        # more than 200 t Dy+Tb at Dy:Tb 3:1 = 150 t Dy
        ("P072", 150.0, "200 t Dy+Tb x 0.75 = 150 t Dy"),
        # 9 t Dy+Tb in a quarter x 4 x 5/6 = 30 t Dy a year
        ("P073", 30.0, "9 t Dy+Tb a quarter x 3.33333 = 30 t Dy"),
    ],
)
def test_golden_conversions(reg: Register, project_id: str, expected: float, conversion: str) -> None:
    p = reg.project(project_id)
    assert p["capacity_t"] == pytest.approx(expected, abs=0.05)
    assert p["capacity_conversion"] == conversion


def test_curated_decisions(reg: Register) -> None:
    p = reg.projects.set_index("project_id")
    # units already on the node basis are taken as published, ranges at their low end
    assert p.loc["P005", "capacity_t"] == 10500 and p.loc["P011", "capacity_t"] == 850
    # units that neither stoichiometry nor a sourced factor converts stay blank, with the reason in the note
    for pid in ("P032", "P074"):
        assert math.isnan(p.loc[pid, "capacity_t"]) and p.loc[pid, "capacity_raw"], pid
    assert (p.loc["P002", "commodity_id"], p.loc["P002", "stage"]) == ("ndfeb_magnets", "magnet")
    assert (p.loc["P050", "commodity_id"], p.loc["P050", "stage"]) == ("lithium", "refine")
    assert p.loc["P006", "status_class"] == "unlikely" and p.loc["P041", "status_class"] == "paused"
    assert p["note"].str.contains("Node ").all() and p["note"].str.contains("Status class ").all()
    # P007: the USD figure printed by NS Energy for the A$ estimate; other local-currency figures are converted
    # at the IMF rate of the fx rows (December 2026 register completion), and the note shows the arithmetic
    assert p.loc["P007", "capex_usd"] == 1.09e9
    assert p.loc["P020", "capex_usd"] == pytest.approx(75e6 * 1.1214) and "usd_per_eur 1.1214" in p.loc["P020", "capex_note"]
    # expansion phases are projects of their own, naming their parent
    assert "expansion of P001" in p.loc["P072", "note"]
    # output stated per element sits on the element node
    assert (p.loc["P072", "commodity_id"], p.loc["P072", "stage"]) == ("dysprosium", "refine")
    assert (p.loc["P004", "commodity_id"], p.loc["P004", "stage"]) == ("ndpr", "mine") and p.loc["P004", "capacity_t"] == 12000


def test_support_counting_rule(reg: Register) -> None:
    s = reg.support.set_index("support_id")
    assert not s.loc["S012", "counts"]  # superseded
    assert not s.loc["S019", "counts"]  # package total overlapping its components
    assert not s.loc["S024", "counts"]  # EXIM letter of interest
    assert not s.loc["S093", "counts"]  # letter of intent
    assert s.loc["S088", "counts"]  # binding LOI
    assert s.loc["S029", "counts"]  # conditional commitment
    assert s["counts"].sum() == 85
    # review 26: EXIM's Board approval of Stibnite's loan counts; the preliminary letter it superseded does not
    assert s.loc["S121", "counts"] and not s.loc["S120", "counts"]
    assert default_counts("letter_of_interest") is False and default_counts("awarded") is True
    summ = support_summary(reg).set_index(["project_id", "instrument"])
    # Seadrift: 30.4M + 258M counted; the superseded 120M is not
    assert summ.loc[("P006", "grant"), "counted_usd"] == pytest.approx(288.4e6)
    # Serra Verde: only the closed 565M package, not the superseded 465M approval
    assert summ.loc[("P023", "loan"), "counted_usd"] == pytest.approx(565e6)
    # MP: price floor counted with no USD amount
    assert summ.loc[("P001", "price_floor"), "actions_without_usd"] == 1


# ------------------------------------------------------------------------------------------------ bad rows


@pytest.mark.parametrize(
    ("table", "row", "values", "field", "message"),
    [
        ("projects", 3, {"country_iso3": "XXX"}, "country_iso3", "unknown country 'XXX'"),
        ("projects", 4, {"commodity_id": "unobtainium"}, "commodity_id", "unknown commodity 'unobtainium'"),
        ("projects", 5, {"stage": "anode"}, "stage", "(ndpr, anode) is not a stage node"),
        ("projects", 5, {"stage": "smelter"}, "stage", "unknown stage 'smelter'"),
        ("projects", 6, {"capacity_t": "-5"}, "capacity_t", "greater than or equal to 0"),
        ("projects", 6, {"capacity_t": "lots"}, "capacity_t", "valid number"),
        ("projects", 7, {"completion_probability": "1.5"}, "completion_probability", "less than or equal to 1"),
        ("projects", 8, {"status_class": "maybe"}, "status_class", "'operating'"),
        ("projects", 9, {"first_output": "2025-13"}, "first_output", "not a year YYYY or a month YYYY-MM"),
        ("projects", 10, {"sources": ""}, "sources", "required value is blank"),
        ("projects", 11, {"project_id": "P 1"}, "project_id", "should match pattern"),
        ("projects", 12, {"feoc": "maybe"}, "feoc", "'yes'"),
        ("support", 2, {"project_id": "P999"}, "project_id", "unknown project_id 'P999'"),
        ("support", 3, {"instrument": "gift"}, "instrument", "'grant'"),
        ("support", 4, {"amount_usd": "-1"}, "amount_usd", "greater than or equal to 0"),
        ("support", 5, {"participant_iso3": "USA;ZZZ"}, "participant_iso3", "unknown country 'ZZZ'"),
        ("support", 6, {"date": "2024-02-30"}, "date", "not a date"),
    ],
)
def test_bad_row_is_rejected_with_file_line_field(
    regdir: Path, atlas: Atlas, table: str, row: int, values: dict[str, str], field: str, message: str
) -> None:
    line = _edit(regdir / f"{table}.csv", row, **values)
    with pytest.raises(RegisterError) as exc:
        read_register(regdir, atlas=atlas)
    hits = [p for p in exc.value.problems if p.field == field]
    assert hits, exc.value.problems
    p = hits[0]
    assert (p.file, p.line) == (f"{table}.csv", line)
    assert message in p.message, p.message
    assert f"{table}.csv, line {line}, field '{field}'" in str(exc.value)


def test_duplicate_id_and_every_problem_collected(regdir: Path, atlas: Atlas) -> None:
    header, rows = _rows(regdir / "projects.csv")
    dup = dict(rows[1])
    rows.append(dup)
    rows[0]["capacity_t"] = "-1"
    rows[2]["country_iso3"] = "XXX"
    _write_rows(regdir / "projects.csv", header, rows)
    with pytest.raises(RegisterError) as exc:
        read_register(regdir, atlas=atlas)
    problems = exc.value.problems
    assert len(problems) == 3
    by_field = {p.field: p for p in problems}
    assert by_field["project_id"].line == len(rows) + 1 and "duplicate project_id 'P002'" in by_field["project_id"].message
    assert "projects.csv line 3" in by_field["project_id"].message
    assert by_field["capacity_t"].line == 2 and by_field["country_iso3"].line == 4


def test_duplicate_support_id(regdir: Path, atlas: Atlas) -> None:
    line = _edit(regdir / "support.csv", 1, support_id="S001")
    with pytest.raises(RegisterError) as exc:
        read_register(regdir, atlas=atlas)
    (p,) = exc.value.problems
    assert (p.file, p.line, p.field) == ("support.csv", line, "support_id")


def test_structural_problems(regdir: Path, atlas: Atlas) -> None:
    text = (regdir / "projects.csv").read_text(encoding="utf-8").splitlines()
    text[5] = text[5][:40]  # truncated row
    (regdir / "projects.csv").write_text("\n".join(text) + "\n", encoding="utf-8")
    with pytest.raises(RegisterError) as exc:
        read_register(regdir, atlas=atlas)
    assert any(p.line == 6 and "expected 36 fields" in p.message for p in exc.value.problems)
    header, rows = _rows(regdir / "support.csv")
    _write_rows(regdir / "support.csv", [h for h in header if h != "agency"], [{k: v for k, v in r.items() if k != "agency"} for r in rows])
    with pytest.raises(RegisterError) as exc:
        read_register(regdir, atlas=atlas)
    assert any(p.file == "support.csv" and p.field == "agency" and "missing" in p.message for p in exc.value.problems)


def test_an_optional_column_left_out_reads_as_blank(regdir: Path, atlas: Atlas) -> None:
    """A register written before an optional column existed (private_finance_usd, December 2026) still reads."""
    header, rows = _rows(regdir / "projects.csv")
    _write_rows(regdir / "projects.csv", [h for h in header if h != "private_finance_usd"],
                [{k: v for k, v in r.items() if k != "private_finance_usd"} for r in rows])
    r = read_register(regdir, atlas=atlas)
    assert len(r.projects) == len(rows) and r.projects["private_finance_usd"].isna().all()


def test_xlsx_bad_cell_names_sheet_and_cell(tmp_path: Path, reg: Register, atlas: Atlas) -> None:
    book = tmp_path / "projects.xlsx"
    export_register(reg, book)
    wb = openpyxl.load_workbook(book)
    ws = wb["projects"]
    header = [c.value for c in ws[1]]
    col = header.index("capacity_t") + 1
    letter = openpyxl.utils.get_column_letter(col)
    ws.cell(row=7, column=col, value=-3)
    ws2 = wb["support"]
    inst = [c.value for c in ws2[1]].index("instrument") + 1
    ws2.cell(row=4, column=inst, value="gift")
    wb.save(book)
    with pytest.raises(RegisterError) as exc:
        read_register(book, atlas=atlas)
    problems = exc.value.problems
    assert len(problems) == 2
    p = next(p for p in problems if p.field == "capacity_t")
    assert isinstance(p, RegisterProblem) and (p.sheet, p.cell) == ("projects", f"{letter}7")
    assert f"projects.xlsx, sheet projects, cell {letter}7, field 'capacity_t'" in str(exc.value)
    q = next(p for p in problems if p.field == "instrument")
    assert str(q).startswith(f"projects.xlsx, sheet support, cell {openpyxl.utils.get_column_letter(inst)}4")


def test_xlsx_template_has_readme_and_validation_lists(tmp_path: Path, reg: Register) -> None:
    book = tmp_path / "template.xlsx"
    export_register(reg, book)
    wb = openpyxl.load_workbook(book)
    assert wb.sheetnames == ["projects", "support", "README"]
    readme = list(wb["README"].iter_rows(values_only=True))
    described = {(r[0], r[1]) for r in readme[1:]}
    assert all(("projects", c) in described for c in PROJECT_FIELDS)
    assert all(("support", c) in described for c in SUPPORT_FIELDS)
    formulas = [dv.formula1 for dv in wb["projects"].data_validations.dataValidation]
    assert any("operating" in f and "unlikely" in f for f in formulas)
    formulas = [dv.formula1 for dv in wb["support"].data_validations.dataValidation]
    assert any("loan_guarantee" in f for f in formulas)


# ------------------------------------------------------------------------------------------------ import / export


def test_failed_import_changes_nothing(regdir: Path, tmp_path: Path, atlas: Atlas) -> None:
    before = _snapshot(regdir)
    header, rows = _rows(regdir / "projects.csv")
    new = dict(rows[0], project_id="P900", name="New project")
    bad = dict(rows[1], project_id="P901", completion_probability="2")
    src = tmp_path / "incoming.csv"
    _write_rows(src, header, [new, bad])
    with pytest.raises(RegisterError) as exc:
        import_register(src, regdir, atlas=atlas)
    (p,) = exc.value.problems
    assert (p.file, p.line, p.field) == ("incoming.csv", 3, "completion_probability")
    assert _snapshot(regdir) == before
    # a support row for a project that exists nowhere: also nothing written
    sh, srows = _rows(regdir / "support.csv")
    src2 = tmp_path / "support_in.csv"
    _write_rows(src2, sh, [dict(srows[0], support_id="S900", project_id="P999")])
    with pytest.raises(RegisterError):
        import_register(src2, regdir, atlas=atlas)
    assert _snapshot(regdir) == before


def test_import_merges_by_id(regdir: Path, tmp_path: Path, atlas: Atlas) -> None:
    header, rows = _rows(regdir / "projects.csv")
    changed = dict(rows[0], capacity_t="61000")
    new = dict(rows[0], project_id="P900", name="New project")
    src = tmp_path / "incoming.csv"
    _write_rows(src, header, [changed, new])
    counts = import_register(src, regdir, atlas=atlas)
    assert counts["projects_added"] == 1 and counts["projects_updated"] == 1 and counts["projects"] == 72
    r = read_register(regdir, atlas=atlas)
    assert len(r.projects) == 72 and len(r.support) == 121
    assert r.project("P001")["capacity_t"] == 61000
    assert not any(p.name.startswith(".") for p in regdir.iterdir())  # no temporary files left


def test_round_trip_export_import(tmp_path: Path, reg: Register, atlas: Atlas) -> None:
    book = tmp_path / "register.xlsx"
    export_register(reg, book)
    target = tmp_path / "fresh"
    counts = import_register(book, target, replace=True, atlas=atlas)
    assert counts["projects"] == 71 and counts["support"] == 121
    back = read_register(target, atlas=atlas)
    pd.testing.assert_frame_equal(back.projects, reg.projects)
    pd.testing.assert_frame_equal(back.support, reg.support)
    for name in ("projects.csv", "support.csv"):
        assert (target / name).read_bytes() == (bundled_register_path() / name).read_bytes()
    # CSV export (projects) merges back onto the bundled register unchanged
    csv_path = tmp_path / "projects_export.csv"
    export_register(reg, csv_path)
    assert csv_path.read_bytes() == (bundled_register_path() / "projects.csv").read_bytes()
    import_register(csv_path, target, atlas=atlas)
    assert (target / "projects.csv").read_bytes() == (bundled_register_path() / "projects.csv").read_bytes()


def test_write_register_failure_leaves_old_files(regdir: Path, reg: Register, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _snapshot(regdir)
    smaller = Register(reg.projects.head(3), reg.support[reg.support["project_id"].isin(reg.projects.head(3)["project_id"])])
    real = os.replace

    def flaky(src: str | Path, dst: str | Path) -> None:
        if Path(dst).name == "support.csv" and Path(src).parent != Path(dst).parent:
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError):
        write_register(smaller, regdir)
    assert _snapshot(regdir) == before


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_list(regdir: Path) -> None:
    res = runner.invoke(projects_app, ["list", "--commodity", "lithium", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert {r["project_id"] for r in data} == {"P050", "P051", "P052", "P053", "P055"}
    assert next(r for r in data if r["project_id"] == "P050")["support_usd"] == pytest.approx(2.26e9)
    res = runner.invoke(projects_app, ["list", "--country", "AUS", "--status", "operating", "--format", "csv", "--register", str(regdir)])
    assert res.exit_code == 0
    ids = [r["project_id"] for r in csv.DictReader(io.StringIO(res.stdout))]
    assert ids == ["P004", "P068"]  # Mt Carbine: its expansion is producing (review 9)
    res = runner.invoke(projects_app, ["list"])
    assert res.exit_code == 0 and "71 projects" in res.stdout
    res = runner.invoke(projects_app, ["list", "--status", "someday"])
    assert res.exit_code == 2


def test_cli_show() -> None:
    res = runner.invoke(projects_app, ["show", "P050", "--format", "json"])
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert data["project"]["capacity_t"] == pytest.approx(7514.6)
    assert {s["support_id"] for s in data["support"]} == {"S074", "S075"}
    res = runner.invoke(projects_app, ["show", "P001"])
    assert res.exit_code == 0 and "Mountain Pass" in res.stdout and "S004" in res.stdout
    res = runner.invoke(projects_app, ["show", "P999"])
    assert res.exit_code == 2 and "no project 'P999'" in res.output


def test_cli_validate(regdir: Path, tmp_path: Path) -> None:
    res = runner.invoke(projects_app, ["validate", str(regdir)])
    assert res.exit_code == 0 and "OK" in res.stdout and "71 projects, 121 support actions" in res.stdout
    line = _edit(regdir / "projects.csv", 2, country_iso3="XXX")
    res = runner.invoke(projects_app, ["validate", str(regdir / "projects.csv")])
    assert res.exit_code == 2
    assert f"projects.csv, line {line}, field 'country_iso3'" in res.stdout
    # a support table alone is checked against the bundled projects
    res = runner.invoke(projects_app, ["validate", str(bundled_register_path() / "support.csv")])
    assert res.exit_code == 0 and "121 support actions" in res.stdout


def test_cli_import_and_export(regdir: Path, tmp_path: Path) -> None:
    book = tmp_path / "t.xlsx"
    res = runner.invoke(projects_app, ["export", str(book), "--register", str(regdir)])
    assert res.exit_code == 0 and book.exists()
    target = tmp_path / "new_register"
    res = runner.invoke(projects_app, ["import", str(book), "--register", str(target), "--replace"])
    assert res.exit_code == 0, res.output
    assert "now 71 projects, 121 support actions" in res.stdout
    header, rows = _rows(regdir / "support.csv")
    bad = tmp_path / "bad_support.csv"
    _write_rows(bad, header, [dict(rows[0], instrument="gift")])
    before = _snapshot(target)
    res = runner.invoke(projects_app, ["import", str(bad), "--register", str(target)])
    assert res.exit_code == 2 and "bad_support.csv, line 2, field 'instrument'" in res.output
    assert _snapshot(target) == before
    res = runner.invoke(projects_app, ["export", str(tmp_path / "x.txt")])
    assert res.exit_code == 2


def test_far_cell_and_huge_workbooks_are_refused_fast(tmp_path: Path) -> None:
    """Issue 14 finding 2: one cell at XFD1048576 in a 50 KB workbook made the reader materialise the grid
    (8 GB). The bounded reader refuses it, and a 100 k-row sheet beyond the limit, in well under a second."""
    import time

    import openpyxl

    from critmin.deliver.buyers import BuyerError, read_buyers
    from critmin.portfolio.register import bundled_register_path, read_register
    from critmin.portfolio.register_schema import RegisterError
    from critmin.workbooks import WorkbookTooLarge, check_workbook

    src = tmp_path / "ok.xlsx"
    from critmin.portfolio.register_files import export_register

    export_register(read_register(bundled_register_path()), src)
    far = tmp_path / "far.xlsx"
    wb = openpyxl.load_workbook(src)
    wb["projects"]["XFD1048576"] = "x"
    wb.save(far)
    assert far.stat().st_size < 200_000
    t0 = time.perf_counter()
    with pytest.raises(WorkbookTooLarge):
        check_workbook(far)
    with pytest.raises(RegisterError, match="too large"):
        read_register(far)
    buyers = tmp_path / "b.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "buyers"
    ws.append(["buyer_id", "name"])
    ws["ZZ300000"] = 1
    wb.save(buyers)
    with pytest.raises(BuyerError, match="row 300,000"):
        read_buyers(buyers)
    assert time.perf_counter() - t0 < 5
    # the workbook critmin exports still reads back
    assert len(read_register(src).projects) == 71


def test_malformed_coproducts_are_named_with_file_row_and_field(regdir: Path, atlas: Atlas) -> None:
    """Review 12 added ``coproducts`` (commodity:t/yr); a malformed value or an unknown commodity is a clear error."""
    line = _edit(regdir / "projects.csv", 1, coproducts="gold:lots")
    with pytest.raises(RegisterError) as exc:
        read_register(regdir, atlas=atlas)
    (p,) = exc.value.problems
    assert (p.file, p.line, p.field) == ("projects.csv", line, "coproducts") and "commodity:tonnes a year" in p.message
    _edit(regdir / "projects.csv", 1, coproducts="unobtainium:3")
    with pytest.raises(RegisterError, match="unknown commodity 'unobtainium' in coproducts"):
        read_register(regdir, atlas=atlas)


def test_a_project_is_counted_on_its_node_basis_with_its_study_costs(reg: Register, atlas) -> None:
    """Review 22: Syerston's 60 t of Sc2O3 were converted to 39.1 t of scandium (from when scandium had no node),
    against a node counted and priced per t of Sc2O3; Mactung's and Syerston's study costs sat in the raw unit-cost
    file, unused. US$534 per kg Sc2O3 = US$534,000 per t; C$104 per MTU WO3 / 7.9296 kg W per MTU x 0.70 USD/CAD."""
    prices = atlas.tables["node_prices"]
    sc = prices[(prices["commodity_id"] == "scandium") & prices["use"]]
    assert sc["quantity_basis"].iloc[0] == "t Sc2O3"
    p = reg.project("P069")
    assert p["capacity_t"] == 60 and not p["capacity_conversion"]
    assert p["unit_cost_usd_per_t"] == 534_000 and p["life_years"] == 32
    m = reg.project("P066")
    assert m["unit_cost_usd_per_t"] == pytest.approx(104 / (10 * 183.84 / 231.84) * 1000 * 0.70, abs=1.0)
    assert m["life_years"] == 11.2
