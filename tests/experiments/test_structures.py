"""New latent structures go through the one pipeline: training, the CLI, reloading,
evaluation and the estimators; exact checks where a closed form exists."""

import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import pyro_method
from support import SMALL as BASE
from support import draws_mean_and_se
from torch import nn

from pyro_vae import DataSpec, TrainConfig, evaluate, load_run, register_model, train
from pyro_vae.cli import main
from pyro_vae.data import load_dataset
from pyro_vae.inference import make_estimator
from pyro_vae.inference.evaluate import importance_bounds
from pyro_vae.inference.variance import GradientDraws, parameter_groups
from pyro_vae.models import MODELS, VAE, build_model
from pyro_vae.models.linear_gaussian import (
    exact_mixture_elbo,
    exact_mixture_log_marginal,
    linear_gaussian_mixture,
    set_exact_guide,
)
from pyro_vae.models.priors import VampPriorVAE
from pyro_vae.training import build_run
from pyro_vae.training.build import check_program

SMALL = dict(BASE, epochs=2)

# model name -> (estimator, model options) for a quick run on the synthetic data
STRUCTURES = {
    "cvae": ("reparam", {}),
    "m2": ("enum", {}),
    "two-layer": ("reparam", {"z2_dim": 2, "hidden2": (8,)}),
    "iaf": ("stl", {"flow_hidden": (8,)}),
    "mog-prior": ("reparam", {"num_components": 4}),
    "vampprior": ("reparam", {"num_components": 4}),
}


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_structure_trains_reloads_and_evaluates(tmp_path, name):
    estimator, options = STRUCTURES[name]
    config = TrainConfig(
        **SMALL, model=name, estimator=estimator, model_options=options, num_labels=40 if name == "m2" else None
    )
    run = train(config, tmp_path, progress=False)
    assert type(run.program) is MODELS[name]
    assert run.metrics[-1]["test_elbo"] > run.metrics[0]["test_elbo"] - 1.0
    loaded = load_run(tmp_path)
    assert type(loaded.program) is MODELS[name]
    for p, q in zip(run.program.state_dict().values(), loaded.program.state_dict().values()):
        assert torch.equal(p, q)
    batches = loaded.dataset.test_batches(50, keys=loaded.program.data_keys, num=50)
    result = evaluate(loaded.program, batches, num_samples=20)
    assert math.isfinite(result.elbo) and result.log_px >= result.elbo and not result.joint


@pytest.mark.parametrize("name", ["cvae", "two-layer", "iaf", "vampprior"])
def test_structure_trains_through_the_cli(tmp_path, name, capsys):
    estimator, options = STRUCTURES[name]
    args = [
        "train",
        "--model",
        name,
        "--estimator",
        estimator,
        "--dataset",
        "synthetic",
        "--z-dim",
        "2",
        "--hidden",
        "16",
        "--epochs",
        "1",
        "--run-dir",
        str(tmp_path),
        "-k",
        "10",
        "--no-progress",
    ]
    for key, value in options.items():
        args += ["--model-option", f"{key}={value!r}"]
    assert main(args) == 0, capsys.readouterr().err
    assert {p.name for p in (tmp_path / "figures").iterdir()} >= {"samples.png", "reconstructions.png"}
    assert main(["evaluate", str(tmp_path), "-k", "10", "--num-test", "20"]) == 0


def test_generation_and_reconstruction_go_through_the_program():
    spec = DataSpec((6,), 3)
    two = build_model("two-layer", spec, z_dim=2, z2_dim=3, hidden=(4,), hidden2=(5,))
    assert two.generate(7).shape == (7, 6)
    trace = pyro.poutine.trace(two.model).get_trace(None, num_generated=7)
    assert trace.nodes["z2"]["value"].shape == (7, 3) and trace.nodes["z"]["value"].shape == (7, 2)
    cvae = build_model("cvae", spec, z_dim=2, hidden=(4,))
    y = torch.tensor([0, 1, 2, 0])
    assert cvae.generate(4, y=y).shape == (4, 6)
    with pytest.raises(ValueError, match="needs the labels y"):
        cvae.generate(4)
    with pytest.raises(ValueError, match=r"labels y must lie in \[0, 3\)"):
        cvae.generate(4, y=torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"VAE takes the data \['x'\], not \['y'\]"):
        VAE(6, z_dim=2, hidden=(4,)).model(torch.zeros(4, 6), y=y)


def test_reconstruct_follows_a_flow_guide():
    torch.manual_seed(0)
    iaf = build_model("iaf", DataSpec((6,)), z_dim=2, hidden=(4,), flow_hidden=(8,))
    with torch.no_grad():
        for p in iaf.flows.parameters():
            p.normal_(0, 1.0)  # a flow far from the identity
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    torch.manual_seed(1)
    recon = iaf.reconstruct(x)
    torch.manual_seed(1)
    z = iaf.posterior(x).sample()  # the same draw of the flow q(z|x)
    assert torch.allclose(recon, iaf.decode(z).mean, atol=1e-6)
    assert not torch.allclose(recon, iaf.decode(iaf.encode(x)[0]).mean, atol=1e-3)
    assert iaf.embed(x).shape == (5, 2)


# --- a latent outside the data plate ------------------------------------------------
@register_model("test-global-bias", replace=True)
class GlobalBiasVAE(VAE):
    """A VAE whose decoder adds a bias b shared by all data, b ~ N(0, I), q(b) = N(m, 0.1^2)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.b_loc = nn.Parameter(torch.zeros(self.x_dim))

    @pyro_method
    def model(self, x=None, *, num_generated=None, total_size=None):
        b = pyro.sample("b", dist.Normal(torch.zeros(self.x_dim), 1.0).to_event(1))
        with self.data_plate(self.batch_size(x, num_generated, {}), total_size):
            z = pyro.sample("z", self.prior())
            return pyro.sample("x", self.likelihood(self.decoder(z) + b), obs=x)

    @pyro_method
    def guide(self, x=None, *, num_generated=None, total_size=None):
        pyro.sample("b", dist.Normal(self.b_loc, 0.1).to_event(1))
        with self.data_plate(x.shape[0], total_size):
            return pyro.sample("z", self.posterior(x))


def test_a_global_latent_trains_resumes_reloads_and_is_evaluated_jointly(tmp_path, capsys):
    run_dir = tmp_path / "run"
    common = [
        "--model",
        "test-global-bias",
        "--dataset",
        "synthetic",
        "--z-dim",
        "2",
        "--hidden",
        "8",
        "--run-dir",
        str(run_dir),
        "--no-progress",
        "-k",
        "5",
    ]
    assert main(["train", *common, "--epochs", "1"]) == 0
    assert main(["train", *common, "--epochs", "2", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "log p(x of all 500 test data, global latents sampled jointly) / 500 (IS, K=5)" in out
    run = load_run(run_dir)
    assert [row["epoch"] for row in run.metrics] == [1, 2]
    assert run.program.b_loc.abs().sum() > 0  # q(b) was trained
    assert main(["evaluate", str(run_dir), "-k", "3", "--num-test", "50"]) == 0
    report = json.loads((run_dir / "eval-epoch0002-k3-n50.json").read_text())
    assert report["test_log_px"] < 0
    assert report["log_likelihood_of"] == "log p(x of all 50 test data, global latents sampled jointly) / 50"
    assert main(["plot", str(run_dir)]) == 0


@pytest.mark.parametrize(
    "flags, refused",
    [
        (["--estimator", "iwae", "--num-particles", "2"], "the estimator 'iwae' (a bound per datum)"),
        (["--estimator", "dreg", "--num-particles", "2"], "the estimator 'dreg' (a bound per datum)"),
        (["--algorithm", "wake-sleep"], "the algorithm 'wake-sleep'"),
        (["--algorithm", "rws", "--num-particles", "2"], "the algorithm 'rws'"),
    ],
)
def test_what_cannot_train_a_global_latent_says_so_before_training(tmp_path, capsys, flags, refused):
    assert (
        main(
            [
                "train",
                "--model",
                "test-global-bias",
                "--dataset",
                "synthetic",
                "--z-dim",
                "2",
                "--run-dir",
                str(tmp_path),
                "--no-progress",
                *flags,
            ]
        )
        == 2
    )
    assert (
        f"the sites ['b'] lie outside the data plate (latents shared by all data), which {refused} cannot train"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "checkpoint.pt").exists()


def test_a_global_latent_is_not_sharded_over_processes():
    run = build_run(TrainConfig(**SMALL, model="test-global-bias"))
    check_program(run)  # one process: accepted
    with pytest.raises(
        ValueError, match=r"the sites \['b'\] .* which 2 processes \(the joint evaluation is not sharded\)"
    ):
        check_program(run, processes=2)


def test_a_users_model_trains_by_name_from_the_cli(tmp_path, user_module, capsys):
    user_module(
        "my_models",
        ("from pyro_vae import VAE, register_model\n\n@register_model('mine')\nclass Mine(VAE):\n    '''my VAE'''\n"),
    )
    run = tmp_path / "run"
    argv = [
        "--import",
        "my_models",
        "train",
        "--model",
        "mine",
        "--dataset",
        "synthetic",
        "--z-dim",
        "2",
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--run-dir",
        str(run),
        "-k",
        "5",
        "--no-progress",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    assert type(load_run(run).program).__name__ == "Mine"
    assert main(["--import", "my_models", "evaluate", str(run), "-k", "5", "--num-test", "10"]) == 0
    assert main(["--import", "no_such_module", "train"]) == 2
    assert "--import no_such_module" in capsys.readouterr().err


# --- exact checks with a discrete latent --------------------------------------------
def _mixture(seed=0, exact_guide=False, num_classes=2):
    """A linear-Gaussian mixture (M2 with linear nets); with ``exact_guide`` q(z|x,y) = p(z|x,y)."""
    torch.manual_seed(seed)
    m2 = linear_gaussian_mixture(x_dim=3, z_dim=2, num_classes=num_classes)
    with torch.no_grad():
        for p in m2.parameters():
            p.copy_(0.5 * torch.randn(p.shape))
        if exact_guide:
            (dec,) = m2.decoder
            dec.weight[:, :2] = torch.linalg.qr(torch.randn(3, 2))[0] * torch.tensor([1.0, 2.0])  # orthogonal
            m2.likelihood.log_var.fill_(2 * math.log(0.7))  # isotropic: a diagonal posterior covariance
            set_exact_guide(m2)
    return m2


def test_enumerated_bound_is_exact_with_the_exact_posterior(float64):
    m2 = _mixture(exact_guide=True)
    x = torch.randn(5, 3)
    bounds = importance_bounds(m2.model, m2.guide, x, num_samples=3)
    # every weight sum_y p(x, y, z^y) / p(z^y | x, y) equals p(x): no Monte Carlo error at all
    torch.testing.assert_close(bounds["log_px"], exact_mixture_log_marginal(m2, x), atol=1e-9, rtol=0)
    torch.testing.assert_close(bounds["elbo"], exact_mixture_elbo(m2, x), atol=1e-9, rtol=0)
    assert (bounds["log_px"] - bounds["elbo"]).mean() > 0.1  # q(y|x) is not p(y|x): a real gap


def test_enumerated_bound_converges_to_the_exact_sum_over_y(float64):
    m2 = _mixture(seed=2, exact_guide=True)
    with torch.no_grad():  # a proposal q(z|x,y) near, not at, the posterior: Monte Carlo error, light tails
        for p in m2.encoder.parameters():
            p.add_(0.2 * torch.randn(p.shape))
    x = torch.randn(4, 3)
    bounds = importance_bounds(m2.model, m2.guide, x, num_samples=20000, chunk_size=5000)
    exact = exact_mixture_log_marginal(m2, x)
    assert (bounds["log_px"] - exact).abs().max() < 0.02
    assert (bounds["elbo"] - exact_mixture_elbo(m2, x)).abs().max() < 0.05
    assert (exact - exact_mixture_elbo(m2, x)).min() > 0.1  # the bound is not tight: the check has teeth


@pytest.mark.slow
@pytest.mark.parametrize("name", ["enum", "score", "score-rb", "score-baseline", "score-nvil"])
def test_estimators_are_unbiased_with_a_discrete_latent(float64, name):
    m2 = _mixture(seed=3)
    x = torch.randn(4, 3)
    named = dict(m2.named_parameters())
    groups = parameter_groups(m2, x)
    exact = torch.autograd.grad(-exact_mixture_elbo(m2, x).sum(), [named[n] for n in groups["guide"]])
    exact = torch.cat([g.flatten() for g in exact]).double()
    mean, se = draws_mean_and_se(m2, name, x, num_draws=400, num_particles=20)["guide"]
    z = (mean - exact).abs() / (se + 1e-9)
    assert z.max() < 5.0, f"{name}: max |z| = {z.max():.2f}"
    assert se.norm() < 0.5 * exact.norm()
    assert set(groups["guide"]) >= {"classifier.0.weight", "encoder.net.0.weight"}


@pytest.fixture(scope="module")
def two_layer_reference():
    torch.manual_seed(5)
    program = build_model("two-layer", DataSpec((4,)), z_dim=1, z2_dim=1, hidden=(3,), hidden2=(3,))
    x = torch.bernoulli(torch.full((6, 4), 0.4))
    return program, x, draws_mean_and_se(program, "reparam", x, num_draws=300, num_particles=20)["guide"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["stl", "score", "score-rb", "score-baseline", "score-nvil"])
def test_estimators_agree_on_a_two_layer_guide(two_layer_reference, name):
    program, x, (ref_mean, ref_se) = two_layer_reference
    mean, se = draws_mean_and_se(program, name, x, num_draws=300, num_particles=20)["guide"]
    z = (mean - ref_mean).abs() / (se**2 + ref_se**2 + 1e-12).sqrt()
    assert z.max() < 5.0, f"{name}: max |z| = {z.max():.2f}"
    assert ref_se.norm() < 0.3 * ref_mean.norm()


def test_analytic_kl_is_refused_where_it_would_be_biased():
    program = build_model("two-layer", DataSpec((4,)), z_dim=2, z2_dim=2, hidden=(3,), hidden2=(3,))
    estimator = make_estimator("reparam-analytic-kl", program)
    with pytest.raises(ValueError, match="biased for this program: latent 'z' has the parents \\['z2'\\]"):
        estimator.elbo.loss(program.model, estimator.guide, torch.zeros(3, 4))
    # the one-layer VAE and the learned priors satisfy the condition
    for name in ("vae", "vampprior"):
        program = build_model(name, DataSpec((4,)), z_dim=2, hidden=(3,))
        estimator = make_estimator("reparam-analytic-kl", program)
        assert math.isfinite(estimator.elbo.loss(program.model, estimator.guide, torch.zeros(3, 4)))


@pytest.mark.parametrize("name", ["reparam", "stl", "reparam-analytic-kl"])
def test_pathwise_estimators_refuse_m2_and_name_the_label(name):
    m2 = linear_gaussian_mixture(3, 2, 2)
    estimator = make_estimator(name, m2)
    with pytest.raises(ValueError, match="site 'y' \\(Categorical\\).*--estimator enum"):
        estimator.elbo.loss(m2.model, estimator.guide, torch.zeros(3, 3))


def test_m2_mixes_labelled_and_unlabelled_data_in_one_batch(float64):
    m2 = _mixture(seed=4, exact_guide=True)  # q(z|x,y) = p(z|x,y): every loss below is exact, no noise
    x = torch.randn(4, 3)
    y = torch.tensor([1, -1, 0, -1])
    estimator = make_estimator("enum", m2)
    loss = estimator.elbo.loss(m2.model, estimator.guide, x, y=y)
    # the unlabelled data are summed over y exactly, the labelled ones observe it
    labelled = estimator.elbo.loss(m2.model, estimator.guide, x[[0, 2]], y=y[[0, 2]])
    unlabelled = estimator.elbo.loss(m2.model, estimator.guide, x[[1, 3]])
    assert loss == pytest.approx(labelled + unlabelled, rel=1e-9)
    assert unlabelled == pytest.approx(-exact_mixture_elbo(m2, x[[1, 3]]).sum().item(), rel=1e-9)
    assert labelled != pytest.approx(unlabelled, rel=1e-2)


# --- the variance module's statistics ------------------------------------------------
def _gaussian_draws(mean, sd, num_draws, generator):
    g = mean + sd * torch.randn(num_draws, len(mean), generator=generator, dtype=torch.float64)
    return GradientDraws("toy", num_draws, 0.0, {"all": g @ g.T}, {"all": g.sum(0)}, {"all": (g**2).sum(0)})


def test_squared_mean_norm_and_snr_are_bias_corrected():
    # ||E g||^2 = 0.5 with tr Cov = 50: at R = 20 the naive ||mean||^2 would be 0.5 + 2.5 on average
    mean = torch.full((50,), 0.1, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    stats = [_gaussian_draws(mean, 1.0, 20, generator).summary("all") for _ in range(2000)]
    estimate = sum(s["mean_sq_norm"] for s in stats) / len(stats)
    spread = torch.tensor([s["mean_sq_norm"] for s in stats]).std().item() / len(stats) ** 0.5
    assert abs(estimate - 0.5) < 4 * spread and spread < 0.05
    snr = sorted(s["snr"] for s in stats)[len(stats) // 2]
    assert snr < 0.2  # the true SNR is 0.1; without the correction it could not fall below 1/sqrt(R) = 0.22


def test_nvil_baseline_sits_on_data_plate_sites_and_passes_guide_arguments():
    program = GlobalBiasVAE(6, z_dim=2, hidden=(4,))
    estimator = make_estimator("score-nvil", program)
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    trace = pyro.poutine.trace(estimator.guide).get_trace(x)
    assert "nn_baseline" in trace.nodes["z"]["infer"]["baseline"]
    assert "nn_baseline" not in trace.nodes["b"]["infer"]["baseline"]  # a global latent: average only
    assert math.isfinite(estimator.elbo.loss(program.model, estimator.guide, x))
    m2 = linear_gaussian_mixture(3, 2, 2)
    estimator = make_estimator("score-nvil", m2)
    y = torch.tensor([0, -1, 1, -1])
    assert math.isfinite(estimator.elbo.loss(m2.model, estimator.guide, torch.randn(4, 3), y=y))


@pytest.mark.data
@pytest.mark.parametrize("activation", ["tanh", "elu"])
def test_vampprior_encoder_keeps_its_reconstruction_gradient_only_without_saturation(real_data_dir, activation):
    """Why the VampPrior collapses with tanh units (docs/results.md#latent-structures): within
    ~25 Adam steps the encoder's tanh units saturate, it maps every input, data and pseudo-inputs
    alike, to one q (KL ~ 0), and the reconstruction term's gradient through it vanishes; with
    ELU units it stays that of a learning encoder (100 steps on one real minibatch)."""
    data = load_dataset("mnist", str(real_data_dir))
    x = torch.bernoulli(data.train[:100], generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    vae = VampPriorVAE(data.x_shape, z_dim=50, hidden=(200, 200), activation=activation, num_components=50)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    elbo = pyro.infer.Trace_ELBO()
    with pyro.get_param_store().scope():
        for _ in range(100):
            optimizer.zero_grad()
            elbo.loss_and_grads(vae.model, vae.guide, x)
            optimizer.step()
        guide = pyro.poutine.trace(vae.guide).get_trace(x)
        model = pyro.poutine.trace(pyro.poutine.replay(vae.model, trace=guide)).get_trace(x)
    z = guide.nodes["z"]["value"]
    reconstruction = model.nodes["x"]["fn"].log_prob(x).sum()
    kl = (guide.nodes["z"]["fn"].log_prob(z) - model.nodes["z"]["fn"].log_prob(z)).mean()
    grads = torch.autograd.grad(reconstruction, list(vae.encoder.parameters()))
    grad_norm = torch.sqrt(sum((g**2).sum() for g in grads)).item()
    if activation == "tanh":  # collapsed: q(z|x) is the prior, and nothing flows back to change that
        assert kl.item() < 0.5 and grad_norm < 5.0
    else:
        assert kl.item() > 1.0 and grad_norm > 100.0
