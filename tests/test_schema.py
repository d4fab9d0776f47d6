"""One schema mechanism (issue 13): the atlas, the project register and the buyers register are each described
by a schema CSV of the same form (critmin.atlas.schema.read_schemas). The column lists, the data dictionaries in
docs/ and the Excel templates come from those files, and the pydantic row models that validate a register are
checked against them here, so a column added to one and not the other fails."""

from __future__ import annotations

import typing
from pathlib import Path

import pandas as pd
import pytest
from pydantic import BaseModel

from critmin.atlas.schema import read_schemas
from critmin.deliver.buyers import (
    BUYER_COLUMNS,
    BUYER_SCHEMAS,
    Buyer,
    bundled_buyers,
    buyers_workbook,
    read_buyers,
)
from critmin.portfolio.register_schema import (
    INSTRUMENTS,
    REGISTER_SCHEMAS,
    STATUS_CLASSES,
    Project,
    SupportAction,
)
from critmin.report.dictionary import DOCUMENTS, block, dictionaries

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("schemas", "table", "model"), [(REGISTER_SCHEMAS, "projects", Project), (REGISTER_SCHEMAS, "support", SupportAction),
                                                         (BUYER_SCHEMAS, "buyers", Buyer)])
def test_row_models_and_schema_files_declare_the_same_columns(schemas: dict, table: str, model: type[BaseModel]) -> None:
    cols = schemas[table].columns
    assert [c.column for c in cols] == list(model.model_fields), "same columns, same order"
    for c in cols:
        assert c.required == model.model_fields[c.column].is_required(), f"{table}.{c.column}: required differs"
        numeric = {"float": float, "int": int}.get(c.kind)
        if numeric is not None:
            assert numeric in typing.get_args(model.model_fields[c.column].annotation) or model.model_fields[c.column].annotation is numeric, c.column


def test_vocabularies_in_the_schema_are_the_models_vocabularies() -> None:
    t = {c.column: c for c in REGISTER_SCHEMAS["projects"].columns}
    s = {c.column: c for c in REGISTER_SCHEMAS["support"].columns}
    assert t["status_class"].choices == list(STATUS_CLASSES)
    assert s["instrument"].choices == list(INSTRUMENTS)
    assert t["feoc"].choices == list(typing.get_args(Project.model_fields["feoc"].annotation)[:2])


def test_every_schema_file_has_the_same_form() -> None:
    from critmin.atlas.schema import table_schemas

    dtypes = {"str", "float", "int", "year", "bool", "iso3", "iso3list", "source", "commodity", "stage"}
    checks = {"", "unique", "nonneg", "pct", "frac", "date", "month", "year_month", "year_date", "id"}
    for schemas in (table_schemas(), REGISTER_SCHEMAS, BUYER_SCHEMAS):
        for t in schemas.values():
            for c in t.columns:
                assert c.dtype in dtypes, (t.name, c.column, c.dtype)
                assert c.check in checks or c.check.startswith(("in:", "ref:")), (t.name, c.column, c.check)
                assert c.description, (t.name, c.column)
    assert read_schemas("critmin.deliver", "schema/buyers.csv") is BUYER_SCHEMAS  # read once


def test_the_documents_hold_the_dictionaries_generated_from_the_schemas() -> None:
    for name, text in dictionaries().items():
        doc = (ROOT / "docs" / DOCUMENTS[name]).read_text(encoding="utf-8")
        assert block(name, text) in doc, f"docs/{DOCUMENTS[name]}: run `critmin data dictionary --docs docs`"


def test_the_buyers_template_is_generated_from_the_schema_and_reads_back(tmp_path: Path) -> None:
    import openpyxl

    buyers = bundled_buyers()
    p = tmp_path / "buyers.xlsx"
    p.write_bytes(buyers_workbook(buyers))
    wb = openpyxl.load_workbook(p)
    assert wb.sheetnames == ["buyers", "README"]
    assert [c.value for c in wb["buyers"][1]] == list(BUYER_COLUMNS)
    assert wb["buyers"].freeze_panes == "B2"
    readme = [r for r in wb["README"].iter_rows(min_row=2, values_only=True)]
    assert [r[1] for r in readme] == list(BUYER_COLUMNS)
    back = read_buyers(p)
    pd.testing.assert_series_equal(back["buyer_id"], buyers["buyer_id"])
    pd.testing.assert_series_equal(back["demand_t_per_year"].astype(float), buyers["demand_t_per_year"].astype(float))


def test_the_register_template_takes_its_drop_downs_from_the_schema(tmp_path: Path) -> None:
    import openpyxl

    from critmin.portfolio.register import bundled_register
    from critmin.portfolio.register_files import xlsx_template

    p = tmp_path / "register.xlsx"
    p.write_bytes(xlsx_template(bundled_register()))
    ws = openpyxl.load_workbook(p)["projects"]
    lists = {dv.formula1.strip('"') for dv in ws.data_validations.dataValidation}
    assert ",".join(STATUS_CLASSES) in lists and "yes,no" in lists
