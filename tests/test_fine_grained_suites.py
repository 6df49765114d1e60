"""The CUB, Aircraft, ChestX and folder image suites on tiny copies of the real layouts (tests/layouts_fine_grained)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from layouts_fine_grained import (
    AIRCRAFT_SIZE,
    CHESTX_FINDINGS,
    Colour,
    write_aircraft,
    write_chestx,
    write_cub,
    write_folder,
)

from gpicl_bench.errors import UserError
from gpicl_bench.suites.fine_grained import CUB, Aircraft, ChestX, Folder
from gpicl_bench.suites.images import ImageSplit, ImageSuite


@pytest.fixture(scope="module")
def full_cub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 200 CUB classes, one image each: what the presets' class counts need."""
    root = tmp_path_factory.mktemp("data") / "CUB_200_2011"
    write_cub(root)
    return root


@pytest.fixture(scope="module")
def full_aircraft(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "fgvc-aircraft-2013b"
    write_aircraft(root)
    return root


def class_sets(suite: ImageSuite) -> dict[str, set[str]]:
    return {split: set(suite.images(split).class_names) for split in suite.splits}


def assert_partition(sets: dict[str, set[str]], counts: tuple[int, ...]) -> None:
    assert tuple(len(sets[split]) for split in ("train", "val", "test")) == counts
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])


def assert_aligned(split: ImageSplit, colours: dict[str, Colour], point: tuple[int, int]) -> None:
    """Every image's pixel at ``point`` shows its label's class colour (JPEG moves it by a few levels at most)."""
    assert len(split.items) > 0
    for item, label in zip(split.items, split.labels, strict=True):
        pixel = np.array(item.open().getpixel(point), dtype=int)
        assert np.abs(pixel - colours[split.class_names[label]]).max() <= 6, (item.name, split.class_names[label])


def test_suites_satisfy_the_image_suite_protocol(full_cub: Path, full_aircraft: Path, tmp_path: Path) -> None:
    write_chestx(tmp_path / "chestx")
    write_folder(tmp_path / "folder", ["a", "b"])
    for suite in (
        CUB(root=str(full_cub)),
        Aircraft(root=str(full_aircraft)),
        ChestX(root=str(tmp_path / "chestx")),
        Folder(root=str(tmp_path / "folder")),
    ):
        assert isinstance(suite, ImageSuite)


def test_cub_presets_split_100_50_50_with_different_classes_and_meta_dataset_140_30_30(full_cub: Path) -> None:
    closer, frn, md = (class_sets(CUB(root=str(full_cub), preset=p)) for p in ("closer-look", "frn", "meta-dataset"))
    assert_partition(closer, (100, 50, 50))
    assert_partition(frn, (100, 50, 50))
    assert_partition(md, (140, 30, 30))
    # closer-look counts sorted folders from 0, FRN counts ids from 1: the two train sets are disjoint.
    assert "001.Bird_1" in closer["train"] and "002.Bird_2" in closer["val"] and "004.Bird_4" in closer["test"]
    assert "002.Bird_2" in frn["train"] and "001.Bird_1" in frn["val"] and "003.Bird_3" in frn["test"]
    assert not closer["train"] & frn["train"]
    # Spot checks against Meta-Dataset's cu_birds_splits.json.
    assert {"008.Bird_8", "194.Bird_194"} <= md["test"] and {"044.Bird_44", "200.Bird_200"} <= md["val"]
    assert {"001.Bird_1", "190.Bird_190"} <= md["train"]


def test_aircraft_presets_split_50_25_25_and_meta_dataset_70_15_15(full_aircraft: Path) -> None:
    frn = class_sets(Aircraft(root=str(full_aircraft), preset="frn"))
    md = class_sets(Aircraft(root=str(full_aircraft), preset="meta-dataset"))
    assert_partition(frn, (50, 25, 25))
    assert_partition(md, (70, 15, 15))
    assert {"707-320", "737-200"} <= frn["train"] and "727-200" in frn["val"] and "737-300" in frn["test"]
    assert {"Spitfire", "BAE-125"} <= md["test"] and {"Tornado", "BAE 146-300"} <= md["val"]
    assert {"F/A-18", "Cessna 172"} <= md["train"]


def test_cub_labels_follow_image_class_labels_and_crop_gives_the_box(tmp_path: Path) -> None:
    colours = write_cub(tmp_path, n_classes=8, per_class=3)
    whole = CUB(root=str(tmp_path), preset="closer-look").images("train")
    assert whole.class_names == ("001.Bird_1", "003.Bird_3", "005.Bird_5", "007.Bird_7")
    assert whole.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert whole.items[0].open().size == (32, 24) and whole.items[0].open().getpixel((0, 0)) == (0, 0, 0)
    assert_aligned(whole, colours, point=(16, 12))
    cropped = CUB(root=str(tmp_path), crop=True).images("val")
    assert cropped.class_names == ("001.Bird_1", "005.Bird_5")
    assert {item.open().size for item in cropped.items} == {(16, 8)}
    for corner in ((0, 0), (15, 7)):  # the crop holds only the bird: no black border left
        assert_aligned(cropped, colours, point=corner)


def test_aircraft_crop_takes_the_box_and_no_crop_drops_the_banner(tmp_path: Path) -> None:
    colours = write_aircraft(tmp_path, n_variants=8, per_class=3)
    cropped = Aircraft(root=str(tmp_path)).images("train")
    assert cropped.class_names == ("707-320", "737-200", "737-400", "737-600")
    assert len(cropped.items) == 12  # each image once, though trainval repeats train and val
    assert {item.open().size for item in cropped.items} == {(16, 16)}
    assert_aligned(cropped, colours, point=(0, 0))
    whole = Aircraft(root=str(tmp_path), crop=False).images("test")
    width, height = AIRCRAFT_SIZE
    image = whole.items[0].open()
    assert image.size == (width, height - 20)
    assert np.asarray(image).max() < 240  # no white banner row is left
    assert_aligned(whole, colours, point=(width // 2, 8))


def test_chestx_keeps_single_label_images_of_the_seven_findings(tmp_path: Path) -> None:
    colours = write_chestx(tmp_path, per_class=2)
    suite = ChestX(root=str(tmp_path))
    assert suite.splits == ("test",)
    split = suite.images("test")
    assert split.class_names == CHESTX_FINDINGS
    assert np.bincount(split.labels).tolist() == [2] * 7  # No Finding, Pneumonia, Effusion|Mass, Hernia left out
    assert_aligned(split, colours, point=(4, 4))
    with pytest.raises(UserError, match="no split 'train'"):
        suite.images("train")


def test_folder_finds_nested_classes_and_skips_hidden_and_other_files(tmp_path: Path) -> None:
    classes = ["Greek/character01", "Latin/character01", "Latin/character02", "Latin/character10"]
    colours = write_folder(tmp_path, classes, suffix=".JPG")
    write_folder(tmp_path / ".cache", ["thumbs"])
    (tmp_path / "Latin" / "character01" / ".hidden.png").write_bytes(b"not an image")
    (tmp_path / "Latin" / "character01" / "notes.txt").write_text("not an image")
    suite = Folder(root=str(tmp_path))
    assert suite.splits == ("test",)
    split = suite.images("test")
    assert split.class_names == tuple(classes)
    assert np.bincount(split.labels).tolist() == [2, 2, 2, 2]
    assert_aligned(split, colours, point=(4, 4))


def test_folder_follows_links_but_not_back_up_the_tree(tmp_path: Path) -> None:
    write_folder(tmp_path, ["real"])
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "real" / "loop").symlink_to(tmp_path, target_is_directory=True)
    assert Folder(root=str(tmp_path)).images("test").class_names == ("alias", "real")


def test_folder_prepared_form_takes_its_splits_from_the_folders(tmp_path: Path) -> None:
    colours = write_folder(tmp_path / "train", ["ant", "bee"]) | write_folder(tmp_path / "test", ["cat", "dog/pug"])
    suite = Folder(root=str(tmp_path))
    assert suite.splits == ("train", "test")
    assert suite.images("train").class_names == ("ant", "bee")
    assert suite.images("test").class_names == ("cat", "dog/pug")
    assert_aligned(suite.images("test"), colours, point=(4, 4))
    with pytest.raises(UserError, match="no split 'val'"):
        suite.images("val")


def test_folder_split_fractions_assign_whole_classes_by_a_seeded_shuffle(tmp_path: Path) -> None:
    write_folder(tmp_path, [f"class{i}" for i in range(8)], per_class=1)
    sets = class_sets(Folder(root=str(tmp_path), split_fractions="0.5/0.25/0.25"))
    assert_partition(sets, (4, 2, 2))
    assert class_sets(Folder(root=str(tmp_path), split_fractions="0.5,0.25,0.25")) == sets
    assert class_sets(Folder(root=str(tmp_path), split_fractions="0.5/0.25/0.25", seed=1)) != sets
    for bad in ("0.5/0.5/0.5", "0.5/0.5", "nan/0.5/0.5", "half/0.25/0.25"):
        with pytest.raises(UserError, match="split_fractions must be three fractions"):
            Folder(root=str(tmp_path), split_fractions=bad)


def test_folder_fingerprint_is_stable_and_sees_new_images(tmp_path: Path) -> None:
    write_folder(tmp_path, ["a", "b"])
    before = Folder(root=str(tmp_path)).fingerprint()
    assert Folder(root=str(tmp_path)).fingerprint() == before
    write_folder(tmp_path, ["c"])
    assert Folder(root=str(tmp_path)).fingerprint() != before


def test_folder_rejects_loose_images_mixed_split_folders_and_fractions_with_split_folders(tmp_path: Path) -> None:
    write_folder(tmp_path / "loose", ["a"])
    (tmp_path / "loose" / "stray.png").write_bytes(b"")
    with pytest.raises(UserError, match=r"images directly in \S*loose belong to no class; expected layout"):
        Folder(root=str(tmp_path / "loose")).images("test")
    write_folder(tmp_path / "mixed", ["test/a", "extra/b"])
    with pytest.raises(UserError, match=r"split folders and other folders \(extra\); expected layout"):
        Folder(root=str(tmp_path / "mixed"))
    write_folder(tmp_path / "prepared", ["test/a"])
    with pytest.raises(UserError, match="split_fractions conflicts with its split folders"):
        Folder(root=str(tmp_path / "prepared"), split_fractions="0.5/0.25/0.25")


def test_missing_and_malformed_index_files_name_the_file_and_the_layout(tmp_path: Path) -> None:
    cub, aircraft = tmp_path / "CUB_200_2011", tmp_path / "fgvc-aircraft-2013b"
    write_cub(cub, n_classes=4)
    write_aircraft(aircraft, n_variants=4)
    (cub / "classes.txt").unlink()
    with pytest.raises(UserError, match=r"no classes\.txt; expected layout: CUB_200_2011/"):
        CUB(root=str(cub)).images("train")
    (aircraft / "data" / "images_variant_val.txt").write_text("0000001\n")
    with pytest.raises(UserError, match=r"images_variant_val\.txt line 1 is malformed.*expected layout: fgvc"):
        Aircraft(root=str(aircraft)).images("train")
    write_cub(cub, n_classes=4)
    (cub / "bounding_boxes.txt").write_text("1 8.0 8.0 wide 8.0\n")
    with pytest.raises(UserError, match=r"bounding_boxes\.txt line 1 is malformed"):
        CUB(root=str(cub), crop=True).images("train")
    (tmp_path / "chestx").mkdir()
    with pytest.raises(UserError, match=r"no Data_Entry_2017\.csv; expected layout: chestx/"):
        ChestX(root=str(tmp_path / "chestx")).images("test")
    (tmp_path / "chestx" / "Data_Entry_2017.csv").write_text("Image,Labels\nx.png,Mass\n")
    with pytest.raises(UserError, match="lacks column"):
        ChestX(root=str(tmp_path / "chestx")).images("test")


def test_missing_images_and_empty_classes_are_user_errors(tmp_path: Path) -> None:
    write_cub(tmp_path, n_classes=4, per_class=2)
    (tmp_path / "images" / "002.Bird_2" / "Bird_2_0001_201.jpg").unlink()
    with pytest.raises(UserError, match=r"missing image images/002\.Bird_2/Bird_2_0001_201\.jpg"):
        CUB(root=str(tmp_path)).images("train")
    assert len(CUB(root=str(tmp_path)).images("val").items) == 2  # only the requested split's images are checked
    write_cub(tmp_path, n_classes=4, per_class=2)
    with (tmp_path / "classes.txt").open("a") as stream:
        stream.write("6 006.Bird_6\n")
    with pytest.raises(UserError, match=r"class '006\.Bird_6' has no images"):
        CUB(root=str(tmp_path)).images("train")


def test_a_corrupt_image_fails_on_open_naming_the_file(tmp_path: Path) -> None:
    write_aircraft(tmp_path, n_variants=2)
    item = Aircraft(root=str(tmp_path), crop=False).images("train").items[0]
    Path(item.name).write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match=f"cannot read image {re.escape(item.name)}"):
        item.open()


def test_unknown_presets_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"unknown cub preset 'frm'.*did you mean 'frn'"):
        CUB(root=str(tmp_path), preset="frm")
    with pytest.raises(UserError, match="unknown aircraft preset 'closer-look'"):
        Aircraft(root=str(tmp_path), preset="closer-look")
