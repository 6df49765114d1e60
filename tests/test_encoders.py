"""Encoders: shapes, normalisation, strict weights loading, weights sources, labels and the optional-extra errors;
the library adapters against the libraries themselves are in test_encoder_adapters.py (`make test-encoders`)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from layouts_fine_grained import write_folder
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from gpicl_bench.encoders import ENCODERS, encoder_label, encoder_ref, external
from gpicl_bench.encoders.base import IMAGENET_MEAN, IMAGENET_STD
from gpicl_bench.encoders.conv4 import Conv4
from gpicl_bench.encoders.pixels import Pixels
from gpicl_bench.encoders.weights import load_strictly
from gpicl_bench.errors import UserError


def _image(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.new("RGB", size, colour)


def test_pixels_resizes_normalises_and_flattens() -> None:
    encoder = Pixels(size=8)
    prepared = encoder.prepare(_image((255, 0, 128)))
    assert prepared.shape == (3, 8, 8)
    expected = [(1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], -IMAGENET_MEAN[1] / IMAGENET_STD[1]]
    assert torch.allclose(prepared[:2, 4, 4], torch.tensor(expected), atol=1e-5)
    features = encoder.network()(torch.stack([prepared, prepared]))
    assert features.shape == (2, 192)
    assert Pixels(size=8, grey=True).prepare(_image((10, 20, 30))).shape == (1, 8, 8)


def test_conv4_gives_1600_features_at_84_and_depends_on_seed() -> None:
    image = Pixels(size=84).prepare(Image.fromarray(np.random.default_rng(0).integers(0, 255, (84, 84, 3), np.uint8)))
    first, again, other = Conv4(seed=0), Conv4(seed=0), Conv4(seed=1)
    with torch.no_grad():
        a = first.network()(image[None])
        assert a.shape == (1, 1600)
        assert torch.equal(a, again.network()(image[None]))
        assert not torch.equal(a, other.network()(image[None]))
    digests = [encoder.identity()["weights_sha256"] for encoder in (first, again, other)]
    assert digests[0] == digests[1] != digests[2]


def test_conv4_loads_matching_weights_and_refuses_others(tmp_path: Path) -> None:
    source = Conv4(seed=3)
    path = tmp_path / "conv4.safetensors"
    save_file({k: v.contiguous() for k, v in source.network().state_dict().items()}, str(path))
    loaded = Conv4(weights=str(path))
    assert loaded.identity()["weights_sha256"] == source.identity()["weights_sha256"]

    wrong = tmp_path / "wrong.safetensors"
    save_file({"layer.weight": torch.zeros(2, 2)}, str(wrong))
    with pytest.raises(UserError, match="do not match"):
        Conv4(weights=str(wrong))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="corrupt or unreadable"):
        Conv4(weights=str(corrupt))
    with pytest.raises(UserError, match="not found"):
        Conv4(weights=str(tmp_path / "missing.safetensors"))


def test_encoder_references_are_canonical() -> None:
    assert str(encoder_ref("pixels:size=28")) == "pixels"
    assert str(encoder_ref("pixels:size=32,grey")) == "pixels:grey,size=32"
    assert str(encoder_ref("timm:resnet50")) == "timm:model=resnet50"
    assert str(encoder_ref("open_clip:ViT-B-16,pretrained=laion2b_s34b_b88k")) == (
        "open_clip:model=ViT-B-16,pretrained=laion2b_s34b_b88k"
    )
    with pytest.raises(UserError, match="no option"):
        encoder_ref("pixels:colour=1")
    with pytest.raises(UserError, match="unknown encoder"):
        encoder_ref("pixles")


@pytest.mark.parametrize("library", ["timm", "open_clip", "torchvision"])
@pytest.mark.parametrize(
    "failure",
    [
        ImportError("No module named 'x'"),
        RuntimeError("operator torchvision::nms does not exist"),
        OSError("libcudart.so: cannot open"),
    ],
)
def test_an_extra_that_does_not_import_is_one_line_exit_2(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, library: str, failure: Exception
) -> None:
    """A torchvision built for another torch raises RuntimeError or OSError on import, not ImportError."""

    def broken(name: str) -> None:
        raise failure

    monkeypatch.setattr(external, "importlib", SimpleNamespace(import_module=broken))
    write_folder(tmp_path / "data" / "shapes", ["a", "b"], per_class=2)
    result = cli("features", "--suite", "folder:root=shapes", "--data-root", tmp_path / "data",
                 "--encoder", f"{library}:model=resnet18,pretrained=none")  # fmt: skip
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert type(failure).__name__ in result.err and external.WORKING_PAIR in result.err
    assert f"'gpicl-bench[{library}]'" in result.err


def test_a_missing_extra_names_its_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(external, "importlib", SimpleNamespace(import_module=absent))
    with pytest.raises(UserError, match=r"install it with: pip install 'gpicl-bench\[timm\]'$"):
        ENCODERS.build(encoder_ref("timm:resnet18"))


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("timm:model=resnet18,pretrained=", "pretrained is empty"),
        ("open_clip:model=ViT-B-16,pretrained=", "pretrained is empty"),
        ("timm:model=resnet18,seed=3", "seed applies only to random weights"),
        ("torchvision:model=resnet18,weights=w.pt,seed=1", "seed applies only"),
        ("open_clip:model=ViT-B-16,pretrained=laion2b_s34b_b88k,weights=w.pt", "not both"),
        ("torchvision:pretrained=none", "needs a model name"),
    ],
)
def test_weights_sources_are_checked_before_any_library_loads(reference: str, message: str) -> None:
    """Unseeded or ambiguous weights are refused: random weights always come from a seed."""
    with pytest.raises(UserError, match=message):
        ENCODERS.build(encoder_ref(reference))


class _Tiny(nn.Module):
    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.body = nn.Linear(2, width)
        self.fc = nn.Identity()  # a classifier head the encoder removed


def test_strict_loading_refuses_any_mismatch_but_a_removed_head(tmp_path: Path) -> None:
    source = _Tiny()
    state = {**source.state_dict(), "fc.weight": torch.zeros(5, 3), "fc.bias": torch.zeros(5)}
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    target = _Tiny()
    load_strictly(target, wrapped, "tiny", removed=("fc.",))
    assert torch.equal(target.body.weight, source.body.weight)
    with pytest.raises(UserError, match=r"unexpected fc\.bias, fc\.weight"):
        load_strictly(_Tiny(), wrapped, "tiny")
    cases = {
        "wider.safetensors": (
            {k: v.contiguous() for k, v in _Tiny(4).state_dict().items()},
            r"wrong shape body\.weight, body\.bias",
        ),
        "partial.safetensors": ({"body.weight": source.body.weight.detach().contiguous()}, r"missing body\.bias"),
    }
    for name, (tensors, message) in cases.items():
        save_file(tensors, str(tmp_path / name))
        with pytest.raises(UserError, match=message):
            load_strictly(_Tiny(), tmp_path / name, "tiny")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(UserError, match="hold no state dict"):
        load_strictly(_Tiny(), tmp_path / "list.pt", "tiny")
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(UserError, match="corrupt or unreadable"):
        load_strictly(_Tiny(), tmp_path / "corrupt.pt", "tiny")


def test_a_weights_file_is_labelled_by_name_and_content_not_path(tmp_path: Path) -> None:
    first, second = tmp_path / "one" / "conv4.safetensors", tmp_path / "two" / "conv4.safetensors"
    for path in (first, second):
        path.parent.mkdir()
        save_file({k: v.contiguous() for k, v in Conv4(seed=1).network().state_dict().items()}, str(path))
    labels = {encoder_label(encoder_ref(f"conv4:weights={path}")) for path in (first, second)}
    assert len(labels) == 1
    (label,) = labels
    assert str(tmp_path) not in label and label.startswith("conv4:weights=conv4.safetensors@")
