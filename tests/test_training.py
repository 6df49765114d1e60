"""Meta-training end to end at toy scale: the train command, its checkpoint, and the checkpoint in run."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gpicl_bench import checkpoints, fitting
from gpicl_bench.errors import UserError
from gpicl_bench.learners.models import build_model, load_model
from gpicl_bench.learners.registry import LEARNERS
from gpicl_bench.learners.training_options import TrainingOptions
from gpicl_bench.registry import Ref
from gpicl_bench.results import load, load_curves
from gpicl_bench.training import (
    HeldOut,
    disk_needed,
    expected_chance_loss,
    learning_rate_factor,
    source_settings,
    train,
    train_to_checkpoint,
)

TOY = [
    "--d-model",
    "16",
    "--layers",
    "1",
    "--heads",
    "2",
    "--batch-size",
    "16",
    "--steps",
    "12",
    "--eval-every",
    "6",
    "--eval-episodes",
    "20",
    "--quiet",
]


def test_train_command_writes_a_loadable_checkpoint(cli, tmp_path: Path) -> None:
    out = tmp_path / "toy"
    result = cli("train", *TOY, "--out", out)
    assert result.code == 0, result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.safetensors"]  # weights and config in one file
    config = checkpoints.read_metadata(tmp_path / "toy.safetensors")
    assert config["steps"] == 12 and config["training"]["d_model"] == 16
    assert len(config["metrics"]["history"]) == 2  # held-out evaluations at steps 6 and 12
    assert 0.0 <= config["metrics"]["held_out_accuracy"] <= 1.0

    results = tmp_path / "r.h5"
    ran = cli(
        "run",
        "--learner",
        f"gpicl:checkpoint={tmp_path / 'toy.safetensors'}",
        "--learner",
        "protonet",
        "--suite",
        "digits:project",
        "--shots",
        "1",
        "--episodes",
        "30",
        "--quiet",
        "--out",
        results,
    )
    assert ran.code == 0, ran.err
    frame = load(results)
    label = f"gpicl:checkpoint=toy@{config['weights_sha256'][:10]}"  # no machine path in results
    assert set(frame["learner"]) == {label, "protonet"}
    curves = load_curves(results)
    assert set(curves["learner"]) == {label}
    assert len(curves) == 5 * (1 + 15)  # one value per position of the sequence view
    assert curves["value"].between(0, 1).all()


def test_training_spec_and_flags(cli, tmp_path: Path) -> None:
    spec = tmp_path / "t.toml"
    spec.write_text(
        "d_model = 16\nlayers = 1\nheads = 2\nsteps = 4\nbatch_size = 8\neval_every = 4\n"
        'eval_episodes = 10\nout = "' + str(tmp_path / "from-spec") + '"\n'
    )
    assert cli("train", spec, "--steps", "2", "--quiet").code == 0
    assert checkpoints.read_metadata(tmp_path / "from-spec")["steps"] == 2  # the flag wins over the spec
    bad = tmp_path / "bad.toml"
    bad.write_text("learning_rate = 0.1\n")
    result = cli("train", bad)
    assert result.code == 2 and "unknown training option 'learning_rate'" in result.err
    assert cli("train", "--lr", "-1", "--quiet").code == 2
    assert cli("train", "--heads", "3", "--quiet").code == 2  # d_model 128 is not a multiple of 3
    result = cli("train", "--weights-dtype", "bfloat16", "--quiet")
    assert result.code == 2 and "weights_dtype must be one of float32, float16" in result.err


def test_training_is_deterministic() -> None:
    """Same options, same device → the same weights."""
    options = TrainingOptions(d_model=16, layers=1, heads=2, batch_size=8, steps=3, eval_every=3, eval_episodes=10)
    first = train(options, torch.device("cpu")).model.state_dict()
    second = train(options, torch.device("cpu")).model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_resumed_run_takes_the_steps_an_uninterrupted_one_takes(cli, tmp_path: Path) -> None:
    """Stopped by its time budget after the first step, saved, then resumed with --resume: the checkpoint equals an
    uninterrupted run's, bit for bit, with the same held-out history; the state file is gone once training ends."""
    knobs = [*TOY, "--steps", "8", "--eval-every", "4", "--mix-suite", "0.5", "--mix-fields", "0.5"]
    assert cli("train", *knobs, "--out", tmp_path / "straight").code == 0
    first = cli("train", *knobs, "--time-budget", "0.001", "--out", tmp_path / "split")
    state = tmp_path / "split.training-state.pt"
    assert first.code == 0 and state.is_file()
    assert checkpoints.read_metadata(tmp_path / "split.safetensors")["steps"] == 1
    refused = cli("train", *knobs, "--out", tmp_path / "split")
    assert refused.code == 2 and "--resume" in refused.err
    changed = cli("train", *knobs, "--lr", "0.01", "--resume", "--out", tmp_path / "split")
    assert changed.code == 2 and "lr" in changed.err
    assert cli("train", *knobs, "--resume", "--out", tmp_path / "split").code == 0
    assert not state.exists()
    straight, _ = load_model(tmp_path / "straight.safetensors")
    resumed, metadata = load_model(tmp_path / "split.safetensors")
    assert all(torch.equal(straight.state_dict()[k], v) for k, v in resumed.state_dict().items())
    expected = checkpoints.read_metadata(tmp_path / "straight.safetensors")["metrics"]["history"]
    assert [h["held_out_accuracy"] for h in metadata["metrics"]["history"]] == [
        h["held_out_accuracy"] for h in expected
    ]
    nothing = cli("train", *knobs, "--resume", "--out", tmp_path / "other")
    assert nothing.code == 2 and "nothing to resume" in nothing.err


def test_a_second_stage_starts_from_the_init_checkpoints_weights(cli, tmp_path: Path) -> None:
    """--init starts meta-training from a checkpoint's weights (a step too small to move them leaves them as they
    were, where a fresh start is far from them) and records which weights it started from; a checkpoint of another
    architecture, or none, is refused in one line."""
    assert cli("train", *TOY, "--steps", "6", "--out", tmp_path / "stage1").code == 0
    stage1 = tmp_path / "stage1.safetensors"
    still = [*TOY, "--steps", "1", "--lr", "1e-9", "--eval-every", "1", "--seed", "1"]  # seed 1: another init
    assert cli("train", *still, "--init", stage1, "--out", tmp_path / "stage2").code == 0
    assert cli("train", *still, "--out", tmp_path / "fresh").code == 0
    first, _ = load_model(stage1)
    second, metadata = load_model(tmp_path / "stage2.safetensors")
    fresh, _ = load_model(tmp_path / "fresh.safetensors")
    assert _largest_difference(second, first) < 1e-6 < 0.01 < _largest_difference(fresh, first)
    assert metadata["initial_weights"] == checkpoints.identity(stage1)
    assert checkpoints.read_metadata(tmp_path / "fresh.safetensors")["initial_weights"] is None

    wider = cli("train", *still, "--d-model", "32", "--init", stage1, "--out", tmp_path / "wider")
    assert wider.code == 2 and wider.err.strip().endswith("another architecture: d_model 16 (options: 32)")
    assert len(wider.err.strip().splitlines()) == 1 and not (tmp_path / "wider.safetensors").exists()
    missing = cli("train", *still, "--init", tmp_path / "none.safetensors", "--out", tmp_path / "none")
    assert missing.code == 2 and missing.err.startswith("gpicl-bench: error: training option init: checkpoint ")
    assert "none.safetensors not found" in missing.err


def _largest_difference(model: torch.nn.Module, other: torch.nn.Module) -> float:
    theirs = other.state_dict()
    return max((tensor - theirs[name]).abs().max().item() for name, tensor in model.state_dict().items())


def test_a_resumed_second_stage_records_the_weights_it_began_with(tmp_path: Path) -> None:
    """The identity of the init weights is taken when they load and kept in the run's state, so a resumed run
    records the weights it began with even when the file at the init path was replaced in between."""
    toy = dict(d_model=16, layers=1, heads=2, batch_size=8, eval_every=2, eval_episodes=10)
    cpu = torch.device("cpu")
    earlier = train_to_checkpoint(TrainingOptions(**toy, steps=2), cpu, tmp_path / "earlier")
    began_with = checkpoints.identity(earlier)
    stage = TrainingOptions(**toy, steps=2, init=str(earlier), time_budget=1e-3)
    train_to_checkpoint(stage, cpu, tmp_path / "stage")  # stopped by its budget after one step, its state saved
    train_to_checkpoint(TrainingOptions(**toy, steps=2, seed=1), cpu, tmp_path / "earlier", force=True)
    assert checkpoints.identity(earlier) != began_with
    resumed = train_to_checkpoint(dataclasses.replace(stage, time_budget=0.0), cpu, tmp_path / "stage", resume=True)
    metadata = checkpoints.read_metadata(resumed)
    assert metadata["steps"] == 2 and metadata["initial_weights"] == began_with


def test_a_state_written_before_a_knob_existed_resumes_with_the_knob_at_its_default(tmp_path: Path) -> None:
    """A saved state whose options lack a knob added since (here init) resumes when that knob is at its default, and
    is refused when it is not."""
    options = TrainingOptions(
        d_model=16, layers=1, heads=2, batch_size=8, steps=2, eval_every=2, eval_episodes=10, time_budget=1e-3
    )
    cpu, out = torch.device("cpu"), tmp_path / "run"
    train_to_checkpoint(options, cpu, out)
    state = tmp_path / "run.training-state.pt"
    saved = torch.load(state, weights_only=True)
    del saved["options"]["init"], saved["initial_weights"]
    torch.save(saved, state)
    with pytest.raises(UserError, match=r"other training options \(init\)"):
        train_to_checkpoint(dataclasses.replace(options, init=str(out) + ".safetensors"), cpu, out, resume=True)
    resumed = train_to_checkpoint(dataclasses.replace(options, time_budget=0.0), cpu, out, resume=True)
    assert checkpoints.read_metadata(resumed)["steps"] == 2 and not state.exists()


def test_half_precision_training_records_the_stored_models_accuracy(tmp_path: Path) -> None:
    """With float16 storage the final held-out accuracy is the one the saved checkpoint scores, not the float32
    model's before rounding."""
    options = TrainingOptions(
        d_model=16, layers=1, heads=2, batch_size=8, steps=6, eval_every=6, eval_episodes=40, weights_dtype="float16"
    )
    device = torch.device("cpu")
    weights = train_to_checkpoint(options, device, tmp_path / "half")
    loaded, metadata = load_model(weights)
    held_out = HeldOut.of(options, source_settings(options, device))
    assert metadata["metrics"]["held_out_accuracy"] == held_out.accuracy(loaded)
    assert "float16" in metadata["metrics"]["weights"]


def test_training_on_a_disk_without_room_fails_before_the_first_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that cannot hold the run's state and checkpoint is refused before any step, naming what is needed, and
    nothing is written; given just the room the estimate asks for, the same run goes through."""
    options = TrainingOptions(d_model=16, layers=1, heads=2, batch_size=8, steps=2, eval_every=2, eval_episodes=10)
    needed = disk_needed(build_model(options.model_config(64)))  # digits: 64 features
    real_usage = shutil.disk_usage
    free = needed - 1

    def usage(path: str | Path) -> Any:
        return real_usage(path)._replace(free=free)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    with pytest.raises(UserError, match=r"^meta-training needs about [\d.]+ MB free beside .*small"):
        train_to_checkpoint(options, torch.device("cpu"), tmp_path / "small")
    assert list(tmp_path.iterdir()) == []
    free = needed
    assert train_to_checkpoint(options, torch.device("cpu"), tmp_path / "small").is_file()


def test_schedule_and_chance() -> None:
    options = TrainingOptions(steps=1000, warmup=100, min_way=2, way=5)
    assert learning_rate_factor(options, 0) == pytest.approx(0.01)
    assert learning_rate_factor(options, 99) == pytest.approx(1.0)
    assert learning_rate_factor(options, 1000) == pytest.approx(0.1)
    assert expected_chance_loss(options) == pytest.approx(np.mean(np.log([2, 3, 4, 5])))


def test_a_fresh_learner_is_meta_trained_by_the_fitting_layer_as_train_does(caplog: pytest.LogCaptureFixture) -> None:
    """A fresh learner declares its options; moving it to a device trains nothing; the fitting layer trains it by the
    path ``train`` takes (the same weights), logs its seen-task accuracy and leaves it in the learner's details."""
    knobs = {"d_model": 8, "layers": 1, "steps": 2, "batch_size": 4, "eval_every": 2, "eval_episodes": 10}
    learner = LEARNERS.build(Ref.parse("lstm:fresh," + ",".join(f"{k}={v}" for k, v in knobs.items())))
    options = TrainingOptions(kind="lstm", **knobs)
    assert learner.meta_training() == options
    assert learner.to("cpu").meta_training() == options  # moving is not fitting
    with pytest.raises(RuntimeError, match="not meta-trained yet"):
        learner.predict(torch.zeros(1, 5, 64), torch.arange(5)[None], torch.zeros(1, 3, 64), 5)
    with caplog.at_level("INFO", logger="gpicl_bench"):
        assert fitting.fit(learner, "cpu", name="lstm:fresh,…") is learner
    assert learner.meta_training() is None
    assert "meta-trained lstm:fresh,…: seen-task accuracy" in caplog.text
    details = learner.details()
    assert details["training"] == options.to_dict() and 0 <= details["metrics"]["seen_task_accuracy"] <= 1
    trained = train(options, torch.device("cpu")).model.state_dict()
    assert all(torch.equal(tensor, trained[name]) for name, tensor in learner.learner.model.state_dict().items())
    logits = learner.predict(torch.randn(2, 5, 64), torch.arange(5).repeat(2, 1), torch.randn(2, 3, 64), 5)
    assert logits.shape == (2, 3, 5)


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="the plot extra is not installed")
def test_plot_writes_png(cli, tmp_path: Path) -> None:
    results = tmp_path / "r.h5"
    assert (
        cli(
            "run",
            "--learner",
            "protonet",
            "--learner",
            "knn",
            "--suite",
            "digits",
            "--shots",
            "1",
            "--shots",
            "5",
            "--episodes",
            "20",
            "--quiet",
            "--out",
            results,
        ).code
        == 0
    )
    figure = tmp_path / "f.png"
    assert cli("plot", results, "-o", figure).code == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
