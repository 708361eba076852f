"""Write ``docs/api/inventories/*.inv``, the intersphinx inventories through which the API reference
links to torch, Pyro and the other libraries, without the network: ``uv run python docs/api/make_inventories.py``.

An inventory (Sphinx's format, version 2: four header lines, then zlib-compressed lines
``name domain:role priority uri display-name``) maps a documented name to its address on a site.
Sphinx fetches the real ones from each site when the reference is built; ours is built offline
(the tests, CI), so it reads these, written from the names listed in :data:`SITES` and each
site's URL patterns. Each name is imported: its role (module, class, exception, function, data) is
read off the object, and it is entered twice where Python names it otherwise where it is defined
(``torch.nn.modules.module.Module`` for ``torch.nn.Module``: the name autodoc writes for a type
hint), both pointing at the site's page. Only names the reference uses are listed: when the
nitpicky build (tests/test_api_docs.py) reports a missing one, add it here and rerun.
"""

from __future__ import annotations

import importlib
import inspect
import platform
import zlib
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

INVENTORIES = Path(__file__).resolve().parent / "inventories"


def find(name: str) -> object:
    """The object named ``name``: a module, or an attribute of the longest importable module before it."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(f"{name} is not importable; correct it in SITES of {__file__}")


def subclasses(module: str, base: str) -> list[str]:
    """The public classes of ``module`` that subclass ``base`` (itself excluded), by full name."""
    namespace, base_class = vars(importlib.import_module(module)), find(base)
    return sorted(
        f"{module}.{name}"
        for name, obj in namespace.items()
        if not name.startswith("_") and inspect.isclass(obj) and issubclass(obj, base_class) and obj is not base_class
    )


@dataclass(frozen=True)
class Site:
    """The documentation of one project at ``url``: ``pages`` maps a page to the names documented
    on it. A page's ``{name}`` is the documented name and ``{module}`` the module part of it; the
    anchor is the name (``module-NAME`` for a module), unless the page gives its own after ``#``.
    ``distribution`` is the installed package whose version the header records (None: Python)."""

    url: str
    distribution: str | None
    pages: dict[str, list[str]]

    @property
    def version(self) -> str:
        return version(self.distribution) if self.distribution else platform.python_version()


#: The sites by project: conf.py's ``intersphinx_mapping``.
SITES: dict[str, Site] = {
    "python": Site(
        "https://docs.python.org/3/",
        None,
        {
            "library/{module}.html": [
                "argparse.ArgumentParser",
                "argparse.Namespace",
                "collections.abc.Callable",
                "collections.abc.Iterable",
                "collections.abc.Iterator",
                "collections.abc.Mapping",
                "collections.abc.Sequence",
                "contextlib.nullcontext",
                "functools.partial",
                "io.BufferedIOBase",
                "os.PathLike",
                "pathlib.Path",
                "types.ModuleType",
            ],
        },
    ),
    "torch": Site(
        "https://pytorch.org/docs/stable/",
        "torch",
        {
            "tensors.html": ["torch.Tensor"],
            "tensor_attributes.html": ["torch.device"],
            "optim.html": ["torch.optim", "torch.optim.Optimizer"],
            "optim.html#how-to-adjust-learning-rate": ["torch.optim.lr_scheduler"],
            "distributions.html": [
                "torch.distributions.categorical.Categorical",
                "torch.distributions.distribution.Distribution",
                "torch.distributions.independent.Independent",
            ],
            "generated/{name}.html": [
                "torch.Generator",
                "torch.nn.Linear",
                "torch.nn.Module",
                "torch.nn.ModuleDict",
                "torch.nn.Sequential",
                "torch.nn.parameter.Parameter",
                "torch.nn.utils.clip_grad_norm_",
                "torch.optim.lr_scheduler.LRScheduler",
                # every optimizer and schedule, as the library takes any of them by class name
                *subclasses("torch.optim", "torch.optim.Optimizer"),
                *subclasses("torch.optim.lr_scheduler", "torch.optim.lr_scheduler.LRScheduler"),
            ],
        },
    ),
    "pyro": Site(
        "https://docs.pyro.ai/en/stable/",
        "pyro-ppl",
        {
            "distributions.html": [
                "pyro.distributions.Bernoulli",
                "pyro.distributions.Independent",
                "pyro.distributions.MixtureSameFamily",
                "pyro.distributions.OneHotCategorical",
                "pyro.distributions.TorchDistribution",
            ],
            "inference_algos.html": [
                "pyro.infer.elbo.ELBO",
                "pyro.infer.rws.ReweightedWakeSleep",
                "pyro.infer.svi.SVI",
                "pyro.infer.trace_elbo.Trace_ELBO",
                "pyro.infer.trace_mean_field_elbo.TraceMeanField_ELBO",
            ],
            "nn.html": ["pyro.nn.module.PyroModule"],
            "ops.html": ["pyro.ops.integrator.velocity_verlet"],
            "poutine.html": [
                "pyro.poutine.Trace",
                "pyro.poutine.indep_messenger.CondIndepStackFrame",
                "pyro.poutine.messenger.Messenger",
                "pyro.poutine.runtime.Message",
            ],
            "primitives.html": ["pyro.primitives.plate"],
        },
    ),
    "numpy": Site("https://numpy.org/doc/stable/", "numpy", {"reference/generated/{name}.html": ["numpy.ndarray"]}),
    "scipy": Site(
        "https://docs.scipy.org/doc/scipy/", "scipy", {"reference/generated/{name}.html": ["scipy.sparse.csr_matrix"]}
    ),
    "matplotlib": Site(
        "https://matplotlib.org/stable/", "matplotlib", {"api/_as_gen/{name}.html": ["matplotlib.figure.Figure"]}
    ),
    "torch_geometric": Site(
        "https://pytorch-geometric.readthedocs.io/en/latest/",
        "torch-geometric",
        {"generated/{name}.html": ["torch_geometric.datasets.Planetoid", "torch_geometric.transforms.RandomLinkSplit"]},
    ),
}


def role(obj: object) -> str:
    """The Python domain role of ``obj``: ``py:module``, ``py:exception``, ``py:class``, ``py:function`` or ``py:data``."""
    if inspect.ismodule(obj):
        return "py:module"
    if inspect.isclass(obj):
        return "py:exception" if issubclass(obj, BaseException) else "py:class"
    return "py:function" if inspect.isroutine(obj) else "py:data"


def entries(project: str) -> list[str]:
    """The inventory lines of ``project``, sorted: each listed name, and the name of its definition
    where that differs, with its role and address."""
    lines = set()
    for page, names in SITES[project].pages.items():
        for name in names:
            obj = find(name)
            path, _, anchor = page.format(name=name, module=name.rpartition(".")[0]).partition("#")
            uri = f"{path}#{anchor or ('module-' if inspect.ismodule(obj) else '') + name}"
            defined = obj.__name__ if inspect.ismodule(obj) else f"{obj.__module__}.{obj.__qualname__}"
            for alias in {name, defined}:
                lines.add(f"{alias} {role(obj)} 1 {uri} -")
    return sorted(lines)


def inventory(project: str) -> bytes:
    """The inventory file of ``project``: its header, then its :func:`entries`, compressed."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {SITES[project].version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    return header.encode() + zlib.compress("".join(line + "\n" for line in entries(project)).encode(), 9)


def main() -> None:
    INVENTORIES.mkdir(exist_ok=True)
    for project in SITES:
        path = INVENTORIES / f"{project}.inv"
        path.write_bytes(inventory(project))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
