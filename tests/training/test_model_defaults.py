"""A config's ``z_dim``, ``hidden`` and ``activation`` left unset are its model's own defaults
(``model_default``): ``pyro-vae train --model categorical-vae`` trains the 784-512-256 ReLU networks its
class declares, not the VAE's 500 tanh units; a flag, preset or config file still wins."""

import dataclasses

import pytest
from torch import nn

from pyro_vae.cli import build_parser
from pyro_vae.cli.train import _config_from_args
from pyro_vae.models import MODELS, VAE, register_model
from pyro_vae.models.program import DataSpec, constructor_default
from pyro_vae.training.build import build_program_for
from pyro_vae.training.config import TrainConfig


class EluVAE(VAE):
    """a user's VAE whose networks default to ELU and 8 latent dimensions"""

    def __init__(self, x_shape, z_dim: int = 8, activation: str = "elu", **kwargs) -> None:
        super().__init__(x_shape, z_dim, activation=activation, **kwargs)


class WiderEluVAE(EluVAE):
    """forwards every option but hidden to EluVAE (and through it to VAE)"""

    def __init__(self, x_shape, hidden=(64, 64), **kwargs) -> None:
        super().__init__(x_shape, hidden=hidden, **kwargs)


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))
    monkeypatch.setattr(MODELS, "_help", dict(MODELS._help))
    register_model("test-elu")(EluVAE)
    register_model("test-wider-elu")(WiderEluVAE)


@pytest.mark.parametrize(
    "model, extra, expected",
    [
        ("vae", {}, (20, (500,), "tanh")),
        ("categorical-vae", {}, (20, (512, 256), "relu")),  # z_dim: the code's width, VAE's 20 unused
        ("sbn", {}, (200, (), "tanh")),
        ("two-layer", {}, (100, (200, 200), "tanh")),
        ("m2", {"num_labels": 100}, (50, (500,), "tanh")),
        ("m1-m2", {"model_options": {"m1": "pretrained:mnist-vae-z20-e10"}}, (50, (500,), "softplus")),
        ("vampprior", {}, (20, (500,), "tanh")),  # takes hidden and activation through **kwargs from VAE
        ("vgae", {"dataset": "cora"}, (16, (32,), "tanh")),  # an int hidden size becomes one layer
        ("test-elu", {}, (8, (500,), "elu")),
        ("test-wider-elu", {}, (8, (64, 64), "elu")),  # each option from the first class that declares it
    ],
)
def test_unset_sizes_and_activation_are_the_models_own(model, extra, expected):
    config = TrainConfig(model=model, **extra)
    assert (config.z_dim, config.hidden, config.activation) == expected


def test_given_values_win_and_a_changed_copy_keeps_them():
    config = TrainConfig(model="categorical-vae", hidden=(64,), activation="tanh")
    assert (config.hidden, config.activation) == ((64,), "tanh")
    # replace copies the filled fields: a copy with another model keeps the sizes it was given
    assert dataclasses.replace(config, model="vae").hidden == (64,)


@pytest.mark.parametrize("hidden", [5, "abc"])
def test_a_given_hidden_is_checked_as_given_not_normalized_like_a_models_default(hidden):
    with pytest.raises(ValueError, match=f"hidden must be a sequence of int or None, got {hidden!r}"):
        TrainConfig(hidden=hidden)


def test_constructor_default_stops_at_a_class_that_does_not_forward_keywords():
    class Closed(VAE):
        def __init__(self, x_shape) -> None:
            super().__init__(x_shape, 3, activation="elu")

    assert constructor_default(Closed, "activation") is None
    assert constructor_default(lambda spec, hidden=(7,), **options: None, "hidden") == (7,)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--model", "categorical-vae"], ((512, 256), "relu")),
        (["--model", "categorical-vae", "--activation", "elu", "--hidden", "32"], ((32,), "elu")),
        (["--model", "test-elu"], ((500,), "elu")),
        (["--preset", "sbn-nonlinear"], ((200, 200), "tanh")),
    ],
)
def test_the_command_line_trains_the_models_defaults_unless_told_otherwise(argv, expected):
    config = _config_from_args(build_parser().parse_args(["train", *argv]))
    assert (config.hidden, config.activation) == expected


def test_the_categorical_vae_built_from_a_bare_config_has_its_relu_networks():
    program = build_program_for(TrainConfig(model="categorical-vae"), DataSpec((784,)), "bernoulli")
    linears = [m.out_features for m in program.encoder.modules() if isinstance(m, nn.Linear)]
    assert linears[:2] == [512, 256]
    kinds = {type(m) for m in program.modules()}
    assert nn.ReLU in kinds and nn.Tanh not in kinds
