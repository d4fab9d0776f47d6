"""The options of a portfolio run, as one pydantic model (issue 13): the CLI flags, the study file, the web
API and :meth:`critmin.Study.portfolio` all build a :class:`PortfolioOptions`, so an option has one set of bounds
and one error wording, and a bad option fails before the scenario sample is drawn.

    opts = PortfolioOptions(budgets={"US_DOE_LPO:loan": 2e9}, cvar_weight=0.2, min_participant_share={"JPN": 0.3})
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from critmin._dates import Month
from critmin.inputs import MAX_DRAWS, SEED_LIMIT

Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class PortfolioOptions(BaseModel):
    """What to optimise and under which limits (docs/portfolio.md). Amounts in USD, times in months."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    budgets: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = Field(
        None, description="AGENCY_ID:instrument (or AGENCY_ID:any) -> budget (USD); adds to or replaces the bundled budgets")
    deadline_months: float | None = Field(None, ge=0, le=600, allow_inf_nan=False,
                                          description="Only options with first output within this many months")
    draws: int = Field(500, ge=1, le=MAX_DRAWS, description="Simulated draws in the scenario sample")
    seed: int = Field(0, ge=0, le=SEED_LIMIT)
    as_of: Month | None = Field(None, description="Reference month YYYY-MM for lead times (default: this month)")
    gap: float = Field(0.01, ge=0, lt=1, description="Relative MIP gap")
    time_limit: float = Field(60.0, gt=0, le=86_400, allow_inf_nan=False, description="Seconds per MIP solve")
    frontier_points: int = Field(0, ge=0, le=40, description="Points of the efficient frontier (0: none; otherwise at least 2)")
    cvar_weight: float = Field(0.0, ge=0, le=10, allow_inf_nan=False,
                               description="Weight of the CVaR of the residual loss in the objective (0: expected value only)")
    cvar_alpha: float = Field(0.95, gt=0, lt=1, description="CVaR level")
    concern_weight: float = Field(0.0, ge=0, le=10, allow_inf_nan=False,
                                  description="Weight of the secondary goal: capacity outside the countries of concern")
    max_country_share: float = Field(1.0, gt=0, le=1, description="Largest share of the money in one country")
    max_commodity_share: float = Field(1.0, gt=0, le=1, description="Largest share of the money on one commodity")
    min_participant_share: dict[Annotated[str, Field(pattern="^[A-Z]{3}$")], Share] = Field(
        default_factory=dict, description="Co-financing: a participant's minimum share of the money (ISO3 -> share)")
    must_include: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=500, description="Project ids that must be funded")
    stocks_t: dict[Annotated[str, Field(pattern=r"^[a-z0-9_]+/[a-z0-9_]+$")],
                   dict[Annotated[str, Field(pattern="^[A-Z]{3}$")], Annotated[float, Field(ge=0, allow_inf_nan=False)]]] = Field(
        default_factory=dict, description="Stocks in place (node commodity/stage -> participant -> t): projects relieve only "
        "the shortfall they leave (the plan passes its recommended stocks)")
    supply_received_t: dict[Annotated[str, Field(pattern=r"^[a-z0-9_]+/[a-z0-9_]+$")],
                            dict[Annotated[str, Field(pattern="^[A-Z]{3}$")], Annotated[float, Field(ge=0, allow_inf_nan=False)]]] = Field(
        default_factory=dict, description="Supply in place in the year ahead that each participant receives (node -> participant -> "
        "t/yr; the plan passes its pipeline's, as the stocks are sized on): projects relieve only the shortfall it leaves")
    agencies_file: str | None = Field(None, description="CSV replacing the bundled agencies.csv (same columns)")
    parameters_file: str | None = Field(None, description="CSV replacing the bundled instrument_parameters.csv")

    @field_validator("frontier_points")
    @classmethod
    def _frontier(cls, v: int) -> int:
        if v == 1:
            raise ValueError("a frontier needs at least 2 points (0 for none)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> PortfolioOptions:
        total = sum(self.min_participant_share.values())
        if total > 1.0 + 1e-12:
            raise ValueError(f"min_participant_share: the co-financing minimum shares add up to {total:.2f} > 1; no portfolio can meet them")
        if self.budgets:
            from critmin.portfolio.model import budget_key_problems, read_agencies

            bad = budget_key_problems(self.budgets, read_agencies(self.agencies_file))
            if bad:
                raise ValueError("budgets: " + "; ".join(bad))
        return self
