"""Fit the years to design capacity Y of a linear ramp-up r(m) = min(1, m / (12 Y)) (m = 1 is the first month of
output) to the sourced points of ``rampup_points.csv`` by least squares on the window means; prints the fits
behind ``ramp_up_years_to_design:*`` in critmin's instrument_parameters.csv. Run: python fit_ramp.py"""
import csv
from pathlib import Path

import numpy as np

ROWS = list(csv.DictReader(open(Path(__file__).with_name("rampup_points.csv"))))
MINES = ("Balama", "Pilgangoora")


def fit(keep):
    pts = [(int(r["month_start"]), int(r["month_end"]), float(r["fraction_of_nameplate"])) for r in ROWS if keep(r["plant_basis"])]
    best = None
    for y in np.arange(0.5, 20.001, 0.05):
        err = [np.mean([min(1.0, m / (12 * y)) for m in range(a, b + 1)]) - f for a, b, f in pts]
        sse = float(np.sum(np.square(err)))
        if best is None or sse < best[1]:
            best = (round(float(y), 2), sse, float(np.median(np.abs(err))), len(pts))
    return best


CASES = {
    "mine/concentrator (Balama, Pilgangoora)": lambda b: any(k in b for k in MINES),
    "processing, plants that reached design (Lynas NdPr and Phase 1 REO, MP Stage II)":
        lambda b: ("Lynas" in b and "22,000" not in b) or b.startswith("MP "),
    "processing, plants that stalled (Molycorp Phoenix, Kwinana)": lambda b: "Molycorp" in b or "Kwinana" in b,
    "processing, all": lambda b: not any(k in b for k in MINES) and "22,000" not in b,
}
if __name__ == "__main__":
    for name, keep in CASES.items():
        y, sse, med, n = fit(keep)
        print(f"{name}: Y = {y:g} years ({n} points, SSE {sse:.3f}, median abs error {med:.3f})")
