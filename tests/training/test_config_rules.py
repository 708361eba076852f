"""Each ``TrainConfig`` field's range is declared with the field (``metadata=rules(...)``) and
checked in one place, :func:`~pyro_vae.validation.check_fields`. The tests are generated from
the declarations: a field given a rule is tested without a new test, and a numeric field
without one fails here."""

import math
import typing

import pytest

from pyro_vae.training.config import TrainConfig
from pyro_vae.validation import check_value, declared_rules

HINTS = typing.get_type_hints(TrainConfig)
#: Values of every kind near and far from the fields' ranges; a rule is tested with those of its
#: field's type that it refuses.
CANDIDATES = (
    -(2**70),
    -1,
    0,
    2**70,
    -0.5,
    0.0,
    1.0,
    1.5,
    1e6,
    math.nan,
    math.inf,
    -math.inf,
    (0,),
    (4, -1),
    "nope",
)
RULES = declared_rules(TrainConfig)
RULED = [(name, index) for name, declared in RULES.items() for index in range(len(declared))]


def _of_type(name: str, value: object) -> bool:
    try:
        check_value(name, value, HINTS[name])
    except ValueError:
        return False
    return True


def _refused(name: str, index: int) -> list:
    """The candidates of the field's type that its rule ``index`` refuses and the rules before it accept."""
    declared = RULES[name]
    return [
        value
        for value in CANDIDATES
        if _of_type(name, value)
        and all(rule.accepts(value) for rule in declared[:index])
        and not declared[index].accepts(value)
    ]


@pytest.mark.parametrize("name, index", RULED, ids=[f"{name}-{index}" for name, index in RULED])
def test_a_value_outside_a_declared_rule_is_refused_by_name(name, index):
    rule = RULES[name][index]
    refused = _refused(name, index)
    assert refused, f"no candidate lies outside {name}'s rule {rule.means!r}: add one to CANDIDATES"
    for value in refused:
        with pytest.raises(ValueError) as err:
            TrainConfig(dataset="synthetic", **{name: value})
        assert str(err.value) == f"{name} must {rule.means}, got {value!r}"


def _numeric(hint: object) -> bool:
    """Whether the annotation ``hint`` holds numbers: ``int``, ``float | None``, ``tuple[int, ...]``."""
    return hint in (int, float) or any(_numeric(arg) for arg in typing.get_args(hint))


def test_every_numeric_field_declares_its_range():
    numeric = [name for name in RULES if _numeric(HINTS[name])]
    assert {"z_dim", "hidden", "lr", "init_std", "clip_norm"} <= set(numeric)  # the test sees what it should
    assert [name for name in numeric if not RULES[name]] == []


def test_the_defaults_pass_their_rules():
    config = TrainConfig(dataset="synthetic")
    for name, declared in RULES.items():
        value = getattr(config, name)
        assert value is None or all(rule.accepts(value) for rule in declared), name


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(z_dim=0), "z_dim must be >= 1, got 0"),
        (dict(num_train=0), "num_train must be >= 1, got 0"),
        (dict(kl_warmup=-1), "kl_warmup must be >= 0, got -1"),
        (dict(split_seed=2**62), f"split_seed must lie in [-2**62, 2**62), got {2**62}"),
        (
            dict(validation_fraction=1.0),
            "validation_fraction must lie in [0, 1) (the part of the training set held out), got 1.0",
        ),
        (dict(init_std=2.0), "init_std must be <= 1.0: weights that large saturate every unit"),
    ],
)
def test_each_range_is_one_line_naming_the_field_and_the_value(kwargs, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(dataset="synthetic", **kwargs)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
