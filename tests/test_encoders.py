"""Encoders: shapes, normalisation, weights handling and the optional-extra errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from gpicl_bench.encoders import ENCODERS, encoder_ref
from gpicl_bench.encoders.base import IMAGENET_MEAN, IMAGENET_STD
from gpicl_bench.encoders.conv4 import Conv4
from gpicl_bench.encoders.pixels import Pixels
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


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed")
def test_missing_extra_names_the_install_command() -> None:
    with pytest.raises(UserError, match=r"pip install 'gpicl-bench\[timm\]'"):
        ENCODERS.build(encoder_ref("timm:resnet18"))
