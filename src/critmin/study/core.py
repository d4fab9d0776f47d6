"""``critmin.Study``: one study's inputs, checked once, and every step of the cycle run from them.

    study = critmin.Study.from_file("study.yaml")     # or Study(register="ws/", budgets="budgets.csv", ...)
    study.assess().ranking                            # priority minerals (DataFrame)
    study.risk("JPN").ranking                         # probability-weighted loss per commodity
    study.portfolio(cvar_weight=0.2).selected         # what to finance, with which instrument and agency
    study.stockpile().stocks                          # stock targets (t, USD, days)
    study.deliver().buyers, study.match().matches     # deliveries and supplier-buyer pairs
    plan = study.plan()                               # the coordinated plan; plan.summary is the executive answer

Every input named by the study is read and validated when the Study is made (errors name the file, row and
field; the bundled defaults are read when first used), and each method's options are checked (critmin.portfolio.options, critmin.stockpile.policy,
critmin.deliver.options) before any simulation starts. Each method returns a typed result
(critmin.study.results): DataFrames with labelled columns, ``metadata``, ``to_dict()`` and ``to_excel()``. The
risk library is simulated once per (draws, seed) and shared by ``risk``, ``portfolio`` and ``stockpile``.

The command line and the web workspace are faces on this class: the CLI builds a Study from its flags, the web
builds one per run with :meth:`Study.from_parts` from the records the user may read, and both call its methods.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from critmin._text import usd
from critmin.deliver.options import DeliveryOptions
from critmin.portfolio.options import PortfolioOptions
from critmin.stockpile.policy import StockpileOptions
from critmin.study.results import (
    AssessmentResult,
    BriefResult,
    ChainResult,
    DeliveryResult,
    MatchResult,
    PlanResult,
    PortfolioResult,
    RiskResult,
    SimulationResult,
    StockpileResult,
)
from critmin.study.spec import PATH_FIELDS, StudyError, StudySpec, load_spec, path_value, spec_from_dict

#: A progress callback: (chunks done, chunks in all).
Progress = Callable[[int, int], None]


class Study:
    """The group's study (see module docstring). Keyword arguments are the study file's fields.

    ``atlas``: an atlas folder (default: the bundled atlas). The simulator's inputs beyond the study file, as
    ``critmin simulate`` takes them: ``parameter_values`` (name -> central value, applied over ``params``),
    ``chain`` (a CSV replacing the bundled chain links) and ``product_values`` (a CSV replacing the bundled
    product prices and outputs)."""

    def __init__(self, spec: StudySpec | None = None, base_dir: str | Path | None = None, atlas: str | Path | None = None,
                 *, parameter_values: dict[str, float] | None = None, chain: str | Path | None = None,
                 product_values: str | Path | None = None, **fields: Any) -> None:
        # the study file's fields as keywords: as_of, draws, seed, delivery_months, blocs, register, buyers,
        # budgets, params, critical_lists, stockpile (StudySpec)
        if spec is None:
            spec = spec_from_dict({k: (str(v) if k in PATH_FIELDS and v is not None else v) for k, v in fields.items()})
        elif fields:
            spec = spec_from_dict({**spec.model_dump(by_alias=True), **{k: (str(v) if k in PATH_FIELDS and v is not None else v) for k, v in fields.items()}})
        self.spec = spec
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.atlas_path = atlas
        self.parameter_values = dict(parameter_values or {})
        self.chain_path = Path(chain) if chain is not None else None
        self.product_values_path = Path(product_values) if product_values is not None else None
        self.check()

    @classmethod
    def from_parts(cls, atlas: Any, simulator: Any = None, projects: pd.DataFrame | None = None, support: pd.DataFrame | None = None,
                   buyers: pd.DataFrame | None = None, supply: pd.DataFrame | None = None, first_month: dict[str, int] | None = None,
                   **fields: Any) -> Study:
        """A study on inputs already read and checked: an :class:`critmin.atlas.model.Atlas`, a built
        :class:`critmin.simulate.run.Simulator` (with a run's parameter overrides), the register's ``projects`` and
        ``support``, the ``buyers``, and the ``supply`` that can deliver (projects plus offers; default: the
        projects) with the ``first_month`` each offer can deliver. The web workspace builds one per run from the
        records the user may read. ``fields``: the study file's scalar fields (as_of, delivery_months, stockpile,
        critical_lists, ...); inputs left out are the bundled ones."""
        st = cls.__new__(cls)
        st.spec = spec_from_dict(fields)
        st.base_dir, st.atlas_path, st.parameter_values, st.chain_path, st.product_values_path = Path.cwd(), None, {}, None, None
        given = {"atlas": atlas, "simulator": simulator, "projects": projects, "support": support, "buyers": buyers, "supply": supply}
        st.__dict__.update({k: v for k, v in given.items() if v is not None})
        if simulator is not None:
            st.__dict__["parameters"] = simulator.params
        st.__dict__["first_month"] = first_month
        if st.spec.critical_lists:
            _ = st.critical_lists
        return st

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
        """Read every input the study names now, so that a bad file fails before any long computation (the
        bundled defaults are known to be valid and are read when first used)."""
        for f in PATH_FIELDS:
            p = self.path(f)
            if p is not None and not p.exists():
                raise StudyError(f"study field '{f}': {p.name} not found (paths are relative to the study file's folder)")
        for name, p in (("chain", self.chain_path), ("product_values", self.product_values_path)):
            if p is not None and not p.is_file():
                raise StudyError(f"{name}: {p.name} not found")
        _ = self.atlas, self.parameters
        if self.path("register") is not None:
            _ = self.register
        if self.path("buyers") is not None:
            _ = self.buyers
        if self.path("budgets") is not None:
            _ = self.budgets
        if self.spec.critical_lists:
            _ = self.critical_lists

    @cached_property
    def atlas(self) -> Any:
        from critmin.atlas import load_atlas

        return load_atlas(self.atlas_path, blocs=self.path("blocs"))

    @cached_property
    def parameters(self) -> Any:
        from critmin.simulate.parameters import Parameters

        return Parameters.load(self.path("params"), self.parameter_values or None)

    @cached_property
    def register(self) -> Any:
        from critmin.portfolio.register import bundled_register, read_register

        p = self.path("register")
        return bundled_register(self.atlas) if p is None else read_register(p, atlas=self.atlas)

    @cached_property
    def projects(self) -> pd.DataFrame:
        """The register's projects of interest."""
        return self.register.projects

    @cached_property
    def support(self) -> pd.DataFrame:
        """The register's public support actions (what is already committed to each project)."""
        return self.register.support

    @cached_property
    def supply(self) -> pd.DataFrame:
        """What can deliver to the buyers: the register's projects (the web workspace adds its offers)."""
        return self.projects

    @cached_property
    def first_month(self) -> dict[str, int] | None:
        """Month from ``as_of`` each supply row not in the register can first deliver (the workspace's offers)."""
        return None

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

        return Simulator.build(self.atlas, self.parameters, self.chain_path, self.product_values_path)

    @property
    def as_of(self) -> str:
        from critmin._dates import current_month

        return self.spec.as_of or current_month()

    # -- the cycle, step by step ------------------------------------------------------------------------

    def risk_run(self, draws: int | None = None, seed: int | None = None, threads: int = 2, client: Any = None,
                 progress: Progress | None = None) -> Any:
        """The risk library simulated once per (draws, seed) and kept: the run that the risk ranking, the portfolio's
        scenario sample and the stock sizing read (:func:`critmin.simulate.risk.risk_run`). ``threads``, a Dask
        ``client`` and ``progress`` (chunks done, chunks in all) change how it runs, not its result."""
        from critmin.simulate.risk import risk_run

        key = (self.spec.draws if draws is None else int(draws), self.spec.seed if seed is None else int(seed))
        _check_draws(*key)
        runs = self.__dict__.setdefault("_risk_runs", {})
        if key not in runs:
            runs[key] = risk_run(self.simulator, key[0], key[1], threads=threads, client=client, progress=progress)
        return runs[key]

    def assess(self, perspective: str = "BLOC", method: str = "critmin", year: int = 2024,
               params: dict[str, float] | None = None) -> AssessmentResult:
        """Priority minerals for ``perspective`` by a criticality ``method`` (``critmin methods``)."""
        from critmin.assess import assess

        df = assess(self.atlas, perspective, method, year=year, params=params or {})
        meta = {"data_version": self.atlas.data_version, "method": method, "perspective": perspective.upper(), "year": year, "params": params or {}}
        return AssessmentResult(record={"metadata": meta, "ranking": df.to_dict("records")}, metadata=meta, ranking=df)

    def chain(self, commodity: str, perspective: str = "BLOC") -> ChainResult:
        """A commodity's chain stage by stage: country shares, concentration, the chokepoint."""
        from critmin.assess import chain

        rec = chain(self.atlas, commodity, perspective)
        stages = pd.DataFrame([{"stage": st["stage"], "node": st["commodity"], "label": st["label"], "stage_risk": st["stage_risk"],
                                **(st["metrics"] or {})} for st in rec["stages"]])
        countries = pd.DataFrame([{"stage": st["stage"], **c} for st in rec["stages"] for c in st["countries"]])
        meta = {"data_version": self.atlas.data_version, "commodity": commodity, "perspective": rec["perspective"]}
        return ChainResult(record=rec, metadata=meta, stages=stages, countries=countries)

    def simulate(self, scenario: str | Any | list[Any], draws: int = 1000, seed: int | None = None, paths: bool = False,
                 threads: int = 2, client: Any = None, progress: Progress | None = None) -> SimulationResult:
        """A disruption: a library id, a scenario file, a :class:`critmin.simulate.scenario.Scenario` or a list of
        them. ``paths`` keeps the monthly price, shortfall and stock bands (``paths`` table)."""
        from critmin.simulate.run import run

        seed = self.spec.seed if seed is None else seed
        _check_draws(draws, seed)
        scen = self.scenario_list(scenario)
        origin = scenario if isinstance(scenario, str) and _is_file_key(scenario) else ""
        sim = self.simulator
        probs = [sim.probability.scenario_probability(s, s.commodity) for s in scen]
        res = run(sim, scen, draws=draws, seed=seed, probabilities=probs, keep_paths=paths, threads=threads, client=client,
                  progress=progress, origin=origin)
        rec: dict[str, Any] = {"metadata": res.metadata, "results": res.scenarios.to_dict("records")}
        if paths and res.paths is not None:
            rec["paths"] = res.paths.to_dict("records")
        return SimulationResult(record=rec, metadata=res.metadata, results=res.scenarios, paths=res.paths)

    def risk(self, perspective: str = "BLOC", draws: int | None = None, seed: int | None = None, threads: int = 2, client: Any = None,
             progress: Progress | None = None) -> RiskResult:
        """Commodities ranked by probability-weighted consumer loss over the scenario library (USGS 2025 approach).
        ``record["evaluations"]`` counts the scenarios and draws behind the ranking."""
        from critmin.simulate.risk import risk_ranking

        if perspective.upper() not in ("USA", "JPN", "BLOC"):
            raise StudyError(f"perspective must be USA, JPN or BLOC, not '{perspective}'")
        res = self.risk_run(draws, seed, threads=threads, client=client, progress=progress)
        df, res = risk_ranking(self.simulator, perspective, draws=res.metadata["draws"], seed=res.metadata["seed"], result=res)
        rec = {"metadata": res.metadata, "ranking": df.to_dict("records"), "evaluations": res.evaluations}
        return RiskResult(record=rec, metadata=res.metadata, ranking=df)

    def portfolio(self, options: PortfolioOptions | None = None, progress: Progress | None = None,
                  supply_draws: dict[str, dict[str, np.ndarray]] | None = None, **fields: Any) -> PortfolioResult:
        """Which projects to back, with which instrument and agency, under the budgets.

        ``options`` or its fields as keywords (:class:`critmin.portfolio.options.PortfolioOptions`); the study's
        draws, seed, as-of month and budgets are the defaults. ``progress`` follows the risk library's simulation.
        ``supply_draws``: supply in place received per draw (:meth:`year_ahead_draws`)."""
        from critmin.inputs import make_options
        from critmin.portfolio.plan import run_portfolio
        from critmin.stockpile.plan import loss_persistence

        base = {"draws": self.spec.draws, "seed": self.spec.seed, "as_of": self.as_of, "budgets": self.budgets}
        o = make_options(PortfolioOptions, **{**base, **(options.model_dump(exclude_unset=True) if options else {}), **fields})
        res = self.risk_run(o.draws, o.seed, progress=progress)
        # review 34b K5: the programme is also checked with the controls in force relaxed at the regime model's rate
        rec = run_portfolio(self.atlas, self.simulator, self.projects, o, risk_result=res, support=self.support,
                            persistence=loss_persistence(self.simulator, res.scenarios), supply_draws=supply_draws)
        budgets = pd.DataFrame([{"budget": k, "budget_usd": v, "spent_usd": rec["spent"].get(k, 0.0), "basis": rec["budget_basis"][k],
                                 "marginal_value_usd_per_usd": rec["marginal_value_usd_per_usd"].get(k)} for k, v in rec["budgets"].items()])
        return PortfolioResult(record=rec, metadata=rec["metadata"], selected=_records(rec["selected"]), projects=_records(rec["projects"]),
                               budgets=budgets, risk_reduction=_records(rec["risk_reduction"]),
                               frontier=_records(rec["frontier"]) if "frontier" in rec else None)

    def stockpile(self, options: StockpileOptions | None = None, progress: Progress | None = None,
                  supply_draws: dict[str, dict[str, np.ndarray]] | None = None, **fields: Any) -> StockpileResult:
        """Stock targets per participant and node under the study's stock policy and critical-mineral lists.

        ``options`` or its fields as keywords (:class:`critmin.stockpile.policy.StockpileOptions`); the study's
        stock policy, draws and seed are the defaults. ``progress`` follows the risk library's simulation.
        ``supply_draws``: supply in place received per draw (:meth:`year_ahead_draws`)."""
        from critmin.inputs import make_options
        from critmin.stockpile.plan import disruption_sample, plan_stockpiles

        base = {**self.spec.stockpile.model_dump(), "draws": self.spec.draws, "seed": self.spec.seed}
        o = make_options(StockpileOptions, **{**base, **(options.model_dump(exclude_unset=True) if options else {}), **fields})
        res = self.risk_run(o.draws, o.seed, progress=progress)
        sample = disruption_sample(self.simulator, o.draws, o.seed, result=res)
        rec = plan_stockpiles(self.simulator, o.perspective, budget=o.budget_usd, pooled=o.pooled, draws=o.draws, seed=o.seed, sample=sample,
                              commodities=self.critical_lists, stages=tuple(o.stages), max_days=o.max_days,
                              sourced_demand_only=o.sourced_demand_only, after_projects=dict(o.after_projects),
                              after_projects_contracted={k: dict(v) for k, v in o.after_projects_contracted.items()},
                              supply_year_ahead=dict(o.supply_year_ahead),
                              supply_year_ahead_contracted={k: dict(v) for k, v in o.supply_year_ahead_contracted.items()},
                              supply_year_ahead_draws=supply_draws)
        plans = pd.DataFrame([{"participant": j, **{k: v for k, v in p.items() if k != "stocks"}} for j, p in rec.get("budget_plans", {}).items()])
        return StockpileResult(record=rec, metadata=rec["metadata"], stocks=_records(rec["stockpiles"]), budget_plans=plans)

    def deliver(self, options: DeliveryOptions | None = None, first_month: dict[str, int] | None = None, **fields: Any) -> DeliveryResult:
        """Monthly deliveries of allied projects' output to the study's buyers, and what stays short.
        ``first_month`` gives supply rows an earlier first month of delivery (project id -> months from ``as_of``;
        the plan passes its recommended projects'), over the study's own (the workspace's offers)."""
        from critmin.deliver.plan import delivery_plan
        from critmin.inputs import make_options
        from critmin.simulate.nodes import PARTICIPANTS

        base = {"months": self.spec.delivery_months, "as_of": self.as_of}
        o = make_options(DeliveryOptions, **{**base, **(options.model_dump(exclude_unset=True) if options else {}), **fields})
        first = {**(self.first_month or {}), **(first_month or {})} or None
        # review 33 F5: a country's aggregate buyer gets its market's share of an added tonne, as in the stocks
        nodes = {f"{c}/{st}" for c, st in zip(self.supply["commodity_id"], self.supply["stage"], strict=True)} if len(self.supply) else set()
        isos = sorted({str(x) for x in self.buyers["country_iso3"]}) if len(self.buyers) else []
        market = {n: {iso: self.simulator.share_of_added_supply(n, [iso])[0] for iso in isos if iso in PARTICIPANTS}
                  for n in sorted(nodes) if n in self.simulator.nodes.index}
        rec = delivery_plan(self.atlas, self.supply, self.buyers, o.months, str(o.as_of), first_month=first, market_share=market)
        return DeliveryResult(record=rec, metadata={**rec["metadata"], "data_version": self.atlas.data_version}, buyers=_records(rec["buyers"]),
                              projects=_records(rec["projects"]), allocation=_records(rec["allocation"]),
                              not_supplying=_records(rec.get("not_supplying", [])))

    def match(self, as_of: str | None = None) -> MatchResult:
        """Supply offers (the register's projects) matched with the buyers' needs, each pair scored and explained."""
        from critmin.deliver.match import match
        from critmin.inputs import make_options

        o = make_options(DeliveryOptions, as_of=as_of or self.as_of)
        rec = match(self.atlas, self.supply, self.buyers, str(o.as_of))
        return MatchResult(record=rec, metadata={**rec["metadata"], "data_version": self.atlas.data_version}, matches=_records(rec["matches"]),
                           candidates=_records(rec.get("candidates", [])), unmatched_needs=_records(rec.get("unmatched_needs", [])),
                           refused=_records(rec.get("refused_pairs", [])))

    def plan(self, step: Callable[[str], None] | None = None, top: int = 25, draws: int | None = None, seed: int | None = None) -> PlanResult:
        """The coordinated plan: every step above on the study's inputs, for the participants together (BLOC),
        with the executive answer under ``summary``. ``step`` is told each step's name as it starts
        (:data:`critmin.report.cycle.CYCLE_STEPS`); ``top`` priority minerals are listed; ``draws`` and ``seed``
        default to the study's. The steps are this Study's own methods: the cycle is orchestrated here only."""
        from critmin.report.cycle import (
            CYCLE_STEPS,
            assemble_plan,
            frames,
            validation_record,
            vulnerabilities,
        )

        def say(i: int) -> None:
            if step:
                step(CYCLE_STEPS[i])

        s = self.spec
        res = self.risk_run(draws, seed)
        n, rs = int(res.metadata["draws"]), int(res.metadata["seed"])
        say(0)
        pm = self.assess("BLOC", "critmin").ranking
        say(1)
        vuln = vulnerabilities(self.atlas, pm, top)
        say(2)
        risk = self.risk("BLOC", n, rs)
        # review 26: the answer pointed each participant to its own ranking, which the plan did not contain
        by_participant = {j: self.risk(j, n, rs).ranking.to_dict("records") for j in ("USA", "JPN")}
        say(3)
        # review 35 L4: the stocks are sized net of the supply the pipeline delivers in the year ahead, so the programme
        # is decided net of it too (the pipeline is read from a first run: which projects are already financed)
        first = dict(self.portfolio(draws=n, seed=rs).record)
        ahead = year_ahead(financed_pipeline(first, self.projects, self.simulator.nodes), self.projects, self.as_of)
        supply_now, supply_now_contracted = projects_supply({}, as_supply(ahead)), contracted_supply({}, as_supply(ahead), self.buyers, self.projects)
        received = self.received_from(supply_now, supply_now_contracted)
        # review 35b M3: each plant delivers in a draw with its completion probability, not as a certain expectation
        by_draw = self.year_ahead_draws(ahead, n, rs)
        portfolio = dict(self.portfolio(draws=n, seed=rs, supply_received_t=received, supply_draws=by_draw).record)
        say(4)
        # review 18b: stock savings and project benefits claimed the same antimony loss. Stocks bridge the years before
        # the recommended projects produce; each stock row also says what it falls to once they do (docs/stockpile.md
        # §2, "After the projects"), and the programme decided after the stocks is recorded beside (docs/portfolio.md §5)
        # review 26: and what they fall to once the projects already financed produce (Stibnite after EXIM's approval)
        pipeline = financed_pipeline(portfolio, self.projects, self.simulator.nodes)
        portfolio["financed_pipeline"] = pipeline
        # review 34 H7 / 34b K9: each line is sized on what the plants producing or being built leave in the year ahead
        stock = dict(self.stockpile(perspective="BLOC", draws=n, seed=rs, after_projects=projects_supply(portfolio, pipeline),
                                    after_projects_contracted=contracted_supply(portfolio, pipeline, self.buyers, self.projects),
                                    supply_year_ahead=supply_now, supply_year_ahead_contracted=supply_now_contracted,
                                    supply_draws=by_draw).record)
        # review 23: the stockpile's own fund pays for the recommended stocks first; the programme gets what is left
        funding = stock_funding(portfolio, stock)
        left = {f["budget"]: float(f["left_for_projects_usd"]) for f in funding if f.get("budget")}
        if any(float(portfolio["spent"].get(k, 0.0)) > v + 1.0 for k, v in left.items()):
            portfolio = dict(self.portfolio(draws=n, seed=rs, budgets={**(self.budgets or {}), **left}, supply_received_t=received,
                                            supply_draws=by_draw).record)
        portfolio["stock_funding"] = funding
        portfolio["financed_pipeline"] = pipeline
        portfolio["pipeline_year_ahead"] = ahead
        for f in funding:
            if f.get("budget") and f["budget"] in portfolio.get("unspent", {}):
                portfolio["unspent"][f["budget"]] = (
                    f"{usd(f['stocks_to_buy_usd'])} ({f['stocks_share_of_budget']:.0%}) of it buys the recommended {f['participant']} stocks "
                    f"({f['funds']}); of the {usd(f['left_for_projects_usd'])} left for projects: {portfolio['unspent'][f['budget']]}")
        net = self.portfolio(draws=n, seed=rs, stocks_t=recommended_stocks(stock), budgets={**(self.budgets or {}), **left},
                             supply_received_t=received, supply_draws=by_draw).record
        portfolio["selection_net_of_stocks"] = selection_against(portfolio, dict(net))
        say(5)
        # the recommended portfolio's projects deliver from their (earlier) first month of output
        first = {p["project_id"]: int(round(p["months_to_output"])) for p in portfolio["selected"]}
        deliveries = dict(self.deliver(first_month=first).record)
        matches = dict(self.match().record)
        say(6)
        validation = validation_record(self.simulator, n, rs)
        rec = assemble_plan(self.atlas, priority=pm.head(top).to_dict("records"), vulnerabilities=vuln, scenarios=risk.ranking.to_dict("records"),
                            participant_scenarios=by_participant,
                            risk_metadata=risk.metadata, portfolio=portfolio, stockpiles=stock, deliveries=deliveries, matches=matches,
                            validation=validation, buyers=self.buyers, critical_lists=self.critical_lists, draws=n, seed=rs, as_of=self.as_of,
                            delivery_months=s.delivery_months,
                            chokepoints={str(r["commodity"]): {"chokepoint_stage": r["chokepoint_stage"], "top_country": r["top_country"],
                                                               "top_share": float(r["top_share"])}
                                         for r in pm.to_dict("records") if r["commodity"] in set(risk.ranking.head(top)["commodity"])})
        rec["metadata"]["study"] = s.model_dump(by_alias=True)
        t = frames(rec)
        return PlanResult(record=rec, metadata=rec["metadata"], priority_minerals=t["priority_minerals"], scenarios=t["scenarios"],
                          portfolio=t["portfolio"], stockpiles=t["stockpiles"], deliveries=t["deliveries"], matches=t["matches"])

    def year_ahead_draws(self, ahead: list[dict[str, Any]], draws: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
        """Per node and participant, the tonnes a year it receives in each draw from the plants of :func:`year_ahead`:
        plant p delivers in a draw with probability ``π_p`` (its completion probability; a uniform keyed by the seed and
        the project, so the stocks and the portfolio draw the same deliveries) its year's output, and the participant
        receives its part of it (:func:`critmin.stockpile.plan.received_t`: contracts first, then its market share).
        Review 35b M3: netting the expectation treated a plant that may not deliver as certain supply, which a stock
        insures against.

        The year's output is ``Q h(Y_d)``: a plant on its class's fitted ramp draws its years to design ``Y_d`` from the
        triangular (low, fitted, high) of the class's row (``ramp_up_years_to_design:*``: a mine 1-3 years; a processing
        plant 3.75-11.7; another uniform keyed by the seed and the project), ``h`` the mean share of nameplate over the
        year with the months already behind it (:func:`critmin.portfolio.finance.mean_output_share`); a plant with a
        reported output or its own ramp delivers ``q_p / π_p`` (review 35b M3: Sangdong had no recorded shipment, and a
        slower ramp than the class's fit was not drawn)."""
        from critmin.portfolio.finance import ramp_share
        from critmin.simulate.engine import keyed_uniforms, triangular_quantile
        from critmin.simulate.nodes import PARTICIPANTS
        from critmin.stockpile.plan import received_t

        out: dict[str, dict[str, np.ndarray]] = {}
        contracts = contract_rows(self.buyers)
        for r in ahead:
            pi = float(r["completion_probability"])
            if not pi > 0:
                continue
            pid = str(r["project_id"])
            delivers = (keyed_uniforms(seed, "year_ahead:" + pid, 0, (draws,)) < pi).astype(float)
            base = float(r["expected_t_year_ahead"]) / pi
            co = {k: v / pi for k, v in (r.get("co_product_expected_t_year_ahead") or {}).items()}
            ramp = r.get("year_ahead_ramp")
            if ramp:
                lo, mode, hi = (float(x) for x in ramp["years_to_design"])
                y = triangular_quantile(keyed_uniforms(seed, "year_ahead_ramp:" + pid, 0, (draws,)), np.full(draws, lo), np.full(draws, mode),
                                        np.full(draws, hi))
                months = np.arange(12.0) - np.ceil(float(ramp["start_month"])) + 1.0 + float(ramp["elapsed_months"])
                share = np.array([ramp_share(months, float(yy)).mean() for yy in y])
                central = float(ramp_share(months, mode).mean())
                scale = share / central if central > 0 else np.ones(draws)
            else:
                scale = np.ones(draws)
            # the tonnes received are piecewise linear in the plant's output (contracts, then market shares): evaluated
            # at each distinct output
            levels, inverse = np.unique(np.round(scale, 6), return_inverse=True)
            for li, level in enumerate(levels):
                one = {**r, "nameplate_t_per_year": base * level, "co_product_nameplate_t_per_year": {k: v * level for k, v in co.items()}}
                held = contracted_supply({}, [one], self.buyers, self.projects, contracts=contracts)
                mask = (inverse == li) * delivers
                for node, q in projects_supply({}, [one]).items():
                    if node not in self.simulator.nodes.index:
                        continue
                    for j in PARTICIPANTS:
                        got = received_t(self.simulator, node, j, q, held.get(node, {}))
                        acc = out.setdefault(node, {}).setdefault(j, np.zeros(draws))
                        acc += mask * got
        return out

    def received_from(self, supply_t: dict[str, float], contracted: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """Per node and participant, the tonnes a year of ``supply_t`` (node -> t/yr) that reach it: its contracts
        (``contracted``, node -> ISO3 -> t/yr), then its share of the rationed market of the rest
        (:func:`critmin.stockpile.plan.received_t`, the rule the stocks use)."""
        from critmin.simulate.nodes import PARTICIPANTS
        from critmin.stockpile.plan import received_t

        return {k: {j: received_t(self.simulator, k, j, q, contracted.get(k, {})) for j in PARTICIPANTS}
                for k, q in sorted(supply_t.items()) if k in self.simulator.nodes.index}

    def scenarios(self, key: str) -> list[Any]:
        """Scenarios by library id (``critmin scenarios list``) or from a YAML/JSON scenario file."""
        from critmin.simulate.library import find_scenario
        from critmin.simulate.scenario import load_scenario_file

        if _is_file_key(key):
            return load_scenario_file(Path(key))
        return [find_scenario(self.simulator.library(), key)]

    def scenario_list(self, scenario: str | Any | list[Any]) -> list[Any]:
        """A library id or scenario file (:meth:`scenarios`), a Scenario, or a list of Scenarios, as a list."""
        if isinstance(scenario, str):
            return self.scenarios(scenario)
        return list(scenario) if isinstance(scenario, list) else [scenario]

    def respond(self, scenario: str | Any | list[Any], draws: int = 1000, seed: int | None = None) -> BriefResult:
        """The rapid-response brief for a new event (a library id, a scenario file, a Scenario or a list of them);
        ``record`` is brief.json (:func:`critmin.report.respond.brief_html` and ``brief_pdf`` typeset it)."""
        from critmin.report.respond import respond

        seed = self.spec.seed if seed is None else seed
        _check_draws(draws, seed)
        rec = respond(self.simulator, self.scenario_list(scenario), self.supply, self.buyers, draws=draws, seed=seed, as_of=self.as_of)
        impact = pd.DataFrame([{"event": e.get("scenario", e.get("id")), **r} for e in rec["events"] for r in e.get("impact", [])])
        return BriefResult(record=rec, metadata=rec["metadata"], impact=impact)


#: Status classes of an already financed project whose output a stock may be drawn down on: being built, with a dated
#: first output. Review 27: "already financed" (no new money would be additional) also held a non-binding letter of
#: intent (USA Rare Earth), a conditional loan with no site (Vulcan) and a 3.5 t a year demonstration plant (Saguenay):
#: reasons not to fund them, not evidence that their output is coming.
OUTPUT_AHEAD = ("commissioning", "construction")


def financed_pipeline(portfolio: dict[str, Any], projects: pd.DataFrame, nodes: Any) -> list[dict[str, Any]]:
    """The register's projects that the portfolio finds already financed (no new money is additional), being built
    (:data:`OUTPUT_AHEAD`; undated ones after their class's lead time), with their node, nameplate (the register's capacity on the node's basis),
    co-products at their nodes, first output (the sponsor's date, and the month the model expects,
    ``first_output_expected`` = as_of + T_p of :func:`critmin.portfolio.model.months_before_output`, as in the
    portfolio and the deliveries) and completion probability (the status class's). Review 26: once EXIM's
    approval made Stibnite already financed, the U.S. antimony stock lost the project it bridges to; the stocks say
    what they fall to once these produce, as for the recommended projects."""
    from critmin._dates import add_months, month_or_now, sponsor_offset
    from critmin.portfolio.build_register import load_output_caveats
    from critmin.portfolio.model import InstrumentParameters, coproduct_nodes, months_before_output

    as_of = month_or_now(str((portfolio.get("metadata") or {}).get("as_of") or "") or None)
    caveats = load_output_caveats()
    # the portfolio's structured flag (counted support covers the capex), not its reason text; a project recommended
    # for regulatory help is counted with the recommended projects instead
    counted = {str(p["project_id"]) for p in portfolio.get("projects", []) if p.get("already_financed") and p.get("decision") != "selected"}
    if projects is None or not len(projects):
        return []
    # review 33 F3: a project the portfolio rejects as "treated as financed because its status class is construction or
    # commissioning" is coming with or without support, as one whose counted money covers its capex; both are in the
    # pipeline the stocks fall back on (Sangdong, e-VAC Sumter and Mountain Pass's Dy/Tb circuit were left out)
    selected = {str(p["project_id"]) for p in portfolio.get("projects", []) if p.get("decision") == "selected"}
    by_class = {str(r["project_id"]) for r in projects.to_dict("records")
                if str(r.get("status_class") or "") in OUTPUT_AHEAD and str(r["project_id"]) not in selected}
    # review 34 H7: a plant producing since after its node's base year (Lynas' Dy/Tb circuit, May 2025, at a node whose
    # 2024 shares give China 100 %) is supply the node's baseline does not hold: new to the model, as a plant being built
    new_since = {str(r["project_id"]): base for r in projects.to_dict("records")
                 if str(r.get("status_class") or "") == "operating" and str(r["project_id"]) not in selected
                 for key in [f"{r['commodity_id']}/{r['stage']}"]
                 for base in [nodes.nodes[nodes.index[key]].share_year if nodes is not None and key in nodes.index else None]
                 if base is not None and (year := _year_of(r.get("first_output"))) is not None and year > base}
    financed = counted | by_class | set(new_since)
    if not financed:
        return []
    ip = InstrumentParameters.load()
    out = []
    for p in projects[projects["project_id"].astype(str).isin(financed)].to_dict("records"):
        status, cap = str(p.get("status_class") or ""), p.get("capacity_t")
        # review 33b G1: an undated plant being built (Electra's cobalt refinery, fully funded in October 2025) comes after
        # its class's lead time; before, a missing date left it out of the stocks' pipeline altogether
        pid = str(p["project_id"])
        if (status not in OUTPUT_AHEAD and pid not in new_since) or cap is None or not np.isfinite(float(cap)) or float(cap) <= 0:
            continue
        pi = p.get("completion_probability")
        if pi is None or not np.isfinite(float(pi)):
            pi = 1.0 if pid in new_since else ip.get("project", f"completion_probability:{status}")
        # review 28 F4: the model's timing (the class delay beyond a sponsor's date, the class lead time for a date
        # already past), as in the portfolio and the deliveries, beside the sponsor's date
        months = 0.0 if pid in new_since else months_before_output(p, status, as_of, ip, [])
        sponsor = str(p.get("first_output") or "")
        passed = sponsor_offset(as_of, sponsor)  # review 33b G6: a year-only target in the plan's own year is not yet passed
        out.append({"project_id": str(p["project_id"]), "name": str(p.get("name") or p["project_id"]),
                    "node": f"{p['commodity_id']}/{p['stage']}", "nameplate_t_per_year": float(cap),
                    "co_product_nameplate_t_per_year": {n.key: float(t) for _, t, n in coproduct_nodes(p, nodes) if n is not None},
                    "status_class": status, "first_output": sponsor, "months_to_output": float(months),
                    "first_output_expected": add_months(as_of, months), "sponsor_date_passed": passed is not None and passed < 0,
                    "completion_probability": float(pi), "output_caveat": caveats.get(str(p["project_id"]), ("", ""))[0],
                    "financed_basis": ("counted support covers its capex" if pid in counted
                                       else f"producing since {sponsor}, after the {new_since[pid]} base year of the node's shares: "
                                            "new supply to the model" if pid in new_since
                                       else f"status class {status}: coming with or without support (an assumption of the class)"),
                    "output_caveat_source": caveats.get(str(p["project_id"]), ("", ""))[1]})
    return out


def _year_of(date: Any) -> int | None:
    """The year of a register date (``2025-05``, ``2025``), else None."""
    m = re.match(r"(\d{4})", str(date or ""))
    return int(m.group(1)) if m else None


def contract_rows(buyers: pd.DataFrame | None) -> list[tuple[set[str], Any, str, Any]]:
    """The buyer table's contracts as (named projects, volume, country, share of output) tuples, read once for
    :func:`contracted_supply`."""
    from critmin.deliver.buyers import contract_of

    if buyers is None or not len(buyers):
        return []
    return [(contract_of(b), b.get("demand_t_per_year"), str(b["country_iso3"]), b.get("contract_share")) for b in buyers.to_dict("records")]


def contracted_supply(portfolio: dict[str, Any], pipeline: list[dict[str, Any]] | None, buyers: pd.DataFrame | None,
                      projects: pd.DataFrame | None, contracts: list[tuple[set[str], Any, str, Any]] | None = None) -> dict[str, dict[str, float]]:
    """Of the recommended and already financed projects' nameplate (:func:`projects_supply`), the tonnes a year
    contracted to buyers of each country (node -> ISO3 -> t/yr), from the buyer table's contracts
    (``contract_projects``). Review 27: GM holds all of Thacker Pass Phase 1 and DoD backs a buyer for all of 10X's
    magnets, yet Japan's stocks fell on them by its demand share.

    A buyer with a published volume takes it, spread over the projects its contract names in proportion to their
    capacity; a buyer with a share of output (``contract_share``) takes that share of each named project's output
    (review 35 L5: JARE holds up to 65 % of Lynas' Dy/Tb, not all of it); the volumes and shares of one project are
    scaled down to its nameplate if they exceed it; a buyer with neither takes what the others leave, shared equally
    between such buyers. Only a project's own node is contracted, except that a share of output covers the co-products
    too (review 36: JARE's right is to Lynas' Dy and Tb)."""
    if buyers is None or not len(buyers):
        return {}
    cap = {}
    if projects is not None and len(projects):
        cap = {str(k): float(v) for k, v in zip(projects["project_id"], projects["capacity_t"], strict=True) if v is not None and np.isfinite(float(v))}
    rows = [*portfolio.get("selected", []), *(pipeline or [])]
    contracts = contracts if contracts is not None else contract_rows(buyers)
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        pid, node = str(r["project_id"]), str(r.get("node") or "")
        z = float(r.get("nameplate_t_per_year", r.get("output_once_producing_t_per_year")) or 0.0)
        if z <= 0 or not node:
            continue
        fixed: dict[str, float] = {}
        open_holders: list[str] = []
        for named, v, iso, share in contracts:
            if pid not in named:
                continue
            if share is not None and np.isfinite(float(share)):
                fixed[iso] = fixed.get(iso, 0.0) + float(share) * z
                continue
            if v is None or not np.isfinite(float(v)):
                open_holders.append(iso)
                continue
            total_cap = sum(cap.get(q, 0.0) for q in named)
            part = float(v) * (cap.get(pid, 0.0) / total_cap if total_cap > 0 else 1.0 / len(named))
            fixed[iso] = fixed.get(iso, 0.0) + part
        tot = sum(fixed.values())
        if tot > z:
            fixed = {k: v * z / tot for k, v in fixed.items()}
        rest = max(z - sum(fixed.values()), 0.0)
        for iso in open_holders:
            fixed[iso] = fixed.get(iso, 0.0) + rest / len(open_holders)
        if fixed:
            d = out.setdefault(node, {})
            for iso, t in fixed.items():
                d[iso] = d.get(iso, 0.0) + t
        # review 36: a share of a plant's output covers its co-products too (JARE's 65 % is of Lynas' Dy and Tb)
        co = r.get("co_product_nameplate_t_per_year", r.get("co_product_output_once_producing_t_per_year")) or {}
        shares = [(iso, float(share)) for named, _, iso, share in contracts if pid in named and share is not None and np.isfinite(float(share))]
        scale = 1.0 / max(sum(x for _, x in shares), 1.0)
        for iso, x in shares:
            for co_node, q in co.items():
                d = out.setdefault(co_node, {})
                d[iso] = d.get(iso, 0.0) + x * scale * float(q)
    return out


def year_ahead(pipeline: list[dict[str, Any]], projects: pd.DataFrame | None, as_of: str | None) -> list[dict[str, Any]]:
    """The already financed pipeline's rows (:func:`financed_pipeline`) with their expected output over the twelve
    months from the plan's month (``expected_t_year_ahead``, co-products in proportion in
    ``co_product_expected_t_year_ahead``), for the plants that produce in them:

        q = π Q h,   h = mean share of nameplate over months 0-11 (``finance.mean_output_share``: the project's ramp,
                         from its first month, months_to_output, with the months of output already behind a plant
                         producing or in commissioning since its sponsor's date, as the deliveries count them)

    or, for a plant producing now whose register gives its latest output, ``π × that output`` (review 35 L5: Lynas' Dy/Tb
    circuit made about 58 t of Dy a year by December 2025, above the 30 t lower bound the register holds as its
    capacity, and the deliveries use the 58 t). Rows with nothing in the year are left out. A stock is sized on the
    coming year's disruption, so only this output relieves it; the nameplate is what it falls to later
    (``stock_after_projects_t``)."""
    from critmin._dates import month_offset, month_or_now
    from critmin.portfolio.finance import mean_output_share
    from critmin.portfolio.model import (
        InstrumentParameters,
        reported_output_t,
        years_to_design,
        years_to_design_range,
    )

    if not pipeline:
        return []
    ip = InstrumentParameters.load()
    month = month_or_now(as_of)
    reg = {str(r["project_id"]): r for r in projects.to_dict("records")} if projects is not None and len(projects) else {}
    out = []
    for r in pipeline:
        p = reg.get(str(r["project_id"]), {})
        cap, t0 = float(r["nameplate_t_per_year"]), float(r["months_to_output"])
        if cap <= 0 or t0 >= 12:
            continue
        # review 35 L1: a plant in commissioning since a past date (Sangdong, December 2025) is as far up its ramp as one
        # operating since then; counting its ramp from today gave 469 t of tungsten in the year where the deliveries gave
        # 589 t in six months
        # review 35b M4: only a date that has passed (a year alone in the plan's own year has not: review 33b G6)
        since = month_offset(month, str(r.get("first_output") or "")) if t0 == 0 and r.get("sponsor_date_passed", True) else None
        elapsed = float(max(-since, 0)) if since is not None else 0.0
        reported = reported_output_t(p) if t0 == 0 else None
        ramp = mean_output_share(t0, 12, years_to_design(p, ip)[0], elapsed_months=elapsed)
        rate = reported if reported is not None and reported > 0 else cap * ramp
        q = float(r["completion_probability"]) * rate
        if q <= 0:
            continue
        f = q / cap
        # review 35b M3: the class ramp's range, which the year-ahead draws sample (a reported output is not drawn)
        span = years_to_design_range(p, ip) if not (reported is not None and reported > 0) else None
        ramp_draw = ({"start_month": t0, "elapsed_months": elapsed, "years_to_design": list(span)} if span is not None else None)
        out.append({**r, "expected_t_year_ahead": q, "year_ahead_ramp": ramp_draw,
                    "co_product_expected_t_year_ahead": {k: v * f for k, v in (r.get("co_product_nameplate_t_per_year") or {}).items()},
                    "year_ahead_basis": (f"latest reported output {reported:,.0f} t a year" if reported is not None and reported > 0 else
                                         f"{ramp:.0%} of nameplate over the year on its ramp"
                                         + (f", {elapsed:.0f} months of output behind it" if elapsed else ""))
                    + f", completion probability {float(r['completion_probability']):g}"})
    return out


def as_supply(ahead: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Year-ahead rows (:func:`year_ahead`) in the form :func:`projects_supply` and :func:`contracted_supply` read: the
    year's expected output in place of the nameplate."""
    return [{**r, "nameplate_t_per_year": r["expected_t_year_ahead"], "co_product_nameplate_t_per_year": r["co_product_expected_t_year_ahead"]}
            for r in ahead]


def projects_supply(portfolio: dict[str, Any], pipeline: list[dict[str, Any]] | None = None) -> dict[str, float]:
    """The recommended projects' output once they produce (t/yr: their nameplate) per node, their co-products'
    included. Review 20b: the support's increment averaged over the horizon (``added_capacity_t_per_year``,
    Stibnite 696 t) is what the portfolio values, not what the mine makes (8,346 t nameplate). Review 24: the
    expected output (nameplate times the completion probability) counted the chance of completion twice, since a
    stock falls only once the plant produces and the answer names that chance beside it. ``pipeline``: the already
    financed projects whose output is ahead (:func:`financed_pipeline`), added the same way."""
    out: dict[str, float] = {}
    for r in [*portfolio.get("selected", []), *(pipeline or [])]:
        own = r.get("nameplate_t_per_year", r.get("output_once_producing_t_per_year"))
        out[r["node"]] = out.get(r["node"], 0.0) + float(own or 0.0)
        co = r.get("co_product_nameplate_t_per_year", r.get("co_product_output_once_producing_t_per_year")) or {}
        for node, q in co.items():
            out[node] = out.get(node, 0.0) + float(q)
    return {k: v for k, v in out.items() if v > 0}


def selection_against(gross: dict[str, Any], net: dict[str, Any]) -> dict[str, Any]:
    """The programme decided after the recommended stocks against the plan's: which projects both keep, which only
    one does, and the loss avoided beyond the stocks."""
    a = {r["project_id"] for r in gross.get("selected", [])}
    b = {r["project_id"] for r in net.get("selected", [])}
    why = {r["project_id"]: r.get("reason", "") for r in net.get("projects", [])}
    avoided = {r["project_id"]: float(r.get("expected_avoided_usd") or 0.0) for r in net.get("selected", [])}
    return {"both": sorted(a & b), "only_without_stocks": sorted(a - b), "only_net_of_stocks": sorted(b - a),
            "expected_avoided_usd_net_of_stocks": float(net.get("expected_avoided_usd", 0.0)),
            "expected_avoided_usd_by_project_net_of_stocks": avoided,
            # review 35 L3: the terms the programme decided after the stocks gives each project (Mactung: a loan guarantee
            # there, equity before the stocks), which the answer's lead states
            "selected_net_of_stocks": [{k: r.get(k) for k in ("project_id", "name", "participant", "node", "instrument", "agency", "amount_usd",
                                                             "budget_cost_usd", "expected_avoided_usd")} for r in net.get("selected", [])],
            # why the programme decided after the stocks leaves out a project the plan recommends (its gain against
            # the cost it must justify)
            "reason_net_of_stocks": {pid: why.get(pid, "") for pid in sorted(a - b)},
            "stocks_netted_t": (net.get("metadata") or {}).get("stocks_netted_t", {}),
            # review 34b K4: the programme decided after the stocks, checked with no completion uplift
            "without_completion_uplift": net.get("selection_without_completion_uplift") or {},
            # review 34b K5: and with the loss of the controls in force relaxed at the regime model's rate
            "with_controls_relaxed": net.get("selection_with_controls_relaxed") or {}}


#: Per participant, the budget of the study that buys its stockpile's material, and why (review 23: DLA's US$2 B
#: showed as an unspent project budget while the recommended U.S. stocks named no funding line). Japan: JOGMEC's
#: stockpiling budget is not among the study's budgets.
STOCKPILE_FUNDS = {"USA": ("US_DLA_SM:offtake", "the National Defense Stockpile Transaction Fund (DLA Strategic Materials), "
                           "which the July 2025 appropriation expands to buy stockpile material; the stockpile may release "
                           "material only when required for purposes of the national defense (50 U.S.C. 98f), so stocks "
                           "held there answer defence needs, and the economy-wide release the plan values would need a new "
                           "authority")}

#: Per participant, what limits the release of the stocks its funding line buys (the answer's stock lead states it).
STOCKPILE_RELEASE_LIMITS = {"USA": "may be released only for national defence (50 U.S.C. 98f): the economy-wide release valued here "
                                   "needs a new authority"}

#: Per participant, other stock holders the answer names beside its funding line, and why its targets are not netted
#: against them (review 26: Project Vault; data/raw/stockpiles/project_vault_2026-12.md).
OTHER_STOCK_HOLDERS = {"USA": ("Project Vault (an EXIM loan of up to US$10 B approved on 2 Feb 2026, with about US$1.7 B of private "
                               "capital: holdings.csv) is not that authority: as reported by Bloomberg and Reuters it is a pool owned by "
                               "fee-paying manufacturers and traders, who pay its carrying costs and draw their own stocks, replenishing "
                               "them, with full access in a major disruption. No purchase by it was on record by April 2026, so the targets "
                               "are not netted against it; the economy-wide lines could be held by its members at their own cost instead "
                               "of by the government.")}


#: How a participant without a stockpile budget in the study pays for its stocks (review 24: "no funding line"
#: misstated how JOGMEC buys).
NO_STOCKPILE_FUND = {"JPN": "no stockpile budget in the study's budgets; JOGMEC buys with borrowed funds whose interest and storage "
                            "the rare-metal stockpiling programme subsidises (IEA, National stockpiling system; METI's FY2021 request "
                            "JPY 0.37 bn: stockpile_parameters.csv, holdings.csv), so its budget line is the yearly carrying cost"}


def stock_funding(portfolio: dict[str, Any], stock: dict[str, Any]) -> list[dict[str, Any]]:
    """Per participant, what its firm stocks (:func:`recommended_stocks`) cost to buy, net of published holdings and
    orders (``to_buy_t`` at the row's purchase price), and the budget that pays for it (:data:`STOCKPILE_FUNDS`):
    its amount, the stocks' share and what is left for the project programme. A participant without a stockpile
    budget in the study says so."""
    firm = recommended_stocks(stock)
    budgets = portfolio.get("budgets") or {}
    fixed = float((stock.get("metadata") or {}).get("fixed_cost_usd_per_line_year") or 0.0)
    out: list[dict[str, Any]] = []
    for j in ("USA", "JPN"):
        cost = 0.0
        carry = 0.0  # review 24: what holding the lines costs a year in cash (capital, storage, the lines' fixed costs)
        fall = 0.0  # review 25: the expected fall in their value a year, and the write-down if the controls are relaxed
        write_down = 0.0
        for r in stock.get("stockpiles", []):
            if r["participant"] != j or j not in firm.get(r["node"], {}):
                continue
            t = float(r["optimal_stock_t"])
            buy = float(r["to_buy_t"]) if r.get("to_buy_t") is not None and np.isfinite(float(r["to_buy_t"])) else t
            cost += buy * float(r["optimal_stock_usd"]) / t if t > 0 else 0.0
            carry += t * (float(r["holding_cost_usd_per_t_year"]) - float(r.get("expected_price_fall_usd_per_t_year") or 0.0)) + fixed
            fall += t * float(r.get("expected_price_fall_usd_per_t_year") or 0.0)
            if t > 0 and r.get("fall_back_usd_per_t") is not None:
                write_down += t * max(float(r["optimal_stock_usd"]) / t - float(r["fall_back_usd_per_t"]), 0.0)
        key, what = STOCKPILE_FUNDS.get(j, ("", ""))
        if key and key in budgets:
            b = float(budgets[key])
            out.append({"participant": j, "budget": key, "funds": what, "release_limit": STOCKPILE_RELEASE_LIMITS.get(j, ""),
                        "other_holders": OTHER_STOCK_HOLDERS.get(j, ""), "budget_usd": b,
                        "stocks_to_buy_usd": cost,
                        "stocks_share_of_budget": cost / b if b > 0 else float("nan"), "left_for_projects_usd": max(b - cost, 0.0),
                        "covered": cost <= b, "carrying_cost_usd_per_year": carry, "expected_value_loss_usd_per_year": fall,
                        "write_down_if_relaxed_usd": write_down})
        else:
            out.append({"participant": j, "budget": None, "funds": NO_STOCKPILE_FUND.get(j, "no stockpile budget in the study's budgets"),
                        "budget_usd": None, "stocks_to_buy_usd": cost, "stocks_share_of_budget": None, "left_for_projects_usd": None,
                        "covered": None, "carrying_cost_usd_per_year": carry, "expected_value_loss_usd_per_year": fall,
                        "write_down_if_relaxed_usd": write_down})
    return out


def recommended_stocks(stock: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The firm stocks of a stock plan (held, decided by at least ``FEW_DRAWS`` simulated years with a shortfall), as
    node -> participant -> t."""
    from critmin.stockpile.plan import FEW_DRAWS

    out: dict[str, dict[str, float]] = {}
    for r in stock.get("stockpiles", []):
        if r["participant"] in ("USA", "JPN") and float(r.get("optimal_stock_t") or 0.0) > 0 and (r.get("shortfall_draws") or 0) >= FEW_DRAWS:
            out.setdefault(r["node"], {})[r["participant"]] = float(r["optimal_stock_t"])
    return out


def _check_draws(draws: int, seed: int) -> None:
    from critmin.inputs import MAX_DRAWS, SEED_LIMIT

    if not (1 <= draws <= MAX_DRAWS and 0 <= seed <= SEED_LIMIT):
        raise StudyError(f"draws must be 1-{MAX_DRAWS} and seed 0-{SEED_LIMIT}, got {draws} and {seed}")


def _is_file_key(key: str) -> bool:
    """A scenario key naming a file (by its extension, or because it exists) rather than a library id."""
    p = Path(key)
    return p.suffix.lower() in (".yaml", ".yml", ".json") or p.exists()


def _records(rows: Any) -> pd.DataFrame:
    return pd.DataFrame(list(rows)) if rows else pd.DataFrame()
