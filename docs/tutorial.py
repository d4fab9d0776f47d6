"""critmin in a notebook: the whole cycle through ``critmin.Study`` (run it as a script, or paste the cells).

    python docs/tutorial.py            # about 15 s on two cores; CI runs it (tests/test_study_api.py)

Every step returns a typed result: DataFrames with labelled columns (``.units()`` gives each column's unit),
``.metadata`` (data version, parameters, seed) and ``.to_dict()`` / ``.to_excel()``. See docs/index.md.
"""

# %% The study: the bundled data, or critmin.Study.from_file("mystudy/study.yaml") (critmin study init mystudy)
import pandas as pd

import critmin

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 12)
study = critmin.Study(draws=100, seed=0, as_of="2026-12")  # 1,000 draws or more for decisions; 100 keeps the tour short

# %% 1. Priority minerals and where each chain is choked
ranking = study.assess("BLOC").ranking
print(ranking.head(10)[["rank", "commodity", "chokepoint_stage", "top_country", "top_share"]])
print(study.chain("gallium").stages[["stage", "node", "stage_risk"]])

# %% 2. A disruption, then the risk of every commodity over the scenario library (one run, shared below)
event = study.simulate("gen.CHN.gallium.refine.JPN.6m", draws=200).results
print(event[["perspective", "expected_loss_usd", "peak_price_ratio_p50", "shortfall_t"]])
risk = study.risk("JPN")
print(risk.ranking.head(10)[["rank", "commodity", "expected_loss_usd", "net_loss_usd", "cvar95_usd"]])

# %% 3. What to finance (options are checked before any work: PortfolioOptions)
portfolio = study.portfolio(cvar_weight=0.1, min_participant_share={"JPN": 0.2})
print(portfolio.selected[["project_id", "instrument", "agency", "node", "cost_usd", "expected_avoided_usd"]])
print(portfolio.budgets[["budget", "budget_usd", "spent_usd", "basis"]])

# %% 4. Stocks, alone and pooled, under a budget (StockpileOptions)
stocks = study.stockpile(budget_usd=5e8).stocks
print(stocks.head(10)[["node", "participant", "optimal_stock_t", "optimal_stock_usd", "days_of_consumption"]])

# %% 5. Deliveries over six months and supplier-buyer matches
print(study.deliver(months=6).buyers[["buyer_id", "node", "demand_t", "delivered_t", "shortfall_t"]])
print(study.match().matches.head(10))

# %% 6. The coordinated plan: the executive answer, and every table in one workbook
plan = study.plan()
for part, sentence in plan.summary["sentences"].items():
    print(f"- {part}: {sentence}")
plan.to_excel("tutorial_plan.xlsx")  # the plan's own workbook; every result has to_excel and to_dict
