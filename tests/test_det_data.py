"""Synthetic COCO set and the COCO-format loader (validation, augmentation, batching)."""

import json
from dataclasses import replace

import pytest
import torch
from PIL import Image

from edgedet.data.coco import Augment, CocoDetection, collate, load_coco_json, parse_data_spec
from edgedet.data.synthetic_det import SyntheticDetConfig, ensure_synthetic_coco, render_image
from edgedet.errors import EdgedetError

CFG = SyntheticDetConfig(image_size=96, num_train=12, num_val=4)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return ensure_synthetic_coco(CFG, tmp_path_factory.mktemp("synth"))


def test_synthetic_is_deterministic_and_varied():
    a_img, a_anns = render_image(3, CFG, 1)
    b_img, b_anns = render_image(3, CFG, 1)
    assert a_anns == b_anns and a_img.tobytes() == b_img.tobytes()
    counts = [len(render_image(i, CFG, 1)[1]) for i in range(20)]
    assert len(set(counts)) > 2
    areas = [a["bbox"][2] * a["bbox"][3] for i in range(40) for a in render_image(i, CFG, 1)[1]]
    assert min(areas) < 16 ** 2 and max(areas) > 40 ** 2
    cats = {a["category_id"] for i in range(40) for a in render_image(i, CFG, 1)[1]}
    assert cats == {1, 2, 3, 4}


def test_synthetic_written_as_coco(synth):
    doc = load_coco_json(synth["train_ann"])
    assert len(doc["images"]) == 12 and len(doc["categories"]) == 4
    for a in doc["annotations"]:
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 96 and y + h <= 96
    from pycocotools.coco import COCO
    assert len(COCO(str(synth["val_ann"])).getImgIds()) == 4
    mtime = synth["train_ann"].stat().st_mtime_ns
    ensure_synthetic_coco(CFG, synth["train_ann"].parent.parent)  # reused, not rewritten
    assert synth["train_ann"].stat().st_mtime_ns == mtime


def test_loader_batch_format(synth):
    ds = CocoDetection(synth["train_ann"], synth["train_images"], max_size=96, augment=Augment())
    torch.manual_seed(0)
    batch = [ds[i] for i in range(4)]
    images, masks, targets = collate(batch)
    assert images.shape[0] == 4 and images.shape[2] % 32 == 0 and images.shape[3] % 32 == 0
    assert masks.dtype == torch.bool and masks.shape == (4, *images.shape[2:])
    for (x, _), m, t in zip(batch, masks, targets, strict=True):
        assert not m[: x.shape[1], : x.shape[2]].any() and m.sum() == m.numel() - x.shape[1] * x.shape[2]
        assert t["boxes"].shape[1] == 4 and t["labels"].dtype == torch.int64
        assert ((t["boxes"] >= 0) & (t["boxes"] <= 1)).all()
        assert t["size"].tolist() == list(x.shape[1:]) and t["orig_size"].tolist() == [96, 96]


def test_flip_moves_boxes(synth):
    ds = CocoDetection(synth["val_ann"], synth["val_images"], max_size=96, augment=None)
    flip = CocoDetection(synth["val_ann"], synth["val_images"], max_size=96,
                         augment=Augment(flip=1.0, scales=(1.0,), crop_prob=0.0))
    (x0, t0), (x1, t1) = ds[0], flip[0]
    assert torch.allclose(x0.flip(-1), x1)
    assert torch.allclose(1 - t0["boxes"][:, 0], t1["boxes"][:, 0], atol=1e-5)


def _write(tmp_path, doc, images=("a.png",)):
    (tmp_path / "img").mkdir(exist_ok=True)
    for name in images:
        Image.new("RGB", (40, 30)).save(tmp_path / "img" / name)
    p = tmp_path / "ann.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p, tmp_path / "img"


def _doc(anns):
    return {"images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
            "annotations": anns, "categories": [{"id": 5, "name": "thing"}]}


def test_malformed_json_is_a_clear_error(tmp_path):
    p, imgs = _write(tmp_path, "{not json")
    with pytest.raises(EdgedetError, match="malformed JSON"):
        CocoDetection(p, imgs)
    p, imgs = _write(tmp_path, {"images": []})
    with pytest.raises(EdgedetError, match="annotations"):
        CocoDetection(p, imgs)
    p, imgs = _write(tmp_path, _doc([{"image_id": 1, "category_id": 5, "bbox": [1, 2]}]))
    with pytest.raises(EdgedetError, match=r"bbox"):
        CocoDetection(p, imgs)
    p, imgs = _write(tmp_path, _doc([{"image_id": 9, "category_id": 5, "bbox": [1, 2, 3, 4]}]))
    with pytest.raises(EdgedetError, match="image_id"):
        CocoDetection(p, imgs)


def test_missing_images_are_listed(tmp_path):
    doc = _doc([])
    doc["images"].append({"id": 2, "file_name": "gone.png", "width": 4, "height": 4})
    p, imgs = _write(tmp_path, doc)
    with pytest.raises(EdgedetError, match="gone.png"):
        CocoDetection(p, imgs, require_annotations=False)


def test_empty_annotations(tmp_path):
    p, imgs = _write(tmp_path, _doc([]))
    with pytest.raises(EdgedetError, match="no usable annotations"):
        CocoDetection(p, imgs)
    ds = CocoDetection(p, imgs, require_annotations=False)
    _, t = ds[0]
    assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,)


def test_degenerate_boxes_dropped_and_clipped(tmp_path):
    anns = [{"image_id": 1, "category_id": 5, "bbox": b, "id": i} for i, b in
            enumerate([[1, 1, 0, 5], [1, 1, -3, 5], [100, 100, 5, 5], [30, 20, 20, 20], [2, 2, 10, 10]])]
    p, imgs = _write(tmp_path, _doc(anns))
    ds = CocoDetection(p, imgs, max_size=40)
    assert ds.report.degenerate_dropped == 3 and ds.report.clipped == 1
    _, t = ds[0]
    assert t["labels"].tolist() == [0, 0]
    assert ((t["boxes"] >= 0) & (t["boxes"] <= 1)).all()


def test_parse_data_spec():
    assert parse_data_spec("synthetic-det")["kind"] == "synthetic-det"
    s = parse_data_spec("coco:/d/ann.json:/d/imgs")
    assert (s["train_ann"], s["train_images"], s["val_ann"]) == ("/d/ann.json", "/d/imgs", "/d/ann.json")
    with pytest.raises(EdgedetError):
        parse_data_spec("coco:nothing")
    with pytest.raises(EdgedetError):
        parse_data_spec("imagenet")


def test_config_change_regenerates(tmp_path):
    root = tmp_path / "s"
    ensure_synthetic_coco(CFG, root)
    ensure_synthetic_coco(replace(CFG, num_train=5), root)
    assert len(load_coco_json(root / "annotations" / "train.json")["images"]) == 5
