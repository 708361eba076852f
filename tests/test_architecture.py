"""The package's layering, read from its source (ast): imports point down.

Every module belongs to a component (its first name under ``pyro_vae``) and every
component to a layer. A module may import its own component and any component of a
lower layer; never one of a higher layer, nor another component of its own layer
(data and models are independent of each other). Files stay below ``MAX_LINES``
unless listed in ``LARGE_ON_PURPOSE`` with the reason.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Set
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pyro_vae"

LAYERS: dict[str, int] = {
    "registry": 0,
    "files": 0,
    "validation": 0,
    "graph_tensors": 0,
    "data": 1,
    "models": 1,
    "inference": 2,
    "training": 3,
    "plots": 4,
    "pretrained": 4,
    "experiments": 5,
    "cli": 6,
    "__init__": 7,
    "__main__": 7,
}
MAX_LINES = 400
LARGE_ON_PURPOSE: dict[str, str] = {}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def component(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_components(path: Path, root: Path = PACKAGE) -> set[str]:
    """The ``pyro_vae`` components that ``path`` (a file under ``root``) imports, by absolute
    and relative imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package_parts = path.relative_to(root.parent).with_suffix("").parts[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                module = ".".join((*base, node.module) if node.module else base)
            else:
                module = node.module or ""
            names = [module] if node.module or node.level else []
            if module == "pyro_vae":  # from pyro_vae import data, models
                names = [f"pyro_vae.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "pyro_vae" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_component_has_a_layer():
    unknown = {component(path) for path in modules()} - set(LAYERS)
    assert not unknown, f"components without a layer in LAYERS: {sorted(unknown)}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path):
    own = component(path)
    wrong = [
        other for other in sorted(imported_components(path) - {own}) if other in LAYERS and LAYERS[other] >= LAYERS[own]
    ]
    assert not wrong, f"{path.relative_to(PACKAGE)} (layer {LAYERS[own]}) imports {wrong} of layer >= its own"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_size(path: Path):
    name = str(path.relative_to(PACKAGE))
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES or name in LARGE_ON_PURPOSE, (
        f"{name} has {lines} lines (> {MAX_LINES}): split it, or list it in LARGE_ON_PURPOSE with the reason"
    )


def test_the_checker_sees_an_upward_import(tmp_path: Path):
    """The import reader finds absolute, relative and ``from pyro_vae import x`` imports."""
    sub = tmp_path / "pyro_vae" / "models"
    sub.mkdir(parents=True)
    module = sub / "bad.py"
    module.write_text("from ..training import loop\nfrom pyro_vae import cli\nimport pyro_vae.experiments.graph\n")
    assert imported_components(module, tmp_path / "pyro_vae") == {"training", "cli", "experiments"}


def private_imports(path: Path) -> list[str]:
    """The private names (``_name``) that ``path`` imports from another ``pyro_vae`` module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("pyro_vae"))
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_is_imported_across_modules(path: Path):
    """A helper two modules share is public in the module that owns it (as ``log_weights`` is
    for evaluation and the importance-weighted estimators), never another module's private one."""
    found = private_imports(path)
    assert not found, f"{path.relative_to(PACKAGE)} imports the private names {found}"


def test_the_checker_sees_a_private_import(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text("from pyro_vae.inference.evaluate import _per_datum, evaluate\nfrom .x import _y\n")
    assert private_imports(module) == ["pyro_vae.inference.evaluate._per_datum", "x._y"]


def documented_layers(text: str) -> dict[str, int]:
    """The components of each layer as the code block under "## Layers" of docs/architecture.md
    lists them: ``N  component component ...  what they hold``."""
    block = text.split("## Layers", 1)[1].split("```", 2)[1]
    layers: dict[str, int] = {}
    for line in block.strip().splitlines():
        number, names = line.split(maxsplit=1)[0], line.split("  ")[1:]
        components = next(part for part in names if part.strip()).split()
        layers.update({name: int(number) for name in components})
    return layers


def test_the_documented_layers_are_the_enforced_ones():
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    assert documented_layers(text) == LAYERS


def kind_branches(path: Path) -> list[str]:
    """Where ``path`` asks which kind of run it has by name: a call of ``data_kind`` or a comparison
    with a kind's name (``"vectors"``, ``"graph"``), instead of asking the kind
    (:class:`~pyro_vae.training.kinds.RunKind`: its methods and ``refuses``)."""
    from pyro_vae.training.kinds import RUN_KINDS

    names = set(RUN_KINDS.names())
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "data_kind":
            found.append(f"line {node.lineno}: data_kind(...)")
        if isinstance(node, ast.Compare):
            constants = [c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
            found += [f"line {node.lineno}: == {value!r}" for value in constants if value in names]
    return found


@pytest.mark.parametrize(
    "path",
    [p for p in modules() if LAYERS[component(p)] > LAYERS["training"]],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_no_branching_on_a_run_kinds_name_above_training(path: Path):
    found = kind_branches(path)
    assert not found, f"{path.relative_to(PACKAGE)} branches on a run kind's name: {found}"


def test_the_checker_sees_a_branch_on_a_kind(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text('if data_kind(config) == "graph":\n    pass\nif kind != "vectors":\n    pass\n')
    assert sorted(kind_branches(module)) == ["line 1: == 'graph'", "line 1: data_kind(...)", "line 3: == 'vectors'"]


READERS = {PACKAGE / "models" / "program.py", PACKAGE / "inference" / "algorithms.py"}


def member_probes(path: Path) -> list[str]:
    """Where ``path`` reads a declared optional member of a program or an algorithm
    (:data:`~pyro_vae.models.program.PROGRAM_DEFAULTS`,
    :data:`~pyro_vae.inference.algorithms.ALGORITHM_DEFAULTS`) with ``getattr(x, "name", ...)`` or
    ``hasattr(x, "name")`` instead of through its reader, which holds the one default."""
    from pyro_vae.inference.algorithms import ALGORITHM_DEFAULTS
    from pyro_vae.models.program import PROGRAM_DEFAULTS

    declared = set(PROGRAM_DEFAULTS) | set(ALGORITHM_DEFAULTS)
    return [
        f"line {node.lineno}: {node.func.id}(..., {node.args[1].value!r})"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "hasattr")
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and node.args[1].value in declared
    ]


@pytest.mark.parametrize("path", [p for p in modules() if p not in READERS], ids=lambda p: str(p.relative_to(PACKAGE)))
def test_declared_members_are_read_through_their_reader(path: Path):
    found = member_probes(path)
    assert not found, (
        f"{path.relative_to(PACKAGE)} reads declared members by name (use member/algorithm_member): {found}"
    )


def test_the_checker_sees_a_probed_member(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text(
        'a = getattr(p, "data_plate_name", "data")\nb = hasattr(c, "compiles")\n'
        'c = getattr(p, "weight", 1)\nd = getattr(p, name, None)\n'
    )
    assert member_probes(module) == [
        "line 1: getattr(..., 'data_plate_name')",
        "line 2: hasattr(..., 'compiles')",
    ]


#: The attributes that hold a component's name: no comparison of one with a string literal
#: (``config.estimator == "score-nvil"``).
NAMED_ATTRIBUTES = ("model", "estimator", "algorithm", "likelihood")
#: Comparisons with a registered name kept on purpose, by module and name, with the reason.
NAMED_ON_PURPOSE: dict[tuple[str, str], str] = {
    ("experiments/reproduce.py", "mcem"): "Figure 3 reruns the paper's three algorithms by name, "
    "MCEM with the paper's smaller sample budget",
}


@functools.cache
def registered_names() -> frozenset[str]:
    """The names of the registered models, estimators, algorithms, likelihoods and sources of
    trained programs."""
    import pyro_vae.pretrained  # noqa: F401  (registers the source "pretrained")
    from pyro_vae.inference import ALGORITHMS, ESTIMATORS
    from pyro_vae.models import MODELS
    from pyro_vae.models.likelihoods import LIKELIHOODS
    from pyro_vae.training.build import PROGRAM_SOURCES

    return frozenset(
        name for registry in (MODELS, ESTIMATORS, ALGORITHMS, LIKELIHOODS, PROGRAM_SOURCES) for name in registry
    )


def name_branches(path: Path, names: Set[str]) -> list[tuple[int, str]]:
    """Where ``path`` branches on a component's name: a comparison (``==``, ``!=``, ``in``, ...)
    of ``x.model``, ``x.estimator``, ``x.algorithm`` or ``x.likelihood`` with a string literal, or
    of anything with one of ``names``; as ``(line, literal)``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        literals = [
            element.value
            for side in sides
            for element in (side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side])
            if isinstance(element, ast.Constant) and isinstance(element.value, str)
        ]
        asks_a_name = any(isinstance(side, ast.Attribute) and side.attr in NAMED_ATTRIBUTES for side in sides)
        found += [(node.lineno, value) for value in literals if asks_a_name or value in names]
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_branching_on_a_components_name(path: Path):
    """A model, estimator, algorithm or likelihood is asked what it can do (a declared member, its
    own check), never which one it is: a user's component with the same limits is then treated
    like the built-in one."""
    module = path.relative_to(PACKAGE).as_posix()
    found = [
        f"line {line}: {value!r}"
        for line, value in name_branches(path, registered_names())
        if (module, value) not in NAMED_ON_PURPOSE
    ]
    assert not found, f"{module} branches on a component's name: {found}"


def test_the_checker_sees_a_branch_on_a_name(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text(
        'if config.estimator == "score-nvil":\n    pass\nif run.config.algorithm != "mine":\n    pass\n'
        'decoder = G() if name == "gaussian" else name\nok = name in ("iwae", "x")\nfine = kind == "sum"\n'
    )
    assert sorted(name_branches(module, {"gaussian", "iwae"})) == [
        (1, "score-nvil"),
        (3, "mine"),
        (5, "gaussian"),
        (6, "iwae"),
    ]


def test_every_name_kept_on_purpose_is_still_compared():
    names = registered_names()
    stale = [
        key for key in NAMED_ON_PURPOSE if key[1] not in {value for _, value in name_branches(PACKAGE / key[0], names)}
    ]
    assert not stale, f"NAMED_ON_PURPOSE lists comparisons that are gone: {stale}"


def parent_bypasses(path: Path) -> list[str]:
    """Where ``path`` calls a method past the class hierarchy: ``super(Cls, self)`` with arguments (which
    skips the classes between) or ``Cls.method(self, ...)`` (which skips ``super()`` altogether)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id == "super" and node.args:
            found.append(f"line {node.lineno}: super({ast.unparse(node.args[0])}, ...)")
        if (
            isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id[:1].isupper()
            and node.args
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id == "self"
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node.func)}(self, ...)")
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_parent_is_bypassed(path: Path):
    """A subclass (M2 of CVAE of VAE, GAE of VGAE) reaches its parents through ``super()`` alone."""
    found = parent_bypasses(path)
    assert not found, f"{path.relative_to(PACKAGE)} calls past the class hierarchy: {found}"


def test_the_checker_sees_a_bypassed_parent(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text(
        "class M2(CVAE):\n    def f(self):\n        super(CVAE, self).f()\n        VAE.model(self, 1)\n"
        "        super().f()\n        self.net.g(self)\n"
    )
    assert sorted(parent_bypasses(module)) == ["line 3: super(CVAE, ...)", "line 4: VAE.model(self, ...)"]
