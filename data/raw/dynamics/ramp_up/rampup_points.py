"""Compute output/nameplate for each sourced data point in findings.md.
Month 1 = calendar month of first output (definition per plant noted in findings.md).
Each row: plant, period label, first month index, last month index, output t, nameplate t/yr, basis."""
import csv

rows = [
 # plant, period, m_start, m_end, output_t, nameplate_tpa, note
 ("Lynas LAMP (REO vs Phase 1 11,000 tpa)", "Q3 2013", 6, 8, 253, 11000, "reported"),
 ("Lynas LAMP (REO vs Phase 1 11,000 tpa)", "Q4 2013", 9, 11, 741, 11000, "reported"),
 ("Lynas LAMP (REO vs Phase 1 11,000 tpa)", "Q1 2014", 12, 14, 1089, 11000, "reported"),
 ("Lynas LAMP (REO vs Phase 1 11,000 tpa)", "Q2 2014", 15, 17, 3965-253-741-1089, 11000, "derived: FY14 3,965 - 253 - 741 - 1,089"),
 ("Lynas LAMP (REO vs Phase 1 11,000 tpa)", "FY2015", 18, 29, 8799, 11000, "reported"),
 ("Lynas LAMP (REO vs Phase1+2 22,000 tpa)", "FY2015", 18, 29, 8799, 22000, "reported"),
 ("Lynas LAMP (REO vs Phase1+2 22,000 tpa)", "FY2016", 30, 41, 12630, 22000, "reported"),
 ("Lynas LAMP (NdPr vs ~5,455 tpa implied)", "FY2015", 18, 29, 2258, 5455, "nameplate implied: 500 t/mo = 110% -> 454.5 t/mo"),
 ("Lynas LAMP (NdPr vs ~5,455 tpa implied)", "FY2016", 30, 41, 3897, 5455, "as above"),
 ("Lynas LAMP (NdPr vs ~5,455 tpa implied)", "Q2 2016", 39, 41, 1150, 5455, "as above"),
 ("MP Materials Stage II (NdPr vs ~6,000 tpa)", "Q3 2023", 1, 2, 50, 6000, "reported; partial quarter"),
 ("MP Materials Stage II (NdPr vs ~6,000 tpa)", "Q4 2023", 3, 5, 150, 6000, "reported"),
 ("MP Materials Stage II (NdPr vs ~6,000 tpa)", "Q1 2024", 6, 8, 131, 6000, "reported"),
 ("MP Materials Stage II (NdPr vs ~6,000 tpa)", "Q2 2024", 9, 11, 272, 6000, "reported"),
 ("MP Materials Stage II (NdPr vs ~6,000 tpa)", "Q3 2024", 12, 14, 478, 6000, "reported"),
 ("MP Materials Stage II (NdPr vs ~6,000 tpa)", "Q4 2024", 15, 17, 1294-131-272-478, 6000, "derived: FY24 1,294 - 131 - 272 - 478"),
 ("MP Materials Stage II (NdPr vs ~6,000 tpa)", "Q1 2025", 18, 20, 563, 6000, "reported"),
 ("MP Materials Stage II (NdPr vs ~6,000 tpa)", "Q2 2025", 21, 23, 597, 6000, "reported"),
 ("MP Materials Stage II (NdPr vs ~6,000 tpa)", "Q3 2025", 24, 26, 721, 6000, "reported"),
 ("Molycorp Mountain Pass Phoenix (REO vs 19,050 tpa)", "CY2013", 12, 23, 3473, 19050, "reported"),
 ("Molycorp Mountain Pass Phoenix (REO vs 19,050 tpa)", "Q4 2013", 21, 23, 1034, 19050, "reported"),
 ("Molycorp Mountain Pass Phoenix (REO vs 19,050 tpa)", "Q3 2014", 30, 32, 691, 19050, "reported"),
 ("Molycorp Mountain Pass Phoenix (REO vs 19,050 tpa)", "CY2014", 24, 35, 4785, 19050, "reported"),
 ("Molycorp Mountain Pass Phoenix (REO vs 19,050 tpa)", "Q4 2014", 33, 35, 1328, 19050, "reported"),
 ("Molycorp Mountain Pass Phoenix (REO vs 19,050 tpa)", "Q1 2015", 36, 38, 1479, 19050, "reported"),
 ("Tianqi/IGO Kwinana Train 1 (LiOH vs 24,000 tpa)", "Q1 2023", 18, 20, round(142/(1-0.85)), 24000, "derived: 142 t was 'down 85%' -> 142/0.15"),
 ("Tianqi/IGO Kwinana Train 1 (LiOH vs 24,000 tpa)", "Q2 2023", 21, 23, 142, 24000, "reported"),
 ("Tianqi/IGO Kwinana Train 1 (LiOH vs 24,000 tpa)", "FY2024", 24, 35, 3508, 24000, "reported"),
 ("Tianqi/IGO Kwinana Train 1 (LiOH vs 24,000 tpa)", "Q2 2024", 33, 35, 1331, 24000, "reported"),
 ("Tianqi/IGO Kwinana Train 1 (LiOH vs 24,000 tpa)", "FY2025", 36, 47, 6782, 24000, "reported"),
 ("Tianqi/IGO Kwinana Train 1 (LiOH vs 24,000 tpa)", "Q2 2025", 45, 47, 2126, 24000, "reported (IGO: 35% of nameplate)"),
 ("Syrah Balama (graphite conc. vs 350,000 tpa)", "Q1 2018", 3, 5, 11200, 350000, "reported"),
 ("Syrah Balama (graphite conc. vs 350,000 tpa)", "Q3 2018", 9, 11, 38700, 350000, "reported"),
 ("Syrah Balama (graphite conc. vs 350,000 tpa)", "Q4 2018", 12, 14, 33200, 350000, "reported (fire outage)"),
 ("Syrah Balama (graphite conc. vs 350,000 tpa)", "CY2018", 3, 14, 104000, 350000, "reported (Jan-Dec 2018)"),
 ("Syrah Balama (graphite conc. vs 350,000 tpa)", "Q1 2019", 15, 17, 49000, 350000, "reported"),
 ("Pilbara Pilgangoora St.1 (spod. conc. vs 330,000 tpa)", "Q3 2018", 2, 4, 11015, 330000, "reported"),
 ("Pilbara Pilgangoora St.1 (spod. conc. vs 330,000 tpa)", "Q4 2018", 5, 7, 47859, 330000, "reported"),
 ("Pilbara Pilgangoora St.1 (spod. conc. vs 330,000 tpa)", "Q1 2019", 8, 10, 52196, 330000, "reported"),
 ("Pilbara Pilgangoora St.1 (spod. conc. vs 330,000 tpa)", "Q2 2019", 11, 13, 43214, 330000, "reported"),
]

out = []
for plant, per, a, b, t, cap, note in rows:
    months = b - a + 1
    frac = t / (cap * months / 12)
    out.append((plant, per, a, b, t, cap, months, round(frac, 3), note))

from pathlib import Path

with open(Path(__file__).with_name("rampup_points.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["plant_basis", "period", "month_start", "month_end", "output_t", "nameplate_tpa", "months", "fraction_of_nameplate", "note"])
    w.writerows(out)

for r in out:
    print(f"{r[0][:45]:45s} {r[1]:8s} m{r[2]:>2}-{r[3]:<2} {r[4]:>7} / ({r[5]}*{r[6]}/12) = {r[7]:.3f}  {r[8]}")

def bucket(lo, hi, names):
    vals = [r[7] for r in out if any(n in r[0] for n in names) and lo <= (r[2]+r[3])/2 <= hi and r[6] <= 3]
    return vals
print()
for label, names in [("novel/chemical (Lynas Ph1 REO, MP, Molycorp, Kwinana)", ["Phase 1 11,000", "MP Materials", "Molycorp", "Kwinana"]),
                     ("conventional concentrators (Balama, Pilgangoora)", ["Balama", "Pilgangoora"])]:
    for lo, hi in [(1, 6), (7, 12), (13, 24), (25, 36)]:
        v = bucket(lo, hi, names)
        if v:
            print(label, f"months {lo}-{hi}: n={len(v)} min={min(v):.2f} mean={sum(v)/len(v):.2f} max={max(v):.2f}")
