"""The API reference (docs/api) builds nitpicky without a warning (every reference reaches its
target, torch's and Pyro's through the committed inventories), and its directives document each
object once, where it is defined, and refuse a public name without a docstring."""

import runpy
import sys
import zlib
from pathlib import Path

import pytest
from sphinx.cmd.build import build_main

API_DOCS = Path(__file__).resolve().parents[1] / "docs" / "api"
INVENTORIES = runpy.run_path(str(API_DOCS / "make_inventories.py"))


@pytest.mark.slow
def test_api_reference_builds_nitpicky_without_warnings(tmp_path, capsys):
    status = build_main(["-n", "-W", "--keep-going", "-b", "dummy", "-q", str(API_DOCS), str(tmp_path / "out")])
    assert status == 0, capsys.readouterr().err


@pytest.mark.slow  # imports every library the reference links to (torch_geometric alone takes seconds)
@pytest.mark.parametrize("project", sorted(INVENTORIES["SITES"]))
def test_committed_inventory_is_what_make_inventories_writes(project):
    committed = (API_DOCS / "inventories" / f"{project}.inv").read_bytes()
    header, _, compressed = committed.partition(b"zlib.\n")
    assert header.startswith(b"# Sphinx inventory version 2\n")
    assert zlib.decompress(compressed).decode().splitlines() == INVENTORIES["entries"](project)


def test_an_inventory_entry_names_the_definition_and_the_public_name_with_the_site_s_address():
    entries = INVENTORIES["entries"]("torch")
    assert "torch.nn.Module py:class 1 generated/torch.nn.Module.html#torch.nn.Module -" in entries
    assert "torch.nn.modules.module.Module py:class 1 generated/torch.nn.Module.html#torch.nn.Module -" in entries
    assert "torch.optim py:module 1 optim.html#module-torch.optim -" in entries
    assert "torch.optim.Adam py:class 1 generated/torch.optim.Adam.html#torch.optim.Adam -" in entries


EXAMPLE = {
    "__init__.py": '''"""An example package."""
from apidocs_example.shapes import Square

__all__ = ["SIDES", "Square", "area"]

#: The number of sides of a square.
SIDES = 4


def area(side):
    return side * side
''',
    "shapes.py": '''"""Shapes."""


class Square:
    """A square of side s: area s^2."""
''',
    "links.py": '''r"""Links: :class:`Square` (imported here), :class:`~apidocs_example.Square` (re-exported),
:class:`Module` (torch's, imported here), and the area :math:`s^2 = \\sum_i s`."""
from typing import TypeVar

import torch
from torch.nn import Module

from apidocs_example.shapes import Square

__all__ = ["scale"]

T = TypeVar("T")


def scale(x: torch.Tensor, shape: Square, like: T) -> T:
    """``x`` scaled."""
''',
}


@pytest.fixture
def example_docs(tmp_path, monkeypatch):
    """A project documenting the package ``apidocs_example`` with docs/api's configuration."""
    package = tmp_path / "src" / "apidocs_example"
    package.mkdir(parents=True)
    for name, text in EXAMPLE.items():
        (package / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "conf.py").write_text(f"import runpy\nglobals().update(runpy.run_path({str(API_DOCS / 'conf.py')!r}))\n")
    (docs / "index.rst").write_text(
        "Example\n=======\n\n.. public-api:: apidocs_example\n\n.. package:: apidocs_example\n"
    )
    yield docs
    for name in [m for m in sys.modules if m.split(".")[0] == "apidocs_example"]:
        del sys.modules[name]


def test_package_directive_documents_each_definition_once_and_warns_on_a_missing_docstring(
    example_docs, tmp_path, capsys
):
    status = build_main(["-b", "text", "-q", str(example_docs), str(tmp_path / "out")])
    warnings = capsys.readouterr().err
    text = (tmp_path / "out" / "index.txt").read_text()
    assert status == 0
    assert "apidocs_example.area (defined in apidocs_example) has no docstring" in warnings
    assert warnings.count("has no docstring") == 1
    assert text.count("class apidocs_example.shapes.Square") == 1
    assert "apidocs_example.Square" not in text
    assert '* "Square": A square of side s: area s^2.' in text
    assert "apidocs_example.SIDES = 4\n\n   The number of sides of a square." in text


def test_references_resolve_where_python_finds_the_names_and_formulas_render(example_docs, tmp_path, capsys):
    status = build_main(["-n", "-b", "html", "-q", str(example_docs), str(tmp_path / "html")])
    warnings = capsys.readouterr().err
    html = (tmp_path / "html" / "index.html").read_text()
    assert status == 0
    assert "reference target not found" not in warnings
    assert html.count('href="#apidocs_example.shapes.Square"') >= 3  # imported, re-exported, type hint
    assert 'href="https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module"' in html
    assert 'href="https://pytorch.org/docs/stable/tensors.html#torch.Tensor"' in html
    assert r'<span class="math notranslate nohighlight">\(s^2 = \sum_i s\)</span>' in html
    assert "mathjax" in html
