"""Build the bundled project register from the raw project files (``data/raw/projects/*.csv``).

``build_bundled_register(raw_dir, out_dir)`` reads ``projects.csv`` and ``support.csv`` (PROVENANCE.md 8a-8b),
applies the curated per-project decisions in :data:`CURATED` (``portfolio/curated/decisions.csv``: the atlas node
each project supplies, its status class and how its published capacity converts to the node basis, each row
naming the completion batch whose sources back it) and writes ``projects.csv``,
``support.csv`` and ``REGISTER.md`` to ``out_dir``. The output is deterministic: rows sorted by id, floats
written without exponent or trailing zeros, no dates or paths of the machine.

Rules: capacity is converted with stoichiometric factors, exact unit factors or a product grade printed by the
project's own source only (:data:`FACTORS`, ``portfolio/curated/factors.csv``), the low end of a published range is used, and a field stays blank when no source gives it. Every decision is
written into the project's ``note``. Run ``python -m critmin.portfolio.build_register data/raw
src/critmin/portfolio/data`` from the repository root to rebuild.
"""

from __future__ import annotations

import csv
import functools
import os
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from critmin.errors import CritminError
from critmin.output import write_atomic
from critmin.portfolio.register import Register, _atlas_refs, _validate, models_frame, support_summary
from critmin.portfolio.register_files import write_register
from critmin.portfolio.register_schema import (
    INSTRUMENTS,
    NOT_COUNTED_STATUSES,
    PROJECT_COLUMNS,
    STATUS_CLASSES,
    SUPPORT_COLUMNS,
    RegisterError,
    _Loc,
    node_basis,
)

if TYPE_CHECKING:
    from critmin.atlas.model import Atlas

# ------------------------------------------------------------------------------------------------ factors

def _num(v: float) -> str:
    """1234.56 -> '1,234.6'; whole numbers without decimals."""
    r = round(v, 1)
    return f"{r:,.0f}" if r == int(r) else f"{r:,.1f}"


# ------------------------------------------------------------------------------------------------ decisions


@dataclass(frozen=True)
class Cap:
    """How a project's published capacity becomes ``capacity_t``.

    kinds: ``basis`` (published on the node basis already: the low value is used as is), ``divide`` /
    ``multiply`` (by a factor of :data:`FACTORS`), ``sum`` (of published oxide figures), ``blank``. ``value``
    overrides the raw capacity_value when the figure converted is another one printed in the raw row (it must
    appear in the raw capacity text); ``why`` explains the decision.
    """

    kind: str
    why: str
    factor: str = ""
    value: float | None = None
    parts: tuple[tuple[float, str], ...] = ()
    unit_from: str = ""
    unit_to: str = ""


@dataclass(frozen=True)
class Decision:
    commodity_id: str
    stage: str
    node_why: str
    status_class: str
    status_why: str
    cap: Cap
    offtakes: str = ""
    esg_flags: str = ""
    first_output: str | None = None  # None: the raw first_production; "" blanks it (reason in first_output_why)
    first_output_why: str = ""
    capex_usd: float | None = None  # set only when a source printed a USD figure that the raw capex_usd lacks
    capex_why: str = ""
    private_finance_usd: float | None = None  # committed private finance for the capex, when a source prints it
    private_finance_why: str = ""
    coproducts: str = ""  # other revenue products of the plant, commodity:t/yr at nameplate, when a source prints them
    coproducts_why: str = ""
    unit_cost_usd_per_t: float | None = None  # the plant's operating cost per t of the node's product, when published
    unit_cost_why: str = ""
    life_years: float | None = None  # years at nameplate (mine life, or reserves / output), when published
    life_why: str = ""
    output_t: float | None = None  # latest reported annual output on the node basis, when a source prints it
    output_period: str = ""
    output_why: str = ""


def curated_dir() -> Path:
    """The curated register decisions shipped with the package (``portfolio/curated``)."""
    return Path(str(resources.files("critmin.portfolio").joinpath("curated")))


def load_factors(path: Path | None = None) -> dict[str, tuple[float, str]]:
    """``factors.csv``: each conversion factor (stoichiometric, an exact unit definition or a product grade printed
    by the project's own source) with its derivation."""
    p = path or curated_dir() / "factors.csv"
    with p.open(encoding="utf-8", newline="") as fh:
        return {r["factor"]: (float(r["value"]), r["derivation"]) for r in csv.DictReader(fh)}


def load_decisions(path: Path | None = None) -> dict[str, Decision]:
    """``decisions.csv``: per project, the atlas node it supplies, its status class, how its published capacity
    converts to the node basis, and the completion batch (``source``) whose sources back the decision.

    ``first_output``: blank = the raw row's first production, ``blank`` = left blank (reason in
    ``first_output_why``), else the month or year to use. ``cap_parts``: ``value:label`` pairs separated by ``;``."""
    p = path or curated_dir() / "decisions.csv"
    out: dict[str, Decision] = {}
    with p.open(encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            parts = tuple((float(v), lab) for v, _, lab in (x.partition(":") for x in r["cap_parts"].split(";") if x))
            cap = Cap(r["cap_kind"], r["cap_why"], factor=r["cap_factor"], value=float(r["cap_value"]) if r["cap_value"] else None,
                      parts=parts, unit_from=r["cap_unit_from"], unit_to=r["cap_unit_to"])
            fo = r["first_output"]
            out[r["project_id"]] = Decision(r["commodity_id"], r["stage"], r["node_why"], r["status_class"], r["status_why"], cap,
                                            offtakes=r["offtakes"], esg_flags=r["esg_flags"],
                                            first_output=None if fo == "" else ("" if fo == "blank" else fo),
                                            first_output_why=r["first_output_why"],
                                            capex_usd=float(r["capex_usd"]) if r["capex_usd"] else None, capex_why=r["capex_why"],
                                            private_finance_usd=float(r["private_finance_usd"]) if r["private_finance_usd"] else None,
                                            private_finance_why=r["private_finance_why"],
                                            coproducts=r.get("coproducts") or "", coproducts_why=r.get("coproducts_why") or "",
                                            unit_cost_usd_per_t=float(r["unit_cost_usd_per_t"]) if r.get("unit_cost_usd_per_t") else None,
                                            unit_cost_why=r.get("unit_cost_why") or "",
                                            life_years=float(r["life_years"]) if r.get("life_years") else None,
                                            life_why=r.get("life_why") or "",
                                            output_t=float(r["output_t"]) if r.get("output_t") else None,
                                            output_period=r.get("output_period") or "", output_why=r.get("output_why") or "")
    return out


def load_federal_permits(path: Path | None = None) -> dict[str, tuple[str, str]]:
    """``federal_permits.csv``: per project, whether a U.S. federal permit or record of decision is still to be taken
    (``yes``/``no``), with why and the source; a project not listed is unknown (blank). Review 27: White Mesa Phase 2,
    licensed by Utah, was credited with FAST-41 permitting facilitation."""
    p = path or curated_dir() / "federal_permits.csv"
    with p.open(encoding="utf-8", newline="") as fh:
        return {r["project_id"]: (r["federal_decision_pending"], f"{r['why']} ({r['source']}, {r['url']})") for r in csv.DictReader(fh)}


def load_output_caveats(path: Path | None = None) -> dict[str, tuple[str, str]]:
    """``output_caveats.csv``: per project, what its output needs before buyers can use it that the register does not
    model, with the source (review 25 F6: Stibnite's antimony concentrate has no named smelter). Named wherever a
    stock is said to fall on the project's output."""
    p = path or curated_dir() / "output_caveats.csv"
    with p.open(encoding="utf-8", newline="") as fh:
        return {r["project_id"]: (r["caveat"], f"{r['source']}, {r['url']}") for r in csv.DictReader(fh)}


#: Per project, a U.S. federal decision still pending (``curated/federal_permits.csv``).
FEDERAL: dict[str, tuple[str, str]] = load_federal_permits()
#: Conversion factors used (stoichiometric, exact unit definitions or printed product grades), with their derivation.
FACTORS: dict[str, tuple[float, str]] = load_factors()
#: The curated decision on every project of the raw register (``curated/decisions.csv``).
CURATED: dict[str, Decision] = load_decisions()


# ------------------------------------------------------------------------------------------------ build


def _raw_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        out = []
        last = reader.line_num
        for rec in reader:
            out.append((last + 1, {k: (v or "").strip() for k, v in rec.items()}))
            last = reader.line_num
        return out


def _f(text: str) -> float | None:
    return float(text) if text.strip() else None


def _capacity(pid: str, raw: Mapping[str, str], cap: Cap) -> tuple[float | None, str]:
    """capacity_t and capacity_conversion of one project."""
    low = _f(raw["capacity_value"])
    high = _f(raw["capacity_value_high"])
    rng = " (low end of the published range)" if high is not None else ""
    if cap.kind == "blank":
        return None, ""
    if cap.kind == "basis":
        if low is None:
            raise CritminError(f"{pid}: capacity kind 'basis' but the raw row has no capacity_value")
        return round(low, 1), ""
    if cap.kind == "sum":
        total = sum(v for v, _ in cap.parts)
        for v, _ in cap.parts:
            _check_printed(pid, raw, v)
        terms = " + ".join(f"{_num(v)} t {label}" for v, label in cap.parts)
        return round(total, 1), f"{terms} = {_num(total)} t {cap.unit_to}"
    factor, _ = FACTORS[cap.factor]
    value = cap.value if cap.value is not None else low
    if value is None:
        raise CritminError(f"{pid}: no capacity value to convert")
    if cap.value is not None:
        _check_printed(pid, raw, cap.value)
    if cap.kind == "divide":
        out = value / factor
        return round(out, 1), f"{_num(value)} t {cap.unit_from} / {factor:g} = {_num(out)} t {cap.unit_to}{rng}"
    if cap.kind == "multiply":
        out = value * factor
        per = " t/lb" if cap.factor == "t_per_lb" else ""
        shown = repr(factor) if len(repr(factor)) <= 13 else f"{factor:.6g}"
        return round(out, 1), f"{_num(value)} {cap.unit_from} x {shown}{per} = {_num(out)} t {cap.unit_to}{rng}"
    raise CritminError(f"{pid}: unknown capacity kind '{cap.kind}'")


def _check_printed(pid: str, raw: Mapping[str, str], value: float) -> None:
    """A figure used in a conversion must be printed in the raw capacity fields (no invented numbers)."""
    text = " ".join(raw[k] for k in ("capacity_value", "capacity_unit", "capacity_basis")).replace(",", "")
    tokens = {value, value / 1e6}
    printed = any(f"{t:g}" in text for t in tokens)
    if not printed:
        raise CritminError(f"{pid}: the figure {value:g} used in the capacity conversion is not printed in the raw row")


def _capacity_raw(raw: Mapping[str, str]) -> str:
    if not raw["capacity_value"]:
        return ""
    v = _num(float(raw["capacity_value"]))
    if raw["capacity_value_high"]:
        v += "-" + _num(float(raw["capacity_value_high"]))
    text = f"{v} {raw['capacity_unit']}".strip()
    return f"{text} [{raw['capacity_basis']}]" if raw["capacity_basis"] else text


def _capex(raw: Mapping[str, str], d: Decision) -> tuple[float | None, str]:
    usd = _f(raw["capex_usd"])
    parts = []
    if raw["capex_value"]:
        v = f"{float(raw['capex_value']):,.0f}"
        if raw["capex_value_high"]:
            v += f"-{float(raw['capex_value_high']):,.0f}"
        parts.append(f"{raw['capex_currency']} {v}".strip())
    if raw["capex_basis"]:
        parts.append(raw["capex_basis"])
    if d.capex_usd is not None:
        if usd is not None:
            raise CritminError(f"{raw['project_id']}: curated capex_usd would override a raw capex_usd")
        usd = d.capex_usd
    if d.capex_why:
        parts.append(d.capex_why)
    return usd, "; ".join(parts)


def _project(raw: Mapping[str, str], d: Decision) -> dict[str, Any]:
    pid = raw["project_id"]
    cap_t, conversion = _capacity(pid, raw, d.cap)
    capex_usd, capex_note = _capex(raw, d)
    first = raw["first_production"] if d.first_output is None else d.first_output
    status = raw["status"] + (f" (as of {raw['status_as_of']})" if raw["status_as_of"] else "")
    note = [
        f"Node {d.commodity_id}/{d.stage}: {d.node_why}.",
        f"Status class {d.status_class}: {d.status_why}.",
        f"Capacity: {d.cap.why}." if d.cap.why else "",
        f"{d.first_output_why}." if d.first_output_why else "",
        f"Private finance: {d.private_finance_why}." if d.private_finance_why else "",
        f"Co-products: {d.coproducts_why}." if d.coproducts_why else "",
        f"Unit cost: {d.unit_cost_why}." if d.unit_cost_why else "",
        f"Life: {d.life_why}." if d.life_why else "",
        f"Federal decision pending: {FEDERAL[pid][0]}: {FEDERAL[pid][1]}." if pid in FEDERAL else "",
        f"Location: {raw['location']}." if raw["location"] else "",
        f"Source note: {raw['note']}" if raw["note"] else "",
    ]
    return {
        "project_id": pid,
        "name": raw["name"],
        "sponsor": raw["sponsor"],
        "country_iso3": raw["country_iso3"],
        "commodity_id": d.commodity_id,
        "stage": d.stage,
        "product": raw["product"],
        "capacity_t": cap_t,
        "capacity_raw": _capacity_raw(raw),
        "capacity_conversion": conversion,
        "output_t": d.output_t,
        "output_period": d.output_period,
        "output_note": d.output_why,
        "capex_usd": capex_usd,
        "capex_note": capex_note,
        "private_finance_usd": d.private_finance_usd,
        "coproducts": d.coproducts,
        "life_years": d.life_years,
        "unit_cost_usd_per_t": d.unit_cost_usd_per_t,
        "status_class": d.status_class,
        "status": status,
        "first_output": first,
        "esg_flags": d.esg_flags,
        "offtakes": d.offtakes,
        "federal_decision_pending": FEDERAL.get(pid, ("", ""))[0],
        "frameworks": raw["frameworks"],
        "japan_link": raw["japan_link"],
        "sources": raw["sources"],
        "source_tiers": raw["source_tiers"],
        "verification": raw["verification"],
        "note": " ".join(n for n in note if n),
    }


#: fx rows of instrument_parameters.csv that convert a support amount given only in local currency (review 11:
#: NRCan's C$18.95 M for Saguenay, Australia's A$643 M for Nolans were not counted): currency -> (row, USD per unit or None
#: for a JPY-per-USD row)
FX_ROWS = {"AUD": ("usd_per_aud", False), "EUR": ("usd_per_eur", False), "CAD": ("usd_per_cad", False), "JPY": ("jpy_per_usd", True)}


@functools.cache
def _fx_rate(row: str) -> float:
    """The bundled fx row's rate (instrument_parameters.csv read once per build)."""
    from critmin.portfolio.model import InstrumentParameters

    return float(InstrumentParameters.load().get("fx", row))


def _usd_of_local(amount: float, currency: str) -> tuple[float, str] | None:
    """``amount`` in ``currency`` converted at the fx row of instrument_parameters.csv, with its basis; None when no row."""
    row = FX_ROWS.get(currency.strip().upper())
    if row is None:
        return None
    rate = _fx_rate(row[0])
    usd = amount / rate if row[1] else amount * rate
    return usd, f"converted at the fx row {row[0]} = {rate:g} of instrument_parameters.csv"


def _support(raw: Mapping[str, str]) -> dict[str, Any]:
    status = raw["commitment_status"]
    excluded = raw["exclude_from_sum"]
    counts = not excluded and status not in NOT_COUNTED_STATUSES
    prefix = []
    if raw["amount_qualifier"]:
        prefix.append(f"Amount qualifier: {raw['amount_qualifier']}.")
    usd = _f(raw["amount_usd"])
    if raw["amount_local"]:
        local = f"{raw['currency']} {float(raw['amount_local']):,.0f}".strip()
        conv = None if raw["amount_usd"] else _usd_of_local(float(raw["amount_local"]), raw["currency"])
        if conv is not None:
            usd = conv[0]
        prefix.append(f"Local amount: {local}" + ("." if raw["amount_usd"] else
                                                  f" (no USD figure published; amount_usd {conv[0]:,.0f}, {conv[1]})." if conv else
                                                  " (no USD figure published and no fx row; amount_usd blank)."))
    if excluded:
        prefix.append(f"Not counted: exclude_from_sum ({excluded}).")
    elif status in NOT_COUNTED_STATUSES:
        prefix.append(f"Not counted: commitment status {status}.")
    return {
        "support_id": raw["support_id"],
        "project_id": raw["project_id"],
        "agency": raw["agency"],
        "participant_iso3": raw["participant_country"],
        "instrument": raw["instrument"],
        "instrument_detail": raw["instrument_detail"],
        "amount_usd": usd,
        "date": raw["date"],
        "commitment_status": status,
        "counts": "yes" if counts else "no",
        "source": raw["source"],
        "url": raw["url"],
        "source_tier": raw["source_tier"],
        "verification": raw["verification"],
        "note": " ".join([*prefix, raw["note"]]).strip(),
    }


def _raw_folder(raw_dir: Path) -> Path:
    for cand in (raw_dir / "projects", raw_dir):
        if (cand / "projects.csv").exists() and (cand / "support.csv").exists():
            return cand
    raise CritminError(f"no projects.csv and support.csv in {raw_dir.name} or {raw_dir.name}/projects")


def build_bundled_register(raw_dir: str | Path, out_dir: str | Path, atlas: Atlas | None = None) -> Register:
    """Convert the raw project files to the normalised register in ``out_dir`` (projects.csv, support.csv,
    REGISTER.md). ``raw_dir`` is ``data/raw`` or ``data/raw/projects``. Deterministic; validates the result
    with the register's own checks before writing anything."""
    folder = _raw_folder(Path(raw_dir))
    raw_projects = _raw_rows(folder / "projects.csv")
    raw_support = _raw_rows(folder / "support.csv")
    ids = [r["project_id"] for _, r in raw_projects]
    missing = sorted(set(ids) - set(CURATED))
    unused = sorted(set(CURATED) - set(ids))
    if missing or unused:
        raise CritminError(f"curated decisions out of step with the raw projects: missing {missing}, unused {unused}")
    tables = {
        "projects": [(_Loc("projects.csv", line), _project(r, CURATED[r["project_id"]])) for line, r in raw_projects],
        "support": [(_Loc("support.csv", line), _support(r)) for line, r in raw_support],
    }
    refs = _atlas_refs(atlas)
    projects, support, problems = _validate(tables, refs)
    if problems:
        raise RegisterError(problems)
    register = Register(models_frame("projects", (m for _, m in projects)), models_frame("support", (m for _, m in support)))
    out = Path(out_dir)
    write_register(register, out)
    write_atomic(out / "REGISTER.md", register_markdown(register, raw_projects, raw_support).encode("utf-8"))
    os.chmod(out / "REGISTER.md", 0o644)
    return register


# ------------------------------------------------------------------------------------------------ REGISTER.md


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _filled(frame: Any, col: str) -> int:
    s = frame[col]
    if s.dtype == object:
        return int((s.astype(str).str.strip() != "").sum())
    return int(s.notna().sum())


def register_markdown(register: Register, raw_projects: list[tuple[int, dict[str, str]]], raw_support: list[tuple[int, dict[str, str]]]) -> str:
    """The data dictionary and build report of the bundled register."""
    p, s = register.projects, register.support
    n, m = len(p), len(s)
    L: list[str] = []
    a = L.append
    a("# The bundled project register")
    a("")
    a("Generated by `critmin.portfolio.build_register` from `data/raw/projects/projects.csv` and `support.csv` "
      "(see `data/raw/PROVENANCE.md` §8a-8b); do not edit by hand: change the raw files or the curated decisions in "
      "`src/critmin/portfolio/curated/decisions.csv` (conversion factors: `factors.csv`) and rebuild with `python -m critmin.portfolio.build_register data/raw src/critmin/portfolio/data`.")
    a("")
    a(f"* `projects.csv`: {n} real announced projects of interest, one row per project; every row has its source URLs.")
    a(f"* `support.csv`: {m} government support actions (grants, loans, equity, offtakes, ...) for those projects.")
    a("* Nothing is estimated: a field is blank when no source read gives it. A model that needs a blank value uses a "
      "documented default and shows it as an assumption.")
    a("")
    a("## How the raw rows map to the register")
    a("")
    a("| register column | from the raw row |")
    a("|---|---|")
    for col, how in (
        ("project_id, name, sponsor, country_iso3, product, frameworks, japan_link, sources, source_tiers, verification", "copied"),
        ("commodity_id, stage", "curated: the atlas stage node the project supplies, the most downstream output it produces at scale (reason in `note`)"),
        ("capacity_t", "capacity_value (low end of a range) converted to the node basis with the factors below, or blank"),
        ("capacity_raw", "capacity_value[-capacity_value_high] capacity_unit [capacity_basis]"),
        ("capacity_conversion", "the arithmetic from capacity_raw to capacity_t"),
        ("capex_usd", "raw capex_usd: the USD figure a source printed, or (from December 2026, said in capex_basis) a local-currency figure converted at the IMF rate of the fx rows of instrument_parameters.csv; P007 takes the USD figure printed in capex_basis"),
        ("capex_note", "capex_currency capex_value[-capex_value_high]; capex_basis; curation remarks"),
        ("private_finance_usd", "curated (`curated/decisions.csv`): committed private finance for the capex where a source prints it (MP's 10X: the USD 650 million of the JPMorgan and Goldman Sachs facility earmarked for it), with the source in `note`"),
        ("coproducts", "curated (`curated/decisions.csv`): other revenue products of the plant in t/yr at nameplate where a source prints them (Stibnite's gold; NICO's gold, bismuth and copper; Arctic's zinc, lead, gold and silver; White Mesa Phase 2's Dy and Tb oxides), with the source in `note`"),
        ("status_class", "curated from the free-text status (table below)"),
        ("status", "status (as of status_as_of)"),
        ("first_output", "first_production, blanked for P031 (laboratory extraction) and P054 (copper foil, not CAM)"),
        ("offtakes, esg_flags", "curated from the raw notes and status"),
        ("note", "node, status and capacity decisions; location; the raw note"),
        ("output_t, output_period, output_note", "curated (`curated/decisions.csv`): the latest reported actual output of a producing plant on the node basis, "
         "with its period, quote and arithmetic (data/raw/projects/reported_output/); blank where no tonnage is published"),
        ("unit_cost_usd_per_t, life_years", "curated (`curated/decisions.csv`) where a study publishes an operating cost or a mine life (review 13), with the source and the conversion in `note`; else blank"),
        ("federal_decision_pending", "curated (`curated/federal_permits.csv`): `no` where the sources show no U.S. federal permit or record of decision left to take (White Mesa Phase 2, licensed by Utah), `facilitated` where a federal commitment to advance its permits is on record (the Upper Kobuk projects, October 2025), with the source in `note`; else blank (unknown)"),
        ("ramp_up_months, opex_usd_per_t, completion_probability, delay_months, feoc", "blank: no source read gives them"),
        ("support: participant_iso3", "participant_country"),
        ("support: counts", "no when exclude_from_sum is set or commitment_status is one of: " + ", ".join(NOT_COUNTED_STATUSES)),
        ("support: note", "amount qualifier, local-currency amount, reason not counted, then the raw note"),
    ):
        a(f"| {col} | {_md(how)} |")
    a("")
    a("## Columns")
    for title, cols, frame, total in (("projects.csv", PROJECT_COLUMNS, p, n), ("support.csv", SUPPORT_COLUMNS, s, m)):
        a("")
        a(f"### {title}")
        a("")
        a("| column | type | required | unit | allowed values | filled | description |")
        a("|---|---|---|---|---|---|---|")
        for c in cols:
            a(f"| {c.name} | {c.kind} | {'yes' if c.required else 'no'} | {_md(c.unit)} | {_md(c.allowed)} | {_filled(frame, c.name)}/{total} | {_md(c.description)} |")
    a("")
    a("## Nodes and capacity basis")
    a("")
    a("`capacity_t` is in tonnes per year on the basis of the atlas production data of the node: "
      + "; ".join(f"{c}: {node_basis(c)}" for c in sorted(set(p["commodity_id"]))) + ".")
    a("")
    a("Conversion factors (stoichiometric or exact unit definitions only):")
    a("")
    for name, (val, how) in FACTORS.items():
        a(f"* `{name}` = {val!r}: {how}")
    a("")
    conv = p[p["capacity_conversion"] != ""]
    a("Conversions applied:")
    a("")
    for rec in conv.to_dict("records"):
        a(f"* {rec['project_id']} {_md(rec['name'])}: {_md(rec['capacity_conversion'])}")
    a("")
    raw_cap = sum(1 for _, r in raw_projects if r["capacity_value"])
    a(f"Capacity: {raw_cap}/{n} raw rows publish a capacity; {_filled(p, 'capacity_t')}/{n} have `capacity_t`. "
      "The others are blank; the reason for each:")
    a("")
    blank = p[p["capacity_t"].isna() & (p["capacity_raw"] != "")]
    for rec in blank.to_dict("records"):
        why = CURATED[rec["project_id"]].cap.why
        a(f"* {rec['project_id']} ({_md(rec['capacity_raw'])}): {_md(why)}")
    a("")
    a("### Projects by node")
    a("")
    a("| project | name | country | node | status_class | capacity_t | first_output |")
    a("|---|---|---|---|---|---|---|")
    for rec in p.to_dict("records"):
        cap = "" if rec["capacity_t"] != rec["capacity_t"] else _num(rec["capacity_t"])
        a(f"| {rec['project_id']} | {_md(rec['name'])} | {rec['country_iso3']} | {rec['commodity_id']}/{rec['stage']} | {rec['status_class']} | {cap} | {rec['first_output']} |")
    a("")
    a("## Status classes")
    a("")
    a("| status_class | meaning | projects |")
    a("|---|---|---|")
    counts = Counter(p["status_class"])
    for k, v in STATUS_CLASSES.items():
        a(f"| {k} | {_md(v)} | {counts.get(k, 0)} |")
    a("")
    a("Mapping of each raw status (the reason is also in the project's `note`):")
    a("")
    a("| project | raw status | status_class | reason |")
    a("|---|---|---|---|")
    for rec in p.to_dict("records"):
        d = CURATED[rec["project_id"]]
        a(f"| {rec['project_id']} | {_md(rec['status'])} | {d.status_class} | {_md(d.status_why)} |")
    a("")
    a("## Support actions and the counting rule")
    a("")
    a("A support amount is added to totals (`counts` = yes) unless the raw row says `exclude_from_sum` "
      "(superseded amounts, package totals overlapping their components, an unresolved conditional commitment) "
      f"or its `commitment_status` is one of {', '.join(NOT_COUNTED_STATUSES)} (non-binding letters, superseded, "
      "proposed, preliminary, option and in-principle commitments). `letter_of_intent` is treated like "
      "`letter_of_interest`; `binding_LOI`, conditional commitments and the 2022 DOE selections count (see gaps). "
      "`amount_usd` is the USD figure a source printed; where only a local-currency amount is printed (AUD, EUR, CAD, "
      "JPY) it is converted at the fx rows of instrument_parameters.csv and the note says so (December 2026, review "
      "11: before, such amounts were not counted). A blank `counts` in an imported file is derived from "
      "`commitment_status` by the same rule.")
    a("")
    counted = s[s["counts"]]
    a(f"* rows: {m}; counted: {len(counted)}; not counted: {m - len(counted)}")
    reasons: Counter[str] = Counter()
    for _, r in raw_support:
        if r["exclude_from_sum"]:
            reasons[f"exclude_from_sum ({r['exclude_from_sum']})"] += 1
        elif r["commitment_status"] in NOT_COUNTED_STATUSES:
            reasons[f"status {r['commitment_status']}"] += 1
    for reason, k_count in sorted(reasons.items()):
        a(f"  * {reason}: {k_count}")
    a(f"* counted rows with a USD amount: {int(counted['amount_usd'].notna().sum())}; counted total: US${counted['amount_usd'].sum():,.0f}")
    a(f"* rows with a USD amount: {int(s['amount_usd'].notna().sum())}; with only a local-currency amount: "
      f"{sum(1 for _, r in raw_support if r['amount_local'] and not r['amount_usd'])}; without any amount: "
      f"{sum(1 for _, r in raw_support if not r['amount_local'] and not r['amount_usd'])}")
    a("")
    a("Counted USD by instrument:")
    a("")
    a("| instrument | counted actions | counted USD |")
    a("|---|---|---|")
    summ = support_summary(register)
    for inst in INSTRUMENTS:
        part = summ[summ["instrument"] == inst]
        if len(part):
            a(f"| {inst} | {int(part['actions'].sum())} | {part['counted_usd'].sum():,.0f} |")
    a("")
    a("## Gaps (honest)")
    a("")
    for g in (
        "No source read gives ramp-up profiles, opex, unit costs, completion probabilities, delay distributions or "
        "foreign-entity-of-concern status for any project: those columns are blank everywhere (`feoc` stays blank "
        "unless a source says; none did).",
        f"Capex: {_filled(p, 'capex_usd')}/{n} projects have `capex_usd`; {sum(1 for _, r in raw_projects if r['capex_value'])} publish a capex at all. "
        "AUD, EUR and ZAR figures are not converted (no USD printed); P013 and P017 are lower bounds; P032 includes "
        "working capital and financing costs; P069 comes from a low-tier summary.",
        "Scandium (P069) has no stage node in the atlas: the register accepts any stage for a commodity without nodes, "
        "so the project is outside the atlas supply chains until the atlas adds a scandium node.",
        "Antimony has only a mine node in the atlas: the antimony smelters (P033 Nyrstar, P035 US Antimony) are "
        "counted at antimony/mine, which adds Sb supply but hides the refining stage.",
        "Multi-commodity projects are placed on one node (P032 Korea Zinc on gallium/refine, P014 Round Top, P063 NICO, "
        "P064 Upper Kobuk, P071 Waterberg): their other products are listed in `note` only.",
        "MP Materials support is company-level (DoD equity and offtake on P003, price floor and loan on P001, 48C on P002), "
        "recorded on one project each as in the raw data.",
        "The 2022 DOE battery-materials selections (S067, S077, S078, S082, S084) count, but E&E News reports the "
        "round was later cut from 21 to 14 projects; their current status is not verified.",
        "Statuses are as of the raw `status_as_of` (2022-2026); several rows (P052, P056, P060) may be stale.",
        "No project named in the US-Japan Framework of 28 Oct 2025 was found (PROVENANCE.md 8a).",
    ):
        a(f"* {g}")
    a("")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m critmin.portfolio.build_register RAW_DIR OUT_DIR", file=sys.stderr)
        return 2
    reg = build_bundled_register(args[0], args[1])
    print(f"wrote {len(reg.projects)} projects and {len(reg.support)} support actions to {args[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
