"""Learners only predict; the fitting layer meta-trains those that declare it, with the data the run opens.

Learner modules import no data, training or command-line code (checked on their source and on what importing them
loads). Sources of meta-training are read like the run's suites: an image source through the run's encoder, data
root and feature cache, for the episodic recipe (maml's) and for sequence models (``gpicl:fresh``) alike.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_TRAINING
from layouts_fine_grained import write_folder
from torch import Tensor, nn

import gpicl_bench.learners
from gpicl_bench import checkpoints, fitting
from gpicl_bench.episodes import EpisodeShape
from gpicl_bench.errors import UserError
from gpicl_bench.features import FeatureSettings
from gpicl_bench.learners.base import Learner
from gpicl_bench.learners.meta_training import EpisodicTraining
from gpicl_bench.learners.protonet import ProtoNet
from gpicl_bench.learners.registry import LEARNERS
from gpicl_bench.learners.training_options import TrainingOptions
from gpicl_bench.registry import Ref
from gpicl_bench.results import ResultsFile
from gpicl_bench.suites import open_suite

FORBIDDEN = ("suites", "training", "features", "engine", "cli", "fitting")  # modules of gpicl_bench
LEARNERS_DIR = Path(gpicl_bench.learners.__file__).parent
ENCODER = "pixels:size=8"  # 8 × 8 × 3 = 192 features


def _imported(path: Path) -> set[str]:
    """Every module a source file imports, ``from gpicl_bench import x`` counted as ``gpicl_bench.x``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            package = "gpicl_bench.learners" if node.level else ""
            module = ".".join(filter(None, [package, node.module]))
            names.update([module, *(f"{module}.{alias.name}" for alias in node.names)])
    return names


def distance_to_nearest(rows: Tensor, table: Tensor) -> Tensor:
    """Each row's exact Euclidean distance to the nearest row of ``table``."""
    return torch.cdist(rows, table, compute_mode="donot_use_mm_for_euclid_dist").min(1).values


def _forbidden(module: str) -> bool:
    return any(module == f"gpicl_bench.{name}" or module.startswith(f"gpicl_bench.{name}.") for name in FORBIDDEN)


def test_learner_modules_import_no_data_training_or_cli_code() -> None:
    modules = sorted(LEARNERS_DIR.glob("*.py"))
    assert len(modules) > 10
    offending = {path.name: sorted(filter(_forbidden, _imported(path))) for path in modules}
    assert not {name: found for name, found in offending.items() if found}
    # and not through another module either: importing every learner module loads none of them
    program = (
        "import importlib, pkgutil, sys, gpicl_bench.learners as package\n"
        "for module in pkgutil.walk_packages(package.__path__, 'gpicl_bench.learners.'):\n"
        "    importlib.import_module(module.name)\n"
        "print('\\n'.join(sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout
    assert "gpicl_bench.learners.registry" in loaded.split()
    assert not [module for module in loaded.split() if _forbidden(module)]


def test_checkpoints_know_no_learner_module() -> None:
    """The checkpoint format is below the learners that load it: no import cycle between them."""
    imported = _imported(Path(checkpoints.__file__))
    assert not [module for module in imported if module.startswith("gpicl_bench.learners")]


def test_the_import_check_sees_every_spelling(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text("import gpicl_bench.suites.base\nfrom gpicl_bench import training\nfrom .. import cli\n")
    assert {"gpicl_bench.suites.base", "gpicl_bench.training", "gpicl_bench.learners.cli"} <= _imported(source)
    assert _forbidden("gpicl_bench.suites.base") and _forbidden("gpicl_bench.training")
    assert not _forbidden("gpicl_bench.training_state") and not _forbidden("gpicl_bench.learners.training_options")


class LinearProtoNet(Learner):
    """ProtoNet on a linear embedding meta-trained on episodes (Snell et al.'s training, with a linear backbone): a
    learner of the kind the episodic recipe serves, which keeps the rows meta-training showed it."""

    def __init__(self, source: str, steps: int = 20) -> None:
        self.source, self.steps = source, steps
        self.embedding: nn.Module | None = None
        self.fitting_details: dict[str, Any] = {}
        self.seen: list[Tensor] = []

    def meta_training(self) -> EpisodicTraining | None:
        if self.embedding is not None:
            return None
        shape = EpisodeShape(3, 1, 2)
        return EpisodicTraining(self.source, shape, self.steps, 4, 0.01, 0, self._initial, self._loss)

    def _initial(self, dim: int) -> nn.Module:
        return nn.Linear(dim, 16, bias=False)

    def _loss(self, embedding: nn.Module, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor):
        self.seen.append(support_x.detach().reshape(-1, support_x.shape[-1]))
        logits = ProtoNet().predict(embedding(support_x), support_y, embedding(query_x), 3)
        return F.cross_entropy(logits.flatten(0, 1), query_y.flatten())

    def fitted(self, module: nn.Module, details: dict[str, Any]) -> None:
        self.embedding, self.fitting_details = module, details

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, way: int) -> Tensor:
        assert self.embedding is not None
        with torch.no_grad():
            return ProtoNet().predict(self.embedding(support_x), support_y, self.embedding(query_x), way)


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """A data root holding ``images``: a prepared folder suite of class-coloured images, 4/3/3 classes."""
    root = tmp_path / "data"
    for split, classes in (("train", "abcd"), ("val", "efg"), ("test", "hij")):
        write_folder(root / "images" / split, [f"{split}-{name}" for name in classes], per_class=6)
    return root


def test_episodic_meta_training_reads_its_source_with_the_runs_encoder_and_data_root(image_root: Path) -> None:
    settings = FeatureSettings(encoder=ENCODER, data_root=str(image_root))
    learner = fitting.fit(LinearProtoNet("folder:root=images"), "cpu", settings)
    assert learner.meta_training() is None
    assert learner.fitting_details["source"] == f"folder:root=images [{ENCODER}]"
    assert learner.fitting_details["dim"] == 192 and learner.embedding.in_features == 192
    train = open_suite("folder:root=images", settings).suite.load("train")
    assert train.class_names == ("train-a", "train-b", "train-c", "train-d")
    seen = torch.cat(learner.seen)
    assert len(seen) == 20 * 4 * 3  # steps × episodes per step × support rows
    assert distance_to_nearest(seen, train.features).max() == 0  # every row is a train feature of this encoder


def test_maml_declares_its_source_and_the_fitting_layer_opens_it_like_the_run(image_root: Path) -> None:
    """Without learn2learn: maml's declared source, opened by the fitting layer with the run's settings, is the
    folder under the data root through the run's encoder — what its meta-training reads."""
    maml = LEARNERS.build(Ref.parse("maml:source=folder:root=images,way=3,shot=1,meta_steps=7"))
    recipe = maml.meta_training()
    assert isinstance(recipe, EpisodicTraining)
    assert (recipe.source, recipe.shape.way, recipe.shape.shot, recipe.steps) == ("folder:root=images", 3, 1, 7)
    settings = FeatureSettings(encoder=ENCODER, data_root=str(image_root))
    opened, data = fitting.episode_source(recipe, settings)
    assert opened.label == f"folder:root=images [{ENCODER}]" and data.dim == 192
    assert torch.equal(data.features, open_suite("folder:root=images", settings).suite.load("train").features)


def test_projected_sources_are_projected_by_the_meta_training_stream() -> None:
    """A projected source shows each episode through its own projection; a plain one shows the rows as they are.
    Fitting twice gives the same module."""
    digits = open_suite("digits").suite.load("train").features
    sources = ("digits", "digits:project", "digits:project")
    plain, projected, again = (fitting.fit(LinearProtoNet(source, steps=3)) for source in sources)
    assert distance_to_nearest(torch.cat(plain.seen), digits).max() == 0
    assert distance_to_nearest(torch.cat(projected.seen), digits).min() > 1
    assert projected.fitting_details["source"] == "digits:project"
    assert torch.equal(projected.embedding.weight, again.embedding.weight)


def test_a_fresh_sequence_model_meta_trains_on_the_runs_encoder_data_root_and_cache(
    cli, tmp_path: Path, image_root: Path
) -> None:
    """``gpicl:fresh`` with an image source, in a run with --encoder, --data-root and --cache-dir: the model is
    meta-trained on those features, and its details in the results say so."""
    cache, out = tmp_path / "cache", tmp_path / "r.h5"
    learner = f"gpicl:fresh,source=folder:root=images,way=3,eval_way=3,eval_shot=1,{TINY_TRAINING}"
    result = cli("run", "--suite", "folder:root=images", "--learner", learner, "--encoder", ENCODER,
                 "--data-root", image_root, "--cache-dir", cache, "--ways", "3", "--shots", "1", "--queries", "2",
                 "--episodes", "10", "--out", out, "--quiet")  # fmt: skip
    assert result.code == 0, result.err
    [(attrs, _)] = list(ResultsFile.open(out).groups())
    details = json.loads(attrs["learner_details"])
    assert details["data"]["sources"] == [f"folder:root=images [{ENCODER}]"] and details["data"]["dim"] == 192
    training = details["training"]
    assert (training["encoder"], training["data_root"], training["cache_dir"]) == (ENCODER, str(image_root), str(cache))
    cached = {split for split in ("train", "val", "test") for entry in cache.iterdir() if f"-{split}-" in entry.name}
    assert cached == {"train", "val", "test"}  # the run's cache holds the training sources' features too


def test_a_learners_own_data_options_win_over_the_runs() -> None:
    settings = FeatureSettings(encoder=ENCODER, data_root="/run/data", cache_dir="/run/cache")
    own = TrainingOptions(encoder="pixels:size=4", data_root="/own/data")
    assert fitting.with_run_data(own, settings) == TrainingOptions(
        encoder="pixels:size=4", data_root="/own/data", cache_dir="/run/cache"
    )
    assert fitting.with_run_data(TrainingOptions(), settings) == TrainingOptions(
        encoder=ENCODER, data_root="/run/data", cache_dir="/run/cache"
    )


@pytest.mark.parametrize(
    ("learner", "message"),
    [
        (f"gpicl:fresh,source=nowhere,{TINY_TRAINING}", "unknown suite 'nowhere'"),
        (f"lstm:fresh,source=folder:root=missing,{TINY_TRAINING}", "no directory"),
        ("maml:source=digitz", "unknown suite 'digitz'"),
        ("gpicl:fresh,heads=3,d_model=8,layers=1,steps=2", "multiple of heads"),
    ],
)
def test_bad_meta_training_data_fails_before_the_results_file_is_written(
    cli, tmp_path: Path, image_root: Path, learner: str, message: str
) -> None:
    out = tmp_path / "r.h5"
    result = cli("run", "--learner", "protonet", "--learner", learner, "--data-root", image_root,
                 "--episodes", "5", "--out", out, "--quiet")  # fmt: skip
    assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1
    assert not out.exists()


def test_learners_that_need_nothing_are_left_alone() -> None:
    for reference in ("protonet", "knn:k=3", "gpicl"):  # gpicl: the shipped checkpoint, loaded when built
        learner = LEARNERS.build(Ref.parse(reference))
        assert fitting.fit(learner) is learner and getattr(learner, "meta_training", lambda: None)() is None
    with pytest.raises(UserError, match="unknown suite"):
        fitting.check(LinearProtoNet("nowhere"))
