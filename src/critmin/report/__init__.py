"""The coordinated plan: the whole cycle and its reports (docs/plan.md)."""
