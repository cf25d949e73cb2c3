"""fcnlib.voc on a fixture built in the devkit's real layout VOCdevkit/VOC2011/{JPEGImages,SegmentationClass}."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from fcnlib import paths, tiers, upper_bound, voc, viz

DEMO = paths.reference_dir() / "demo"
DEMO_ID = "2007_000129"


def write_label(path, array):
    im = Image.fromarray(array.astype(np.uint8), mode="P")
    im.putpalette(viz.voc_palette().reshape(-1).tolist())
    im.save(path)


@pytest.fixture
def devkit(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2011"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    shutil.copy(DEMO / "image.jpg", root / "JPEGImages" / f"{DEMO_ID}.jpg")
    shutil.copy(DEMO / "label.png", root / "SegmentationClass" / f"{DEMO_ID}.png")
    lab = np.zeros((40, 30), dtype=np.uint8)
    lab[5:20, 5:15] = 7
    lab[4, 4:16] = 255
    write_label(root / "SegmentationClass" / "2011_000001.png", lab)
    Image.fromarray(np.full((40, 30, 3), 128, dtype=np.uint8)).save(root / "JPEGImages" / "2011_000001.jpg")
    return tmp_path, root, lab


def test_reads_the_real_demo_label_as_indices(devkit):
    _, root, lab = devkit
    ds = voc.VOCSegmentation(root, ids=[DEMO_ID, "2011_000001"])
    assert len(ds) == 2
    y = ds.label(0)
    assert y.dtype == torch.uint8 and tuple(y.shape) == (500, 334)
    assert sorted(torch.unique(y).tolist()) == [0, 2, 15, 255]
    assert torch.equal(ds.label(1), torch.from_numpy(lab))
    x, y = ds[0]
    assert x.shape == (3, 500, 334) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_default_root_and_split(devkit, monkeypatch):
    datasets, root, _ = devkit
    monkeypatch.setenv("FCN_DATASETS", str(datasets))
    assert voc.default_root() == root
    tiers.require(voc.expected_paths(images=True), how=voc.HOW)  # the folders exist
    ids = voc.split_ids("seg11valid")
    assert len(ids) == 736 and DEMO_ID in ids
    with pytest.raises(tiers.MissingAssetError, match=r"(?s)735 of the 736 VOC files.*VOCtrainval"):
        voc.VOCSegmentation(images=False)  # the fixture holds only one of seg11valid's labels
    ds = voc.VOCSegmentation(ids=[DEMO_ID], images=False)
    assert ds[0].shape == (500, 334)


def test_missing_dataset_message(tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_DATASETS", str(tmp_path))
    with pytest.raises(tiers.MissingAssetError, match="SegmentationClass"):
        tiers.require(voc.expected_paths(), how=voc.HOW)
    with pytest.raises(ValueError, match="known splits are"):
        voc.split_ids("seg12test")


def test_rgb_label_is_refused(devkit):
    _, root, _ = devkit
    rgb = root / "SegmentationClass" / "rgb.png"
    Image.open(DEMO / "label.png").convert("RGB").save(rgb)
    with pytest.raises(ValueError, match="palette"):
        voc.read_label(rgb)


def test_classes():
    names = voc.classes()
    assert len(names) == 21 and names[0] == "background" and names[15] == "person"


def test_upper_bound_over_voc_sizes(devkit):
    _, root, _ = devkit
    ds = voc.VOCSegmentation(root, ids=[DEMO_ID, "2011_000001"], images=False)
    r = upper_bound.upper_bound(ds.labels(), factors=(32, 4))
    assert 0 < r[32]["mean_iu"] < r[4]["mean_iu"] <= 1


@pytest.mark.parametrize("keep", [0.5, 0.02], ids=["truncated", "header-only"])
def test_truncated_files_are_named_in_the_error(tmp_path, keep):
    """PIL decodes lazily and its errors ("image file is truncated") do not name the file: a broken
    file in a 736-image pass must say which one it is and what to do."""
    g = np.random.default_rng(0)
    jpg, png = tmp_path / "2011_000002.jpg", tmp_path / "2011_000002.png"
    Image.fromarray(g.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(jpg, quality=95)
    write_label(png, g.integers(0, 21, (64, 48)))
    assert voc.read_image(jpg).shape == (3, 64, 48) and voc.read_label(png).shape == (64, 48)
    for path, read in ((jpg, voc.read_image), (png, voc.read_label)):
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * keep)])
        with pytest.raises(OSError, match=rf"(?s){path.name}.*(truncated|corrupt).*re-extract") as e:
            read(path)
        assert isinstance(e.value, voc.UnreadableImageError) and str(path) in str(e.value)
    png.write_bytes(b"<html>404 Not Found</html>")              # not an image at all
    with pytest.raises(voc.UnreadableImageError, match=rf"(?s){png.name}.*corrupt.*UnidentifiedImageError"):
        voc.read_label(png)
    with pytest.raises(FileNotFoundError):                       # a missing file is not called corrupt
        voc.read_image(tmp_path / "missing.jpg")
