"""The summary table of the estimator study: one row per estimator, the guide's bias relative to the
reference beside its variance ratio."""

from pyro_vae.experiments.variance_report import summary_table


def _row(estimator: str, params: str, rel_bias: float, lo: float, hi: float) -> dict:
    return {
        "experiment": "training",
        "epoch": 3,
        "estimator": estimator,
        "params": params,
        "options": {"temperature": 0.5} if estimator == "gumbel" else {},
        "reference": "disarm",
        "num_particles": 1,
        "total_variance": 2.0,
        "ratio": 0.5,
        "ratio_lo": 0.4,
        "ratio_hi": 0.6,
        "snr": 0.1,
        "rel_bias": rel_bias,
        "rel_bias_lo": lo,
        "rel_bias_hi": hi,
        "evaluations_per_datum": 1,
        "ms_per_estimate": 3.0,
        "variance_x_seconds": 0.006,
    }


def test_the_summary_shows_the_guide_bias_with_its_interval():
    rows = [
        _row("disarm", "guide", 0.0, 0.0, 0.0),
        _row("disarm", "model", 0.0, 0.0, 0.0),
        _row("gumbel", "guide", 0.62, 0.55, 0.7),
        _row("gumbel", "model", 0.2, 0.1, 0.3),  # the model's bias is in variance.csv, not this table
        {**_row("gumbel", "guide", 9.0, 9.0, 9.0), "epoch": 1},  # another epoch: left out
    ]
    header, rule, *lines = summary_table(rows, 3).splitlines()
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns.index("guide rel. bias to disarm [95% CI]") == columns.index("guide SNR") + 1
    assert rule.count("---") == len(columns)
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in lines}
    assert set(cells) == {"disarm", "gumbel (temperature=0.5)"}
    bias = columns.index("guide rel. bias to disarm [95% CI]")
    assert cells["gumbel (temperature=0.5)"][bias] == "0.62 [0.55, 0.7]"
    assert cells["disarm"][bias] == "0 [0, 0]"
    assert all(len(c) == len(columns) for c in cells.values())
