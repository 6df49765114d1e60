"""Named, configurable components (suites, learners) addressed by references like ``knn:k=3`` or ``digits:project``.

A reference is ``NAME`` or ``NAME:OPT=VALUE,OPT=VALUE,FLAG``; options are the keyword arguments of the registered
class, coerced to the types its ``__init__`` annotates. The canonical spelling (sorted options) names results.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gpicl_bench.errors import UserError, unknown_name_error

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NOUNS = {bool: "true or false", int: "a whole number", float: "a finite number"}


@dataclass(frozen=True)
class Ref:
    """A parsed reference: a registry name plus raw string options."""

    name: str
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Ref:
        text = text.strip()
        name, _, rest = text.partition(":")
        if not name:
            raise UserError(f"empty name in reference {text!r}")
        options: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in rest.split(","))):
            key, eq, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not key:
                raise UserError(f"malformed option {item!r} in reference {text!r}")
            if key in options:
                raise UserError(f"option {key!r} given twice in reference {text!r}; give it once")
            options[key] = value.strip() if eq else "true"
        return cls(name, options)

    def __str__(self) -> str:
        if not self.options:
            return self.name
        parts = [k if v == "true" else f"{k}={v}" for k, v in sorted(self.options.items())]
        return f"{self.name}:{','.join(parts)}"


def coerce_option(value: str, annotation: Any, where: str) -> Any:
    """Turn an option's text into the annotated type (bool, int, float, str, or Optional of one)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else str
    try:
        if annotation is bool:
            lowered = value.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(value)
        if annotation in (int, float):
            number = annotation(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
    except ValueError:
        raise UserError(f"{where}: expected {_NOUNS[annotation]}, got {value!r}") from None
    return value


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered component: its factory, a one-line description and the options it takes."""

    name: str
    factory: Callable[..., T]
    description: str

    def options(self) -> dict[str, inspect.Parameter]:
        params = inspect.signature(self.factory).parameters
        return {n: p for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def option_help(self) -> str:
        return ", ".join(
            name if param.default is inspect.Parameter.empty else f"{name}={param.default!r}"
            for name, param in self.options().items()
        )


class Registry(Generic[T]):
    """A name → component table; components take their options as keyword-only constructor arguments."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, description: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = Entry(name, factory, description)
            return factory

        return decorate

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name_error(self.kind, name, self._entries) from None

    def coerce_options(self, ref: Ref) -> dict[str, Any]:
        """The reference's options as typed keyword arguments; unknown options are a user error."""
        entry = self.entry(ref.name)
        params = entry.options()
        hints = typing.get_type_hints(entry.factory.__init__ if inspect.isclass(entry.factory) else entry.factory)
        kwargs: dict[str, Any] = {}
        for key, value in ref.options.items():
            if key not in params:
                known = ", ".join(params) or "none"
                raise UserError(f"{self.kind} {ref.name!r} has no option {key!r} (options: {known})")
            kwargs[key] = coerce_option(value, hints.get(key, str), f"option {key!r} of {self.kind} {ref.name!r}")
        return kwargs

    def canonical(self, ref: Ref) -> Ref:
        """The reference with typed option values and default-valued options dropped: one spelling per component."""
        params = self.entry(ref.name).options()
        kwargs = self.coerce_options(ref)
        kept = {k: _format(v) for k, v in kwargs.items() if v != params[k].default}
        return Ref(ref.name, kept)

    def build(self, ref: Ref) -> T:
        return self.entry(ref.name).factory(**self.coerce_options(ref))


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
