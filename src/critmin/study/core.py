"""``critmin.Study``: one study's inputs, checked once, and the coordinated plan run from them.

    study = critmin.Study.from_file("study.yaml")     # or Study(register="ws/", budgets="budgets.csv", ...)
    plan = study.plan()                               # the plan.json record, with its executive summary

Every input named by the study is read and validated when the Study is made (errors name the file, row and
field), before any simulation starts.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from critmin.study.spec import PATH_FIELDS, StudyError, StudySpec, load_spec, path_value, spec_from_dict


class Study:
    """The group's study (see module docstring). Keyword arguments are the study file's fields."""

    def __init__(self, spec: StudySpec | None = None, base_dir: str | Path | None = None, atlas: str | Path | None = None,
                 **fields: Any) -> None:
        # the study file's fields as keywords: as_of, draws, seed, delivery_months, blocs, register, buyers,
        # budgets, params, critical_lists, stockpile (StudySpec)
        if spec is None:
            spec = spec_from_dict({k: (str(v) if k in PATH_FIELDS and v is not None else v) for k, v in fields.items()})
        elif fields:
            spec = spec_from_dict({**spec.model_dump(by_alias=True), **{k: (str(v) if k in PATH_FIELDS and v is not None else v) for k, v in fields.items()}})
        self.spec = spec
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.atlas_path = atlas
        self.check()

    @classmethod
    def from_file(cls, path: str | Path, atlas: str | Path | None = None, **overrides: Any) -> Study:
        """A study from its YAML file; ``overrides`` (e.g. from command-line flags) replace file fields."""
        spec, base = load_spec(path)
        given = {k: v for k, v in overrides.items() if v is not None}
        if given:
            # a path given on the command line is relative to the working folder, not the study's
            given = {k: (str(Path(v).resolve()) if k in PATH_FIELDS else v) for k, v in given.items()}
            spec = spec_from_dict({**spec.model_dump(by_alias=True), **given}, Path(path).name)
        return cls(spec, base, atlas)

    # -- inputs ----------------------------------------------------------------------------------------

    def path(self, field: str) -> Path | None:
        """The file a path field names, resolved against the study's folder; None when not set."""
        v = path_value(self.spec, field)
        if v is None:
            return None
        p = Path(v)
        return p if p.is_absolute() else self.base_dir / p

    def check(self) -> None:
        """Read every input now so that a bad file fails before any long computation."""
        for f in PATH_FIELDS:
            p = self.path(f)
            if p is not None and not p.exists():
                raise StudyError(f"study field '{f}': {p.name} not found (paths are relative to the study file's folder)")
        _ = self.atlas, self.projects, self.buyers, self.budgets, self.parameters, self.critical_lists

    @cached_property
    def atlas(self) -> Any:
        from critmin.atlas import load_atlas

        return load_atlas(self.atlas_path, blocs=self.path("blocs"))

    @cached_property
    def parameters(self) -> Any:
        from critmin.simulate.parameters import Parameters

        return Parameters.load(self.path("params"))

    @cached_property
    def register(self) -> Any:
        from critmin.portfolio.register import bundled_register, read_register

        p = self.path("register")
        return bundled_register(self.atlas) if p is None else read_register(p, atlas=self.atlas)

    @property
    def projects(self) -> pd.DataFrame:
        return self.register.projects

    @cached_property
    def buyers(self) -> pd.DataFrame:
        from critmin.deliver.buyers import bundled_buyers, read_buyers

        p = self.path("buyers")
        return bundled_buyers(self.atlas) if p is None else read_buyers(p, self.atlas)

    @cached_property
    def budgets(self) -> dict[str, float] | None:
        from critmin.portfolio.model import read_budgets

        p = self.path("budgets")
        return None if p is None else read_budgets(p)

    @cached_property
    def critical_lists(self) -> dict[str, set[str]]:
        """Each participant's list: the study's where given, else the bundled one; unknown ids are refused."""
        from critmin.atlas.lists import critical_lists

        lists = critical_lists()
        known = set(self.atlas.commodity_ids())
        for j, items in self.spec.critical_lists.items():
            bad = sorted(set(items) - known)
            if bad:
                raise StudyError(f"study field 'critical_lists.{j}': unknown commodity ids {', '.join(bad)} (see `critmin data audit`)")
            lists[j] = set(items)
        return lists

    @cached_property
    def simulator(self) -> Any:
        from critmin.simulate.run import Simulator

        return Simulator.build(self.atlas, self.parameters)

    @property
    def as_of(self) -> str:
        from critmin.portfolio.plan import current_month

        return self.spec.as_of or current_month()

    # -- the cycle -------------------------------------------------------------------------------------

    def plan(self, step: Callable[[str], None] | None = None) -> dict[str, Any]:
        """The coordinated plan (plan.json's record) with its executive summary under ``summary``."""
        from critmin.report.cycle import run_cycle

        s = self.spec
        rec = run_cycle(self.atlas, self.simulator, draws=s.draws, seed=s.seed, as_of=self.as_of, step=step, projects=self.projects,
                        buyers=self.buyers, budgets=self.budgets, delivery_months=s.delivery_months, critical_lists=self.critical_lists,
                        stock_policy=s.stockpile.model_dump(), support=self.register.support)
        rec["metadata"]["study"] = s.model_dump(by_alias=True)
        return rec

    def scenarios(self, key: str) -> list[Any]:
        """Scenarios by library id (``critmin scenarios list``) or from a YAML/JSON scenario file."""
        from critmin.simulate.library import find_scenario
        from critmin.simulate.scenario import load_scenario_file

        p = Path(key)
        if p.suffix.lower() in (".yaml", ".yml", ".json") or p.exists():
            return load_scenario_file(p)
        return [find_scenario(self.simulator.library(), key)]

    def respond(self, key: str, draws: int = 1000) -> dict[str, Any]:
        """The rapid-response brief's record for a new event (a library id or a scenario file)."""
        from critmin.report.respond import respond

        return respond(self.simulator, self.scenarios(key), self.projects, self.buyers, draws=draws, seed=self.spec.seed, as_of=self.as_of)

