"""The readers of a program's and an algorithm's declared optional members: own value, else the
declared default; an undeclared name is refused."""

from __future__ import annotations

import pytest

from pyro_vae.inference.algorithms import ALGORITHM_DEFAULTS, ALGORITHMS, algorithm_member
from pyro_vae.models import MODELS
from pyro_vae.models.program import PROGRAM_DEFAULTS, member

READERS = [(member, PROGRAM_DEFAULTS), (algorithm_member, ALGORITHM_DEFAULTS)]


class Bare:
    """A program or algorithm that declares no optional member."""


@pytest.mark.parametrize(("read", "defaults"), READERS)
def test_a_missing_member_reads_its_declared_default(read, defaults):
    assert {name: read(Bare(), name) for name in defaults} == defaults


@pytest.mark.parametrize(("read", "defaults"), READERS)
def test_an_own_member_is_read(read, defaults):
    own = Bare()
    for name in defaults:
        setattr(own, name, ("own", name))
    assert all(read(own, name) == ("own", name) for name in defaults)


@pytest.mark.parametrize(("read", "defaults"), READERS)
def test_an_undeclared_name_is_refused(read, defaults):
    with pytest.raises(AttributeError, match="'data_plate' is not a declared"):
        read(Bare(), "data_plate")


def test_the_built_in_classes_read_their_own_values():
    assert member(MODELS["vgae"], "data_kind") == "graph"
    assert member(MODELS["vae"], "data_kind") == "vectors"
    assert algorithm_member(ALGORITHMS["aevb"], "anneals") is True
    assert algorithm_member(ALGORITHMS["rws"], "splits_batches") is False
    assert algorithm_member(ALGORITHMS["aevb"], "splits_batches") is True
