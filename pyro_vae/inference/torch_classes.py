"""A registry that also resolves the class names of a torch module: ``NAdam``, ``OneCycleLR``.

:class:`TorchClassRegistry` holds the names registered as usual (``adam``, ``cosine``) and, beyond
them, every public subclass of a base class in a torch module, by its class name
(:func:`public_subclasses`): ``OPTIMIZERS["NAdam"]`` is :class:`torch.optim.NAdam`. A class the
trainer cannot use (LBFGS, whose step needs a closure) is left out with the reason, which a
lookup of its name gives; a registered name may stand in for a class (``ReduceLROnPlateau`` is
the registered ``plateau``, which fixes how the trainer feeds it). The command line takes its
choices and help from :meth:`~TorchClassRegistry.names` and :meth:`~TorchClassRegistry.describe`,
so ``--optimizer NAdam`` is a choice like ``--optimizer adam``.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import TypeVar

from pyro_vae.registry import Registry

T = TypeVar("T")


def public_subclasses(module: ModuleType, base: type) -> dict[str, type]:
    """The public classes of ``module`` that subclass ``base`` (``base`` itself left out), by name,
    in case-insensitive alphabetical order."""
    found = {
        name: obj
        for name, obj in vars(module).items()
        if isinstance(obj, type) and issubclass(obj, base) and obj is not base and not name.startswith("_")
    }
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


class TorchClassRegistry(Registry[T]):
    """The registered names of one kind, then the classes of a torch module by their class names.

    :param kind: what the names name (``"optimizer"``), for errors.
    :param where: the module's name for people (``"torch.optim"``).
    :param classes: the classes offered by class name (:func:`public_subclasses`).
    :param adapt: the entry of a class (the class itself, or a factory around it); called once per class.
    :param unusable: class names left out, each with why (``{"LBFGS": "its step needs a closure ..."}``).
    :param stand_ins: class names whose entry is a registered name's (``{"ReduceLROnPlateau": "plateau"}``).
    """

    def __init__(
        self,
        kind: str,
        where: str,
        classes: Mapping[str, type],
        adapt: Callable[[type], T],
        unusable: Mapping[str, str] | None = None,
        stand_ins: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(kind)
        self.where = where
        self.unusable = dict(unusable or {})
        self.classes = {name: cls for name, cls in classes.items() if name not in self.unusable}
        self.stand_ins = dict(stand_ins or {})
        self.adapt = functools.cache(adapt)

    def registered(self) -> list[str]:
        """The names registered (not the class names), in registration order."""
        return super().names()

    def names(self) -> list[str]:
        """The registered names, then the class names."""
        return [*self.registered(), *self.classes]

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or (isinstance(name, str) and name in self.classes)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __getitem__(self, name: str) -> T:
        if super().__contains__(name):
            return super().__getitem__(name)
        if isinstance(name, str) and name in self.stand_ins:
            return super().__getitem__(self.stand_ins[name])
        if isinstance(name, str) and name in self.classes:
            return self.adapt(self.classes[name])
        raise ValueError(self._unknown(name))

    def _unknown(self, name: object) -> str:
        """The one-line error of a name that is neither registered nor a usable class's."""
        if isinstance(name, str) and name in self.unusable:
            return f"{self.kind} {name!r} ({self.where}.{name}) cannot train here: {self.unusable[name]}"
        spellings: dict[str, list[str]] = {}
        for offered in self.names():  # adam and Adam: one spelling to compare, both to name
            spellings.setdefault(offered.lower(), []).append(offered)
        close = difflib.get_close_matches(name.lower(), list(spellings), n=3) if isinstance(name, str) else []
        hint = f"; did you mean {' or '.join(repr(n) for c in close for n in spellings[c])}?" if close else ""
        return (
            f"unknown {self.kind} {name!r}; expected one of {self.registered()} or a class of "
            f"{self.where} by its name: {list(self.classes)}{hint}"
        )

    def help(self, name: str) -> str:
        if super().__contains__(name):
            return super().help(name)
        self[name]
        return f"{self.where}.{self.stand_ins.get(name, name)}"

    def describe(self) -> str:
        """The registered names with their help, then the class names (for ``--help``)."""
        return f"{super().describe()}; or any class of {self.where} by its name: {', '.join(self.classes)}"
