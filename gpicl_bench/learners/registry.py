"""The learner registry: a learner is one module in this package plus one entry here.

An entry names its class as ``module:attr``, declares its options and names the check of their values (in
:mod:`gpicl_bench.learners.option_checks`), so that listing learners and checking references import no learner (nor
torch); tests/test_registry_declarations.py checks every declaration against the real class.
Learners outside the package are named by module path or file, or installed as entry points of the group
``gpicl_bench.learners`` (see :mod:`gpicl_bench.registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpicl_bench.learners.training_options import TrainingOptions
from gpicl_bench.registry import Ref, Registry, portable_name

if TYPE_CHECKING:
    from gpicl_bench.learners.base import Learner

LEARNERS: Registry[Learner] = Registry("learner", "gpicl_bench.learners", base="gpicl_bench.learners.base:Learner")

# The meta-trained sequence learners' options: how a checkpoint is read, then every training knob but the model kind.
_SEQUENCE_OPTIONS = {
    "checkpoint": "",
    "fresh": False,
    "orders": 1,
    "views": 0,
    "precision": "auto",
    "compile": False,
    **TrainingOptions.defaults(),
}

LEARNERS.add(
    "protonet",
    "gpicl_bench.learners.protonet:ProtoNet",
    "nearest class mean under squared Euclidean distance (Snell et al. 2017)",
    options={},
)
LEARNERS.add(
    "knn",
    "gpicl_bench.learners.knn:KNearestNeighbours",
    "k-nearest-neighbour vote over the support set",
    options={"k": 1},
    check="gpicl_bench.learners.option_checks:knn",
)
LEARNERS.add(
    "logreg",
    "gpicl_bench.learners.logreg:LogisticRegression",
    "L2 multinomial logistic regression per episode, scikit-learn's objective",
    options={"c": 1.0, "steps": 500},
    check="gpicl_bench.learners.option_checks:logreg",
)
LEARNERS.add(
    "maml",
    "gpicl_bench.learners.maml:MAML",
    "learn2learn's MAML over a linear classifier, meta-trained on source=SUITE (extra: l2l)",
    options={
        "source": "digits",
        "way": 5,
        "shot": 5,
        "meta_steps": 300,
        "tasks_per_step": 8,
        "adapt_steps": 5,
        "adapt_lr": 0.5,
        "meta_lr": 0.003,
        "first_order": False,
        "seed": 0,
    },
    check="gpicl_bench.learners.option_checks:maml",
)
LEARNERS.add(
    "gpicl",
    "gpicl_bench.learners.meta_trained:gpicl",
    "GPICL causal Transformer: the shipped checkpoint, checkpoint=PATH, or fresh (meta-trained)",
    options=_SEQUENCE_OPTIONS,
    check="gpicl_bench.learners.option_checks:gpicl",
)
LEARNERS.add(
    "lstm",
    "gpicl_bench.learners.meta_trained:lstm",
    "LSTM in-context learner with GPICL's tokens: checkpoint=PATH or fresh (meta-trained)",
    options=_SEQUENCE_OPTIONS,
    check="gpicl_bench.learners.option_checks:lstm",
)
LEARNERS.add(
    "metaopt",
    "gpicl_bench.learners.metaopt:MetaOpt",
    "MetaOptNet's Crammer–Singer linear SVM, LinearSVC's objective (Lee et al. 2019)",
    options={"c": 0.1, "intercept": False, "steps": 500},
    check="gpicl_bench.learners.option_checks:metaopt",
)
LEARNERS.add(
    "ridge",
    "gpicl_bench.learners.ridge:Ridge",
    "R2D2's closed-form ridge regression onto one-hot labels (Bertinetto et al. 2019)",
    options={"alpha": 50.0, "intercept": False},
    check="gpicl_bench.learners.option_checks:ridge",
)
LEARNERS.add(
    "metaqda",
    "gpicl_bench.learners.metaqda:MetaQDA",
    "MetaQDA: Bayesian QDA under a shared Normal-inverse-Wishart prior (Zhang et al. 2021)",
    options={"kappa": 0.1, "dof": 1.0, "scale": 10.0, "map": False},
    check="gpicl_bench.learners.option_checks:metaqda",
)
LEARNERS.add(
    "simpleshot",
    "gpicl_bench.learners.simpleshot:SimpleShot",
    "nearest centroid after centring and L2 normalisation (Wang et al. 2019)",
    options={},
)
LEARNERS.add(
    "caml",
    "gpicl_bench.learners.meta_trained:caml",
    "CAML's non-causal Transformer over [x ; ELMES label] tokens: checkpoint=PATH or fresh (meta-trained)",
    options=_SEQUENCE_OPTIONS,
    check="gpicl_bench.learners.option_checks:caml",
)
LEARNERS.add(
    "snail",
    "gpicl_bench.learners.meta_trained:snail",
    "SNAIL: temporal convolutions and causal attention, GPICL's tokens: checkpoint=PATH or fresh (meta-trained)",
    options=_SEQUENCE_OPTIONS,
    check="gpicl_bench.learners.option_checks:snail",
)


def learner_label(ref: Ref) -> str:
    """A learner's name in results: its canonical reference, with a checkpoint path replaced by the checkpoint's
    identity (stem and weights digest) and a learner file by its name and content digest, so that results hold no
    machine paths and the same weights or code, however and wherever they are named, are one learner. A missing
    checkpoint or file keeps its path: building the learner reports it."""
    canonical = LEARNERS.canonical(ref)
    options = canonical.options
    if "checkpoint" in options:
        from gpicl_bench import checkpoints  # torch: only where a checkpoint is named

        if checkpoints.paths(options["checkpoint"])[0].is_file():
            options["checkpoint"] = checkpoints.identity(options["checkpoint"])
    return str(Ref(portable_name(canonical.name), options))


__all__ = ["LEARNERS", "learner_label"]
