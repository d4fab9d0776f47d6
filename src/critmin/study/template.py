"""``critmin study init DIR``: a commented study file with every input file beside it, filled with the bundled
data, so a group edits what it decides instead of starting from nothing."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import pandas as pd

from critmin.study.spec import StudyError

STUDY_YAML = """\
# critmin study: what the group decides. Run it with
#     critmin plan --study {name} --out out/
# Paths are relative to this file's folder. Delete a line to use the bundled default.
name: "US-Japan coordinated plan"
# Reference month for lead times, deliveries and contracts (YYYY-MM; default: this month)
as_of: "{as_of}"
# Monte Carlo draws of the disruption library and the seed (same inputs and seed, same results)
draws: 500
seed: 0
# Months of the delivery plan (the framework asks for a six-month view)
delivery_months: 6
# Inputs (each file here is a copy of the bundled data: edit, add or delete rows)
blocs: blocs.csv          # bloc_id,iso3: participants, like_minded, concern, ... (replaces the blocs it names)
register: register        # folder with projects.csv and support.csv (or an .xlsx from `critmin projects export`)
buyers: buyers.csv        # who needs what, how much, from when, with which origin rule
budgets: budgets.csv      # agency_id,instrument,budget_usd (instrument 'any' = one envelope for every instrument)
params: params.csv        # simulator parameter overrides: name,scope,value[,low,high,...] (empty = bundled parameters)
# Critical-mineral lists per participant (commodity ids; `critmin data audit` lists them). The stock plan
# only holds listed materials; a derived node (magnets, NdPr, Dy, Tb) counts through its listed parent.
# Leave a participant out to keep its bundled list (U.S. final 2025 list; Japan's 34 minerals + uranium).
critical_lists:
{lists}
# Stocks as policy
stockpile:
  budget_usd: null        # purchase budget per participant, USD (null = no budget constraint)
  max_days: 180           # cap on any stock, days of the participant's net imports (NIR x consumption)
  stages: [mine, refine, metal, magnet]   # cathode, anode and cells are left out: chemistry-specific and ageing
  pooled: true            # also size a stock pooled by the participants
  sourced_demand_only: true   # stock only where the participant's consumption is published, not a proxy
"""


def init_study(directory: str | Path, as_of: str | None = None, force: bool = False) -> list[Path]:
    """Write ``study.yaml`` and its input files into ``directory`` (refused if it holds a study, unless ``force``);
    ``as_of`` defaults to this month."""
    from critmin._dates import month_or_now

    as_of = month_or_now(as_of)
    from critmin.atlas.lists import critical_lists
    from critmin.deliver.buyers import bundled_buyers_path
    from critmin.portfolio.model import read_agencies
    from critmin.portfolio.register import bundled_register_path

    d = Path(directory)
    target = d / "study.yaml"
    if target.exists() and not force:
        raise StudyError(f"{target}: a study is already there (use --force to overwrite)")
    d.mkdir(parents=True, exist_ok=True)
    (d / "register").mkdir(exist_ok=True)
    written = []
    reg = bundled_register_path()
    for f in ("projects.csv", "support.csv"):
        shutil.copyfile(reg / f, d / "register" / f)
        written.append(d / "register" / f)
    shutil.copyfile(bundled_buyers_path(), d / "buyers.csv")
    written.append(d / "buyers.csv")
    blocs = pd.read_csv(Path(str(resources.files("critmin.atlas").joinpath("curated/blocs.csv"))), dtype=str, keep_default_na=False)
    blocs[["bloc_id", "iso3"]].to_csv(d / "blocs.csv", index=False)
    written.append(d / "blocs.csv")
    ag = read_agencies(None)
    ag = ag[ag["budget_usd"].notna()]
    ag[["agency_id", "instrument", "budget_usd"]].assign(budget_usd=lambda t: t["budget_usd"].map(lambda v: f"{v:.0f}")).to_csv(d / "budgets.csv", index=False)
    written.append(d / "budgets.csv")
    (d / "params.csv").write_text("name,scope,value,low,high,distribution,unit,kind,source,year,url,note\n", encoding="utf-8")
    written.append(d / "params.csv")
    lists = critical_lists()
    body = "\n".join(f"  {j}: [{', '.join(sorted(v))}]" for j, v in sorted(lists.items()))
    target.write_text(STUDY_YAML.format(name=target.name, as_of=as_of, lists=body), encoding="utf-8")
    written.append(target)
    return written
