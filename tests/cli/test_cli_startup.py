"""The command line starts fast: building its parser imports no experiment, plotting,
torchvision or torch_geometric, and every numeric flag declares its bound."""

import argparse
import json
import subprocess
import sys

import pytest

from pyro_vae.cli import COMMANDS, build_parser, main
from pyro_vae.cli.args import at_least, non_negative_float, positive_float

HEAVY = ("torchvision", "matplotlib", "torch_geometric", "pyro_vae.experiments", "pyro_vae.plots", "torch._dynamo")
LIGHT_COMMANDS = ("train", "evaluate", "plot", "variance", "benchmark")  # their flags need no experiment

PROBE = """
import json, sys
from pyro_vae.cli import build_parser
parser = build_parser()
parser.format_help()
for name in sys.argv[1:]:
    parser._subparsers._group_actions[0].choices[name].format_help()
print(json.dumps(sorted(sys.modules)))
"""


def _imported(*commands: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *commands], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("commands", [(), LIGHT_COMMANDS])
def test_building_the_parser_imports_nothing_heavy(commands):
    modules = _imported(*commands)
    assert "pyro_vae.cli" in modules and "torch" in modules
    assert [m for m in modules if m.startswith(HEAVY)] == []


@pytest.mark.slow
def test_a_subcommand_imports_its_experiment_when_parsed():
    assert "pyro_vae.experiments.reproduce" in _imported("reproduce")


def _numeric_actions():
    parser = build_parser()
    subparsers = parser._subparsers._group_actions[0].choices
    for name in COMMANDS:
        for action in subparsers[name].build()._actions:
            nested = (
                [action.choices[n].build() for n in action.choices]
                if isinstance(action, argparse._SubParsersAction)
                else []
            )
            for p in nested:
                yield from ((f"{name} {p.prog.split()[-1]}", a) for a in p._actions)
            yield name, action


UNBOUNDED = {"seed", "split_seed"}  # any integer is a seed


def test_every_numeric_flag_declares_its_bound():
    checked = 0
    for command, action in _numeric_actions():
        if action.dest in UNBOUNDED:
            assert action.type is int
            continue
        assert action.type not in (int, float), f"pyro-vae {command} {action.option_strings}: type without a bound"
        checked += action.type is not None and action.type.__name__.startswith(("integer >=", "finite number"))
    assert checked > 40


@pytest.mark.parametrize(
    "parse, text, message",
    [
        (at_least(2), "1", "must be at least 2, got 1"),
        (at_least(0), "x", "expected an integer, got 'x'"),
        (positive_float, "0", "must be a finite number > 0, got 0.0"),
        (positive_float, "inf", "must be a finite number > 0, got inf"),
        (non_negative_float, "-0.5", "must be a finite number >= 0, got -0.5"),
        (non_negative_float, "nan", "must be a finite number >= 0, got nan"),
    ],
)
def test_bounded_types_refuse_with_the_bound(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=f"^{message}$"):
        parse(text)


@pytest.mark.parametrize(
    "parse, text, value",
    [(at_least(0), "0", 0), (at_least(1), "7", 7), (positive_float, "1e-3", 1e-3), (non_negative_float, "0", 0.0)],
)
def test_bounded_types_accept_the_bound(parse, text, value):
    assert parse(text) == value


def test_graph_flags_are_bounded_in_one_line(capsys):
    assert main(["graph", "table", "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "pyro-vae: error: --epochs must be at least 1, got 0\n"


@pytest.mark.slow
def test_startup_benchmark_reports_both_sides(tmp_path, capsys):
    out = tmp_path / "startup.json"
    assert main(["benchmark", "--startup", "--rounds", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["ratio"] == pytest.approx(result["cli_cpu_s"] / result["import_cpu_s"])
    assert len(result["times"]["cli"]) == len(result["times"]["import"]) == 1
    assert "pyro-vae --help" in capsys.readouterr().out


def test_a_registered_experiment_is_a_subcommand(user_module, capsys):
    """A new experiment registers its flags and its function; the parser is not edited."""
    user_module(
        "my_experiment",
        (
            "from pyro_vae.cli import register_command\n"
            "from pyro_vae.cli.args import positive_int\n"
            "def add(p):\n"
            "    p.add_argument('--repeats', type=positive_int, default=1)\n"
            "def run(args):\n"
            "    print('hello ' * args.repeats)\n"
            "register_command('hello', add, run, help='say hello')\n"
        ),
    )
    assert main(["--import", "my_experiment", "hello", "--repeats", "2"]) == 0
    assert capsys.readouterr().out == "hello hello \n"
    assert main(["--import", "my_experiment", "hello", "--repeats", "0"]) == 2
    assert capsys.readouterr().err == "pyro-vae: error: --repeats must be at least 1, got 0\n"
    with pytest.raises(SystemExit):
        main(["--import", "my_experiment", "--help"])
    assert "say hello" in capsys.readouterr().out
