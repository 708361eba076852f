"""The bias of an estimator against the reference of :func:`~pyro_vae.inference.variance.compare_estimators`
(``sq_bias``, ``rel_bias`` and its bootstrap interval), on the small sigmoid belief network of
``support``: about 0 for unbiased estimators, clearly not for the Gumbel relaxation, less so as its
temperature falls."""

import math

import pytest
import torch
from support import SBN_DATA, small_sbn

from pyro_vae.inference import make_estimator
from pyro_vae.inference.bias import relative_bias
from pyro_vae.inference.variance import GradientDraws, compare_estimators, draw_gradients, parameter_groups


def _rows(names, num_draws, num_particles=1, seed=0, x=SBN_DATA, options=None) -> dict[tuple[str, str], dict]:
    sbn = small_sbn()  # which seeds torch's RNG itself
    torch.manual_seed(seed)
    rows = compare_estimators(
        sbn,
        x,
        names,
        num_draws,
        num_particles,
        reference="disarm",
        generator=torch.Generator().manual_seed(seed),
        options=options,
    )
    return {(r["estimator"], r["params"]): r for r in rows}


@pytest.mark.slow
def test_unbiased_estimators_have_a_squared_bias_consistent_with_zero():
    comparisons, num_draws, x = 40, 5, SBN_DATA.repeat(10, 1)
    runs = [_rows(["disarm", "score-loo"], num_draws, num_particles=2, seed=s, x=x) for s in range(comparisons)]
    for group in ("guide", "model"):
        sq = torch.tensor([run["score-loo", group]["sq_bias"] for run in runs])
        # the plain ||mean - mean_ref||^2, inflated by the draws' noise: what the correction removes
        plain = sq + torch.tensor(
            [
                (run["score-loo", group]["total_variance"] + run["disarm", group]["total_variance"]) / num_draws
                for run in runs
            ]
        )
        se, plain_se = sq.std() / math.sqrt(comparisons), plain.std() / math.sqrt(comparisons)
        assert abs(sq.mean()) < 3 * se, (group, sq.mean(), se)
        assert plain.mean() > 4 * plain_se, (group, plain.mean(), plain_se)  # the check has power


def test_the_interval_of_an_unbiased_estimator_reaches_zero_and_stays_small():
    rows = _rows(["disarm", "score-loo"], 200, num_particles=2, x=SBN_DATA.repeat(10, 1))
    for group in ("guide", "model"):
        row = rows["score-loo", group]
        assert row["rel_bias_lo"] == 0.0 <= row["rel_bias"] <= row["rel_bias_hi"] < 0.1, row


def test_the_gumbel_bias_is_clear_and_shrinks_with_the_temperature():
    x = SBN_DATA.repeat(10, 1)
    hot, cold = (
        _rows(["gumbel"], 100, x=x, options={"gumbel": {"temperature": t}})["gumbel", "guide"] for t in (2.0, 0.1)
    )
    assert hot["rel_bias_lo"] <= hot["rel_bias"] <= hot["rel_bias_hi"]
    assert hot["rel_bias_lo"] > 0.5  # the relaxed ELBO at temperature 2 is another objective
    assert cold["rel_bias_hi"] < hot["rel_bias_lo"]  # the bias shrinks with the temperature
    assert cold["rel_bias_lo"] == 0.0  # at 0.1, within what 100 draws resolve


def test_the_reference_rows_have_no_bias_exactly():
    rows = _rows(["disarm", "gumbel"], 10)
    for group in ("guide", "model"):
        assert rows["disarm", group]["sq_bias"] == 0.0
        assert rows["disarm", group]["rel_bias"] == rows["disarm", group]["rel_bias_hi"] == 0.0
        assert rows["gumbel", group]["sq_bias"] != 0.0  # another estimator's draws differ from the reference's


def test_the_cross_gram_is_that_of_the_draws_and_is_needed():
    sbn = small_sbn()
    reference = draw_gradients(sbn, make_estimator("disarm", sbn), SBN_DATA, 4, keep=True)
    other = draw_gradients(sbn, make_estimator("score", sbn), SBN_DATA, 3, keep=True, against=reference)
    for group, names in parameter_groups(sbn, SBN_DATA).items():
        g, h = (torch.cat([d.values[n] for n in names], 1).double() for d in (other, reference))
        torch.testing.assert_close(other.cross[group], g @ h.T)
        torch.testing.assert_close(other.grams[group], g @ g.T)
        torch.testing.assert_close(other.sums[group], g.sum(0))
    with pytest.raises(ValueError, match="hold no cross-Gram against 'disarm'.*against="):
        relative_bias(draw_gradients(sbn, make_estimator("score", sbn), SBN_DATA, 3), reference, "guide")
    unkept = draw_gradients(sbn, make_estimator("score", sbn), SBN_DATA, 3)
    with pytest.raises(ValueError, match="draws of 'score' given as against= were not kept; draw them with keep=True"):
        draw_gradients(sbn, make_estimator("disarm", sbn), SBN_DATA, 3, against=unkept)


def _gaussian_draws(name: str, g: torch.Tensor, against: torch.Tensor | None = None) -> GradientDraws:
    """The draws ``g`` (R x P) as one group ``"all"``, with the cross-Gram against ``against``'s."""
    cross = {} if against is None else {"all": g @ against.T}
    return GradientDraws(name, len(g), 0.0, {"all": g @ g.T}, {"all": g.sum(0)}, {"all": (g**2).sum(0)}, cross)


@pytest.mark.parametrize("true_bias", [0.0, 0.5])
def test_the_interval_covers_the_true_relative_bias(true_bias):
    torch.manual_seed(0)
    trials, num_draws, dim = 100, 50, 500
    mean_ref = torch.randn(dim, dtype=torch.float64) / math.sqrt(dim)  # ||E h|| about 1
    mean = mean_ref + true_bias * torch.nn.functional.normalize(torch.randn(dim, dtype=torch.float64), dim=0)
    covered, excludes_zero = 0, 0
    for _ in range(trials):  # noise: tr Cov / R = 0.1 for h, 0.225 for g, alike in every coordinate
        h = mean_ref + 0.1 * torch.randn(num_draws, dim, dtype=torch.float64)
        g = mean + 0.15 * torch.randn(num_draws, dim, dtype=torch.float64)
        _, _, lo, hi = relative_bias(_gaussian_draws("g", g, h), _gaussian_draws("h", h), "all")
        covered += lo <= true_bias <= hi
        excludes_zero += lo > 0
    assert covered >= 0.9 * trials
    assert excludes_zero >= (0.9 * trials if true_bias else 0)  # a bias of half ||E h|| is resolved
    if not true_bias:
        assert excludes_zero <= 0.1 * trials
