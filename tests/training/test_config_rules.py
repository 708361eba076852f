"""Each field's range of ``TrainConfig`` and of the variance study's ``StudyConfig`` is declared with
the field (``metadata=rules(...)``) and checked in one place, :func:`~pyro_vae.validation.check_fields`.
The tests are generated from the declarations: a field given a rule is tested without a new test, and
a numeric field without one fails here."""

import math
import typing

import pytest

from pyro_vae.experiments.variance_study import StudyConfig
from pyro_vae.training.config import TrainConfig
from pyro_vae.validation import check_value, declared_rules

#: Each dataclass with declared rules, and how to build one with the given fields.
BUILD = {
    TrainConfig: lambda **fields: TrainConfig(dataset="synthetic", **fields),
    StudyConfig: lambda **fields: StudyConfig(base=TrainConfig(dataset="synthetic"), **fields),
}
HINTS = {cls: typing.get_type_hints(cls) for cls in BUILD}
#: Values of every kind near and far from the fields' ranges; a rule is tested with those of its
#: field's type that it refuses.
CANDIDATES = (
    -(2**70),
    -1,
    0,
    1,
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
    {"vimco": 0},
)
RULES = {cls: declared_rules(cls) for cls in BUILD}
RULED = [(cls, name, index) for cls in BUILD for name, declared in RULES[cls].items() for index in range(len(declared))]


def _of_type(cls: type, name: str, value: object) -> bool:
    try:
        check_value(name, value, HINTS[cls][name])
    except ValueError:
        return False
    return True


def _refused(cls: type, name: str, index: int) -> list:
    """The candidates of the field's type that its rule ``index`` refuses and the rules before it accept."""
    declared = RULES[cls][name]
    return [
        value
        for value in CANDIDATES
        if _of_type(cls, name, value)
        and all(rule.accepts(value) for rule in declared[:index])
        and not declared[index].accepts(value)
    ]


@pytest.mark.parametrize("cls, name, index", RULED, ids=[f"{c.__name__}-{n}-{i}" for c, n, i in RULED])
def test_a_value_outside_a_declared_rule_is_refused_by_name(cls, name, index):
    rule = RULES[cls][name][index]
    refused = _refused(cls, name, index)
    assert refused, f"no candidate lies outside {name}'s rule {rule.means!r}: add one to CANDIDATES"
    for value in refused:
        with pytest.raises(ValueError) as err:
            BUILD[cls](**{name: value})
        assert str(err.value) == f"{name} must {rule.means}, got {value!r}"


def _numeric(hint: object) -> bool:
    """Whether the annotation ``hint`` holds numbers: ``int``, ``float | None``, ``tuple[int, ...]``."""
    return hint in (int, float) or any(_numeric(arg) for arg in typing.get_args(hint))


@pytest.mark.parametrize(
    "cls, expected",
    [
        (TrainConfig, {"z_dim", "hidden", "lr", "init_std", "clip_norm"}),
        (StudyConfig, {"num_draws", "adapt_steps", "num_particles", "z_dims", "estimator_particles"}),
    ],
)
def test_every_numeric_field_declares_its_range(cls, expected):
    numeric = [name for name in RULES[cls] if _numeric(HINTS[cls][name])]
    assert expected <= set(numeric)  # the test sees what it should
    assert [name for name in numeric if not RULES[cls][name]] == []


@pytest.mark.parametrize("cls", BUILD)
def test_the_defaults_pass_their_rules(cls):
    config = BUILD[cls]()
    for name, declared in RULES[cls].items():
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
