"""The values each built-in learner's options accept, checked without torch.

The learner registry runs an entry's check on a reference before any data or model loads, so a bad value is
reported at once; the learner's constructor runs the same function, so the two cannot disagree. A check takes the
learner's options by keyword (the registry passes every option, defaults filled in) and raises a UserError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gpicl_bench.errors import UserError

if TYPE_CHECKING:
    from gpicl_bench.learners.training_options import TrainingOptions

PRECISIONS = ("auto", "fp32")  # a sequence learner's precision: bf16 autocast on CUDA where the model allows, or fp32


def knn(*, k: int, **_: Any) -> None:
    if k < 1:
        raise UserError(f"knn needs k ≥ 1, got {k}")


def _regularised_solver(learner: str, c: float, steps: int) -> None:
    if c <= 0 or steps < 1:
        raise UserError(f"{learner} needs c > 0 and steps ≥ 1, got c={c}, steps={steps}")


def logreg(*, c: float, steps: int, **_: Any) -> None:
    _regularised_solver("logreg", c, steps)


def metaopt(*, c: float, steps: int, **_: Any) -> None:
    _regularised_solver("metaopt", c, steps)


def ridge(*, alpha: float, **_: Any) -> None:
    if alpha <= 0:
        raise UserError(f"ridge needs alpha > 0, got {alpha}")


def metaqda(*, kappa: float, dof: float, scale: float, **_: Any) -> None:
    if kappa <= 0 or dof <= 0 or scale <= 0:
        raise UserError(f"metaqda needs kappa, dof and scale > 0, got kappa={kappa}, dof={dof}, scale={scale}")


def maml(
    *,
    way: int,
    shot: int,
    meta_steps: int,
    tasks_per_step: int,
    adapt_steps: int,
    adapt_lr: float,
    meta_lr: float,
    **_: Any,
) -> None:
    if min(way - 1, shot, meta_steps, tasks_per_step, adapt_steps) < 1 or adapt_lr <= 0 or meta_lr <= 0:
        raise UserError("maml needs way ≥ 2, positive shot, steps, tasks and learning rates")


def inference(*, orders: int, views: int, precision: str, **_: Any) -> None:
    """A sequence learner's inference options (views 0, automatic, is resolved from the model's input rule)."""
    if orders < 1 or views < 0:
        raise UserError(f"orders must be at least 1 and views at least 0 (0: automatic), got {orders} and {views}")
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def meta_trained(kind: str, *, checkpoint: str, fresh: bool, **options: Any) -> TrainingOptions | None:
    """A meta-trained learner's options: the training options of a fresh one, None for a checkpoint (whose config,
    read without its weights, must hold a model of this kind). Every option but the inference ones and ``compile`` is
    a training knob; a knob at its default value counts as not given."""
    from gpicl_bench.learners.models import model_kind
    from gpicl_bench.learners.training_options import TrainingOptions

    inference(**options)
    defaults = TrainingOptions.defaults()
    training = {k: v for k, v in options.items() if k in defaults and v != defaults[k]}
    if fresh:
        if checkpoint:
            raise UserError("give either checkpoint=… or fresh, not both")
        return TrainingOptions.from_values({"kind": kind, **training}, f"{kind} learner")
    if training:
        raise UserError(f"training options ({', '.join(sorted(training))}) need the flag fresh")
    if not checkpoint and model_kind(kind).shipped is None:
        raise UserError(f"{kind} ships no checkpoint: use {kind}:checkpoint=PATH or {kind}:fresh,…")
    if checkpoint:
        from gpicl_bench import checkpoints

        held = checkpoints.read_metadata(checkpoint)["model"].get("kind", "transformer")  # (its config's default)
        if held != kind:
            raise UserError(f"checkpoint {checkpoint} holds a {held} model, not a {kind}")
    return None


def _meta_trained_check(kind: str) -> Callable[..., None]:
    def check(**options: Any) -> None:
        meta_trained(kind, **options)

    return check


gpicl = _meta_trained_check("transformer")
lstm = _meta_trained_check("lstm")
caml = _meta_trained_check("caml")
snail = _meta_trained_check("snail")
