"""The learner registry: a learner is one module plus one line here."""

from __future__ import annotations

from gpicl_bench.learners.base import Learner
from gpicl_bench.learners.knn import KNearestNeighbours
from gpicl_bench.learners.logreg import LogisticRegression
from gpicl_bench.learners.protonet import ProtoNet
from gpicl_bench.registry import Registry

LEARNERS: Registry[Learner] = Registry("learner")
LEARNERS.register("protonet", "nearest class mean under squared Euclidean distance (Snell et al. 2017)")(ProtoNet)
LEARNERS.register("knn", "k-nearest-neighbour vote over the support set (option k, default 1)")(KNearestNeighbours)
LEARNERS.register(
    "logreg", "L2 multinomial logistic regression fitted per episode, sklearn's objective (options c, steps)"
)(LogisticRegression)

__all__ = ["LEARNERS", "Learner"]
