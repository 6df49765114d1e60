"""Benchmark specs: which suites, learners and episode shapes to evaluate, read from TOML and validated up front.

A spec is the whole definition of a run's numbers: two runs of the same spec give the same per-episode results,
whatever the device, batch size or process count. The defaults are the embedded quick benchmark.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpicl_bench import atomic
from gpicl_bench.encoders import encoder_ref
from gpicl_bench.episode_shape import EpisodeShape
from gpicl_bench.errors import UserError
from gpicl_bench.learners.registry import LEARNERS, learner_label
from gpicl_bench.registry import Ref
from gpicl_bench.suites import suite_ref

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

MAX_EPISODES = 2**31 - 1
MAX_SEED = 2**63 - 1  # what HDF5 attributes store
_NOUNS = {int: "a whole number", str: "text"}
_PLURALS = {int: "whole numbers", str: "texts"}


@dataclass(frozen=True)
class Spec:
    """A benchmark: the product of suites × ways × shots × queries × learners, ``episodes`` episodes each."""

    name: str = "quick"
    description: str = "Embedded quick benchmark: unseen projected digits tasks, 5-way 1/5-shot, GPICL vs classics."
    suites: tuple[str, ...] = ("digits:project",)
    optional_suites: tuple[str, ...] = ()  # run where their data are present, skipped with a note elsewhere
    learners: tuple[str, ...] = ("protonet", "knn", "logreg", "gpicl")
    ways: tuple[int, ...] = (5,)
    shots: tuple[int, ...] = (1, 5)
    queries: tuple[int, ...] = (15,)
    episodes: int = 1000
    seed: int = 0
    split: str = "test"
    encoder: str = "pixels"  # turns image suites into features (feature suites such as digits ignore it)
    data_root: str = ""  # where image suites look for their folders (else $GPICL_BENCH_DATA)
    cache_dir: str = ""  # the feature cache (else $GPICL_BENCH_CACHE or ~/.cache/gpicl-bench)

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/\\"):
            raise UserError(f"spec name must be a non-empty name without slashes, got {self.name!r}")
        for field_name in ("suites", "learners", "ways", "shots", "queries"):
            if not getattr(self, field_name):
                raise UserError(f"spec field {field_name!r} is empty")
        if not 1 <= self.episodes <= MAX_EPISODES:
            raise UserError(f"episodes must be between 1 and {MAX_EPISODES}, got {self.episodes}")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"seed must be between 0 and {MAX_SEED}, got {self.seed}")
        for field_name in ("suites", "learners", "ways", "shots", "queries"):  # a setting given twice counts once
            object.__setattr__(self, field_name, tuple(dict.fromkeys(getattr(self, field_name))))
        for way in self.ways:
            for shot in self.shots:
                for query in self.queries:
                    EpisodeShape(way, shot, query)

    def shapes(self) -> Iterator[EpisodeShape]:
        for way in self.ways:
            for shot in self.shots:
                for query in self.queries:
                    yield EpisodeShape(way, shot, query)

    def learner_refs(self) -> dict[str, Ref]:
        """Each learner's label in results (see :func:`learner_label`) and the reference that builds it, in spec
        order; references that name the same learner are one."""
        refs: dict[str, Ref] = {}
        for text in self.learners:
            ref = Ref.parse(text)
            refs.setdefault(learner_label(ref), ref)
        return refs

    def learner_labels(self) -> list[str]:
        return list(self.learner_refs())

    def check_references(self) -> None:
        """Raise the user error that an unknown name or a bad option in the spec's learners, suites or encoder would
        meet later, before any data or model is loaded: built-in components are checked against their declared
        options and checks, importing nothing heavy. (Optional suites are checked where they run: an unusable one is
        skipped.)"""
        for text in self.learners:
            LEARNERS.check(Ref.parse(text))
        self.learner_refs()
        for text in self.suites:
            suite_ref(text)
        encoder_ref(self.encoder)

    def replace(self, **changes: Any) -> Spec:
        """A copy with the given fields changed; ``None`` values and empty sequences leave a field as it is."""
        kept = {k: v for k, v in changes.items() if v is not None and v != () and v != []}
        return dataclasses.replace(self, **_check_types(kept, "options"))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_toml(self) -> str:
        """The spec as TOML that :func:`load_spec` reads back to an equal spec."""
        return "".join(f"{key} = {json.dumps(value, ensure_ascii=False)}\n" for key, value in self.to_dict().items())


def fields() -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(Spec)


_TYPES = {f.name: str(f.type) for f in fields()}  # annotations are strings here (postponed evaluation)


def _check_types(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate raw values against the spec fields and turn lists into tuples."""
    out: dict[str, Any] = {}
    known = {f.name for f in fields()}
    for key, value in values.items():
        if key not in known:
            raise UserError(f"{where}: unknown field {key!r}; fields: {', '.join(sorted(known))}")
        kind = _TYPES[key]
        if kind.startswith("tuple"):
            items = value if isinstance(value, (list, tuple)) else [value]
            element = int if "int" in kind else str
            if not all(isinstance(v, element) and not isinstance(v, bool) for v in items):
                raise UserError(f"{where}: field {key!r} must be a list of {_PLURALS[element]}, got {value!r}")
            out[key] = tuple(items)
        else:
            element = int if kind == "int" else str
            if not isinstance(value, element) or isinstance(value, bool):
                raise UserError(f"{where}: field {key!r} must be {_NOUNS[element]}, got {value!r}")
            out[key] = value
    return out


def spec_from_dict(values: dict[str, Any], where: str = "spec") -> Spec:
    return Spec(**_check_types(values, where))


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing, unreadable or malformed file is a one-line user error."""
    path = atomic.existing_file(path, "spec file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read spec {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"malformed TOML in spec {path}: {error}") from None


def load_spec(path: Path) -> Spec:
    """Read a benchmark spec from TOML; its name defaults to the file's stem."""
    values = read_toml(path)
    values.setdefault("name", Path(path).stem)
    return spec_from_dict(values, str(path))
