"""Local weights files for encoders: named by their content, read without running pickled code, and loaded strictly,
so that features never come from a model that silently kept part of its random initialisation."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from gpicl_bench.encoders.base import error_line
from gpicl_bench.errors import UserError

# Wrappers that training scripts commonly put around a state dict.
_WRAPPERS = ("state_dict", "model")


@functools.cache
def _file_digest(path: Path, size: int, modified: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content, computed once per process for an unchanged file."""
    stat = path.stat()
    return _file_digest(path.resolve(), stat.st_size, stat.st_mtime_ns)


def weights_digest(weights: str) -> str:
    """The content digest of a ``weights=FILE`` option; a missing file is a user error."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"encoder weights file {path} not found")
    return file_digest(path)


def read_state_dict(path: Path, who: str) -> dict[str, Tensor]:
    """A state dict from a safetensors file or a ``torch.save`` file (read weights-only), unwrapped from
    ``{"state_dict": …}`` or ``{"model": …}`` and from DataParallel's ``module.`` prefix."""
    if not path.is_file():
        raise UserError(f"{who} weights {path} not found")
    try:
        state = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(path, "cpu", weights_only=True)
    except Exception as error:  # torch.load and safetensors raise many unrelated types for a damaged file
        raise UserError(f"{who} weights {path} are corrupt or unreadable ({error_line(error)})") from None
    for wrapper in _WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(value, Tensor) for value in state.values()):
        raise UserError(f"{who} weights {path} hold no state dict (names → tensors)")
    return {name.removeprefix("module."): value for name, value in state.items()}


def load_strictly(module: nn.Module, path: Path, who: str, removed: tuple[str, ...] = ()) -> None:
    """Load a weights file into ``module`` only if it fits exactly: every parameter and buffer present with its
    shape, nothing else — except names under ``removed``, the prefixes of a classifier head the encoder dropped."""
    state = read_state_dict(path, who)
    state = {name: value for name, value in state.items() if not name.startswith(removed)}
    expected = module.state_dict()
    problems = {
        "missing": sorted(set(expected) - set(state)),
        "unexpected": sorted(set(state) - set(expected)),
        "wrong shape": [name for name in expected if name in state and state[name].shape != expected[name].shape],
    }
    found = [
        f"{kind} {', '.join(names[:3])}{' …' if len(names) > 3 else ''}" for kind, names in problems.items() if names
    ]
    if found:
        raise UserError(f"{who} weights {path} do not match the model ({'; '.join(found)})")
    module.load_state_dict(state, strict=True)
