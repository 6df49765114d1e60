"""The learner registry: a learner is one module in this package plus one registration here."""

from __future__ import annotations

from gpicl_bench import checkpoints
from gpicl_bench.learners.base import Learner
from gpicl_bench.learners.knn import KNearestNeighbours
from gpicl_bench.learners.logreg import LogisticRegression
from gpicl_bench.learners.maml import MAML
from gpicl_bench.learners.meta_trained import factory as meta_trained
from gpicl_bench.learners.protonet import ProtoNet
from gpicl_bench.registry import Ref, Registry

LEARNERS: Registry[Learner] = Registry("learner")
_register = LEARNERS.register

_register("protonet", "nearest class mean under squared Euclidean distance (Snell et al. 2017)")(ProtoNet)
_register("knn", "k-nearest-neighbour vote over the support set")(KNearestNeighbours)
_register("logreg", "L2 multinomial logistic regression per episode, scikit-learn's objective")(LogisticRegression)
_register("maml", "learn2learn's MAML over a linear classifier, meta-trained on source=SUITE (extra: l2l)")(MAML)
_register("gpicl", "GPICL causal Transformer: the shipped checkpoint, checkpoint=PATH, or fresh (meta-trained)")(
    meta_trained("transformer")
)
_register("lstm", "LSTM in-context learner with GPICL's tokens: checkpoint=PATH or fresh (meta-trained)")(
    meta_trained("lstm")
)
_register("caml", "CAML's non-causal Transformer over [x ; ELMES label] tokens: checkpoint=PATH or fresh")(
    meta_trained("caml")
)
_register("snail", "SNAIL: temporal convolutions and causal attention, GPICL's tokens: checkpoint=PATH or fresh")(
    meta_trained("snail")
)


def learner_label(ref: Ref) -> str:
    """A learner's name in results: its canonical reference, with a checkpoint path replaced by the checkpoint's
    identity (stem and weights digest), so that results hold no machine paths and the same weights, however and
    wherever they are named, are one learner. A missing checkpoint keeps its path: building the learner reports it."""
    canonical = LEARNERS.canonical(ref)
    if "checkpoint" in canonical.options and checkpoints.paths(canonical.options["checkpoint"])[0].is_file():
        canonical.options["checkpoint"] = checkpoints.identity(canonical.options["checkpoint"])
    return str(canonical)


__all__ = ["LEARNERS", "Learner", "learner_label"]
