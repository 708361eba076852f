"""``--jit``: the compiled ELBO trains to the eager numbers, checks every batch, and refuses
what a graph would fix (handlers, warm-up, estimators and algorithms it cannot compile)."""

import pyro
import pytest
import torch
from pyro import poutine
from support import SMALL as BASE

from pyro_vae import TrainConfig, load_run, train
from pyro_vae.cli import build_parser, main
from pyro_vae.inference import ALGORITHMS, make_estimator
from pyro_vae.inference.jit import CHECKED, compile_estimator, data_check
from pyro_vae.models import DataSpec, build_model
from pyro_vae.models.vae import VAE
from pyro_vae.training.loop import check_jit

SMALL = dict(BASE, epochs=2, num_train=1950)


# built-in model -> constructor options for a small instance on 12-pixel data
MODEL_OPTIONS = {
    "vae": {},
    "cvae": {},
    "iaf": {},
    "two-layer": {"z2_dim": 2, "hidden2": (5,)},
    "mog-prior": {"num_components": 3},
    "vampprior": {"num_components": 3},
}


def _steps(model: str, estimator_name: str, jit: bool, batches: list[torch.Tensor]) -> tuple[list, list, object]:
    torch.manual_seed(0)
    program = build_model(model, DataSpec((12,), num_classes=3), z_dim=2, hidden=(6,), **MODEL_OPTIONS[model])
    estimator = make_estimator(estimator_name, program)
    if jit:
        estimator = compile_estimator(estimator, data_check(program))
    algorithm = ALGORITHMS["aevb"](program, estimator, TrainConfig(lr=1e-2))
    torch.manual_seed(1)
    losses = []
    for x in batches:
        batch = {"x": x, "y": torch.arange(len(x)) % 3} if "y" in program.data_keys else {"x": x}
        losses.append(algorithm.step(batch, 1000))
    return losses, [p.detach().clone() for p in program.parameters()], estimator.elbo


@pytest.mark.parametrize("model, estimator", CHECKED)  # the pairs train() compiles by default
def test_compiled_steps_give_the_eager_losses_and_parameters(model, estimator):
    torch.manual_seed(2)
    batches = [torch.bernoulli(torch.full((20 if i % 3 else 7, 12), 0.3)) for i in range(9)]  # two batch shapes
    eager_losses, eager_params, _ = _steps(model, estimator, False, batches)
    jit_losses, jit_params, compiled = _steps(model, estimator, True, batches)
    assert len(compiled.graphs) == 2  # one graph per batch shape
    assert jit_losses == pytest.approx(eager_losses, rel=1e-5)
    assert len({round(v, 3) for v in eager_losses}) == len(batches)  # fresh noise each step, not one frozen draw
    for p, q in zip(eager_params, jit_params, strict=True):
        torch.testing.assert_close(q, p, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_train_with_jit_matches_train_without_and_reloads(tmp_path, device):
    config = TrainConfig(**SMALL)  # 1950 points: the last minibatch of each epoch has 50
    eager = train(config, tmp_path / "eager", progress=False, jit=False, device=device)  # jit=None would compile it
    compiled = train(config, tmp_path / "jit", progress=False, jit=True, device=device)
    tolerance = 1e-5 if device == "cpu" else 1e-4  # CUDA kernels are not deterministic
    for a, b in zip(eager.metrics, compiled.metrics, strict=True):
        assert b["train_elbo"] == pytest.approx(a["train_elbo"], rel=tolerance)
        assert b["test_elbo"] == pytest.approx(a["test_elbo"], rel=tolerance)
    loaded = load_run(tmp_path / "jit")
    for p, q in zip(compiled.program.state_dict().values(), loaded.program.state_dict().values()):
        assert torch.equal(p, q)
    three = TrainConfig(**{**SMALL, "epochs": 3})
    resumed = [
        train(three, tmp_path / name, progress=False, resume=True, jit=name == "jit", device=device)
        for name in ("eager", "jit")
    ]
    assert [run.metrics[-1]["epoch"] for run in resumed] == [3, 3]
    assert resumed[1].metrics[-1]["test_elbo"] == pytest.approx(resumed[0].metrics[-1]["test_elbo"], rel=tolerance)


def test_every_batch_is_still_checked_after_compiling():
    vae = VAE(12, z_dim=3, hidden=(8,))
    estimator = compile_estimator(make_estimator("reparam", vae), data_check(vae))
    algorithm = ALGORITHMS["aevb"](vae, estimator, TrainConfig())
    x = torch.bernoulli(torch.full((20, 12), 0.3))
    algorithm.step({"x": x}, 100)
    bad = x.clone()
    bad[3, 4] = float("nan")
    with pytest.raises(ValueError, match="x contains 1 NaN or infinite values"):
        algorithm.step({"x": bad}, 100)
    with pytest.raises(ValueError, match="Bernoulli"):
        algorithm.step({"x": x * 2}, 100)


@pytest.mark.parametrize(
    "labels, match",
    [
        (torch.tensor([0, 1, 3, 2]), r"labels y must lie in \[0, 3\), got values in \[0, 3\]"),
        (torch.tensor([0.0, 1.0, 2.0, 1.0]), "labels y must be integers"),
        (torch.tensor([0, 1, 2]), "y has 3 entries for a batch of 4"),
    ],
)
def test_every_label_is_still_checked_after_compiling(labels, match):
    cvae = build_model("cvae", DataSpec((12,), num_classes=3), z_dim=2, hidden=(6,))
    estimator = compile_estimator(make_estimator("reparam", cvae), data_check(cvae))
    algorithm = ALGORITHMS["aevb"](cvae, estimator, TrainConfig())
    x = torch.bernoulli(torch.full((4, 12), 0.3))
    algorithm.step({"x": x, "y": torch.tensor([0, 1, 2, 1])}, 100)
    with pytest.raises(ValueError if labels.dtype == torch.int64 else TypeError, match=match):
        algorithm.step({"x": x, "y": labels}, 100)


def test_a_compiled_elbo_refuses_to_run_inside_a_handler():
    vae = VAE(12, z_dim=3, hidden=(8,))
    estimator = compile_estimator(make_estimator("reparam", vae))
    x = torch.bernoulli(torch.full((20, 12), 0.3))
    with pytest.raises(ValueError, match="inside Pyro handlers \\(ScaleMessenger\\)"), poutine.scale(scale=0.5):
        estimator.elbo.loss_and_grads(vae.model, estimator.guide, x=x)


@pytest.mark.parametrize(
    "name, match",
    [
        ("iwae", "the iwae estimator cannot be compiled: ImportanceWeighted has no compiled counterpart"),
        ("score-rb", "the score-rb estimator cannot be compiled: TraceGraph_ELBO has no compiled counterpart"),
        ("reparam-analytic-kl", "cannot be compiled: AnalyticKL has no compiled counterpart"),
        ("score-nvil", "the score-nvil estimator trains its own modules"),
        ("enum", "the enum estimator cannot be compiled: TraceEnum_ELBO has no compiled counterpart"),
    ],
)
def test_estimators_without_a_compiled_elbo_are_refused(name, match):
    vae = VAE(12, z_dim=3, hidden=(8,))
    with pytest.raises(ValueError, match=match):
        compile_estimator(make_estimator(name, vae, 2 if name == "iwae" else 1))


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"algorithm": "wake-sleep", "estimator": "score"}, "the wake-sleep algorithm trains without it"),
        ({"kl_warmup": 2}, "cannot compile KL warm-up"),
    ],
)
def test_configs_that_cannot_be_compiled_are_refused_before_training(tmp_path, changes, match):
    config = TrainConfig(**{**SMALL, **changes})
    with pytest.raises(ValueError, match=match):
        check_jit(config)
    with pytest.raises(ValueError, match=match):
        train(config, tmp_path, progress=False, jit=True)
    assert not tmp_path.joinpath("checkpoint.pt").exists()


def test_the_cli_passes_jit_to_training_and_the_benchmark(capsys):
    assert build_parser().parse_args(["train", "--jit"]).jit is True
    assert build_parser().parse_args(["train", "--no-jit"]).jit is False
    assert build_parser().parse_args(["train"]).jit is None  # train() chooses: compiles_by_default
    small = ["--hidden", "8", "--z-dim", "2", "--steps", "2", "--rounds", "1"]
    assert main(["benchmark", *small]) == 0
    assert "pyro_vae compiled (--jit)" in capsys.readouterr().out  # the default training path
    assert main(["benchmark", "--no-jit", *small]) == 0
    assert "pyro_vae eager" in capsys.readouterr().out
    assert main(["benchmark", "--num-particles", "3", *small]) == 0
    assert "pyro_vae eager" in capsys.readouterr().out  # the IWAE bound trains eagerly
    assert main(["benchmark", "--jit", "--num-particles", "3", "--steps", "1", "--rounds", "1"]) == 2
    assert "iwae estimator cannot be compiled" in capsys.readouterr().err


class UsersVAE(VAE):
    """a user's subclass: it may branch in Python, so it trains eagerly unless asked"""


@pytest.mark.parametrize(
    "changes, model_class, compiled",
    [
        ({}, None, True),
        (dict(estimator="stl"), None, True),
        (dict(model="iaf"), None, True),
        (dict(estimator="iwae", num_particles=2), None, False),  # no compiled counterpart
        (dict(estimator="reparam", num_particles=2), None, False),  # not checked with particles
        (dict(kl_warmup=1), None, False),  # any warm-up (of at most the run's 1 epoch) trains eagerly
        (dict(algorithm="wake-sleep"), None, False),
        ({}, UsersVAE, False),
    ],
)
def test_train_compiles_the_checked_built_in_programs_by_default(tmp_path, monkeypatch, changes, model_class, compiled):
    import pyro_vae.training.loop as loop
    from pyro_vae.models import MODELS

    if model_class is not None:
        monkeypatch.setattr(MODELS, "_entries", {**MODELS._entries, "vae": model_class})
    calls = []
    monkeypatch.setattr(loop, "compile_estimator", lambda estimator, check: calls.append(1) or estimator)
    train(TrainConfig(**{**SMALL, "epochs": 1, **changes}), tmp_path, progress=False)
    assert bool(calls) is compiled
    assert MODELS["vae"] is (model_class or VAE)


class RegistersItself(VAE):
    """a user's VAE whose model calls pyro.module on itself, as Pyro's older examples do"""

    def model(self, x=None, **kwargs):
        pyro.module("vae", self)
        return super().model(x, **kwargs)


def test_a_program_calling_pyro_module_is_one_clear_error_under_jit_and_trains_eagerly(tmp_path, monkeypatch):
    from pyro_vae.models import MODELS

    monkeypatch.setattr(MODELS, "_entries", {**MODELS._entries, "registers-itself": RegistersItself})
    config = TrainConfig(**{**SMALL, "epochs": 1, "model": "registers-itself"})
    with pytest.raises(ValueError, match=r"--jit cannot compile this program.*pyro.module\(name, module\).*--no-jit"):
        train(config, tmp_path / "jit", progress=False, jit=True)
    assert train(config, tmp_path / "eager", progress=False).metrics  # a user's program trains eagerly by default
