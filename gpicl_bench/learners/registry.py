"""The learner registry: a learner is one module in this package plus one registration here."""

from __future__ import annotations

from gpicl_bench.learners.base import Learner
from gpicl_bench.learners.knn import KNearestNeighbours
from gpicl_bench.learners.logreg import LogisticRegression
from gpicl_bench.learners.maml import MAML
from gpicl_bench.learners.meta_trained import factory as meta_trained
from gpicl_bench.learners.protonet import ProtoNet
from gpicl_bench.registry import Registry

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

__all__ = ["LEARNERS", "Learner"]
