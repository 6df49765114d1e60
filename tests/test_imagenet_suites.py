"""miniImageNet and tieredImageNet on tiny folders in every real layout, and the restricted unpickler they read with."""

from __future__ import annotations

import builtins
import collections
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from layouts_imagenet import (
    MINI,
    PER_CLASS,
    TIERED,
    colour,
    general_of,
    python2_pickle,
    write_mini_csv,
    write_mini_pickles,
    write_tiered_npz,
    write_tiered_png,
)

from gpicl_bench import safe_pickle
from gpicl_bench.errors import UserError
from gpicl_bench.suites.imagenet import MiniImageNet, TieredImageNet, _npz_images
from gpicl_bench.suites.images import ImageSplit, ImageSuite


def assert_aligned(split: ImageSplit, colour_of: Callable[[str], np.ndarray] = colour) -> None:
    """Every image shows the colour of the class its label names, and every class has images."""
    assert sorted(set(split.labels.tolist())) == list(range(len(split.class_names)))
    for item, label in zip(split.items, split.labels, strict=True):
        mean = np.asarray(item.open(), dtype=float).mean(axis=(0, 1))
        assert np.abs(mean - colour_of(split.class_names[label])).max() < 6, item.name


def error_of(action: Callable[[], object]) -> str:
    """The one-line message of the user error ``action`` raises."""
    with pytest.raises(UserError) as error:
        action()
    message = str(error.value)
    assert "\n" not in message
    return message


# miniImageNet


def test_mini_csv_layout(tmp_path: Path) -> None:
    write_mini_csv(tmp_path)
    suite = MiniImageNet(root=str(tmp_path))
    assert isinstance(suite, ImageSuite)
    for split, names in MINI.items():
        images = suite.images(split)
        assert images.class_names == tuple(names)
        assert len(images.items) == PER_CLASS * len(names)
        assert all(item.source.parent == tmp_path / "images" for item in images.items)
        assert_aligned(images)


@pytest.mark.parametrize("val_name", ["validation", "val"])
def test_mini_learn2learn_pickles(tmp_path: Path, val_name: str) -> None:
    write_mini_pickles(tmp_path, val_name)
    suite = MiniImageNet(root=str(tmp_path))
    for split, names in MINI.items():
        images = suite.images(split)
        assert images.class_names == tuple(names)
        assert len(images.items) == PER_CLASS * len(names)
        assert_aligned(images)
    assert suite.images("val").items[3].name == f"{tmp_path}/mini-imagenet-cache-{val_name}.pkl[3]"


def test_mini_reads_each_split_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mini_pickles(tmp_path)
    suite = MiniImageNet(root=str(tmp_path))
    first = suite.images("train")
    monkeypatch.setattr(safe_pickle, "load", lambda *args, **kwargs: pytest.fail("read the pickle again"))
    assert suite.images("train") is first


def test_mini_missing_layout(tmp_path: Path) -> None:
    message = error_of(lambda: MiniImageNet(root=str(tmp_path)))
    assert str(tmp_path) in message and "expected layout: images/ with train.csv" in message
    assert "mini-imagenet-cache-{train,validation,test}.pkl" in message


def test_mini_missing_split_file(tmp_path: Path) -> None:
    write_mini_csv(tmp_path)
    (tmp_path / "val.csv").unlink()
    suite = MiniImageNet(root=str(tmp_path))
    assert len(suite.images("test").items) == PER_CLASS * len(MINI["test"])
    message = error_of(lambda: suite.images("val"))
    assert "no val.csv" in message and "expected layout" in message


def test_mini_missing_validation_pickle_names_both(tmp_path: Path) -> None:
    write_mini_pickles(tmp_path)
    (tmp_path / "mini-imagenet-cache-validation.pkl").unlink()
    message = error_of(lambda: MiniImageNet(root=str(tmp_path)).images("val"))
    assert "no mini-imagenet-cache-validation.pkl or mini-imagenet-cache-val.pkl" in message


def test_mini_csv_errors(tmp_path: Path) -> None:
    write_mini_csv(tmp_path)
    (tmp_path / "train.csv").write_text("file,class\nn0000000000000000.jpg,n00000000\n")
    assert "train.csv does not start with the header filename,label" in error_of(
        lambda: MiniImageNet(root=str(tmp_path)).images("train")
    )
    (tmp_path / "train.csv").write_text("filename,label\nn0000000000000000.jpg,n00000000\na.jpg,n1,extra\n")
    assert "train.csv line 3 is not filename,label" in error_of(
        lambda: MiniImageNet(root=str(tmp_path)).images("train")
    )
    (tmp_path / "images").rename(tmp_path / "pictures")
    assert "no images/ folder" in error_of(lambda: MiniImageNet(root=str(tmp_path)).images("test"))


def test_mini_class_dict_must_cover_every_image_once(tmp_path: Path) -> None:
    images = np.zeros((4, 84, 84, 3), dtype=np.uint8)
    path = tmp_path / "mini-imagenet-cache-train.pkl"
    for class_dict in ({"n1": [0, 1], "n2": [2]}, {"n1": [0, 1], "n2": [1, 2, 3]}, {"n1": [0, 1], "n2": [2, 3, 4]}):
        path.write_bytes(pickle.dumps({"image_data": images, "class_dict": class_dict}))
        message = error_of(lambda: MiniImageNet(root=str(tmp_path)).images("train"))
        assert "does not put each of the 4 images in exactly one class" in message
    path.write_bytes(pickle.dumps({"image_data": images[..., 0], "class_dict": {"n1": [0, 1, 2, 3]}}))
    assert "image_data is not a uint8 array" in error_of(lambda: MiniImageNet(root=str(tmp_path)).images("train"))


def test_unknown_split_and_option(tmp_path: Path) -> None:
    write_mini_csv(tmp_path)
    assert "not 'validation'" in error_of(lambda: MiniImageNet(root=str(tmp_path)).images("validation"))
    assert "specific or general" in error_of(lambda: TieredImageNet(root=str(tmp_path), labels="fine"))


def test_fingerprint_follows_the_index_files_without_loading_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mini_pickles(tmp_path / "mini")
    write_tiered_png(tmp_path / "tiered")
    monkeypatch.setattr(safe_pickle, "load", lambda *args, **kwargs: pytest.fail("fingerprint loaded a pickle"))
    suites = [MiniImageNet(root=str(tmp_path / "mini")), TieredImageNet(root=str(tmp_path / "tiered"))]
    before = [suite.fingerprint() for suite in suites]
    assert before == [suite.fingerprint() for suite in suites]
    with (tmp_path / "mini" / "mini-imagenet-cache-test.pkl").open("ab") as file:
        file.write(b"\0")
    (tmp_path / "tiered" / "val_labels.pkl").write_bytes(b"changed")
    after = [suite.fingerprint() for suite in suites]
    assert before[0] != after[0] and before[1] != after[1]


# tieredImageNet


def test_tiered_png_pickles_from_python2(tmp_path: Path) -> None:
    write_tiered_png(tmp_path)
    specific, general = TieredImageNet(root=str(tmp_path)), TieredImageNet(root=str(tmp_path), labels="general")
    for split, (classes, categories) in TIERED.items():
        fine, coarse = specific.images(split), general.images(split)
        assert fine.class_names == tuple(classes)  # the dataset's label order, named by label_specific_str
        assert coarse.class_names == tuple(categories)
        assert len(fine.items) == len(coarse.items) == PER_CLASS * len(classes)
        assert_aligned(fine)
        assert [coarse.class_names[c] for c in coarse.labels] == [
            general_of(split, fine.class_names[f]) for f in fine.labels
        ]


@pytest.mark.parametrize("compressed", [False, True])
def test_tiered_npz_variant(tmp_path: Path, compressed: bool) -> None:
    write_tiered_npz(tmp_path, compressed)
    suite = TieredImageNet(root=str(tmp_path))
    for split, (classes, _) in TIERED.items():
        images = suite.images(split)
        assert images.class_names == tuple(str(label) for label in range(len(classes)))
        assert len(images.items) == PER_CLASS * len(classes)
        assert_aligned(images, lambda name, classes=classes: colour(classes[int(name)]))
    assert isinstance(_npz_images(tmp_path / "train_images.npz"), np.memmap) is not compressed
    general = TieredImageNet(root=str(tmp_path), labels="general")
    assert "val_labels.pkl has no label_general (it has labels)" in error_of(lambda: general.images("val"))


def test_tiered_npz_refuses_object_arrays(tmp_path: Path) -> None:
    write_tiered_npz(tmp_path)
    np.savez(tmp_path / "test_images.npz", images=np.array([b"x", None], dtype=object))
    assert "allow_pickle" in error_of(lambda: TieredImageNet(root=str(tmp_path)).images("test"))


def test_tiered_missing_files(tmp_path: Path) -> None:
    write_tiered_png(tmp_path)
    (tmp_path / "val_labels.pkl").unlink()
    (tmp_path / "test_images_png.pkl").unlink()
    suite = TieredImageNet(root=str(tmp_path))
    message = error_of(lambda: suite.images("val"))
    assert "no val_labels.pkl" in message and "expected layout: {split}_images_png.pkl" in message
    assert "no test_images_png.pkl or test_images.npz" in error_of(lambda: suite.images("test"))


def test_tiered_count_mismatch(tmp_path: Path) -> None:
    write_tiered_npz(tmp_path)
    (tmp_path / "val_labels.pkl").write_bytes(pickle.dumps({"labels": np.array([0, 1, 2, 0, 1])}))
    message = error_of(lambda: TieredImageNet(root=str(tmp_path)).images("val"))
    assert f"val_images.npz holds {PER_CLASS * 3} images but val_labels.pkl 5 labels" in message


# the restricted unpickler


class _Payload:
    """A pickle that, loaded by plain pickle, calls ``call(*args)``."""

    def __init__(self, call: Callable[..., object], *args: object) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple[object, ...]:
        return self.call, self.args


@pytest.mark.parametrize("call", [os.system, builtins.open])
def test_refuses_code_and_never_runs_it(tmp_path: Path, call: Callable[..., object]) -> None:
    marker = tmp_path / "ran"
    payload = _Payload(os.system, f"touch '{marker}'") if call is os.system else _Payload(open, str(marker), "w")
    path = tmp_path / "mini-imagenet-cache-train.pkl"
    path.write_bytes(pickle.dumps({"image_data": np.zeros((1, 84, 84, 3), np.uint8), "class_dict": {"n1": payload}}))
    message = error_of(lambda: safe_pickle.load(path))
    assert message.startswith(f"refusing to unpickle {path}: it imports {call.__module__}.{call.__name__};")
    assert "refusing to unpickle" in error_of(lambda: MiniImageNet(root=str(tmp_path)).images("train"))
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the payload is live: plain pickle runs it
    assert marker.exists()


def test_refuses_codec_lookups(tmp_path: Path) -> None:
    path = tmp_path / "rot13.pkl"
    path.write_bytes(b"c_codecs\nencode\n(X\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13tR.")
    assert "not latin1" in error_of(lambda: safe_pickle.load(path))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_loads_containers_and_arrays(tmp_path: Path, protocol: int) -> None:
    pngs = np.empty(2, dtype=object)
    pngs[:] = [np.arange(3, dtype=np.uint8), np.arange(5, dtype=np.uint8)]
    data = {
        "images": np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        "pngs": pngs,
        "names": collections.OrderedDict(a=b"\xff\x00", b=bytearray(b"x")),
        "other": [np.int64(7), np.float32(0.5), {1, 2}, frozenset({3}), 1 + 2j, ("t", None, True)],
    }
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = safe_pickle.load(path)
    np.testing.assert_array_equal(loaded["images"], data["images"])
    assert [a.tolist() for a in loaded["pngs"]] == [[0, 1, 2], [0, 1, 2, 3, 4]]
    assert loaded["names"] == data["names"] and loaded["other"] == data["other"]


def test_python2_pickles_need_their_encoding(tmp_path: Path) -> None:
    path = tmp_path / "labels.pkl"
    path.write_bytes(python2_pickle({b"label_specific_str": [b"caf\xc3\xa9"], b"label_specific": np.arange(3)}))
    assert "UnicodeDecodeError" in error_of(lambda: safe_pickle.load(path))
    loaded = safe_pickle.load(path, encoding="bytes")
    assert loaded[b"label_specific_str"] == [b"caf\xc3\xa9"]
    assert loaded[b"label_specific"].tolist() == [0, 1, 2]


def test_corrupt_pickles(tmp_path: Path) -> None:
    path = tmp_path / "mini-imagenet-cache-train.pkl"
    path.write_bytes(pickle.dumps({"image_data": np.zeros((2, 84, 84, 3), np.uint8)})[:-40])
    assert f"{path} is not a readable dataset pickle" in error_of(lambda: safe_pickle.load(path))
    path.write_bytes(b"<!DOCTYPE html><html><body>Quota exceeded</body></html>")  # a download that went wrong
    message = error_of(lambda: MiniImageNet(root=str(tmp_path)).images("train"))
    assert f"{path} is not a readable dataset pickle" in message
    assert "cannot read" in error_of(lambda: safe_pickle.load(tmp_path / "absent.pkl"))
