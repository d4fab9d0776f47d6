"""Projects of interest, support instruments and the portfolio optimiser (issue 4)."""
