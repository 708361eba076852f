"""The tutorial notebooks: their committed outputs are clean (no absolute path of the machine that
ran them, no warning, nothing on stderr), and each runs top to bottom in smoke mode (CI set), as
CI does."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "tutorials").glob("*.ipynb"))

# A path of the machine that ran a notebook: a home or work folder, a virtual environment, an
# installed package, a Windows drive.
ABSOLUTE_PATH = re.compile(r"/(?:home|root|work|Users|tmp)/|\.venv\b|site-packages|\b[A-Z]:\\")
# What the warnings module prints: "FILE:LINE: TqdmWarning: MESSAGE".
WARNING = re.compile(r"\b\w*Warning: ")


def shown_texts(nb: nbformat.NotebookNode):
    """Each text a reader of the notebook sees, as (where, text): the cells' sources and the text
    of their outputs (streams, results and displays, tracebacks)."""
    for index, cell in enumerate(nb.cells):
        yield f"cell {index} source", cell.source
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                yield f"cell {index} {output.name}", output.text
            elif output.output_type == "error":
                yield f"cell {index} error", "\n".join(output.traceback)
            else:
                for mime, data in output.get("data", {}).items():
                    if mime.startswith("text/"):
                        yield f"cell {index} {mime}", data


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """What a committed notebook must not show: stderr output, a warning, an absolute path."""
    found = []
    for where, text in shown_texts(nb):
        if where.endswith("stderr"):
            found.append(f"{where}: output on stderr: {text[:200]!r}")
        found += [f"{where}: a warning: {m.group()!r}" for m in WARNING.finditer(text)]
        found += [f"{where}: an absolute path: {m.group()!r}" for m in ABSOLUTE_PATH.finditer(text)]
    return found


def test_there_are_tutorials():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_outputs_are_clean(path):
    found = problems(nbformat.read(path, as_version=4))
    assert not found, "\n".join(found)


def test_problems_finds_stderr_warnings_and_absolute_paths():
    cell = nbformat.v4.new_code_cell("import pyro")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="/x/tqdm/auto.py:21: TqdmWarning: IProgress not found"),
        nbformat.v4.new_output("stream", name="stdout", text="wrote /home/me/runs/vae\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "PosixPath('/work/main/.venv/lib')"}),
    ]
    clean = nbformat.v4.new_code_cell("print(1)")
    clean.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1 warning in the text, runs/vae\n")]
    found = problems(nbformat.v4.new_notebook(cells=[cell, clean]))
    assert found == [
        "cell 0 stderr: output on stderr: '/x/tqdm/auto.py:21: TqdmWarning: IProgress not found'",
        "cell 0 stderr: a warning: 'TqdmWarning: '",
        "cell 0 stdout: an absolute path: '/home/'",
        "cell 0 text/plain: an absolute path: '/work/'",
        "cell 0 text/plain: an absolute path: '.venv'",
    ]


@pytest.mark.slow  # each notebook runs for tens of seconds
@pytest.mark.data
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch, real_data_dir):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PYRO_VAE_DATA", str(real_data_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
