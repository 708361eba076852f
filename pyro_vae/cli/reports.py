"""What the commands print of what they write: a run's test report and figures (``train``,
``evaluate``, ``plot``), and the files a study writes into its folder (:func:`report_written`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pyro_vae.cli.commands import machine
from pyro_vae.files import atomic_write_json
from pyro_vae.training.distributed import SINGLE, DistributedContext
from pyro_vae.training.kinds import run_kind


def final_report(run, run_dir: Path, distributed: DistributedContext = SINGLE, **options) -> dict:
    """The final evaluation of ``run`` as its kind of run gives it
    (:meth:`~pyro_vae.training.kinds.RunKind.report`, which takes ``options``: for data points the
    test ELBO and log p(x) at K importance samples, for a graph the test AUC and AP), printed, then
    written into ``run_dir`` (a failed write loses nothing printed); rank 0 alone prints and writes."""
    report, path, line = run_kind(run.config).report(run, run_dir, distributed=distributed, **options)
    return write_report(report, path, line, distributed)


def write_report(report: dict, path: Path, line: str, distributed: DistributedContext = SINGLE) -> dict:
    """Print ``line -> path``, then write ``report`` with the machine's description at ``path`` (a
    failed write loses nothing printed); rank 0 alone prints and writes. Returns what is written."""
    report = {**report, "machine": machine()}

    def write() -> None:
        print(f"{line} -> {path}", flush=True)
        atomic_write_json(path, report)

    distributed.on_main(write)
    return report


def write_run_figures(run, out_dir: Path, names: Sequence[str] | None = None, progress: bool = False) -> None:
    """Write the run's figures (``progress``: a bar over them), then print one line naming the
    figures not drawn and why, and the path of each figure written; a run whose kind has no
    figures (a graph run) gets that one line."""
    from pyro_vae.plots import write_figures

    reason = run_kind(run.config).refuses.get("figures")
    if reason and not names:
        print(f"figures not drawn: {reason}")
        return
    skipped: list[str] = []

    def skip(name: str, reason: str) -> None:
        skipped.append(f"{name} ({reason})")

    paths = write_figures(run, out_dir, names=names, skipped=skip, progress=progress)
    if skipped:
        print(f"figures not drawn: {'; '.join(skipped)}")
    for path in paths:
        print(f"wrote {path}")


def _stamps(folder: Path) -> dict[Path, tuple[int, int]]:
    """The files directly in ``folder`` with their inode and modification time (an atomic
    rewrite is a new inode)."""
    if not folder.is_dir():
        return {}
    return {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in folder.iterdir() if path.is_file()}


@contextmanager
def report_written(folder: Path) -> Iterator[None]:
    """After the block, print ``wrote PATH`` for each file directly in ``folder`` that it created or
    replaced (a study's closing lines: what it wrote where)."""
    before = _stamps(Path(folder))
    yield
    for path, stamp in sorted(_stamps(Path(folder)).items()):
        if before.get(path) != stamp:
            print(f"wrote {path}")
