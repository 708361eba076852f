"""The documentation cannot rot: every Python example of docs/extending.md runs, every
relative link of the README and docs/ points at a file (and heading) that exists, every
``pyro-vae`` command of their code blocks parses, and every ``pyro_vae`` name and path they
mention exists. docs/results-log.md, a history, keeps the commands and names of its day."""

import contextlib
import importlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTENDING = ROOT / "docs" / "extending.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

CODE_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.M)
FENCE = re.compile(r"^```.*?^```$", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    """The bodies of the ```python blocks of a markdown file, in order."""
    return CODE_BLOCK.findall(path.read_text())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file's headings (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        result.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return result


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` whose file or heading anchor does not exist."""
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(f"{target} (no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path})")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target} (no heading #{anchor} in {path.name})")
    return broken


def test_slug_follows_github():
    assert slug("The compiled step (`train --jit`)") == "the-compiled-step-train---jit"
    assert slug("IWAE and DReG gradients: SNR against the number of samples K") == (
        "iwae-and-dreg-gradients-snr-against-the-number-of-samples-k"
    )


def test_extending_has_one_runnable_example_per_kind():
    blocks = python_blocks(EXTENDING)
    kinds = [
        "register_model",
        "joint",
        "register_estimator",
        "register_algorithm",
        "DATASETS.register",
        "EarlyStopping",
        "def estimator_table",
    ]
    assert len(blocks) == len(kinds)
    for block, kind in zip(blocks, kinds):
        assert kind in block


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(python_blocks(EXTENDING))))
def test_extending_example_runs(index, tmp_path):
    """Each block runs on its own, in a fresh interpreter (its registrations do not leak
    into the test session), from an empty folder, and writes the run folders it names."""
    block = python_blocks(EXTENDING)[index]
    script = tmp_path / f"example{index}.py"
    script.write_text(block)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYRO_VAE_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"example {index} of {EXTENDING.name} failed:\n{block}\n{result.stderr[-3000:]}"
    assert result.stdout.strip(), "every example prints what it made"
    for name in re.findall(r'"runs/([\w-]+)"', block):
        assert list((tmp_path / "runs" / name).rglob("checkpoint.pt")), f"no run folder in runs/{name}"


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_relative_links_resolve(page):
    assert broken_links(page) == []


def test_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n[ok](#top) [gone](missing.md) [bad anchor](page.md#nowhere)\n")
    assert broken_links(page) == [
        "missing.md (no file " + str(tmp_path / "missing.md") + ")",
        "page.md#nowhere (no heading #nowhere in page.md)",
    ]


def test_the_version_is_the_changelogs_latest_release():
    """pyproject.toml's version is the newest release the changelog describes (semantic versioning)."""
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert releases and releases[0] == version, (version, releases[:2])


# --- commands and names ---------------------------------------------------------------------
CURRENT = [page for page in PAGES if page.name != "results-log.md"]
FENCE_LINE = re.compile(r"^\s*```")
#: ``pyro-vae ARGS`` (``uv run``, environment variables before it) or ``... -m pyro_vae ARGS`` (torchrun).
COMMAND = re.compile(r"(?:^(?:\w+=\S+\s+)*(?:uv run\s+)?pyro-vae|\s-m\s+pyro_vae)\s+(.*)$")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")  # N, L, RUN_DIR: a value the reader fills in
OPTIONAL = re.compile(r"\[([^\]]*)\]")  # [--marginal]: an optional flag; [changes below]: prose
COMPONENTS = sorted(
    p.stem for p in (ROOT / "pyro_vae").iterdir() if (p.suffix == ".py" or p.is_dir()) and not p.name.startswith("_")
)
#: A dotted name of the package: ``pyro_vae.x.y`` anywhere, or ``x.y.z`` (two dots at least, from a
#: component of the package) as a whole inline code span; and a path ``pyro_vae/x/y.py``.
DOTTED = re.compile(r"(?<![\w./-])(pyro_vae(?:\.\w+)+)")
SHORT_DOTTED = re.compile(r"`((?:%s)(?:\.\w+){2,})(?:\(\))?`" % "|".join(COMPONENTS))
PACKAGE_PATH = re.compile(r"(?<![\w./-])(pyro_vae/[\w/.-]*[\w/])")


def code_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, line)`` of the code of a markdown text (fenced blocks and blocks indented by
    four spaces), a line ending in ``\\`` joined with the next."""
    lines, fenced, pending = [], False, None
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE_LINE.match(line):
            fenced = not fenced
            continue
        if not (fenced or line.startswith("    ")):
            continue
        number, line = (pending[0], f"{pending[1]} {line.strip()}") if pending else (number, line.strip())
        pending = (number, line[:-1].rstrip()) if line.endswith("\\") else None
        if pending is None:
            lines.append((number, line))
    return lines


def commands(page: Path) -> list[tuple[int, list[str]]]:
    """The ``pyro-vae`` commands of ``page``'s code blocks as ``(line, argv)``: comments dropped, an
    optional ``[--flag value]`` kept, bracketed prose (``[changes below]``) dropped, and each
    placeholder (an upper-case word: ``N``, ``RUN_DIR``) replaced by ``1``, a valid count, seed or
    path (so a placeholder for a choice, ``--model NAME``, fails: show a real name there). Commands
    with ``--import`` are left out: they need the reader's own module."""
    found = []
    for number, line in code_lines(page.read_text()):
        match = COMMAND.search(line)
        if match is None:
            continue
        text = OPTIONAL.sub(lambda m: m.group(1) if m.group(1).startswith("-") else "", match.group(1))
        argv = ["1" if PLACEHOLDER.match(word) else word for word in shlex.split(text, comments=True)]
        if "--import" not in argv:
            found.append((number, argv))
    return found


def parse_error(argv: list[str]) -> str | None:
    """What the ``pyro-vae`` parser says against ``argv`` (its one error line), ``None`` where it parses;
    nothing runs."""
    from pyro_vae.cli.main import UsageError, build_parser

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            build_parser().parse_args(argv)
    except UsageError:
        return stderr.getvalue().strip()
    return None


@pytest.mark.parametrize("page", CURRENT, ids=[p.relative_to(ROOT).as_posix() for p in CURRENT])
def test_commands_parse(page):
    failing = [
        f"line {number}: pyro-vae {shlex.join(argv)}: {error}"
        for number, argv in commands(page)
        if (error := parse_error(argv)) is not None
    ]
    assert not failing, "\n".join(failing)


def test_the_main_pages_have_commands():
    for name in ("README.md", "docs/reproduction.md", "docs/results.md"):
        assert commands(ROOT / name), name


def test_command_extraction_and_a_bad_command(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Run `pyro-vae train --model NAME` inline (not a block).\n\n"
        "```bash\nuv run pyro-vae train --num-labels N \\\n    --seed S   # a comment\n"
        "uv run torchrun --nproc_per_node 2 -m pyro_vae evaluate RUN_DIR -k 5 [--marginal]\n"
        "pyro-vae --import mine train --model mine\n```\n\n"
        "    pyro-vae train --lr 1e-3 [changes below]\n"
        "    pyro-vae train --estimator no-such-estimator\n"
    )
    assert commands(page) == [
        (4, ["train", "--num-labels", "1", "--seed", "1"]),
        (6, ["evaluate", "1", "-k", "5", "--marginal"]),
        (10, ["train", "--lr", "1e-3"]),
        (11, ["train", "--estimator", "no-such-estimator"]),
    ]
    assert [parse_error(argv) is None for _, argv in commands(page)] == [True, True, True, False]
    assert "no-such-estimator" in parse_error(["train", "--estimator", "no-such-estimator"])


def resolves(name: str) -> bool:
    """Whether the dotted ``name`` (``pyro_vae.`` optional) is a module of the package or an
    attribute of one."""
    parts = name.removeprefix("pyro_vae.").split(".")
    for split in range(len(parts), -1, -1):
        try:
            obj = importlib.import_module(".".join(["pyro_vae", *parts[:split]]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            if not hasattr(obj, attribute):
                return False
            obj = getattr(obj, attribute)
        return True
    return False


def missing_names(page: Path) -> list[str]:
    """The ``pyro_vae`` dotted names and paths of ``page`` that do not exist."""
    text = page.read_text()
    names = {*DOTTED.findall(text), *SHORT_DOTTED.findall(text)}
    paths = set(PACKAGE_PATH.findall(text))
    return sorted(
        [name for name in names if not resolves(name)] + [path for path in paths if not (ROOT / path).exists()]
    )


@pytest.mark.parametrize("page", CURRENT, ids=[p.relative_to(ROOT).as_posix() for p in CURRENT])
def test_named_modules_attributes_and_files_exist(page):
    assert missing_names(page) == []


def test_a_missing_name_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "`pyro_vae.training.TrainConfig`, pyro_vae.models.vae.VAE, `training.loop.train`, `data.x_shape`; "
        "`pyro_vae.training.NoSuch`, `inference.svi.SVIAlgorithm`, pyro_vae/models/vae.py, "
        "pyro_vae/models/registry.py, pyro_vae/nowhere/\n"
    )
    assert missing_names(page) == [
        "inference.svi.SVIAlgorithm",
        "pyro_vae.training.NoSuch",
        "pyro_vae/models/registry.py",
        "pyro_vae/nowhere/",
    ]
