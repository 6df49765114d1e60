"""Checkpoints of sequence learners: safetensors weights beside a JSON config. Loading never unpickles.

``NAME.safetensors`` holds the weights; ``NAME.json`` holds the format tag, the architecture (``model``), and what
produced it (training options, data, seed, steps, final metrics, package version).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from gpicl_bench import __version__
from gpicl_bench.errors import UserError
from gpicl_bench.learners.gpicl import GPICLTransformer
from gpicl_bench.learners.lstm import LSTMLearner
from gpicl_bench.learners.sequence import SequenceConfig, SequenceModel

FORMAT_NAME = "gpicl-bench-checkpoint"
FORMAT_VERSION = 1
MODEL_KINDS: dict[str, type[SequenceModel]] = {"transformer": GPICLTransformer, "lstm": LSTMLearner}
SHIPPED = Path(__file__).resolve().parent / "checkpoints" / "gpicl-digits.safetensors"
WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def build_model(config: SequenceConfig) -> SequenceModel:
    if config.kind not in MODEL_KINDS:
        raise UserError(f"unknown model kind {config.kind!r}; kinds: {', '.join(MODEL_KINDS)}")
    return MODEL_KINDS[config.kind](config)


def paths(path: str | Path) -> tuple[Path, Path]:
    """The weights and config files of a checkpoint named by either file or by their common stem."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _as_stored(tensor: Tensor, dtype: str) -> Tensor:
    """A floating tensor in the storage type ``dtype`` (one of WEIGHT_DTYPES); other tensors as they are."""
    return tensor.to(WEIGHT_DTYPES[dtype]) if tensor.is_floating_point() else tensor


def round_to_storage(model: SequenceModel, dtype: str) -> None:
    """Round the floating weights in place as ``save`` stores them in ``dtype``, so that metrics measured
    afterwards describe the model a checkpoint will load."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.copy_(_as_stored(tensor, dtype))


def save(path: str | Path, model: SequenceModel, metadata: dict[str, Any], dtype: str = "float32") -> Path:
    """Write weights (floating tensors stored as ``dtype``, one of WEIGHT_DTYPES; loading casts them back to the
    model's float32) and config; returns the weights path."""
    weights, config = paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: _as_stored(tensor.detach(), dtype).to("cpu").contiguous() for name, tensor in model.state_dict().items()
    }
    save_file(tensors, str(weights))
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "model": model.config.to_dict(),
        **metadata,
    }
    config.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return weights


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON config of a checkpoint, checked to be one."""
    _, config = paths(path)
    if not config.is_file():
        raise UserError(f"checkpoint config {config} not found (a checkpoint is NAME.safetensors + NAME.json)")
    try:
        document = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"checkpoint config {config} is not readable JSON: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise UserError(f"{config} is not a gpicl-bench checkpoint config")
    if document.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(
            f"{config} has checkpoint format {document['format_version']}; this gpicl-bench reads up "
            f"to {FORMAT_VERSION}"
        )
    if not isinstance(document.get("model"), dict):
        raise UserError(f"{config} has no model settings")
    return document


def load(path: str | Path, device: torch.device | str = "cpu") -> tuple[SequenceModel, dict[str, Any]]:
    """The model of a checkpoint and its metadata; anything missing, corrupt or mismatched is a user error."""
    weights, _ = paths(path)
    metadata = read_metadata(path)
    try:
        model = build_model(SequenceConfig.from_dict(metadata["model"]))
    except TypeError as error:
        raise UserError(f"checkpoint {weights.stem}: bad model settings: {error}") from None
    if not weights.is_file():
        raise UserError(f"checkpoint weights {weights} not found")
    try:
        tensors = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"checkpoint weights {weights} are corrupt or unreadable: {error}") from None
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
