"""The API reference (docs/api) builds without a warning, and its directives document each
object once, where it is defined, and refuse a public name without a docstring."""

import sys
from pathlib import Path

import pytest
from sphinx.cmd.build import build_main

API_DOCS = Path(__file__).resolve().parents[1] / "docs" / "api"


@pytest.mark.slow
def test_api_reference_builds_without_warnings(tmp_path, capsys):
    status = build_main(["-W", "--keep-going", "-b", "dummy", "-q", str(API_DOCS), str(tmp_path / "out")])
    assert status == 0, capsys.readouterr().err


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
