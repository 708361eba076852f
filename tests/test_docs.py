"""The documentation cannot rot: every Python example of docs/extending.md runs, and every
relative link of the README and docs/ points at a file (and heading) that exists."""

import os
import re
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
