"""The shared log-weight arithmetic and the one result type of evaluation."""

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

from pyro_vae.inference.evaluate import Evaluation, evaluate
from pyro_vae.inference.log_weights import PARTICLE_PLATE, log_weights, particle_plate, sum_per_datum
from pyro_vae.models.linear_gaussian import exact_log_marginal, linear_gaussian_vae, set_exact_guide
from pyro_vae.training.report import read_report


def _pixels_model(x, total_size=None):
    with pyro.plate("data", x.shape[0], subsample_size=x.shape[0]) as idx:
        pyro.sample("z", dist.Normal(0.0, 1.0))
        with pyro.plate("pixels", x.shape[-1], dim=-2):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x[idx].T)


def test_the_per_datum_sum_adds_the_inner_plates_and_keeps_the_scale_out():
    # N/M = 4 scales the sites, not the per-datum log density the bounds take their log-mean-exp of
    x = torch.randn(3, 5)
    trace = poutine.trace(poutine.scale(_pixels_model, 4.0)).get_trace(x)
    trace.compute_log_prob()
    total, scale = sum_per_datum(trace, 2, "data", needed_by="this test")
    exact = dist.Normal(0.0, 1.0).log_prob(trace.nodes["z"]["value"]) + dist.Normal(0.0, 1.0).log_prob(x).sum(-1)
    torch.testing.assert_close(total.reshape(-1), exact)
    assert scale == 4.0


def test_the_particle_plate_is_pyros_and_left_of_the_programs_plates():
    plate = particle_plate(7, 2)
    assert plate.name == PARTICLE_PLATE == "num_particles_vectorized" and plate.dim == -3 and plate.size == 7


def _exact_vae():
    """A linear-Gaussian VAE whose guide is its exact posterior (orthogonal decoder columns)."""
    vae = linear_gaussian_vae(3, 2)
    with torch.no_grad():
        vae.decoder[0].weight.copy_(torch.linalg.qr(torch.randn(3, 2))[0] * torch.tensor([1.0, 2.0]))
    set_exact_guide(vae)
    return vae


def test_log_weights_of_the_exact_posterior_are_log_px(float64):
    # with q(z|x) the exact posterior every log-weight equals log p(x), whatever z was drawn
    vae = _exact_vae()
    x = torch.randn(4, 3)
    log_w, elbo, log_w_global = log_weights(vae.model, vae.guide, x, 6, vae.max_plate_nesting, "data", {})
    exact = exact_log_marginal(vae, x).detach()
    torch.testing.assert_close(log_w, exact.expand(6, 4))
    torch.testing.assert_close(elbo, exact.expand(6, 4))
    assert log_w_global.shape == (6,) and not log_w_global.any()


def test_evaluation_is_one_result_type(float64):
    vae = _exact_vae()
    x = torch.randn(10, 3)
    result = evaluate(vae, [x[:4], x[4:]], num_samples=5)
    assert isinstance(result, Evaluation) and not result.joint
    assert (result.count, result.num_samples) == (10, 5)
    assert result.log_px == pytest.approx(exact_log_marginal(vae, x).mean().item(), abs=1e-9)
    with pytest.raises(AttributeError):
        result.log_px = 0.0  # frozen


@pytest.mark.parametrize("key, attribute", [("elbo", "elbo"), ("log_px", "log_px"), ("log_p_data", "log_px")])
def test_the_dict_access_of_version_0_1_still_reads_with_a_warning(key, attribute):
    result = Evaluation(elbo=-2.0, log_px=-1.0, joint=key == "log_p_data", count=3, num_samples=4)
    with pytest.warns(DeprecationWarning, match=rf"read the attribute: evaluate\(\.\.\.\)\.{attribute}"):
        assert result[key] == getattr(result, attribute)
    with pytest.warns(DeprecationWarning), pytest.raises(KeyError):
        result["nll"]


def test_an_old_joint_report_reads_under_the_one_name(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text('{"k": 5, "test_log_p_data": -1.5, "test_elbo": -2.0}')
    assert read_report(path) == {"num_samples": 5, "test_log_px": -1.5, "test_elbo": -2.0}
    assert math.isfinite(read_report(path)["test_log_px"])


def test_evaluate_refuses_a_program_that_is_not_a_module():
    class Functions:  # model and guide, but no parameters or training mode
        data_keys, max_plate_nesting = ("x",), 1

        def model(self, x):
            pass

        def guide(self, x):
            pass

    with pytest.raises(TypeError, match="^program must be a torch.nn.Module with model and guide, got Functions$"):
        evaluate(Functions(), [torch.zeros(2, 3)])
