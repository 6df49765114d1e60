"""The resumable state of a meta-training run, written beside its checkpoint at every held-out check.

Long runs on a CPU outlast a sitting. The state holds everything the loop carries from step to step — weights,
Adam's moments, the learning-rate schedule, the smoothed loss, the plateau exit and the history — and the task
stream is a pure function of the step, so a resumed run takes exactly the steps an uninterrupted one would. The file
is a ``torch.save`` dictionary read back with ``weights_only=True`` (no arbitrary unpickling), written to a temporary
name and renamed, so a kill leaves the previous state or the new one, never half of one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gpicl_bench.errors import UserError

SUFFIX = ".training-state.pt"


def path_for(weights: Path) -> Path:
    """Where the state of the run that writes checkpoint ``weights`` lives."""
    return weights.with_name(weights.name.removesuffix(".safetensors") + SUFFIX)


def save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def load(path: Path, options: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The saved state of a run with these training options; another run's state is refused. A knob the saved options
    lack (added since the state was written) counts as its default, so upgrading mid-run does not strand a run."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise UserError(f"training state {path} is unreadable: {error}") from None
    if not isinstance(state, dict) or "options" not in state or "step" not in state:
        raise UserError(f"{path} is not a gpicl-bench training state")
    changed = sorted(
        name
        for name in set(state["options"]) | set(options)
        if name != "time_budget" and state["options"].get(name, defaults.get(name)) != options.get(name)
    )
    if changed:
        raise UserError(f"{path} was written with other training options ({', '.join(changed)}); resume with the same")
    return state
