"""Every flag of every subcommand says what it does and what it is when not given, every
registry-backed flag lists its choices, and the help is plain text (no reST markup)."""

import argparse
import re

import pytest

from pyro_vae.cli import COMMANDS, build_parser
from pyro_vae.cli.main import plain_text

MARKUP = re.compile(r"``|:[a-z]+:`")


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """``(name, parser)`` of every subcommand, a family's own subcommands (``graph table``) included."""
    found = []
    subparsers = build_parser()._subparsers._group_actions[0].choices
    for name in COMMANDS:
        parser = subparsers[name].build()
        found.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                found += [(f"{name} {sub}", action.choices[sub]) for sub in action.choices]
    return found


PARSERS = _parsers()


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


@pytest.mark.parametrize("name, parser", PARSERS, ids=[name for name, _ in PARSERS])
def test_every_flag_has_help_with_its_default(name, parser):
    for action in _options(parser):
        flag = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"pyro-vae {name} {flag}: no help"
        takes_a_value = action.nargs != 0 and action.option_strings
        if takes_a_value:  # a switch is off unless given; a value has a default to say
            assert "default" in action.help.lower(), f"pyro-vae {name} {flag}: its help says no default"


@pytest.mark.parametrize("name, parser", PARSERS, ids=[name for name, _ in PARSERS])
def test_every_choice_is_listed_in_the_help(name, parser):
    text = parser.format_help()
    for action in _options(parser):
        for choice in action.choices or ():
            assert re.search(rf"[{{,]{re.escape(str(choice))}[,}}]", text), f"pyro-vae {name}: {choice!r} not shown"


def test_registry_backed_flags_offer_the_registrys_names():
    from pyro_vae.inference import ESTIMATORS, OPTIMIZERS
    from pyro_vae.models import MODELS
    from pyro_vae.models.nets import ACTIVATIONS

    train = dict(_parsers())["train"]  # built now: other test modules register models as they are collected
    choices = {action.dest: action.choices for action in train._actions}
    assert list(choices["model"]) == MODELS.names() and list(choices["estimator"]) == ESTIMATORS.names()
    assert list(choices["optimizer"]) == OPTIMIZERS.names()
    assert sorted(choices["activation"]) == sorted(ACTIVATIONS)


@pytest.mark.parametrize("name, parser", [("", build_parser()), *PARSERS], ids=["pyro-vae", *dict(PARSERS)])
def test_help_is_plain_text(name, parser):
    text = parser.format_help()
    assert not MARKUP.search(text), MARKUP.search(text).group(0)


@pytest.mark.parametrize(
    "rest, plain",
    [
        ("see :mod:`pyro_vae.training.distributed`", "see pyro_vae.training.distributed"),
        (":func:`~pyro_vae.training.train` trains", "train trains"),
        (":class:`the run <pyro_vae.training.Run>`", "the run"),
        ("``torchrun -m pyro_vae``", "torchrun -m pyro_vae"),
        ("a `single` backquote stays", "a `single` backquote stays"),
    ],
)
def test_plain_text_drops_rest_markup(rest, plain):
    assert plain_text(rest) == plain
