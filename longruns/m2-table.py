"""The M2 series' table (``longruns/m2-series.sh``): test error of q(y|x) on all 10,000 test
images at epochs 10, 30, 50 and 100, per label count, mean +- standard deviation over the
finished seeds, and the minutes of training per run. From the repository root::

    uv run python longruns/m2-table.py

A run not yet at an epoch leaves that cell out of the mean; the table says how many seeds each
cell holds.
"""

import csv
import statistics
from pathlib import Path

EPOCHS = (10, 30, 50, 100)
PAPER = {100: "11.97 (+-1.71)", 600: "4.94 (+-0.13)", 1000: "3.60 (+-0.56)", 3000: "3.92 (+-0.63)"}
GOAL = {100: 15, 600: 7, 1000: 6, 3000: 5}


def cell(values: list[float]) -> str:
    if not values:
        return ""
    mean = statistics.fmean(values)
    spread = f" +- {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{mean:.2f}{spread} ({len(values)})"


def main() -> None:
    root = Path(__file__).parent
    print("| labels | " + " | ".join(f"epoch {e}: error % (seeds)" for e in EPOCHS)
          + " | minutes of training per 100-epoch run | goal (#23) | paper (M2) |")
    print("| --- |" + " --- |" * (len(EPOCHS) + 3))
    for labels in PAPER:
        runs = []
        for path in sorted(root.glob(f"m2-{labels}-s*/metrics.csv")):
            with open(path) as f:
                runs.append({int(r["epoch"]): r for r in csv.DictReader(f)})
        errors = [cell([100 * float(r[e]["test_error"]) for r in runs if e in r]) for e in EPOCHS]
        minutes = [sum(float(row["train_seconds"]) for row in r.values()) / 60 for r in runs if 100 in r]
        print(f"| {labels} | " + " | ".join(errors) + f" | {cell(minutes)} | <= {GOAL[labels]} | {PAPER[labels]} |")


if __name__ == "__main__":
    main()
