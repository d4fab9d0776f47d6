"""Stocks as policy: the options of the stock plan that a study decides (one pydantic model, checked once)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from critmin.atlas.schema import STAGES
from critmin.inputs import MAX_DRAWS, SEED_LIMIT

#: Stages whose material a strategic stock holds by default: raw, refined and metal forms, and magnets (the
#: U.S. National Defense Stockpile buys NdFeB and SmCo magnet block). Cathode, anode and cells are excluded:
#: they are made to one chemistry and cell format and age in storage (a study may change this list).
STOCKABLE_STAGES = ("mine", "refine", "metal", "magnet")


class StockpilePolicy(BaseModel):
    """Stocks as policy: what may be stocked, the purchase budget and a cap in days of consumption."""

    model_config = ConfigDict(extra="forbid")

    budget_usd: Annotated[float | None, Field(ge=0, description="Purchase budget per participant (USD); none: unconstrained")] = None
    max_days: Annotated[float | None, Field(gt=0, le=3650, description="Cap on every stock, days of the participant's net imports (NIR x consumption)")] = 180.0
    stages: list[str] = Field(default_factory=lambda: list(STOCKABLE_STAGES),
                              description="Stockable stages (cathode, anode and cells age and are chemistry-specific)")
    pooled: bool = True

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in STAGES]
        if bad:  # an unknown stage would silently stock nothing
            raise ValueError(f"unknown stage(s) {', '.join(map(repr, bad))}; the stages are {', '.join(STAGES)}")
        return v
    sourced_demand_only: bool = Field(default=True, description=(
        "Stock only where the participant's consumption at the node is sourced, not a proxy scaled from the other "
        "participant (such nodes are listed in the stockpile metadata)"))


class StockpileOptions(StockpilePolicy):
    """A stockpile run: the policy, whose perspective, and the scenario sample (draws, seed). The CLI, the web API
    and :meth:`critmin.Study.stockpile` build one, so every face has the same bounds and defaults."""

    perspective: Literal["USA", "JPN", "BLOC"] = Field("BLOC", description="USA, JPN or BLOC (both participants)")
    draws: int = Field(500, ge=1, le=MAX_DRAWS, description="Simulated draws in the disruption sample")
    seed: int = Field(0, ge=0, le=SEED_LIMIT)
    after_projects: dict[Annotated[str, Field(pattern=r"^[a-z0-9_]+/[a-z0-9_]+$")], Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=dict, description="Expected supply the recommended projects add (node commodity/stage -> t/yr): each stock "
        "at such a node also states what it falls to once they produce")
    after_projects_contracted: dict[Annotated[str, Field(pattern=r"^[a-z0-9_]+/[a-z0-9_]+$")],
                                    dict[Annotated[str, Field(pattern=r"^[A-Z]{3}$")], Annotated[float, Field(ge=0, allow_inf_nan=False)]]] = Field(
        default_factory=dict, description="Of that supply, the tonnes contracted to buyers of a country (node -> ISO3 -> t/yr): they go "
        "to that country, and only the rest is shared by demand")

    supply_year_ahead: dict[Annotated[str, Field(pattern=r"^[a-z0-9_]+/[a-z0-9_]+$")], Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=dict, description="Output expected over the twelve months ahead from plants producing since the node's base "
        "year or being commissioned or built (node commodity/stage -> t/yr): each stock is sized on the shortfall it leaves")
    supply_year_ahead_contracted: dict[Annotated[str, Field(pattern=r"^[a-z0-9_]+/[a-z0-9_]+$")],
                                       dict[Annotated[str, Field(pattern=r"^[A-Z]{3}$")], Annotated[float, Field(ge=0, allow_inf_nan=False)]]] = Field(
        default_factory=dict, description="Of that output, the tonnes contracted to buyers of a country (node -> ISO3 -> t/yr)")

    @field_validator("perspective", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v
