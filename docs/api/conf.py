"""Sphinx configuration of the API reference: ``uv run sphinx-build -W -E -b html docs/api docs/api/_build``.

A package page is one ``.. package::`` directive (defined here): a section for the package and
for every module under it, found when the reference is built, with the public objects that
module defines itself; so each object is documented once, where it is defined, and a module that
moves or splits takes its section with it (no page lists modules or names by hand). The
``.. public-api::`` directive lists ``pyro_vae.__all__`` with links to those definitions. A name
in ``__all__`` without a docstring is a warning, so ``-W`` fails on it. Nothing is fetched from
the network (no intersphinx).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

project = "pyro_vae"
author = "pyro_vae developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_build"]
html_theme = "alabaster"  # ships with Sphinx

# The docstrings are reST (``:param x:`` fields, prose with the math in double backticks), which
# autodoc renders as they are; napoleon reads Google-style sections (``Args:``, ``Returns:``),
# none of which the code has today, so that one added later renders too. No NumPy style.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"

logger = logging.getLogger(__name__)


def modules_under(name: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """``name`` and every module below it, recursively, but neither private ones (``_x``,
    ``__main__``) nor those at or below a name in ``exclude``."""
    package = importlib.import_module(name)
    found = [name]
    if hasattr(package, "__path__"):
        found += sorted(m.name for m in pkgutil.walk_packages(package.__path__, name + "."))
    return [m for m in found
            if not any(part.startswith("_") for part in m.split("."))
            and not any(m == x or m.startswith(x + ".") for x in exclude)]


@cache
def definitions(module_name: str) -> dict[str, Any]:
    """The public objects that the module ``module_name`` defines itself, in source order: classes
    and functions whose ``__module__`` it is, and names it assigns at top level (constants,
    registries, aliases such as ``register_model = MODELS.register``); restricted to its
    ``__all__`` where it has one."""
    module = importlib.import_module(module_name)
    source = inspect.getsource(module)
    public = getattr(module, "__all__", [n for n in vars(module) if not n.startswith("_")])
    found = {}
    for name in public:
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            continue
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == module_name:
            found[name] = obj
        elif not (inspect.isclass(obj) or inspect.isfunction(obj)) and re.search(
                rf"^{re.escape(name)}\s*(:[^=\n]*)?=", source, re.MULTILINE):
            found[name] = obj
    def line(name: str) -> int:
        where = re.search(rf"^(?:class |def |async def )?{re.escape(name)}\b", source, re.MULTILINE)
        return where.start() if where else len(source)
    return dict(sorted(found.items(), key=lambda item: line(item[0])))


def docstring(module_name: str, name: str, obj: Any) -> str:
    """The docstring of ``obj``, defined as ``name`` in ``module_name``: the ``#:`` comment before
    (or the string after) its assignment, else its own for a class, function or method."""
    comments = ModuleAnalyzer.for_module(module_name).find_attr_docs()
    if ("", name) in comments:
        return "\n".join(comments["", name]).strip()
    if inspect.isclass(obj) or inspect.isroutine(obj):
        return inspect.getdoc(obj) or ""
    return ""


def owner(module_name: str, name: str) -> str:
    """The module that defines the object ``module_name.name``: the deepest of its top-level
    package that has it among its :func:`definitions`."""
    obj = getattr(importlib.import_module(module_name), name)
    owners = [m for m in modules_under(module_name.split(".")[0]) if definitions(m).get(name, None) is obj]
    return max(owners, key=lambda m: m.count("."), default=module_name)


def check_documented(module_name: str, location: Any) -> None:
    """Warn about every name in the ``__all__`` of ``module_name`` without a docstring."""
    module = importlib.import_module(module_name)
    for name in getattr(module, "__all__", []):
        defined_in = owner(module_name, name)
        if not docstring(defined_in, name, getattr(module, name)):
            logger.warning(f"{module_name}.{name} (defined in {defined_in}) has no docstring", location=location)


def directive_for(module_name: str, name: str, obj: Any) -> list[str]:
    """The autodoc directive for one definition: its kind, with its members for a class, and a
    constant's value only where it is short."""
    target = f"{module_name}.{name}"
    if inspect.isclass(obj):
        kind = "exception" if issubclass(obj, BaseException) else "class"
        return [f".. auto{kind}:: {target}", "   :members:", "   :show-inheritance:", ""]
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        return [f".. autofunction:: {target}", ""]
    return [f".. autodata:: {target}"] + (["   :no-value:"] if len(repr(obj)) > 60 else []) + [""]


class Package(SphinxDirective):
    """``.. package:: NAME`` (option ``:exclude:``, the names documented on other pages): a section
    per module under ``NAME`` with its docstring and its documented :func:`definitions` (every class
    and function); a name in a module's ``__all__`` without a docstring is a warning."""

    required_arguments = 1
    option_spec = {"exclude": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        lines = []
        for module in modules_under(self.arguments[0], tuple(self.options.get("exclude", "").split())):
            lines += [f"``{module}``", "-" * (len(module) + 4), "", f".. automodule:: {module}", ""]
            check_documented(module, self.get_location())
            for name, obj in definitions(module).items():
                if inspect.isclass(obj) or inspect.isroutine(obj) or docstring(module, name, obj):
                    lines += directive_for(module, name, obj)
        node = nodes.section()
        nested_parse_with_titles(self.state, StringList(lines, self.get_source_info()[0]), node)
        return node.children


class PublicAPI(SphinxDirective):
    """``.. public-api:: MODULE``: a list of ``MODULE.__all__``, each name linked to where it is
    defined (its :func:`owner`), with the first paragraph of its docstring."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module = importlib.import_module(self.arguments[0])
        lines = []
        for name in module.__all__:
            defined_in = owner(module.__name__, name)
            summary = docstring(defined_in, name, getattr(module, name)).split("\n\n")[0].replace("\n", " ")
            lines.append(f"* :py:obj:`{name} <{defined_in}.{name}>`: {summary}")
        node = nodes.container()
        self.state.nested_parse(StringList(lines, self.get_source_info()[0]), self.content_offset, node)
        return [node]


def setup(app):
    app.add_directive("package", Package)
    app.add_directive("public-api", PublicAPI)
