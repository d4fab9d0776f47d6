"""Stocks as policy: the options of the stock plan that a study decides (one pydantic model, checked once)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class StockpilePolicy(BaseModel):
    """Stocks as policy: what may be stocked, the purchase budget and a cap in days of consumption."""

    model_config = ConfigDict(extra="forbid")

    budget_usd: Annotated[float | None, Field(ge=0, description="Purchase budget per participant (USD); none: unconstrained")] = None
    max_days: Annotated[float | None, Field(gt=0, le=3650, description="Cap on every stock, days of the participant's consumption")] = 180.0
    stages: list[str] = Field(default_factory=lambda: ["mine", "refine", "metal", "magnet"],
                              description="Stockable stages (cathode, anode and cells age and are chemistry-specific)")
    pooled: bool = True
