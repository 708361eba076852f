"""The generic checker of pyro_vae.validation: a dataclass's fields against their annotations,
then against the rules declared with them; a value's name never decides its range."""

from __future__ import annotations

import dataclasses
import math

import pytest

from pyro_vae.validation import (
    COUNT,
    NON_NEGATIVE,
    POSITIVE,
    ArgumentTypeError,
    Rule,
    at_least,
    check_arguments,
    check_fields,
    check_value,
    one_of,
    rules,
)

EVEN = Rule("be even", lambda value: value % 2 == 0)


@dataclasses.dataclass
class Toy:
    num_items: int = 1  # a name that once made an int a count: no rule, so 0 and -1 pass
    width: int | None = dataclasses.field(default=None, metadata=rules(COUNT, EVEN))
    rate: float = dataclasses.field(default=0.5, metadata=rules(POSITIVE))
    mode: str = dataclasses.field(default="a", metadata=rules(one_of(("a", "b"))))

    def __post_init__(self) -> None:
        check_fields(self)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(width=0), "width must be >= 1, got 0"),
        (dict(width=3), "width must be even, got 3"),  # the rules in order: COUNT passed, EVEN refuses
        (dict(rate=0.0), "rate must be a finite number > 0, got 0.0"),
        (dict(rate=math.nan), "rate must be a finite number > 0, got nan"),
        (dict(rate=math.inf), "rate must be a finite number > 0, got inf"),
        (dict(mode="c"), "mode must be one of ['a', 'b'], got 'c'"),
    ],
)
def test_a_field_outside_its_rules_is_one_line_naming_it(kwargs, message):
    with pytest.raises(ValueError) as err:
        Toy(**kwargs)
    assert str(err.value) == message


def test_the_type_is_checked_before_the_rules_and_none_skips_them():
    with pytest.raises(ArgumentTypeError, match=r"^width must be an int or None, got 'x' \(str\)$"):
        Toy(width="x")
    assert Toy(width=None).width is None and Toy(width=4).width == 4


def test_a_name_decides_no_range():
    assert Toy(num_items=0).num_items == 0
    check_value("num_samples", 0, int)
    check_value("chunk_size", -1, int)

    def fn(num_samples: int, z_dim: int) -> None: ...

    check_arguments(fn, num_samples=0, z_dim=-1)


def test_a_rule_checks_values_by_name():
    NON_NEGATIVE.check(decay=0.0, other=2)
    with pytest.raises(ValueError, match=r"^b must be >= 2, got 1$"):
        at_least(2).check(a=3, b=1)
