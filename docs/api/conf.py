"""Sphinx configuration of the API reference: ``uv run sphinx-build -n -W -E -b html docs/api docs/api/_build``.

A package page is one ``.. package::`` directive (defined here): a section for the package and
for every module under it, found when the reference is built, with the public objects that
module defines itself; so each object is documented once, where it is defined, and a module that
moves or splits takes its section with it (no page lists modules or names by hand). The
``.. public-api::`` directive lists ``pyro_vae.__all__`` with links to those definitions. A name
in ``__all__`` without a docstring is a warning, so ``-W`` fails on it.

The build is nitpicky (``-n``): every cross-reference, the type hints of the signatures included,
must reach its target, so a renamed or moved object breaks the build. A reference resolves as
Python resolves the name: :func:`resolve_python_name` reads a short name (``TrainConfig``) in the
namespace of the module and class it is written in, and a re-exported name
(``pyro_vae.data.DATASETS``) where it is defined. Names of torch, Pyro and the other libraries
link to their sites through intersphinx, from the inventories committed under
``inventories/`` (written by ``make_inventories.py``), so nothing is fetched from the network.
Formulas are ``:math:`` roles (LaTeX), rendered by MathJax in the browser.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
import runpy
import sys
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.ext.intersphinx import missing_reference as intersphinx_missing_reference
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

project = "pyro_vae"
author = "pyro_vae developers"
# The docstrings are reST (``:param x:`` fields, ``:math:`` formulas, prose), which autodoc
# renders as they are. No napoleon: it would read the first line of a data docstring
# ("The models by name: ...") as a type ("The models by name") and link it.
extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx", "sphinx.ext.mathjax"]
exclude_patterns = ["_build"]
html_theme = "alabaster"  # ships with Sphinx
autodoc_member_order = "bysource"
autodoc_typehints = "signature"

nitpicky = True
HERE = Path(__file__).resolve().parent
# Each site's documentation and the local inventory of the names this reference links to there.
intersphinx_mapping = {
    project_name: (site.url, str(HERE / "inventories" / f"{project_name}.inv"))
    for project_name, site in runpy.run_path(str(HERE / "make_inventories.py"))["SITES"].items()
}
# The names with no target, so no link: private names (``_Wrapper``, a base class shown by
# ``:show-inheritance:``), which the reference does not document. (A type variable has none
# either: :func:`resolve_python_name` leaves it unlinked.)
nitpick_ignore_regex = [
    ("py:class", r"pyro_vae(\.\w+)*\._\w+"),
    # typeshed's protocol of a dataclass instance: a name for the type checker, with no page anywhere
    ("py:class", r"DataclassInstance"),
]

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
    defined (its :func:`owner`), with the first paragraph of its docstring, whose references
    resolve where that docstring is written (its module, and its class for a class)."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module = importlib.import_module(self.arguments[0])
        lines, scopes = [], []
        for name in module.__all__:
            defined_in, obj = owner(module.__name__, name), getattr(module, name)
            summary = docstring(defined_in, name, obj).split("\n\n")[0].replace("\n", " ")
            lines.append(f"* :py:obj:`{name} <{defined_in}.{name}>`: {summary}")
            scopes.append({"py:module": defined_in, "py:class": name if inspect.isclass(obj) else None})
        node = nodes.container()
        self.state.nested_parse(StringList(lines, self.get_source_info()[0]), self.content_offset, node)
        for item, scope in zip(node.findall(nodes.list_item), scopes, strict=True):
            for xref in item.findall(addnodes.pending_xref):
                xref.update_all_atts(scope, replace=True)
        return [node]


def python_object(path: str) -> tuple[Any, Any, str] | None:
    """The object at the dotted ``path`` (a module, then attributes), with the object it was read
    from and its name there; None if there is none."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            parent = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for name in parts[split:-1]:
                parent = getattr(parent, name)
            return getattr(parent, parts[-1]), parent, parts[-1]
        except AttributeError:
            return None
    return None


def defined_name(obj: Any, parent: Any, name: str) -> str:
    """The full name of ``obj`` (read as ``name`` from ``parent``) where it is defined, which is
    where it is documented: its own for a module, class or function, else the owner of the
    attribute (the module or base class that assigns it)."""
    if inspect.ismodule(obj):
        return obj.__name__
    if (inspect.isclass(obj) or inspect.isroutine(obj)) and "<" not in getattr(obj, "__qualname__", "<"):
        return f"{obj.__module__}.{obj.__qualname__}"
    if inspect.ismodule(parent):
        return f"{owner(parent.__name__, name) if parent.__name__.startswith('pyro_vae') else parent.__name__}.{name}"
    if inspect.isclass(parent):
        base = next((c for c in parent.__mro__ if name in vars(c)), parent)
        return f"{base.__module__}.{base.__qualname__}.{name}"
    return name


def resolve_python_name(app, env, node, contnode):
    """A ``missing-reference`` handler: resolve a Python reference the domain did not find as
    Python resolves the name where the reference is written (in its class, then its module,
    then as a full path), then look the name of its definition up in this reference and in the
    intersphinx inventories. So ``:class:`TrainConfig``` in ``pyro_vae.training.loop`` reaches
    ``pyro_vae.training.config.TrainConfig``, ``pyro_vae.data.DATASETS`` reaches the module that
    assigns it, and ``Tensor`` imported from torch reaches ``torch.Tensor``. A type variable (the
    ``T`` of ``Registry[T]``) has no page anywhere: it stays plain text."""
    if node.get("refdomain") != "py":
        return None
    target, module, cls = node["reftarget"].lstrip(".~"), node.get("py:module"), node.get("py:class")
    scopes = [f"{module}.{cls}.{target}"] if module and cls else []
    scopes += [f"{module}.{target}"] if module else []
    for path in scopes + [target]:
        found = python_object(path)
        if found is None:
            continue
        if isinstance(found[0], TypeVar):
            return contnode
        name = defined_name(*found)
        xref = node.deepcopy()
        xref["reftarget"], xref["refspecific"] = name, False
        domain = env.get_domain("py")
        resolved = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], name, xref, contnode)
        return resolved or intersphinx_missing_reference(app, env, xref, contnode)
    return None


def factory_defaults(app, what, name, obj, options, signature, return_annotation):
    """An ``autodoc-process-signature`` handler: in a dataclass's signature, a field's default made
    by a factory (which Python shows as ``<factory>``, not an expression, so Sphinx cannot parse the
    signature) shown as the value the factory makes, e.g. ``{}``."""
    if what != "class" or not dataclasses.is_dataclass(obj) or not signature:
        return None
    for field in dataclasses.fields(obj):
        if field.default_factory is not dataclasses.MISSING:
            default = repr(field.default_factory())
            signature = re.sub(rf"(\b{field.name}: [^=]*= ?)<factory>", lambda m: m[1] + default, signature)
    return signature, return_annotation


def foreign_docstring(app, what, name, obj, skip, options):
    """An ``autodoc-skip-member`` handler: skip a method or property without a docstring of its
    own whose inherited one is another library's (torch's ``forward``, Pyro's ``log_prob``),
    which documents that library's method, not ours. One inherited from a base class of ours
    (the protocol it implements) stays."""
    function = getattr(obj, "fget", obj)
    if skip or not inspect.isfunction(function) or function.__doc__ or not inspect.getdoc(obj):
        return None
    owner_class = importlib.import_module(function.__module__)
    for part in function.__qualname__.split(".")[:-1]:
        owner_class = getattr(owner_class, part)
    documented = next(base for base in owner_class.__mro__ if getattr(vars(base).get(name), "__doc__", None))
    return True if not documented.__module__.startswith("pyro_vae") else None


def setup(app):
    app.connect("missing-reference", resolve_python_name)
    app.connect("autodoc-skip-member", foreign_docstring)
    app.connect("autodoc-process-signature", factory_defaults)
    app.add_directive("package", Package)
    app.add_directive("public-api", PublicAPI)
