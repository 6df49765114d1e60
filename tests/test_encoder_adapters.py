"""The timm, open_clip and torchvision adapters against the libraries themselves: cached features equal the
library's own forward pass on images of every common mode, weights files load only when they fit, and random weights
are the same in every process. Needs the extras beside a torchvision that imports (`make test-encoders`); skipped
elsewhere."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from gpicl_bench.features import FeatureSettings
from gpicl_bench.suites import open_suite


def _extras_import() -> bool:
    if any(importlib.util.find_spec(name) is None for name in ("timm", "open_clip", "torchvision")):
        return False
    try:
        import torchvision  # noqa: F401  (a torchvision built for another torch fails here)
    except (ImportError, RuntimeError, OSError):
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _extras_import(), reason="needs timm, open_clip and torchvision (make test-encoders)"
)

MODES = ("1", "L", "RGB", "RGBA", "P")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder suite whose images are PNGs of every common mode (and a JPEG), of odd sizes."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for index, mode in enumerate(MODES):
        folder = root / "shapes" / f"class_{mode}"
        folder.mkdir(parents=True)
        for k in range(2):
            rgba = Image.fromarray(rng.integers(0, 256, (37 + 5 * k, 53, 4), np.uint8), "RGBA")
            image = rgba if mode == "RGBA" else rgba.convert("RGB").convert(mode)
            image.save(folder / f"image_{k}.png")
        if index == 0:
            rgba.convert("RGB").save(folder / "photo.jpg", quality=90)
    return root


def _encode(data_root: Path, encoder: str) -> tuple[torch.Tensor, list[Path]]:
    """Features through the project's pipeline (filling the feature cache), and the image file of each row."""
    suite = open_suite("folder:root=shapes", FeatureSettings(encoder=encoder, data_root=str(data_root)))
    features = suite.suite.load("test").features
    again = suite.suite.load("test").features  # from the cache this time
    assert torch.equal(features, again)
    return features, [item.source for item in suite.suite.images.images("test").items]


def _library_forward(model: nn.Module, transform, files: list[Path], encode=None) -> torch.Tensor:
    """The library's own pipeline: its transform on the file read by Pillow as RGB, then its forward pass."""
    batch = torch.stack([transform(Image.open(path).convert("RGB")) for path in files])
    with torch.no_grad():
        return (encode or model.eval())(batch).flatten(1)


def _timm(name: str, seed: int):
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=0).eval()
    return model, timm.data.create_transform(**timm.data.resolve_model_data_config(model), is_training=False), None


def _torchvision(name: str, seed: int):
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, weights=None)
    model.fc = nn.Identity()
    return model, torchvision.models.get_model_weights(name).DEFAULT.transforms(), None


def _open_clip(name: str, seed: int):
    import open_clip

    torch.manual_seed(seed)
    clip, _, transform = open_clip.create_model_and_transforms(name, pretrained=None)
    return clip.eval(), transform, clip.encode_image


REFERENCES = {
    "timm:model=resnet18": lambda seed: _timm("resnet18", seed),
    "timm:model=vit_tiny_patch16_224": lambda seed: _timm("vit_tiny_patch16_224", seed),
    "torchvision:model=resnet18": lambda seed: _torchvision("resnet18", seed),
    "open_clip:model=ViT-B-16": lambda seed: _open_clip("ViT-B-16", seed),
}


@pytest.mark.parametrize("encoder", list(REFERENCES))
def test_random_weight_features_equal_the_library_forward_pass(data_root: Path, encoder: str) -> None:
    features, files = _encode(data_root, f"{encoder},pretrained=none,seed=3")
    assert len(files) == 2 * len(MODES) + 1
    model, transform, encode = REFERENCES[encoder](3)
    expected = _library_forward(model, transform, files, encode)
    assert features.shape == expected.shape
    assert torch.allclose(features, expected, rtol=1e-4, atol=1e-5), (features - expected).abs().max()
    other_seed, _ = _encode(data_root, f"{encoder},pretrained=none,seed=4")
    assert not torch.allclose(other_seed, expected, rtol=1e-4, atol=1e-5)  # the seed does choose the weights


def _save_classifier(path: Path, library: str, name: str, seed: int) -> None:
    """A state dict as the library trains it, classifier head included."""
    torch.manual_seed(seed)
    if library == "timm":
        import timm

        model = timm.create_model(name, pretrained=False)
    else:
        import torchvision

        model = torchvision.models.get_model(name, weights=None)
    torch.save(model.state_dict(), path)


@pytest.mark.parametrize("library", ["timm", "torchvision"])
def test_a_weights_file_gives_the_library_model_it_holds(data_root: Path, tmp_path: Path, library: str) -> None:
    path = tmp_path / "resnet18.pth"
    _save_classifier(path, library, "resnet18", seed=11)
    features, files = _encode(data_root, f"{library}:model=resnet18,weights={path}")
    model, transform, _ = REFERENCES[f"{library}:model=resnet18"](0)
    state = {k: v for k, v in torch.load(path, weights_only=True).items() if not k.startswith("fc.")}
    model.load_state_dict(state, strict=True)
    expected = _library_forward(model, transform, files)
    assert torch.allclose(features, expected, rtol=1e-4, atol=1e-5), (features - expected).abs().max()


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for library, name in (("timm", "resnet34"), ("timm", "vit_tiny_patch16_224"), ("torchvision", "resnet34")):
        files[f"{library}:{name}"] = folder / f"{library}-{name}.pth"
        _save_classifier(files[f"{library}:{name}"], library, name, seed=0)
    files["corrupt"] = folder / "corrupt.pth"
    files["corrupt"].write_bytes(b"PK\x03\x04 truncated")
    return files


@pytest.mark.parametrize(
    ("encoder", "file", "message"),
    [
        ("timm:model=resnet18", "timm:resnet34", "do not match the model (unexpected layer1.2"),
        ("timm:model=resnet18", "timm:vit_tiny_patch16_224", "do not match the model (missing"),
        ("torchvision:model=resnet18", "torchvision:resnet34", "do not match the model (unexpected layer1.2"),
        ("open_clip:model=ViT-B-16", "timm:resnet34", "do not match the model (missing"),
        ("timm:model=resnet18", "corrupt", "corrupt or unreadable"),
        ("torchvision:model=resnet18", "corrupt", "corrupt or unreadable"),
        ("open_clip:model=ViT-B-16", "corrupt", "corrupt or unreadable"),
    ],
)
def test_mismatched_or_corrupt_weights_are_refused_in_one_line(
    cli, data_root: Path, weights_files: dict[str, Path], encoder: str, file: str, message: str
) -> None:
    result = cli("features", "--suite", "folder:root=shapes", "--data-root", data_root, "--quiet",
                 "--encoder", f"{encoder},weights={weights_files[file]}")  # fmt: skip
    assert result.code == 2, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err


def _features_in_a_process(data_root: Path, cache: Path, encoder: str, env: dict[str, str] | None = None):
    command = [sys.executable, "-m", "gpicl_bench", "features", "--suite", "folder:root=shapes",
               "--data-root", str(data_root), "--encoder", encoder, "--cache-dir", str(cache), "--quiet"]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)


@pytest.mark.parametrize("encoder", ["timm:model=resnet18", "torchvision:model=resnet18", "open_clip:model=ViT-B-16"])
def test_random_weights_are_the_same_in_every_process(data_root: Path, tmp_path: Path, encoder: str) -> None:
    checksums = []
    for process in ("first", "second"):
        done = _features_in_a_process(data_root, tmp_path / process, f"{encoder},pretrained=none,seed=5")
        assert done.returncode == 0, done.stderr
        (entry,) = (tmp_path / process).glob("*.h5")
        with h5py.File(entry, "r") as file:
            checksums.append(file.attrs["checksum"])
    assert checksums[0] == checksums[1]


def test_a_failed_download_says_what_to_do_instead(data_root: Path, tmp_path: Path) -> None:
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hub")}
    done = _features_in_a_process(data_root, tmp_path / "cache", "timm:model=resnet18", offline)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "weights=FILE" in done.stderr and "pretrained=none,seed=N" in done.stderr
