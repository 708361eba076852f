"""The table of ``longruns/burda-recipe.sh``: for each recipe, the single-sample test ELBO (all
10,000 test images) and the training ELBO at the end of each stage of Burda et al.'s schedule,
the seconds of training per epoch, and the importance-sampled log p(x) (K = 100, first 1,000
test images) of ``train``'s closing report at epoch 121 (its ``eval-*.json``, written by the
script's run; not tracked). From the repository root::

    uv run python longruns/burda-recipe-table.py

A run that has not reached a stage leaves its cell empty.
"""

import csv
import json
import statistics
from pathlib import Path

STAGE_ENDS = (1, 4, 13, 40, 121)  # epochs at which stages 0-4 of the schedule end
RECIPES = {
    "b100": "ours: batch 100, eps 1e-8, PyTorch init",
    "b20": "batch 20",
    "eps": "Adam eps 1e-4 on their loss scale (6 on ours)",
    "glorot": "Glorot init",
    "burda": "batch 20 + their eps + Glorot",
}


def main() -> None:
    root = Path(__file__).parent
    print("| recipe | " + " | ".join(f"epoch {e}: test / train ELBO" for e in STAGE_ENDS)
          + " | s / epoch | epoch 121: log p(x), K = 100 |")
    print("| --- |" + " --- |" * (len(STAGE_ENDS) + 2))
    for name, what in RECIPES.items():
        path = root / f"burda-{name}" / "metrics.csv"
        if not path.is_file():
            continue
        with open(path) as f:
            rows = {int(r["epoch"]): r for r in csv.DictReader(f)}
        cells = [f"{float(rows[e]['test_elbo']):.2f} / {float(rows[e]['train_elbo']):.2f}" if e in rows else ""
                 for e in STAGE_ENDS]
        speed = statistics.median(float(r["train_seconds"]) for r in rows.values())
        report = path.parent / "eval-epoch0121-k100-n1000.json"
        log_px = f"{json.loads(report.read_text())['test_log_px']:.2f}" if report.is_file() else ""
        print(f"| `{name}` ({what}) | " + " | ".join(cells) + f" | {speed:.1f} | {log_px} |")


if __name__ == "__main__":
    main()
