"""Named, configurable components (suites, learners, encoders) addressed by references like ``knn:k=3``.

A reference is ``NAME`` or ``NAME:OPT=VALUE,OPT=VALUE,FLAG``; options are the keyword arguments of the component's
class, coerced to the types its ``__init__`` annotates. The canonical spelling (sorted options) names results.

Components come from three places, each loaded only when a reference needs it, so that the command line starts
without importing torch:
- built-in entries: a ``module:attr`` target whose options (and the class attributes listings show) are declared
  beside it; tests check every declaration against the real class;
- code outside the package, named by the reference itself: ``MODULE.PATH:CLASS`` or ``FILE.py:CLASS``, with options
  after a second colon (``./my_learner.py:Cosine:scale=2,centre``). The part before the first colon holds a dot or a
  slash, which registry names never do, so the two spellings cannot be confused;
- entry points of installed packages, in the group ``gpicl_bench.<kind>s`` (``gpicl_bench.learners``, …), by name.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, TypeVar

from gpicl_bench.errors import UserError, unknown_name_error

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NOUNS = {bool: "true or false", int: "a whole number", float: "a finite number"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_OUTSIDE_SPELLING = "MODULE.PATH:CLASS or FILE.py:CLASS, options after a second colon"


def names_outside_code(head: str) -> bool:
    """Whether the part of a reference before its first colon names code outside the package (a dotted module path
    or a file) rather than a registry name."""
    return "." in head or "/" in head or "\\" in head


@dataclass(frozen=True)
class Ref:
    """A parsed reference: a registry name (or ``SOURCE:CLASS`` for outside code) plus raw string options."""

    name: str
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Ref:
        text = text.strip()
        name, _, rest = text.partition(":")
        if not name:
            raise UserError(f"empty name in reference {text!r}")
        if names_outside_code(name):
            attribute, _, rest = rest.partition(":")
            if not attribute.isidentifier():
                raise UserError(f"reference {text!r} names code outside the package: write {_OUTSIDE_SPELLING}")
            name = f"{name}:{attribute}"
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


def declared_options(declared: Mapping[str, Any]) -> dict[str, inspect.Parameter]:
    """Options as an entry declares them: each name maps to its default (whose type is the option's type), or to a
    type alone for an option without a default."""
    return {
        name: inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty if isinstance(value, type) else value,
            annotation=value if isinstance(value, type) else type(value),
        )
        for name, value in declared.items()
    }


def signature_options(factory: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """A factory's options read from its signature: every argument that can be given by keyword, annotated with its
    type hint or, where it has none, the type of its default."""
    try:
        hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
    except Exception:  # e.g. a hint naming something imported only for type checkers: fall back to defaults
        hints = {}
    options = {}
    for name, param in inspect.signature(factory).parameters.items():
        if param.kind not in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            continue
        default_type = type(param.default) if param.default is not inspect.Parameter.empty else str
        annotation = hints.get(name, default_type if default_type in (bool, int, float) else str)
        options[name] = param.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=annotation)
    return options


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One component: its factory — or the ``module:attr`` target that loads it on first use — and a description.

    ``declared`` options and ``attributes`` (class attributes such as a suite's splits) are known without loading the
    target; entries without declarations read both from the loaded factory. ``check`` (a ``module:attr`` importing
    nothing heavy) vets option values the same way, before the target loads. ``base`` (a ``module:attr``) is the
    class that outside code must subclass, and ``origin`` says where such code comes from.
    """

    name: str
    target: str | Callable[..., T]
    description: str = ""
    declared: Mapping[str, Any] | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    base: str | None = None
    origin: str = ""
    check: str | None = None

    @functools.cached_property
    def factory(self) -> Callable[..., T]:
        if not isinstance(self.target, str):
            return self.target
        if not self.origin:  # a built-in target
            return load_attribute(self.target)
        loaded = load_outside(self.target, self.origin)
        if self.base is not None:
            base = load_attribute(self.base)
            if not (inspect.isclass(loaded) and issubclass(loaded, base)):
                raise UserError(f"{self.origin} names {loaded!r}, which is not a subclass of {base.__name__}")
        return loaded

    def options(self) -> dict[str, inspect.Parameter]:
        return declared_options(self.declared) if self.declared is not None else signature_options(self.factory)

    def attribute(self, name: str, default: Any = None) -> Any:
        """A class attribute of the component, from the declarations when the entry has them."""
        if self.declared is not None:
            return self.attributes.get(name, default)
        return getattr(self.factory, name, default)

    def describe(self) -> str:
        """The description; for outside code, the first line of its docstring and where it comes from."""
        if self.description:
            return self.description
        summary = (inspect.getdoc(self.factory) or "").partition("\n")[0]
        return f"{summary} (from {self.origin})" if summary else f"from {self.origin}"

    def option_help(self) -> str:
        return ", ".join(
            name if param.default is inspect.Parameter.empty else f"{name}={param.default!r}"
            for name, param in self.options().items()
        )


class Registry(Generic[T]):
    """A name → component table; components take their options as keyword constructor arguments.

    ``group`` is the entry-point group through which installed packages add components, and ``base`` (a
    ``module:attr``) the class their components and outside code must subclass (None: any class).
    """

    def __init__(self, kind: str, group: str, base: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self.base = base
        self._entries: dict[str, Entry[T]] = {}

    def add(
        self,
        name: str,
        target: str | Callable[..., T],
        description: str,
        options: Mapping[str, Any] | None = None,
        check: str | None = None,
        **attributes: Any,
    ) -> None:
        """Register a component: its factory, or a ``module:attr`` target loaded on first use. ``options`` declares
        the target's options so that listing and checking references need not import it (name → default, or a type
        for an option without default); ``check`` names a function that vets their values (called with every option,
        defaults filled in; it raises a UserError); ``attributes`` declares the class attributes readers ask for."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"{self.kind} name {name!r}: use letters, digits, '-' and '_'")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = Entry(name, target, description, options, attributes, check=check)

    @functools.cached_property
    def _installed(self) -> dict[str, Entry[T]]:
        """Components that installed packages declare as entry points; built-in names take precedence."""
        found: dict[str, Entry[T]] = {}
        for point in metadata.entry_points(group=self.group):
            if point.name in self._entries or point.name in found or not _NAME.fullmatch(point.name):
                continue
            package = f"package {point.dist.name} {point.dist.version}" if point.dist is not None else "a package"
            origin = f"entry point {point.name!r} of {package}"
            found[point.name] = Entry(point.name, point.value, base=self.base, origin=origin)
        return found

    def __iter__(self) -> Iterator[Entry[T]]:
        """Built-in components, then installed ones, each sorted by name."""
        yield from sorted(self._entries.values(), key=lambda e: e.name)
        yield from sorted(self._installed.values(), key=lambda e: e.name)

    def entry(self, name: str) -> Entry[T]:
        if name in self._entries:
            return self._entries[name]
        if ":" in name:  # SOURCE:CLASS, as Ref.parse reads outside code
            return _outside_entry(name, self.base)
        if name in self._installed:
            return self._installed[name]
        error = unknown_name_error(self.kind, name, [*self._entries, *self._installed])
        raise UserError(f"{error}; or outside code as MODULE.PATH:CLASS or FILE.py:CLASS")

    def coerce_options(self, ref: Ref) -> dict[str, Any]:
        """The reference's options as typed keyword arguments; unknown options are a user error."""
        params = self.entry(ref.name).options()
        kwargs: dict[str, Any] = {}
        for key, value in ref.options.items():
            if key not in params:
                known = ", ".join(params) or "none"
                raise UserError(f"{self.kind} {ref.name!r} has no option {key!r} (options: {known})")
            kwargs[key] = coerce_option(value, params[key].annotation, f"option {key!r} of {self.kind} {ref.name!r}")
        return kwargs

    def canonical(self, ref: Ref) -> Ref:
        """The reference with typed option values and default-valued options dropped: one spelling per component."""
        params = self.entry(ref.name).options()
        kwargs = self.coerce_options(ref)
        kept = {k: _format(v) for k, v in kwargs.items() if v != params[k].default}
        return Ref(ref.name, kept)

    def check(self, ref: Ref) -> None:
        """Raise the user error that building the reference would meet in its names, option types or (where the
        entry declares a check) option values, without loading the component."""
        entry = self.entry(ref.name)
        kwargs = self.coerce_options(ref)
        if entry.check is not None:
            defaults = {n: p.default for n, p in entry.options().items() if p.default is not inspect.Parameter.empty}
            load_attribute(entry.check)(**{**defaults, **kwargs})

    def build(self, ref: Ref) -> T:
        entry = self.entry(ref.name)
        kwargs = self.coerce_options(ref)
        missing = [n for n, p in entry.options().items() if p.default is inspect.Parameter.empty and n not in kwargs]
        if missing:
            raise UserError(f"{self.kind} {ref.name!r} needs option {', '.join(f'{n}=…' for n in missing)}")
        return entry.factory(**kwargs)


def portable_name(name: str) -> str:
    """A component's name as results record it: outside code in a file is named by the file's name and the first 10
    hex digits of its content's SHA-256 (as checkpoints are), never by its path — the same code is one component
    wherever it lives, and edited code is another. A missing file keeps its path: loading it reports it."""
    source, colon, attribute = name.partition(":")
    path = Path(source)
    if not colon or not _is_file(source) or not path.is_file():
        return name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{path.name}@{digest[:10]}:{attribute}"


def load_attribute(target: str) -> Any:
    """The object a built-in ``module:attr`` target names."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def load_outside(target: str, origin: str) -> Any:
    """The object ``SOURCE:ATTR`` names (a dotted module path or a ``.py`` file; ATTR may be dotted, as entry points
    allow); anything that stops it from loading is a one-line user error naming ``origin``."""
    source, _, attribute = target.partition(":")
    found: Any = _exec_file(Path(source), origin) if _is_file(source) else _import(source, origin)
    for part in attribute.split("."):
        if not hasattr(found, part):
            close = difflib.get_close_matches(part, [n for n in dir(found) if not n.startswith("_")], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"{origin} has no {attribute!r}{hint}")
        found = getattr(found, part)
    return found


@functools.cache
def _outside_entry(name: str, base: str | None) -> Entry[Any]:
    source = name.partition(":")[0]
    origin = f"file {source}" if _is_file(source) else f"module {source}"
    return Entry(name, name, base=base, origin=origin)


def _is_file(source: str) -> bool:
    return source.endswith(".py") or "/" in source or "\\" in source


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _import(module: str, origin: str) -> types.ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is not None and (module + ".").startswith(error.name + "."):  # the module itself is missing
            raise UserError(f"{origin}: no module named {error.name!r} (is it installed, or on PYTHONPATH?)") from None
        raise UserError(f"{origin} fails to import: {_one_line(error)}") from error
    except Exception as error:
        raise UserError(f"{origin} fails to import: {_one_line(error)}") from error


def _exec_file(path: Path, origin: str) -> types.ModuleType:
    """A Python file loaded as a module once per process (under a name made from its resolved path)."""
    if not path.is_file():
        raise UserError(f"{origin}: no such file")
    name = "gpicl_bench_outside_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{origin}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up by their module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise UserError(f"{origin} fails to load: {_one_line(error)}") from error
    return module


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
