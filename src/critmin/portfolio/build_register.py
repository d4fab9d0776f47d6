"""Build the bundled project register from the raw project files (``data/raw/projects/*.csv``).

``build_bundled_register(raw_dir, out_dir)`` reads ``projects.csv`` and ``support.csv`` (PROVENANCE.md 8a-8b),
applies the curated per-project decisions in :data:`CURATED` (the atlas node each project supplies, its status
class and how its published capacity converts to the node basis) and writes ``projects.csv``,
``support.csv`` and ``REGISTER.md`` to ``out_dir``. The output is deterministic: rows sorted by id, floats
written without exponent or trailing zeros, no dates or paths of the machine.

Rules: capacity is converted with stoichiometric factors, exact unit factors or a product grade printed by the
project's own source only (:data:`FACTORS`), the low end of a published range is used, and a field stays blank when no source gives it. Every decision is
written into the project's ``note``. Run ``python -m critmin.portfolio.build_register data/raw
src/critmin/portfolio/data`` from the repository root to rebuild.
"""

from __future__ import annotations

import csv
import os
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from critmin.errors import CritminError
from critmin.output import write_atomic
from critmin.portfolio.register import (
    INSTRUMENTS,
    NOT_COUNTED_STATUSES,
    PROJECT_COLUMNS,
    STATUS_CLASSES,
    SUPPORT_COLUMNS,
    Register,
    RegisterError,
    _atlas_refs,
    _Loc,
    _validate,
    models_frame,
    node_basis,
    support_summary,
    write_register,
)

if TYPE_CHECKING:
    from critmin.atlas.model import Atlas

# ------------------------------------------------------------------------------------------------ factors

#: Conversion factors used (stoichiometric or exact unit definitions), with how they are derived.
FACTORS: dict[str, tuple[float, str]] = {
    "Li2CO3_per_Li": (5.323, "Li2CO3 / 2 Li = 73.89 / (2 x 6.941) = 5.323 t lithium carbonate per t Li"),
    "t_per_lb": (0.00045359237, "1 lb = 0.45359237 kg exactly (international avoirdupois pound)"),
    "LiOH.H2O_per_Li": (6.046, "LiOH.H2O / Li = 41.96 / 6.941 = 6.046 t lithium hydroxide monohydrate per t Li"),
    "LiOH_per_Li": (3.450, "LiOH / Li = 23.95 / 6.941 = 3.450 (quoted for reference; not applied)"),
    "g_per_troy_oz": (31.1034768, "1 troy oz = 31.1034768 g exactly (quoted for reference; not applied)"),
}


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


def _basis(why: str) -> Cap:
    return Cap("basis", why)


def _blank(why: str) -> Cap:
    return Cap("blank", why)


D = Decision
CURATED: dict[str, Decision] = {
    # ---------------------------------------------------------------- rare earths
    "P001": D("rare_earths", "mine",
              "the output at scale is REO in concentrate (45,455 t REO in 2024 against 1,294 t separated NdPr oxide, per the 10-K figures in capacity_raw); separation is ramping and has no published capacity here",
              "operating", "raw: operating",
              _basis("t REO in concentrate is the atlas mine basis; 60,000 t is the 'Upstream 60K' target, not nameplate"),
              offtakes="concentrate historically sold mainly to Shenghe (low-tier source cited in the raw note)"),
    "P002": D("ndfeb_magnets", "magnet", "produces NdPr metal and sintered NdFeB magnets; magnets are the most downstream output",
              "commissioning", "raw: commissioning (commercial NdPr metal; trial magnet production; ramp from late 2025)",
              _basis("published in t NdFeB magnets (the node basis); expected capacity, 1,000 t"),
              offtakes="GM long-term supply agreement (Dec 2021); Apple $500M multiyear purchase commitment incl. $200M prepayment (Jul 2025; shipments from 2027)"),
    "P003": D("ndfeb_magnets", "magnet", "sintered NdFeB magnet plant",
              "financing", "raw 'planned (commissioning expected 2028)'; DoD $400M preferred equity and 10-year offtake announced Jul 2025 (support S005, S006); construction not reported",
              _blank("10,000 t is MP's total US magnet capacity including Independence (P002: 1,000 t, about 2,000 t after the Apple deal), so 10X alone is about 8,000-9,000 t; left blank rather than double count P002"),
              offtakes="U.S. DoD 10-year offtake of 100% of 10X magnet output (support S006)"),
    "P004": D("rare_earths", "mine",
              "mine and concentrator at Mt Weld; Kalgoorlie cracks and leaches to mixed rare earth carbonate that is separated in Malaysia (P005); mixed carbonate is not a separated product, so the node is mine",
              "operating", "raw: operating (Kalgoorlie officially opened Nov 2024)",
              _blank("no capacity in the sources read")),
    "P005": D("rare_earths", "refine", "separation plant: separated NdPr oxide, Dy and Tb oxides",
              "operating", "raw: operating",
              _basis("t NdPr oxide is an oxide tonnage, so t REO; covers NdPr only (not La/Ce or heavy RE output)"),
              offtakes="Sojitz sole distributor in Japan; up to 65% of Lynas Dy/Tb to Japan (JARE investment, support S010)"),
    "P006": D("rare_earths", "refine", "planned separation plant for heavy and light rare earth oxides",
              "unlikely", "raw: unlikely to proceed (chair at Nov 2025 AGM)",
              _blank("2,500-3,000 t/yr heavy rare earths plus 5,000 t/yr light rare earths are stated without an oxide basis; not converted to REO"),
              esg_flags="wastewater permit issue (raw status)"),
    "P007": D("rare_earths", "refine", "refinery for separated light and heavy rare earth oxides",
              "construction", "raw: under construction, commissioning targeted 2027",
              _basis("published in t rare earth oxides (REO); the raw row flags the source's basis as unclear (it may not be separated-oxide output)"),
              capex_usd=1_090_000_000,
              capex_why="capex_usd = US$1.09bn, the low end of the USD range printed by NS Energy (US$1.09bn-1.16bn) for the A$1.7-1.8bn estimate"),
    "P008": D("rare_earths", "refine", "integrated mine, concentrator and separation plant; the product is NdPr oxide",
              "financing", "raw: pre-FID; debt conditionally approved; seeking equity",
              _basis("t NdPr oxide is an oxide tonnage, so t REO (NdPr only)"),
              offtakes="binding offtakes with Hyundai/Kia and Siemens Gamesa; GE offtake MoU linked to the EDC letter of interest (support S021)",
              capex_why="capex_usd blank: the A$1.68bn estimate (Mar 2024) has no USD print; the only USD print (US$933m) is for the older A$1,394m estimate"),
    "P009": D("rare_earths", "refine", "mine and processing plant for metal oxides and mixed chlorides (processing beyond concentrate); co-products zirconium, hafnium, niobium",
              "feasibility", "raw 'development; no firm start date': no permit, finance or construction reported",
              _blank("no capacity in the sources read")),
    "P010": D("rare_earths", "metal", "NdPr metal and NdFeB alloy; the atlas metal node covers rare-earth metals and alloys",
              "operating", "raw: operating",
              _blank("no capacity in the sources read; the 2,800 tpa in the note is a proposed offtake volume, not capacity"),
              offtakes="proposed 10-year offtake of up to 2,800 tpa NdFeB alloy to a Korean magnet venture (conditional framework agreement)"),
    "P011": D("rare_earths", "refine", "separation circuit producing NdPr oxide",
              "operating", "raw: operating (campaign-based with uranium processing)",
              _basis("t NdPr oxide is an oxide tonnage, so t REO; low end of the 850-1,000 t Phase 1 design range")),
    "P012": D("rare_earths", "mine", "mine and concentrator producing monazite concentrate (feed to White Mesa, P011)",
              "feasibility", "raw 'development (production as early as 2026)': no permit, finance or construction reported",
              _blank("7,000-8,000 t/yr monazite concentrate; the REO grade of the concentrate is not in the sources read, so there is no stoichiometric conversion to REO"),
              offtakes="monazite concentrate to be fed to Energy Fuels' White Mesa mill (P011)"),
    "P013": D("ndfeb_magnets", "magnet", "rare earth metals and sintered NdFeB magnets; magnets are the most downstream output",
              "construction", "raw: under construction (lab opened 2025)",
              _blank("no capacity in the sources read")),
    "P014": D("rare_earths", "mine", "mining project in development (heavy rare earths, also lithium and other minerals)",
              "feasibility", "raw 'development': no permit, finance or construction reported",
              _blank("no capacity in the sources read")),
    "P015": D("ndfeb_magnets", "magnet", "sintered NdFeB magnet plant",
              "financing", "raw 'planned; existing facility expansion in 2026'; conditional $620M OSC loan (S029) and Commerce equity (S031) announced Nov 2025; construction not reported",
              _basis("published in t magnets (with ReElement, up to 10,000 t NdFeB magnet material 'in the next several years')")),
    "P016": D("rare_earths", "refine", "recycling and separation/refining to separated rare earth materials",
              "financing", "raw 'expansion planned'; conditional $80M OSC loan (S032) announced Nov 2025",
              _blank("no capacity in the sources read")),
    "P017": D("ndfeb_magnets", "magnet", "sintered NdFeB magnet plant",
              "construction", "raw: construction; operations targeted late fall 2025 (as of Apr 2024)",
              _blank("no capacity in the sources read"),
              offtakes="GM long-term supply deal"),
    "P018": D("ndfeb_magnets", "magnet", "recycling to sintered NdFeB magnets; magnets are the most downstream output",
              "operating", "raw: operating",
              _basis("2,000 t/yr 'magnetic material' read as t magnets (the product is sintered NdFeB magnets)"),
              offtakes="Nidec offtake of 1,000 t over five years"),
    "P019": D("rare_earths", "refine", "separation plant (magnet-grade line) for separated rare earth oxides",
              "operating", "raw: operating (magnet-grade line inaugurated 8 Apr 2025)",
              _basis("published in t REO; low end of the 2,000-5,000 t range the plant 'could reach' (several hundred t in 2025)")),
    "P020": D("ndfeb_magnets", "magnet", "sintered NdFeB magnet block plant",
              "operating", "raw: operating (officially opened Sep 2025)",
              _basis("published in t magnet block (phase 1 design)"),
              capex_why="capex_usd blank: EUR 75m with no USD print"),
    "P021": D("rare_earths", "refine", "light rare earth separation plant (separated rare earth oxides)",
              "operating", "raw: operating",
              _blank("3,000 t/yr of light rare earth separation is stated without a product basis (REO not stated); not converted")),
    "P022": D("rare_earths", "refine", "separation plant (RapidSX) for separated rare earth oxides",
              "construction", "raw: construction; operational readiness H2 2026",
              _blank("no capacity in the sources read")),
    "P023": D("rare_earths", "mine", "ionic clay mine producing mixed rare earth concentrate",
              "operating", "raw: operating (commercial production since early 2024)",
              _basis("published in t TREO; low end of the 4,800-6,500 t target for early 2027")),
    "P024": D("rare_earths", "refine", "recycling and separation to Dy, Tb and NdPr oxides",
              "construction", "raw: construction; operations targeted late 2026",
              Cap("sum", "sum of the two published oxide outputs (JOGMEC quoted 500 t Dy and 90 t Tb, see note)",
                  parts=((600, "Dy+Tb oxides"), (800, "NdPr oxide")), unit_to="REO"),
              offtakes="JOGMEC/Iwatani long-term supply of about 250 t/yr Dy and 45 t/yr Tb oxide to Japan (support S046; about half of the heavy RE output)"),
    "P025": D("rare_earths", "mine", "heavy rare earth deposit (exploration/pre-development)",
              "exploration", "raw: exploration; PEA 2014",
              _blank("no capacity in the sources read"),
              offtakes="JOGMEC first right to buy all output (support S048)"),
    "P026": D("rare_earths", "mine", "heavy rare earth mining project in development",
              "feasibility", "raw 'development': no permit, finance or construction reported (EXIM letter of interest only)",
              _blank("no capacity in the sources read")),
    "P027": D("rare_earths", "mine", "rare earths and mineral sands mining project in development",
              "feasibility", "raw 'development': no permit, finance or construction reported (EXIM letter of interest only)",
              _blank("no capacity in the sources read")),
    # ---------------------------------------------------------------- gallium, germanium, antimony
    "P030": D("gallium", "refine", "gallium metal recovered from alumina refining (atlas gallium refine: primary production)",
              "feasibility", "raw: feasibility; FID and production targeted 2026; definitive agreements pending",
              _basis("published in t gallium (contained metal)"),
              offtakes="Sojitz to be offtake customer; Australian Government concessional equity with right of offtake (S051); DoD offtake proportional to its equity (S052)"),
    "P031": D("gallium", "refine", "primary gallium extraction from alumina refining",
              "feasibility", "raw 'R&D; first gallium extracted May 2025; pilot plant operational 2027': R&D/demonstration has no class of its own, feasibility is the nearest",
              _basis("published in t gallium; low end of the 3.5-4 t demonstration plant (commercial potential 40 t/yr not used)"),
              first_output="", first_output_why="first_output blank: 2025-05 was a first laboratory extraction, not commercial output"),
    "P032": D("gallium", "refine",
              "multi-metal smelter (13 products: Zn, Pb, Cu, Sb, Ge, Ga, In, Bi, Te, precious metals); node set to gallium refine, one of the critical by-products named in the capacity text, where the atlas has a refine node; it also supplies zinc, lead, copper, antimony, germanium, indium, bismuth and tellurium",
              "financing", "raw 'planned; site preparation 2026, construction 2027, phased operation from 2029'; US DoD and investors' $2.15bn equity announced Dec 2025 (S056)",
              _blank("540,000 t/yr of products in total (300,000 t Zn, 200,000 t Pb, 35,000 t Cu, 5,100 t of other metals incl. Sb, In, Bi, Te, Ga); the gallium tonnage is not published")),
    "P033": D("antimony", "mine",
              "antimony metal from lead-smelter by-products; the atlas has only the antimony mine node (Sb content), so refined antimony is counted there",
              "commissioning", "raw: antimony pilot operational; first commercial exports H1 2026",
              _basis("published in t antimony metal = t Sb (contained metal); 2,000 t by end-2026 (scalable to 5,000 t by 2028, not used)")),
    "P034": D("antimony", "mine", "gold-antimony mine and concentrator (antimony as trisulfide/concentrate)",
              "financing", "raw 'permitted (ROD Jan 2025); financing': permits in place and finance being arranged (EXIM letter of interest S064)",
              Cap("multiply", "exact pound-to-tonne factor; average of the first 4 years (2021 feasibility study)",
                  factor="t_per_lb", value=18_400_000, unit_from="lb Sb", unit_to="Sb")),
    "P035": D("antimony", "mine",
              "antimony smelters (metal ingots, oxide, trisulfide); the atlas has only the antimony mine node (Sb content), so refined antimony is counted there",
              "operating", "raw: operating",
              _blank("no capacity in the sources read"),
              offtakes="DLA National Defense Stockpile IDIQ contract for antimony metal ingots, up to $245M over 5 years (support S065)"),
    # ---------------------------------------------------------------- graphite
    "P040": D("battery_anode", "anode", "active anode material plant (spheronising, purification, coating)",
              "operating", "raw: operating (expanded)",
              _basis("published in t active anode material (AAM)"),
              offtakes="Tesla 4-year offtake for the majority of output"),
    "P041": D("graphite", "mine", "natural flake graphite mine and concentrator",
              "paused", "raw 'operating intermittently (production paused 2024 due to oversupply)'",
              _basis("published in t graphite (concentrate from the 2 Mtpa ore plant; atlas graphite basis: gross weight of natural graphite)"),
              offtakes="feeds Syrah's Vidalia anode plant (P040)"),
    "P042": D("battery_anode", "anode", "synthetic graphite anode material plant",
              "construction", "raw 'commercial production scheduled 2025' (as of Dec 2024): not yet producing commercially",
              _basis("t synthetic graphite anode material = t active anode material"),
              offtakes="Panasonic Energy, Stellantis, PowerCo"),
    "P043": D("battery_anode", "anode", "synthetic graphite anode material plant",
              "financing", "raw 'planned (conditional DOE loan)' (S071)",
              _basis("t synthetic graphite anode material = t active anode material; full capacity by end-2028 (21,000 t + 10,500 t)")),
    "P044": D("battery_anode", "anode", "graphite mine plus anode material plant; anode material is the most downstream output",
              "feasibility", "raw: feasibility study",
              _blank("no capacity in the sources read")),
    "P045": D("battery_anode", "anode", "coated spherical purified graphite (CSPG) plant",
              "construction", "raw: construction (US$119.2M invested by end-2023); financing in progress",
              _basis("t CSPG = t active anode material; Phase I design"),
              offtakes="SK On (Feb 2024)"),
    # ---------------------------------------------------------------- lithium and battery materials
    "P050": D("lithium", "refine", "integrated mine and chemical plant; the product is battery-grade lithium carbonate (atlas lithium refine: refined lithium chemicals, Li content)",
              "construction", "raw: construction",
              Cap("divide", "stoichiometric Li content of lithium carbonate; Phase 1", factor="Li2CO3_per_Li", unit_from="Li2CO3", unit_to="Li"),
              offtakes="GM offtake rights to all Phase 1 output for 20 years"),
    "P051": D("lithium", "mine", "mine restart and concentrator producing spodumene concentrate (the 50 kt LCE conversion plant is not part of this project)",
              "feasibility", "raw 'development/permitting': permits not yet granted",
              _blank("350,000 t/yr spodumene concentrate; the Li2O grade of the concentrate is not in the sources read, so there is no stoichiometric conversion to Li")),
    "P052": D("lithium", "refine", "lithium hydroxide conversion plant",
              "feasibility", "raw 'planned (2022 target first production 2025)'; current status not verified in the sources read",
              _blank("30,000 t/yr 'lithium hydroxide' without the hydrate form: as LiOH.H2O it would be 30,000 / 6.046 = 4,962 t Li, as anhydrous LiOH 30,000 / 3.450 = 8,696 t Li; left blank"),
              first_output_why="first_output 2025 is the 2022 target and may be stale"),
    "P053": D("lithium", "refine", "mine and chemical plant producing lithium carbonate and boric acid",
              "permitted", "raw 'permitted (ROD Oct 2024); construction targeted late 2025'",
              _blank("22,000 t/yr 'lithium' as reported by Reuters; the basis is likely LCE but unverified, so not converted")),
    "P054": D("battery_cathode", "cathode",
              "recycling, cathode active material (CAM) and anode copper foil; CAM is the most downstream battery-material output with an atlas node (copper foil has none)",
              "financing", "raw: copper foil production started Jan 2023; CAM production not reported; DOE loan conditional (S080), finalisation not confirmed",
              _blank("100 GWh/yr equivalent of copper foil and CAM; no tonnage published"),
              first_output="", first_output_why="first_output blank: 2023 was the first copper foil, not CAM"),
    "P055": D("lithium", "refine",
              "hydrometallurgical recycling of black mass to lithium carbonate and mixed hydroxide precipitate; lithium carbonate is the refined product (MHP is a nickel-cobalt intermediate without a published Ni content)",
              "paused", "raw: construction restart planned (paused 2023)",
              Cap("divide", "stoichiometric Li content of the 8,250 t/yr Li2CO3 output stated in the raw capacity unit (the 35,000 t is black mass input)",
                  factor="Li2CO3_per_Li", value=8_250, unit_from="Li2CO3", unit_to="Li"),
              offtakes="Glencore offtake of 100% of MHP"),
    "P056": D("battery_cathode", "cathode", "recycling to precursor cathode (pCAM) and cathode active material",
              "feasibility", "raw 'selected for DOE funding Oct 2022 (current status not verified)': construction status not in the sources read",
              _blank("no capacity in the sources read")),
    # ---------------------------------------------------------------- Ni, Co, Cu, Mn, W, Sc, Mg, PGM
    "P060": D("nickel", "refine", "nickel mine plus a planned processing plant in Mercer County ND for battery-grade nickel; battery-grade nickel is the most downstream output",
              "exploration", "raw: exploration/permitting",
              _blank("no capacity in the sources read"),
              offtakes="Tesla to buy half of the processed nickel"),
    "P061": D("cobalt", "mine", "mine and concentrator built (cobalt concentrate); the refinery is only under study",
              "paused", "raw: construction/commissioning paused (Mar 2023)",
              _blank("6,600 t Co/yr is the scope of the US refinery study, not of the mine; the mine's concentrate capacity is not in the sources read")),
    "P062": D("cobalt", "refine", "cobalt sulfate refinery",
              "construction", "raw: construction completion funding",
              _blank("no capacity in the sources read")),
    "P063": D("cobalt", "mine", "mining project in development; cobalt is the first-named commodity (bismuth, gold, copper co-products)",
              "feasibility", "raw 'development': no permit, finance or construction reported",
              _blank("no capacity in the sources read")),
    "P064": D("copper", "mine", "polymetallic exploration district; copper is the first-named commodity",
              "feasibility", "raw: feasibility (Arctic) / PEA (Bornite); depends on the Ambler Access Road",
              _blank("no capacity in the sources read")),
    "P065": D("manganese", "mine", "manganese deposit of the Hermosa project",
              "feasibility", "raw: pre-feasibility (manganese)",
              _blank("no capacity in the sources read")),
    "P066": D("tungsten", "mine", "tungsten mine producing concentrate",
              "feasibility", "raw: feasibility study toward investment decision",
              _blank("no capacity in the sources read")),
    "P067": D("tungsten", "mine", "tungsten mine and concentrator (WO3 concentrate)",
              "construction", "raw 'construction/commissioning' (as of 2024): the less advanced class is kept",
              _blank("no capacity in the sources read")),
    "P068": D("tungsten", "mine", "tungsten mine expansion (concentrate)",
              "feasibility", "raw status is only 'expansion': the stage of the expansion is not stated, so feasibility until a source says more",
              _blank("no capacity in the sources read")),
    "P069": D("scandium", "refine",
              "scandium oxide; the atlas has no stage node for scandium, so the register accepts any stage for it and the project sits outside the atlas supply chains",
              "feasibility", "raw: feasibility study (due Oct 2025)",
              _blank("no capacity in the sources read")),
    "P070": D("magnesium", "metal", "magnesium metal plant (stage 2 commercial plant)",
              "feasibility", "raw 'development': no permit, finance or construction reported (EXIM letter of interest only)",
              _blank("no capacity in the sources read")),
    "P071": D("palladium", "mine", "4E PGM concentrate; palladium is the first-named PGM (platinum, rhodium and gold also supplied)",
              "feasibility", "raw '2024 DFS: construction from Dec 2025, first production Sep 2029'",
              _blank("420,000 oz/yr of 4E (Pt, Pd, Rh, Au) in concentrate = 13.06 t of 4E at 31.1034768 g/oz, with no split by metal in the sources read, so no palladium tonnage"),
              capex_why="capex_usd blank: ZAR 18.8bn with no USD print"),
}


# Register completion of December 2026 (capacity, capex, first output and status from the sources named in
# data/raw/projects/projects.csv; merge log in data/raw/projects/CHANGES_2026-12.md): decisions for updated
# rows and for 13 new projects (expansion phases as their own projects, framework deals since Oct 2025).
FACTORS_2026_12 = {
    "WO3_per_W": (231.837 / 183.84, "WO3 / W = 231.84 / 183.84 = 1.2611 t tungsten trioxide per t W (IUPAC atomic weights)"),
    "Sc2O3_per_Sc": (137.909 / 89.912, "Sc2O3 / 2 Sc = 137.91 / 89.91 = 1.5338 t scandium oxide per t Sc (IUPAC atomic weights)"),
}

# (project, field changes, reason) for existing decisions
UPDATES_2026_12 = {
    "P003": dict(cap=_basis("10X alone: 8,000-9,000 t/yr computed in the raw row (MP total ~10,000 t minus Independence P002 1,000-2,000 t); low end used, so P002 is not double counted")),
    "P004": dict(cap=_blank("12,000 t/yr NdPr equivalent of Mt Weld feedstock is not REO (the NdPr share of Mt Weld TREO is not in the sources read)")),
    "P010": dict(cap=_blank("5,200 t/yr of mixed metals and alloys incl. titanium and zirconium; no rare-earth split")),
    "P012": dict(cap=_basis("t TREO contained in rare earth element concentrate (Energy Fuels/Astron MOU 2023); low end = Phase 1")),
    "P013": dict(cap=_basis("published in t sintered NdFeB magnets; low end = initial 1,200 t (nameplate 4,800 t; further expansion in its own row)")),
    "P014": dict(cap=_blank("8,000 t/yr is third-party feed processed (mixed concentrates and oxides), not mine REO")),
    "P016": dict(cap=_blank("2,500-3,500 t/yr of mixed products (separated rare earths, battery materials, antimony); no REO split")),
    "P020": dict(capex_why=""),
    "P008": dict(capex_why="the only USD print (US$933m) is for the older A$1,394m estimate"),
    "P022": dict(cap=_basis("t TREO separation throughput (company plan); low end = initial 2,000 t; 7,500 t would be ex-Ce and ex-Y")),
    "P025": dict(cap=_basis("t TREO (as >98% mixed rare earth oxide), PEA 2022")),
    "P026": dict(cap=_basis("t TREO in mixed carbonate before yttrium rejection (2015 DFS); includes Y2O3")),
    "P027": dict(cap=_blank("10,000 t/yr gross rare earth mineral concentrate; the REO grade is not in the sources read")),
    "P035": dict(cap=Cap("multiply", "exact pound-to-tonne factor; Thompson Falls current capacity 5 million lb Sb metal per year (LOW-TIER source)",
                         factor="t_per_lb", value=5_000_000, unit_from="lb Sb", unit_to="Sb")),
    "P044": dict(cap=_basis("t anode active material (FS Apr 2025); low end = first 48,000 t by 2028")),
    "P052": dict(status_class="unlikely", status_why="abandoned Aug 2024: Piedmont shifted the conversion capacity to Carolina Lithium",
                 first_output_why="first_output 2025 is the 2022 target of an abandoned project"),
    "P053": dict(cap=Cap("divide", "stoichiometric Li content of lithium carbonate; DFS 2020 20,600 t/yr (low end)", factor="Li2CO3_per_Li", unit_from="Li2CO3", unit_to="Li"),
                 status_why="raw 'permitted (ROD Oct 2024); construction targeted late 2025'; Sibanye-Stillwater withdrew Feb 2025"),
    "P055": dict(status_why="construction halted 2023; Li-Cycle insolvent May 2025; Glencore bought the hub Aug 2025 without an announced plan"),
    "P056": dict(status_class="unlikely", status_why="CAM line cancelled 2025: the plant makes pCAM and lithium carbonate, which the cathode node does not cover",
                 cap=_blank("27,000 t/yr pCAM (precursor), not CAM")),
    "P060": dict(cap=Cap("multiply", "exact pound-to-tonne factor; PEA 2021 Ni recovered to concentrate (node is refine: basis mismatch)",
                         factor="t_per_lb", value=23_300_000, unit_from="lb Ni", unit_to="Ni")),
    "P061": dict(cap=_basis("t Co in concentrate, BFS 2020 mine plan (1,915 t/yr)")),
    "P062": dict(cap=_blank("6,500 t/yr: contained Co (BNN) or cobalt sulfate (EV Engineering), a factor ~4.8 apart; not used")),
    "P063": dict(cap=_basis("t Co contained in cobalt sulphate, first 14 years average")),
    "P064": dict(cap=Cap("multiply", "exact pound-to-tonne factor; Arctic FS 2020 average copper to concentrate",
                         factor="t_per_lb", value=155_000_000, unit_from="lb Cu", unit_to="Cu")),
    "P067": dict(cap=Cap("divide", "stoichiometric W content of WO3; Phase 1 average", factor="WO3_per_W", unit_from="WO3", unit_to="W")),
    "P068": dict(cap=_blank("1,200 t/yr 'WO3-in-concentrate' from a LOW-TIER page whose own quarterly figure suggests concentrate tonnes; not converted")),
    "P069": dict(cap=Cap("divide", "stoichiometric Sc content of Sc2O3; FS 2026 Phase 1", factor="Sc2O3_per_Sc", unit_from="Sc2O3", unit_to="Sc")),
    "P070": dict(cap=_basis("t magnesium metal, Stage 2 design capacity")),
    "P071": dict(capex_why="capex_usd = US$946M printed by NS Energy for the 2024 DFS update (the ZAR 18.8bn is not converted)"),
}

NEW_2026_12 = {
    "P072": D("rare_earths", "refine", "heavy rare earth (Dy/Tb) separation circuit at Mountain Pass (expansion of P001)",
              "construction", "raw: construction; commissioning targeted mid-2026",
              _blank("more than 200 t/yr Dy+Tb, oxide or metal basis not stated")),
    "P073": D("rare_earths", "refine", "reconfigured SX circuit separating Dy and Tb oxides at LAMP (expansion of P005)",
              "operating", "raw: operating (first Dy oxide May 2025)",
              _blank("1,500 t/yr SEGH feed; oxide output not published")),
    "P074": D("rare_earths", "refine", "heavy rare earth separation expansion at LAMP (Sm, Gd, Dy; expansion of P005)",
              "feasibility", "raw 'planned; construction subject to regulatory approvals': construction not reported",
              _blank("5,000 t/yr feedstock from a LOW-TIER page only; not REO output")),
    "P075": D("battery_anode", "anode", "active anode material plant expansion (expansion of P040)",
              "feasibility", "raw: DFS complete, FID pending; DOE loan application only",
              _basis("t AAM, incremental over P040 (45,000 - 11,250, computed in the raw row)")),
    "P076": D("ndfeb_magnets", "magnet", "sintered NdFeB magnet expansion at Stillwater (expansion of P013)",
              "financing", "raw: non-binding CHIPS LOI (Jan 2026) and private placement",
              _basis("t magnets, incremental over P013 nameplate (10,000 - 4,800, computed in the raw row)")),
    "P077": D("gallium", "refine", "primary gallium circuit at an alumina refinery",
              "financing", "raw: DoW preferred equity and private capital announced Jan 2026; construction not reported",
              _basis("published in t Ga ('up to 50 metric tons')")),
    "P078": D("rare_earths", "refine", "rare earth separation refinery (JV)",
              "feasibility", "raw: JV agreement announced Nov 2025; no site, capacity or date",
              _blank("not published")),
    "P079": D("tungsten", "mine", "tungsten mines (scheelite concentrate)",
              "feasibility", "raw: DFS in preparation; EXIM and DFC letters of interest only",
              _blank("12,000 t/yr: 'tungsten' (low-tier) or 'concentrate' (Project Blue); basis disputed")),
    "P080": D("niobium", "mine", "niobium mine and ferroniobium plant (also scandium and titanium)",
              "financing", "raw: permits in hand; EXIM preliminary term sheet",
              _blank("7,450 t/yr ferroniobium gross; Nb grade not in the sources read")),
    "P081": D("graphite", "mine", "natural graphite mine (plus Townsville anode refinery)",
              "feasibility", "raw: approvals in progress; EXIM letter of interest only",
              _blank("not published reliably")),
    "P082": D("titanium", "mine", "heavy mineral sands mine (rutile, ilmenite, zircon; monazite/xenotime by-products)",
              "feasibility", "raw: DFS and EIS being updated; EXIM/EFA letters only",
              _blank("not published in the sources read")),
    "P083": D("rare_earths", "mine", "deep-sea rare earth mud test mining (technology demonstration)",
              "exploration", "raw: test mining; full-scale test Feb 2027",
              _blank("no production capacity (test: up to 350 t of mud per day)")),
    "P084": D("rare_earths", "refine", "separation circuit for NdPr, Dy, Tb oxides (expansion of P011; ndpr/refine would also fit)",
              "feasibility", "raw: BFS complete; regulatory approval targeted mid-2027",
              _basis("t NdPr oxide = t REO (NdPr only), incremental over P011 (computed in the raw row); Dy 240 t and Tb 66 t not added")),
}

def _apply_updates(updates: Mapping[str, Any]) -> None:
    """Apply field changes to curated decisions (in order: later completions override earlier ones)."""
    for pid, changes in updates.items():
        CURATED[pid] = replace(CURATED[pid], **changes)


FACTORS.update(FACTORS_2026_12)
_apply_updates(UPDATES_2026_12)
CURATED.update(NEW_2026_12)

# Second completion of December 2026 (sources in data/raw/projects/projects.csv, rows noted "December 2026
# completion"): capacity on the node basis for ten more projects and product grades printed by the projects'
# own sources (a grade is a sourced factor, not a stoichiometric one, and is named so in the conversion).
FACTORS.update({
    "TREO_in_Goschen_REMC": (0.58, "Goschen rare earth mineral concentrate grade 'over 58% TREO' (company, 2024): a lower bound"),
    "Nb_in_FeNb": (0.65, "ferroniobium specification 65% Nb used in NioCorp's feasibility economics (2017)"),
})
UPDATES_2026_12B = {
    "P009": dict(cap=_basis("t REO (4,660 t light + 1,300 t heavy oxides), 2014 design at 1 Mt/yr ore (dated)")),
    "P014": dict(cap=_basis("t separated REO, 2019 PEA (dated; the same study as the capex)")),
    "P016": dict(cap=_basis("t rare earth oxides, Marion phase 1 (third-party report)")),
    "P017": dict(cap=_basis("t magnets, target by 2026 (weak source: commentary paraphrasing the company)")),
    "P026": dict(cap=_basis("t TREO in xenotime concentrate, Sep 2025 DFS (supersedes 3,098 t of 2015); includes Y2O3")),
    "P027": dict(cap=Cap("multiply", "concentrate grade printed by the company (over 58% TREO, lower bound)", factor="TREO_in_Goschen_REMC",
                         unit_from="t REMC", unit_to="TREO")),
    "P051": dict(cap=Cap("divide", "stoichiometric Li content of lithium carbonate; the concentrator feeds 50,000 t/yr LCE", factor="Li2CO3_per_Li",
                         value=50000, unit_from="LCE", unit_to="Li")),
    "P052": dict(cap=Cap("divide", "stoichiometric Li content of lithium hydroxide monohydrate", factor="LiOH.H2O_per_Li",
                         unit_from="LiOH.H2O", unit_to="Li")),
    "P062": dict(cap=_basis("t Co contained (6,500 t Co in 32,500 t cobalt sulphate, company)")),
    "P066": dict(cap=Cap("divide", "stoichiometric W content of WO3; 2009 feasibility study (dated)", factor="WO3_per_W",
                         unit_from="WO3", unit_to="W")),
    "P080": dict(cap=Cap("multiply", "Nb content of the ferroniobium specification (65% Nb)", factor="Nb_in_FeNb",
                         unit_from="t FeNb", unit_to="Nb")),
}
_apply_updates(UPDATES_2026_12B)

# Third completion of December 2026 (research rows in data/raw/projects/register_completion_2026-12c.csv; raw rows
# noted "December 2026 third completion"): element nodes where the output is stated per element (NdPr, Dy, NdFeB
# alloy), sourced conversion factors (a battery model's cathode per kWh, a mine plan's production split, a
# concentrate grade from the company's own output) and the stoichiometric CAM/pCAM ratio.
FACTORS.update({
    "CAM_t_per_GWh": (1259.0, "cathode active material per GWh of high-nickel cells: Argonne BatPaC 5.2, NMC811-graphite 1.259 kg/kWh "
                              "(NCA 1.342); the low end"),
    "CAM_per_pCAM": (1.0533, "LiMO2 / M(OH)2 for NMC811 = 97.3 / 92.3 = 1.0533 t CAM per t precursor (1.0538 for NMC111): stoichiometric"),
    "t_Pd_per_oz_4E_Waterberg": (0.6344 * 31.1034768e-6, "palladium share of 4E ounces in the Waterberg mine plan (472 of 744 koz, 2016 PFS) "
                                                         "x 31.1034768 g per troy oz"),
    "Dy_share_MP_DyTb": (0.75, "Mountain Pass ore holds Dy and Tb about 3:1 (Metalnomist, Jan 2026): Dy = 0.75 of Dy+Tb"),
    "Dy_per_yr_from_quarter_DyTb_Lynas": (4 * 5 / 6, "a quarter's Dy+Tb output x 4 quarters x the Dy share 5/6 (Lynas heavy RE feed yields about "
                                                      "5 % Dy and 1 % Tb, rawmaterials.net 2025)"),
})
UPDATES_2026_12C = {
    "P004": dict(commodity_id="ndpr", stage="mine",
                 node_why="Lynas states Mt Weld's capacity as NdPr: the element node ndpr/mine holds it on its own basis (the REO total is not published)",
                 cap=_basis("t NdPr oxide equivalent of Mt Weld concentrate (Lynas expansion target); NdPr contained in concentrate slightly higher")),
    "P006": dict(commodity_id="ndpr", stage="refine", node_why="the only product tonnage Lynas published for the Texas plant is NdPr (light RE line)",
                 cap=_basis("t NdPr oxide, light RE line design output (Jan 2021); the heavy RE line has no oxide output published")),
    "P010": dict(commodity_id="ndfeb_magnets", stage="magnet",
                 node_why="KMP's rare-earth output is NdFeB alloy (plus NdPr metal): the magnet node's basis is t NdFeB alloy and powder",
                 cap=_basis("t NdFeB alloy (2025); 3,600 t after phase 2 (late 2026)")),
    "P021": dict(cap=_basis("t rare earth products a year (three independent statements); basis not stated, Silmet sells mostly oxides: read as REO")),
    "P054": dict(cap=Cap("multiply", "GWh of high-nickel cathode x BatPaC 5.2 cathode mass per kWh (planned campus; low end NMC811)",
                         factor="CAM_t_per_GWh", unit_from="GWh", unit_to="CAM")),
    "P056": dict(cap=Cap("multiply", "stoichiometric CAM/pCAM (NMC811): CAM-equivalent of the precursor, lithiated elsewhere (the plant's CAM line was cancelled)",
                         factor="CAM_per_pCAM", unit_from="t pCAM", unit_to="CAM-equivalent")),
    "P068": dict(cap=Cap("divide", "stoichiometric W content of WO3; the 1,200 t is WO3 (50 % WO3 concentrate; the company's 2025 output figures)",
                         factor="WO3_per_W", unit_from="WO3", unit_to="W")),
    "P071": dict(cap=Cap("multiply", "2024 DFS 4E ounces x the mine plan's palladium share (2016 PFS) x g per oz: Pd in concentrate",
                         factor="t_Pd_per_oz_4E_Waterberg", unit_from="oz 4E", unit_to="Pd")),
    "P072": dict(commodity_id="dysprosium", stage="refine",
                 node_why="a Dy/Tb separation circuit: its output is element oxides, held by the element node (Tb, about 50 t, is not added)",
                 cap=Cap("multiply", "Dy share of Dy+Tb (ore ratio about 3:1); 'more than 200 t' is a lower bound; oxide or metal not stated",
                         factor="Dy_share_MP_DyTb", value=200, unit_from="t Dy+Tb", unit_to="Dy")),
    "P073": dict(commodity_id="dysprosium", stage="refine",
                 node_why="a Dy/Tb separation circuit: its output is element oxides, held by the element node (Tb is not added)",
                 cap=Cap("multiply", "output achieved in the first full quarter (Jul-Sep 2025), annualised: a lower bound of the circuit's capacity "
                                     "(design output not published)", factor="Dy_per_yr_from_quarter_DyTb_Lynas", value=9,
                         unit_from="t Dy+Tb a quarter", unit_to="Dy")),
    "P079": dict(cap=Cap("divide", "read as WO3 (the low end; 12,000 t if contained W): the deal bans exporting ore and semi-finished products, "
                                   "so the output is processed tungsten, not concentrate", factor="WO3_per_W", unit_from="WO3", unit_to="W")),
}
_apply_updates(UPDATES_2026_12C)


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
        "capex_usd": capex_usd,
        "capex_note": capex_note,
        "status_class": d.status_class,
        "status": status,
        "first_output": first,
        "esg_flags": d.esg_flags,
        "offtakes": d.offtakes,
        "frameworks": raw["frameworks"],
        "japan_link": raw["japan_link"],
        "sources": raw["sources"],
        "source_tiers": raw["source_tiers"],
        "verification": raw["verification"],
        "note": " ".join(n for n in note if n),
    }


def _support(raw: Mapping[str, str]) -> dict[str, Any]:
    status = raw["commitment_status"]
    excluded = raw["exclude_from_sum"]
    counts = not excluded and status not in NOT_COUNTED_STATUSES
    prefix = []
    if raw["amount_qualifier"]:
        prefix.append(f"Amount qualifier: {raw['amount_qualifier']}.")
    if raw["amount_local"]:
        local = f"{raw['currency']} {float(raw['amount_local']):,.0f}".strip()
        prefix.append(f"Local amount: {local}" + ("." if raw["amount_usd"] else " (no USD figure published; amount_usd blank)."))
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
        "amount_usd": _f(raw["amount_usd"]),
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
      "`build_register.py` and rebuild with `python -m critmin.portfolio.build_register data/raw src/critmin/portfolio/data`.")
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
        ("status_class", "curated from the free-text status (table below)"),
        ("status", "status (as of status_as_of)"),
        ("first_output", "first_production, blanked for P031 (laboratory extraction) and P054 (copper foil, not CAM)"),
        ("offtakes, esg_flags", "curated from the raw notes and status"),
        ("note", "node, status and capacity decisions; location; the raw note"),
        ("ramp_up_months, opex_usd_per_t, unit_cost_usd_per_t, completion_probability, delay_months, feoc", "blank: no source read gives them"),
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
      "`amount_usd` is kept only when a source printed a USD figure: local-currency amounts are in `note` and are "
      "not converted. A blank `counts` in an imported file is derived from `commitment_status` by the same rule.")
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
