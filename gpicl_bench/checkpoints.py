"""Checkpoints of sequence learners: one safetensors file holding the weights and their config. Loading never
unpickles.

The format knows no model class: a model is saved with its settings (``config.to_dict()``), and loading hands those
settings to a builder (the sequence-model kinds of :mod:`gpicl_bench.learners.models`), so that learners may load
checkpoints without this module depending on them.

``NAME.safetensors`` holds the weights and, in its metadata (key ``gpicl_bench``), a JSON config: the format tag, the
architecture (``model``), what produced it (training options, data, seed, steps, final metrics, package version) and
the SHA-256 digest of the weights it was written with (``weights_sha256``). The file is written to a temporary and
renamed, so weights and config land together or not at all, and loading checks the digest. Format 1 checkpoints
(weights in ``NAME.safetensors`` beside the config in ``NAME.json``, as the shipped one) still load.

Torch is imported only where tensors are read or written, so that a checkpoint's name, config and metadata are read
(and a missing or foreign checkpoint reported) at once.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from safetensors import SafetensorError, safe_open

from gpicl_bench import __version__, atomic
from gpicl_bench.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

FORMAT_NAME = "gpicl-bench-checkpoint"
FORMAT_VERSION = 2
METADATA_KEY = "gpicl_bench"
WEIGHT_DTYPES = ("float32", "float16")  # how a checkpoint may store its floating weights

Model = TypeVar("Model", bound="nn.Module")


class Settings(Protocol):
    """A model's settings, as a checkpoint records them."""

    def to_dict(self) -> dict[str, Any]: ...


class Configured(Protocol):
    """A model that carries the settings it was built from."""

    config: Settings

    def state_dict(self) -> dict[str, Tensor]: ...


def paths(path: str | Path) -> tuple[Path, Path]:
    """The weights and config files of a checkpoint named by either file or by their common stem."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _as_stored(tensor: Tensor, dtype: str) -> Tensor:
    """A floating tensor in the storage type ``dtype`` (one of WEIGHT_DTYPES); other tensors as they are."""
    import torch

    return tensor.to(getattr(torch, dtype)) if tensor.is_floating_point() else tensor


def round_to_storage(model: nn.Module, dtype: str) -> None:
    """Round the floating weights in place as ``save`` stores them in ``dtype``, so that metrics measured
    afterwards describe the model a checkpoint will load."""
    import torch

    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.copy_(_as_stored(tensor, dtype))


def check_target(path: str | Path, force: bool) -> None:
    """Refuse, before training, a checkpoint path that exists (unless ``force``) or cannot be written."""
    weights, config = paths(path)
    existing = [p for p in (weights, config) if p.exists()]
    if existing and not force:
        raise UserError(f"checkpoint {existing[0]} already exists; pass --force to replace it, or choose another --out")
    atomic.check_writable(weights, "checkpoint")


def weights_digest(tensors: dict[str, Tensor]) -> str:
    """SHA-256 over every tensor's name, type, shape and bytes, in name order: what ties a config to its weights."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save(path: str | Path, model: Configured, metadata: dict[str, Any], dtype: str = "float32") -> Path:
    """Write weights (floating tensors stored as ``dtype``, one of WEIGHT_DTYPES; loading casts them back to the
    model's float32) and config in one file, atomically; returns its path. A format 1 config beside it is removed
    after the new file is in place (the new file's own config takes precedence meanwhile)."""
    from safetensors.torch import save_file

    weights, old_config = paths(path)
    tensors = {
        name: _as_stored(tensor.detach(), dtype).to("cpu").contiguous() for name, tensor in model.state_dict().items()
    }
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "model": model.config.to_dict(),
        **metadata,
        "weights_sha256": weights_digest(tensors),
    }
    with atomic.replacing(weights) as temporary:
        save_file(tensors, str(temporary), metadata={METADATA_KEY: json.dumps(document, sort_keys=True)})
    old_config.unlink(missing_ok=True)
    return weights


def _embedded_config(weights: Path) -> str | None:
    """The config JSON inside a format 2 checkpoint, or None for a format 1 file (weights only)."""
    try:
        with safe_open(str(weights), framework="numpy") as handle:
            return (handle.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"checkpoint {weights} is corrupt or unreadable: {error}") from None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The config of a checkpoint (inside its file, or for format 1 in NAME.json beside it), checked to be one."""
    weights, config = paths(path)
    if weights.is_file() and (embedded := _embedded_config(weights)) is not None:
        where, text = weights, embedded
    elif not config.is_file():
        raise UserError(f"checkpoint {weights} not found (or, for an old checkpoint, its config {config.name})")
    else:
        try:
            where, text = config, config.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"checkpoint config {config} is not readable: {error}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"checkpoint config in {where} is not readable JSON: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise UserError(f"{where} is not a gpicl-bench checkpoint")
    version = document.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(f"{where} has checkpoint format {version}; this gpicl-bench reads up to {FORMAT_VERSION}")
    if not isinstance(document.get("model"), dict):
        raise UserError(f"{where} has no model settings")
    return document


def _load_tensors(weights: Path, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    from safetensors.torch import load_file

    if not weights.is_file():
        raise UserError(f"checkpoint weights {weights} not found")
    try:
        return load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"checkpoint weights {weights} are corrupt or unreadable: {error}") from None


def identity(path: str | Path) -> str:
    """A checkpoint's name in results: its file stem and the first 10 hex digits of its weights' digest, so the
    same weights get the same name wherever they live and however the path is spelled."""
    weights, _ = paths(path)
    if not weights.is_file():
        raise UserError(f"checkpoint weights {weights} not found")
    status = weights.stat()
    return f"{weights.stem}@{_digest_of_file(weights.resolve(), status.st_size, status.st_mtime_ns)[:10]}"


@functools.cache
def _digest_of_file(weights: Path, size: int, modified: int) -> str:
    """The weights' digest: recorded in a format 2 file (checked when it loads), computed for a format 1 file."""
    recorded = read_metadata(weights).get("weights_sha256")
    return recorded if isinstance(recorded, str) else weights_digest(_load_tensors(weights))


def load(
    path: str | Path, build: Callable[[dict[str, Any]], Model], device: torch.device | str = "cpu"
) -> tuple[Model, dict[str, Any]]:
    """The model ``build`` makes from a checkpoint's model settings, holding the checkpoint's weights, and the
    checkpoint's metadata; anything missing, corrupt or mismatched is a user error."""
    weights, _ = paths(path)
    metadata = read_metadata(path)
    try:
        model = build(metadata["model"])
    except TypeError as error:
        raise UserError(f"checkpoint {weights.stem}: bad model settings: {error}") from None
    tensors = _load_tensors(weights, device)
    recorded = metadata.get("weights_sha256")
    if recorded is not None and recorded != weights_digest(tensors):
        raise UserError(f"checkpoint {weights} is damaged: its weights are not the ones its config was written with")
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    wrong = [n for n in expected if n in tensors and tensors[n].shape != expected[n].shape]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(names[:3])}"
            for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if names
        )
        raise UserError(f"checkpoint {weights} does not match its config ({detail})")
    model.load_state_dict(tensors)
    return model.to(device).eval(), metadata
