"""Parallel training runs: results in order, errors surface, bad job counts refused."""

import math

import pytest

from pyro_vae.experiments.jobs import run_jobs


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_results_come_back_in_the_order_of_the_items(jobs):
    assert run_jobs(math.sqrt, [16.0, 1.0, 9.0], jobs) == [4.0, 1.0, 3.0]


@pytest.mark.slow
def test_an_error_in_a_worker_is_raised_here():
    with pytest.raises(ValueError, match="math domain error"):
        run_jobs(math.sqrt, [4.0, -1.0, 9.0], jobs=2)


def test_bad_job_count_is_refused():
    with pytest.raises(ValueError, match="jobs must be at least 1, got 0"):
        run_jobs(math.sqrt, [4.0], jobs=0)
