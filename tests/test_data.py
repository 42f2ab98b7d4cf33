"""Synthetic shapes and the ImageFolder loader."""

import numpy as np
import pytest
import torch
from PIL import Image

from edgedet.data import make_classification_data
from edgedet.data.imagefolder import IMAGENET_MEAN, image_folder_splits
from edgedet.data.synthetic import CLASSES, SyntheticShapes, render
from edgedet.errors import EdgedetError


def test_render_is_deterministic_and_seeded():
    a, la = render(17, 40, seed=3)
    b, lb = render(17, 40, seed=3)
    c, _ = render(17, 40, seed=4)
    d, _ = render(18, 40, seed=3)
    assert la == lb and np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    assert a.shape == (40, 40, 3) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1


@pytest.mark.parametrize("size", [16, 33, 96])
def test_any_resolution(size):
    img, _ = render(5, size)
    assert img.shape == (size, size, 3)


def test_dataset_balance_splits_and_tensors():
    ds = SyntheticShapes(50, 24, start=0)
    val = SyntheticShapes(20, 24, start=50)
    labels = [ds[i][1] for i in range(len(ds))]
    assert np.bincount(labels, minlength=len(CLASSES)).tolist() == [5] * len(CLASSES)
    assert len(CLASSES) >= 10
    x, y = val[0]
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and y == 50 % len(CLASSES)
    assert torch.equal(x, SyntheticShapes(20, 24, start=50, cache=False)[0][0])
    assert not torch.equal(ds[0][0], val[0][0])
    with pytest.raises(IndexError):
        ds[50]


def test_images_of_one_class_differ():
    """Colour, position, scale and clutter vary: two samples of a class are far apart."""
    a, la = render(0, 32)
    b, lb = render(len(CLASSES), 32)
    assert la == lb
    assert np.abs(a - b).mean() > 0.1


def test_factory_synthetic_and_errors(tmp_path):
    data = make_classification_data("synthetic", 16, train_size=30, val_size=10)
    assert (len(data.train), len(data.val), data.num_classes) == (30, 10, len(CLASSES))
    with pytest.raises(EdgedetError, match="no such folder"):
        make_classification_data(str(tmp_path / "nope"), 16)
    with pytest.raises(EdgedetError, match="positive"):
        make_classification_data("synthetic", 0)


def _write_images(root, per_class=3, size=(20, 14)):
    for c, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", size, colour).save(root / c / f"{i}.png")


def test_image_folder(tmp_path):
    _write_images(tmp_path, per_class=5)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    data = make_classification_data(str(tmp_path), 8, val_fraction=0.2)
    assert data.classes == ["cat", "dog"] and data.num_classes == 2
    assert len(data.train) + len(data.val) == 10 and len(data.val) == 2
    x, y = data.train[0]
    assert x.shape == (3, 8, 8)
    red = (1.0 - IMAGENET_MEAN[0]) / 0.229
    expected_r = red if y == 0 else (0.0 - IMAGENET_MEAN[0]) / 0.229
    assert x[0].mean().item() == pytest.approx(expected_r, abs=1e-2)
    again = make_classification_data(str(tmp_path), 8, val_fraction=0.2)
    assert [s[0] for s in again.val.samples] == [s[0] for s in data.val.samples]


def test_image_folder_train_val_layout(tmp_path):
    _write_images(tmp_path / "train")
    _write_images(tmp_path / "val", per_class=1)
    train, val, classes = image_folder_splits(tmp_path, 8)
    assert (len(train), len(val), classes) == (6, 2, ["cat", "dog"])


def test_image_folder_errors(tmp_path):
    with pytest.raises(EdgedetError, match="no class sub-folders"):
        image_folder_splits(tmp_path, 8)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "readme.txt").write_text("x")
    with pytest.raises(EdgedetError, match="no image files"):
        image_folder_splits(tmp_path, 8)
    f = tmp_path / "file.png"
    f.write_bytes(b"\x89PNG broken")
    with pytest.raises(EdgedetError, match="class sub-folders"):
        image_folder_splits(f, 8)
    (tmp_path / "cat" / "broken.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "cat" / "ok.png").write_bytes(b"")
    Image.new("RGB", (4, 4)).save(tmp_path / "cat" / "ok.png")
    train, val, _ = image_folder_splits(tmp_path, 8, val_fraction=0.5)
    broken = [i for i, s in enumerate(train.samples) if s[0].name == "broken.png"]
    ds, i = (train, broken[0]) if broken else (val, 0)
    with pytest.raises(EdgedetError, match="cannot read image"):
        ds[i]
