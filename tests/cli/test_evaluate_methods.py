"""``pyro-vae evaluate --method``: each method writes its report beside the IS one and prints it."""

import json
import math

import pytest

from pyro_vae.cli import main
from pyro_vae.training import TrainConfig, train
from pyro_vae.training.evaluation_methods import EVALUATION_METHODS


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    train(TrainConfig(dataset="synthetic", z_dim=2, hidden=(8,), epochs=1), run, progress=False)
    return run


TINY = ["--num-test", "6", "--chains", "3", "--ais-steps", "4", "--leapfrog-steps", "2", "-k", "20"]
# method: (the report's file name, entries that must be finite, a piece of the printed line)
CASES = {
    "ais": ("eval-epoch0001-ais-t4-l2-c3-prior-n6.json", ["test_log_px", "accept_rate"], "(AIS, 3 chains x 4 steps"),
    "bdmc": ("eval-epoch0001-bdmc-t4-l2-c3-prior-n6.json", ["lower", "upper", "gap"], "data simulated from the model"),
    "amortization": (
        "eval-epoch0001-amortization-s3-k20-n6.json",
        ["test_elbo", "optimized_elbo", "amortization_gap"],
        "amortization gap",
    ),
}


def test_every_method_has_a_case():
    assert sorted(EVALUATION_METHODS.names()) == sorted([*CASES, "is"])


@pytest.mark.parametrize("method", sorted(CASES))
def test_a_method_writes_its_report_beside_the_is_one(run_dir, method, capsys):
    name, finite, printed = CASES[method]
    assert main(["evaluate", str(run_dir), "--method", method, *TINY, "--local-steps", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert printed in out and f"-> {run_dir / name}" in out
    report = json.loads((run_dir / name).read_text())
    assert report["method"] == method and report["epoch"] == 1 and "machine" in report
    assert all(math.isfinite(report[key]) for key in finite)


def test_the_guide_can_start_the_chains(run_dir):
    assert main(["evaluate", str(run_dir), "--method", "ais", "--ais-start", "guide", *TINY, "--no-progress"]) == 0
    assert (run_dir / "eval-epoch0001-ais-t4-l2-c3-guide-n6.json").is_file()
