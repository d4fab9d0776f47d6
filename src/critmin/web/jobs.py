"""Background jobs: simulation, risk sweep, portfolio, stockpiles, deliveries, matches and the whole plan,
run by the same core functions as the CLI, with progress, cancellation and stored, versioned results.

A run's ``inputs_sha256`` digests everything its result depends on: the kind, the parameters, the atlas
data version, the parameter table's digest, the critmin version and the (key, version) and data of every
record it reads (a record deleted and created again under its key is at version 1 again). A new run whose
digest equals a finished run the user may read reuses that result (``cached_from``). A server stopped
while runs were queued or running marks them ``interrupted`` when it starts again.

Cancellation is cooperative: it takes effect at the next progress point (between simulation chunks and
between the plan's steps); a MIP already inside HiGHS finishes its solve first.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import defer

from critmin._dates import MONTH_PATTERN
from critmin.deliver.options import DeliveryOptions
from critmin.inputs import option_problems
from critmin.portfolio.options import PortfolioOptions
from critmin.stockpile.policy import StockpileOptions
from critmin.study import Study
from critmin.web import access
from critmin.web import models as m
from critmin.web.access import Actor
from critmin.web.values import iso_time, jsonable
from critmin.web.worker import WorkerSetup, portable, watch_parent
from critmin.web.workspace import Workspace, WorkspaceError, offer_first_months, problems_of

#: Largest number of Monte Carlo draws a run may ask for (a server setting that keeps one run from
#: occupying the machine for long; the CLI has no such cap).
MAX_DRAWS = 5000
#: A calendar month YYYY-MM (ASCII digits, month 01-12).
MONTH = MONTH_PATTERN


#: The message a cancelled running run carries until its job stops (read by the job at each progress point).
CANCELLING = "cancelling"


#: Simulators with parameter overrides kept in memory (each ~1 s to build, a few MB).
SIMULATORS_KEPT = 4
#: Seconds between two progress writes of a run (one small UPDATE; the dashboard polls every second or so).
PROGRESS_EVERY_S = 0.3
#: A job's progress callback (fraction 0-1, message) and what a job returns (result, files by name).
Report = Callable[[float, str], None]
Outcome = tuple[dict[str, Any], dict[str, tuple[bytes, str]]]


class Cancelled(Exception):
    """Raised inside a job when its cancellation was asked for."""


class ParameterOverride(BaseModel):
    """One row replacing the bundled model parameter with the same (name, scope) for this run, as a row of a
    ``critmin simulate --params`` file does (docs/simulation.md, parameters)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(max_length=60, description="A parameter name (GET /api/parameters)")
    scope: str = Field("*", max_length=120, description="*, group:<g>, commodity:<id> or node:<commodity>/<stage>")
    value: float = Field(allow_inf_nan=False, description="Central value (the mode of a triangular distribution)")
    low: float | None = Field(None, allow_inf_nan=False)
    high: float | None = Field(None, allow_inf_nan=False)
    distribution: Literal["fixed", "uniform", "triangular"] = "fixed"


#: Bloc membership a run may replace (the participants are the framework's signatories, USA and JPN, whose
#: perspectives every result reports; they are not replaced).
ISO3 = Annotated[str, Field(pattern="^[A-Z]{3}$")]
Blocs = dict[Literal["concern", "like_minded"], Annotated[list[ISO3], Field(max_length=250)]]
BLOCS_DESCRIPTION = ("Bloc membership for this run: {concern|like_minded: [ISO3, ...]} replaces the atlas's members of each bloc named, "
                     "as `critmin plan --blocs` does")


class _P(BaseModel):
    model_config = ConfigDict(extra="forbid")
    draws: int = Field(200, ge=1, le=MAX_DRAWS, description="Monte Carlo draws")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    parameters: list[ParameterOverride] = Field(default_factory=list, max_length=200,
                                                description="Model parameter overrides for this run (default: the bundled table)")
    blocs: Blocs = Field(default_factory=dict, description=BLOCS_DESCRIPTION)


class SimulateParams(_P):
    scenario_ids: list[str] = Field(default_factory=list, max_length=50, description="Library or workspace scenario ids")
    scenario: dict[str, Any] | None = Field(None, description="A scenario defined inline (critmin.simulate.scenario.Scenario)")


class RiskParams(_P):
    perspective: str = Field("BLOC", pattern="^(USA|JPN|BLOC)$")


def _core(model: type[BaseModel], name: str) -> Any:
    """The field ``name`` of a core options model, bounds and description included: the web API states no bound
    of its own (issue 13)."""
    return copy.copy(model.model_fields[name])


def _core_check(model: type[BaseModel], fields: dict[str, Any]) -> None:
    """Run the core model's own checks (co-financing shares, budget keys) at submission: a 422, not a failed run."""
    try:
        model(**fields)
    except ValidationError as exc:
        raise ValueError("; ".join(option_problems(exc))) from None


class PortfolioParams(_P):
    """The web's subset of :class:`critmin.portfolio.options.PortfolioOptions` (no server file paths, no solver
    limits), with the same bounds."""

    budgets: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = _core(PortfolioOptions, "budgets")
    deadline_months: float | None = _core(PortfolioOptions, "deadline_months")
    frontier_points: int = _core(PortfolioOptions, "frontier_points")
    cvar_weight: float = _core(PortfolioOptions, "cvar_weight")
    concern_weight: float = _core(PortfolioOptions, "concern_weight")
    max_country_share: float = _core(PortfolioOptions, "max_country_share")
    max_commodity_share: float = _core(PortfolioOptions, "max_commodity_share")
    min_participant_share: dict[Annotated[str, Field(pattern="^[A-Z]{3}$")], Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] = _core(
        PortfolioOptions, "min_participant_share")
    as_of: str | None = Field(None, pattern=MONTH)

    def options(self) -> PortfolioOptions:
        return PortfolioOptions(**self.model_dump(exclude={"parameters", "blocs"}))

    @model_validator(mode="after")
    def _checks(self) -> PortfolioParams:
        _core_check(PortfolioOptions, self.model_dump(exclude={"parameters", "blocs"}))
        return self


class StockpileParams(_P):
    perspective: str = Field("BLOC", pattern="^(USA|JPN|BLOC)$")
    budget_usd: float | None = _core(StockpileOptions, "budget_usd")
    pooled: bool = True
    max_days: float | None = _core(StockpileOptions, "max_days")


class DeliverParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    months: int = _core(DeliveryOptions, "months")
    as_of: str | None = Field(None, pattern=MONTH)
    blocs: Blocs = Field(default_factory=dict, description=BLOCS_DESCRIPTION)


class PlanParams(_P):
    as_of: str | None = Field(None, pattern=MONTH)
    top: int = Field(25, ge=1, le=100)


class RespondParams(SimulateParams):
    """A new event (``critmin respond``): one or more scenarios, the brief's draws and month."""

    as_of: str | None = Field(None, pattern=MONTH)


PARAMS: dict[str, type[BaseModel]] = {"simulate": SimulateParams, "risk": RiskParams, "portfolio": PortfolioParams, "stockpile": StockpileParams,
                                      "deliver": DeliverParams, "match": DeliverParams, "plan": PlanParams, "respond": RespondParams}
#: Kinds that read the register, needs and offers (and so depend on their versions and confidentiality).
READS_RECORDS = {"portfolio", "deliver", "match", "plan", "respond"}


def _as_of(v: str | None) -> str:
    from critmin._dates import current_month

    return v or current_month()


#: Where runs execute: ``thread`` in the server process (the library's and the tests' in-process apps),
#: ``process`` in worker processes of their own (``critmin serve``'s default: reads stay responsive while
#: runs compute), ``dask`` on a Dask cluster (a deployment adds machines for runs).
JOBS = ("thread", "process", "dask")
#: Runs one organisation may have queued or running at once (``critmin serve --max-runs``); more answer 429.
MAX_ACTIVE_RUNS = 3


class JobRunner:
    """Runs jobs, ``workers`` at a time: in threads of this process (``jobs="thread"``), in worker processes
    (``"process"``: :mod:`critmin.web.worker`, one simulator built per worker) or on a Dask cluster
    (``"dask"``, at ``dask_address``). The simulator vectorises over draws, so one worker per two cores or
    so is the useful bound; more workers let a short run pass a long one (`critmin serve --workers N`).
    ``max_active`` bounds the runs one organisation has queued or running."""

    def __init__(self, ws: Workspace, workers: int = 1, jobs: str = "thread", setup: WorkerSetup | None = None,
                 dask_address: str | None = None, max_active: int = MAX_ACTIVE_RUNS):
        if jobs not in JOBS:
            raise ValueError(f"jobs must be one of {', '.join(JOBS)}, not {jobs!r}")
        if jobs != "thread":
            if setup is None:
                raise ValueError(f"jobs={jobs!r} needs a WorkerSetup (how a worker builds the definitions)")
            setup.check()
        if jobs == "dask" and not dask_address:
            raise ValueError("jobs='dask' needs the scheduler's address")
        self.ws, self.workers, self.jobs, self.setup, self.max_active = ws, workers, jobs, setup, max_active
        self.dask_address = dask_address
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="critmin-job")
        self._executor: Any = None  # the worker processes or the Dask client's executor, made at start()
        self._client: Any = None
        self._executor_lock = threading.Lock()
        self.cancel_flags: dict[int, threading.Event] = {}
        #: simulators built with parameter overrides, by the parameter table's SHA-256 (most recent last)
        self._sims: dict[str, Any] = {}
        self._sims_lock = threading.Lock()

    def start(self) -> None:
        """Start the workers (processes build their definitions now, in the background) or connect to Dask."""
        if self.jobs == "thread":
            return
        ex = self._workers()
        for _ in range(self.workers):  # one warm-up each, so every worker starts and builds its simulator
            ex.submit(worker_warm, self.setup)

    def _workers(self) -> Any:
        with self._executor_lock:
            if self._executor is None:
                if self.jobs == "process":
                    import multiprocessing

                    assert self.setup is not None  # checked in __init__
                    # spawn: a fork of a threaded server (uvicorn, SQLAlchemy pools, this runner) is unsafe
                    self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                         initializer=worker_start, initargs=(self.setup, os.getpid()))
                else:
                    from distributed import Client

                    self._client = Client(self.dask_address, set_as_default=False)
                    self._executor = self._client.get_executor(pure=False)
            return self._executor

    def _worker_lost(self, broken: Any) -> None:
        """A worker process died (killed, out of memory): a new pool for the next runs."""
        with self._executor_lock:
            if self._executor is broken:
                self._executor = None
        try:
            broken.shutdown(wait=False, cancel_futures=True)
        except Exception:  # a broken pool may fail to shut down; it is dropped either way
            pass

    def parameters(self, p: BaseModel) -> Any:
        """The run's model parameters: the workspace simulator's, with the run's overrides applied (checked:
        422 naming ``params.parameters.<row>.<field>``); None when the run has no overrides."""
        from critmin.simulate.parameters import ParameterError, Parameters, check_parameter_table

        rows = getattr(p, "parameters", None)
        if not rows:
            return None
        sim = self.ws.sim
        table = pd.DataFrame([{**{k: ("" if v is None else str(v)) for k, v in r.model_dump().items()}, "kind": "assumption",
                               "source": "user override (workspace run)"} for r in rows])
        try:
            rows_checked = check_parameter_table(table, "run parameters", first_line=0)  # stripped, as the run will use them
            Parameters(rows_checked).check_scopes(set(sim.atlas.commodities["commodity_id"]), set(sim.atlas.commodities["group"]),
                                                  set(sim.nodes.index), first_line=0)
            params = sim.params.with_rows(rows_checked, "run parameters")
        except ParameterError as exc:
            problems = [{"field": ".".join(str(x) for x in ("params.parameters", q.line, q.field) if x is not None), "message": q.message}
                        for q in exc.problems]
            raise WorkspaceError(422, "invalid parameter overrides", problems) from exc
        return params

    def atlas_for(self, blocs: dict[str, list[str]] | None) -> Any:
        """The workspace atlas, or a copy with the run's bloc membership (``Atlas.with_blocs``). Unknown
        countries, and a country of concern that would also be a participant or like-minded partner, answer
        422 naming ``params.blocs.<bloc>.<i>``."""
        atlas = self.ws.atlas
        if not blocs:
            return atlas
        known = set(atlas.countries["iso3"])
        problems = [{"field": f"params.blocs.{bloc}.{i}", "message": f"unknown country '{iso}'"}
                    for bloc, isos in blocs.items() for i, iso in enumerate(isos) if iso not in known]
        if not problems:
            new = atlas.with_blocs(blocs)
            both = new.concern & new.allied
            problems = [{"field": f"params.blocs.{bloc}.{i}", "message": f"'{iso}' would be a country of concern and a participant or like-minded partner"}
                        for bloc, isos in blocs.items() for i, iso in enumerate(isos) if iso in both]
        if problems:
            raise WorkspaceError(422, "invalid bloc membership", problems)
        return new

    def simulator(self, params: Any, atlas: Any = None) -> Any:
        """The workspace simulator, or one built on the run's parameters and/or atlas with its own bloc
        membership (kept for the next run with the same ones; at most ``SIMULATORS_KEPT``)."""
        from critmin.simulate.run import Simulator

        base = self.ws.sim
        if params is None and atlas is None:
            return base
        params, atlas = params or base.params, atlas or base.atlas
        key = params.sha256 + json.dumps(atlas.bloc_members(), sort_keys=True)
        with self._sims_lock:
            sim = self._sims.pop(key, None)
        if sim is None:
            sim = Simulator.build(atlas, params)
        with self._sims_lock:
            self._sims[key] = sim
            while len(self._sims) > SIMULATORS_KEPT:
                self._sims.pop(next(iter(self._sims)))
        return sim

    def recover(self) -> int:
        """Mark runs left queued or running by a stopped server as interrupted."""
        with self.ws.db.session() as s:
            rows = list(s.scalars(select(m.Run).where(m.Run.status.in_(("queued", "running")))))
            for r in rows:
                r.status, r.message, r.finished_at = "interrupted", "the server stopped before the run finished; start it again", datetime.now(UTC)
            return len(rows)

    def shutdown(self) -> None:
        """Cancel the runs this server started that are still running (at their next progress point) and
        stop the workers; runs still queued stay so and are marked interrupted at the next start."""
        for ev in self.cancel_flags.values():
            ev.set()
        if self.jobs != "thread" and self.cancel_flags:
            with self.ws.db.session() as s:
                s.execute(update(m.Run).where(m.Run.id.in_(list(self.cancel_flags)), m.Run.status == "running").values(message=CANCELLING))
        self.pool.shutdown(wait=True, cancel_futures=True)
        with self._executor_lock:
            ex, client, self._executor, self._client = self._executor, self._client, None, None
        if client is not None:  # Dask: runs still on the cluster stop at their next progress point
            client.close()
        elif ex is not None:
            ex.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------------------------------ API
    def submit(self, actor: Actor, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        if not access.can_run(actor):
            raise WorkspaceError(403, f"role '{actor.role}' cannot start runs")
        try:
            p = PARAMS[kind].model_validate(params)
        except ValidationError as exc:
            raise WorkspaceError(422, f"invalid parameters for a {kind} run", problems_of(exc, "params")) from exc
        sim = self.ws.sim
        run_params = self.parameters(p)
        given = dict(getattr(p, "blocs", {}))
        # checked here, as given (problems name its rows): a bad membership answers 422 and nothing is queued
        run_atlas = self.atlas_for(given) if given else None
        if given:  # stored sorted, one form per membership
            p = p.model_copy(update={"blocs": {k: sorted(set(v)) for k, v in given.items()}})
        if "as_of" in type(p).model_fields:  # the month is fixed here, once: the digest, the stored parameters and the job agree
            p = p.model_copy(update={"as_of": _as_of(getattr(p, "as_of", None))})
        pdict = p.model_dump()
        # the records the run reads are read once, here: its digest, its confidentiality and its result all
        # describe the same snapshot, whatever changes while it waits in the queue
        inputs: dict[str, Any] = {}
        confidential = False
        record_digest = ""
        if kind in READS_RECORDS:
            inputs["frames"] = fr = self.ws.frames(actor)
            confidential, record_digest = fr["confidential"], fr["inputs"]
        if kind in ("simulate", "respond"):
            # library scenarios are resolved by the run's simulator: its settings (in_force_horizon_months) shape them
            run_sim = self.simulator(run_params, run_atlas) if p.scenario_ids else sim  # type: ignore[attr-defined]
            inputs["scenarios"], confidential = self._scenarios(actor, p, run_sim)  # type: ignore[arg-type]
            record_digest = hashlib.sha256(json.dumps([x.model_dump() for x in inputs["scenarios"]], sort_keys=True).encode()).hexdigest()

        if run_atlas is not None:
            inputs["atlas"] = run_atlas
        if run_params is not None:
            inputs["parameters"] = run_params
        # the bloc membership the run uses: the atlas's (which `critmin serve --blocs` may have replaced without
        # changing the data version) with the run's own lists applied
        atlas = run_atlas or sim.atlas
        return self._queue(actor, kind, p, pdict, inputs, confidential, record_digest, atlas, (run_params or sim.params).sha256)

    def submit_study(self, actor: Actor, study: Any, name: str, sha256: str, body: bytes = b"") -> dict[str, Any]:
        """A plan run on an uploaded study (its register, buyers, budgets, parameters, blocs, lists and policy),
        checked before it is queued; confidential to the uploader's organisation. ``body``: the uploaded zip,
        from which a worker process reads the study again (required unless runs execute in threads)."""
        if self.jobs != "thread" and not body:
            raise ValueError("a study run executed by a worker needs the uploaded zip's bytes")
        if not access.can_run(actor):
            raise WorkspaceError(403, f"role '{actor.role}' cannot start runs")
        s = study.spec
        try:
            p = PlanParams.model_validate({"draws": min(s.draws, MAX_DRAWS), "seed": s.seed, "as_of": study.as_of})
        except ValidationError as exc:  # the study's own bounds are the run's; a mismatch is the study's fault, not a server error
            raise WorkspaceError(422, f"{name}: the study's run settings are out of bounds", problems_of(exc, "study")) from exc
        pdict = {**p.model_dump(), "study": name, "study_sha256": sha256}
        inputs = {"study": study, "study_zip": (body, name), "frames": {"counts": {"projects": len(study.projects), "needs": len(study.buyers), "offers": 0}}}
        return self._queue(actor, "plan", p, pdict, inputs, True, sha256, study.atlas, study.parameters.sha256)

    def _queue(self, actor: Actor, kind: str, p: BaseModel, pdict: dict[str, Any], inputs: dict[str, Any], confidential: bool,
               record_digest: str, atlas: Any, parameters_sha256: str) -> dict[str, Any]:
        """Store the run (or reuse a finished run with the same inputs) and hand it to a worker."""
        from critmin.version import __version__

        digest = hashlib.sha256(json.dumps({"kind": kind, "params": pdict, "data_version": atlas.data_version,
                                            "parameters_sha256": parameters_sha256, "blocs": atlas.bloc_members(),
                                            "critmin_version": __version__, "records": record_digest},
                                           sort_keys=True, default=str).encode()).hexdigest()
        with self.ws.db.session() as s:
            prev = s.scalar(select(m.Run).options(defer(m.Run.result)).where(m.Run.inputs_sha256 == digest, m.Run.status == "done", m.Run.cached_from.is_(None),
                                                or_(m.Run.org_id == actor.org_id, m.Run.confidential.is_(False))).order_by(m.Run.id.desc()))
            run = m.Run(kind=kind, params=jsonable(pdict), inputs_sha256=digest, data_version=str(atlas.data_version), critmin_version=__version__,
                        org_id=actor.org_id, user_id=actor.user_id, confidential=confidential, status="queued")
            reuse = prev is not None and not (confidential and prev.org_id != actor.org_id)
            if not reuse:  # a quota on the organisation's runs queued or running (a reused result costs nothing)
                active = s.scalar(select(func.count()).select_from(m.Run).where(m.Run.org_id == actor.org_id, m.Run.status.in_(("queued", "running")))) or 0
                if active >= self.max_active:
                    raise WorkspaceError(429, f"'{actor.org_name}' has {active} runs queued or running, the most one organisation may have "
                                              f"(critmin serve --max-runs {self.max_active}); wait for one to finish or cancel one")
            if reuse and prev is not None:
                run.status, run.progress, run.cached_from = "done", 1.0, prev.id
                run.message, run.started_at, run.finished_at = f"same inputs as run {prev.id}: its result is reused", datetime.now(UTC), datetime.now(UTC)
            s.add(run)
            s.flush()
            self.ws._audit(s, actor, "run", "run", str(run.id), {"kind": kind, "params": pdict, "cached_from": run.cached_from})
            rid = run.id
            cached = run.cached_from is not None
        if not cached:
            ev = threading.Event()
            self.cancel_flags[rid] = ev
            if self.jobs == "thread":
                self.pool.submit(self.execute, rid, kind, p, actor, inputs, ev=ev)
            else:
                self._hand_over(rid, kind, p, actor, inputs)
        return self.get(actor, rid)

    def _hand_over(self, rid: int, kind: str, p: BaseModel, actor: Actor, inputs: dict[str, Any]) -> None:
        """Send a run to the workers; a worker that dies under it (or a cluster that refuses it) fails the
        run with the reason instead of leaving it running."""
        ex = self._workers()
        try:
            fut = ex.submit(worker_execute, self.setup, rid, kind, p, actor, portable(inputs))
        except Exception as exc:  # a broken pool or lost cluster: the run fails, the server goes on
            self._worker_lost(ex)
            self._fail(rid, f"could not hand the run to a worker: {type(exc).__name__}: {exc}")
            return

        def done(f: Future[Any]) -> None:
            self.cancel_flags.pop(rid, None)
            exc = f.exception() if not f.cancelled() else None
            if exc is not None:
                from concurrent.futures.process import BrokenProcessPool

                if isinstance(exc, BrokenProcessPool):
                    self._worker_lost(ex)
                self._fail(rid, f"the run's worker stopped: {type(exc).__name__}: {exc}")
        fut.add_done_callback(done)

    def _fail(self, rid: int, error: str) -> None:
        """Mark a run failed with ``error`` unless it has finished meanwhile."""
        with self.ws.db.session() as s:
            s.execute(update(m.Run).where(m.Run.id == rid, m.Run.status.in_(("queued", "running")))
                      .values(status="failed", message="failed", error=error, finished_at=datetime.now(UTC)))

    def cancel(self, actor: Actor, rid: int) -> dict[str, Any]:
        with self.ws.db.session() as s:
            r = self._readable(s, actor, rid)
            if not access.can_cancel_run(actor, r.org_id):
                raise WorkspaceError(403, "only the organisation that started a run can cancel it")
            if r.status in ("queued", "running"):
                ev = self.cancel_flags.get(rid)
                if ev is not None:
                    ev.set()
                if r.status == "queued":
                    r.status, r.message, r.finished_at = "cancelled", "cancelled before it started", datetime.now(UTC)
                else:
                    r.message = CANCELLING
                self.ws._audit(s, actor, "cancel", "run", str(rid), {})
        return self.get(actor, rid)

    def delete(self, actor: Actor, rid: int) -> None:
        """Delete a finished run of one's own organisation with its result and files (audited). A run that
        reused its result answers 410 from then on, as for any result no longer stored."""
        with self.ws.db.session() as s:
            r = self._readable(s, actor, rid)
            if not access.can_cancel_run(actor, r.org_id):
                raise WorkspaceError(403, "only the organisation that started a run can delete it")
            if r.status in ("queued", "running"):
                raise WorkspaceError(409, f"run {rid} is {r.status}: cancel it first")
            s.execute(delete(m.RunFile).where(m.RunFile.run_id == rid))
            s.delete(r)
            self.ws._audit(s, actor, "delete", "run", str(rid), {"kind": r.kind})

    def _readable(self, s: Any, actor: Actor, rid: int) -> m.Run:
        r = s.get(m.Run, rid, options=[defer(m.Run.result)])  # the result is loaded only when asked for
        if r is None or not access.can_read_run(actor, r.org_id, r.confidential):
            raise WorkspaceError(404, f"no run {rid}")
        return r

    def _out(self, s: Any, r: m.Run, actor: Actor, lookups: dict[str, Any] | None = None) -> dict[str, Any]:
        """A run as the API shows it: the person who started it only to their own organisation (others see the
        organisation; issue 14)."""
        lk = lookups or self._lookups(s, [r])
        return {"id": r.id, "kind": r.kind, "status": r.status, "progress": r.progress, "message": r.message, "params": r.params,
                "inputs_sha256": r.inputs_sha256, "data_version": r.data_version, "critmin_version": r.critmin_version,
                "org": lk["orgs"].get(r.org_id, ""), "user": lk["users"].get(r.user_id, "") if r.org_id == actor.org_id else "", "confidential": r.confidential, "cached_from": r.cached_from,
                "error": r.error, "created_at": iso_time(r.created_at), "started_at": iso_time(r.started_at), "finished_at": iso_time(r.finished_at),
                "files": sorted(lk["files"].get(r.cached_from or r.id, []))}

    @staticmethod
    def _lookups(s: Any, runs: list[m.Run]) -> dict[str, Any]:
        """Organisation names, user emails and file names of a page of runs, in three queries."""
        orgs = {o.id: o.name for o in s.scalars(select(m.Organisation).where(m.Organisation.id.in_({r.org_id for r in runs})))}
        users = {u.id: u.email for u in s.scalars(select(m.User).where(m.User.id.in_({r.user_id for r in runs})))}
        files: dict[int, list[str]] = {}
        for rid, name in s.execute(select(m.RunFile.run_id, m.RunFile.name).where(m.RunFile.run_id.in_({r.cached_from or r.id for r in runs}))):
            files.setdefault(rid, []).append(name)
        return {"orgs": orgs, "users": users, "files": files}

    def get(self, actor: Actor, rid: int) -> dict[str, Any]:
        with self.ws.db.session() as s:
            return self._out(s, self._readable(s, actor, rid), actor)

    def list_runs(self, actor: Actor, kind: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """A page of the runs the actor may read, newest first (results are not loaded)."""
        with self.ws.db.session() as s:
            cond = [or_(m.Run.org_id == actor.org_id, m.Run.confidential.is_(False))]
            if kind:
                cond.append(m.Run.kind == kind)
            total = s.scalar(select(func.count()).select_from(m.Run).where(*cond)) or 0
            rows = list(s.scalars(select(m.Run).options(defer(m.Run.result)).where(*cond).order_by(m.Run.id.desc()).limit(limit).offset(offset)))
            lk = self._lookups(s, rows)
            return {"total": int(total), "items": [self._out(s, r, actor, lk) for r in rows]}

    def result(self, actor: Actor, rid: int) -> dict[str, Any]:
        with self.ws.db.session() as s:
            r = self._readable(s, actor, rid)
            if r.status != "done":
                raise WorkspaceError(409, f"run {rid} is {r.status}; no result")
            src = s.get(m.Run, r.cached_from) if r.cached_from else r
            if src is None or src.result is None:
                raise WorkspaceError(410, f"the result of run {rid} is no longer stored")
            return {"run": self._out(s, r, actor), "result": src.result}

    def file(self, actor: Actor, rid: int, name: str) -> tuple[bytes, str]:
        with self.ws.db.session() as s:
            r = self._readable(s, actor, rid)
            f = s.get(m.RunFile, (r.cached_from or r.id, name))
            if f is None:
                raise WorkspaceError(404, f"run {rid} has no file '{name}'")
            return f.content, f.media_type

    # ------------------------------------------------------------------------------------------ execution
    def _scenarios(self, actor: Actor, p: SimulateParams, sim: Any) -> tuple[list[Any], bool]:
        """The scenarios of a simulate run (inline, workspace or ``sim``'s library) and whether any is confidential."""
        from critmin.simulate.library import find_scenario

        out: list[Any] = []
        confidential = False
        if p.scenario is not None:
            out.append(self.ws.parse_scenario(p.scenario, "params.scenario"))
        if p.scenario_ids:
            with self.ws.db.session() as s:
                own = {r.key: (r.data, r.confidential) for r in s.scalars(self.ws._visible(actor, "scenario"))}
            lib = None
            for sid in p.scenario_ids:
                if sid in own:
                    out.append(self.ws.parse_scenario(own[sid][0], "params.scenario_ids"))
                    confidential |= own[sid][1]
                    continue
                lib = lib or sim.library()
                try:
                    out.append(find_scenario(lib, sid))
                except Exception as exc:
                    raise WorkspaceError(422, f"unknown scenario '{sid}'", [{"field": "params.scenario_ids", "message": f"unknown scenario '{sid}'"}]) from exc
        if not out:
            raise WorkspaceError(422, "a simulate run needs scenario_ids or a scenario", [{"field": "params", "message": "give scenario_ids or scenario"}])
        return out, confidential

    def _progress(self, rid: int, ev: threading.Event) -> Report:
        last = [0.0]

        def report(fraction: float, message: str = "") -> None:
            if ev.is_set():
                raise Cancelled()
            now = time.monotonic()
            if now - last[0] < PROGRESS_EVERY_S and fraction < 1.0:
                return
            last[0] = now
            values: dict[str, Any] = {"progress": max(0.0, min(1.0, float(fraction)))}
            if message:
                values["message"] = message
            with self.ws.db.session() as s:
                # one statement, so a cancellation written meanwhile (by a server process, this one or
                # another, while the run executes in a worker) is never overwritten by a progress message
                changed = cast(CursorResult[Any], s.execute(update(m.Run).where(m.Run.id == rid, or_(m.Run.message.is_(None), m.Run.message != CANCELLING))
                                    .values(**values))).rowcount
                if not changed and s.scalar(select(m.Run.message).where(m.Run.id == rid)) == CANCELLING:
                    ev.set()
            if ev.is_set():
                raise Cancelled()
        return report

    def execute(self, rid: int, kind: str, p: BaseModel, actor: Actor, inputs: dict[str, Any], ev: threading.Event | None = None,
                rebuild: bool = False) -> None:
        """Execute run ``rid`` here and store its outcome. ``ev``: set to cancel (a worker process has none of
        the server's: it learns of a cancellation from the run's row). ``rebuild``: the inputs came from
        another process (:func:`critmin.web.worker.portable`), so parameter overrides, bloc membership and
        an uploaded study are rebuilt here first."""
        ev = ev or threading.Event()
        with self.ws.db.session() as s:
            r = s.get(m.Run, rid)
            if r is None or r.status != "queued":  # cancelled while queued
                self.cancel_flags.pop(rid, None)
                return
            r.status, r.started_at, r.message = "running", datetime.now(UTC), "started"
        report = self._progress(rid, ev)
        status, result, files, error, message = "failed", None, {}, None, ""
        try:
            if rebuild:
                inputs = self._rebuilt(p, inputs)
            result, files = getattr(self, f"_run_{kind}")(p, inputs, report)
            if isinstance(result.get("metadata"), dict):
                result["metadata"]["blocs"] = self._atlas(inputs).bloc_members()  # the membership the run used
            status, message = "done", "finished"
        except Cancelled:
            status, message = "cancelled", "cancelled while running"
        except WorkspaceError as exc:
            error, message = exc.message + ("; " + "; ".join(f"{q['field']}: {q['message']}" for q in exc.problems) if exc.problems else ""), "failed"
        except Exception as exc:  # a failed run is stored with its error; the server goes on
            error, message = f"{type(exc).__name__}: {exc}", "failed"
            traceback.print_exc()
        finally:
            self.cancel_flags.pop(rid, None)
        with self.ws.db.session() as s:
            r = s.get(m.Run, rid)
            if r is None:
                return
            r.status, r.message, r.error, r.finished_at = status, message, error, datetime.now(UTC)
            if status == "done":
                r.progress, r.result = 1.0, jsonable(result)
                for name, (content, media) in files.items():
                    s.add(m.RunFile(run_id=rid, name=name, media_type=media, content=content))

    def _rebuilt(self, p: BaseModel, inputs: dict[str, Any]) -> dict[str, Any]:
        """A worker's inputs with what :func:`critmin.web.worker.portable` left out made again, by the code
        that checked it at submission: the parameter overrides, the bloc membership, the uploaded study."""
        out = dict(inputs)
        params = self.parameters(p)
        if params is not None:
            out["parameters"] = params
        blocs = dict(getattr(p, "blocs", None) or {})
        if blocs:
            out["atlas"] = self.atlas_for(blocs)
        if "study_zip" in out:
            from critmin.web.study_io import study_from_zip

            body, name = out.pop("study_zip")
            out["study"] = study_from_zip(body, name)[0]
        return out

    def _sim(self, inputs: dict[str, Any]) -> Any:
        """The simulator of a run: built on its parameter overrides and bloc membership when it has any."""
        if "study" in inputs:
            return inputs["study"].simulator
        return self.simulator(inputs.get("parameters"), inputs.get("atlas"))

    def _atlas(self, inputs: dict[str, Any]) -> Any:
        """The atlas of a run (with its bloc membership when it has one), made once when it was submitted."""
        if "study" in inputs:
            return inputs["study"].atlas
        return inputs.get("atlas") or self.ws.atlas

    @staticmethod
    def _chunks(report: Report, lo: float, hi: float, label: str) -> Callable[[int, int], None]:
        def cb(done: int, total: int) -> None:
            report(lo + (hi - lo) * done / max(total, 1), f"{label}: {done}/{total} chunks")
        return cb

    def _study(self, inputs: dict[str, Any], as_of: str | None = None) -> Study:
        """The run's study (critmin.Study): an uploaded study as it is, else one made of the run's simulator and
        atlas and the workspace records the user may read (register, needs, offers as supply). Every job below
        calls its methods: the web is a face on the same core as the CLI and a notebook (issue 13)."""
        if "study" in inputs:
            return cast(Study, inputs["study"])
        fr = inputs.get("frames") or {}
        first = offer_first_months(fr["offers"], as_of) if as_of is not None and "offers" in fr else None
        parts = {k: fr.get(k) for k in ("projects", "support", "buyers", "supply")}
        return Study.from_parts(self._atlas(inputs), self._sim(inputs), first_month=first, as_of=as_of, **parts)

    def _run_simulate(self, p: SimulateParams, inputs: dict[str, Any], report: Report) -> Outcome:
        scen = inputs["scenarios"]
        res = self._study(inputs).simulate(scen, draws=p.draws, seed=p.seed, paths=True, progress=self._chunks(report, 0.0, 0.95, "simulating"))
        return {"scenarios": res.results.to_dict("records"), "paths": res.paths.to_dict("records") if res.paths is not None else [],
                "definitions": [s.model_dump() for s in scen], "metadata": res.metadata}, {}

    def _run_risk(self, p: RiskParams, inputs: dict[str, Any], report: Report) -> Outcome:
        res = self._study(inputs).risk(p.perspective, draws=p.draws, seed=p.seed, progress=self._chunks(report, 0.0, 0.95, "risk sweep"))
        return dict(res.record), {}

    def _run_portfolio(self, p: PortfolioParams, inputs: dict[str, Any], report: Report) -> Outcome:
        fr = inputs["frames"]
        report(0.05, "simulating the risk library, then solving the portfolio (HiGHS)")
        res = self._study(inputs, str(p.as_of)).portfolio(p.options(), progress=self._chunks(report, 0.05, 0.6, "risk library"))
        rec = dict(res.record)
        rec["metadata"]["workspace_records"] = fr["counts"]
        return rec, {}

    def _run_stockpile(self, p: StockpileParams, inputs: dict[str, Any], report: Report) -> Outcome:
        res = self._study(inputs).stockpile(perspective=p.perspective, budget_usd=p.budget_usd, pooled=p.pooled, max_days=p.max_days,
                                            draws=p.draws, seed=p.seed, progress=self._chunks(report, 0.0, 0.8, "risk library"))
        return dict(res.record), {}

    def _run_deliver(self, p: DeliverParams, inputs: dict[str, Any], report: Report) -> Outcome:
        report(0.3, "solving the transportation LP")
        return dict(self._study(inputs, str(p.as_of)).deliver(months=p.months).record), {}

    def _run_match(self, p: DeliverParams, inputs: dict[str, Any], report: Report) -> Outcome:
        report(0.3, "solving the assignment")
        return dict(self._study(inputs, str(p.as_of)).match().record), {}

    def _run_respond(self, p: RespondParams, inputs: dict[str, Any], report: Report) -> Outcome:
        from critmin.output import to_json
        from critmin.report.respond import brief_html, brief_pdf

        fr = inputs["frames"]
        report(0.1, "simulating the event")
        rec = dict(self._study(inputs, str(p.as_of)).respond(inputs["scenarios"], draws=p.draws, seed=p.seed).record)
        rec["metadata"]["workspace_records"] = fr["counts"]
        report(0.8, "writing the brief")
        files = {"brief.json": ((to_json(rec) + "\n").encode("utf-8"), "application/json"),
                 "brief.pdf": (brief_pdf(rec), "application/pdf"),
                 "brief.html": (brief_html(rec).encode("utf-8"), "text/html; charset=utf-8")}
        return rec, files

    def _run_plan(self, p: PlanParams, inputs: dict[str, Any], report: Report) -> Outcome:
        from critmin.output import to_json
        from critmin.report.cycle import CYCLE_STEPS
        from critmin.report.writers import html_plan, pdf_plan, xlsx_plan

        fr = inputs["frames"]
        n = len(CYCLE_STEPS) + 1  # the cycle's steps, then writing the reports

        def step(msg: str) -> None:
            report(CYCLE_STEPS.index(msg) / n, msg)

        # an uploaded study plans on its own register, buyers, budgets, lists and stock policy and its own draws
        study = self._study(inputs, str(p.as_of))
        own = "study" in inputs
        plan = dict(study.plan(step=step, top=p.top, draws=None if own else p.draws, seed=None if own else p.seed).record)
        plan["metadata"]["workspace_records"] = fr["counts"]
        report((n - 1) / n, "writing reports")
        files = {"plan.json": ((to_json(plan) + "\n").encode("utf-8"), "application/json"),
                 "plan.pdf": (pdf_plan(plan), "application/pdf"),
                 "plan.xlsx": (xlsx_plan(plan), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
                 "plan.html": (html_plan(plan, study.atlas).encode("utf-8"), "text/html; charset=utf-8")}
        return plan, files


# ---------------------------------------------------------------------------------------------- in a worker
#: The job runner of this worker, per setup (a worker serves one server, so one entry in practice).
_RUNNERS: dict[WorkerSetup, JobRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def runner_for(setup: WorkerSetup) -> JobRunner:
    """This process's job runner for ``setup``: its own database engine and a simulator built once (a few
    seconds, when the worker starts or at its first run on a Dask worker)."""
    from critmin.web.db import Database

    with _RUNNERS_LOCK:
        r = _RUNNERS.get(setup)
        if r is None:
            ws = Workspace(Database(setup.database_url, upgrade=False), sim_factory=setup.simulator)
            _ = ws.sim  # built now, not inside the first run's clock
            r = _RUNNERS[setup] = JobRunner(ws, workers=1)
        return r


def worker_start(setup: WorkerSetup, server_pid: int) -> None:
    """Initialiser of a worker process: exit when the server (``server_pid``) dies; build the definitions."""
    watch_parent(server_pid)
    runner_for(setup)


def worker_warm(setup: WorkerSetup) -> int:
    """A no-op job that makes a worker start (and build its definitions) before the first real run."""
    runner_for(setup)
    return os.getpid()


def worker_execute(setup: WorkerSetup, rid: int, kind: str, p: BaseModel, actor: Actor, inputs: dict[str, Any]) -> None:
    """Execute run ``rid`` in this worker, as the server's own thread would (status, progress, result and
    files written to the run's row), its inputs rebuilt first (:func:`critmin.web.worker.portable`)."""
    runner_for(setup).execute(rid, kind, p, actor, inputs, rebuild=True)
