"""Named registries: every model, estimator, algorithm, data set, optimizer and
learning-rate schedule is registered once, by name, and looked up here.

The command line builds its choices and help from the registries, so a name
registered from Python (``@register_model("mine")``) is at once a valid
``--model mine`` (with ``pyro-vae --import mymodule``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # a name a shell passes as is: --model my-model


class Registry(Generic[T]):
    """A mapping from names to objects of one kind, with a help line per name.

    :param kind: what the names name (``"model"``, ``"estimator"``, ...), for errors.
    :param check: raises ``TypeError`` for an object this registry cannot hold (called on registration).
    """

    def __init__(self, kind: str, check: Callable[[str, T], None] | None = None) -> None:
        self.kind = kind
        self._check = check
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}

    @overload
    def register(
        self, name: str, obj: None = None, *, help: str | None = None, replace: bool = False
    ) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, obj: T, *, help: str | None = None, replace: bool = False) -> T: ...
    def register(
        self, name: str, obj: T | None = None, *, help: str | None = None, replace: bool = False
    ) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj``, a decorator that does.

        ``help`` defaults to the first line of the object's docstring.
        Registering a taken name raises ``ValueError`` unless ``replace=True``.
        """

        def add(obj: T) -> T:
            if not isinstance(name, str) or not NAME.match(name):
                raise ValueError(
                    f"a {self.kind} name must be lower-case letters, digits, '-' and '_' ({NAME.pattern}), got {name!r}"
                )
            if self._check is not None:
                self._check(name, obj)
            if name in self._entries and not replace and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered; pass replace=True to replace it")
            self._entries[name] = obj
            doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
            self._help[name] = help if help is not None else (doc[0] if doc else "")
            return obj

        return add if obj is None else add(obj)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of {self.names()}") from None

    def check(self, name: str) -> str:
        """``name`` if registered, else the ``ValueError`` of ``registry[name]``."""
        self[name]
        return name

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:  # an unhashable value (a list, a dict) names nothing
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def help(self, name: str) -> str:
        """The help line of ``name``."""
        self[name]
        return self._help[name]

    def describe(self) -> str:
        """``name: help`` for every entry, one per line (for ``--help``)."""
        return "; ".join(f"{n}: {h.rstrip('.')}" if h else n for n, h in self._help.items())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def declared_member(obj: object, name: str, defaults: Mapping[str, Any], what: str, table: str) -> Any:
    """``obj``'s (or its class's) optional member ``name``, or its default in ``defaults``, the
    table (named ``table``) that declares the optional members of a ``what`` (``"program"``,
    ``"algorithm"``); a name not declared there is refused."""
    if name not in defaults:
        raise AttributeError(
            f"{name!r} is not a declared {what} member; declare it in {table} or use one of {sorted(defaults)}"
        )
    return getattr(obj, name, defaults[name])
