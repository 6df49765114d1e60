"""Learners (and suites) from outside the package: named by module path or file in a reference, or installed by a
package's entry points; each runs in `run` and `compare`, and every bad reference is one line with exit code 2."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_cli import one_error_line

from gpicl_bench.errors import UserError
from gpicl_bench.learners.registry import LEARNERS, learner_label
from gpicl_bench.registry import Ref
from gpicl_bench.results import load
from gpicl_bench.suites import open_suite

# The README's example: a learner written outside the repository.
COSINE = '''
"""A cosine nearest-centroid learner, written outside gpicl-bench."""

import torch.nn.functional as F

from gpicl_bench.learners.base import Learner


class Cosine(Learner):
    """Nearest class mean under cosine similarity, scaled like logits."""

    def __init__(self, *, scale: float = 10.0, centre: bool = False) -> None:
        self.scale, self.centre = scale, centre

    def predict(self, support_x, support_y, query_x, way):
        if self.centre:  # by the support's mean only, so that queries never inform each other
            mean = support_x.mean(dim=1, keepdim=True)
            support_x, query_x = support_x - mean, query_x - mean
        one_hot = F.one_hot(support_y, way).to(support_x.dtype)  # [E, S, way]
        means = one_hot.transpose(1, 2) @ support_x / one_hot.sum(1)[..., None]  # [E, way, D]
        return self.scale * F.normalize(query_x, dim=-1) @ F.normalize(means, dim=-1).transpose(1, 2)
'''
EVEN_DIGITS = '''
from gpicl_bench.suites.digits import Digits


class EvenDigits(Digits):
    """The digits suite with its even classes only."""

    def load(self, split):
        data = super().load(split)
        keep = data.labels % 2 == 0
        return type(data)(data.features[keep], data.labels[keep] // 2, data.class_names[::2])
'''
QUICK = ["--episodes", "30", "--shots", "1", "--ways", "3", "--quiet"]


@pytest.fixture
def cosine_file(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere" / "my_learner.py"
    path.parent.mkdir()
    path.write_text(COSINE)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def test_reference_spelling_of_outside_code() -> None:
    """The part before the first colon says which kind of reference it is; options follow a second colon."""
    module = Ref.parse("mypkg.learners:Cosine:scale=2,centre")
    assert (module.name, module.options) == ("mypkg.learners:Cosine", {"scale": "2", "centre": "true"})
    assert str(module) == "mypkg.learners:Cosine:centre,scale=2"
    assert Ref.parse(str(module)) == module
    file = Ref.parse("/abs/dir.v2/my_learner.py:Cosine")
    assert (file.name, file.options) == ("/abs/dir.v2/my_learner.py:Cosine", {})
    assert Ref.parse("knn:k=3") == Ref("knn", {"k": "3"})  # registry names hold no dot or slash
    for bad in ("./my_learner.py", "mypkg.learners:", "mypkg.learners:not-a-name"):
        with pytest.raises(UserError, match=r"MODULE\.PATH:CLASS or FILE\.py:CLASS"):
            Ref.parse(bad)


def test_file_learner_builds_with_typed_options_and_a_path_free_label(cosine_file: Path, tmp_path: Path) -> None:
    ref = Ref.parse(f"{cosine_file}:Cosine:scale=2.5,centre")
    learner = LEARNERS.build(ref)
    assert (learner.scale, learner.centre) == (2.5, True)
    support_x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    logits = learner.predict(support_x, torch.tensor([[0, 1]]), torch.tensor([[[2.0, 0.1]]]), 2)
    assert logits.shape == (1, 1, 2) and logits[0, 0, 0] > logits[0, 0, 1]

    label = learner_label(ref)
    assert label == f"my_learner.py@{digest(cosine_file)}:Cosine:centre,scale=2.5"
    assert str(tmp_path) not in label
    assert learner_label(Ref.parse(f"{cosine_file}:Cosine:scale=10")) == f"my_learner.py@{digest(cosine_file)}:Cosine"
    moved = tmp_path / "my_learner.py"  # the same code elsewhere is the same learner; edited code is another
    moved.write_text(COSINE)
    assert learner_label(Ref.parse(f"{moved}:Cosine:centre,scale=2.5")) == label
    moved.write_text(COSINE + "\n# edited\n")
    assert learner_label(Ref.parse(f"{moved}:Cosine:centre,scale=2.5")) != label


def test_module_learner_by_dotted_path(cosine_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = cosine_file.parent / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "learners.py").write_text(COSINE)
    monkeypatch.syspath_prepend(str(cosine_file.parent))
    ref = Ref.parse("mypkg.learners:Cosine:scale=3")
    assert LEARNERS.build(ref).scale == 3.0
    assert learner_label(ref) == "mypkg.learners:Cosine:scale=3.0"


def test_suite_from_a_file_with_the_generic_project_option(tmp_path: Path) -> None:
    path = tmp_path / "even.py"
    path.write_text(EVEN_DIGITS)
    opened = open_suite(f"{path}:EvenDigits:project")
    assert opened.label == f"even.py@{digest(path)}:EvenDigits:project" and opened.project
    assert opened.suite.load("test").class_names == ("0", "2", "4", "6", "8")


def test_signature_conventions_of_outside_classes(tmp_path: Path) -> None:
    """Options may be plain keyword arguments; without annotations their defaults' types apply; options without a
    default must be given."""
    path = tmp_path / "loose.py"
    path.write_text(
        "from gpicl_bench.learners.base import Learner\n"
        "class Loose(Learner):\n"
        "    def __init__(self, scale=1.0, steps=3, centre=False, name='x'):\n"
        "        self.options = (scale, steps, centre, name)\n"
        "    def predict(self, support_x, support_y, query_x, way): ...\n"
        "class Needy(Learner):\n"
        "    def __init__(self, *, scale: float): ...\n"
        "    def predict(self, support_x, support_y, query_x, way): ...\n"
    )
    built = LEARNERS.build(Ref.parse(f"{path}:Loose:scale=2,steps=5,centre=yes,name=7"))
    assert built.options == (2.0, 5, True, "7")
    with pytest.raises(UserError, match=r"expected a whole number, got '2.5'"):
        LEARNERS.build(Ref.parse(f"{path}:Loose:steps=2.5"))
    with pytest.raises(UserError, match=r"needs option scale=…"):
        LEARNERS.build(Ref.parse(f"{path}:Needy"))


BAD_FILES = {
    "missing file": (None, "{tmp}/absent.py:Cosine", "file {tmp}/absent.py: no such file"),
    "no such attribute": (COSINE, "{tmp}/learner.py:Cosin", "has no 'Cosin' (did you mean 'Cosine'?)"),
    "not a Learner": ("class Cosine:\n    pass\n", "{tmp}/learner.py:Cosine", "which is not a subclass of Learner"),
    "not a class": ("Cosine = 3\n", "{tmp}/learner.py:Cosine", "which is not a subclass of Learner"),
    "import error inside": (
        "import gpicl_bench_no_such_dependency\n",
        "{tmp}/learner.py:Cosine",
        "fails to load: ModuleNotFoundError: No module named 'gpicl_bench_no_such_dependency'",
    ),
    "error raised inside": ("raise ValueError('bad\\nconfig')\n", "{tmp}/learner.py:Cosine", "ValueError: bad config"),
    "syntax error": ("def broken(:\n", "{tmp}/learner.py:Cosine", "fails to load: SyntaxError"),
    "missing module": (None, "gpicl_bench_absent.learners:Cosine", "no module named 'gpicl_bench_absent'"),
    "unknown option": (COSINE, "{tmp}/learner.py:Cosine:temperature=2", "has no option 'temperature'"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_outside_references_are_one_line(cli, tmp_path: Path, case: str) -> None:
    source, reference, expected = BAD_FILES[case]
    if source is not None:
        (tmp_path / "learner.py").write_text(source)
    out = tmp_path / "r.h5"
    line = one_error_line(
        cli("run", *QUICK, "--suite", "digits", "--learner", reference.format(tmp=tmp_path), "--out", out)
    )
    assert expected.format(tmp=tmp_path) in line
    assert not out.exists()


def test_file_learner_runs_and_compares(cli, cosine_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    learners = [
        "--learner",
        "protonet",
        "--learner",
        f"{cosine_file}:Cosine",
        "--learner",
        f"{cosine_file}:Cosine:centre",
    ]
    result = cli("run", *QUICK, "--suite", "digits", *learners, "--out", out)
    assert result.code == 0, result.err
    cosine = f"my_learner.py@{digest(cosine_file)}:Cosine"
    frame = load(out)
    assert set(frame["learner"]) == {"protonet", cosine, f"{cosine}:centre"}
    accuracy = frame.groupby("learner")["accuracy"].mean()
    assert accuracy[cosine] > 0.6 and accuracy[f"{cosine}:centre"] > 0.6  # well above chance (1/3) on digits
    compared = cli("compare", out, "--format", "csv")
    assert compared.code == 0, compared.err
    assert f"{cosine}:centre" in compared.out and "protonet" in compared.out


def installed_package(site: Path) -> Path:
    """A package as pip would leave it (its code and a .dist-info with entry points) in ``site``, which goes on
    PYTHONPATH: importlib.metadata finds its entry points there."""
    package = site / "cosine_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(COSINE + EVEN_DIGITS)
    info = site / "cosine_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cosine-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[gpicl_bench.learners]\n"
        "cosine = cosine_plugin:Cosine\n"
        "knn = cosine_plugin:Cosine\n"  # a built-in name: the built-in wins
        "broken = cosine_plugin_absent:Cosine\n"
        "[gpicl_bench.suites]\n"
        "even-digits = cosine_plugin:EvenDigits\n"
        "[gpicl_bench.encoders]\n"
        "plugin-pixels = cosine_plugin:Cosine\n"
    )
    return site


def gpicl_bench(site: Path, cwd: Path, *args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "300"}
    command = [sys.executable, "-m", "gpicl_bench", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_entry_point_learner_and_suite_run_and_compare(tmp_path: Path) -> None:
    site = installed_package(tmp_path / "site")
    listed = gpicl_bench(site, tmp_path, "learners")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if line.count("│") > 2}
    assert "Nearest class mean under cosine similarity" in rows["cosine"] and "scale=10.0" in rows["cosine"]
    assert "(from entry point 'cosine' of package cosine-plugin 0.1)" in rows["cosine"]
    assert "k-nearest-neighbour vote" in rows["knn"] and "cannot load" in rows["broken"]
    suites = gpicl_bench(site, tmp_path, "suites")
    assert "even-digits" in suites.stdout and "plugin-pixels" in suites.stdout

    out = tmp_path / "r.h5"
    learners = ["--learner", "protonet", "--learner", "cosine:centre"]
    run = gpicl_bench(site, tmp_path, "run", *QUICK, "--suite", "even-digits", *learners, "--out", out)
    assert run.returncode == 0, run.stderr
    compared = gpicl_bench(site, tmp_path, "compare", out, "--format", "csv")
    assert compared.returncode == 0, compared.stderr
    assert "cosine:centre" in compared.stdout and "even-digits" in compared.stdout and "protonet" in compared.stdout

    broken = gpicl_bench(site, tmp_path, "run", *QUICK, "--learner", "broken")
    lines = broken.stderr.strip().splitlines()
    assert broken.returncode == 2 and len(lines) == 1, broken.stderr
    assert "entry point 'broken' of package cosine-plugin 0.1" in lines[0] and "cosine_plugin_absent" in lines[0]
